// The cluster benchmark (scripts/bench/cluster.ts) must keep running as the cluster changes: a
// tiny load on two real nodes (PostgreSQL and Redis started by the script), every message across
// Redis, and the JSON it writes. No figure is asserted.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const SCRIPT = fileURLToPath(new URL("../../../scripts/bench/cluster.ts", import.meta.url));

Deno.test("cluster bench: two nodes deliver every open-loop message and Redis CPU is counted", async () => {
  const results = await Deno.makeTempDir({ prefix: "lilt-cluster-bench-test-" });
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        SCRIPT,
        "--configs=two-nodes",
        "--pairs=2",
        "--seconds=1",
        "--warmup=0",
        "--rate=200",
        `--results=${results}`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, stdout + new TextDecoder().decode(out.stderr));
    const files = [...Deno.readDirSync(results)].map((entry) => entry.name);
    assert.equal(files.length, 1);
    assert.match(files[0], /-cluster\.json$/);
    const saved = JSON.parse(await Deno.readTextFile(`${results}/${files[0]}`));
    assert.deepEqual(saved.errors, []);
    const row = saved.two_nodes;
    assert.equal(row.pairs, 2);
    const [delivered, sent] = row.open_delivered_of_sent.split(" / ").map(Number);
    assert.ok(sent > 0, "the open loop sent messages");
    assert.equal(delivered, sent, "every message crossed to the other node");
    assert.ok(row.saturated_msgs_per_s > 0);
    // Redis relayed every message, so it spent some CPU on them; PostgreSQL was measured
    assert.ok(row.saturated_us_per_msg.redis > 0);
    assert.equal(typeof row.saturated_us_per_msg.postgresql, "number");
    assert.match(stdout, /\| saturated msgs\/s \|/);
  } finally {
    await Deno.remove(results, { recursive: true });
  }
});
