import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** A fresh git repository at `dir` on branch main with one commit of notes.txt ("original\n"); returns a git runner in it. */
export function makeGitRepo(dir: string): (...args: string[]) => string {
  mkdirSync(dir);
  const git = (...args: string[]) =>
    execFileSync("git", ["-c", "user.name=t", "-c", "user.email=t@t", ...args], { cwd: dir })
      .toString()
      .trim();
  git("init", "-q", "-b", "main");
  writeFileSync(join(dir, "notes.txt"), "original\n");
  git("add", ".");
  git("commit", "-qm", "init");
  return git;
}
