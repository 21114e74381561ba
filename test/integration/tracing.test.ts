/**
 * OpenTelemetry traces on the real stack: this process enqueues (its tracer set up from OTEL_*
 * variables, as the CLI does), a CLI worker in another process runs the job on a real opencode
 * with the fake model, both export over OTLP/HTTP to a collector the test starts, and the one
 * job's spans form one trace: enqueue → attempt → opencode calls. With no OTEL_* variable set,
 * nothing is traced and the job carries no trace context.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tracingConfig } from "../../src/shared/config";
import { startTracing, type Tracing } from "../../src/shared/tracing";
import { startOtlpCollector, type OtlpCollector, type ReceivedSpan } from "../support/otlp-collector";
import { withQueue } from "../support/queue";
import { useStack } from "../support/stack";
import { until } from "../support/until";

describe("tracing configuration", () => {
  it("is off unless an exporter or an OTLP endpoint is named", () => {
    expect(tracingConfig({}).enabled).toBe(false);
    expect(tracingConfig({ OTEL_SERVICE_NAME: "x" }).enabled).toBe(false);
    expect(tracingConfig({ OTEL_TRACES_EXPORTER: "none", OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318" }).enabled).toBe(
      false,
    );
    expect(tracingConfig({ OTEL_SDK_DISABLED: "true", OTEL_TRACES_EXPORTER: "otlp" }).enabled).toBe(false);
    expect(tracingConfig({ OTEL_TRACES_EXPORTER: "otlp" })).toMatchObject({
      enabled: true,
      endpoint: "http://localhost:4318/v1/traces",
    });
  });

  it("reads the standard endpoint, headers and service variables", () => {
    expect(tracingConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318/" })).toMatchObject({
      enabled: true,
      exporters: ["otlp"],
      endpoint: "http://c:4318/v1/traces",
      serviceName: "opencode-dispatch",
    });
    expect(
      tracingConfig({
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://t:9999/traces",
        OTEL_EXPORTER_OTLP_HEADERS: "authorization=Bearer%20abc,x-tenant=t1",
        OTEL_SERVICE_NAME: "workers",
        OTEL_TRACES_EXPORTER: "otlp,console",
      }),
    ).toMatchObject({
      endpoint: "http://t:9999/traces",
      headers: { authorization: "Bearer abc", "x-tenant": "t1" },
      serviceName: "workers",
      exporters: ["otlp", "console"],
    });
    expect(() => tracingConfig({ OTEL_TRACES_EXPORTER: "zipkin" })).toThrow(
      /OTEL_TRACES_EXPORTER: unsupported exporter "zipkin"/,
    );
    expect(() => tracingConfig({ OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" })).toThrow(/OTEL_EXPORTER_OTLP_PROTOCOL/);
  });
});

describe("a job's trace", () => {
  let collector: OtlpCollector;
  let tracing: Tracing | undefined;
  const otel = () => ({ OTEL_EXPORTER_OTLP_ENDPOINT: collector.url, OTEL_BSP_SCHEDULE_DELAY: "100" });

  beforeAll(async () => {
    collector = await startOtlpCollector();
  });
  afterAll(async () => {
    await collector?.close();
  });
  // The worker's environment names the collector; so does this process's tracer (the producer).
  const stack = useStack(() => ({ configEnv: { ...otel(), OTEL_SERVICE_NAME: "test-worker" } }));
  beforeAll(async () => {
    await stack.startCliWorker(["--concurrency", "1"]);
    tracing = await startTracing(tracingConfig({ ...otel(), OTEL_SERVICE_NAME: "test-producer" }));
  });
  afterAll(async () => {
    await tracing?.close();
  });

  it("links enqueue, attempt and the attempt's opencode calls by one trace ID", async () => {
    const record = await stack.dispatcher.run({ prompt: "traced job", model: "fake/echo" }, { timeoutMs: 120_000 });
    expect(record.state).toBe("completed");
    await tracing!.close(); // flushes the producer's spans

    const ofJob = (s: ReceivedSpan) => s.attributes["messaging.message.id"] === record.jobId;
    const enqueue = await until(
      "the enqueue span",
      () => collector.spans.find((s) => s.name === "enqueue" && ofJob(s)),
      30_000,
    );
    expect(enqueue.service).toBe("test-producer");
    const calls = (attempt: ReceivedSpan) =>
      collector.spans.filter((s) => s.parentSpanId === attempt.spanId && s.name.startsWith("opencode "));
    const attempt = await until(
      "an attempt span with its opencode calls",
      () =>
        collector.spans.find(
          (s) => s.name === "attempt" && ofJob(s) && calls(s).some((c) => /\/message$/.test(c.name)),
        ),
      30_000,
    );
    expect(attempt).toMatchObject({ service: "test-worker", traceId: enqueue.traceId, parentSpanId: enqueue.spanId });
    expect(attempt.attributes).toMatchObject({ "messaging.destination.name": stack.queue, "dispatch.attempt": 1 });
    const opencode = calls(attempt);
    for (const call of opencode) expect(call).toMatchObject({ service: "test-worker", traceId: enqueue.traceId });
    // Span names are routes (IDs folded into {id}), the prompt call among them.
    expect(opencode.map((c) => c.name)).toContain("opencode POST /session/{id}/message");
    expect(opencode.every((c) => !/ses_/.test(c.name))).toBe(true);
    expect(opencode.find((c) => c.name.endsWith("/message"))!.attributes["http.response.status_code"]).toBe(200);
    // Every span of the trace belongs to this job's enqueue, attempt(s) and calls.
    const trace = collector.spans.filter((s) => s.traceId === enqueue.traceId);
    expect(new Set(trace.map((s) => s.name.split(" ")[0]))).toEqual(new Set(["enqueue", "attempt", "opencode"]));
  });

  it("writes no trace context into a job when this process does not trace", async () => {
    await tracing!.close(); // as with no OTEL_* variable: the API is back to no-ops
    const receipt = await stack.dispatcher.enqueue({ prompt: "untraced job", model: "fake/echo" });
    const job = await withQueue(stack, (queue) => queue.getJob(receipt.jobId));
    expect(job?.data).toMatchObject({ prompt: "untraced job" });
    expect(job?.data).not.toHaveProperty("traceparent");
  });
});
