import { parseDuration } from "./duration.js";
import { InputError } from "./errors.js";

/** A cap on concurrently running jobs, or on jobs started per period, for matching models. */
export interface FlowLimit {
  /** `provider` or `provider/model`; `*` matches every model. */
  pattern: string;
  limit: number;
  /** Rate limits only: the period the limit counts over. */
  periodMs?: number;
}

export interface FlowSettings {
  /** Caps on running jobs per model or provider, across all workers. */
  concurrency: FlowLimit[];
  /** Caps on jobs started per period per model or provider, across all workers. */
  rate: FlowLimit[];
  /** Running jobs allowed per `concurrencyKey`. */
  keyConcurrency: number;
}

/**
 * Parses `fake=2,openai/gpt-4o=8` (concurrency) or `anthropic=50/1m,openai=10/s` (rate: jobs
 * started per period). Throws InputError naming the bad entry.
 */
export function parseLimits(spec: string | undefined, kind: "concurrency" | "rate", name: string): FlowLimit[] {
  if (!spec?.trim()) return [];
  return spec.split(",").map((entry) => {
    const match = /^\s*([^=\s]+)\s*=\s*(\d+)(?:\s*\/\s*(\S+))?\s*$/.exec(entry);
    const limit = Number(match?.[2]);
    if (!match || !Number.isSafeInteger(limit) || limit < 1) {
      throw new InputError(`${name}: "${entry.trim()}" is not PATTERN=N${kind === "rate" ? "/PERIOD" : ""}`);
    }
    if (kind === "concurrency") {
      if (match[3]) throw new InputError(`${name}: "${entry.trim()}" has a period; concurrency limits are PATTERN=N`);
      return { pattern: match[1]!, limit };
    }
    if (!match[3]) throw new InputError(`${name}: "${entry.trim()}" needs a period, e.g. ${match[1]}=${limit}/1m`);
    let periodMs: number;
    try {
      periodMs = parseDuration(/^\d/.test(match[3]) ? match[3] : `1${match[3]}`);
    } catch (error) {
      throw new InputError(`${name}: "${entry.trim()}": ${(error as Error).message}`);
    }
    if (periodMs <= 0) throw new InputError(`${name}: "${entry.trim()}": the period must be greater than zero`);
    return { pattern: match[1]!, limit, periodMs };
  });
}

/** The limits that apply to a model (`provider/model`, or undefined for the server's default). */
export function limitsFor(limits: readonly FlowLimit[], model: string | undefined): FlowLimit[] {
  const provider = model?.split("/")[0];
  return limits.filter(
    (l) => l.pattern === "*" || l.pattern === model || (provider !== undefined && l.pattern === provider),
  );
}
