/** The dashboard's routes (see startDashboard in server.ts). */
import { randomBytes } from "node:crypto";
import { createBullBoard } from "@bull-board/api";
import { BullMQAdapter } from "@bull-board/api/bullMQAdapter";
import { ExpressAdapter } from "@bull-board/express";
import express, { type NextFunction, type Request, type Response } from "express";
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { streamEvents } from "../api/sse.js";
import type { Dispatcher } from "../producer/dispatcher.js";
import { BatchStore } from "../producer/batch/store.js";
import { NotFoundError } from "../shared/errors.js";
import { baseRecord, failedFromJob } from "../shared/record.js";
import type { ResultRecord } from "../shared/result.js";
import { ResultStore } from "../shared/result-store.js";
import { actionGuard, basicAuth, hostCheck } from "./auth.js";
import { actionRoutes } from "./actions.js";
import { batchJson, batchPage, batchesPage } from "./batch-pages.js";
import { FinishedRecords, batchMembers, batchView, listBatches, type BatchDeps } from "./batches.js";
import { overviewPage, queueOverview, recentSeries } from "./overview.js";
import { notFoundPage, resultPage, resultsPage } from "./pages.js";
import { getResult, listResults } from "./results.js";
import type { DashboardOptions } from "./server.js";
import { loadTranscript, toTurns, transcriptPage } from "./transcript.js";

/** A job no worker has written a record of yet (queued, or just picked up), as its payload and BullMQ's state give it. */
async function queuedRecord(queue: Queue, jobId: string): Promise<ResultRecord | null> {
  const job = await queue.getJob(jobId);
  if (!job) return null;
  const state = await job.getState();
  if (state === "failed") return failedFromJob(job, null);
  return baseRecord(
    jobId,
    job.data,
    state === "active" || state === "delayed" || state === "prioritized" ? state : "waiting",
  );
}

/** How long one reading of a batch answers the polls of its page (pages poll every 2 s). */
const POLL_SHARE_MS = 1_500;

/** Live answer streams served at once (each holds a Redis connection for its blocking reads). */
const MAX_STREAMS = 64;

export interface AppContext {
  redis: Redis;
  queue: Queue;
  dispatcher: Dispatcher;
  /** The live streams open now, aborted when the dashboard closes. */
  streams: Set<AbortController>;
}

export function buildApp(ctx: AppContext, opts: DashboardOptions, password: string | undefined) {
  const { redis, queue, dispatcher, streams } = ctx;
  const app = express();
  app.disable("x-powered-by");
  app.use(hostCheck(opts.host ?? "127.0.0.1", opts.allowedHosts));
  if (password) app.use(basicAuth(opts.auth?.user ?? "admin", password));
  const allow = opts.allowActions ?? false;
  app.use(actionGuard(allow, randomBytes(32).toString("base64url")));
  app.use((_req, res, next) => {
    res.set({ "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer" });
    next();
  });

  const board = new ExpressAdapter();
  board.setBasePath("/queues");
  createBullBoard({
    queues: [
      new BullMQAdapter(queue, {
        readOnlyMode: !allow,
        allowRetries: allow,
        description: allow ? "actions allowed" : "read-only",
        externalJobUrl: (job) => ({ displayText: "Result", href: `/results/${encodeURIComponent(String(job.id))}` }),
      }),
    ],
    serverAdapter: board,
    options: {
      uiConfig: {
        boardTitle: "opencode-dispatch",
        miscLinks: [
          { text: "Overview", url: "/" },
          { text: "Results", url: "/results" },
          { text: "Batches", url: "/batches" },
        ],
      },
    },
  });
  app.use("/queues", board.getRouter() as express.Router);

  const name = opts.queue;
  const results = new ResultStore(redis, name);
  const deps: BatchDeps = {
    redis,
    redisUrl: opts.redisUrl,
    queue,
    results,
    batches: new BatchStore(redis, name),
    finished: new FinishedRecords(),
  };
  const page = (res: Response, status: number, html: string) => res.status(status).type("html").send(html);
  const wrap =
    (fn: (req: Request, res: Response) => Promise<void>) => (req: Request, res: Response, next: NextFunction) => {
      fn(req, res).catch(next);
    };
  const stateOf = (req: Request) =>
    typeof req.query.state === "string" && req.query.state !== "all" ? req.query.state : undefined;
  const numberOf = (req: Request, name: string, fallback: number, max: number) => {
    const n = Math.floor(Number(req.query[name]));
    return Number.isFinite(n) && n >= 0 ? Math.min(n, max) : fallback;
  };
  const offsetOf = (req: Request) => numberOf(req, "offset", 0, Number.MAX_SAFE_INTEGER);

  // Every viewer of a running batch polls its JSON: one reading of the batch serves them all for POLL_SHARE_MS.
  const polled = new Map<string, { at: number; view: ReturnType<typeof batchView> }>();
  const polledView = (batchId: string) => {
    const now = Date.now();
    for (const [id, entry] of polled) if (now - entry.at > POLL_SHARE_MS) polled.delete(id);
    const entry = polled.get(batchId) ?? { at: now, view: batchView(deps, batchId) };
    polled.set(batchId, entry);
    entry.view.catch(() => polled.delete(batchId));
    return entry.view;
  };

  app.get(
    "/",
    wrap(async (_req, res) => {
      const [overview, series, batches] = await Promise.all([
        queueOverview(queue),
        recentSeries(redis, name),
        listBatches(deps, 0, 5),
      ]);
      page(res, 200, overviewPage(name, overview, series, batches.rows, allow));
    }),
  );
  app.get(
    "/api/overview",
    wrap(async (_req, res) => {
      const overview = await queueOverview(queue);
      res.json({ ...overview, state: overview.paused ? "paused" : "running" });
    }),
  );
  app.get(
    "/results",
    wrap(async (req, res) => {
      const state = stateOf(req);
      const offset = offsetOf(req);
      page(
        res,
        200,
        resultsPage(
          name,
          await listResults(redis, name, { state, offset, limit: numberOf(req, "limit", 50, 500) || 50 }),
          state,
          offset,
        ),
      );
    }),
  );
  app.get(
    "/results/:jobId",
    wrap(async (req, res) => {
      const jobId = String(req.params.jobId);
      const record = (await getResult(redis, name, jobId)) ?? (await queuedRecord(queue, jobId));
      if (!record) return void page(res, 404, notFoundPage(name, `No result record for job ${jobId}.`));
      const sameSession = record.sessionId
        ? (await listResults(redis, name, { sessionId: record.sessionId, limit: 1_000 })).records
        : [];
      const continuations = sameSession.filter((r) => r.continues === jobId);
      page(res, 200, resultPage(name, record, sameSession, continuations, allow));
    }),
  );
  app.get(
    "/sessions/:sessionId",
    wrap(async (req, res) => {
      const sessionId = String(req.params.sessionId);
      const [{ records }, messages] = await Promise.all([
        listResults(redis, name, { sessionId, limit: 1_000 }),
        loadTranscript(redis, results.keys, sessionId),
      ]);
      if (records.length === 0 && !messages)
        return void page(res, 404, notFoundPage(name, `No jobs ran in session ${sessionId}.`));
      const { turns, unplaced } = toTurns(messages ?? [], records);
      page(res, 200, transcriptPage(name, sessionId, turns, unplaced, messages !== null));
    }),
  );
  app.get(
    "/batches",
    wrap(async (req, res) => {
      const offset = offsetOf(req);
      const { rows, next } = await listBatches(deps, offset);
      page(res, 200, batchesPage(name, rows, offset, next));
    }),
  );
  app.get(
    "/batches/:batchId",
    wrap(async (req, res) => {
      const batchId = String(req.params.batchId);
      const offset = offsetOf(req);
      const [view, members] = await Promise.all([batchView(deps, batchId), batchMembers(deps, batchId, offset, 100)]);
      if (!view) return void page(res, 404, notFoundPage(name, `No batch ${batchId}.`));
      page(res, 200, batchPage(name, view, members.members, offset, members.next, allow));
    }),
  );
  app.get(
    "/api/batches/:batchId",
    wrap(async (req, res) => {
      const view = await polledView(String(req.params.batchId));
      if (!view) return void res.status(404).json({ error: "not found" });
      res.json(batchJson(view));
    }),
  );
  app.get(
    "/api/results",
    wrap(async (req, res) => {
      const sessionId = typeof req.query.session === "string" ? req.query.session : undefined;
      const found = await listResults(redis, name, {
        state: stateOf(req),
        sessionId,
        limit: numberOf(req, "limit", 200, 1_000) || 200,
        offset: offsetOf(req),
      });
      if (found.next !== null) res.set("X-Next-Offset", String(found.next));
      res.json(found.records);
    }),
  );
  app.get(
    "/api/results/:jobId",
    wrap(async (req, res) => {
      const record = await getResult(redis, name, String(req.params.jobId));
      if (!record) return void res.status(404).json({ error: "not found" });
      res.json(record);
    }),
  );
  app.get(
    "/api/live/:jobId",
    wrap(async (req, res) => {
      const jobId = String(req.params.jobId);
      if (streams.size >= MAX_STREAMS)
        return void res.status(503).set("Retry-After", "5").json({ error: "too many live streams open" });
      const record = await getResult(redis, name, jobId);
      if (!record && !(await dispatcher.findJob(jobId))) return void res.status(404).json({ error: "not found" });
      const stop = new AbortController();
      streams.add(stop);
      res.on("close", () => stop.abort());
      const after = req.get("last-event-id") || undefined;
      try {
        await streamEvents(res, dispatcher.stream(jobId, { after, signal: stop.signal }), stop.signal);
      } catch (error) {
        if (!stop.signal.aborted && !(error instanceof NotFoundError))
          opts.log?.warn({ err: error, jobId }, "dashboard: live stream ended");
        if (!res.writableEnded) res.end();
      } finally {
        streams.delete(stop);
      }
    }),
  );
  if (allow) actionRoutes(app, dispatcher);
  app.use((err: Error, _req: Request, res: Response, _next: NextFunction) => {
    opts.log?.error({ err }, "dashboard request failed");
    if (res.headersSent) return void res.end();
    res.status(500).type("text/plain").send(`error: ${err.message}\n`);
  });
  return app;
}
