/**
 * The dashboard's own pages in Chromium, on a workload run by a real worker on the fake model: a
 * batch page whose counts are those of `status <batchId>`, a session's transcript with both turns
 * of a follow-up and links both ways, charts with drawn series, a job page whose answer grows and a
 * batch page whose counts move while the jobs run (no reload), a batch cancelled from its page, the
 * queue paused and resumed, and an ask approved. With DASHBOARD_SCREENSHOTS=1 it
 * saves a PNG of each page under docs/ (the README shows them).
 */
import { mkdirSync } from "node:fs";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDashboard, type RunningDashboard } from "../../src/dashboard/server";
import type { BatchStatus } from "../../src/producer/batch/handle";
import type { ResultRecord } from "../../src/shared/result";
import { launchChromium } from "../support/browser";
import { runCli } from "../support/cli";
import { useStack } from "../support/stack";

const SHOTS = process.env.DASHBOARD_SCREENSHOTS === "1";
const DOCS = new URL("../../docs/", import.meta.url).pathname;

describe("dashboard pages", () => {
  const stack = useStack({ worker: { concurrency: 2 } });
  let dashboard: RunningDashboard;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let first: ResultRecord;
  let second: ResultRecord;
  let batchId: string;

  const shot = async (name: string) => {
    if (!SHOTS) return;
    mkdirSync(DOCS, { recursive: true });
    await page.screenshot({ path: `${DOCS}dashboard-${name}.png`, fullPage: true });
  };

  beforeAll(async () => {
    browser = await launchChromium();
    first = await stack.dispatcher.run(
      {
        id: "first-turn",
        prompt: 'look around [[tool:bash:{"command":"echo hi","description":"say hi"}]]',
        model: "fake/priced",
      },
      { timeoutMs: 120_000 },
    );
    second = await stack.dispatcher.run(
      { id: "second-turn", prompt: "and now the follow-up", continue: first.jobId, model: "fake/priced" },
      { timeoutMs: 120_000 },
    );
    const batch = await stack.dispatcher.submitBatch(
      [
        ...Array.from({ length: 5 }, (_, i) => ({ prompt: `batch task ${i}`, model: "fake/priced" })),
        { prompt: "batch refused [[status:401]]", model: "fake/echo" },
      ],
      { id: "dash-batch" },
    );
    batchId = batch.id;
    await batch.wait({ timeoutMs: 120_000 });
    dashboard = await startDashboard({
      redisUrl: stack.redisUrl,
      queue: stack.queue,
      port: 0,
      allowActions: true,
      config: stack.config,
    });
    context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    page = await context.newPage();
  });
  afterAll(async () => {
    await context?.close();
    await browser?.close();
    await dashboard?.close();
  });

  it("shows a batch with the counts of `status <batchId>`, its failures by error, and its members", async () => {
    const cli = await runCli(["status", batchId, "--json"], { env: stack.childEnv, timeoutMs: 60_000 });
    expect(cli.code, cli.stderr).toBe(0);
    const status = JSON.parse(cli.stdout) as BatchStatus;
    expect(status.counts).toEqual({ queued: 0, running: 0, completed: 5, failed: 1 });

    await page.goto(`${dashboard.url}/batches`);
    const row = page.locator(`[data-testid=batch-row][data-batch-id="${batchId}"]`);
    expect(await row.count()).toBe(1);
    await row.locator(`a[href="/batches/${batchId}"]`).click();
    await page.waitForURL(`**/batches/${batchId}`);
    for (const state of ["completed", "failed", "running", "queued"] as const) {
      expect(await page.textContent(`[data-testid=count-${state}]`), state).toBe(String(status.counts[state]));
    }
    expect(await page.textContent("[data-testid=status-total]")).toBe(String(status.total));
    expect(await page.getAttribute("[data-testid=progress] .done", "style")).toContain("width:83.3%");
    expect(await page.textContent("[data-testid=cost]")).toMatch(/^\$\d+\.\d{4}$/);
    expect(await page.textContent("[data-testid=p95]")).toMatch(/\d/);
    const failure = page.locator("[data-testid=failure-group]");
    expect(await failure.getAttribute("data-error")).toBe("APIError");
    expect(await failure.textContent()).toContain("line 6");
    expect(await page.locator("[data-testid=member-row]").count()).toBe(6);
    // Its charts are drawn from its members: six finishes, five of them with a cost.
    const throughput = page.locator("svg[data-chart=throughput]");
    const bars = await throughput
      .locator("rect[data-series]")
      .evaluateAll((rects) =>
        rects.map((r) => [r.getAttribute("data-series"), Number(r.getAttribute("data-value"))] as const),
      );
    expect(bars.filter(([s]) => s === "completed").reduce((n, [, v]) => n + v, 0)).toBe(5);
    expect(bars.filter(([s]) => s === "failed").reduce((n, [, v]) => n + v, 0)).toBe(1);
    expect(Number(await page.getAttribute("svg[data-chart=cost]", "data-points"))).toBeGreaterThan(0);
    await shot("batch");
    await page.goto(`${dashboard.url}/batches`);
    await shot("batches");
  });

  it("shows a session as a transcript: both turns of a follow-up, with links both ways", async () => {
    expect(second.sessionId).toBe(first.sessionId);
    expect(second.continues).toBe(first.jobId);
    await page.goto(`${dashboard.url}/results/${second.jobId}`);
    await page.click("[data-testid=continues-link]");
    await page.waitForURL(`**/results/${first.jobId}`);
    await page.click("[data-testid=continued-by-link]");
    await page.waitForURL(`**/results/${second.jobId}`);
    await page.click("[data-testid=session-link]");
    await page.waitForURL(`**/sessions/${first.sessionId}`);

    const turns = page.locator("[data-testid=turn]");
    expect(await turns.count()).toBe(2);
    expect(await turns.nth(0).locator("[data-testid=turn-prompt]").textContent()).toContain("look around");
    expect(await turns.nth(0).locator("[data-testid=tool-call]").textContent()).toContain("bash");
    expect(await turns.nth(0).locator("[data-testid=turn-answer]").textContent()).toBe(first.text);
    expect(await turns.nth(1).locator("[data-testid=turn-prompt]").textContent()).toBe("and now the follow-up");
    expect(await turns.nth(1).locator("[data-testid=turn-answer]").textContent()).toBe(second.text);
    expect(await turns.nth(0).locator("[data-testid=turn-job]").getAttribute("data-job-id")).toBe(first.jobId);
    expect(await turns.nth(1).locator("[data-testid=turn-job]").getAttribute("data-job-id")).toBe(second.jobId);
    await shot("session");
    // From the first turn to the job that continues it, from the second back to the one it continues.
    await turns.nth(0).locator("[data-testid=continued-by-link]").click();
    await page.waitForURL(`**/results/${second.jobId}`);
    await page.goBack();
    await page.locator("[data-testid=turn]").nth(1).locator("[data-testid=continues-link]").click();
    await page.waitForURL(`**/results/${first.jobId}`);
  });

  it("draws the queue's charts on the overview from the series the worker wrote", async () => {
    await page.goto(`${dashboard.url}/`);
    const throughput = page.locator("svg[data-chart=throughput]");
    // 2 turns and 6 batch members finished, one of them failed.
    const values = await throughput
      .locator("rect[data-series]")
      .evaluateAll((rects) =>
        rects.map((r) => [r.getAttribute("data-series"), Number(r.getAttribute("data-value"))] as const),
      );
    expect(values.filter(([s]) => s === "completed").reduce((n, [, v]) => n + v, 0)).toBe(7);
    expect(values.filter(([s]) => s === "failed").reduce((n, [, v]) => n + v, 0)).toBe(1);
    const cost = page.locator("svg[data-chart=cost] rect[data-series='fake/priced']");
    expect(await cost.count()).toBeGreaterThan(0);
    expect(Number(await page.getAttribute("svg[data-chart=durations]", "data-points"))).toBeGreaterThan(0);
    expect(await page.locator("svg[data-chart=depth] circle[data-series=waiting]").count()).toBeGreaterThan(0);
    await shot("overview");
  });

  it("shows a running job's answer as it is written, without a reload", async () => {
    const { jobId } = await stack.dispatcher.enqueue({
      prompt: "[[reply:one two three four five six seven eight nine ten]] [[slow:700]]",
      model: "fake/echo",
    });
    await expect.poll(async () => (await stack.dispatcher.status(jobId)).state, { timeout: 60_000 }).toBe("active");
    await page.goto(`${dashboard.url}/results/${jobId}`);
    await page.evaluate(() => ((globalThis as unknown as { marker: number }).marker = 1));
    const answer = page.locator("[data-testid=answer]");
    await expect.poll(() => answer.count(), { timeout: 30_000 }).toBe(1);
    const seen: string[] = [];
    await expect
      .poll(
        async () => {
          seen.push((await answer.textContent()) ?? "");
          if (seen.length === 8) await shot("job-live");
          return await page.textContent("[data-testid=state]");
        },
        { timeout: 60_000, interval: 100 },
      )
      .toBe("completed");
    expect(await answer.textContent()).toBe("one two three four five six seven eight nine ten");
    // Seen part-written before it was whole, on the same page (the marker survived: no reload).
    expect(
      seen.some((text) => text.length > 0 && text.length < "one two three four five six seven eight nine ten".length),
    ).toBe(true);
    expect(await page.evaluate(() => (globalThis as unknown as { marker?: number }).marker)).toBe(1);
  });

  it("updates a batch page as its members start, cancels the batch from it, and pauses and resumes the queue from the overview", async () => {
    // Submitted while the queue is paused: the page shows it queued, then (no reload) running.
    await stack.dispatcher.pause();
    const batch = await stack.dispatcher.submitBatch(
      Array.from({ length: 3 }, (_, i) => ({ prompt: `long task ${i} [[delay:60000]]`, model: "fake/echo" })),
      { id: "to-cancel" },
    );
    await page.goto(`${dashboard.url}/batches/${batch.id}`);
    expect(await page.textContent("[data-testid=count-queued]")).toBe("3");
    await page.evaluate(() => ((globalThis as unknown as { marker: number }).marker = 2));
    await stack.dispatcher.resume();
    await expect
      .poll(async () => Number(await page.textContent("[data-testid=count-running]")), { timeout: 60_000 })
      .toBeGreaterThan(0);
    expect(await page.evaluate(() => (globalThis as unknown as { marker?: number }).marker)).toBe(2);
    expect(Number(await page.textContent("[data-testid=count-queued]"))).toBeLessThan(3);
    await shot("batch-running");
    await page.click("[data-testid=cancel-batch]");
    // The page reloads after the action: every member failed (cancelled).
    await expect
      .poll(async () => page.textContent("[data-testid=count-failed]").catch(() => ""), { timeout: 30_000 })
      .toBe("3");
    const status = await batch.status();
    expect(status.counts).toEqual({ queued: 0, running: 0, completed: 0, failed: 3 });
    for await (const { record } of batch.records()) expect(record.error?.name).toBe("Cancelled");

    await page.goto(`${dashboard.url}/`);
    await page.click("[data-testid=pause-queue]");
    await expect.poll(() => stack.dispatcher.isPaused(), { timeout: 10_000 }).toBe(true);
    await page.locator("[data-testid=resume-queue]").click({ timeout: 10_000 });
    await expect.poll(() => stack.dispatcher.isPaused(), { timeout: 10_000 }).toBe(false);
  });

  it("approves a job's permission ask from its page", async () => {
    const read = { name: "read", args: { filePath: "/etc/hostname" } };
    stack.fake.reset();
    stack.fake.script({ say: "I need the machine's name.", toolCall: read }, { toolCall: read });
    const { jobId } = await stack.dispatcher.enqueue({
      prompt: "what is this machine called?",
      model: "fake/echo",
      directory: stack.opencode.root,
      approval: "manual",
    });
    await expect
      .poll(async () => (await stack.dispatcher.status(jobId)).state, { timeout: 60_000 })
      .toBe("awaiting-approval");
    await page.goto(`${dashboard.url}/results/${jobId}`);
    expect(await page.textContent("[data-testid=approval]")).toContain("external_directory");
    await shot("approval");
    await page.click("[data-testid=approve-job]");
    const record = await stack.dispatcher.wait(jobId, { timeoutMs: 60_000 });
    expect(record.state).toBe("completed");
    expect(record.asks[0]).toMatchObject({ what: "external_directory", answer: "once", by: "dashboard" });
  });
});
