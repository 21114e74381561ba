/**
 * A hermetic environment for spawning `opencode serve` against the fake model: its own XDG dirs
 * under a temp root and an inline config (OPENCODE_CONFIG_CONTENT) with a provider `fake`.
 * Models: `fake/echo` (free) and `fake/priced` (cost 1000 $/M tokens in and out, so any
 * non-zero token count gives a non-zero `cost`).
 */
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export interface OpencodeEnv {
  /** Merge over process.env when spawning opencode. */
  env: Record<string, string>;
  /** Temp root holding data/, config/, cache/, state/ (and project/, a scratch working dir). */
  root: string;
  cleanup(): Promise<void>;
}

/** Absolute path of the real opencode binary installed by opencode-ai's optional dependency. */
export const OPENCODE_BIN = fileURLToPath(
  new URL("../../node_modules/opencode-linux-x64/bin/opencode", import.meta.url),
);

export function opencodeConfig(fakeModelUrl: string, extra?: { permission?: unknown }): Record<string, unknown> {
  return {
    $schema: "https://opencode.ai/config.json",
    provider: {
      fake: {
        npm: "@ai-sdk/openai-compatible",
        name: "Fake",
        options: { baseURL: fakeModelUrl, apiKey: "x" },
        models: {
          echo: { name: "Echo" },
          // per million tokens; opencode also accepts cache_read / cache_write
          priced: { name: "Priced", cost: { input: 1000, output: 1000 } },
        },
      },
    },
    model: "fake/echo",
    small_model: "fake/echo",
    autoupdate: false,
    share: "disabled",
    ...(extra?.permission !== undefined ? { permission: extra.permission } : {}),
  };
}

export async function makeOpencodeEnv(fakeModelUrl: string, extra?: { permission?: unknown }): Promise<OpencodeEnv> {
  const root = await mkdtemp(join(tmpdir(), "ocd-opencode-"));
  const dirs = {
    XDG_DATA_HOME: join(root, "data"),
    XDG_CONFIG_HOME: join(root, "config"),
    XDG_CACHE_HOME: join(root, "cache"),
    XDG_STATE_HOME: join(root, "state"),
  };
  await Promise.all([...Object.values(dirs), join(root, "project")].map((d) => mkdir(d, { recursive: true })));
  const env: Record<string, string> = {
    ...dirs,
    OPENCODE_DISABLE_AUTOUPDATE: "1",
    OPENCODE_DISABLE_MODELS_FETCH: "1",
    OPENCODE_DISABLE_SHARE: "1",
    OPENCODE_DISABLE_LSP_DOWNLOAD: "1",
    OPENCODE_CONFIG_CONTENT: JSON.stringify(opencodeConfig(fakeModelUrl, extra)),
  };
  return {
    env,
    root,
    async cleanup() {
      await rm(root, { recursive: true, force: true, maxRetries: 3 });
    },
  };
}
