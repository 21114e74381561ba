import { describe, expect, it } from "vitest";
import { InputError } from "../../src/shared/errors.js";
import { describeIssues, parseTask, TaskInput, toPayload } from "../../src/shared/task.js";

/** What the full schema says of an input: the task, or the message parseTask should throw. */
function fullVerdict(input: unknown): { task: unknown } | { error: string } {
  const parsed = TaskInput.safeParse(input);
  return parsed.success ? { task: parsed.data } : { error: describeIssues(parsed.error) };
}

function verdict(input: unknown): { task: unknown } | { error: string } {
  try {
    return { task: parseTask(input) };
  } catch (error) {
    if (error instanceof InputError) return { error: error.message };
    throw error;
  }
}

const cases: [string, unknown][] = [
  ["prompt only", { prompt: "hi" }],
  ["prompt and model", { prompt: "hi", model: "fake/echo" }],
  ["fields in another order", { model: "fake/echo", prompt: "hi" }],
  [
    "many fields",
    {
      prompt: "hi",
      model: "a/b",
      agent: "build",
      title: "t",
      priority: 3,
      attempts: 2,
      timeout: "10m",
      id: "k-1",
      metadata: { a: 1 },
      maxCost: 0.5,
    },
  ],
  ["a field set to undefined", { prompt: "hi", model: undefined }],
  ["no prompt", { model: "fake/echo" }],
  ["empty object", {}],
  ["blank prompt", { prompt: "   " }],
  ["prompt not a string", { prompt: 42 }],
  ["bad model", { prompt: "hi", model: "nomodel" }],
  ["unknown field", { prompt: "hi", modle: "a/b" }],
  ["unknown field and bad model", { prompt: "hi", model: "x", colour: "red" }],
  ["continue and session", { prompt: "hi", continue: "job-1", session: "ses_1" }],
  ["worktree without directory", { prompt: "hi", worktree: true }],
  ["numeric id", { prompt: "hi", id: "123" }],
  ["bad timeout", { prompt: "hi", timeout: "soon" }],
  ["zero timeout", { prompt: "hi", timeout: 0 }],
  ["an array", [{ prompt: "hi" }]],
  ["null", null],
  ["a string", "hi"],
  [
    "inherited fields",
    Object.create({ model: "fake/echo", id: "from-proto" }, { prompt: { value: "hi", enumerable: true } }),
  ],
  [
    "a class instance with a getter",
    new (class {
      prompt = "hi";
      get id() {
        return "getter-id";
      }
    })(),
  ],
  ["a non-enumerable field", Object.defineProperty({ prompt: "hi" }, "id", { value: "hidden-id", enumerable: false })],
  ["a null prototype", Object.assign(Object.create(null) as object, { prompt: "hi", model: "a/b" })],
];

describe("a task checked before it is enqueued", () => {
  it.each(cases)("agrees with the full task schema: %s", (_name, input) => {
    const expected = fullVerdict(input);
    // twice: the second call uses the per-fields schema built by the first
    expect(verdict(input)).toEqual(expected);
    expect(verdict(input)).toEqual(expected);
  });

  it("names the field and the problem", () => {
    expect(() => parseTask({ prompt: "hi", model: "nomodel" })).toThrow(/model: must be of the form "provider\/model"/);
    expect(() => parseTask({ model: "a/b" })).toThrow(/prompt: /);
    expect(() => parseTask({ prompt: "hi", modle: "a/b" })).toThrow(/unknown field "modle"/);
    expect(() => parseTask({ prompt: "hi", worktree: true })).toThrow(/worktree: needs a directory/);
  });

  it("turns a duration into milliseconds and refuses a relative directory", () => {
    expect(parseTask({ prompt: "hi", timeout: "2m" }).timeout).toBe(120_000);
    expect(() => parseTask({ prompt: "hi", directory: "rel/dir" })).toThrow(/directory: must be an absolute path/);
  });
});

describe("the job data made from a task", () => {
  it("keeps the work, drops queue options and undefined fields, adds timeout and enqueue time", () => {
    const task = parseTask({
      prompt: "hi",
      model: "a/b",
      id: "k-1",
      priority: 2,
      delay: 5,
      attempts: 3,
      timeout: "1m",
      continue: "job-0",
      title: undefined,
    });
    const payload = toPayload(task, { timeoutMs: 9 }, "2026-01-01T00:00:00.000Z");
    expect(payload).toEqual({
      prompt: "hi",
      model: "a/b",
      timeoutMs: 60_000,
      enqueuedAt: "2026-01-01T00:00:00.000Z",
      v: 1,
    });
    expect(Object.keys(payload)).not.toContain("title");
    expect(toPayload(parseTask({ prompt: "x" }), { timeoutMs: 9 }, new Date(0)).timeoutMs).toBe(9);
    expect(toPayload(parseTask({ prompt: "x" }), { timeoutMs: 9 }, new Date(0)).enqueuedAt).toBe(
      "1970-01-01T00:00:00.000Z",
    );
  });
});
