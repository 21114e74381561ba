import { Command, Option } from "commander";
import { loadConfig, type Config } from "../shared/config.js";
import { parseDuration } from "../shared/duration.js";
import { InputError } from "../shared/errors.js";
import { ApprovalPolicy } from "../shared/task.js";
import { Dispatcher } from "../producer/dispatcher.js";

export interface ConnectionFlags {
  redis?: string;
  queue?: string;
}

/** `--redis` and `--queue`, on every command that talks to Redis. */
export function withConnection(command: Command): Command {
  return command
    .addOption(new Option("--redis <url>", "Redis URL (redis:// or rediss://)").env("REDIS_URL"))
    .addOption(new Option("--queue <name>", "queue name").env("DISPATCH_QUEUE"));
}

export function configFrom(flags: ConnectionFlags): Config {
  const config = loadConfig();
  return { ...config, redisUrl: flags.redis || config.redisUrl, queue: flags.queue || config.queue };
}

/** Runs a command's work with a Dispatcher for `--redis` / `--queue`, closed however it ends. */
export async function withDispatcher<T>(
  flags: ConnectionFlags,
  work: (dispatcher: Dispatcher) => Promise<T>,
): Promise<T> {
  const config = configFrom(flags);
  const dispatcher = new Dispatcher({ config, redisUrl: config.redisUrl, queue: config.queue });
  try {
    return await work(dispatcher);
  } finally {
    await dispatcher.close();
  }
}

/** Option parsers that reject bad values with an InputError naming the option. */
export function intOption(name: string, min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InputError(`${name}: "${value}" is not a whole number between ${min} and ${max}`);
    }
    return n;
  };
}

export function numberOption(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!value.trim() || !Number.isFinite(n) || n <= 0)
      throw new InputError(`${name}: "${value}" is not a positive number`);
    return n;
  };
}

export function durationOption(name: string) {
  return (value: string): number => {
    try {
      return parseDuration(value);
    } catch (error) {
      throw new InputError(`${name}: ${(error as Error).message}`);
    }
  };
}

/** `--approval reject|approve|manual`. */
export function approvalOption(value: string): ApprovalPolicy {
  const parsed = ApprovalPolicy.safeParse(value);
  if (!parsed.success)
    throw new InputError(`--approval: "${value}" is not one of ${ApprovalPolicy.options.join(", ")}`);
  return parsed.data;
}

export function jsonObjectOption(name: string) {
  return (value: string): Record<string, unknown> => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(value);
    } catch (error) {
      throw new InputError(`${name}: not valid JSON (${(error as Error).message})`);
    }
    if (!parsed || typeof parsed !== "object" || Array.isArray(parsed))
      throw new InputError(`${name}: must be a JSON object`);
    return parsed as Record<string, unknown>;
  };
}

export async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) throw new InputError('prompt "-" reads from stdin, but stdin is a terminal');
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

let lastExitCode = 0;

/** Wraps a command's action so that the number it returns becomes the process exit code. */
export function exitWith<A extends unknown[]>(fn: (...args: A) => Promise<number>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    lastExitCode = await fn(...args);
  };
}

export function actionExitCode(): number {
  return lastExitCode;
}
