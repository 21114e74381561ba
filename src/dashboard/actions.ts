/**
 * The dashboard's own actions (cancel, retry, approve or reject a job's ask; cancel or retry a
 * batch; pause and resume the queue), served only when it was started with `--allow-actions` (and then
 * behind actionGuard: POST of JSON, its own Origin, its token). Each answers JSON: what the
 * producer's library call returned, or `{ error }` with 404 (unknown) or 409 (wrong state).
 */
import express, { type Express, type NextFunction, type Request, type Response } from "express";
import type { Dispatcher } from "../producer/dispatcher.js";
import { JobStateError, NotFoundError } from "../shared/errors.js";

/** How long a cancel waits for a running job's worker to confirm the abort. */
const CANCEL_WAIT_MS = 5_000;

export function actionRoutes(app: Express, dispatcher: Dispatcher): void {
  app.use("/api", express.json({ limit: "16kb" }));
  const act = (fn: (req: Request) => Promise<unknown>) => (req: Request, res: Response, next: NextFunction) => {
    fn(req).then(
      (outcome) => void res.json(outcome ?? { ok: true }),
      (error: unknown) => {
        if (error instanceof NotFoundError) return void res.status(404).json({ error: error.message });
        if (error instanceof JobStateError) return void res.status(409).json({ error: error.message });
        next(error);
      },
    );
  };
  const id = (req: Request, name: string) => String(req.params[name]);
  app.post(
    "/api/jobs/:jobId/cancel",
    act((req) =>
      dispatcher
        .cancel(id(req, "jobId"), { timeoutMs: CANCEL_WAIT_MS })
        .then(({ jobId, outcome }) => ({ jobId, outcome })),
    ),
  );
  app.post(
    "/api/jobs/:jobId/retry",
    act((req) => dispatcher.retry(id(req, "jobId"))),
  );
  const body = (req: Request) =>
    req.body && typeof req.body === "object" ? (req.body as Record<string, unknown>) : {};
  app.post(
    "/api/jobs/:jobId/approve",
    act((req) => dispatcher.approve(id(req, "jobId"), { always: body(req).always === true, by: "dashboard" })),
  );
  app.post(
    "/api/jobs/:jobId/reject",
    act((req) =>
      dispatcher.reject(id(req, "jobId"), {
        message: typeof body(req).message === "string" ? (body(req).message as string) : undefined,
        by: "dashboard",
      }),
    ),
  );
  app.post(
    "/api/batches/:batchId/cancel",
    act((req) => dispatcher.cancelBatch(id(req, "batchId"), { timeoutMs: CANCEL_WAIT_MS })),
  );
  app.post(
    "/api/batches/:batchId/retry",
    act((req) => dispatcher.retryBatch(id(req, "batchId"))),
  );
  app.post(
    "/api/queue/pause",
    act(async () => {
      await dispatcher.pause();
      return { paused: true };
    }),
  );
  app.post(
    "/api/queue/resume",
    act(async () => {
      await dispatcher.resume();
      return { paused: false };
    }),
  );
}
