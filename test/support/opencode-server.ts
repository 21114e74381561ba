/**
 * Spawns a real `opencode serve` on 127.0.0.1 (binary from node_modules/opencode-linux-x64) and
 * waits for its "listening on http://..." line.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { OPENCODE_BIN } from "./opencode-env";
import { freePort } from "./redis";

export interface OpencodeServer {
  /** http://127.0.0.1:PORT */
  url: string;
  port: number;
  proc: ChildProcess;
  /** Everything the server printed so far (stdout + stderr). */
  output(): string;
  /** Idempotent: SIGTERM, then SIGKILL after 3 s; resolves when the process has exited. */
  stop(): Promise<void>;
}

export async function startOpencodeServer(opts: {
  env: Record<string, string>;
  cwd: string;
  port?: number;
  timeoutMs?: number;
}): Promise<OpencodeServer> {
  const port = opts.port ?? (await freePort());
  const proc = spawn(OPENCODE_BIN, ["serve", "--hostname", "127.0.0.1", "--port", String(port)], {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill("SIGTERM");
      const force = setTimeout(() => proc.kill("SIGKILL"), 3_000);
      await exited;
      clearTimeout(force);
    })();
    return stopping;
  };

  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => fail(`did not start within ${opts.timeoutMs ?? 90_000} ms`),
      opts.timeoutMs ?? 90_000,
    );
    function fail(why: string) {
      clearTimeout(timer);
      void stop();
      reject(new Error(`opencode serve ${why}. Output:\n${log}`));
    }
    const onData = (chunk: Buffer) => {
      log += chunk.toString("utf8");
      const match = /listening on (http:\/\/\S+)/.exec(log);
      if (match?.[1]) {
        clearTimeout(timer);
        resolve(match[1].replace(/\/$/, ""));
      }
    };
    proc.stdout?.on("data", onData);
    proc.stderr?.on("data", onData);
    proc.once("error", (err) => fail(`failed to spawn (${err.message})`));
    proc.once("exit", (code, signal) => fail(`exited early (code ${code}, signal ${signal})`));
  });

  return { url, port, proc, output: () => log, stop };
}
