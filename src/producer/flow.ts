import { randomUUID } from "node:crypto";
import { InputError } from "../shared/errors.js";
import type { TaskInput } from "../shared/task.js";
import type { BatchHandle } from "./batch/handle.js";
import type { BatchOptions } from "./batch/submit.js";

/**
 * A parent task with children, nestable: the parent runs once every child has ended, with their
 * results (see `then` of a batch). A child is a task, or itself a flow (its parent is then the
 * child: the outer parent gets that parent's answer).
 */
export interface Flow {
  /** The parent task (or its prompt). */
  then: string | TaskInput;
  children: readonly (TaskInput | Flow)[];
  /** See BatchOptions.thenOn. @defaultValue "all" */
  thenOn?: "all" | "completed";
  /** The batch ID of the children; nested flows get `<id>.<n>`. @defaultValue `flow-<uuid>` */
  id?: string;
  /** Fields every task of this flow and the flows in it gets unless it sets them. */
  defaults?: Partial<TaskInput>;
}

export interface FlowReceipt {
  /** The parent's job ID (`<batchId>-then` unless `then` gives an `id`). */
  jobId: string;
  /** The batch of its children. */
  batchId: string;
  /** The receipts of the flows among its children, in order. */
  flows: FlowReceipt[];
}

const isFlow = (child: TaskInput | Flow): child is Flow =>
  typeof child === "object" && child !== null && "children" in child;

/** Submits a flow, the innermost flows first: each nested parent joins its outer batch as a member. */
export async function submitFlow(
  submit: (tasks: TaskInput[], opts: BatchOptions) => Promise<BatchHandle>,
  flow: Flow,
  inherited: Partial<TaskInput> = {},
): Promise<FlowReceipt> {
  const children: unknown = flow.children; // checked as unknown: Array.isArray would make flow.children any[] below
  if (!Array.isArray(children) || children.length === 0)
    throw new InputError("flow: children must be a non-empty list");
  const id = flow.id ?? `flow-${randomUUID()}`;
  const defaults = { ...inherited, ...flow.defaults };
  const tasks: TaskInput[] = [];
  const flows: FlowReceipt[] = [];
  for (let i = 0; i < flow.children.length; i++) {
    const child: TaskInput | Flow = flow.children[i]!;
    if (!isFlow(child)) {
      tasks.push(child);
      continue;
    }
    const inner = await submitFlow(submit, { ...child, id: child.id ?? `${id}.${i + 1}` }, defaults);
    flows.push(inner);
    // Already enqueued: the outer batch only takes it in as a member (its prompt is not used again).
    tasks.push({ id: inner.jobId, prompt: typeof child.then === "string" ? child.then : child.then.prompt });
  }
  const handle = await submit(tasks, {
    id,
    defaults,
    then: flow.then,
    ...(flow.thenOn ? { thenOn: flow.thenOn } : {}),
  });
  return { jobId: handle.receipt!.thenJobId!, batchId: id, flows };
}
