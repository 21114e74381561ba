/**
 * Drives the real CLI (`bin/opencode-dispatch.js`, built by the global setup) as a user would.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

export const BIN = fileURLToPath(new URL("../../bin/opencode-dispatch.js", import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(
  args: string[],
  opts: { env: NodeJS.ProcessEnv; input?: string; timeoutMs?: number; cwd?: string },
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: opts.env,
      cwd: opts.cwd,
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`opencode-dispatch ${args.join(" ")} timed out\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, opts.timeoutMs ?? 150_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(opts.input ?? "");
  });
}

export interface CliProcess {
  child: ChildProcess;
  output(): string;
  /** Resolves when a line matching `pattern` has been written (stdout or stderr). */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>;
  /** Sends a signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | null>;
  /** Resolves with the exit code once the process has exited; rejects if it has not within `timeoutMs`. */
  exited(timeoutMs?: number): Promise<number | null>;
}

/**
 * Starts a long-running command (worker, up). `detached`: in a process group of its own, so a test
 * can signal the whole group (`process.kill(-pid, "SIGINT")`) as a terminal's Ctrl-C does.
 */
export function startCli(
  args: string[],
  opts: { env: NodeJS.ProcessEnv; cwd?: string; detached?: boolean },
): CliProcess {
  const child = spawn(process.execPath, [BIN, ...args], {
    env: opts.env,
    cwd: opts.cwd,
    stdio: ["ignore", "pipe", "pipe"],
    detached: opts.detached,
  });
  let output = "";
  const listeners = new Set<() => void>();
  const onData = (d: Buffer) => {
    output += d.toString();
    listeners.forEach((l) => l());
  };
  child.stdout.on("data", onData);
  child.stderr.on("data", onData);
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return {
    child,
    output: () => output,
    waitFor(pattern, timeoutMs = 150_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (pattern.test(output)) {
            listeners.delete(check);
            clearTimeout(timer);
            resolve();
          }
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`no ${pattern} within ${timeoutMs} ms; output:\n${output}`));
        }, timeoutMs);
        listeners.add(check);
        void exited.then(() => {
          if (!pattern.test(output)) {
            clearTimeout(timer);
            listeners.delete(check);
            reject(new Error(`process exited before ${pattern}; output:\n${output}`));
          }
        });
        check();
      });
    },
    exited(timeoutMs = 60_000) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`still running after ${timeoutMs} ms; output:\n${output}`)),
          timeoutMs,
        );
      });
      return Promise.race([exited, late]).finally(() => clearTimeout(timer));
    },
    async stop(signal = "SIGTERM", timeoutMs = 60_000) {
      if (child.exitCode !== null) return child.exitCode;
      child.kill(signal);
      const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}
