/**
 * A follow-up (`continue: <jobId>`) must name a job that exists, or one that an earlier task of the
 * same submission creates. Checked for the whole submission before anything is enqueued, so an
 * unknown job is an input error rather than a submission that stops halfway.
 */
export interface FollowUp {
  /** The job it continues. */
  target: string;
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

export const unknownJobMessage = (target: string) => `continue: no job with ID "${target}"`;
