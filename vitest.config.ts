import { defineConfig } from "vitest/config";
import LongestFirst from "./test/support/sequencer.js";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/global-setup.ts", "test/support/build.ts"],
    testTimeout: 180_000,
    hookTimeout: 180_000,
    pool: "forks",
    maxWorkers: 2,
    sequence: { sequencer: LongestFirst },
    reporters: ["default"],
    // A stray `.only` would quietly skip the rest of the suite: refused everywhere, not just in CI.
    allowOnly: false,
  },
});
