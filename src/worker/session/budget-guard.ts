/**
 * The worker's side of the budget guard (see server/budget-guard-plugin.ts): one file per guarded
 * session in the server's guard directory, saying which finished steps the watch has counted and,
 * once the budget is spent, why no further model call may be made. Written whole and renamed into
 * place, so the plugin never reads half a file. Removed when the attempt ends; after a stop, once
 * the session has gone idle (the attempt may end before opencode has taken in the abort, and until
 * then every call of the session, a compaction's or a subagent's too, must still be refused).
 */
import { rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { EventHub } from "../server/event-hub.js";
import type { OpencodeClient } from "../server/opencode-client.js";

interface GuardState {
  checked: string[];
  /** Why no further model call may be made. */
  stop: string | null;
}

export class BudgetGuard {
  private readonly sessions = new Map<string, GuardState>();
  private readonly writes = new Map<string, Promise<void>>();
  private closed = false;
  private stopReason: string | null = null;

  constructor(private readonly dir: string) {}

  /** Guards this session's model calls from now on. */
  open(sessionId: string): void {
    if (this.closed || this.sessions.has(sessionId)) return;
    this.sessions.set(sessionId, { checked: [], stop: this.stopReason });
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
    this.stopReason ??= reason;
    for (const [sessionId, state] of this.sessions) {
      if (state.stop) continue;
      state.stop = this.stopReason;
      this.write(sessionId);
    }
  }

  /** Whether the budget was spent (the caller lets the session go idle before close). */
  get stopped(): boolean {
    return this.stopReason !== null;
  }

  /** Idempotent: waits for the writes under way and removes the sessions' files. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.writes.values());
    await Promise.all(
      [...this.sessions.keys()].map((id) => rm(join(this.dir, id), { force: true }).catch(() => undefined)),
    );
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

/** Resolves once the session is idle (by its status, else its next idle event), or after `timeoutMs`. */
export async function sessionIdle(
  hub: EventHub,
  client: OpencodeClient,
  sessionId: string,
  directory: string | undefined,
  timeoutMs: number,
): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  let off = () => {};
  const idle = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, timeoutMs);
    off = hub.subscribe(sessionId, (event) => {
      if (event.type === "session.idle" || (event.type === "session.status" && event.properties.status.type === "idle"))
        resolve();
    });
  });
  try {
    const statuses = await client.session
      .status({ directory }, { signal: AbortSignal.timeout(timeoutMs) })
      .catch(() => undefined);
    const status = statuses?.data?.[sessionId];
    if (status && status.type !== "idle") await idle;
  } finally {
    clearTimeout(timer);
    off();
  }
}
