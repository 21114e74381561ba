/**
 * The HTTP API as one declarative table: each route's method, path, scope, schemas (from which
 * openapi.ts builds the OpenAPI document) and a handler of a few lines that calls the library. One
 * table keeps the document and the server from drifting apart; its length is the number of routes.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { z } from "zod";
import type { DispatchTask, Dispatcher } from "../producer/dispatcher.js";
import { fileSource, spoolToFile } from "../producer/batch/source.js";
import { InputError, NotFinishedError } from "../shared/errors.js";
import { parseDuration } from "../shared/duration.js";
import type { Logger } from "../shared/logger.js";
import { ResultRecord } from "../shared/result.js";
import { isFinal } from "../shared/job-state.js";
import { TaskInput } from "../shared/task.js";
import { HttpError, readJson, sendJson } from "./http.js";
import * as S from "./schemas.js";
import { streamEvents } from "./sse.js";
import type { Scope } from "./tokens.js";

export interface RouteContext {
  req: IncomingMessage;
  res: ServerResponse;
  params: Record<string, string>;
  query: URLSearchParams;
  dispatcher: Dispatcher;
  log: Logger;
  /** Aborts when the client goes away. */
  signal: AbortSignal;
  /** Takes one of the caller's streaming slots (SSE, long polls); 429 when it has none left. */
  holdStream: () => () => void;
}

export interface Route {
  method: "GET" | "POST" | "DELETE";
  /** OpenAPI path, `{name}` for a parameter. */
  path: string;
  operationId: string;
  summary: string;
  /** The scope a token needs; null: no token needed (the OpenAPI document). */
  scope: Scope | null;
  body?: { schema: z.ZodType; contentType?: string; description?: string };
  query?: { name: string; description: string; schema: Record<string, unknown> }[];
  headers?: { name: string; description: string }[];
  responses: Record<number, { description: string; schema?: z.ZodType; contentType?: string }>;
  handle(ctx: RouteContext): Promise<void>;
}

/** Longest long poll of `GET /v1/jobs/{id}/result?wait=`. */
const MAX_WAIT_MS = 10 * 60_000;

const errors = (...statuses: number[]) =>
  Object.fromEntries(statuses.map((s) => [s, { description: ERROR_TEXT[s]!, schema: S.ErrorBody }]));
const ERROR_TEXT: Record<number, string> = {
  400: "bad input: `error.field` names what is at fault",
  401: "no token, or an unknown one",
  403: "the token lacks the scope",
  404: "no such job or batch",
  409: "the job is in the wrong state for this",
  413: "the body is too large",
  415: "the body is not of the expected type",
  429: "the token has too many open streams",
};

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** A query parameter as a duration within limits; InputError naming it. */
function durationParam(query: URLSearchParams, name: string, max: number): number | undefined {
  const raw = query.get(name);
  if (raw === null) return undefined;
  try {
    return parseDuration(raw, { max });
  } catch (error) {
    throw new InputError(`${name}: ${(error as Error).message}`);
  }
}

function numberParam(query: URLSearchParams, name: string, integer: boolean): number | undefined {
  const raw = query.get(name);
  if (raw === null) return undefined;
  const n = Number(raw);
  if (!raw.trim() || !Number.isFinite(n) || n <= 0 || (integer && !Number.isSafeInteger(n))) {
    throw new InputError(`${name}: "${raw}" is not a positive ${integer ? "whole number" : "number"}`);
  }
  return n;
}

/** A JSON body that may be left out (no body reads as `{}`). */
async function optionalJson(req: IncomingMessage): Promise<unknown> {
  const length = req.headers["content-length"];
  if ((length === undefined || length === "0") && req.headers["transfer-encoding"] === undefined) return {};
  return readJson(req);
}

/** A body checked against its schema; a 400 naming the field. */
function parseBody<T extends z.ZodType>(schema: T, body: unknown): z.output<T> {
  const parsed = schema.safeParse(body);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const field = issue.code === "unrecognized_keys" ? issue.keys[0]! : issue.path.join(".") || "body";
  throw new HttpError(
    400,
    "InputError",
    `${field}: ${issue.code === "unrecognized_keys" ? "unknown field" : issue.message}`,
    field,
  );
}

export const routes: Route[] = [
  {
    method: "POST",
    path: "/v1/jobs",
    operationId: "enqueueJob",
    summary: "Enqueue a task (the library's task fields); the Idempotency-Key header is its job ID",
    scope: "enqueue",
    body: {
      schema: TaskInput,
      description: "a task: `prompt`, `model`, `agent`, `directory`, `continue`, `schema` (JSON Schema), …",
    },
    headers: [
      {
        name: "Idempotency-Key",
        description: "the job ID (and idempotency key): a job with this ID is enqueued only once",
      },
    ],
    responses: {
      201: { description: "enqueued (or, with `duplicate`, already known)", schema: S.EnqueueReceipt },
      ...errors(400, 401, 403, 413, 415),
    },
    async handle({ req, res, dispatcher }) {
      const body = await readJson(req);
      if (!isObject(body)) throw new HttpError(400, "InputError", "body: a JSON object (a task) is required", "body");
      const key = req.headers["idempotency-key"];
      if (typeof key === "string" && key) {
        if (body.id !== undefined && body.id !== key)
          throw new HttpError(
            400,
            "InputError",
            `id: the body's id ${JSON.stringify(body.id)} differs from the Idempotency-Key "${key}"`,
            "id",
          );
        body.id = key;
      }
      const receipt = await dispatcher.enqueue(body as DispatchTask);
      sendJson(res, 201, receipt, { location: `/v1/jobs/${encodeURIComponent(receipt.jobId)}` });
    },
  },
  {
    method: "GET",
    path: "/v1/jobs/{id}",
    operationId: "getJob",
    summary: "A job's state, attempts, progress and result record",
    scope: "read",
    responses: { 200: { description: "the job's status", schema: S.JobStatus }, ...errors(401, 403, 404) },
    async handle({ res, params, dispatcher }) {
      sendJson(res, 200, await dispatcher.status(params.id!));
    },
  },
  {
    method: "GET",
    path: "/v1/jobs/{id}/result",
    operationId: "getJobResult",
    summary: "The final record; with `wait`, a long poll until the job ends or the wait passes (then 202)",
    scope: "read",
    query: [
      {
        name: "wait",
        description: "how long to wait for the job to end (e.g. 30s; at most 10m)",
        schema: { type: "string" },
      },
    ],
    responses: {
      200: { description: "the final record (completed or failed)", schema: ResultRecord },
      202: { description: "not finished yet", schema: S.NotFinished },
      ...errors(400, 401, 403, 404, 429),
    },
    async handle({ res, params, query, dispatcher, signal, holdStream }) {
      const waitMs = durationParam(query, "wait", MAX_WAIT_MS);
      const status = await dispatcher.status(params.id!);
      if (status.result && isFinal(status.state)) return sendJson(res, 200, status.result);
      if (!waitMs) return sendJson(res, 202, { jobId: status.jobId, state: status.state });
      const release = holdStream();
      try {
        sendJson(res, 200, await dispatcher.wait(params.id!, { timeoutMs: waitMs, signal }));
      } catch (error) {
        if (!(error instanceof NotFinishedError)) throw error;
        const now = await dispatcher.status(params.id!);
        sendJson(res, 202, { jobId: now.jobId, state: now.state });
      } finally {
        release();
      }
    },
  },
  {
    method: "GET",
    path: "/v1/jobs/{id}/events",
    operationId: "streamJobEvents",
    summary:
      "Server-sent events: state, progress, text (the answer as it is written), tool, ask, then final with the record",
    scope: "read",
    headers: [
      { name: "Last-Event-ID", description: "resume after this event (sent by EventSource clients on reconnect)" },
    ],
    query: [
      { name: "after", description: "resume after this event ID (as Last-Event-ID)", schema: { type: "string" } },
    ],
    responses: {
      200: {
        description: "an event stream; each event's data is the JSON of a LiveEvent's `data`",
        schema: S.LiveEvent,
        contentType: "text/event-stream",
      },
      ...errors(401, 403, 404, 429),
    },
    async handle(ctx) {
      await ctx.dispatcher.status(ctx.params.id!); // 404 before the stream starts
      const release = ctx.holdStream();
      try {
        const after = (ctx.req.headers["last-event-id"] as string | undefined) ?? ctx.query.get("after") ?? undefined;
        await streamEvents(ctx.res, ctx.dispatcher.stream(ctx.params.id!, { after, signal: ctx.signal }), ctx.signal);
      } finally {
        release();
      }
    },
  },
  {
    method: "POST",
    path: "/v1/jobs/{id}/cancel",
    operationId: "cancelJob",
    summary: "Cancel a job: removed when waiting, its session aborted when running",
    scope: "admin",
    query: [
      {
        name: "timeout",
        description: "how long to wait for a running job's worker to confirm (default 15s)",
        schema: { type: "string" },
      },
    ],
    responses: {
      200: { description: "what the cancel did", schema: S.CancelOutcome },
      ...errors(400, 401, 403, 404, 409),
    },
    async handle({ res, params, query, dispatcher }) {
      sendJson(
        res,
        200,
        await dispatcher.cancel(params.id!, { timeoutMs: durationParam(query, "timeout", MAX_WAIT_MS) }),
      );
    },
  },
  {
    method: "POST",
    path: "/v1/jobs/{id}/retry",
    operationId: "retryJob",
    summary: "Re-queue a failed or cancelled job with a fresh set of attempts",
    scope: "admin",
    responses: { 200: { description: "re-queued", schema: S.RetryOutcome }, ...errors(401, 403, 404, 409) },
    async handle({ res, params, dispatcher }) {
      sendJson(res, 200, await dispatcher.retry(params.id!));
    },
  },
  {
    method: "POST",
    path: "/v1/jobs/{id}/approve",
    operationId: "approveJob",
    summary:
      "Approve the permission ask a job in state awaiting-approval waits on; it resumes on any worker and the approved action runs",
    scope: "admin",
    body: {
      schema: S.ApproveBody,
      description: "`{}` approves this one ask; `always` also what opencode suggests for it, for the rest of the job",
    },
    responses: {
      200: { description: "answered; the job resumes", schema: S.ApprovalOutcome },
      ...errors(400, 401, 403, 404, 409),
    },
    async handle({ req, res, params, dispatcher }) {
      const body = parseBody(S.ApproveBody, await optionalJson(req));
      sendJson(res, 200, await dispatcher.approve(params.id!, { always: body.always, by: body.by ?? "api" }));
    },
  },
  {
    method: "POST",
    path: "/v1/jobs/{id}/reject",
    operationId: "rejectJob",
    summary:
      "Reject the permission ask a job in state awaiting-approval waits on; it resumes, its agent is told, and it ends as the agent decides",
    scope: "admin",
    body: { schema: S.RejectBody, description: "`{}`, or a `message` told to the agent" },
    responses: {
      200: { description: "answered; the job resumes", schema: S.ApprovalOutcome },
      ...errors(400, 401, 403, 404, 409),
    },
    async handle({ req, res, params, dispatcher }) {
      const body = parseBody(S.RejectBody, await optionalJson(req));
      sendJson(res, 200, await dispatcher.reject(params.id!, { message: body.message, by: body.by ?? "api" }));
    },
  },
  {
    method: "POST",
    path: "/v1/batches",
    operationId: "submitBatch",
    summary:
      "Submit a batch: a JSON Lines body (one task a line, streamed, any size), validated and idempotent as `batch`",
    scope: "enqueue",
    body: { schema: TaskInput, contentType: "application/x-ndjson", description: "one task object per line" },
    headers: [{ name: "Idempotency-Key", description: "the batch ID (as `id`)" }],
    query: [
      {
        name: "id",
        description: "the batch ID (default: a hash of the input, so the same body is the same batch)",
        schema: { type: "string" },
      },
      {
        name: "skipInvalid",
        description: "true: enqueue the valid lines and report the invalid ones",
        schema: { type: "boolean" },
      },
      { name: "maxCost", description: "the batch's budget (see `batch --max-cost`)", schema: { type: "number" } },
      { name: "maxTokens", description: "the batch's budget in tokens", schema: { type: "integer" } },
      {
        name: "then",
        description:
          "a parent prompt that runs once every task has ended, with their results (see `batch --then`); its job ID is in the receipt as thenJobId",
        schema: { type: "string" },
      },
      { name: "thenModel", description: "the parent's model (provider/model)", schema: { type: "string" } },
      {
        name: "thenOn",
        description:
          "all (default): the parent runs whatever the outcomes; completed: it fails UpstreamFailed unless every task completed",
        schema: { type: "string", enum: ["all", "completed"] },
      },
    ],
    responses: { 201: { description: "the receipt", schema: S.BatchReceipt }, ...errors(400, 401, 403) },
    async handle({ req, res, query, dispatcher }) {
      const header = req.headers["idempotency-key"];
      const id = query.get("id") ?? (typeof header === "string" && header ? header : undefined);
      const skipInvalid = query.get("skipInvalid");
      if (skipInvalid !== null && skipInvalid !== "true" && skipInvalid !== "false")
        throw new InputError(`skipInvalid: "${skipInvalid}" is not true or false`);
      const spooled = await spoolToFile(req);
      try {
        const handle = await dispatcher.submitBatch(await fileSource(spooled.path, "jsonl"), {
          id,
          skipInvalid: skipInvalid === "true",
          maxCost: numberParam(query, "maxCost", false),
          maxTokens: numberParam(query, "maxTokens", true),
          ...thenParams(query),
        });
        sendJson(res, 201, handle.receipt, { location: `/v1/batches/${encodeURIComponent(handle.id)}` });
      } catch (error) {
        if (error instanceof InputError && "invalidLines" in error) {
          const bad = error as InputError & { invalidLines: { line: number; error: string }[] };
          const first = bad.invalidLines[0];
          throw new HttpError(400, "InputError", error.message, first ? `line ${first.line}` : "body");
        }
        throw error;
      } finally {
        await spooled.cleanup();
      }
    },
  },
  {
    method: "GET",
    path: "/v1/batches/{id}",
    operationId: "getBatch",
    summary: "A batch's counts by state, and its budget",
    scope: "read",
    responses: { 200: { description: "the batch's status", schema: S.BatchStatus }, ...errors(401, 403, 404) },
    async handle({ res, params, dispatcher }) {
      sendJson(res, 200, await (await dispatcher.batch(params.id!)).status());
    },
  },
  {
    method: "GET",
    path: "/v1/batches/{id}/results",
    operationId: "getBatchResults",
    summary:
      "The records of the batch's finished members, as JSON Lines; with wait=true, streamed until every member has ended",
    scope: "read",
    query: [
      {
        name: "wait",
        description: "true: keep the response open and send each record as its job ends",
        schema: { type: "boolean" },
      },
    ],
    responses: {
      200: { description: "one result record a line", schema: ResultRecord, contentType: "application/x-ndjson" },
      ...errors(401, 403, 404, 429),
    },
    async handle({ res, params, query, dispatcher, signal, holdStream }) {
      const batch = await dispatcher.batch(params.id!);
      const waiting = query.get("wait") === "true";
      const release = waiting ? holdStream() : () => undefined; // a 429 goes out before the 200
      res.writeHead(200, { "content-type": "application/x-ndjson; charset=utf-8", "cache-control": "no-store" });
      const write = (record: ResultRecord) => res.write(`${JSON.stringify(record)}\n`);
      if (waiting) {
        try {
          batch.on("result", (record) => void write(record));
          await batch.wait({ signal }).catch((error: unknown) => {
            if (!(error instanceof NotFinishedError)) throw error;
          });
        } finally {
          release();
        }
      } else {
        for await (const { record } of batch.records()) {
          if (signal.aborted) break; // the client went away
          if (!write(record))
            await new Promise((resolve) => {
              res.once("drain", resolve);
              signal.addEventListener("abort", resolve, { once: true });
            });
        }
      }
      res.end();
    },
  },
  {
    method: "POST",
    path: "/v1/batches/{id}/cancel",
    operationId: "cancelBatch",
    summary: "Cancel every unfinished member of a batch",
    scope: "admin",
    responses: { 200: { description: "what the cancel did", schema: S.BatchCancelOutcome }, ...errors(401, 403, 404) },
    async handle({ res, params, dispatcher }) {
      sendJson(res, 200, await dispatcher.cancelBatch(params.id!));
    },
  },
  {
    method: "POST",
    path: "/v1/batches/{id}/retry",
    operationId: "retryBatch",
    summary: "Re-queue every failed member of a batch",
    scope: "admin",
    responses: { 200: { description: "what was re-queued", schema: S.BatchRetryOutcome }, ...errors(401, 403, 404) },
    async handle({ res, params, dispatcher }) {
      sendJson(res, 200, await dispatcher.retryBatch(params.id!));
    },
  },
  {
    method: "GET",
    path: "/v1/queue",
    operationId: "getQueue",
    summary: "Whether the queue is paused",
    scope: "read",
    responses: { 200: { description: "the queue", schema: S.QueueState }, ...errors(401, 403) },
    async handle({ res, dispatcher }) {
      sendJson(res, 200, { queue: dispatcher.queueName, paused: await dispatcher.isPaused() });
    },
  },
  {
    method: "POST",
    path: "/v1/queue/pause",
    operationId: "pauseQueue",
    summary: "Stop the workers from starting jobs (running ones finish)",
    scope: "admin",
    responses: { 200: { description: "paused", schema: S.QueueState }, ...errors(401, 403) },
    async handle({ res, dispatcher }) {
      await dispatcher.pause();
      sendJson(res, 200, { queue: dispatcher.queueName, paused: true });
    },
  },
  {
    method: "POST",
    path: "/v1/queue/resume",
    operationId: "resumeQueue",
    summary: "Let the workers start jobs again",
    scope: "admin",
    responses: { 200: { description: "resumed", schema: S.QueueState }, ...errors(401, 403) },
    async handle({ res, dispatcher }) {
      await dispatcher.resume();
      sendJson(res, 200, { queue: dispatcher.queueName, paused: false });
    },
  },
  {
    method: "GET",
    path: "/v1/schedules",
    operationId: "listSchedules",
    summary: "Every schedule of the queue",
    scope: "read",
    responses: { 200: { description: "the schedules", schema: S.ScheduleList }, ...errors(401, 403) },
    async handle({ res, dispatcher }) {
      sendJson(res, 200, { schedules: await dispatcher.schedules.list() });
    },
  },
  {
    method: "POST",
    path: "/v1/schedules",
    operationId: "addSchedule",
    summary: "Add (or replace) a schedule: a task fired on a cron pattern or every so long",
    scope: "admin",
    body: { schema: S.ScheduleSpec },
    responses: {
      201: { description: "the schedule (`replaced`: one of that name existed)", schema: S.ScheduleInfo },
      ...errors(400, 401, 403, 413),
    },
    async handle({ req, res, dispatcher }) {
      const body = await readJson(req);
      if (!isObject(body))
        throw new HttpError(400, "InputError", "body: a JSON object (a schedule) is required", "body");
      sendJson(
        res,
        201,
        await dispatcher.schedules.add(body as unknown as Parameters<Dispatcher["schedules"]["add"]>[0]),
      );
    },
  },
  {
    method: "GET",
    path: "/v1/schedules/{name}",
    operationId: "getSchedule",
    summary: "One schedule",
    scope: "read",
    responses: { 200: { description: "the schedule", schema: S.ScheduleInfo }, ...errors(401, 403, 404) },
    async handle({ res, params, dispatcher }) {
      const schedule = await dispatcher.schedules.get(params.name!);
      if (!schedule) throw new HttpError(404, "NotFoundError", `no schedule named "${params.name}"`);
      sendJson(res, 200, schedule);
    },
  },
  {
    method: "DELETE",
    path: "/v1/schedules/{name}",
    operationId: "removeSchedule",
    summary: "Remove a schedule (firings already queued still run)",
    scope: "admin",
    responses: { 200: { description: "removed", schema: S.ScheduleRemoved }, ...errors(401, 403, 404) },
    async handle({ res, params, dispatcher }) {
      await dispatcher.schedules.remove(params.name!);
      sendJson(res, 200, { name: params.name, removed: true });
    },
  },
  {
    method: "POST",
    path: "/v1/schedules/{name}/run",
    operationId: "runSchedule",
    summary: "Fire a schedule once now",
    scope: "admin",
    responses: { 201: { description: "the firing's job", schema: S.EnqueueReceipt }, ...errors(401, 403, 404) },
    async handle({ res, params, dispatcher }) {
      sendJson(res, 201, await dispatcher.schedules.run(params.name!));
    },
  },
];

/** `then`, `thenModel`, `thenOn` of POST /v1/batches as submitBatch's `then` / `thenOn`. */
function thenParams(query: URLSearchParams): {
  then?: { prompt: string; model?: string };
  thenOn?: "all" | "completed";
} {
  const prompt = query.get("then");
  const model = query.get("thenModel");
  const on = query.get("thenOn");
  if (prompt === null) {
    if (model !== null || on !== null) throw new InputError("thenModel and thenOn apply to a batch with then");
    return {};
  }
  if (on !== null && on !== "all" && on !== "completed")
    throw new InputError(`thenOn: "${on}" is not all or completed`);
  return { then: { prompt, ...(model !== null ? { model } : {}) }, ...(on !== null ? { thenOn: on } : {}) };
}
