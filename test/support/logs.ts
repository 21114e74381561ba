/**
 * A worker logger whose lines the test can read: pino JSON lines, as the worker writes them on
 * stderr, kept in memory (every level from `level` up; "debug" also logs prompts).
 */
import { pino } from "pino";
import type { Logger } from "../../src/shared/logger";

export interface CapturedLogs {
  log: Logger;
  /** Every line written so far. */
  lines(): string[];
}

export function captureLogs(level = "debug"): CapturedLogs {
  const lines: string[] = [];
  let partial = "";
  const stream = {
    write(chunk: string) {
      const parts = (partial + chunk).split("\n");
      partial = parts.pop() ?? "";
      lines.push(...parts.filter(Boolean));
    },
  };
  return { log: pino({ level, timestamp: pino.stdTimeFunctions.isoTime }, stream), lines: () => [...lines] };
}
