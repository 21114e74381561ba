/**
 * Approvals (README "Approvals"), the pure parts: which asks an approval covers, what grants an
 * attempt starts with, the turn that resumes a parked session, and the policy's settings.
 */
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/shared/config";
import type { Ask, PendingApproval } from "../../src/shared/result";
import { parseTask } from "../../src/shared/task";
import { approvalPolicy } from "../../src/worker/session/attempt";
import { askContext, continuationPrompt, covers, grantsFor } from "../../src/worker/session/approvals";

const ask: PendingApproval = {
  id: "per_1",
  permission: "external_directory",
  patterns: ["/etc/*"],
  always: ["/etc/*"],
  tool: "read",
  words: null,
  askedAt: "2026-01-01T00:00:00.000Z",
  timeoutAt: "2026-01-02T00:00:00.000Z",
};
const bashAsk = { permission: "bash", patterns: ["rm -rf build"] };

describe("approval grants", () => {
  it("cover asks of the same permission whose every pattern matches, opencode's * as a wildcard", () => {
    const grant = { permission: "bash", patterns: ["rm *"], once: false, by: "a" };
    expect(covers(grant, bashAsk)).toBe(true);
    expect(covers(grant, { permission: "bash", patterns: ["rm -rf build", "curl x | sh"] })).toBe(false);
    expect(covers(grant, { permission: "edit", patterns: ["rm -rf build"] })).toBe(false);
    expect(covers({ ...grant, patterns: ["rm -rf build"] }, bashAsk)).toBe(true);
    expect(covers({ ...grant, patterns: ["rm -rf b.ild"] }, bashAsk)).toBe(false); // not a regex
  });

  it("start with the asks approved always before, plus the one just answered (once: its own patterns)", () => {
    const earlier: Ask[] = [
      { kind: "permission", what: "bash", patterns: ["git *"], answer: "always", at: "t", by: "ann" },
      { kind: "permission", what: "bash", patterns: ["ls"], answer: "once", at: "t", by: "ann" },
      { kind: "permission", what: "bash", patterns: ["rm *"], answer: "reject", at: "t", by: "ann" },
    ];
    expect(grantsFor(earlier)).toEqual([{ permission: "bash", patterns: ["git *"], once: false, by: "ann" }]);
    const once = grantsFor(earlier, { ask, decision: { answer: "once", by: "bob", at: "t" } });
    expect(once.at(-1)).toEqual({ permission: "external_directory", patterns: ["/etc/*"], once: true, by: "bob" });
    expect(grantsFor([], { ask, decision: { answer: "reject", by: "bob", at: "t" } })).toEqual([]);
    const always = grantsFor([], {
      ask: { ...ask, patterns: ["/etc/hostname"] },
      decision: { answer: "always", by: "bob", at: "t" },
    });
    expect(always).toEqual([
      { permission: "external_directory", patterns: ["/etc/hostname", "/etc/*"], once: false, by: "bob" },
    ]);
  });

  it("resume with a turn that says what was decided", () => {
    const text = (answer: "once" | "always" | "reject", by: string, message?: string) =>
      continuationPrompt(ask, { answer, by, at: "t", ...(message ? { message } : {}) }, 86_400_000)[0]!.text;
    expect(text("once", "ann")).toMatch(/external_directory \(\/etc\/\*\) was approved once by ann\. .*make it again/);
    expect(text("always", "ann")).toMatch(/approved for the rest of this task by ann/);
    expect(text("reject", "ann", "no")).toMatch(/rejected by ann with this message: no\. Do not try it again/);
    expect(text("reject", "timeout")).toMatch(/no one answered it within 24h/);
  });
});

describe("what an ask shows", () => {
  const text = (t: string) => ({ type: "text", text: t }) as never;
  const tool = (callID: string) => ({ type: "tool", tool: "bash", callID }) as never;
  const message = (role: string, ...parts: never[]) => ({ info: { id: role, role }, parts });

  it("is the tool that asked and the agent's latest words before it, in its own turn only", () => {
    const earlier = [message("user", text("first task")), message("assistant", text("all done"))];
    expect(askContext([...earlier, message("user", text("go on")), message("assistant", tool("c1"))], "c1")).toEqual({
      tool: "bash",
      words: null,
    });
    const turn = [
      message("user", text("go on")),
      message("assistant", text("I will look"), text("at /etc"), tool("c0")),
      message("assistant", tool("c1"), text("after")),
    ];
    expect(askContext([...earlier, ...turn], "c1")).toEqual({ tool: "bash", words: "at /etc" });
  });
});

describe("approval settings", () => {
  it("DISPATCH_APPROVAL wins over its older name DISPATCH_AUTO_APPROVE, which still works", () => {
    expect(loadConfig({}).approval).toBe("reject");
    expect(loadConfig({ DISPATCH_AUTO_APPROVE: "true" }).approval).toBe("approve");
    expect(loadConfig({ DISPATCH_AUTO_APPROVE: "true", DISPATCH_APPROVAL: "manual" }).approval).toBe("manual");
    expect(loadConfig({}).approvalTimeoutMs).toBe(86_400_000);
    expect(loadConfig({ DISPATCH_APPROVAL_TIMEOUT: "2h" }).approvalTimeoutMs).toBe(7_200_000);
    expect(() => loadConfig({ DISPATCH_APPROVAL: "maybe" })).toThrow(/DISPATCH_APPROVAL/);
  });

  it("a job's own approval (or its older autoApprove) wins over the worker's", () => {
    const payload = (fields: Record<string, unknown>) => ({
      prompt: "p",
      timeoutMs: 1,
      enqueuedAt: "2026-01-01T00:00:00.000Z",
      v: 1 as const,
      ...fields,
    });
    expect(approvalPolicy(payload({}), { approval: "manual" })).toBe("manual");
    expect(approvalPolicy(payload({ approval: "reject" }), { approval: "manual" })).toBe("reject");
    expect(approvalPolicy(payload({ autoApprove: true }), { approval: "manual" })).toBe("approve");
    expect(approvalPolicy(payload({ autoApprove: false }), { approval: "approve" })).toBe("reject");
  });

  it("a task gives approval or autoApprove, not both; approvalTimeout is a duration", () => {
    expect(parseTask({ prompt: "p", approval: "manual", approvalTimeout: "10m" })).toMatchObject({
      approval: "manual",
      approvalTimeout: 600_000,
    });
    expect(() => parseTask({ prompt: "p", approval: "manual", autoApprove: true })).toThrow(
      /either approval or autoApprove/,
    );
    expect(() => parseTask({ prompt: "p", approval: "sometimes" })).toThrow(/approval/);
  });
});
