// Three nodes, one killed: both survivors drop its sessions, but only the one whose name sorts
// first sends their unavailable presence, so a contact hears it once; the killed node started
// again under its name joins again and serves its client.

import assert from "node:assert/strict";
import {
  isPresence,
  seeEachOther,
  sessionsOf,
  startCluster,
  subscribeBoth,
  untilShown,
} from "./nodes.ts";

Deno.test("a dead node's sessions end once for their contacts, announced by the first survivor; the node can join again", async () => {
  await using cluster = await startCluster(["alpha", "beta", "gamma"], {
    users: ["alice", "bob", "carol"],
  });
  const [alpha, beta, gamma] = cluster.nodes;
  const [nodeA, nodeB, nodeG] = cluster.processes;
  const alice = await cluster.login(nodeG, "alice", "desk");
  const bob = await cluster.login(nodeB, "bob", "phone");
  const carol = await cluster.login(nodeA, "carol", "tablet");
  // Each node learns of the other's available session before the subscriptions.
  await seeEachOther(
    { node: gamma, client: alice, jid: "alice@localhost/desk" },
    { node: beta, client: bob, jid: "bob@localhost/phone" },
  );
  await subscribeBoth(
    { client: alice, jid: "alice@localhost" },
    { client: bob, jid: "bob@localhost" },
  );
  await untilShown(
    alpha,
    (nodes) =>
      sessionsOf(nodes, "gamma").includes("alice@localhost/desk") &&
      sessionsOf(nodes, "beta").includes("bob@localhost/phone"),
    "alpha to list alice on gamma and bob on beta",
  );

  nodeG.process.kill("SIGKILL");
  await nodeG.process.status;
  const dropped = /Cluster node gamma stopped answering; 1 of its sessions dropped here(.*)/;
  const onAlpha = await nodeA.waitFor(dropped, 15_000);
  const onBeta = await nodeB.waitFor(dropped, 15_000);
  assert.equal(onAlpha[1], ", their end announced from this node");
  assert.equal(onBeta[1], "");
  await bob.next(isPresence("alice@localhost/desk", "unavailable"), 10_000);
  // Whatever alpha sent bob before carol's message has arrived once carol's has.
  carol.send(
    "<message to='bob@localhost' type='chat' id='after'><body>still here</body></message>",
  );
  await bob.next((el) => el.name === "message" && el.attrs.id === "after", 10_000);
  const goodbyes = bob.received.filter(isPresence("alice@localhost/desk", "unavailable"));
  assert.equal(goodbyes.length, 1);

  // gamma starts again under its name: the others take it back, and alice logs in there.
  const again = await cluster.start(gamma);
  await nodeA.waitFor(/Cluster node gamma joined[\s\S]*Cluster node gamma joined/, 15_000);
  const aliceAgain = await cluster.login(again, "alice", "desk");
  aliceAgain.send("<presence/>");
  const goodbyeAt = bob.received.indexOf(goodbyes[0]);
  await bob.next(
    (el) => isPresence("alice@localhost/desk")(el) && bob.received.indexOf(el) > goodbyeAt,
    10_000,
  );
  await untilShown(
    beta,
    (nodes) => nodes.length === 3 && sessionsOf(nodes, "gamma").includes("alice@localhost/desk"),
    "beta to list alice on gamma again",
  );
});
