import { describe, expect, it } from "vitest";
import { limitsFor, parseLimits } from "../../src/shared/flow-limits";

describe("flow limits", () => {
  it("parses concurrency and rate limits", () => {
    expect(parseLimits("anthropic=4, openai/gpt-4o=2", "concurrency", "X")).toEqual([
      { pattern: "anthropic", limit: 4 },
      { pattern: "openai/gpt-4o", limit: 2 },
    ]);
    expect(parseLimits("anthropic=50/1m,openai=10/s", "rate", "X")).toEqual([
      { pattern: "anthropic", limit: 50, periodMs: 60_000 },
      { pattern: "openai", limit: 10, periodMs: 1_000 },
    ]);
    expect(parseLimits("", "rate", "X")).toEqual([]);
  });

  it.each([
    ["anthropic", "concurrency", /"anthropic" is not PATTERN=N/],
    ["anthropic=0", "concurrency", /is not PATTERN=N/],
    ["anthropic=4/1m", "concurrency", /concurrency limits are PATTERN=N/],
    ["anthropic=4", "rate", /needs a period, e.g. anthropic=4\/1m/],
    ["anthropic=4/soon", "rate", /invalid duration/],
  ] as const)("rejects %s (%s)", (spec, kind, message) => {
    expect(() => parseLimits(spec, kind, "--limit")).toThrow(message);
  });

  it("matches a model by provider, by full name, or *", () => {
    const limits = parseLimits("anthropic=1,openai/gpt-4o=2,*=10", "concurrency", "X");
    expect(limitsFor(limits, "anthropic/claude").map((l) => l.pattern)).toEqual(["anthropic", "*"]);
    expect(limitsFor(limits, "openai/gpt-4o").map((l) => l.pattern)).toEqual(["openai/gpt-4o", "*"]);
    expect(limitsFor(limits, "openai/gpt-5").map((l) => l.pattern)).toEqual(["*"]);
    expect(limitsFor(limits, undefined).map((l) => l.pattern)).toEqual(["*"]);
  });
});
