import { describe, expect, it } from "vitest";
import { configOverlay, withoutWorkerSecrets } from "../../src/worker/server/opencode-server";

describe("the environment a spawned opencode server gets", () => {
  it("keeps provider settings but none of the worker's secrets", () => {
    const env = withoutWorkerSecrets({
      PATH: "/usr/bin",
      ANTHROPIC_API_KEY: "for-the-model",
      OPENCODE_CONFIG: "/etc/opencode.json",
      REDIS_URL: "redis://:hunter2@redis:6379",
      DISPATCH_WEBHOOK_SECRET: "s3cret",
      DASHBOARD_PASSWORD: "pw",
      OPENCODE_SERVER_PASSWORD: "attach-pw",
    });
    expect(env).toEqual({
      PATH: "/usr/bin",
      ANTHROPIC_API_KEY: "for-the-model",
      OPENCODE_CONFIG: "/etc/opencode.json",
    });
  });

  it("lays the worker's settings over the user's inline config", () => {
    const user = { OPENCODE_CONFIG_CONTENT: JSON.stringify({ model: "a/b", snapshot: true }) };
    expect(JSON.parse(configOverlay(user, { snapshot: false }).OPENCODE_CONFIG_CONTENT)).toEqual({
      model: "a/b",
      snapshot: false,
    });
    expect(JSON.parse(configOverlay({}, { snapshot: false }).OPENCODE_CONFIG_CONTENT)).toEqual({ snapshot: false });
    expect(
      JSON.parse(configOverlay({ OPENCODE_CONFIG_CONTENT: "not json" }, { snapshot: false }).OPENCODE_CONFIG_CONTENT),
    ).toEqual({ snapshot: false });
  });

  it("adds the worker's plugin to the user's own", () => {
    const user = { OPENCODE_CONFIG_CONTENT: JSON.stringify({ plugin: ["user-plugin"] }) };
    const merged = (env: NodeJS.ProcessEnv) =>
      JSON.parse(configOverlay(env, {}, { plugin: ["file:///guard.js"] }).OPENCODE_CONFIG_CONTENT) as unknown;
    expect(merged(user)).toEqual({ plugin: ["user-plugin", "file:///guard.js"] });
    expect(merged({})).toEqual({ plugin: ["file:///guard.js"] });
  });
});
