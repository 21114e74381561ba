import type { ServerResponse } from "node:http";
import type { LiveEvent } from "../shared/live.js";

/** A comment line sent this often keeps proxies and clients from closing a quiet stream. */
const HEARTBEAT_MS = 15_000;

/**
 * Sends live events as server-sent events: `id` (the resume point a client sends back as
 * Last-Event-ID), `event` (the type), `data` (JSON). Ends after `final`, or when the client goes.
 */
export async function streamEvents(
  res: ServerResponse,
  events: AsyncIterable<LiveEvent>,
  signal: AbortSignal,
): Promise<void> {
  const iterator = events[Symbol.asyncIterator]();
  // Headers and heartbeats go out at once (the route checked that the job exists), however long
  // the first event takes.
  res.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-store",
    connection: "keep-alive",
    "x-accel-buffering": "no",
  });
  res.write(": stream of live events\n\n");
  const heartbeat = setInterval(() => res.write(": ping\n\n"), HEARTBEAT_MS);
  try {
    let next = await iterator.next();
    while (!next.done && !signal.aborted) {
      const event = next.value;
      res.write(`id: ${event.id}\nevent: ${event.type}\ndata: ${JSON.stringify(event.data)}\n\n`);
      if (event.type === "final") break;
      next = await iterator.next();
    }
  } finally {
    clearInterval(heartbeat);
    await iterator.return?.(undefined);
    res.end();
  }
}
