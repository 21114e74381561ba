/**
 * The library: enqueue opencode prompts from an app and wait for their results, or run a worker
 * in-process. See the README's "The library".
 */
export {
  createDispatcher,
  Dispatcher,
  type DispatchTask,
  type DispatcherOptions,
  type EnqueueReceipt,
  type EnqueuedMany,
  type TypedResultRecord,
  type WaitOptions,
} from "./producer/dispatcher.js";
export type { DispatchEventName, EventHandlers, EventScope, Subscription } from "./producer/events.js";
export type { JobStatus } from "./producer/job-status.js";
export type { Flow, FlowReceipt } from "./producer/flow.js";
export type { ApprovalOutcome, ApproveOptions, RejectOptions } from "./producer/approvals.js";
export type { Decision } from "./shared/approval.js";
export { Schedules, type ScheduleInfo, type ScheduleSpec } from "./producer/schedules.js";
export {
  BatchHandle,
  type BatchCounts,
  type BatchProgress,
  type BatchStatus,
  type BatchWaitOptions,
} from "./producer/batch/handle.js";
export { fileSource, type BatchFormat, type BatchSource } from "./producer/batch/source.js";
export { BatchInputError, type BatchOptions, type BatchReceipt, type InvalidLine } from "./producer/batch/submit.js";
export type { BatchSummary, BatchFailure } from "./producer/batch/summary.js";
export type { BatchBudget } from "./producer/batch/store.js";
export type { BatchCancelOutcome, BatchRetryOutcome } from "./producer/batch/control.js";
export type { StreamOptions } from "./producer/live-stream.js";
export type { LiveEvent, LiveEventType } from "./shared/live.js";
export { loadConfig, type Config } from "./shared/config.js";
export {
  DispatchError,
  ExitCode,
  InputError,
  JobStateError,
  NotFinishedError,
  NotFoundError,
  RedisUnavailableError,
} from "./shared/errors.js";
export type { Ask, JobError, JobState, PendingApproval, Progress, ResultRecord, Tokens } from "./shared/result.js";
export { TaskInput, type Task } from "./shared/task.js";
export { FILE_LIMITS, type FileInput } from "./shared/files.js";
export type { JsonSchema } from "./shared/json-schema.js";
export { signBody, verifySignature, WEBHOOK_HEADERS } from "./shared/webhook.js";
export { startWorker, type RunningWorker, type WorkerOptions } from "./worker/worker.js";
