/**
 * The environment, read once: every DISPATCH_* variable (and REDIS_URL, LOG_LEVEL, OTEL_*) with
 * its schema, default and documentation, resolved into typed Config. Nothing else reads
 * process.env, so its length is the number of settings.
 */
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { parseDuration, TIMER_LIMITS, type DurationLimits } from "./duration.js";
import { InputError } from "./errors.js";
import { ApprovalPolicy, describeIssues } from "./task.js";
import { parseLimits, type FlowSettings } from "./flow-limits.js";

/** Result records may be kept this long at most (0 keeps them for ever): 10 years. */
const RESULT_TTL_MAX_MS = 3_650 * 86_400_000;

/**
 * Queue names become part of Redis keys. A name begins with a letter or digit, so BullMQ's keys
 * (`dispatch:{q}:<q>:…`) never meet the project's own (`dispatch:{q}:#…`, see keys.ts).
 */
export const QueueName = z
  .string()
  .min(1)
  .max(100)
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, "may hold only letters, digits, '_', '.', '-'");

const duration = (limits: DurationLimits = {}) =>
  z.string().transform((value, ctx) => {
    try {
      return parseDuration(value, limits);
    } catch (error) {
      ctx.addIssue({ code: "custom", message: (error as Error).message });
      return z.NEVER;
    }
  });
/** A duration that must be positive. */
const positive = () => duration({ min: 1 });
const size = z.string().transform((value, ctx) => {
  try {
    return parseSize(value);
  } catch (error) {
    ctx.addIssue({ code: "custom", message: (error as Error).message });
    return z.NEVER;
  }
});
const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

/**
 * Every setting read from the environment, in one place. Nothing else reads `process.env`.
 * The variable names are documented in the README (Configuration).
 */
const EnvSchema = z.object({
  /** @defaultValue redis://127.0.0.1:6379 */
  REDIS_URL: z.string().url().default("redis://127.0.0.1:6379"),
  /** @defaultValue opencode-dispatch */
  DISPATCH_QUEUE: QueueName.default("opencode-dispatch"),
  /** Jobs a worker runs at once. @defaultValue 4 */
  DISPATCH_CONCURRENCY: int(1, 1_000).default(4),
  /** Attempts per job unless the job says. @defaultValue 3 */
  DISPATCH_ATTEMPTS: int(1, 100).default(3),
  /** Per-attempt timeout unless the job says. @defaultValue 30m */
  DISPATCH_JOB_TIMEOUT: positive().prefault("30m"),
  /** How long result records are kept; 0 keeps them forever. @defaultValue 30d */
  DISPATCH_RESULT_TTL: duration({ max: RESULT_TTL_MAX_MS }).prefault("30d"),
  /** How long a stopping worker lets running jobs finish before handing them back. @defaultValue 30s */
  DISPATCH_SHUTDOWN_GRACE: duration().prefault("30s"),
  /** A running job with no event from opencode for this long is aborted and retried. @defaultValue 10m */
  DISPATCH_STALL_TIMEOUT: positive().prefault("10m"),
  /** opencode's own provider retries tolerated before the queue's retry policy takes over. @defaultValue 2 */
  DISPATCH_PROVIDER_RETRIES: int(0, 20).default(2),
  /** What permission asks get, for jobs that do not say: reject, approve (once) or manual. @defaultValue reject */
  DISPATCH_APPROVAL: ApprovalPolicy.optional(),
  /** The older name of DISPATCH_APPROVAL=approve (true) / reject (false); DISPATCH_APPROVAL wins. @defaultValue false */
  DISPATCH_AUTO_APPROVE: z
    .enum(["true", "false", "1", "0"])
    .default("false")
    .transform((v) => v === "true" || v === "1"),
  /** A manual ask no one answered within this long is rejected, for jobs that do not say. @defaultValue 24h */
  DISPATCH_APPROVAL_TIMEOUT: positive().prefault("24h"),
  /** Caps on running jobs per provider or model, shared by all workers: `anthropic=4,openai/gpt-4o=2`. */
  DISPATCH_CONCURRENCY_LIMITS: z.string().optional(),
  /** Caps on jobs started per period per provider or model, shared by all workers: `anthropic=50/1m`. */
  DISPATCH_RATE_LIMITS: z.string().optional(),
  /** Running jobs allowed per task `concurrencyKey`. @defaultValue 1 */
  DISPATCH_KEY_CONCURRENCY: int(1, 10_000).default(1),
  /**
   * Fair share: at most this many jobs wait ready in the queue; the others wait in their group's
   * lane and are let in round robin across groups as jobs start. @defaultValue 1
   */
  DISPATCH_FAIR_WINDOW: int(1, 100_000).default(1),
  /** Keep opencode's per-step git snapshots of the working directory (slow on big directories). @defaultValue false */
  DISPATCH_SNAPSHOTS: z
    .enum(["true", "false", "1", "0"])
    .default("false")
    .transform((v) => v === "true" || v === "1"),
  /**
   * Exact budgets: spawned servers load the budget guard plugin, so no model call follows the step
   * that passed a job's cap (opencode then installs its plugin package once per config folder). @defaultValue false
   */
  DISPATCH_BUDGET_GUARD: z
    .enum(["true", "false", "1", "0"])
    .default("false")
    .transform((v) => v === "true" || v === "1"),
  /** Where a worker keeps its opencode server's data. @defaultValue $TMPDIR/opencode-dispatch */
  DISPATCH_DATA_DIR: z.string().min(1).default(join(tmpdir(), "opencode-dispatch")),
  /** Replace the spawned opencode server after this many jobs; 0: never. @defaultValue 0 */
  DISPATCH_RECYCLE_JOBS: int(0, 1_000_000_000).default(0),
  /** Replace the spawned opencode server once its resident memory passes this ("2GB"); unset: never. */
  DISPATCH_RECYCLE_RSS: size.optional(),
  /** How often a worker looks for jobs whose worker died (BullMQ stalledInterval). @defaultValue 30s */
  DISPATCH_STALLED_INTERVAL: duration(TIMER_LIMITS).prefault("30s"),
  /** How long a job's lock lasts without renewal (BullMQ lockDuration): a dead worker's job is recovered after this. @defaultValue 30s */
  DISPATCH_LOCK_DURATION: duration(TIMER_LIMITS).prefault("30s"),
  /** An opencode server to attach to instead of spawning one. */
  OPENCODE_URL: z.string().url().optional(),
  OPENCODE_SERVER_USERNAME: z.string().min(1).default("opencode"),
  OPENCODE_SERVER_PASSWORD: z.string().min(1).optional(),
  /** The opencode binary; defaults to the one from the `opencode-ai` package. */
  OPENCODE_BIN: z.string().min(1).optional(),
  /** Port of a worker's Prometheus `/metrics` and `/healthz` (like `worker --metrics-port`); unset: none. */
  DISPATCH_METRICS_PORT: int(0, 65_535).optional(),
  /** Dashboard basic-auth user. @defaultValue admin */
  DASHBOARD_USER: z.string().min(1).default("admin"),
  /** Dashboard basic-auth password; required when the dashboard binds beyond loopback. */
  DASHBOARD_PASSWORD: z.string().min(1).optional(),
  /** Host names the dashboard answers to besides loopback names and its --host (comma-separated; e.g. a proxy's name). */
  DASHBOARD_HOSTS: z.string().optional(),
  /** Run each spawned opencode server under bubblewrap (see worker --sandbox). @defaultValue false */
  DISPATCH_SANDBOX: z
    .enum(["true", "false", "1", "0"])
    .default("false")
    .transform((v) => v === "true" || v === "1"),
  /** Where sandboxed jobs may work (comma-separated absolute paths): read-write in the sandbox. */
  DISPATCH_SANDBOX_DIRS: z.string().optional(),
  /** Key of the HMAC-SHA256 signature on webhook deliveries (`X-Dispatch-Signature`); unset: unsigned. */
  DISPATCH_WEBHOOK_SECRET: z.string().min(1).optional(),
  /** Delivery attempts per webhook notification before it is given up. @defaultValue 12 */
  DISPATCH_WEBHOOK_ATTEMPTS: int(1, 100).default(12),
  /** First wait between webhook delivery attempts; doubles each time, capped at 1h. @defaultValue 5s */
  DISPATCH_WEBHOOK_BACKOFF: positive().prefault("5s"),
  /** Time limit of one webhook delivery attempt. @defaultValue 10s */
  DISPATCH_WEBHOOK_TIMEOUT: positive().prefault("10s"),
  /** pino level. @defaultValue info */
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
});

/** What permission asks get when neither DISPATCH_APPROVAL nor its older name DISPATCH_AUTO_APPROVE says. */
export const DEFAULT_APPROVAL: ApprovalPolicy = "reject";

type Setting = keyof typeof EnvSchema.shape;

/**
 * A setting's default as it is written in the environment (`30m`, `4`, `reject`): the schema's,
 * read from it, so that help texts never repeat it. Undefined for a setting that is off unless set.
 */
export function settingDefault(name: Setting): string | undefined {
  if (name === "DISPATCH_APPROVAL") return DEFAULT_APPROVAL;
  let def = (EnvSchema.shape[name] as unknown as { _zod: { def: ZodDef } })._zod.def;
  while (def.type === "pipe" && def.in) def = def.in._zod.def;
  return def.type === "default" || def.type === "prefault" ? String(def.defaultValue) : undefined;
}
interface ZodDef {
  type: string;
  defaultValue?: unknown;
  in?: { _zod: { def: ZodDef } };
}

/** How a command-line option's help names the setting it defaults to: `NAME, value` (or `NAME`). */
export function defaultFrom(name: Setting): string {
  const value = settingDefault(name);
  return value === undefined ? name : `${name}, ${value}`;
}

/** How long result records are kept unless DISPATCH_RESULT_TTL says. */
export const DEFAULT_RESULT_TTL_MS = EnvSchema.shape.DISPATCH_RESULT_TTL.parse(undefined);

export type Config = {
  redisUrl: string;
  queue: string;
  concurrency: number;
  attempts: number;
  jobTimeoutMs: number;
  resultTtlMs: number;
  shutdownGraceMs: number;
  stallMs: number;
  snapshots: boolean;
  /** Spawned servers load the budget guard plugin (DISPATCH_BUDGET_GUARD). */
  budgetGuard: boolean;
  flow: FlowSettings;
  /** Jobs ready in the queue at most; the rest wait in fair lanes (DISPATCH_FAIR_WINDOW). */
  fairWindow: number;
  providerRetries: number;
  /** What permission asks get for jobs that do not say (DISPATCH_APPROVAL, or its alias DISPATCH_AUTO_APPROVE). */
  approval: ApprovalPolicy;
  /** How long a manual ask waits for a person, for jobs that do not say (DISPATCH_APPROVAL_TIMEOUT). */
  approvalTimeoutMs: number;
  dataDir: string;
  /** Server recycling: after `jobs` jobs (0: never) or once its RSS passes `rssBytes` (undefined: never). */
  recycle: { jobs: number; rssBytes?: number };
  /** BullMQ stalled-job recovery: check interval and lock duration, in ms. */
  stalledIntervalMs: number;
  lockDurationMs: number;
  /** Where the user's opencode keeps its data (provider credentials in opencode/auth.json). */
  userDataHome: string;
  opencode: { url?: string; username: string; password?: string; bin?: string };
  /** Webhook delivery (worker side): signing secret, attempts, first backoff, per-attempt timeout. */
  webhook: { secret?: string; attempts: number; backoffMs: number; timeoutMs: number };
  logLevel: z.infer<typeof EnvSchema>["LOG_LEVEL"];
  metricsPort?: number;
  dashboard: { user: string; password?: string; hosts: string[] };
  /** `worker --sandbox`: spawned servers run under bubblewrap; jobs may work only in `dirs`. */
  sandbox: { enabled: boolean; dirs: string[] };
};

/** Every environment variable loadConfig reads. */
export const CONFIG_ENV_VARS: readonly string[] = Object.keys(EnvSchema.shape);

/** Reads the configuration from an environment (empty values count as unset). */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const present = Object.fromEntries(
    Object.entries(env).filter(([key, value]) => key in EnvSchema.shape && value !== ""),
  );
  const parsed = EnvSchema.safeParse(present);
  if (!parsed.success) throw new InputError(`configuration: ${describeIssues(parsed.error)}`);
  const e = parsed.data;
  return {
    redisUrl: e.REDIS_URL,
    queue: e.DISPATCH_QUEUE,
    concurrency: e.DISPATCH_CONCURRENCY,
    attempts: e.DISPATCH_ATTEMPTS,
    jobTimeoutMs: e.DISPATCH_JOB_TIMEOUT,
    resultTtlMs: e.DISPATCH_RESULT_TTL,
    shutdownGraceMs: e.DISPATCH_SHUTDOWN_GRACE,
    stallMs: e.DISPATCH_STALL_TIMEOUT,
    snapshots: e.DISPATCH_SNAPSHOTS,
    budgetGuard: e.DISPATCH_BUDGET_GUARD,
    flow: {
      concurrency: parseLimits(e.DISPATCH_CONCURRENCY_LIMITS, "concurrency", "DISPATCH_CONCURRENCY_LIMITS"),
      rate: parseLimits(e.DISPATCH_RATE_LIMITS, "rate", "DISPATCH_RATE_LIMITS"),
      keyConcurrency: e.DISPATCH_KEY_CONCURRENCY,
    },
    fairWindow: e.DISPATCH_FAIR_WINDOW,
    providerRetries: e.DISPATCH_PROVIDER_RETRIES,
    approval: e.DISPATCH_APPROVAL ?? (e.DISPATCH_AUTO_APPROVE ? "approve" : DEFAULT_APPROVAL),
    approvalTimeoutMs: e.DISPATCH_APPROVAL_TIMEOUT,
    dataDir: e.DISPATCH_DATA_DIR,
    recycle: { jobs: e.DISPATCH_RECYCLE_JOBS, rssBytes: e.DISPATCH_RECYCLE_RSS },
    stalledIntervalMs: e.DISPATCH_STALLED_INTERVAL,
    lockDurationMs: e.DISPATCH_LOCK_DURATION,
    userDataHome: env.XDG_DATA_HOME || join(env.HOME || homedir(), ".local", "share"),
    opencode: {
      url: e.OPENCODE_URL,
      username: e.OPENCODE_SERVER_USERNAME,
      password: e.OPENCODE_SERVER_PASSWORD,
      bin: e.OPENCODE_BIN,
    },
    webhook: {
      secret: e.DISPATCH_WEBHOOK_SECRET,
      attempts: e.DISPATCH_WEBHOOK_ATTEMPTS,
      backoffMs: e.DISPATCH_WEBHOOK_BACKOFF,
      timeoutMs: e.DISPATCH_WEBHOOK_TIMEOUT,
    },
    logLevel: e.LOG_LEVEL,
    metricsPort: e.DISPATCH_METRICS_PORT,
    sandbox: {
      enabled: e.DISPATCH_SANDBOX,
      dirs: (e.DISPATCH_SANDBOX_DIRS ?? "")
        .split(",")
        .map((d) => d.trim())
        .filter(Boolean),
    },
    dashboard: {
      user: e.DASHBOARD_USER,
      password: e.DASHBOARD_PASSWORD,
      hosts: (e.DASHBOARD_HOSTS ?? "")
        .split(",")
        .map((h) => h.trim())
        .filter(Boolean),
    },
  };
}

const SIZE_UNITS: Record<string, number> = { b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** Sizes: bytes ("1048576") or a number with a unit ("512MB", "2GB", "1.5G", "2GiB"); units are powers of 1024. */
export function parseSize(input: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|(b))?\s*$/i.exec(input);
  if (!match) throw new Error(`invalid size "${input}" (use e.g. 512MB, 2GB)`);
  const unit = (match[2] ?? match[3] ?? "b").toLowerCase();
  const bytes = Math.round(Number(match[1]) * (SIZE_UNITS[unit] ?? 1));
  if (bytes <= 0) throw new Error(`invalid size "${input}": must be greater than zero`);
  return bytes;
}

/** Checks a queue name given on the command line or to the library. */
export function checkQueueName(name: string): string {
  const parsed = QueueName.safeParse(name);
  if (!parsed.success) throw new InputError(`queue "${name}": ${parsed.error.issues[0]?.message}`);
  return name;
}

/** Where traces go and how (see shared/tracing.ts); read from the standard OTEL_* variables. */
export interface TracingConfig {
  /** Off unless OTEL_TRACES_EXPORTER names an exporter or an OTLP endpoint is set; OTEL_SDK_DISABLED=true turns it off. */
  enabled: boolean;
  /** OTEL_TRACES_EXPORTER, a list of `otlp` and `console` (`none`: off). @defaultValue otlp */
  exporters: ("otlp" | "console")[];
  /**
   * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as given, else OTEL_EXPORTER_OTLP_ENDPOINT + `/v1/traces`.
   * @defaultValue http://localhost:4318/v1/traces
   */
  endpoint: string;
  /** OTEL_EXPORTER_OTLP_TRACES_HEADERS, else OTEL_EXPORTER_OTLP_HEADERS (`k=v,k2=v2`). May hold credentials: never logged. */
  headers: Record<string, string>;
  /** OTEL_SERVICE_NAME. @defaultValue opencode-dispatch */
  serviceName: string;
  /** OTEL_BSP_SCHEDULE_DELAY: ms between two exports of finished spans. @defaultValue 5000 */
  scheduleDelayMs: number;
  /** OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, else OTEL_EXPORTER_OTLP_TIMEOUT: ms one export may take. @defaultValue 10000 */
  timeoutMs: number;
}

const TracingEnv = z.object({
  OTEL_SDK_DISABLED: z.enum(["true", "false"]).optional(),
  OTEL_TRACES_EXPORTER: z.string().optional(),
  OTEL_EXPORTER_OTLP_ENDPOINT: z.string().url().optional(),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: z.string().url().optional(),
  // Traces are sent as OTLP/HTTP JSON, which OTLP/HTTP receivers take whichever of the two HTTP encodings they prefer.
  OTEL_EXPORTER_OTLP_PROTOCOL: z.enum(["http/json", "http/protobuf"]).optional(),
  OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: z.enum(["http/json", "http/protobuf"]).optional(),
  OTEL_EXPORTER_OTLP_HEADERS: z.string().optional(),
  OTEL_EXPORTER_OTLP_TRACES_HEADERS: z.string().optional(),
  OTEL_SERVICE_NAME: z.string().min(1).default("opencode-dispatch"),
  OTEL_BSP_SCHEDULE_DELAY: int(1, 3_600_000).default(5_000),
  OTEL_EXPORTER_OTLP_TIMEOUT: int(1, 3_600_000).default(10_000),
  OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: int(1, 3_600_000).optional(),
});

/** The tracing settings of the OTEL_* variables (the standard names of the OpenTelemetry SDKs). */
export function tracingConfig(env: NodeJS.ProcessEnv = process.env): TracingConfig {
  const present = Object.fromEntries(
    Object.entries(env).filter(([key, value]) => key in TracingEnv.shape && value !== ""),
  );
  const parsed = TracingEnv.safeParse(present);
  if (!parsed.success) throw new InputError(`configuration: ${describeIssues(parsed.error)}`);
  const e = parsed.data;
  const named = (e.OTEL_TRACES_EXPORTER ?? "")
    .split(",")
    .map((name) => name.trim())
    .filter(Boolean);
  const unknown = named.filter((name) => !["otlp", "console", "none"].includes(name));
  if (unknown.length)
    throw new InputError(
      `configuration: OTEL_TRACES_EXPORTER: unsupported exporter "${unknown[0]}" (otlp, console or none)`,
    );
  const exporters = [...new Set(named.filter((name): name is "otlp" | "console" => name !== "none"))];
  const endpoint =
    e.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ??
    (e.OTEL_EXPORTER_OTLP_ENDPOINT ? `${e.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/+$/, "")}/v1/traces` : undefined);
  const asked = named.includes("none") ? false : named.length > 0 || endpoint !== undefined;
  return {
    enabled: e.OTEL_SDK_DISABLED !== "true" && asked,
    exporters: exporters.length ? exporters : ["otlp"],
    endpoint: endpoint ?? "http://localhost:4318/v1/traces",
    headers: parseOtlpHeaders(e.OTEL_EXPORTER_OTLP_TRACES_HEADERS ?? e.OTEL_EXPORTER_OTLP_HEADERS ?? ""),
    serviceName: e.OTEL_SERVICE_NAME,
    scheduleDelayMs: e.OTEL_BSP_SCHEDULE_DELAY,
    timeoutMs: e.OTEL_EXPORTER_OTLP_TRACES_TIMEOUT ?? e.OTEL_EXPORTER_OTLP_TIMEOUT,
  };
}

/** `k=v,k2=v%20w` → `{ k: "v", k2: "v w" }` (the OTLP headers format: values URL-encoded). */
function parseOtlpHeaders(raw: string): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const pair of raw.split(",")) {
    const at = pair.indexOf("=");
    if (at <= 0) continue;
    headers[decoded(pair.slice(0, at).trim())] = decoded(pair.slice(at + 1).trim());
  }
  return headers;
}

const decoded = (text: string) => {
  try {
    return decodeURIComponent(text);
  } catch {
    return text; // a lone `%`: taken as written
  }
};
