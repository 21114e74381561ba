import type { IncomingMessage, ServerResponse } from "node:http";
import { isRedisConnectionError } from "../shared/redis.js";
import {
  DispatchError,
  InputError,
  JobStateError,
  NotFinishedError,
  NotFoundError,
  RedisUnavailableError,
} from "../shared/errors.js";

/** An HTTP failure with the status and the `{ error: { name, message, field? } }` body to send. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    name: string,
    message: string,
    readonly field?: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = name;
  }
}

/** The largest JSON body a route reads (a task with its attached files as data URLs). */
export const MAX_JSON_BODY = 32 * 1024 * 1024;

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "cache-control": "no-store",
    "content-length": Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

/** Any error as the API's error response: its status, and the field at fault when an input error names one. */
export function toHttpError(error: unknown): HttpError {
  if (error instanceof HttpError) return error;
  if (error instanceof InputError) {
    const field = /^([A-Za-z_$][\w$]*(?:[.[][\w\]]*)*): /.exec(error.message)?.[1];
    return new HttpError(400, "InputError", error.message, field);
  }
  if (error instanceof NotFoundError) return new HttpError(404, "NotFoundError", error.message);
  if (error instanceof JobStateError) return new HttpError(409, "JobStateError", error.message);
  if (error instanceof NotFinishedError) return new HttpError(409, "NotFinishedError", error.message);
  if (error instanceof RedisUnavailableError || isRedisConnectionError(error)) {
    return new HttpError(
      503,
      "RedisUnavailableError",
      `Redis is not reachable: ${(error as Error).message}`,
      undefined,
      { "retry-after": "5" },
    );
  }
  if (error instanceof DispatchError) return new HttpError(500, error.name, error.message);
  return new HttpError(500, "InternalError", "the server failed to answer the request (see its log)");
}

export function sendError(res: ServerResponse, error: HttpError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(
    res,
    error.status,
    { error: { name: error.name, message: error.message, ...(error.field ? { field: error.field } : {}) } },
    error.headers,
  );
}

/** Reads a JSON body of at most MAX_JSON_BODY bytes: 413 past it, 400 naming `body` when it is not JSON. */
export async function readJson(req: IncomingMessage): Promise<unknown> {
  // Any body is read as JSON (curl -d sends form-urlencoded by default); a form upload is not.
  const type = req.headers["content-type"] ?? "application/json";
  if (/^multipart\//i.test(type))
    throw new HttpError(415, "InputError", `body: send JSON (content-type application/json), not ${type}`, "body");
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_JSON_BODY)
      throw new HttpError(413, "InputError", `body: larger than ${MAX_JSON_BODY / 1024 / 1024} MiB`, "body");
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  if (!text.trim()) throw new HttpError(400, "InputError", "body: a JSON object is required", "body");
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new HttpError(400, "InputError", `body: not valid JSON (${(error as Error).message})`, "body");
  }
}
