/**
 * One job state from a result record and BullMQ's state of the job: what `status` and `list`
 * both tell (shared/job-state.ts).
 */
import { describe, expect, it } from "vitest";
import { fromBull, isFinal, resolveState } from "../../src/shared/job-state";
import type { JobState } from "../../src/shared/result";

describe("a job's state", () => {
  it("reads BullMQ's names, whichever call gave them", () => {
    expect(["wait", "waiting", "waiting-children"].map(fromBull)).toEqual(["waiting", "waiting", "waiting"]);
    expect(["prioritized", "delayed", "active", "completed", "failed"].map(fromBull)).toEqual([
      "prioritized",
      "delayed",
      "active",
      "completed",
      "failed",
    ]);
    expect(fromBull("unknown")).toBeUndefined();
  });

  it("is final when completed or failed, and only then", () => {
    expect(["completed", "failed"].every(isFinal)).toBe(true);
    expect(
      ["waiting", "delayed", "prioritized", "active", "awaiting-approval", "retrying", "missing"].some(isFinal),
    ).toBe(false);
  });

  // [record's state (null: none yet), BullMQ's state, waits at a gate, told state]
  const table: [JobState | null, JobState, boolean, JobState][] = [
    [null, "waiting", false, "waiting"],
    [null, "prioritized", false, "prioritized"],
    [null, "delayed", false, "delayed"],
    [null, "active", false, "active"],
    [null, "completed", false, "completed"],
    [null, "failed", false, "failed"], // BullMQ failed it on its own (stalled too often)
    ["completed", "active", false, "completed"], // the record is written before BullMQ hears
    ["failed", "delayed", false, "failed"], // a cancel's record while BullMQ still holds the job
    ["active", "failed", false, "failed"],
    ["active", "completed", false, "completed"],
    ["retrying", "delayed", false, "retrying"], // backing off before the next attempt
    ["retrying", "waiting", false, "retrying"], // no backoff: straight back in line
    ["retrying", "prioritized", false, "retrying"],
    ["retrying", "active", false, "active"], // the next attempt has begun
    ["retrying", "completed", false, "completed"],
    ["awaiting-approval", "delayed", false, "awaiting-approval"],
    ["awaiting-approval", "delayed", true, "delayed"], // answered; waits for a slot now
    ["awaiting-approval", "active", false, "active"],
    ["active", "delayed", true, "delayed"], // parked at a gate
  ];
  it.each(table)("record %s, BullMQ %s, at a gate %s: %s", (record, bull, atGate, told) => {
    expect(resolveState(record ? { state: record } : null, bull, { atGate })).toBe(told);
  });
});
