/**
 * Each default is written once, in the configuration's schema: the README's table and the
 * command-line help read the same value.
 */
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { describe, expect, it } from "vitest";
import { CONFIG_ENV_VARS, defaultFrom, loadConfig, settingDefault } from "../../src/shared/config";
import { parseDuration, writtenDuration } from "../../src/shared/duration";
import { buildProgram } from "../../src/cli/main";

const README = readFileSync(new URL("../../README.md", import.meta.url), "utf8");

/** The README's Configuration rows: variable → its default cell. */
function readmeDefaults(): Map<string, string> {
  const rows = new Map<string, string>();
  for (const line of README.split("\n")) {
    const cells = line.split("|").map((c) => c.trim());
    if (cells.length < 4 || !cells[1]!.startsWith("`")) continue;
    const names = [...cells[1]!.matchAll(/`([A-Z][A-Z0-9_]+)`/g)].map((m) => m[1]!);
    const values = cells[2]!.split(" / ");
    names.forEach((name, i) => rows.set(name, values[i] ?? cells[2]!));
  }
  return rows;
}

describe("defaults written once", () => {
  it("the README documents every variable with the schema's default", () => {
    const rows = readmeDefaults();
    for (const name of CONFIG_ENV_VARS) {
      expect(rows.has(name), `${name} in the README's Configuration table`).toBe(true);
      const value = settingDefault(name as Parameters<typeof settingDefault>[0]);
      // The data folder's default is the machine's temporary folder, written `$TMPDIR/…` in the README.
      const shown = name === "DISPATCH_DATA_DIR" ? value?.replace(tmpdir(), "$TMPDIR") : value;
      if (shown !== undefined) expect(rows.get(name), name).toContain(`\`${shown}\``);
    }
  });

  it("a default as written means what the configuration uses when the variable is unset", () => {
    const config = loadConfig({});
    expect(parseDuration(settingDefault("DISPATCH_JOB_TIMEOUT")!)).toBe(config.jobTimeoutMs);
    expect(parseDuration(settingDefault("DISPATCH_SHUTDOWN_GRACE")!)).toBe(config.shutdownGraceMs);
    expect(Number(settingDefault("DISPATCH_CONCURRENCY"))).toBe(config.concurrency);
    expect(settingDefault("DISPATCH_APPROVAL")).toBe(config.approval);
    expect(settingDefault("DISPATCH_RECYCLE_RSS")).toBeUndefined();
  });

  it("worker and enqueue help name the setting and its default", () => {
    const help = (name: string) => {
      const command = buildProgram().commands.find((c) => c.name() === name)!;
      return command.helpInformation({ error: false }).replace(/\s+/g, " ");
    };
    expect(help("worker")).toContain(`(default: ${defaultFrom("DISPATCH_CONCURRENCY")})`);
    expect(help("worker")).toContain(`(default: ${defaultFrom("DISPATCH_SHUTDOWN_GRACE")})`);
    expect(help("enqueue")).toContain(`(default: ${defaultFrom("DISPATCH_JOB_TIMEOUT")})`);
  });

  it("writes a duration in the largest unit that fits it exactly", () => {
    expect([15_000, 86_400_000, 90_000, 1_500, 0].map(writtenDuration)).toEqual(["15s", "1d", "90s", "1500ms", "0ms"]);
  });
});
