// Redis stopped for longer than the node timeout and started again empty: no node counts the
// other dead meanwhile (each notices it cannot hear even itself), so no client is told that its
// contacts went away; afterwards each node writes its sessions again, reads the other's, and
// stanzas cross nodes as before. A node stopped while Redis is away still exits.

import assert from "node:assert/strict";
import { startRedis } from "../../helpers/brokers.ts";
import {
  availableOn,
  isPresence,
  NODE_TIMEOUT_S,
  seeEachOther,
  startCluster,
  subscribeBoth,
  untilShown,
} from "./nodes.ts";

Deno.test("a Redis restart longer than the node timeout ends no session; the nodes find each other again", async () => {
  const redisDir = await Deno.makeTempDir({ prefix: "lilt-redis-outage-" });
  let redis = await startRedis({ dir: redisDir });
  const port = redis.port;
  try {
    await using cluster = await startCluster(["alpha", "beta"], {
      users: ["alice", "bob"],
      redisUrl: redis.url,
    });
    const [alpha, beta] = cluster.nodes;
    const [nodeA, nodeB] = cluster.processes;
    const alice = await cluster.login(nodeA, "alice", "desk");
    const bob = await cluster.login(nodeB, "bob", "phone");
    await seeEachOther(
      { node: alpha, client: alice, jid: "alice@localhost/desk" },
      { node: beta, client: bob, jid: "bob@localhost/phone" },
    );
    await subscribeBoth(
      { client: alice, jid: "alice@localhost" },
      { client: bob, jid: "bob@localhost" },
    );

    await redis.stop({ keepDir: true });
    // Both nodes notice they hear nothing, not even themselves, before Redis returns.
    await nodeA.waitFor(/Not hearing the cluster through Redis/, 10_000);
    await nodeB.waitFor(/Not hearing the cluster through Redis/, 10_000);
    await new Promise((resolve) => setTimeout(resolve, NODE_TIMEOUT_S * 1000));
    redis = await startRedis({ port, dir: redisDir });
    await nodeA.waitFor(/Hearing the cluster again/, 15_000);
    await nodeB.waitFor(/Hearing the cluster again/, 15_000);
    await untilShown(
      alpha,
      (nodes) => availableOn(nodes, "beta").includes("bob@localhost/phone"),
      "alpha to list bob on beta again",
    );
    await untilShown(
      beta,
      (nodes) => availableOn(nodes, "alpha").includes("alice@localhost/desk"),
      "beta to list alice on alpha again",
    );

    alice.send("<message to='bob@localhost/phone' type='chat' id='m1'><body>back</body></message>");
    await bob.next((el) => el.name === "message" && el.attrs.id === "m1", 10_000);
    bob.send("<message to='alice@localhost' type='chat' id='m2'><body>yes</body></message>");
    await alice.next((el) => el.name === "message" && el.attrs.id === "m2", 10_000);
    // Nobody was told the other had gone: alpha sent m1 after anything it sent bob before.
    assert.ok(!bob.received.some(isPresence("alice@localhost/desk", "unavailable")));
    assert.ok(!alice.received.some(isPresence("bob@localhost/phone", "unavailable")));
    for (const node of [nodeA, nodeB]) assert.doesNotMatch(node.log, /stopped answering/);
    if (Deno.env.get("DEBUG_CLUSTER")) console.log(nodeA.log, nodeB.log);

    // A node stopped while Redis is out of reach still stops (the others time it out).
    await redis.stop({ keepDir: true });
    nodeA.process.kill("SIGTERM");
    assert.equal((await nodeA.process.status).code, 0);
  } finally {
    await redis.stop();
    await Deno.remove(redisDir, { recursive: true }).catch(() => {});
  }
});
