import { isDeepStrictEqual } from "node:util";
import type { AssistantMessage, Message, Part } from "@opencode-ai/sdk/v2";
import type { EventHub, ServerEvent } from "../server/event-hub.js";

/** One message of a session as `GET /session/{id}/message` (and `opencode export`) gives it. */
export interface SessionMessage {
  info: Message;
  parts: Part[];
}

/** How long a turn's last events may take to arrive after its prompt returned. */
export const SETTLE_MS = 1_000;

/**
 * The session's messages after a turn, built from the events the worker receives anyway, so that
 * reading them again (`GET /session/{id}/message`, one call per job) is not needed.
 *
 * Built from opencode's durable events (`sync`: `message.updated.1` carries a message's whole
 * info, `message.part.updated.1` a part's whole state, the last one a text part's whole text;
 * `message.part.delta` is only the live view and is not used). Each carries the session's
 * sequence number, contiguous from 0, so a lost event shows as a gap.
 *
 * Used only when the worker knows the whole transcript: `prior` is the session's exact copy
 * before the turn (none for a new session; a follow-up's stored copy when it equalled the
 * server's). Anything in doubt — the stream reconnected, a sequence gap, an event it does not
 * know, a message or part not finished, the answer unlike the prompt's response, idle not seen
 * within SETTLE_MS — gives `undefined`, and the caller reads the messages from the server.
 *
 * Seen with opencode 1.18.33: a turn's events reach the stream a few ms to ~100 ms after its prompt
 * returned, ending with the answer's `message.updated`, then `session.status {idle}`; so the
 * transcript waits for idle. After idle opencode writes the turn's user message once more, adding
 * its file-change summary (`summary: { diffs }`); on a loaded machine that comes a while after
 * idle, so the transcript waits for it too (a read of the messages before it would lack it).
 */
export class TurnTranscript {
  private readonly messages = new Map<string, SessionMessage>();
  private readonly unsubscribe: () => void;
  private readonly connectionsAtStart: number;
  private firstSeq: number | undefined;
  private lastSeq: number | undefined;
  private doubt: string | undefined;
  /** The sequence number of each message's last update. */
  private readonly updatedAt = new Map<string, number>();
  /** The last durable event before the session's latest idle status. */
  private idleSeq: number | undefined;
  /** The message that ended the turn, once settle() knows it. */
  private awaited: string | undefined;
  private wake: (() => void) | undefined;
  /** The messages the session held before the turn (the others are the turn's). */
  private readonly prior: Set<string>;

  constructor(
    private readonly hub: EventHub,
    private readonly sessionId: string,
    prior: readonly SessionMessage[],
    /** A new session: nothing but its creation came before the subscription. */
    private readonly fresh: boolean,
  ) {
    for (const m of prior) this.messages.set(m.info.id, { info: m.info, parts: [...m.parts] });
    this.prior = new Set(prior.map((m) => m.info.id));
    this.connectionsAtStart = hub.connections;
    if (this.connectionsAtStart === 0) this.doubt = "the event stream was not connected when the turn began";
    this.unsubscribe = hub.subscribe(sessionId, (event) => this.onEvent(event));
  }

  private onEvent(event: ServerEvent): void {
    if (this.doubt) return;
    if (event.type === "sync") return this.onDurable(event.syncEvent);
    if ((event.type === "session.status" && event.properties.status.type === "idle") || event.type === "session.idle") {
      this.idleSeq = this.lastSeq;
      this.wake?.();
    }
  }

  private onDurable(sync: Extract<ServerEvent, { type: "sync" }>["syncEvent"]): void {
    if (sync.aggregateID !== this.sessionId) return;
    if (this.lastSeq !== undefined && sync.seq !== this.lastSeq + 1)
      return this.fail(`event ${this.lastSeq + 1} of the session is missing (got ${sync.seq})`);
    this.firstSeq ??= sync.seq;
    this.lastSeq = sync.seq;
    switch (sync.type) {
      case "session.created.1":
      case "session.updated.1":
        return; // the session's info, not its messages
      case "message.updated.1": {
        const info = sync.data.info;
        const held = this.messages.get(info.id);
        this.updatedAt.set(info.id, sync.seq);
        if (held) held.info = info;
        else this.messages.set(info.id, { info, parts: [] });
        this.wake?.(); // a user message's summary may be what settle() waits for
        return;
      }
      case "message.removed.1":
        this.messages.delete(sync.data.messageID);
        return;
      case "message.part.updated.1": {
        const part = sync.data.part;
        const held = this.messages.get(part.messageID);
        if (!held) return this.fail(`part ${part.id} of a message not seen`);
        const at = held.parts.findIndex((p) => p.id === part.id);
        if (at >= 0) held.parts[at] = part;
        else held.parts.push(part);
        return;
      }
      case "message.part.removed.1": {
        const held = this.messages.get(sync.data.messageID);
        if (held) held.parts = held.parts.filter((p) => p.id !== sync.data.partID);
        return;
      }
      default:
        return this.fail(`an event this worker does not apply (${sync.type})`);
    }
  }

  /**
   * Whether the session went idle after the awaited message (the turn's answer) was finished, and
   * the turn's user messages got the summary opencode writes into them after idle (a read of the
   * messages after that write holds it; under load it comes a while after idle).
   */
  private idleAfterAnswer(): boolean {
    const info = this.awaited ? this.messages.get(this.awaited)?.info : undefined;
    const at = this.awaited ? this.updatedAt.get(this.awaited) : undefined;
    return (
      info?.role === "assistant" &&
      finished(info) &&
      at !== undefined &&
      this.idleSeq !== undefined &&
      this.idleSeq >= at &&
      this.summarized()
    );
  }

  private summarized(): boolean {
    for (const [id, { info }] of this.messages) {
      if (!this.prior.has(id) && info.role === "user" && info.summary === undefined) return false;
    }
    return true;
  }

  private fail(why: string): void {
    this.doubt ??= why;
    this.wake?.();
  }

  /**
   * The session's messages once the turn that `answer` ended has all arrived (its idle status
   * seen after the answer's last update), checked; `undefined` (with `why`) when in doubt.
   */
  async settle(
    answer: SessionMessage,
    signal: AbortSignal,
    ms = SETTLE_MS,
  ): Promise<{ messages?: SessionMessage[]; why?: string }> {
    this.awaited = answer.info.id;
    if (!this.idleAfterAnswer() && !this.doubt) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          signal.removeEventListener("abort", done);
          this.wake = undefined;
          resolve();
        };
        const timer = setTimeout(done, ms);
        signal.addEventListener("abort", done, { once: true });
        this.wake = () => {
          if (this.doubt || this.idleAfterAnswer()) done();
        };
      });
    }
    const why = this.doubt ?? this.check(answer);
    return why ? { why } : { messages: this.build() };
  }

  private check(answer: SessionMessage): string | undefined {
    if (!this.idleAfterAnswer())
      return "the session's idle status (and the turn's user summary) did not arrive in time";
    if (this.hub.connections !== this.connectionsAtStart) return "the event stream reconnected during the turn";
    if (this.firstSeq === undefined) return "no event of the session arrived";
    if (this.fresh && this.firstSeq > 1)
      return `the first events of the new session were not seen (first: ${this.firstSeq})`;
    const built = this.messages.get(answer.info.id);
    if (
      !built ||
      !isDeepStrictEqual(built.info, answer.info) ||
      !isDeepStrictEqual(byId(built.parts), byId(answer.parts))
    ) {
      return "the answer built from events differs from the prompt's response";
    }
    for (const { info, parts } of this.messages.values()) {
      if (info.role === "assistant" && !finished(info)) return `message ${info.id} is not finished`;
      const open = parts.find((p) => !partFinished(p));
      if (open) return `part ${open.id} of message ${info.id} is not finished`;
    }
    return undefined;
  }

  private build(): SessionMessage[] {
    return [...this.messages.values()]
      .sort((a, b) => compare(a.info.id, b.info.id))
      .map((m) => ({ info: m.info, parts: byId(m.parts) }));
  }

  close(): void {
    this.unsubscribe();
    this.wake?.();
  }
}

const compare = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
/** opencode's IDs sort in creation order; it lists messages and parts by them. */
const byId = (parts: readonly Part[]) => [...parts].sort((a, b) => compare(a.id, b.id));

const finished = (info: AssistantMessage) => info.time.completed !== undefined || info.error !== undefined;

/** A part that will change no more: a tool call ended, a text or reasoning closed. */
function partFinished(part: Part): boolean {
  if (part.type === "tool") return part.state.status === "completed" || part.state.status === "error";
  if (part.type === "text") return !part.time || part.time.end !== undefined; // a prompt's text has no time
  if (part.type === "reasoning") return part.time.end !== undefined;
  return true;
}
