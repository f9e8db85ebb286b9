// The event bus: priority order, stop-on-true, async handlers awaited (only resolving true takes
// the event), failures reported with their owner, and removal leaving nothing behind.

import assert from "node:assert/strict";
import { EventBus, type HandlerFailure, whenUnhandled } from "../../core/events.ts";

type Events = { ping: { seen: string[] } };

Deno.test("handlers run by priority, then registration order", () => {
  const bus = new EventBus<Events>();
  bus.on("ping", ({ seen }) => void seen.push("low"), -5);
  bus.on("ping", ({ seen }) => void seen.push("first"));
  bus.on("ping", ({ seen }) => void seen.push("high"), 10);
  bus.on("ping", ({ seen }) => void seen.push("second"));
  const seen: string[] = [];
  assert.equal(bus.fire("ping", { seen }), false);
  assert.deepEqual(seen, ["high", "first", "second", "low"]);
});

Deno.test("a handler returning true stops propagation", () => {
  const bus = new EventBus<Events>();
  bus.on("ping", ({ seen }) => {
    seen.push("a");
    return true;
  });
  bus.on("ping", ({ seen }) => void seen.push("b"));
  const seen: string[] = [];
  assert.equal(bus.fire("ping", { seen }), true);
  assert.deepEqual(seen, ["a"]);
});

Deno.test("an async handler's rejection is reported with its owner, not swallowed", async () => {
  const failures: HandlerFailure[] = [];
  const bus = new EventBus<Events>({ onHandlerFailure: (f) => failures.push(f) });
  bus.on("ping", () => Promise.reject(new Error("async failure")), { owner: "mod_x" });
  const payload = { seen: [] };
  assert.equal(await bus.fire("ping", payload), true);
  assert.equal(failures.length, 1);
  assert.equal(failures[0].owner, "mod_x");
  assert.equal(failures[0].event, "ping");
  assert.equal(failures[0].async, true);
  assert.equal(failures[0].payload, payload);
  assert.equal((failures[0].error as Error).message, "async failure");
});

Deno.test("a throwing handler is contained, stops propagation and is reported", () => {
  const failures: HandlerFailure[] = [];
  const bus = new EventBus<Events>({ onHandlerFailure: (f) => failures.push(f) });
  bus.on("ping", () => {
    throw new Error("boom");
  }, { priority: 1, owner: "mod_y" });
  bus.on("ping", ({ seen }) => void seen.push("after"));
  const seen: string[] = [];
  assert.equal(bus.fire("ping", { seen }), true);
  assert.deepEqual(seen, []);
  assert.deepEqual(failures.map((f) => [f.owner, f.async]), [["mod_y", false]]);
});

Deno.test("a failing failure callback does not escape fire", () => {
  const bus = new EventBus<Events>({
    onHandlerFailure: () => {
      throw new Error("reporter broke");
    },
  });
  bus.on("ping", () => {
    throw new Error("boom");
  });
  assert.equal(bus.fire("ping", { seen: [] }), true);
});

Deno.test("removing handlers leaves an empty bus", () => {
  const bus = new EventBus<Events>();
  const handler = () => {};
  const off = bus.on("ping", () => {});
  bus.on("ping", handler);
  assert.equal(bus.size, 2);
  off();
  bus.off("ping", handler);
  assert.equal(bus.size, 0);
  assert.equal(bus.has("ping"), false);
  assert.equal(bus.fire("ping", { seen: [] }), false);
});

Deno.test("a handler may unhook itself while the event runs", () => {
  const bus = new EventBus<Events>();
  const off = bus.on("ping", ({ seen }) => {
    seen.push("once");
    off();
  });
  bus.on("ping", ({ seen }) => void seen.push("always"));
  const seen: string[] = [];
  bus.fire("ping", { seen });
  bus.fire("ping", { seen });
  assert.deepEqual(seen, ["once", "always", "always"]);
});

Deno.test("an async handler that resolves false lets the next handlers and the default run", async () => {
  const bus = new EventBus<Events>();
  bus.on("ping", async ({ seen }) => {
    await new Promise((r) => setTimeout(r, 5));
    seen.push("async declined");
    return false;
  }, 10);
  bus.on("ping", ({ seen }) => void seen.push("sync after"));
  const seen: string[] = [];
  const result = bus.fire("ping", { seen });
  assert.ok(result instanceof Promise);
  assert.deepEqual(seen, [], "nothing after the async handler runs before it answered");
  let defaulted = false;
  whenUnhandled(result, () => defaulted = true);
  assert.equal(await result, false);
  await Promise.resolve();
  assert.deepEqual(seen, ["async declined", "sync after"]);
  assert.equal(defaulted, true);
});

Deno.test("an async handler that resolves true takes the event", async () => {
  const bus = new EventBus<Events>();
  bus.on("ping", () => Promise.resolve(true), 10);
  bus.on("ping", ({ seen }) => void seen.push("never"));
  const seen: string[] = [];
  const result = bus.fire("ping", { seen });
  let defaulted = false;
  whenUnhandled(result, () => defaulted = true);
  assert.equal(await result, true);
  await Promise.resolve();
  assert.deepEqual(seen, []);
  assert.equal(defaulted, false);
});
