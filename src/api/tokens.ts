import { createHash, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { InputError } from "../shared/errors.js";

/** What a token may do: `enqueue` jobs and batches, `read` their state and answers, `admin` all of it and more. */
export type Scope = "enqueue" | "read" | "admin";
export const SCOPES: readonly Scope[] = ["enqueue", "read", "admin"];

/**
 * The API's bearer tokens: `DISPATCH_API_TOKENS="tok1:enqueue+read,tok2:admin"`, or
 * `DISPATCH_API_TOKENS_FILE` (one `token:scopes` a line, `#` comments). Tokens are kept as
 * SHA-256 digests and compared in constant time.
 */
export class ApiTokens {
  private readonly entries: { digest: Buffer; scopes: Set<Scope> }[] = [];

  private constructor(lines: readonly { text: string; where: string }[]) {
    for (const { text, where } of lines) {
      const colon = text.lastIndexOf(":");
      if (colon <= 0)
        throw new InputError(`${where}: "token:scopes" expected (scopes: ${SCOPES.join(", ")}, joined by +)`);
      const token = text.slice(0, colon).trim();
      const scopes = text
        .slice(colon + 1)
        .split("+")
        .map((s) => s.trim());
      if (token.length < 16) throw new InputError(`${where}: a token must be at least 16 characters`);
      for (const scope of scopes) {
        if (!SCOPES.includes(scope as Scope))
          throw new InputError(`${where}: unknown scope "${scope}" (scopes: ${SCOPES.join(", ")})`);
      }
      this.entries.push({ digest: digest(token), scopes: new Set(scopes as Scope[]) });
    }
  }

  /** The tokens the environment configures (none: an empty set, which only loopback may serve). */
  static fromEnv(env: NodeJS.ProcessEnv = process.env): ApiTokens {
    const lines: { text: string; where: string }[] = [];
    (env.DISPATCH_API_TOKENS ?? "").split(",").forEach((text, i) => {
      if (text.trim()) lines.push({ text: text.trim(), where: `DISPATCH_API_TOKENS entry ${i + 1}` });
    });
    const file = env.DISPATCH_API_TOKENS_FILE;
    if (file) {
      let content: string;
      try {
        content = readFileSync(file, "utf8");
      } catch (error) {
        throw new InputError(
          `DISPATCH_API_TOKENS_FILE: cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
        );
      }
      content.split("\n").forEach((raw, i) => {
        const text = raw.trim();
        if (text && !text.startsWith("#")) lines.push({ text, where: `${file} line ${i + 1}` });
      });
    }
    return new ApiTokens(lines);
  }

  get size(): number {
    return this.entries.length;
  }

  /** The scopes of a presented token, or null for an unknown one. */
  scopesOf(token: string): Set<Scope> | null {
    const presented = digest(token);
    let found: Set<Scope> | null = null;
    for (const entry of this.entries) if (timingSafeEqual(entry.digest, presented)) found = entry.scopes;
    return found;
  }
}

const digest = (token: string): Buffer => createHash("sha256").update(token).digest();

/** Whether a set of scopes allows what `needed` names (`admin` allows everything). */
export const allows = (scopes: Set<Scope>, needed: Scope): boolean => scopes.has("admin") || scopes.has(needed);
