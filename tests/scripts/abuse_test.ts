// The abuse run (scripts/bench/abuse.ts) with small numbers: Lilt started as a child process
// survives a message flood among hostile connections of every kind, still answers a ping, and the
// run prints its memory figures. Nothing is asserted about the figures (no timed or measured
// assertions); they are printed.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../../", import.meta.url));

Deno.test("the abuse run's server survives, answers a ping afterwards and RSS figures are printed", async () => {
  const out = await new Deno.Command(`${root}scripts/deno`, {
    args: [
      "run",
      "--allow-all",
      `${root}scripts/bench/abuse.ts`,
      "--messages=500",
      "--hostile=42",
      "--attack-seconds=3",
      "--max-seconds=120",
    ],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  console.log(stdout.split("\n").filter((line) => !line.startsWith("{")).join("\n"));
  assert.equal(out.code, 0, `abuse.ts failed:\n${stdout}\n${stderr}`);
  assert.match(stdout, /^ping after the attack: ok$/m);
  assert.match(stdout, /^idle RSS: \d+ KiB$/m);
  assert.match(stdout, /^peak RSS: \d+ KiB sampled, \d+ KiB VmHWM$/m);
  assert.match(stdout, /^ratio: [\d.]+ /m);
  const report = JSON.parse(stdout.split("\n").find((line) => line.startsWith("{"))!);
  assert.equal(report.delivered, 500, "the flood was not delivered in full");
  assert.ok(report.idle_rss_kib > 0 && report.peak_rss_kib > 0);
  assert.ok(report.hostile_connections >= 42);
  assert.deepEqual(report.errors, []);
});
