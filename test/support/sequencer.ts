import { BaseSequencer, type TestSpecification } from "vitest/node";

/**
 * The longest files start first, so that they overlap the rest instead of running alone at the
 * end (a clean CI clone has no duration cache; vitest would then start the largest files first,
 * and the >300 s long-task test is a small file). Mostly idle, it shares a fork slot well.
 * The rest of the list is the files in order of their time measured one at a time on 2 cores
 * (longest first, so the run ends with short files on both forks).
 */
const LONGEST_FIRST = [
  "long-task.test.ts",
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

export default class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const rank = (spec: TestSpecification) => {
      const i = LONGEST_FIRST.findIndex((name) => spec.moduleId.endsWith(`/${name}`));
      return i === -1 ? LONGEST_FIRST.length : i;
    };
    return sorted.map((spec, i) => ({ spec, i })).sort((a, b) => rank(a.spec) - rank(b.spec) || a.i - b.i).map(({ spec }) => spec);
  }
}
