/**
 * The few error classes the project throws on purpose. Each carries the process exit code the CLI
 * uses for it, so every layer can throw and only the CLI decides how to exit.
 */
export const ExitCode = {
  ok: 0,
  jobFailed: 1,
  usage: 2,
  redisUnavailable: 3,
  notFound: 4,
  notFinished: 5,
  wrongState: 6,
  interrupted: 130,
} as const;

export class DispatchError extends Error {
  readonly exitCode: number = ExitCode.jobFailed;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Bad input from a user or a client: names the field or line at fault. Never retried. */
export class InputError extends DispatchError {
  override readonly exitCode = ExitCode.usage;
}

/** Redis could not be reached (refused, DNS, auth, timeout). */
export class RedisUnavailableError extends DispatchError {
  override readonly exitCode = ExitCode.redisUnavailable;
}

/** No job, result or batch with that ID. */
export class NotFoundError extends DispatchError {
  override readonly exitCode = ExitCode.notFound;
}

/** A wait ended (timeout or abort) before the job finished. */
export class NotFinishedError extends DispatchError {
  override readonly exitCode = ExitCode.notFinished;
}

/** The job is in the wrong state for the request (cancel of a finished job, retry of one that did not fail). */
export class JobStateError extends DispatchError {
  override readonly exitCode = ExitCode.wrongState;
}

/** A URL safe to print: the password (and a username that looks like a secret) is masked. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return url.replace(/\/\/[^@/]*@/, "//***@");
  }
}
