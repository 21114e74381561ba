import { closeSync, existsSync, openSync, readSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

/**
 * The opencode binary to spawn: `OPENCODE_BIN` if set, else the one the `opencode-ai` package
 * installed (its postinstall links the platform binary to bin/opencode.exe), else the platform
 * package's binary, else `opencode` from PATH.
 */
export function resolveOpencodeBinary(configured?: string): string {
  if (configured) return configured;
  const require = createRequire(import.meta.url);
  const candidates: string[] = [];
  try {
    candidates.push(join(dirname(require.resolve("opencode-ai/package.json")), "bin", "opencode.exe"));
  } catch {
    // not installed
  }
  const platform = process.platform === "win32" ? "windows" : process.platform;
  for (const suffix of ["", "-baseline", "-musl", "-baseline-musl"]) {
    try {
      const pkg = require.resolve(`opencode-${platform}-${process.arch}${suffix}/package.json`);
      candidates.push(join(dirname(pkg), "bin", process.platform === "win32" ? "opencode.exe" : "opencode"));
    } catch {
      // not installed
    }
  }
  return candidates.find((path) => existsSync(path) && isNative(path)) ?? "opencode";
}

/** The wrapper script npm may leave before postinstall runs is not the real binary. */
function isNative(path: string): boolean {
  try {
    const fd = openSync(path, "r");
    const head = Buffer.alloc(4);
    readSync(fd, head, 0, 4, 0);
    closeSync(fd);
    return head[0] !== 0x23; // "#!" script
  } catch {
    return false;
  }
}
