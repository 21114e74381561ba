import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fileSource, spoolToFile, taskListSource, type BatchEntry } from "../../src/producer/batch/source";
import { BatchInputError } from "../../src/producer/batch/submit";
import { percentile, SummaryBuilder } from "../../src/producer/batch/summary";
import type { ResultRecord } from "../../src/shared/result";

async function collect(entries: AsyncIterable<BatchEntry>): Promise<BatchEntry[]> {
  const out: BatchEntry[] = [];
  for await (const e of entries) out.push(e);
  return out;
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ocd-batch-unit-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("batch sources", () => {
  it("reads JSON Lines, skipping blank lines but keeping the file's line numbers", async () => {
    const file = join(dir, "a.jsonl");
    await writeFile(file, '\n  {"prompt":"one"}\r\n\n[1,2]\n{"prompt":\n{"prompt":"two","model":"x/y"}');
    const source = await fileSource(file);
    expect(source.format).toBe("jsonl");
    const entries = await collect(source.entries());
    expect(entries.map((e) => e.line)).toEqual([2, 4, 5, 6]);
    expect(entries[0]).toMatchObject({ input: { prompt: "one" } });
    expect(entries[1]).toMatchObject({ error: "must be a JSON object (a task)" });
    expect(entries[2]).toMatchObject({ error: expect.stringMatching(/^not valid JSON/) });
    expect(entries[3]).toMatchObject({ input: { prompt: "two", model: "x/y" } });
    // A second pass gives the same entries (the file is read again, not kept).
    expect(await collect(source.entries())).toEqual(entries);
  });

  it("takes a file whose first line is not an object as one prompt per line", async () => {
    const file = join(dir, "b.txt");
    await writeFile(file, "first prompt\n\n{not a task} second\nthird\n");
    const source = await fileSource(file);
    expect(source.format).toBe("text");
    const entries = await collect(source.entries());
    expect(entries.map((e) => [e.line, "input" in e ? e.input.prompt : null])).toEqual([
      [1, "first prompt"],
      [3, "{not a task} second"],
      [4, "third"],
    ]);
    expect((await fileSource(file, "jsonl")).format).toBe("jsonl");
  });

  it("drops a UTF-8 byte order mark and CRLF line ends, in either format", async () => {
    const text = join(dir, "bom.txt");
    await writeFile(text, "\uFEFFalpha\r\nbeta\r\n");
    const prompts = (await collect((await fileSource(text)).entries())).map((e) =>
      "input" in e ? e.input.prompt : null,
    );
    expect(prompts).toEqual(["alpha", "beta"]);
    const jsonl = join(dir, "bom.jsonl");
    await writeFile(jsonl, '\uFEFF{"prompt":"one"}\r\n');
    const source = await fileSource(jsonl);
    expect(source.format).toBe("jsonl");
    expect(await collect(source.entries())).toMatchObject([{ line: 1, input: { prompt: "one" } }]);
  });

  it("rejects a missing file as bad input", async () => {
    await expect(fileSource(join(dir, "nope.jsonl"))).rejects.toThrow(/cannot read .*nope\.jsonl: ENOENT/);
  });

  it("spools a stream to a file it can read twice, and removes it", async () => {
    const spooled = await spoolToFile(Readable.from(["a prompt\n", "another\n"]));
    const source = await fileSource(spooled.path);
    expect((await collect(source.entries())).length).toBe(2);
    await spooled.cleanup();
    await expect(fileSource(spooled.path)).rejects.toThrow(/ENOENT/);
  });

  it("numbers library tasks from 1, from an array or a generator function", async () => {
    expect((await collect(taskListSource([{ prompt: "a" }, { prompt: "b" }]).entries())).map((e) => e.line)).toEqual([
      1, 2,
    ]);
    const gen = function* () {
      yield { prompt: "x" };
      yield null as never;
    };
    const entries = await collect(taskListSource(gen).entries());
    expect(entries[1]).toMatchObject({ line: 2, error: "must be a task object" });
  });
});

describe("batch summaries", () => {
  it("computes nearest-rank percentiles", () => {
    const values = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(values, 50)).toBe(50);
    expect(percentile(values, 95)).toBe(95);
    expect(percentile([7], 95)).toBe(7);
  });

  it("sums tokens and cost and keeps failures with their line", () => {
    const base = {
      tokens: { input: 10, output: 2, reasoning: 0, cacheRead: 1, cacheWrite: 0, total: 13 },
      cost: 0.5,
      error: null,
    } as Partial<ResultRecord>;
    const b = new SummaryBuilder();
    b.add({ ...base, jobId: "a", state: "completed", durationMs: 100 } as ResultRecord, 1);
    b.add({ ...base, jobId: "b", state: "completed", durationMs: 300 } as ResultRecord, 2);
    b.add(
      {
        ...base,
        jobId: "c",
        state: "failed",
        durationMs: 200,
        error: { name: "APIError", message: "boom", retryable: false },
      } as ResultRecord,
      7,
    );
    const s = b.build("batch-x", 3, 1_000);
    expect(s).toMatchObject({ completed: 2, failed: 1, cost: 1.5, durationMs: { p50: 200, p95: 300, max: 300 } });
    expect(s.tokens).toEqual({ input: 30, output: 6, reasoning: 0, cacheRead: 3, cacheWrite: 0, total: 39 });
    expect(s.failures).toEqual([
      { jobId: "c", line: 7, error: { name: "APIError", message: "boom", retryable: false } },
    ]);
    expect(s.spanMs).toBeNull(); // no times on these records
  });

  it("spans the batch from its first enqueue to its last finish, whenever it is waited for", () => {
    const b = new SummaryBuilder();
    const at = (enqueued: string, finished: string) =>
      ({
        jobId: enqueued,
        state: "completed",
        enqueuedAt: `2026-01-01T00:00:${enqueued}.000Z`,
        finishedAt: `2026-01-01T00:00:${finished}.000Z`,
      }) as ResultRecord;
    b.add(at("05", "09"), 2);
    b.add(at("01", "04"), 1);
    expect(b.build("batch-x", 2, 20).spanMs).toBe(8_000);
  });

  it("lists invalid lines first, then how many and that nothing was enqueued", () => {
    const error = new BatchInputError([{ line: 17, error: "model: bad" }], 1);
    expect(error.message).toBe(
      "line 17: model: bad\n1 invalid line: nothing was enqueued (skipInvalid / --skip-invalid enqueues the valid ones)",
    );
    expect(error.exitCode).toBe(2);
  });
});
