/**
 * Vitest globalSetup: starts the >300 s task of test/integration/long-task.test.ts as the run
 * begins, on a stack of its own (real worker, real `opencode serve`, the fake model), so that it
 * runs beside the whole suite instead of holding one of the two test forks, mostly idle, for over
 * five minutes. The test file, sequenced last, waits for the task's record and checks it. Only with
 * RUN_SLOW=1 or CI set, and only when the run includes that file.
 */
import { resolve } from "node:path";
import type { TestProject } from "vitest/node";
import { startStack } from "./stack";

export const LONG_TASK_FILE = "test/integration/long-task.test.ts";
/** The model streams its answer in five pieces 80 s apart: ~320 s before the prompt returns. */
export const LONG_TASK = { prompt: "take your time [[slow:80000]]", model: "fake/echo", timeout: "10m" };

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const slow = Boolean(process.env.CI || process.env.RUN_SLOW);
  // The file filters of `vitest run <filter>…` (a file runs when its path contains a filter).
  const filters = (project.vitest as unknown as { filenamePattern?: string[] }).filenamePattern ?? [];
  const path = resolve(project.config.root, LONG_TASK_FILE);
  const included = filters.length === 0 || filters.some((f) => path.includes(f) || resolve(f) === path);
  if (!slow || !included) {
    project.provide("longTask", null);
    return undefined;
  }
  const redisUrl = project.getProvidedContext().redisUrl;
  const stack = await startStack({ redisUrl });
  try {
    await stack.startWorker({ concurrency: 1 });
    const { jobId } = await stack.dispatcher.enqueue(LONG_TASK);
    project.provide("longTask", { redisUrl, queue: stack.queue, jobId });
  } catch (error) {
    await stack.close();
    throw error;
  }
  return () => stack.close();
}
