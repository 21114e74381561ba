/**
 * OpenTelemetry traces of a job: an `enqueue` span where the producer adds it, an `attempt` span
 * each time a worker picks it up (a child of `enqueue`: the producer's W3C `traceparent` travels
 * in the job's data), and an `opencode …` span for each HTTP call the attempt makes to its
 * opencode server.
 *
 * Everything here but `startTracing` speaks only to `@opentelemetry/api`: with no SDK registered
 * (tracing off, the default) every span is a no-op and no `traceparent` is written; an app that
 * registers its own SDK gets the library's spans in its traces. `startTracing` registers this
 * project's SDK, for the CLI, when the OTEL_* variables ask for it (TracingConfig in config.ts).
 */
import {
  context,
  propagation,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
} from "@opentelemetry/api";
import { DelayedError, WaitingError, type Job } from "bullmq";
import type { TracingConfig } from "./config.js";

const TRACER = "opencode-dispatch";
const tracer = () => trace.getTracer(TRACER);

/** The W3C trace context of `span` (or of the active span), or undefined when it is not traced. */
export function traceparentOf(span?: Span): string | undefined {
  const carrier: Record<string, string> = {};
  propagation.inject(span ? trace.setSpan(context.active(), span) : context.active(), carrier);
  return carrier.traceparent;
}

/** The context a `traceparent` names (the active one when there is none). */
export function contextOf(traceparent: unknown): Context {
  if (typeof traceparent !== "string") return context.active();
  return propagation.extract(context.active(), { traceparent });
}

/** Runs `fn` in a new span, ended when it settles; a throw is recorded unless `quiet` says it is no failure. */
export async function inSpan<T>(
  name: string,
  opts: { kind: SpanKind; attributes?: Attributes; parent?: Context; quiet?: (error: unknown) => string | undefined },
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  const parent = opts.parent ?? context.active();
  const span = tracer().startSpan(name, { kind: opts.kind, attributes: opts.attributes }, parent);
  try {
    return await context.with(trace.setSpan(parent, span), () => fn(span));
  } catch (error) {
    const outcome = opts.quiet?.(error);
    if (outcome) span.setAttribute("dispatch.outcome", outcome);
    else failed(span, error);
    throw error;
  } finally {
    span.end();
  }
}

function failed(span: Span, error: unknown): void {
  span.recordException(error instanceof Error ? error : String(error));
  span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
}

/**
 * One `enqueue` span per job about to be added, each a child of the caller's active span.
 * `traceparents[i]` goes into job i's data; `end` closes them all once the add has settled.
 */
export function enqueueSpans(
  queue: string,
  jobs: readonly { jobId: string; model?: string }[],
): { traceparents: (string | undefined)[]; end(error?: unknown): void } {
  const spans = jobs.map(({ jobId, model }) =>
    tracer().startSpan("enqueue", {
      kind: SpanKind.PRODUCER,
      attributes: {
        "messaging.system": "bullmq",
        "messaging.destination.name": queue,
        "messaging.message.id": jobId,
        ...(model ? { "dispatch.model": model } : {}),
      },
    }),
  );
  return {
    traceparents: spans.map((span) => (span.isRecording() ? traceparentOf(span) : undefined)),
    end(error?: unknown) {
      for (const span of spans) {
        if (error !== undefined) failed(span, error);
        span.end();
      }
    },
  };
}

/**
 * A BullMQ processor whose every pick-up of a job runs in an `attempt` span, a child of the job's
 * `enqueue` span. A job handed back to wait (parked at a gate, asleep until its turn) is marked
 * `dispatch.outcome: parked`, not failed.
 */
export function traceAttempts<R>(
  queue: string,
  processor: (job: Job, token?: string, signal?: AbortSignal) => Promise<R>,
): (job: Job, token?: string, signal?: AbortSignal) => Promise<R> {
  // Three named parameters: BullMQ passes the cancel signal only to a processor whose length is 3.
  return (job, token, signal) =>
    inSpan(
      "attempt",
      {
        kind: SpanKind.CONSUMER,
        parent: contextOf((job.data as { traceparent?: unknown } | null)?.traceparent),
        attributes: {
          "messaging.system": "bullmq",
          "messaging.destination.name": queue,
          "messaging.message.id": job.id ?? "",
          "dispatch.attempt": job.attemptsMade + 1,
        },
        quiet: (error) => (error instanceof DelayedError || error instanceof WaitingError ? "parked" : undefined),
      },
      () => processor(job, token, signal),
    );
}

/** The span of one call to an opencode server, when the call is made inside a traced attempt. */
export function opencodeCallSpan(request: { method: string; url: string }): Span | undefined {
  if (!trace.getSpan(context.active())?.isRecording()) return undefined;
  const url = new URL(request.url);
  return tracer().startSpan(`opencode ${request.method} ${route(url.pathname)}`, {
    kind: SpanKind.CLIENT,
    attributes: {
      "http.request.method": request.method,
      "server.address": url.hostname,
      "server.port": Number(url.port) || (url.protocol === "https:" ? 443 : 80),
      "url.path": url.pathname,
    },
  });
}

/** Ends an opencode call's span with its response status, or the error the call threw. */
export function endOpencodeCall(span: Span | undefined, outcome: { status: number } | { error: unknown }): void {
  if (!span) return;
  if ("status" in outcome) {
    span.setAttribute("http.response.status_code", outcome.status);
    if (outcome.status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
  } else failed(span, outcome.error);
  span.end();
}

/** `/session/ses_x/message` → `/session/{id}/message`: one span name per route, not per session. */
function route(path: string): string {
  return path.replace(/\/(ses|msg|prt|per|que)_[A-Za-z0-9]+/g, "/{id}");
}

/** What `startTracing` returns: `close()` flushes the spans not yet exported, then stops (idempotent). */
export interface Tracing {
  close(): Promise<void>;
}

/**
 * Registers a tracer provider (W3C propagation, async-local context) exporting to what `config`
 * names, when it says tracing is on; a no-op handle when it is off. The SDK is loaded only then.
 */
export async function startTracing(config: TracingConfig): Promise<Tracing> {
  if (!config.enabled) return { close: async () => undefined };
  const [
    { NodeTracerProvider },
    { BatchSpanProcessor, ConsoleSpanExporter },
    { OTLPTraceExporter },
    { resourceFromAttributes },
  ] = await Promise.all([
    import("@opentelemetry/sdk-trace-node"),
    import("@opentelemetry/sdk-trace-base"),
    import("@opentelemetry/exporter-trace-otlp-http"),
    import("@opentelemetry/resources"),
  ]);
  const exporters = config.exporters.map((kind) =>
    kind === "console"
      ? new ConsoleSpanExporter()
      : new OTLPTraceExporter({ url: config.endpoint, headers: config.headers, timeoutMillis: config.timeoutMs }),
  );
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ "service.name": config.serviceName }),
    spanProcessors: exporters.map(
      (exporter) => new BatchSpanProcessor(exporter, { scheduledDelayMillis: config.scheduleDelayMs }),
    ),
  });
  provider.register();
  let closing: Promise<void> | undefined;
  return {
    close: () =>
      (closing ??= (async () => {
        try {
          await provider.shutdown();
        } finally {
          trace.disable();
          propagation.disable();
          context.disable();
        }
      })()),
  };
}
