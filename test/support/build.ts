/**
 * Vitest globalSetup: compiles src/ to dist/ once, so tests that drive the CLI run the real
 * `bin/opencode-dispatch.js` on the current code.
 */
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

export default function setup(): void {
  const root = fileURLToPath(new URL("../..", import.meta.url));
  execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.build.json"], {
    cwd: root,
    stdio: "inherit",
  });
}
