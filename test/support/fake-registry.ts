/** The fake models of the stacks a test file has open, reset before each of its tests (per-test.ts). */
import type { FakeModel } from "./fake-model";

const open = new Set<FakeModel>();

export function registerFakeModel(fake: FakeModel): () => void {
  open.add(fake);
  return () => open.delete(fake);
}

export function resetFakeModels(): void {
  for (const fake of open) fake.reset();
}
