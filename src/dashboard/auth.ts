import { createHash, timingSafeEqual } from "node:crypto";
import type { RequestHandler } from "express";

/** True for addresses only this machine can reach. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || h.startsWith("127.") || h === "::ffff:127.0.0.1";
}

const digest = (value: string) => createHash("sha256").update(value).digest();

/** HTTP basic auth; compares digests in constant time. */
export function basicAuth(user: string, password: string, realm = "opencode-dispatch"): RequestHandler {
  const expected = digest(`${user}:${password}`);
  return (req, res, next) => {
    const header = req.headers.authorization ?? "";
    const match = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(header);
    const given = match ? Buffer.from(match[1]!, "base64").toString("utf8") : "";
    if (match && timingSafeEqual(digest(given), expected)) return next();
    res.set("WWW-Authenticate", `Basic realm="${realm}", charset="UTF-8"`).status(401).type("text/plain").send("authentication required\n");
  };
}
