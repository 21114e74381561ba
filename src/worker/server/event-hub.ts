import type { GlobalEvent } from "@opencode-ai/sdk/v2";
import type { Logger } from "../../shared/logger.js";
import type { OpencodeClient } from "./opencode-client.js";

export type ServerEvent = GlobalEvent["payload"];
export type SessionHandler = (event: ServerEvent, directory: string) => void;

/** The session an event belongs to, wherever opencode put its ID. */
export function sessionOf(event: ServerEvent): string | undefined {
  // A durable (`sync`) event names its session as its aggregate (see turn-transcript.ts).
  if (event.type === "sync") return event.syncEvent.aggregateID;
  if (!("properties" in event)) return undefined;
  const p = event.properties as {
    sessionID?: string;
    info?: { sessionID?: string };
    part?: { sessionID?: string };
  };
  return p.sessionID ?? p.info?.sessionID ?? p.part?.sessionID;
}

/** For a `session.created` event of a child session (a subagent's), the parent's ID. */
export function childOf(event: ServerEvent): string | undefined {
  if (event.type !== "session.created") return undefined;
  return (event.properties as { info?: { parentID?: string } }).info?.parentID;
}

/**
 * Signs that a server may be unwell, reported by the jobs on it: `stall` (a session made no
 * progress for the stall timeout: the server may be wedged) and `stuck` (an aborted session did not
 * go idle: its tools may still run). The server's keeper listens (see ServerKeeper).
 */
export type Trouble = "stall" | "stuck";
type TroubleListener = (trouble: Trouble) => void;

const troubleListeners = new Map<OpencodeClient, Set<TroubleListener>>();

/** Listens for trouble with the server of `client`; returns the removal. */
export function onTrouble(client: OpencodeClient, listener: TroubleListener): () => void {
  const set = troubleListeners.get(client) ?? new Set();
  set.add(listener);
  troubleListeners.set(client, set);
  return () => {
    set.delete(listener);
    if (set.size === 0) troubleListeners.delete(client);
  };
}

/** Reports trouble with the server of `client` to its keeper. */
export function reportTrouble(client: OpencodeClient, trouble: Trouble): void {
  troubleListeners.get(client)?.forEach((listener) => listener(trouble));
}

/**
 * One `GET /global/event` stream per opencode server, fanned out to the watchers of each session.
 * The SDK's SSE client reconnects by itself; each (re)connection is announced to `onConnect`
 * listeners so they can catch up on what they may have missed (pending permission asks).
 */
export class EventHub {
  private readonly handlers = new Map<string, Set<SessionHandler>>();
  private readonly connectListeners = new Set<() => void>();
  private readonly controller = new AbortController();
  private running: Promise<void> | undefined;
  private connectionCount = 0;

  constructor(
    private readonly client: OpencodeClient,
    private readonly log: Logger,
  ) {}

  /**
   * How many times the stream has (re)connected: unchanged between two readings, and above zero,
   * means no event of the server was missed in between (an SSE stream delivers in order).
   */
  get connections(): number {
    return this.connectionCount;
  }

  /** A session on this hub's server made no progress for the stall timeout (the server may be wedged). */
  reportStall(): void {
    reportTrouble(this.client, "stall");
  }

  start(): this {
    this.running ??= this.loop();
    return this;
  }

  private async loop(): Promise<void> {
    const signal = this.controller.signal;
    while (!signal.aborted) {
      try {
        const { stream } = await this.client.global.event({
          signal,
          sseDefaultRetryDelay: 500,
          sseMaxRetryDelay: 2_000,
          onSseError: (error: unknown) => {
            if (!signal.aborted) this.log.debug({ err: error }, "event stream error; reconnecting");
          },
        });
        for await (const item of stream) {
          const event = item;
          if (!event?.payload) continue;
          if (event.payload.type === "server.connected") {
            this.connectionCount += 1;
            this.connectListeners.forEach((l) => l());
          }
          // A subagent's session is announced to the watchers of its parent.
          const sessionId = childOf(event.payload) ?? sessionOf(event.payload);
          if (!sessionId) continue;
          this.handlers.get(sessionId)?.forEach((handler) => {
            try {
              handler(event.payload, event.directory);
            } catch (error) {
              this.log.error({ err: error, sessionId }, "session event handler failed");
            }
          });
        }
      } catch (error) {
        if (signal.aborted) return;
        this.log.warn({ err: error }, "event stream ended; reconnecting");
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }

  subscribe(sessionId: string, handler: SessionHandler): () => void {
    const set = this.handlers.get(sessionId) ?? new Set();
    set.add(handler);
    this.handlers.set(sessionId, set);
    return () => {
      set.delete(handler);
      if (set.size === 0) this.handlers.delete(sessionId);
    };
  }

  onConnect(listener: () => void): () => void {
    this.connectListeners.add(listener);
    return () => this.connectListeners.delete(listener);
  }

  close(): void {
    this.controller.abort();
    this.handlers.clear();
    this.connectListeners.clear();
  }
}
