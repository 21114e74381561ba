/** The worker's side of the budget guard: the files the plugin reads, as the watch writes them. */
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { BudgetGuard } from "../../src/worker/session/budget-guard";
import { until } from "../support/until";

/** The session's file once it reads as `expected` (writes are queued, each renamed into place). */
const fileOf = (dir: string, id: string, expected: unknown) =>
  until(
    `${id}'s guard file to read ${JSON.stringify(expected)}`,
    () => {
      try {
        const now = JSON.parse(readFileSync(join(dir, id), "utf8")) as unknown;
        return JSON.stringify(now) === JSON.stringify(expected) && now;
      } catch {
        return false;
      }
    },
    5_000,
  );

describe("the budget guard's files", () => {
  it("say which steps were counted, then stop for every session, one opened after the stop too", async () => {
    const dir = mkdtempSync(join(tmpdir(), "guard-"));
    const guard = new BudgetGuard(dir);
    guard.open("ses_parent");
    guard.counted("ses_parent", "msg_1");
    guard.counted("ses_parent", "msg_1"); // counted once
    await fileOf(dir, "ses_parent", { checked: ["msg_1"], stop: null });
    expect(guard.stopped).toBe(false);

    const reason = "budget exceeded: 2400 tokens passed --max-tokens 1000";
    guard.stop(reason);
    guard.open("ses_child"); // a subagent started after the stop
    expect(guard.stopped).toBe(true);
    await fileOf(dir, "ses_parent", { checked: ["msg_1"], stop: reason });
    await fileOf(dir, "ses_child", { checked: [], stop: reason });

    await guard.close();
    await guard.close(); // idempotent
    expect(existsSync(join(dir, "ses_parent"))).toBe(false);
    expect(existsSync(join(dir, "ses_child"))).toBe(false);
    guard.open("ses_late"); // closed: nothing more is written
    guard.counted("ses_late", "msg_2");
    expect(existsSync(join(dir, "ses_late"))).toBe(false);
  });
});
