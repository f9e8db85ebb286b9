// The C heap trimmer: trims once after enough sessions closed, debounced, and never when
// the platform has no trim function.

import assert from "node:assert/strict";
import { loadGlibcTrim, MemoryTrimmer } from "../../core/memory.ts";

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
