import { BaseSequencer, type TestSpecification } from "vitest/node";

/**
 * The longest files start first, so that they overlap the rest instead of running alone at the
 * end (a clean CI clone has no duration cache; vitest would then start the largest files first,
 * and the >300 s long-task test is a small file). Mostly idle, it shares a fork slot well.
 */
const LONGEST_FIRST = ["long-task.test.ts", "batch.test.ts", "sessions.test.ts", "cli.test.ts"];

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
