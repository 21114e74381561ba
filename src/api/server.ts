import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { z } from "zod";
import type { Dispatcher } from "../producer/dispatcher.js";
import { InputError } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";
import { ResultRecord } from "../shared/result.js";
import { TaskInput } from "../shared/task.js";
import { HttpError, sendError, sendJson, toHttpError } from "./http.js";
import { openApiDocument } from "./openapi.js";
import { routes, type Route } from "./routes.js";
import * as S from "./schemas.js";
import { allows, SCOPES, type ApiTokens, type Scope } from "./tokens.js";

export interface ApiOptions {
  dispatcher: Dispatcher;
  tokens: ApiTokens;
  log: Logger;
  /** @defaultValue 8080 */
  port?: number;
  /** @defaultValue 127.0.0.1; any other address needs tokens */
  host?: string;
  /** Open streams (SSE, long polls) per token (or per client without tokens). @defaultValue 100 */
  maxStreams?: number;
  version?: string;
}

export interface ApiServer {
  url: string;
  close(): Promise<void>;
}

const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost"]);

/**
 * Without tokens the API is open to local processes, so it must not be to web pages the operator
 * visits: a request from a browser carries an Origin (refused), and one that reaches it through DNS
 * rebinding names a foreign Host (refused).
 */
function refuseBrowsers(req: IncomingMessage, port: number): void {
  const host = (req.headers.host ?? "").toLowerCase();
  const allowed = [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`];
  if (!allowed.includes(host))
    throw new HttpError(403, "Forbidden", `Host "${host}": without tokens the API answers only ${allowed.join(", ")}`);
  if (req.headers.origin !== undefined)
    throw new HttpError(
      403,
      "Forbidden",
      "requests from web pages (with an Origin header) are refused while the API has no tokens",
    );
}

/** Every schema the document names, with its component name. */
const NAMED: [z.ZodType, string][] = [
  [TaskInput, "Task"],
  [ResultRecord, "ResultRecord"],
  ...Object.entries(S).map(([name, schema]) => [schema as z.ZodType, name] as [z.ZodType, string]),
];

/**
 * `opencode-dispatch api`: JSON over HTTP for apps in any language (see routes.ts), with bearer
 * tokens and scopes. Without tokens it serves loopback only, and every route is open.
 */
export async function startApi(opts: ApiOptions): Promise<ApiServer> {
  const host = opts.host ?? "127.0.0.1";
  if (!LOOPBACK.has(host) && opts.tokens.size === 0) {
    throw new InputError(
      `--host ${host}: beyond loopback the API needs tokens (DISPATCH_API_TOKENS or DISPATCH_API_TOKENS_FILE)`,
    );
  }
  const maxStreams = opts.maxStreams ?? 100;
  const streams = new Map<string, number>();
  const document = openApiDocument(routes, new Map(NAMED), { version: opts.version ?? "0.1.0" });
  const compiled = routes.map((route) => ({
    route,
    pattern: new RegExp(`^${route.path.replace(/\{(\w+)\}/g, "(?<$1>[^/]+)")}$`),
  }));

  let port = 0; // once listening
  const handle = async (req: IncomingMessage, res: ServerResponse, signal: AbortSignal): Promise<number> => {
    if (opts.tokens.size === 0) refuseBrowsers(req, port);
    const url = new URL(req.url ?? "/", "http://api");
    if (url.pathname === "/v1/openapi.json" && (req.method === "GET" || req.method === "HEAD")) {
      sendJson(res, 200, document);
      return 200;
    }
    const matches = compiled.filter((c) => c.pattern.test(url.pathname));
    if (matches.length === 0) throw new HttpError(404, "NotFound", `no route ${url.pathname} (see /v1/openapi.json)`);
    const match = matches.find((c) => c.route.method === req.method);
    if (!match)
      throw new HttpError(405, "MethodNotAllowed", `${req.method} is not allowed on ${url.pathname}`, undefined, {
        allow: matches.map((c) => c.route.method).join(", "),
      });
    const caller = authorize(req, match.route);
    const params: Record<string, string> = {};
    for (const [k, v] of Object.entries(match.pattern.exec(url.pathname)!.groups ?? {})) {
      try {
        params[k] = decodeURIComponent(v);
      } catch {
        throw new HttpError(400, "InputError", `${k}: "${v}" is not a valid URL path segment`, k);
      }
    }
    await match.route.handle({
      req,
      res,
      params,
      query: url.searchParams,
      dispatcher: opts.dispatcher,
      log: opts.log,
      signal,
      holdStream: () => {
        const held = streams.get(caller) ?? 0;
        if (held >= maxStreams)
          throw new HttpError(
            429,
            "TooManyRequests",
            `this token has ${held} open streams (at most ${maxStreams})`,
            undefined,
            { "retry-after": "5" },
          );
        streams.set(caller, held + 1);
        let released = false;
        return () => {
          if (released) return;
          released = true;
          const left = (streams.get(caller) ?? 1) - 1;
          if (left > 0) streams.set(caller, left);
          else streams.delete(caller);
        };
      },
    });
    return res.statusCode;
  };

  /** Who calls (a token's digest, or the client address without tokens); 401 / 403 when not allowed. */
  const authorize = (req: IncomingMessage, route: Route): string => {
    if (opts.tokens.size === 0) return req.socket.remoteAddress ?? "local";
    const header = req.headers.authorization ?? "";
    const token = /^Bearer\s+(\S+)$/i.exec(header)?.[1];
    const challenge = { "www-authenticate": 'Bearer realm="opencode-dispatch"' };
    if (!token)
      throw new HttpError(401, "Unauthorized", "send a token: Authorization: Bearer <token>", undefined, challenge);
    const scopes = opts.tokens.scopesOf(token);
    if (!scopes) throw new HttpError(401, "Unauthorized", "unknown token", undefined, challenge);
    const needed = route.scope as Scope;
    if (route.scope && !allows(scopes, needed))
      throw new HttpError(
        403,
        "Forbidden",
        `this token lacks the "${needed}" scope (it has ${[...scopes].join("+")}; scopes: ${SCOPES.join(", ")})`,
      );
    return createHash("sha256").update(token).digest("hex").slice(0, 16);
  };

  const server = createServer((req, res) => {
    const started = Date.now();
    const controller = new AbortController();
    res.on("close", () => controller.abort());
    void handle(req, res, controller.signal)
      .catch((error: unknown) => {
        const http = toHttpError(error);
        if (http.status >= 500)
          opts.log.error({ err: error, method: req.method, path: req.url?.split("?")[0] }, "api request failed");
        sendError(res, http);
        return http.status;
      })
      .then((status) =>
        opts.log.info(
          { method: req.method, path: req.url?.split("?")[0], status, ms: Date.now() - started },
          "api request",
        ),
      );
  });
  server.requestTimeout = 0; // long polls and event streams stay open
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 8080, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  port = address.port;
  const shown = address.family === "IPv6" ? `[${address.address}]` : address.address;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${shown}:${address.port}`,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      })),
  };
}
