import { Command } from "commander";
import { createLogger } from "../../shared/logger.js";
import { configFrom, exitWith, intOption, withConnection, type ConnectionFlags } from "../options.js";

interface DashboardFlags extends ConnectionFlags {
  port: number;
  host: string;
  allowActions?: boolean;
}

/**
 * Serves the dashboard until SIGINT/SIGTERM. Bound beyond loopback it requires basic auth
 * (DASHBOARD_USER / DASHBOARD_PASSWORD) and refuses to start without a password.
 */
export function dashboardCommand(): Command {
  const command = new Command("dashboard")
    .description(
      "serve a web dashboard (read-only unless --allow-actions): / overview with charts, /results, /results/<jobId> (live answer while it runs), " +
        "/batches, /batches/<id>, /sessions/<id> (transcript), /queues (bull-board), JSON under /api/…",
    )
    .option("--port <port>", "port to listen on (0: any free port)", intOption("--port", 0, 65_535), 3000)
    .option("--host <address>", "address to bind; beyond loopback DASHBOARD_PASSWORD is required", "127.0.0.1")
    .option(
      "--allow-actions",
      "let the dashboard cancel and retry jobs and batches, approve or reject a job's ask, and pause and resume the queue (and bull-board retry, promote, clean and remove jobs)",
    );
  return withConnection(command).action(
    exitWith(async (flags: DashboardFlags) => {
      const config = configFrom(flags);
      const log = createLogger(config.logLevel);
      const { startDashboard } = await import("../../dashboard/server.js"); // express and bull-board: only for this command
      const dashboard = await startDashboard({
        redisUrl: config.redisUrl,
        queue: config.queue,
        host: flags.host,
        port: flags.port,
        allowActions: flags.allowActions ?? false,
        auth: config.dashboard,
        allowedHosts: config.dashboard.hosts,
        config,
        log,
      });
      log.info(
        {
          url: dashboard.url,
          queue: config.queue,
          actions: flags.allowActions ?? false,
          auth: !!config.dashboard.password,
        },
        "dashboard ready",
      );
      process.stderr.write(
        `Dashboard: ${dashboard.url}/  (results: ${dashboard.url}/results, batches: ${dashboard.url}/batches, bull-board: ${dashboard.url}/queues)\n`,
      );
      await new Promise<void>((resolve) => {
        process.once("SIGINT", () => resolve());
        process.once("SIGTERM", () => resolve());
      });
      await dashboard.close();
      return 0;
    }),
  );
}
