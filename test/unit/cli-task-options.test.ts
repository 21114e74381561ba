import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { enqueueCommand, taskFromFlags } from "../../src/cli/commands/enqueue";
import { batchCommand } from "../../src/cli/commands/batch";
import { TaskInput } from "../../src/shared/task";

/** Every field of a task but the prompt (the argument) and `files` (the repeatable `--file`). */
const fields = Object.keys(TaskInput.shape).filter((k) => k !== "prompt" && k !== "files");

describe("the CLI's task options follow the task schema", () => {
  it("enqueue has an option for every task field, under the field's own name", () => {
    const options = new Set(enqueueCommand().options.map((o) => o.attributeName()));
    expect(fields.filter((f) => !options.has(f))).toEqual([]);
    expect(options.has("file")).toBe(true);
  });

  it("batch has one too (its --max-cost / --max-tokens are the batch's; --task-max-* the task's)", () => {
    const options = new Set(batchCommand().options.map((o) => o.attributeName()));
    const perTask: Record<string, string> = { maxCost: "taskMaxCost", maxTokens: "taskMaxTokens" };
    expect(fields.filter((f) => !options.has(perTask[f] ?? f))).toEqual([]);
  });

  it("every option given reaches the task, the directory made absolute and --file as files", () => {
    const given = Object.fromEntries(fields.map((f) => [f, `value of ${f}`]));
    const task = taskFromFlags("the prompt", {
      ...given,
      directory: "rel/dir",
      file: ["a.md"],
      json: true,
    } as never) as Record<string, unknown>;
    expect(task).toEqual({ ...given, prompt: "the prompt", directory: resolve("rel/dir"), files: ["a.md"] });
  });

  it("an option not given is not in the task", () => {
    expect(taskFromFlags("p", { model: "a/b" })).toEqual({ prompt: "p", model: "a/b" });
  });
});
