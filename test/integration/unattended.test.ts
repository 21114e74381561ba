/**
 * Unattended runs (README "Permission asks and questions"): the worker-wide auto-approve default
 * (`DISPATCH_AUTO_APPROVE=true`, as `worker --auto-approve`) and a job's own `autoApprove` winning
 * over it; plan-mode switches denied. The opencode servers run with opencode's plan mode on
 * (`OPENCODE_EXPERIMENTAL_PLAN_MODE`), so that its `plan` agent has the `plan_exit` tool, which
 * asks a person whether to switch agents.
 */
import { readFileSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import { useStack, type Stack } from "../support/stack";

const HOSTNAME = readFileSync("/etc/hostname", "utf8").trim();
const toolNames = (request: Stack["fake"]["requests"][number]) =>
  ((request.tools ?? []) as { function: { name: string } }[]).map((t) => t.function.name);

describe("a worker whose default is to approve asks", () => {
  const stack = useStack({ configEnv: { DISPATCH_AUTO_APPROVE: "true" } });
  beforeAll(async () => {
    stack.opencode.env.OPENCODE_EXPERIMENTAL_PLAN_MODE = "true"; // read by the servers the worker spawns
    await stack.startWorker({ concurrency: 2 });
  });

  it("approves a permission ask once for a job that does not say, and rejects it for one that says no", async () => {
    const read = (prompt: string, autoApprove?: boolean) =>
      stack.dispatcher.run(
        {
          prompt: `${prompt} [[tool:read:{"filePath":"/etc/hostname"}]]`,
          model: "fake/echo",
          directory: stack.opencode.root,
          autoApprove,
        },
        { timeoutMs: 60_000 },
      );
    const [byDefault, refused] = await Promise.all([read("default peek"), read("refused peek", false)]);
    expect(byDefault.state).toBe("completed");
    expect(byDefault.asks).toEqual([
      expect.objectContaining({ kind: "permission", what: "external_directory", answer: "once" }),
    ]);
    expect(byDefault.text).toContain(HOSTNAME);
    expect(refused.state).toBe("completed");
    expect(refused.asks).toEqual([
      expect.objectContaining({ kind: "permission", what: "external_directory", answer: "reject" }),
    ]);
    expect(refused.text ?? "").not.toContain(HOSTNAME);
  });

  it("denies plan-mode switches: the plan agent is not offered plan_exit, and a call to it asks no one and ends", async () => {
    stack.fake.reset();
    const record = await stack.dispatcher.run(
      {
        prompt: "plan then build [[tool:plan_exit:{}]]",
        model: "fake/echo",
        agent: "plan",
        timeout: "20s",
        attempts: 1,
      },
      { timeoutMs: 60_000 },
    );
    expect(record).toMatchObject({ state: "completed", asks: [], error: null });
    expect(record.text).toMatch(/unavailable tool 'plan_exit'/);
    const [first] = stack.fake.requests;
    expect(toolNames(first!)).toContain("read"); // the agent's tools were offered, only not that one
    expect(toolNames(first!)).not.toContain("plan_exit");
  });
});
