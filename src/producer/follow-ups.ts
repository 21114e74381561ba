/**
 * A follow-up (`continue: <jobId>`) or a fork (`fork: <jobId>`) must name a job that exists, or one
 * that an earlier task of the same submission creates. Checked for the whole submission before anything is enqueued, so an
 * unknown job is an input error rather than a submission that stops halfway.
 */
export interface FollowUp {
  /** The job it continues (or forks). */
  target: string;
  /** The task field that names it. @defaultValue "continue" */
  field?: "continue" | "fork";
  /** Where the task is: its index or line. */
  at: number;
}

/** The follow-ups whose job neither exists (`exists` answers for a list of IDs) nor comes earlier. */
export async function unknownFollowUps(
  followUps: readonly FollowUp[],
  exists: (jobIds: readonly string[]) => Promise<Set<string>>,
): Promise<FollowUp[]> {
  const targets = [...new Set(followUps.map((f) => f.target))];
  const found = new Set<string>();
  for (let i = 0; i < targets.length; i += 1_000) {
    for (const id of await exists(targets.slice(i, i + 1_000))) found.add(id);
  }
  return followUps.filter((f) => !found.has(f.target));
}

export const unknownJobMessage = (target: string, field: FollowUp["field"] = "continue") =>
  `${field}: no job with ID "${target}"`;

/**
 * The follow-ups of a batch, gathered while its lines are validated (pass 1): a line may continue
 * an earlier line (by that line's `id`, or its derived job ID `<batchId>-<line>`) or a job in
 * Redis. Remembers every follow-up line and, one bit per line, which lines get a derived ID.
 */
export class BatchFollowUps {
  private readonly followUps: FollowUp[] = [];
  private derived = new Uint8Array(1 << 10);

  /** A valid line, in line order. */
  see(line: number, task: { id?: string; continue?: string; fork?: string }): void {
    if (task.id === undefined) this.markDerived(line);
    if (task.continue !== undefined) this.followUps.push({ target: task.continue, at: line });
    if (task.fork !== undefined) this.followUps.push({ target: task.fork, at: line, field: "fork" });
  }

  /**
   * The lines to leave out, with why: those continuing a job that is neither an earlier line nor
   * in Redis, and then those continuing a line left out.
   */
  async leftOut(
    batchId: string,
    ownIds: ReadonlyMap<string, number>,
    exists: (jobIds: readonly string[]) => Promise<Set<string>>,
  ): Promise<Map<number, string>> {
    const lineOf = (target: string): number | undefined => {
      const own = ownIds.get(target);
      if (own !== undefined) return own;
      const suffix = target.startsWith(`${batchId}-`) ? target.slice(batchId.length + 1) : "";
      return /^\d+$/.test(suffix) && this.isDerived(Number(suffix)) ? Number(suffix) : undefined;
    };
    // The earlier line each follow-up continues, if it continues one.
    const earlier = this.followUps.map((f) => {
      const line = lineOf(f.target);
      return line !== undefined && line < f.at ? line : undefined;
    });
    const unknown = new Set(
      (
        await unknownFollowUps(
          this.followUps.filter((_, i) => earlier[i] === undefined),
          exists,
        )
      ).map((f) => f.at),
    );
    const out = new Map<number, string>();
    this.followUps.forEach((f, i) => {
      // In line order: whether the line it continues is left out is already known.
      const line = earlier[i];
      if (unknown.has(f.at))
        out.set(
          f.at,
          `${unknownJobMessage(f.target, f.field)} (neither in the queue nor an earlier line of the batch)`,
        );
      else if (line !== undefined && out.has(line))
        out.set(f.at, `${f.field ?? "continue"}: line ${line} ("${f.target}") is left out`);
    });
    return out;
  }

  private markDerived(line: number): void {
    if (line >> 3 >= this.derived.length) {
      const grown = new Uint8Array(Math.max(this.derived.length * 2, (line >> 3) + 1));
      grown.set(this.derived);
      this.derived = grown;
    }
    this.derived[line >> 3]! |= 1 << (line & 7);
  }

  private isDerived(line: number): boolean {
    return line >> 3 < this.derived.length && (this.derived[line >> 3]! & (1 << (line & 7))) !== 0;
  }
}
