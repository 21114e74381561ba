import { defineConfig } from "vitest/config";
import LongestFirst from "./test/support/sequencer.js";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/global-setup.ts", "test/support/build.ts"],
    testTimeout: 180_000,
    hookTimeout: 180_000,
    pool: "forks",
    // Three files at a time on two cores: the >300 s task (started first) is mostly idle in its slot.
    maxWorkers: 3,
    sequence: { sequencer: LongestFirst },
    reporters: ["default"],
    // A stray `.only` would quietly skip the rest of the suite: refused everywhere, not just in CI.
    allowOnly: false,
  },
});
