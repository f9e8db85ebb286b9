// Three nodes, one killed: both survivors drop its sessions, but only the one whose name sorts
// first sends their unavailable presence, so a contact hears it once; the killed node started
// again under its name joins again and serves its client.

import assert from "node:assert/strict";
import { startRedis } from "../../helpers/brokers.ts";
import { type LiltProcess, startLiltProcess } from "../../helpers/lilt_process.ts";
import { freshSchema, postgresUrl } from "../../helpers/postgres.ts";
import type { RawClient } from "../../helpers/raw_client.ts";
import {
  addUsers,
  availableOn,
  isPresence,
  login,
  nodeConfig,
  sessionsOf,
  subscribeBoth,
  untilShown,
} from "./nodes.ts";

Deno.test("a dead node's sessions end once for their contacts, announced by the first survivor; the node can join again", async () => {
  const url = await postgresUrl();
  using schema = freshSchema(url);
  await using redis = await startRedis();
  const setup = { postgresUrl: url, schema: schema.name, redisUrl: redis.url };
  const alpha = await nodeConfig("alpha", setup);
  const beta = await nodeConfig("beta", setup);
  const gamma = await nodeConfig("gamma", setup);
  const processes: LiltProcess[] = [];
  const clients: RawClient[] = [];
  try {
    await addUsers(alpha, ["alice", "bob", "carol"]);
    const nodeA = await startLiltProcess(alpha.config);
    const nodeB = await startLiltProcess(beta.config);
    const nodeG = await startLiltProcess(gamma.config);
    processes.push(nodeA, nodeB, nodeG);

    const alice = await login(nodeG.port, "alice", "desk");
    const bob = await login(nodeB.port, "bob", "phone");
    const carol = await login(nodeA.port, "carol", "tablet");
    clients.push(alice, bob, carol);
    alice.send("<presence/>");
    bob.send("<presence/>");
    await alice.next(isPresence("alice@localhost/desk"));
    await bob.next(isPresence("bob@localhost/phone"));
    // Each node learns of the other's available session before the subscriptions.
    await untilShown(
      gamma,
      (nodes) => availableOn(nodes, "beta").includes("bob@localhost/phone"),
      "gamma to list bob available on beta",
    );
    await untilShown(
      beta,
      (nodes) => availableOn(nodes, "gamma").includes("alice@localhost/desk"),
      "beta to list alice available on gamma",
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
    const again = await startLiltProcess(gamma.config);
    processes.push(again);
    await nodeA.waitFor(/Cluster node gamma joined[\s\S]*Cluster node gamma joined/, 15_000);
    const aliceAgain = await login(again.port, "alice", "desk");
    clients.push(aliceAgain);
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
  } finally {
    for (const client of clients) client.close();
    for (const process of processes) await process.stop();
    for (const node of [alpha, beta, gamma]) {
      await Deno.remove(node.dir, { recursive: true }).catch(() => {});
    }
  }
});
