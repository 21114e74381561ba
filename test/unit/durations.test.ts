/**
 * Durations are checked against what they can mean (the error names the field and the limit), and
 * the timers they feed work for every accepted value, past Node's 2^31-1 ms too.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { MAX_DURATION_MS, parseDuration } from "../../src/shared/duration";
import { loadConfig } from "../../src/shared/config";
import { parseTask } from "../../src/shared/task";
import { abortAfter, MAX_TIMER_MS, setLongTimeout } from "../../src/shared/timers";

const DAY = 86_400_000;

describe("durations", () => {
  it("accept up to 365 days and name the limit beyond it", () => {
    expect(parseDuration("30d")).toBe(30 * DAY);
    expect(parseDuration("365d")).toBe(MAX_DURATION_MS);
    expect(() => parseDuration("366d")).toThrow('duration "366d" is longer than the longest allowed, 365d');
    expect(() => parseDuration("99999999999999999999d")).toThrow("longer than the longest allowed");
    expect(() => parseDuration(Number.MAX_VALUE)).toThrow("longer than the longest allowed");
  });

  it("name the field in the configuration and in a task", () => {
    expect(loadConfig({ DISPATCH_JOB_TIMEOUT: "30d" }).jobTimeoutMs).toBe(30 * DAY);
    expect(() => loadConfig({ DISPATCH_JOB_TIMEOUT: "400d" })).toThrow(
      'DISPATCH_JOB_TIMEOUT: duration "400d" is longer than the longest allowed, 365d',
    );
    expect(() => loadConfig({ DISPATCH_JOB_TIMEOUT: "0" })).toThrow(
      'DISPATCH_JOB_TIMEOUT: duration "0" must be greater than zero',
    );
    expect(() => loadConfig({ DISPATCH_LOCK_DURATION: "30d" })).toThrow(
      /DISPATCH_LOCK_DURATION: .*longest allowed, 2147483647 ms/,
    );
    expect(loadConfig({ DISPATCH_RESULT_TTL: "0" }).resultTtlMs).toBe(0);
    expect(loadConfig({ DISPATCH_RESULT_TTL: "3650d" }).resultTtlMs).toBe(3_650 * DAY);
    expect(() => loadConfig({ DISPATCH_RESULT_TTL: "3651d" })).toThrow("DISPATCH_RESULT_TTL");
    expect(() => parseTask({ prompt: "p", timeout: "400d" })).toThrow(
      'timeout: duration "400d" is longer than the longest allowed, 365d',
    );
    expect(() => parseTask({ prompt: "p", delay: 400 * DAY })).toThrow("delay: ");
  });
});

describe("long timers", () => {
  afterEach(() => void vi.useRealTimers());

  it("fire once, at the time asked, also past 2^31-1 ms, and not once cleared", () => {
    vi.useFakeTimers();
    const fired: number[] = [];
    const start = Date.now();
    setLongTimeout(() => fired.push(Date.now() - start), 30 * DAY);
    const cleared = setLongTimeout(() => fired.push(-1), 30 * DAY);
    vi.advanceTimersByTime(MAX_TIMER_MS + 1_000);
    cleared.clear();
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(30 * DAY);
    expect(fired).toEqual([30 * DAY]);
  });

  it("abort a signal with a TimeoutError only when the time has passed", () => {
    vi.useFakeTimers();
    const { signal } = abortAfter(30 * DAY);
    vi.advanceTimersByTime(29 * DAY);
    expect(signal.aborted).toBe(false);
    vi.advanceTimersByTime(DAY);
    expect((signal.reason as Error).name).toBe("TimeoutError");
  });
});
