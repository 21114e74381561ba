import { pino, type Logger, type LoggerOptions } from "pino";

export type { Logger };

/** Paths pino masks wherever they appear in a log line. */
const REDACT = [
  "password",
  "*.password",
  "apiKey",
  "*.apiKey",
  "authorization",
  "*.authorization",
  "headers.Authorization",
  "*.headers.Authorization",
  "env",
  "*.env",
  // ioredis puts the failed command on its errors: its arguments are data (records, transcripts, AUTH).
  "err.command.args",
  "*.err.command.args",
  "err.previousErrors[*].command.args",
  "*.err.previousErrors[*].command.args",
];

/**
 * JSON logs on stderr (stdout is for command output). In a terminal, and when pino-pretty is
 * installed, lines are pretty-printed.
 */
export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  const options: LoggerOptions = {
    level,
    base: { pid: process.pid, ...bindings },
    redact: { paths: REDACT, censor: "***" },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  if (process.stderr.isTTY && canPretty()) {
    return pino({ ...options, transport: { target: "pino-pretty", options: { destination: 2 } } });
  }
  return pino(options, pino.destination({ fd: 2, sync: false }));
}

function canPretty(): boolean {
  try {
    import.meta.resolve("pino-pretty");
    return true;
  } catch {
    return false;
  }
}
