import type { Redis } from "ioredis";

/**
 * A job's live events, in a Redis stream per job (`QueueKeys.live`), so that an app can show the
 * answer as it is written and resume where it left off (stream IDs are the resume points):
 * - `state`: a record was written (`{ state, attempt }`; `active` begins an attempt, whose text
 *   starts afresh); the final one is `final`;
 * - `text`: a piece of the answer (`{ text }`), in order;
 * - `tool`: a tool call started or ended (`{ tool, status }`);
 * - `ask`: a permission ask or question and the answer given (`{ kind, what, patterns }`);
 * - `progress`: the running totals (`{ steps, toolCalls, tokens, cost, lastTool, status }`);
 * - `final`: the job's final record was written (`{ state }`); nothing follows.
 * Bounded (about LIVE_MAXLEN entries, the oldest trimmed) and expiring LIVE_TTL_MS after the last
 * entry. Entries are written by the worker (text, tool, ask, progress) and by every record write
 * (state, final: in the same script as the record, so the final entry never comes before it).
 */
export type LiveEventType = "state" | "text" | "tool" | "ask" | "progress" | "final";

export interface LiveEvent {
  /** The stream entry ID: pass it back as `after` (or SSE Last-Event-ID) to resume after it. */
  id: string;
  type: LiveEventType;
  data: Record<string, unknown>;
}

export const LIVE_MAXLEN = 10_000;
export const LIVE_TTL_MS = 86_400_000;

/**
 * Reads the entries after `after` ("0" for all), waiting up to `blockMs` for the first one when
 * none is there yet (0: do not wait). Uses a connection of its own when blocking.
 */
export async function readLive(
  redis: Redis,
  key: string,
  after: string,
  blockMs: number,
  count = 500,
): Promise<LiveEvent[]> {
  const reply =
    blockMs > 0
      ? await redis.xread("COUNT", count, "BLOCK", blockMs, "STREAMS", key, after)
      : await redis.xread("COUNT", count, "STREAMS", key, after);
  if (!reply) return [];
  return reply[0]![1].map(([id, fields]) => parseEntry(id, fields));
}

function parseEntry(id: string, fields: string[]): LiveEvent {
  let type = "state";
  let data: Record<string, unknown> = {};
  for (let i = 0; i < fields.length; i += 2) {
    if (fields[i] === "t") type = fields[i + 1]!;
    else if (fields[i] === "d") {
      try {
        data = JSON.parse(fields[i + 1]!) as Record<string, unknown>;
      } catch {
        data = {};
      }
    }
  }
  return { id, type: type as LiveEventType, data };
}
