import { limitsFor, type FlowSettings } from "../shared/flow-limits.js";

/** How long the starts of calls to a provider are remembered (what a 429 learns its rate from). */
const QUOTA_HISTORY_MS = 10 * 60_000;

/**
 * What may keep a job from starting, in the order checked. Each gate has a name that says its
 * kind by its first letter (the scripts and the sweep read it):
 *   c:<job>        its turn in a session's chain (or the job it forks): that job has a final record
 *   g:<batch>      a gathering parent: every member of its batch has ended
 *   h:<provider>   the provider is held after a "too many requests" answer
 *   q:<provider>   the provider's learned rate (only once a 429 taught one)
 *   m:<pattern>    a model or provider concurrency cap (DISPATCH_CONCURRENCY_LIMITS)
 *   k:<key>        a concurrency key (DISPATCH_KEY_CONCURRENCY per key)
 *   r:<pattern>    a model or provider rate cap (DISPATCH_RATE_LIMITS; sliding window)
 */
export interface Gate {
  kind: "c" | "g" | "h" | "q" | "s" | "r";
  name: string;
  a: string | number;
  b: string | number;
}

/** What of a job decides its gates. */
export interface GatedJob {
  model?: string | undefined;
  concurrencyKey?: string | undefined;
  /** The job it runs after in its thread. */
  after?: string | undefined;
  /** The job whose session it copies: it runs once that job has ended, like a follow-up. */
  fork?: string | undefined;
  /** A parent that gathers a batch's results: it runs once every member has ended. */
  gather?: { batch: string } | undefined;
}

/**
 * A gathering parent whose batch's members all ended without waking it (one removed without a
 * record is not counted as it ends) looks again by itself after this long.
 */
export const GATHER_BACKSTOP_MS = 10 * 60_000;

/** How long a predecessor that took its place in a thread but was never added is waited for. */
export const PLACEMENT_GRACE_MS = 10 * 60_000;

/** The provider a model belongs to (`default` for the server's default model). */
export const providerOf = (model: string | undefined): string => model?.split("/")[0] || "default";

export function gatesFor(jobId: string, job: GatedJob, flow: FlowSettings): Gate[] {
  const gates: Gate[] = [];
  const before = job.after ?? job.fork;
  if (before && before !== jobId) gates.push({ kind: "c", name: `c:${before}`, a: before, b: PLACEMENT_GRACE_MS });
  if (job.gather) gates.push({ kind: "g", name: `g:${job.gather.batch}`, a: job.gather.batch, b: GATHER_BACKSTOP_MS });
  const provider = providerOf(job.model);
  gates.push({ kind: "h", name: `h:${provider}`, a: provider, b: "" });
  gates.push({ kind: "q", name: `q:${provider}`, a: provider, b: QUOTA_HISTORY_MS });
  for (const l of limitsFor(flow.concurrency, job.model))
    gates.push({ kind: "s", name: `m:${l.pattern}`, a: l.limit, b: "" });
  if (job.concurrencyKey) gates.push({ kind: "s", name: `k:${job.concurrencyKey}`, a: flow.keyConcurrency, b: "" });
  for (const l of limitsFor(flow.rate, job.model))
    gates.push({ kind: "r", name: `r:${l.pattern}`, a: l.limit, b: l.periodMs! });
  return gates;
}

/** The gates that hold a lease for the whole attempt (released when it ends). */
export const slotGates = (gates: readonly Gate[]): Gate[] => gates.filter((g) => g.kind === "s");

/** What a waiting job waits for, in words (`status` shows it). */
export function describeWait(gate: string, why: string, untilMs: number): string {
  const name = gate.slice(2);
  const at = untilMs > 0 ? ` until ${new Date(untilMs).toISOString()}` : "";
  switch (gate[0]) {
    case "c":
      return `waiting for job ${name}${at ? ` (placed but not yet added; waited for${at})` : ""}`;
    case "g": {
      const [ended, total] = why.split("/");
      return Number(total) < 0
        ? `waiting for its children (batch ${name} is still being enqueued)`
        : `waiting for its children: ${ended} of ${total} ended (batch ${name})`;
    }
    case "h":
      return `provider ${name} held${at}`;
    case "q":
      return `waiting for provider ${name}'s rate (${rateWords(why)})${at}`;
    case "m":
      return `waiting for a slot of ${name} (${why})`;
    case "k":
      return `waiting for concurrency key ${name} (${why})`;
    case "r":
      return `waiting for the rate of ${name} (${rateWords(why)})${at}`;
    case "l":
      return "waiting for its turn among the groups with work (fair share)";
    default:
      return `waiting at ${gate}`;
  }
}

function rateWords(why: string): string {
  const [count, limit, period] = why.split("/");
  return `${count}/${limit} per ${Number(period) / 1000} s`;
}
