/**
 * scripts/check-machine.sh, the suite's first step: on a machine that lacks the tools it names
 * each one with how to get it and exits 1; `--packages` gives the Debian packages to install.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";

const SCRIPT = fileURLToPath(new URL("../../scripts/check-machine.sh", import.meta.url));
const bin = mkdtempSync(join(tmpdir(), "check-machine-"));
afterAll(() => rmSync(bin, { recursive: true, force: true }));

/** Runs the script with only `tools` (and what the script itself uses) on PATH; `node` may be a stand-in's version. */
function check(tools: string[], opts: { args?: string[]; nodeVersion?: string } = {}) {
  const dir = mkdtempSync(join(bin, "path-"));
  for (const tool of ["bash", "sed", "sort", "head", "dirname", ...tools]) {
    const found = spawnSync("bash", ["-c", `command -v ${tool}`], { encoding: "utf8" }).stdout.trim();
    if (found) symlinkSync(found, join(dir, tool));
  }
  if (opts.nodeVersion) writeFileSync(join(dir, "node"), `#!/bin/sh\necho ${opts.nodeVersion}\n`, { mode: 0o755 });
  return spawnSync(join(dir, "bash"), [SCRIPT, ...(opts.args ?? [])], {
    encoding: "utf8",
    env: { PATH: dir, CHROMIUM_PATH: join(dir, "chromium") },
  });
}

describe("the fresh-machine check", () => {
  it("passes on this machine", () => {
    const run = spawnSync("bash", [SCRIPT], { encoding: "utf8" });
    expect(run.stderr).toBe("");
    expect(run.status).toBe(0);
  });

  it("names every missing tool with its package, and exits 1", () => {
    const run = check(["node"]);
    expect(run.status).toBe(1);
    for (const line of [
      "git: not on PATH (apt-get install -y git)",
      "redis-server: not on PATH (apt-get install -y redis-server)",
      "redis-cli: not on PATH (apt-get install -y redis-tools)",
      "bwrap: not on PATH (apt-get install -y bubblewrap)",
      "curl: not on PATH (apt-get install -y curl)",
      "python3: not on PATH (apt-get install -y python3)",
      "openssl: not on PATH (apt-get install -y openssl)",
    ]) {
      expect(run.stderr).toContain(`  - ${line}`);
    }
    expect(run.stderr).toMatch(
      /chromium: nothing at .*\/chromium \(apt-get install -y chromium, or set CHROMIUM_PATH\)/,
    );
    expect(run.stderr).not.toMatch(/node:/);
  });

  it("--packages lists the Debian packages to install, one a line", () => {
    const run = check(["node", "git", "curl", "python3", "openssl"], { args: ["--packages"] });
    expect(run.status).toBe(0);
    expect(run.stdout.trim().split("\n")).toEqual(["redis-server", "redis-tools", "chromium", "bubblewrap"]);
  });

  it("says when Node is older than package.json's engines (no package: Debian's may be older still)", () => {
    const run = check(["git", "redis-server", "redis-cli", "bwrap", "curl", "python3", "openssl"], {
      nodeVersion: "20.10.0",
    });
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(
      / {2}- node: 20\.10\.0 is older than the \d+\.\d+\.\d+ that package\.json's engines asks for/,
    );
    const packages = check(["git", "redis-server", "redis-cli", "bwrap", "curl", "python3", "openssl"], {
      nodeVersion: "20.10.0",
      args: ["--packages"],
    });
    expect(packages.stdout.trim().split("\n")).toEqual(["chromium"]);
  });
});
