/**
 * The suite's first step (from ./global-setup): scripts/check-machine.sh says what this machine
 * lacks (Node version, redis-server, Chromium, bubblewrap, curl, python3, openssl, git), so a fresh
 * machine fails at once with a list instead of one suite at a time with a stack trace.
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

export function checkMachine(): void {
  const script = fileURLToPath(new URL("../../scripts/check-machine.sh", import.meta.url));
  const check = spawnSync("bash", [script], { encoding: "utf8" });
  if (check.status === 0) return;
  const error = new Error(
    `${(check.stderr || check.error?.message || "").trim()}\n(checked by scripts/check-machine.sh before the suite starts)`,
  );
  error.stack = error.message; // the list is the message; a stack trace would bury it
  throw error;
}
