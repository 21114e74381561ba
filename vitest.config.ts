import { defineConfig } from "vitest/config";
import LongestFirst from "./test/support/sequencer.js";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // long-task-setup starts the >300 s task as the run begins: after global-setup (it needs Redis)
    // and after the build (a synchronous tsc that would stall the task's lock renewals).
    globalSetup: ["test/support/global-setup.ts", "test/support/build.ts", "test/support/long-task-setup.ts"],
    // Before each test: every open stack's fake model is reset.
    setupFiles: ["test/support/per-test.ts"],
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
