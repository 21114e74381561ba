import { Command } from "commander";
import { ApiTokens } from "../../api/tokens.js";
import { createLogger } from "../../shared/logger.js";
import { configFrom, exitWith, intOption, withConnection, withDispatcher, type ConnectionFlags } from "../options.js";

interface ApiFlags extends ConnectionFlags {
  port: number;
  host: string;
  maxStreams: number;
}

/** Serves the HTTP API until SIGINT/SIGTERM (see src/api). */
export function apiCommand(): Command {
  const command = new Command("api")
    .description(
      "serve the HTTP API (JSON over HTTP, bearer tokens from DISPATCH_API_TOKENS; OpenAPI at /v1/openapi.json)",
    )
    .option("--port <port>", "port to listen on (0: any free port)", intOption("--port", 0, 65_535), 8080)
    .option("--host <address>", "address to bind; beyond loopback tokens are required", "127.0.0.1")
    .option(
      "--max-streams <n>",
      "open event streams and long polls per token",
      intOption("--max-streams", 1, 100_000),
      100,
    );
  return withConnection(command).action(
    exitWith(async (flags: ApiFlags) => {
      const tokens = ApiTokens.fromEnv();
      const log = createLogger(configFrom(flags).logLevel, { component: "api" });
      return withDispatcher(flags, async (dispatcher) => {
        const { startApi } = await import("../../api/server.js");
        const api = await startApi({
          dispatcher,
          tokens,
          log,
          host: flags.host,
          port: flags.port,
          maxStreams: flags.maxStreams,
        });
        log.info({ url: api.url, queue: dispatcher.queueName, tokens: tokens.size }, "api ready");
        process.stderr.write(
          `API: ${api.url}/v1  (OpenAPI: ${api.url}/v1/openapi.json${tokens.size ? "" : "; no tokens: open to loopback"})\n`,
        );
        await new Promise<void>((resolve) => {
          process.once("SIGINT", () => resolve());
          process.once("SIGTERM", () => resolve());
        });
        await api.close();
        return 0;
      });
    }),
  );
}
