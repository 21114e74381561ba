/**
 * The unattended watch over one running session: answers permission asks by policy (or parks
 * them for a person), rejects questions, stops opencode's provider retry loop, counts spend
 * against budgets, and notices a stalled or silent session. One class because all of it follows
 * the same event stream and session state.
 */
import type { AssistantMessage, Part } from "@opencode-ai/sdk/v2";
import type { Logger } from "../../shared/logger.js";
import type { Ask, Progress } from "../../shared/result.js";
import type { EventHub, ServerEvent } from "../server/event-hub.js";
import { checkBudget, ModelError, ProviderBusyError, StoppedError } from "../failures.js";
import type { OpencodeClient } from "../server/opencode-client.js";
import type { ApprovalPolicy } from "../../shared/task.js";
import { ApprovalNeededError, covers, type Grant } from "./approvals.js";
import type { BudgetGuard } from "./budget-guard.js";
import {
  classifyFailure,
  DEFAULT_PROVIDER_HOLD_MS,
  isProviderBusyMessage,
  retryStatusError,
} from "../queue/retry-policy.js";

/** No event for this long while a prompt runs makes the watch poll (see SessionWatch.poll). */
const QUIET_MS = 5_000;

export interface WatchOptions {
  client: OpencodeClient;
  hub: EventHub;
  sessionId: string;
  /** The session's directory (opencode keeps pending asks per directory). */
  directory: string | undefined;
  log: Logger;
  /**
   * What a permission ask gets: approved once, rejected (like `opencode run`), or (`manual`) the
   * attempt stops with ApprovalNeededError so that the job waits for a person.
   */
  approval: ApprovalPolicy;
  /** Asks a person approved (see approvals.ts): answered once at once, whatever the policy. */
  grants?: Grant[];
  maxCost?: number;
  maxTokens?: number;
  /** Makes the caps exact on a spawned server: no model call after the step that passed them. */
  guard?: BudgetGuard;
  /** What earlier attempts of the job spent: the caps hold for all attempts together. */
  spentBefore?: { tokens: number; cost: number };
  /** No event for this long aborts the attempt as stalled. */
  stallMs: number;
  /** opencode's own provider retries tolerated before the worker takes over the decision. */
  providerRetries: number;
  /** How long a manual ask waits for a person (its `timeoutAt`). */
  approvalTimeoutMs?: number;
  /** Stops the attempt; the reason is what the attempt fails with. */
  abort: (reason: Error) => void;
  onProgress?: (progress: Progress) => void;
}

/**
 * Watches one session while a prompt runs, through the server's event stream: answers permission
 * asks and questions so nothing waits for a person, stops opencode's retry loop when the provider
 * error is hopeless, enforces the budget, notices a stall, and reports progress.
 */
export class SessionWatch {
  readonly asks: Ask[] = [];
  readonly progress: Progress = { steps: 0, toolCalls: 0, tokens: 0, cost: 0, lastTool: null, status: "busy" };
  private readonly usage = new Map<string, { tokens: number; cost: number }>();
  private readonly toolCalls = new Set<string>();
  private readonly answered = new Set<string>();
  private lastEventAt = Date.now();
  private lastRetryError: ModelError | undefined;
  private progressTimer: NodeJS.Timeout | undefined;
  private readonly stallTimer: NodeJS.Timeout;
  /** The job's session and the subagent sessions it started, each with its unsubscribe. */
  private readonly sessions = new Map<string, () => void>();
  private readonly offConnect: () => void;
  private stopped = false;
  private polling = false;
  private lastPollAt = 0;

  constructor(private readonly opts: WatchOptions) {
    this.watch(opts.sessionId);
    this.offConnect = opts.hub.onConnect(() => void this.answerPending());
    this.stallTimer = setInterval(
      () => {
        const quiet = Date.now() - this.lastEventAt;
        if (quiet <= opts.stallMs && quiet >= Math.min(QUIET_MS, opts.stallMs / 2)) void this.poll();
        if (quiet > opts.stallMs) {
          this.stop(new StoppedError("stall", `no progress from opencode for ${Math.round(opts.stallMs / 1000)} s`));
          opts.hub.reportStall(); // the server may be wedged: its keeper checks it
        }
      },
      Math.min(1_000, opts.stallMs),
    ).unref();
    // No ask can come before the prompt this watch precedes; after a reconnect, catch up.
  }

  private watch(sessionId: string): void {
    this.opts.guard?.open(sessionId); // also once stopped: a subagent started meanwhile is refused too
    if (this.sessions.has(sessionId) || this.stopped) return;
    this.sessions.set(
      sessionId,
      this.opts.hub.subscribe(sessionId, (event, directory) => this.onEvent(event, directory)),
    );
  }

  private onEvent(event: ServerEvent, directory: string): void {
    this.lastEventAt = Date.now();
    switch (event.type) {
      case "session.created": {
        // A subagent (the task tool) runs in a child session: its asks must be answered too.
        const child = event.properties.info;
        if (child.parentID && this.sessions.has(child.parentID)) this.watch(child.id);
        return;
      }
      case "message.part.updated":
        return this.onPart(event.properties.part);
      case "message.updated":
        if (event.properties.info.role === "assistant") this.onAssistant(event.properties.info);
        return;
      case "session.status": {
        const status = event.properties.status;
        this.progress.status = status.type;
        if (status.type === "retry") this.onProviderRetry(status.attempt, status.message, status.next);
        return this.reportProgress();
      }
      case "permission.asked":
        return void this.answerPermission(event.properties, directory);
      case "question.asked":
        return void this.rejectQuestion(event.properties, directory);
      default:
        return;
    }
  }

  private onPart(part: Part): void {
    if (part.type === "tool" && !this.toolCalls.has(part.callID)) {
      this.toolCalls.add(part.callID);
      this.progress.toolCalls = this.toolCalls.size;
      this.progress.lastTool = part.tool;
      this.reportProgress();
    } else if (part.type === "step-finish") {
      this.progress.steps += 1;
      this.reportProgress();
    } else if (part.type === "retry") {
      this.lastRetryError = new ModelError(part.error.name, part.error.data);
      this.onProviderRetry(part.attempt, part.error.data.message, undefined);
    }
  }

  private onAssistant(info: AssistantMessage): void {
    const t = info.tokens;
    this.usage.set(info.id, {
      tokens: t.input + t.output + t.reasoning + t.cache.read + t.cache.write,
      cost: info.cost,
    });
    let tokens = 0;
    let cost = 0;
    for (const u of this.usage.values()) {
      tokens += u.tokens;
      cost += u.cost;
    }
    this.progress.tokens = tokens;
    this.progress.cost = cost;
    this.reportProgress();
    const before = this.opts.spentBefore ?? { tokens: 0, cost: 0 };
    const overBudget = checkBudget(this.opts, tokens + before.tokens, cost + before.cost);
    if (overBudget) this.opts.guard?.stop(overBudget.message);
    // A finished step, counted: the guard lets the session's next model call go (or refuses it).
    if (info.time.completed) this.opts.guard?.counted(info.sessionID, info.id);
    if (overBudget) this.stop(overBudget);
  }

  /**
   * opencode retries provider errors itself, for a minute or more and even on some 4xx. Stop it
   * at once when the error is one no retry fixes, and after `providerRetries` tries otherwise,
   * so the job's own retry policy (with backoff and Retry-After) decides.
   */
  private onProviderRetry(attempt: number, message: string, next: number | undefined): void {
    const error = this.lastRetryError ?? new ModelError("APIError", retryStatusError(message));
    const decision = classifyFailure(error);
    const waitMs = next === undefined ? 0 : next - Date.now();
    if (error.data.statusCode === 429 || isProviderBusyMessage(message)) {
      // Over the provider's quota: every call now only adds to the count against the account.
      // Stop opencode's own retry; the queue holds the provider for all workers until `next`.
      this.opts.log.info({ attempt, message, waitMs }, "provider is over its quota; stopping opencode's retries");
      this.stop(new ProviderBusyError(next ?? Date.now() + DEFAULT_PROVIDER_HOLD_MS, message));
    } else if (!decision.retryable) {
      this.opts.log.info({ attempt, message }, "provider error is not retryable; stopping opencode's retries");
      this.stop(error);
    } else if (attempt > this.opts.providerRetries || waitMs > 60_000) {
      this.opts.log.info({ attempt, message, waitMs }, "provider keeps failing; handing the retry to the queue");
      // opencode's own next try says how long the provider asked to wait: the queue honours it.
      const retryAfter = waitMs > 0 ? { "retry-after": String(Math.ceil(waitMs / 1000)) } : undefined;
      this.stop(
        retryAfter
          ? new ModelError(error.errorName, {
              ...error.data,
              responseHeaders: { ...error.data.responseHeaders, ...retryAfter },
            })
          : error,
      );
    }
  }

  private async answerPermission(
    ask: {
      id: string;
      sessionID: string;
      permission: string;
      patterns: string[];
      always?: string[];
      tool?: { callID: string };
    },
    directory: string | undefined,
  ): Promise<void> {
    if (this.answered.has(ask.id) || this.stopped) return;
    this.answered.add(ask.id);
    const grants = this.opts.grants ?? [];
    const grant = grants.find((g) => covers(g, ask));
    if (grant?.once) grants.splice(grants.indexOf(grant), 1); // spent
    if (!grant && this.opts.approval === "manual") {
      const at = new Date();
      const pending = {
        id: ask.id,
        permission: ask.permission,
        patterns: ask.patterns,
        always: ask.always ?? [],
        tool: null,
        words: null,
        askedAt: at.toISOString(),
        timeoutAt: new Date(at.getTime() + (this.opts.approvalTimeoutMs ?? 0)).toISOString(),
      };
      this.opts.log.info(
        { permission: ask.permission, patterns: ask.patterns },
        "a permission ask waits for a person; parking the job",
      );
      this.stop(new ApprovalNeededError(pending, ask.sessionID, ask.tool?.callID));
      return;
    }
    const reply = grant || this.opts.approval === "approve" ? "once" : "reject";
    this.asks.push({
      kind: "permission",
      what: ask.permission,
      patterns: ask.patterns,
      answer: reply,
      at: new Date().toISOString(),
      by: grant ? grant.by : "policy",
    });
    this.opts.log.info(
      { permission: ask.permission, patterns: ask.patterns, reply, by: grant ? grant.by : "policy" },
      "answered a permission ask",
    );
    await this.opts.client.permission
      .reply({ requestID: ask.id, directory, reply }, { signal: AbortSignal.timeout(10_000) })
      .catch((error: unknown) => this.opts.log.warn({ err: error }, "permission reply failed"));
  }

  private async rejectQuestion(
    question: { id: string; questions: { question: string }[] },
    directory: string | undefined,
  ): Promise<void> {
    if (this.answered.has(question.id)) return;
    this.answered.add(question.id);
    const what = question.questions.map((q) => q.question).join(" / ");
    this.asks.push({
      kind: "question",
      what,
      patterns: [],
      answer: "reject",
      at: new Date().toISOString(),
      by: "policy",
    });
    this.opts.log.info({ question: what }, "rejected a question (no one is there to answer it)");
    await this.opts.client.question
      .reject({ requestID: question.id, directory }, { signal: AbortSignal.timeout(10_000) })
      .catch((error: unknown) => this.opts.log.warn({ err: error }, "question reject failed"));
  }

  /** Catches asks made while the event stream was away (or before this watch began). */
  /**
   * The event stream has been silent for a while: opencode has had releases whose stream sent only
   * heartbeats, and asks inside subagents that never reached it. Asks are answered, and the
   * session's retry status is read, by polling instead (at most every QUIET_MS). Polling does not
   * count as progress, so a stall is still seen.
   */
  private async poll(): Promise<void> {
    if (this.polling || this.stopped || Date.now() - this.lastPollAt < QUIET_MS) return;
    this.polling = true;
    this.lastPollAt = Date.now();
    try {
      await this.answerPending();
      const statuses = await this.opts.client.session
        .status({ directory: this.opts.directory }, { signal: AbortSignal.timeout(10_000) })
        .catch(() => undefined);
      const status = statuses?.data?.[this.opts.sessionId];
      if (!status || this.stopped) return;
      this.progress.status = status.type;
      if (status.type === "retry") this.onProviderRetry(status.attempt, status.message, status.next);
    } finally {
      this.polling = false;
    }
  }

  private async answerPending(): Promise<void> {
    const signal = AbortSignal.timeout(10_000);
    const [permissions, questions] = await Promise.all([
      this.opts.client.permission.list({ directory: this.opts.directory }, { signal }).catch(() => undefined),
      this.opts.client.question.list({ directory: this.opts.directory }, { signal }).catch(() => undefined),
    ]);
    for (const ask of permissions?.data ?? [])
      if (this.sessions.has(ask.sessionID)) await this.answerPermission(ask, this.opts.directory);
    for (const q of questions?.data ?? [])
      if (this.sessions.has(q.sessionID)) await this.rejectQuestion(q, this.opts.directory);
  }

  private reportProgress(): void {
    if (!this.opts.onProgress || this.progressTimer) return;
    this.progressTimer = setTimeout(() => {
      this.progressTimer = undefined;
      if (!this.stopped) this.opts.onProgress?.({ ...this.progress });
    }, 500);
  }

  private stop(reason: Error): void {
    if (this.stopped) return;
    this.stopped = true;
    this.opts.abort(reason);
  }

  close(): void {
    if (this.progressTimer && !this.stopped) this.opts.onProgress?.({ ...this.progress }); // the last word
    this.stopped = true;
    clearInterval(this.stallTimer);
    clearTimeout(this.progressTimer);
    this.sessions.forEach((unsubscribe) => unsubscribe());
    this.sessions.clear();
    this.offConnect();
  }
}
