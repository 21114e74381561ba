import { describe, expect, it } from "vitest";
import { InFlight } from "../../src/shared/in-flight.js";

function deferred() {
  let resolve!: () => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe("writes kept in flight", () => {
  it("keeps at most `size` writes running and waits for all on drain", async () => {
    const writes = new InFlight(2);
    const gates = [deferred(), deferred(), deferred()];
    let running = 0;
    let most = 0;
    const start = (i: number) => async () => {
      running += 1;
      most = Math.max(most, running);
      await gates[i]!.promise;
      running -= 1;
    };
    await writes.add(start(0));
    await writes.add(start(1));
    const third = writes.add(start(2)); // waits for a free place
    await new Promise((r) => setTimeout(r, 10));
    expect(running).toBe(2);
    gates[0]!.resolve();
    await third;
    expect(running).toBe(2);
    gates[1]!.resolve();
    gates[2]!.resolve();
    await writes.drain();
    expect(running).toBe(0);
    expect(most).toBe(2);
  });

  it("starts nothing after a failure, lets running writes settle, then throws the first failure", async () => {
    const writes = new InFlight(2);
    const first = deferred();
    const second = deferred();
    let secondSettled = false;
    await writes.add(() => first.promise);
    await writes.add(() => second.promise.finally(() => (secondSettled = true)));
    first.reject(new Error("chunk 1 failed"));
    let started = false;
    const adding = writes.add(async () => {
      started = true;
    });
    await new Promise((r) => setTimeout(r, 10));
    expect(secondSettled).toBe(false); // still waiting for the running write
    second.resolve();
    await expect(adding).rejects.toThrow("chunk 1 failed");
    expect(secondSettled).toBe(true);
    expect(started).toBe(false);
    await expect(writes.drain()).rejects.toThrow("chunk 1 failed"); // it stays failed
  });

  it("drain throws a failure of the last writes", async () => {
    const writes = new InFlight(2);
    await writes.add(() => Promise.reject(new Error("last chunk failed")));
    await expect(writes.drain()).rejects.toThrow("last chunk failed");
  });
});
