// The event bus: priority order, stop-on-true, async handlers counted as handled, and
// removal leaving nothing behind.

import assert from "node:assert/strict";
import { EventBus } from "../../core/events.ts";

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

Deno.test("an async handler counts as handled and its rejection does not escape", async () => {
  const bus = new EventBus<Events>();
  bus.on("ping", () => Promise.reject(new Error("async failure")));
  assert.equal(bus.fire("ping", { seen: [] }), true);
  await new Promise((r) => setTimeout(r, 0));
});

Deno.test("a throwing handler is contained", () => {
  const bus = new EventBus<Events>();
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
