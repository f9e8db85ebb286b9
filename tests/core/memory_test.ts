// The memory trimmer (a V8 collection, then the C heap trim): trims once after enough sessions
// closed, debounced, and never when the platform has no trim function.

import assert from "node:assert/strict";
import { loadGlibcTrim, loadV8Collect, MemoryTrimmer } from "../../core/memory.ts";

Deno.test("the trimmer trims once after the threshold, after its delay", async () => {
  let trims = 0;
  const trimmer = new MemoryTrimmer({ threshold: 3, delayMs: 10, trim: () => trims++ });
  trimmer.noteClosed();
  trimmer.noteClosed();
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(trims, 0, "below the threshold nothing happens");
  for (let i = 0; i < 10; i++) trimmer.noteClosed();
  await new Promise((r) => setTimeout(r, 40));
  assert.equal(trims, 1, "closes in a burst give one trim");
  trimmer.stop();
});

Deno.test("stop cancels a pending trim", async () => {
  let trims = 0;
  const trimmer = new MemoryTrimmer({ threshold: 1, delayMs: 10, trim: () => trims++ });
  trimmer.noteClosed();
  trimmer.stop();
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(trims, 0);
});

Deno.test("glibc's malloc_trim is found and callable on Linux", () => {
  const trim = loadGlibcTrim();
  if (Deno.build.os !== "linux") {
    assert.equal(trim, null);
    return;
  }
  assert.ok(trim, "Debian's glibc exports malloc_trim");
  trim(); // harmless: returns freed heap to the OS
});

Deno.test("V8's full collection is had without a command-line flag and gives heap back", () => {
  const collect = loadV8Collect();
  assert.ok(collect, "node:v8 and node:vm expose gc at run time");
  let garbage: unknown[] = [];
  for (let i = 0; i < 300_000; i++) garbage.push({ i, text: `item ${i}` });
  garbage = [];
  const before = Deno.memoryUsage().heapTotal;
  collect();
  const after = Deno.memoryUsage().heapTotal;
  console.log(`heap reserved before ${before >> 20} MiB, after ${after >> 20} MiB`);
  assert.ok(after < before, "the collection gave no heap back");
  assert.equal(garbage.length, 0);
});
