import { describe, expect, it } from "vitest";
import { Teardown } from "../../src/shared/teardown";

describe("a teardown list", () => {
  it("runs its cleanups in reverse, each one whatever the others did, and only once", async () => {
    const ran: string[] = [];
    const failures: string[] = [];
    const teardown = new Teardown((what, error) => failures.push(`${what}: ${(error as Error).message}`));
    teardown.push("redis", () => ran.push("redis"));
    teardown.push("server", async () => {
      await new Promise((resolve) => setTimeout(resolve, 5));
      ran.push("server");
      throw new Error("would not stop");
    });
    teardown.push("worker", () => ran.push("worker"));
    const first = teardown.run();
    expect(teardown.run()).toBe(first);
    await first;
    await teardown.run();
    expect(ran).toEqual(["worker", "server", "redis"]);
    expect(failures).toEqual(["server: would not stop"]);
  });

  it("refuses a cleanup added once it runs", async () => {
    const teardown = new Teardown(() => undefined);
    await teardown.run();
    expect(() => teardown.push("late", () => undefined)).toThrow(/already running/);
  });
});
