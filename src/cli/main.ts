import { Command, CommanderError } from "commander";
import { DispatchError, ExitCode } from "../shared/errors.js";
import { isRedisConnectionError } from "../shared/redis.js";
import { tracingConfig } from "../shared/config.js";
import { startTracing, type Tracing } from "../shared/tracing.js";
import { approveCommand, rejectCommand } from "./commands/approve.js";
import { batchCommand } from "./commands/batch.js";
import { dashboardCommand } from "./commands/dashboard.js";
import { enqueueCommand } from "./commands/enqueue.js";
import { resultCommand, statusCommand, waitCommand } from "./commands/inspect.js";
import { cancelCommand, listCommand, pauseCommand, resumeCommand, retryCommand } from "./commands/manage.js";
import { watchCommand } from "./commands/watch.js";
import { apiCommand } from "./commands/api.js";
import { scheduleCommand } from "./commands/schedule.js";
import { upCommand } from "./commands/up.js";
import { actionExitCode } from "./options.js";
import { workerCommand } from "./commands/worker.js";

export function buildProgram(): Command {
  const program = new Command("opencode-dispatch")
    .description("A persistent job queue for opencode: enqueue prompts into Redis, run them on warm opencode servers.")
    .version("0.1.0")
    .showSuggestionAfterError();
  for (const command of [
    enqueueCommand(),
    batchCommand(),
    statusCommand(),
    resultCommand(),
    waitCommand(),
    watchCommand(),
    cancelCommand(),
    retryCommand(),
    approveCommand(),
    rejectCommand(),
    pauseCommand(),
    resumeCommand(),
    listCommand(),
    scheduleCommand(),
    workerCommand(),
    upCommand(),
    dashboardCommand(),
    apiCommand(),
  ]) {
    program.addCommand(command);
  }
  // Every command: usage errors exit 2, not commander's default 1.
  const configure = (command: Command) => {
    command.exitOverride();
    command.commands.forEach(configure);
  };
  configure(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  let tracing: Tracing | undefined;
  try {
    tracing = await startTracing(tracingConfig()); // off unless the OTEL_* variables ask for traces
    await program.parseAsync(argv);
    return actionExitCode();
  } catch (error) {
    if (error instanceof CommanderError) {
      if (
        error.code === "commander.helpDisplayed" ||
        error.code === "commander.version" ||
        error.code === "commander.help"
      )
        return ExitCode.ok;
      return ExitCode.usage; // commander already printed the message
    }
    if (error instanceof DispatchError) {
      process.stderr.write(`error: ${error.message}\n`);
      return error.exitCode;
    }
    if (isRedisConnectionError(error)) {
      process.stderr.write(`error: lost the connection to Redis: ${(error as Error).message}\n`);
      return ExitCode.redisUnavailable;
    }
    process.stderr.write(`error: ${(error as Error)?.stack ?? String(error)}\n`);
    return ExitCode.jobFailed;
  } finally {
    await tracing?.close(); // exports the spans still buffered
  }
}
