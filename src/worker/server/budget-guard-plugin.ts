/**
 * The opencode plugin that makes a job's budget exact: before each model call of a session the
 * worker guards (see session/budget-guard.ts), it waits until the worker has counted the turn's
 * last finished step, and refuses the call once the worker says the budget is spent.
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
    // The turn's last finished step (the newest messages are the one this call is for and the
    // one before it): the worker, which counts steps in order, must have counted it.
    const newest = await client.session.messages({ path: { id: input.sessionID }, query: { limit: 2 } });
    const steps = (newest.data ?? [])
      .map((m) => m.info)
      .filter((m) => m.role === "assistant" && m.parentID === input.message.id && m.time.completed)
      .map((m) => m.id);
    let changes = 0;
    let wake;
    const watcher = watch(DIR, () => {
      changes += 1;
      wake?.();
    });
    const deadline = Date.now() + WAIT_MS;
    try {
      for (;;) {
        const seen = changes;
        const guard = read(input.sessionID);
        if (!guard) return;
        // A stop holds for the turns begun before it (a later job's turn in the session is its own).
        if (guard.stop) {
          if (input.message.time.created <= guard.stop.at) throw new Error(guard.stop.reason);
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
    } finally {
      watcher.close();
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
