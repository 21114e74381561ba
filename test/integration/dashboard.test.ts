/**
 * The dashboard end to end: jobs run by a real worker on the fake model, the dashboard served
 * in-process, and a headless Chromium that signs in, sees a completed and a failed job, opens a
 * result, follows its session, and loads bull-board.
 */
import { spawnSync } from "node:child_process";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDashboard, type RunningDashboard } from "../../src/dashboard/server";
import type { ResultRecord } from "../../src/shared/result";
import { launchChromium } from "../support/browser";
import { useStack } from "../support/stack";

const USER = "ops";
const PASSWORD = "dash-board-secret";
const auth = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString("base64")}`;

describe("dashboard", () => {
  const stack = useStack({ worker: { concurrency: 2 } });
  let dashboard: RunningDashboard;
  let browser: Browser;
  let completed: ResultRecord;
  let failed: ResultRecord;

  beforeAll(async () => {
    browser = await launchChromium();
    [completed, failed] = await Promise.all([
      stack.dispatcher.run(
        { prompt: "show me <b>on the dashboard</b>", model: "fake/priced", title: "dash ok" },
        { timeoutMs: 120_000 },
      ),
      stack.dispatcher.run({ prompt: "refused [[status:401]]", model: "fake/echo" }, { timeoutMs: 120_000 }),
    ]);
    dashboard = await startDashboard({
      redisUrl: stack.redisUrl,
      queue: stack.queue,
      port: 0,
      auth: { user: USER, password: PASSWORD },
    });
  });
  afterAll(async () => {
    await browser?.close();
    await dashboard?.close();
  });

  it("shows a completed and a failed job in Chromium, opens a result and its session", async () => {
    expect(completed.state).toBe("completed");
    expect(failed.state).toBe("failed");
    const context = await browser.newContext({ httpCredentials: { username: USER, password: PASSWORD } });
    const page = await context.newPage();
    try {
      await page.goto(`${dashboard.url}/`);
      await page.click('header a[href="/results"]');
      await page.waitForURL("**/results");
      const completedRow = page.locator(`[data-testid=result-row][data-job-id="${completed.jobId}"]`);
      const failedRow = page.locator(`[data-testid=result-row][data-job-id="${failed.jobId}"]`);
      await expect.poll(() => completedRow.getAttribute("data-state")).toBe("completed");
      expect(await failedRow.getAttribute("data-state")).toBe("failed");
      expect(await failedRow.textContent()).toContain("APIError");

      // The failed filter hides the completed job.
      await page.click('nav.filters a[href="/results?state=failed"]');
      expect(await page.locator("[data-testid=result-row]").count()).toBe(1);
      expect(await page.locator(`[data-job-id="${failed.jobId}"]`).count()).toBe(1);

      // Open the completed result: prompt (escaped, not rendered as HTML), answer, tokens, cost.
      await page.goto(`${dashboard.url}/results`);
      await completedRow.locator(`a[href="/results/${completed.jobId}"]`).click();
      await page.waitForURL(`**/results/${completed.jobId}`);
      expect(await page.textContent("[data-testid=prompt]")).toBe("show me <b>on the dashboard</b>");
      expect(await page.locator("[data-testid=prompt] b").count()).toBe(0);
      expect(await page.textContent("[data-testid=answer]")).toBe(completed.text);
      expect(await page.textContent("[data-testid=tokens]")).toContain(String(completed.tokens!.total));
      expect(await page.textContent("[data-testid=cost]")).toBe(`$${completed.cost!.toFixed(4)}`);
      expect(completed.cost).toBeGreaterThan(0);

      // Its session page shows the job's turn.
      await page.click("[data-testid=session-link]");
      await page.waitForURL(`**/sessions/${completed.sessionId}`);
      expect(await page.locator(`[data-testid=turn-job][data-job-id="${completed.jobId}"]`).count()).toBe(1);

      // The failed result shows the provider's error.
      await page.goto(`${dashboard.url}/results/${failed.jobId}`);
      expect(await page.textContent("[data-testid=error]")).toContain("fake error 401");

      // bull-board renders the queue, with both jobs counted.
      await page.goto(`${dashboard.url}/queues`);
      await page.getByText(stack.queue).first().waitFor({ timeout: 20_000 });
      await page.goto(`${dashboard.url}/queues/queue/${stack.queue}?status=failed`);
      await page.getByText(failed.jobId).first().waitFor({ timeout: 20_000 });
    } finally {
      await context.close();
    }
  });

  it("asks for basic auth, and is read-only without --allow-actions", async () => {
    expect((await fetch(`${dashboard.url}/results`)).status).toBe(401);
    const wrong = await fetch(`${dashboard.url}/results`, {
      headers: { authorization: `Basic ${Buffer.from(`${USER}:nope`).toString("base64")}` },
    });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get("www-authenticate")).toMatch(/^Basic/);
    const json = (await (
      await fetch(`${dashboard.url}/api/results?state=failed`, { headers: { authorization: auth } })
    ).json()) as ResultRecord[];
    expect(json.map((r) => r.jobId)).toEqual([failed.jobId]);

    const retry = `${dashboard.url}/queues/api/queues/${stack.queue}/retry/failed`;
    expect((await fetch(retry, { method: "PUT", headers: { authorization: auth } })).status).toBe(405);
    const withActions = await startDashboard({
      redisUrl: stack.redisUrl,
      queue: stack.queue,
      port: 0,
      allowActions: true,
    });
    try {
      // An action needs the token its pages carry (cookie dispatch_token).
      const retryUrl = `${withActions.url}/queues/api/queues/${stack.queue}/retry/failed`;
      expect((await fetch(retryUrl, { method: "PUT" })).status).toBe(403);
      const cookie = (await fetch(`${withActions.url}/queues`)).headers.getSetCookie()[0]!.split(";")[0]!;
      const response = await fetch(retryUrl, { method: "PUT", headers: { cookie } });
      expect(response.status).toBeLessThan(300);
      // The failed job is retried: asked again (once: it fails again on the same 401).
      await expect.poll(async () => stack.fake.calls("refused"), { timeout: 30_000 }).toBe(1);
    } finally {
      await withActions.close();
    }
  });

  it("refuses to bind beyond loopback without a password (CLI exit 2)", () => {
    const env = { ...stack.childEnv, DASHBOARD_PASSWORD: "" };
    const run = spawnSync(
      process.execPath,
      ["bin/opencode-dispatch.js", "dashboard", "--host", "0.0.0.0", "--port", "0"],
      { env, encoding: "utf8", timeout: 20_000 },
    );
    expect(run.status).toBe(2);
    expect(run.stderr).toContain("DASHBOARD_PASSWORD");
  });
});
