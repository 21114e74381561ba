import type { Redis } from "ioredis";
import { isFinal } from "../shared/job-state.js";
import type { Progress, ResultRecord } from "../shared/result.js";
import type { StateEvent } from "../shared/result-store.js";

/**
 * The queue's events channel (`dispatch:{queue}:events`), subscribed once per dispatcher and
 * shared by every wait and every listener.
 */
export class EventBus {
  private readonly listeners = new Set<(event: StateEvent) => void>();
  private readonly reconnectListeners = new Set<() => void>();
  private subscribed: Promise<void> | undefined;
  private connections = 0;

  constructor(
    private readonly subscriber: Redis,
    private readonly channel: string,
  ) {
    // ioredis subscribes again by itself after a reconnect; what was published meanwhile is lost.
    subscriber.on("ready", () => {
      if ((this.connections += 1) > 1) for (const listener of this.reconnectListeners) listener();
    });
    if (subscriber.status === "ready") this.connections = 1;
    subscriber.on("message", (from: string, message: string) => {
      if (from !== this.channel) return;
      let event: StateEvent;
      try {
        event = JSON.parse(message) as StateEvent;
      } catch {
        return; // not ours
      }
      if (typeof event?.jobId !== "string") return;
      for (const listener of this.listeners) listener(event);
    });
  }

  /** Resolves once the subscription is in place (events published from then on arrive). */
  ready(): Promise<void> {
    this.subscribed ??= (async () => {
      await this.subscriber.subscribe(this.channel);
    })();
    this.subscribed.catch(() => (this.subscribed = undefined));
    return this.subscribed;
  }

  /** Adds a listener; returns its removal. */
  listen(listener: (event: StateEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Called after the subscription was lost and is back (events may have been missed). */
  onReconnect(listener: () => void): () => void {
    this.reconnectListeners.add(listener);
    return () => this.reconnectListeners.delete(listener);
  }
}

/** What to listen to: one job, the jobs of one batch, or (neither) every job of the queue. */
export interface EventScope {
  jobId?: string;
  batchId?: string;
}

/** Listeners for a job's end and its progress. A listener that throws is ignored. */
export interface EventHandlers {
  /** A job completed: its final record. */
  completed?: (record: ResultRecord) => void;
  /** A job failed for good (including cancelled): its final record. */
  failed?: (record: ResultRecord) => void;
  /** A running job reported progress (steps, tool calls, tokens, cost, last tool, status). */
  progress?: (jobId: string, progress: Progress) => void;
  /** A job was parked in state `awaiting-approval`: its record, with the ask in `approval`. */
  ask?: (record: ResultRecord) => void;
}

export type DispatchEventName = keyof EventHandlers;

export interface Subscription {
  /** Stops the listeners; the shared Redis subscription stays for the others. */
  close(): void;
}

interface Entry {
  scope: EventScope;
  handlers: EventHandlers;
}

/**
 * Completion and progress listeners on the shared event bus. A final-state event is turned into
 * the job's record with one read, whatever the number of listeners. Events are pub/sub: one
 * published while the dispatcher was disconnected is not replayed (use `wait` or webhooks where
 * every notification counts).
 */
export class Subscriptions {
  private readonly entries = new Set<Entry>();
  private unlisten: (() => void) | undefined;

  constructor(
    private readonly bus: EventBus,
    private readonly deps: {
      record: (jobId: string) => Promise<ResultRecord | null>;
      inBatch: (batchId: string, jobId: string) => Promise<boolean>;
    },
  ) {}

  async subscribe(handlers: EventHandlers, scope: EventScope = {}): Promise<Subscription> {
    const entry: Entry = { scope, handlers };
    this.entries.add(entry);
    this.unlisten ??= this.bus.listen((event) => void this.dispatch(event));
    try {
      await this.bus.ready();
    } catch (error) {
      this.entries.delete(entry);
      throw error;
    }
    return { close: () => void this.entries.delete(entry) };
  }

  close(): void {
    this.entries.clear();
    this.unlisten?.();
    this.unlisten = undefined;
  }

  private async dispatch(event: StateEvent): Promise<void> {
    const isProgress = event.progress !== undefined;
    const isAsk = !isProgress && event.state === "awaiting-approval";
    if (!isProgress && !isAsk && !isFinal(event.state)) return;
    const wanted = [...this.entries].filter((e) =>
      isProgress ? e.handlers.progress : isAsk ? e.handlers.ask : e.handlers.completed || e.handlers.failed,
    );
    if (wanted.length === 0) return;
    const batches = new Map<string, Promise<boolean>>();
    const matches = async ({ scope }: Entry): Promise<boolean> => {
      if (scope.jobId !== undefined && scope.jobId !== event.jobId) return false;
      if (scope.batchId === undefined) return true;
      let member = batches.get(scope.batchId);
      if (!member)
        batches.set(scope.batchId, (member = this.deps.inBatch(scope.batchId, event.jobId).catch(() => false)));
      return member;
    };
    const targets: Entry[] = [];
    for (const entry of wanted) if (await matches(entry)) targets.push(entry);
    if (targets.length === 0) return;
    if (isProgress) {
      for (const { handlers } of targets) safely(() => handlers.progress?.(event.jobId, event.progress!));
      return;
    }
    const record = await this.deps.record(event.jobId).catch(() => null);
    if (isAsk) {
      if (record?.state !== "awaiting-approval") return; // already answered
      for (const { handlers } of targets) safely(() => handlers.ask?.(record));
      return;
    }
    if (!record || !isFinal(record.state)) return;
    for (const { handlers } of targets) {
      if (!this.entries.size) return;
      safely(() => (record.state === "completed" ? handlers.completed?.(record) : handlers.failed?.(record)));
    }
  }
}

function safely(fn: () => void): void {
  try {
    fn();
  } catch {
    // a listener's own failure is its business
  }
}
