import type { Redis } from "ioredis";
import { LIVE_MAXLEN, LIVE_TTL_MS, type LiveEventType } from "../../shared/live.js";
import type { Logger } from "../../shared/logger.js";
import type { Progress } from "../../shared/result.js";
import type { EventHub, ServerEvent } from "../server/event-hub.js";

/**
 * Appends an entry to a job's live stream while the attempt still owns the job (KEYS[2], BullMQ's
 * lock, holds ARGV[1]; no fence when ARGV[1] is empty): a stale attempt writes nothing. The first
 * entry also sets the stream's expiry. KEYS[1] stream; ARGV: token, maxlen, type, data, first, ttl ms.
 */
const APPEND = `
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 't', ARGV[3], 'd', ARGV[4])
if ARGV[5] == '1' then redis.call('PEXPIRE', KEYS[1], ARGV[6]) end
return 1
`;

/** Answer text is sent at most this often (one stream entry per window, whatever the model's pace). */
const TEXT_WINDOW_MS = 100;

interface PartInfo {
  type: string;
  synthetic?: boolean;
  ignored?: boolean;
  tool?: string;
  state?: { status?: string };
  id: string;
}

/**
 * Publishes what a running session does to its job's live stream (see shared/live.ts): the
 * answer's text as it is written (pieces gathered over TEXT_WINDOW_MS), tool calls, asks and
 * progress. Follows the session's events on the server's event hub; `close()` sends what is left.
 * Never throws: a live stream that cannot be written only costs its readers a piece of the show.
 */
export class LivePublisher {
  private readonly parts = new Map<string, PartInfo>();
  private readonly toolStates = new Map<string, string>();
  private pendingText = "";
  private timer: NodeJS.Timeout | undefined;
  private queue: Promise<void> = Promise.resolve();
  private readonly unsubscribe: () => void;
  private closed = false;
  private expirySet = false;

  constructor(
    private readonly redis: Redis,
    private readonly key: string,
    hub: EventHub,
    sessionId: string,
    private readonly log: Logger,
    /** The attempt's hold on the job: once another attempt owns it, nothing more is written. */
    private readonly fence?: { lockKey: string; token: string },
  ) {
    this.unsubscribe = hub.subscribe(sessionId, (event) => this.onEvent(event, sessionId));
  }

  progress(progress: Progress): void {
    this.send("progress", { ...progress });
  }

  private onEvent(event: ServerEvent, sessionId: string): void {
    switch (event.type) {
      case "message.part.updated": {
        const part = (event.properties as { part: PartInfo & { sessionID?: string } }).part;
        if (part.sessionID !== sessionId) return; // a subagent's part: its text is not the answer
        this.parts.set(part.id, part);
        if (part.type === "tool" && part.tool) {
          const status = part.state?.status ?? "pending";
          if (this.toolStates.get(part.id) !== status && status !== "pending") {
            this.toolStates.set(part.id, status);
            this.send("tool", { tool: part.tool, status });
          }
        }
        return;
      }
      case "message.part.delta": {
        const p = event.properties as { sessionID: string; partID: string; field: string; delta: string };
        const part = this.parts.get(p.partID);
        if (p.sessionID !== sessionId || p.field !== "text" || part?.type !== "text" || part.synthetic || part.ignored)
          return;
        this.pendingText += p.delta;
        this.timer ??= setTimeout(() => this.flushText(), TEXT_WINDOW_MS);
        return;
      }
      case "permission.asked":
      case "question.asked": {
        const p = event.properties as { permission?: string; patterns?: string[]; questions?: { question?: string }[] };
        const kind = event.type === "permission.asked" ? "permission" : "question";
        this.send("ask", { kind, what: p.permission ?? p.questions?.[0]?.question ?? "", patterns: p.patterns ?? [] });
        return;
      }
      default:
        return;
    }
  }

  private flushText(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.pendingText) return;
    const text = this.pendingText;
    this.pendingText = "";
    this.send("text", { text });
  }

  private send(type: LiveEventType, data: Record<string, unknown>): void {
    if (this.closed) return;
    if (type !== "text") this.flushText(); // keep the order of text and what came after it
    const body = JSON.stringify(data);
    // The stream's expiry is set by its first entry here and renewed by every record write.
    const first = !this.expirySet;
    this.expirySet = true;
    this.queue = this.queue
      .then(async () => {
        const lockKey = this.fence?.lockKey ?? this.key;
        await this.redis.eval(
          APPEND,
          2,
          this.key,
          lockKey,
          this.fence?.token ?? "",
          LIVE_MAXLEN,
          type,
          body,
          first ? "1" : "0",
          LIVE_TTL_MS,
        );
      })
      .catch((error: unknown) => this.log.debug({ err: error }, "could not write to the job's live stream"));
  }

  /** Stops following the session and sends what is left. Idempotent. */
  async close(): Promise<void> {
    if (!this.closed) {
      this.unsubscribe();
      this.flushText();
      this.closed = true;
    }
    await this.queue;
  }
}
