/**
 * `worker --sandbox`: each spawned opencode server (and so every tool its agent runs) lives under
 * bubblewrap, in its own PID namespace (no process of the worker is visible, /proc is its own),
 * seeing of the machine's files only the system (/usr, /bin, /lib*, /etc, /opt, read-only), the
 * roots where jobs may work (read-write), its data directory, the opencode binary and its
 * configuration, an empty home and a private /tmp; the worker's secrets are not in the server's
 * environment (withoutWorkerSecrets).
 */
import { execFileSync } from "node:child_process";
import { existsSync, realpathSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, isAbsolute, relative, resolve } from "node:path";
import { UnrecoverableError, type Job } from "bullmq";
import { InputError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { baseRecord } from "../../shared/record.js";
import type { ResultRecord } from "../../shared/result.js";
import type { ResultStore } from "../../shared/result-store.js";

export interface SandboxSettings {
  /** Where jobs may work (read-write in the sandbox); a job whose directory lies outside them fails at pickup. */
  dirs: string[];
}

/** What a process needs of the machine's files to run: programs, libraries, /etc (DNS, certificates, users). */
const SYSTEM_DIRS = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt"];

let bwrapChecked: string | undefined;

/** The bubblewrap binary, or a clear error saying what to install. */
export function bubblewrap(): string {
  if (bwrapChecked) return bwrapChecked;
  try {
    execFileSync("bwrap", ["--version"], { stdio: "ignore" });
  } catch {
    throw new InputError(
      "--sandbox needs bubblewrap: install it (Debian/Ubuntu: apt install bubblewrap; Fedora: dnf install bubblewrap)",
    );
  }
  return (bwrapChecked = "bwrap");
}

/** Whether bubblewrap is installed (for the warning of an unsandboxed worker). */
export function hasBubblewrap(): boolean {
  try {
    bubblewrap();
    return true;
  } catch {
    return false;
  }
}

const inside = (path: string, root: string) => {
  const rel = relative(root, path);
  return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
};

/** Fails a job whose directory lies outside the sandbox's roots (none given: the worker's directory). */
export function checkSandboxDirectory(directory: string | undefined, settings: SandboxSettings): void {
  const dir = resolve(directory ?? process.cwd());
  if (settings.dirs.some((root) => inside(dir, resolve(root)))) return;
  throw new InputError(
    `directory ${dir} lies outside the worker's sandbox (DISPATCH_SANDBOX_DIRS: ${settings.dirs.join(", ") || "none"}): the agent could not write there`,
  );
}

/**
 * The bubblewrap command line that runs `command args…` in the sandbox. `env` is the server's
 * environment: its XDG and OPENCODE_CONFIG paths stay reachable (read-write, read-only).
 */
export function sandboxed(
  command: string,
  args: string[],
  opts: { dataDir: string; settings: SandboxSettings; env: NodeJS.ProcessEnv },
): { command: string; args: string[] } {
  const real = (path: string) => (existsSync(path) ? realpathSync(path) : path);
  const bw = [
    "--die-with-parent",
    "--new-session",
    "--unshare-pid",
    // The system, read-only; nothing else of the machine's files (no other home, no /srv, no /work).
    ...SYSTEM_DIRS.flatMap((dir) => ["--ro-bind-try", dir, dir]),
    "--dev",
    "/dev",
    "--proc",
    "/proc",
    "--tmpfs",
    "/tmp",
    "--tmpfs",
    real(homedir()),
  ];
  // Its own home (empty), where opencode may write what it keeps per user.
  // The opencode binary and its package may live under the hidden home.
  bw.push("--ro-bind", dirname(dirname(real(command))), dirname(dirname(real(command))));
  for (const key of ["XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"]) {
    const path = opts.env[key];
    if (path && existsSync(path)) bw.push("--bind", real(path), real(path));
  }
  const config = opts.env.OPENCODE_CONFIG;
  if (config && existsSync(config)) bw.push("--ro-bind", real(config), real(config));
  for (const dir of opts.settings.dirs) if (existsSync(dir)) bw.push("--bind", real(dir), real(dir));
  bw.push("--bind", real(opts.dataDir), real(opts.dataDir));
  return { command: bubblewrap(), args: [...bw, "--", command, ...args] };
}

type Processor<R> = (job: Job, token?: string, signal?: AbortSignal) => Promise<R>;

/**
 * Wraps a processor so that, in a sandboxed worker, a job whose directory lies outside the
 * sandbox's roots fails at pickup (no retry) with a clear error, before any model call.
 */
export function refuseOutsideSandbox<R>(
  processor: Processor<R>,
  deps: { settings: SandboxSettings; store: ResultStore; log: Logger },
): Processor<R> {
  return async (job, token, signal) => {
    try {
      checkSandboxDirectory((job.data as { directory?: string } | undefined)?.directory, deps.settings);
    } catch (error) {
      const message = (error as Error).message;
      const record: ResultRecord = {
        ...baseRecord(job.id!, job.data, "failed"),
        attempts: job.attemptsMade + 1,
        finishedAt: new Date().toISOString(),
        error: { name: "OutsideSandbox", message, retryable: false },
      };
      await deps.store.put(record);
      deps.log.warn({ jobId: job.id }, "job refused: its directory lies outside the sandbox");
      throw new UnrecoverableError(`OutsideSandbox: ${message}`);
    }
    return processor(job, token, signal);
  };
}
