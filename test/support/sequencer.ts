import { BaseSequencer, type TestSpecification } from "vitest/node";

/**
 * The longest files start first, so that the run ends with short files on both forks (a clean CI
 * clone has no duration cache; vitest would then keep the glob's alphabetical order). The list is
 * the files in order of their time measured one at a time on 2 cores. long-task.test.ts runs last:
 * its >300 s task was started by test/support/long-task-setup.ts when the run began, and the file
 * only checks the task's record (by then long written).
 */
const LONGEST_FIRST = [
  "scheduling.test.ts",
  "batch.test.ts",
  "exactly-once.test.ts",
  "cli.test.ts",
  "chaos.test.ts",
  "session-store.test.ts",
  "flow-control.test.ts",
  "sessions.test.ts",
  "wedged-server.test.ts",
  "shutdown.test.ts",
  "security.test.ts",
  "provider-errors.test.ts",
];
const LAST = "long-task.test.ts";

export default class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const rank = (spec: TestSpecification) => {
      if (spec.moduleId.endsWith(`/${LAST}`)) return LONGEST_FIRST.length + 1;
      const i = LONGEST_FIRST.findIndex((name) => spec.moduleId.endsWith(`/${name}`));
      return i === -1 ? LONGEST_FIRST.length : i;
    };
    return sorted
      .map((spec, i) => ({ spec, i }))
      .sort((a, b) => rank(a.spec) - rank(b.spec) || a.i - b.i)
      .map(({ spec }) => spec);
  }
}
