/**
 * The opencode plugin that makes a job's budget exact: before each model call of a session the
 * worker guards (see session/budget-guard.ts), it waits until the worker has counted the session's
 * last finished step, and refuses the call once the worker says the budget is spent. Whatever
 * else goes wrong in it lets the call go ahead: the guard never fails a job by itself.
 * Without it the worker can only abort: opencode reports a step's usage after its tools have run
 * and sends the next call ~0.1 s later, so an abort could land just after that call was sent.
 *
 * With DISPATCH_BUDGET_GUARD / `worker --budget-guard`, the worker writes it into each spawned
 * server's data directory and names it in the server's configuration (an attached server has no
 * guard: there the abort alone stops the run). Any plugin makes opencode install its plugin
 * package into each of its config folders and wait for that before it loads plugins: seconds to
 * half a minute, once per folder, with the npm registry in reach; hence a setting, off by default.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

/** How long a model call waits at most for the worker's count; past it, the call goes ahead. */
export const GUARD_WAIT_MS = 10_000;

/** The plugin's source, for a guard directory (one file per guarded session, named by its ID). */
function pluginSource(dir: string): string {
  return `// Written by opencode-dispatch (src/worker/server/budget-guard-plugin.ts); removed with this folder.
import { readFileSync, watch } from "node:fs";
import { join } from "node:path";

const DIR = ${JSON.stringify(dir)};
const WAIT_MS = ${GUARD_WAIT_MS};

function read(sessionID) {
  try {
    return JSON.parse(readFileSync(join(DIR, sessionID), "utf8"));
  } catch {
    return null;
  }
}

export const DispatchBudgetGuard = async ({ client }) => ({
  "chat.params": async (input) => {
    if (!read(input.sessionID)) return;
    const deadline = Date.now() + WAIT_MS;
    let refusal;
    let watcher;
    try {
      // The session's last finished step (the newest messages are the one this call is for and
      // the one before it): the worker, which counts steps in order, must have counted it.
      const newest = await client.session.messages({
        path: { id: input.sessionID },
        query: { limit: 2 },
        signal: AbortSignal.timeout(WAIT_MS),
      });
      const steps = (newest.data ?? [])
        .map((m) => m.info)
        .filter((m) => m.role === "assistant" && m.time.completed)
        .map((m) => m.id);
      let changes = 0;
      let wake;
      watcher = watch(DIR, () => {
        changes += 1;
        wake?.();
      });
      for (;;) {
        const seen = changes;
        const guard = read(input.sessionID);
        if (!guard) return;
        if (guard.stop) {
          refusal = new Error(guard.stop);
          return;
        }
        if (steps.every((id) => guard.checked.includes(id))) return;
        const left = deadline - Date.now();
        if (left <= 0) return;
        if (changes === seen)
          await new Promise((resolve) => {
            const timer = setTimeout(resolve, left);
            wake = () => (clearTimeout(timer), resolve());
          });
        wake = undefined;
      }
    } catch {
      return; // the guard cannot tell: the call goes ahead (the worker's abort still stops the run)
    } finally {
      watcher?.close();
      if (refusal) throw refusal;
    }
  },
});
`;
}

/**
 * Writes the plugin and its guard directory into a spawned server's data directory; returns the
 * directory and the plugin's file URL (for the server's `plugin` setting).
 */
export async function installBudgetGuard(dataDir: string): Promise<{ guardDir: string; plugin: string }> {
  const guardDir = join(dataDir, "budget-guard");
  await mkdir(guardDir, { recursive: true });
  const file = join(dataDir, "budget-guard.js");
  await writeFile(file, pluginSource(guardDir));
  return { guardDir, plugin: pathToFileURL(file).href };
}
