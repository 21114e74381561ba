/**
 * The worker's side of the budget guard (see server/budget-guard-plugin.ts): one file per guarded
 * session in the server's guard directory, saying which finished steps the watch has counted and,
 * once the budget is spent, why no further model call may be made. Written whole and renamed into
 * place, so the plugin never reads half a file. Removed when the attempt ends, unless it says stop:
 * the attempt may end before opencode has taken in the abort, and the session's next call must
 * still be refused (a stop holds only for turns begun before it, so a later job is not refused).
 */
import { rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";

interface GuardState {
  checked: string[];
  /** Why no further call of the turns begun before `at` (ms) may be made. */
  stop: { reason: string; at: number } | null;
}

export class BudgetGuard {
  private readonly sessions = new Map<string, GuardState>();
  private readonly writes = new Map<string, Promise<void>>();
  private closed = false;
  private stopped: GuardState["stop"] = null;

  constructor(private readonly dir: string) {}

  /** Guards this session's model calls from now on. */
  open(sessionId: string): void {
    if (this.closed || this.sessions.has(sessionId)) return;
    this.sessions.set(sessionId, { checked: [], stop: this.stopped });
    this.write(sessionId);
  }

  /** The watch has counted this finished step (assistant message) of the session. */
  counted(sessionId: string, messageId: string): void {
    const state = this.sessions.get(sessionId);
    if (!state || state.checked.includes(messageId)) return;
    state.checked.push(messageId);
    this.write(sessionId);
  }

  /** The budget is spent: every guarded session's next model call is refused with `reason`. */
  stop(reason: string): void {
    this.stopped ??= { reason, at: Date.now() };
    for (const [sessionId, state] of this.sessions) {
      if (state.stop) continue;
      state.stop = this.stopped;
      this.write(sessionId);
    }
  }

  /** Idempotent: waits for the writes under way and removes the files of sessions not stopped. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.writes.values());
    const open = [...this.sessions].filter(([, state]) => !state.stop).map(([id]) => id);
    await Promise.all(open.map((id) => rm(join(this.dir, id), { force: true })));
  }

  private write(sessionId: string): void {
    const file = join(this.dir, sessionId);
    const previous = this.writes.get(sessionId) ?? Promise.resolve();
    const next = previous.then(async () => {
      if (this.closed) return;
      const tmp = `${file}.tmp`;
      await writeFile(tmp, JSON.stringify(this.sessions.get(sessionId)));
      await rename(tmp, file);
    });
    // A failed write leaves the plugin waiting at most GUARD_WAIT_MS; the watch's abort still stops the run.
    this.writes.set(
      sessionId,
      next.catch(() => undefined),
    );
  }
}
