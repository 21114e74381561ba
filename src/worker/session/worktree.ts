import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { promisify } from "node:util";
import { NotRunnableError } from "../failures.js";

const exec = promisify(execFile);

export interface Worktree {
  path: string;
  branch: string;
  /** The commit the worktree started from. */
  base: string;
}

/**
 * Runs git for the worker. The repository's hooks never run (`core.hooksPath=/dev/null`: a job's
 * agent may have written them) and git gets a minimal environment, not the worker's secrets.
 */
async function git(cwd: string, args: string[], signal?: AbortSignal): Promise<string> {
  const identity = [
    "-c",
    "user.name=opencode-dispatch",
    "-c",
    "user.email=opencode-dispatch@localhost",
    "-c",
    "core.hooksPath=/dev/null",
  ];
  const { stdout } = await exec("git", [...identity, ...args], {
    cwd,
    signal,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/", LANG: "C" },
    maxBuffer: 16 * 1024 * 1024,
  });
  return stdout.trim();
}

/** Where the worktree of `jobId` on the repository at `root` lives (see prepareWorktree). */
const worktreeAt = (root: string, jobId: string) => join(dirname(root), `${basename(root)}.dispatch-worktrees`, jobId);

/** The worktree a `--worktree` job made of the repository at `directory`, or undefined when it has none. */
export async function existingWorktree(directory: string, jobId: string): Promise<string | undefined> {
  try {
    const path = worktreeAt(await git(directory, ["rev-parse", "--show-toplevel"]), jobId);
    return existsSync(path) ? path : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A fresh git worktree of the repository at `directory`, on its own branch `dispatch/<jobId>`,
 * beside the repository in `<repo>.dispatch-worktrees/<jobId>`. A retry of the same job reuses
 * the worktree its first attempt made.
 */
export async function prepareWorktree(
  directory: string,
  jobId: string,
  knownBase?: string,
  signal?: AbortSignal,
): Promise<Worktree> {
  let root: string;
  try {
    root = await git(directory, ["rev-parse", "--show-toplevel"], signal);
  } catch {
    throw new NotRunnableError(`worktree: ${directory} is not inside a git repository`);
  }
  const branch = `dispatch/${jobId}`;
  const path = worktreeAt(root, jobId);
  if (existsSync(path)) {
    // A retry finds its first attempt's worktree (git refuses to add one at an existing path).
    const base =
      knownBase ?? (await git(path, ["merge-base", "HEAD", await git(root, ["rev-parse", "HEAD"], signal)], signal));
    return { path, branch, base };
  }
  await mkdir(dirname(path), { recursive: true });
  const base = await git(root, ["rev-parse", "HEAD"], signal);
  await git(root, ["worktree", "add", "-b", branch, path, base], signal);
  return { path, branch, base };
}

/** Commits whatever the job changed on its branch and lists the files changed since the base. */
export async function finishWorktree(tree: Worktree, message: string, signal?: AbortSignal): Promise<string[]> {
  await git(tree.path, ["add", "-A"], signal);
  const staged = await git(tree.path, ["diff", "--cached", "--name-only"], signal);
  if (staged) await git(tree.path, ["commit", "-q", "--no-verify", "-m", message], signal);
  const changed = await git(tree.path, ["diff", "--name-only", tree.base, "HEAD"], signal);
  return changed ? changed.split("\n") : [];
}
