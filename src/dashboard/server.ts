import type { AddressInfo } from "node:net";
import type { Server } from "node:http";
import { createBullBoard } from "@bull-board/api";
import { BullMQAdapter } from "@bull-board/api/bullMQAdapter";
import { ExpressAdapter } from "@bull-board/express";
import express, { type NextFunction, type Request, type Response } from "express";
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { InputError } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";
import { openQueue } from "../shared/queue.js";
import { closeRedis, connectRedis } from "../shared/redis.js";
import { randomBytes } from "node:crypto";
import { actionGuard, basicAuth, hostCheck, isLoopback } from "./auth.js";
import { notFoundPage, resultPage, resultsPage, sessionPage } from "./pages.js";
import { getResult, listResults } from "./results.js";

export interface DashboardOptions {
  redisUrl: string;
  queue: string;
  /** @defaultValue 127.0.0.1 */
  host?: string;
  /** 0 picks a free port. @defaultValue 3000 */
  port?: number;
  /** Let bull-board retry, promote, clean and remove jobs. @defaultValue false (read-only) */
  allowActions?: boolean;
  /** Basic auth; required unless `host` is a loopback address. */
  auth?: { user: string; password?: string };
  /** Host names it is served under besides loopback names and `host` (a proxy's name; DASHBOARD_HOSTS). */
  allowedHosts?: readonly string[];
  log?: Logger;
}

export interface RunningDashboard {
  url: string;
  close(): Promise<void>;
}

/**
 * Serves bull-board for the queue under `/queues` and our own pages for result records
 * (`/results`, `/results/:jobId`, `/sessions/:sessionId`, and JSON under `/api/results`).
 */
export async function startDashboard(opts: DashboardOptions): Promise<RunningDashboard> {
  const host = opts.host ?? "127.0.0.1";
  const password = opts.auth?.password;
  if (!isLoopback(host) && !password) {
    throw new InputError(`the dashboard binds ${host}, beyond loopback: set DASHBOARD_PASSWORD (and DASHBOARD_USER) to protect it`);
  }
  const redis = await connectRedis(opts.redisUrl, "producer");
  let queue: Queue | undefined;
  let server: Server | undefined;
  try {
    queue = openQueue(opts.queue, redis);
    queue.on("error", (error) => opts.log?.warn({ err: error }, "dashboard: queue error"));
    const app = buildApp(redis, queue, opts, password);
    server = await new Promise<Server>((resolve, reject) => {
      const s = app.listen(opts.port ?? 3000, host, (error?: Error) => (error ? reject(error) : resolve(s)));
      s.once("error", reject);
    });
  } catch (error) {
    await queue?.close().catch(() => undefined);
    await closeRedis(redis);
    throw error;
  }
  const address = server.address() as AddressInfo;
  const shownHost = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const listening = server;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${shownHost}:${address.port}`,
    close: () =>
      (closing ??= (async () => {
        await new Promise<void>((resolve) => {
          listening.close(() => resolve());
          listening.closeAllConnections();
        });
        await queue!.close().catch(() => undefined);
        await closeRedis(redis);
      })()),
  };
}

function buildApp(redis: Redis, queue: Queue, opts: DashboardOptions, password: string | undefined) {
  const app = express();
  app.disable("x-powered-by");
  app.use(hostCheck(opts.host ?? "127.0.0.1", opts.allowedHosts));
  if (password) app.use(basicAuth(opts.auth?.user ?? "admin", password));
  app.use(actionGuard(opts.allowActions ?? false, randomBytes(32).toString("base64url")));
  app.use((_req, res, next) => {
    res.set({ "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer" });
    next();
  });

  const board = new ExpressAdapter();
  board.setBasePath("/queues");
  const allow = opts.allowActions ?? false;
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
    options: { uiConfig: { boardTitle: "opencode-dispatch", miscLinks: [{ text: "Results", url: "/results" }] } },
  });
  app.use("/queues", board.getRouter());

  const name = opts.queue;
  const page = (res: Response, status: number, html: string) => res.status(status).type("html").send(html);
  const wrap = (fn: (req: Request, res: Response) => Promise<void>) => (req: Request, res: Response, next: NextFunction) => {
    fn(req, res).catch(next);
  };
  const stateOf = (req: Request) => (typeof req.query.state === "string" && req.query.state !== "all" ? req.query.state : undefined);
  const numberOf = (req: Request, name: string, fallback: number, max: number) => {
    const n = Math.floor(Number(req.query[name]));
    return Number.isFinite(n) && n >= 0 ? Math.min(n, max) : fallback;
  };

  app.get("/", (_req, res) => res.redirect("/results"));
  app.get("/results", wrap(async (req, res) => {
    const state = stateOf(req);
    const offset = numberOf(req, "offset", 0, Number.MAX_SAFE_INTEGER);
    page(res, 200, resultsPage(name, await listResults(redis, name, { state, offset, limit: numberOf(req, "limit", 50, 500) || 50 }), state, offset));
  }));
  app.get("/results/:jobId", wrap(async (req, res) => {
    const jobId = String(req.params.jobId);
    const record = await getResult(redis, name, jobId);
    if (!record) return void page(res, 404, notFoundPage(name, `No result record for job ${jobId}.`));
    const sameSession = record.sessionId ? (await listResults(redis, name, { sessionId: record.sessionId, limit: 1_000 })).records : [];
    const continuations = sameSession.filter((r) => r.continuedFrom === jobId);
    page(res, 200, resultPage(name, record, sameSession, continuations));
  }));
  app.get("/sessions/:sessionId", wrap(async (req, res) => {
    const sessionId = String(req.params.sessionId);
    const { records } = await listResults(redis, name, { sessionId, limit: 1_000 });
    if (records.length === 0) return void page(res, 404, notFoundPage(name, `No jobs ran in session ${sessionId}.`));
    page(res, 200, sessionPage(name, sessionId, records));
  }));
  app.get("/api/results", wrap(async (req, res) => {
    const sessionId = typeof req.query.session === "string" ? req.query.session : undefined;
    const found = await listResults(redis, name, { state: stateOf(req), sessionId, limit: numberOf(req, "limit", 200, 1_000) || 200, offset: numberOf(req, "offset", 0, Number.MAX_SAFE_INTEGER) });
    if (found.next !== null) res.set("X-Next-Offset", String(found.next));
    res.json(found.records);
  }));
  app.get("/api/results/:jobId", wrap(async (req, res) => {
    const record = await getResult(redis, name, String(req.params.jobId));
    if (!record) return void res.status(404).json({ error: "not found" });
    res.json(record);
  }));
  app.use((err: Error, _req: Request, res: Response, _next: NextFunction) => {
    opts.log?.error({ err }, "dashboard request failed");
    res.status(500).type("text/plain").send(`error: ${err.message}\n`);
  });
  return app;
}
