import { createHash, timingSafeEqual } from "node:crypto";
import type { Request, RequestHandler } from "express";

/** True for addresses only this machine can reach. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || h.startsWith("127.") || h === "::ffff:127.0.0.1";
}

const digest = (value: string) => createHash("sha256").update(value).digest();
const same = (a: string, b: string) => timingSafeEqual(digest(a), digest(b));

/** Addresses that mean "every interface": beyond them the Host header can be any name of the machine. */
const WILDCARDS = new Set(["0.0.0.0", "::", "[::]", ""]);

/** The host name of a Host header (`name:port`, `[v6]:port`), lower case. */
export function hostName(header: string): string {
  const h = header.trim().toLowerCase();
  if (h.startsWith("[")) return h.slice(0, h.indexOf("]") + 1);
  return h.replace(/:\d*$/, "");
}

/**
 * Refuses requests whose Host header is not a name the dashboard is served under, so a web page
 * cannot reach it by DNS rebinding (its requests carry the attacker's host name). Allowed: loopback
 * names (`localhost`, `*.localhost`, `127.x.y.z`, `[::1]`), the bound address, and `extra` names
 * (DASHBOARD_HOSTS). Bound to every interface (0.0.0.0, ::) any Host passes: basic auth is then
 * required, and a rebinding page has no credentials for its own host name.
 */
export function hostCheck(bound: string, extra: readonly string[] = []): RequestHandler {
  const any = WILDCARDS.has(bound.toLowerCase());
  const names = new Set([
    hostName(bound.includes(":") && !bound.startsWith("[") ? `[${bound}]` : bound),
    ...extra.map(hostName),
  ]);
  return (req, res, next) => {
    const name = hostName(req.headers.host ?? "");
    const v6 = name.replace(/^\[|\]$/g, "");
    if (
      any ||
      names.has(name) ||
      name === "localhost" ||
      name.endsWith(".localhost") ||
      /^127(\.\d{1,3}){3}$/.test(name) ||
      v6 === "::1"
    )
      return next();
    res
      .status(403)
      .type("text/plain")
      .send("unknown Host: this dashboard answers only to its own names (DASHBOARD_HOSTS)\n");
  };
}

/** The cookie that carries the dashboard's action token to its own pages (SameSite=Strict). */
export const TOKEN_COOKIE = "dispatch_token";
/** The header that may carry the action token instead (scripts). */
export const TOKEN_HEADER = "x-dispatch-token";

/** Whether an Origin header names the Host the request was sent to. */
function sameOrigin(origin: string, host: string | undefined): boolean {
  try {
    return new URL(origin).host === (host ?? "").toLowerCase();
  } catch {
    return false; // "null" (sandboxed frames, some redirects) or garbage
  }
}

function cookie(req: Request, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? "").split(";")) {
    const [key, ...value] = part.trim().split("=");
    if (key === name) return value.join("=");
  }
  return undefined;
}

/**
 * Guards every request that changes something (any method but GET, HEAD, OPTIONS): refused (405)
 * without `allow`; else it needs a method no cross-site form can send (PUT, PATCH, DELETE, or POST
 * of JSON, which a browser sends cross-site only after a CORS preflight this server never grants),
 * an Origin, when given, of the dashboard's own Host, and the token — the `dispatch_token`
 * cookie (SameSite=Strict, set on every page the dashboard serves) or the `X-Dispatch-Token` header.
 */
export function actionGuard(allow: boolean, token: string): RequestHandler {
  const setCookie = `${TOKEN_COOKIE}=${token}; Path=/; HttpOnly; SameSite=Strict`;
  return (req, res, next) => {
    if (req.method === "GET" || req.method === "HEAD" || req.method === "OPTIONS") {
      if (allow && cookie(req, TOKEN_COOKIE) !== token) res.append("Set-Cookie", setCookie);
      return next();
    }
    const refuse = (status: number, why: string) => void res.status(status).type("text/plain").send(`${why}\n`);
    if (!allow) return refuse(405, "read-only dashboard (start it with --allow-actions)");
    const json = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase() === "application/json";
    if (!["PUT", "PATCH", "DELETE"].includes(req.method) && !(req.method === "POST" && json))
      return refuse(405, `${req.method} is not an action method (PUT, PATCH, DELETE, or POST of application/json)`);
    if (req.headers.origin !== undefined && !sameOrigin(req.headers.origin, req.headers.host))
      return refuse(403, "cross-origin action refused");
    const given = String(req.headers[TOKEN_HEADER] ?? "") || cookie(req, TOKEN_COOKIE) || "";
    if (!same(given, token))
      return refuse(403, "action token missing or wrong (load a dashboard page first, or send X-Dispatch-Token)");
    next();
  };
}

/** HTTP basic auth; compares digests in constant time. */
export function basicAuth(user: string, password: string, realm = "opencode-dispatch"): RequestHandler {
  const expected = digest(`${user}:${password}`);
  return (req, res, next) => {
    const header = req.headers.authorization ?? "";
    const match = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(header);
    const given = match ? Buffer.from(match[1]!, "base64").toString("utf8") : "";
    if (match && timingSafeEqual(digest(given), expected)) return next();
    res
      .set("WWW-Authenticate", `Basic realm="${realm}", charset="UTF-8"`)
      .status(401)
      .type("text/plain")
      .send("authentication required\n");
  };
}
