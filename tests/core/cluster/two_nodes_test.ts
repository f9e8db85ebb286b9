// Two `lilt start` processes serving one domain (issue 19), as an operator runs them: one
// PostgreSQL schema and one Redis, all started by the test. Clients on different nodes
// subscribe to each other, exchange messages and presence; `cluster show` lists both nodes;
// a node killed with SIGKILL is noticed by the other, which tells its clients, and the killed
// node's client logs in again on the survivor and finds its roster, archive and offline
// message.

import assert from "node:assert/strict";
import { runLilt } from "../../helpers/lilt_process.ts";
import { RawClient, roundTrip } from "../../helpers/raw_client.ts";
import {
  availableOn,
  clusterShow,
  isPresence,
  sessionsOf,
  startCluster,
  subscribeBoth,
  untilShown,
} from "./nodes.ts";

Deno.test("two nodes serve one domain: messages and presence cross nodes, a killed node's client moves to the survivor", async () => {
  await using cluster = await startCluster(["alpha", "beta"], { users: ["alice", "bob"] });
  const [alpha, beta] = cluster.nodes;
  const [nodeA, nodeB] = cluster.processes;
  const alice = await cluster.login(nodeA, "alice", "desk");
  const bob = await cluster.login(nodeB, "bob", "phone");
  alice.send("<presence/>");
  bob.send("<presence/>");
  await alice.next(isPresence("alice@localhost/desk"));
  await bob.next(isPresence("bob@localhost/phone"));

  // Each node learns of the other's session through Redis.
  const shown = await untilShown(
    alpha,
    (nodes) =>
      availableOn(nodes, "beta").includes("bob@localhost/phone") &&
      sessionsOf(nodes, "alpha").includes("alice@localhost/desk"),
    "alpha to list bob on beta",
  );
  assert.deepEqual(shown.map((n) => [n.name, n.self]), [["alpha", true], ["beta", false]]);
  await untilShown(
    beta,
    (nodes) => availableOn(nodes, "alpha").includes("alice@localhost/desk"),
    "beta to list alice on alpha",
  );

  // Subscriptions both ways, answered across nodes; then each sees the other's presence.
  await subscribeBoth(
    { client: alice, jid: "alice@localhost" },
    { client: bob, jid: "bob@localhost" },
  );
  await alice.next(isPresence("bob@localhost/phone"), 10_000);
  await bob.next(isPresence("alice@localhost/desk"), 10_000);

  // Messages to the full and to the bare JID.
  alice.send(
    "<message to='bob@localhost/phone' type='chat' id='m1'><body>to your phone</body></message>",
  );
  const m1 = await bob.next((el) => el.name === "message" && el.attrs.id === "m1", 10_000);
  assert.equal(m1.attrs.from, "alice@localhost/desk");
  assert.equal(m1.getChildText("body"), "to your phone");
  bob.send("<message to='alice@localhost' type='chat' id='m2'><body>to you</body></message>");
  const m2 = await alice.next((el) => el.name === "message" && el.attrs.id === "m2", 10_000);
  assert.equal(m2.attrs.from, "bob@localhost/phone");

  // A presence change reaches the contact on the other node.
  alice.send("<presence><show>away</show><status>lunch</status></presence>");
  const away = await bob.next(
    (el) => isPresence("alice@localhost/desk")(el) && el.getChildText("show") === "away",
    10_000,
  );
  assert.equal(away.getChildText("status"), "lunch");

  // The shell on beta lists both nodes and their sessions, beta marked.
  const fromBeta = await clusterShow(beta);
  assert.equal(fromBeta.node, "beta");
  assert.deepEqual(
    fromBeta.nodes.map((n) => [n.name, n.self, n.sessions]),
    [["beta", true, ["bob@localhost/phone"]], ["alpha", false, ["alice@localhost/desk"]]],
  );
  const table = await runLilt(["shell", "cluster", "show", "-c", beta.config]);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /^beta\s+\*\s+now/m);
  assert.match(table.stdout, /^alpha\s+\S/m);
  assert.match(table.stdout, /alice@localhost\/desk/);
  const help = await runLilt(["shell", "help", "-c", beta.config]);
  assert.match(help.stdout, /^\s*cluster\s+show$/m);

  // alpha dies without a word: bob hears that alice is gone once alpha times out.
  nodeA.process.kill("SIGKILL");
  await nodeA.process.status;
  await bob.next(isPresence("alice@localhost/desk", "unavailable"), 15_000);
  await nodeB.waitFor(/Cluster node alpha stopped answering; 1 of its sessions dropped/);
  await untilShown(beta, (nodes) => nodes.length === 1, "beta to drop alpha");
  // bob's node keeps serving: a message to alice now waits offline.
  bob.send("<message to='alice@localhost' type='chat' id='m3'><body>while away</body></message>");
  await roundTrip(bob);

  // alice logs in on beta: her roster and the offline message are there.
  const again = await RawClient.login(nodeB.port, "alice", "alice-pw", "laptop");
  cluster.clients.push(again.client);
  const aliceAgain = again.client;
  aliceAgain.send("<iq type='get' id='r2'><query xmlns='jabber:iq:roster'/></iq>");
  const roster = await aliceAgain.next((el) => el.attrs.id === "r2");
  const item = roster.getChild("query")?.getChildren("item").find((i) =>
    i.attrs.jid === "bob@localhost"
  );
  assert.equal(item?.attrs.subscription, "both");
  // Her archive has the messages of both nodes (each node archived what it routed).
  aliceAgain.send(
    "<iq type='set' id='q1'><query xmlns='urn:xmpp:mam:2' queryid='f1'/></iq>",
  );
  await aliceAgain.next((el) => el.attrs.id === "q1" && el.attrs.type === "result", 10_000);
  const archived = aliceAgain.received
    .map((el) => el.getChild("result", "urn:xmpp:mam:2"))
    .filter((result) => result?.attrs.queryid === "f1")
    .map((result) =>
      result!.getChild("forwarded", "urn:xmpp:forward:0")?.getChild("message")?.getChildText(
        "body",
      )
    );
  assert.deepEqual(archived, ["to your phone", "to you", "while away"]);
  aliceAgain.send("<presence/>");
  const m3 = await aliceAgain.next(
    (el) => el.name === "message" && el.getChildText("body") === "while away",
    10_000,
  );
  assert.equal(m3.attrs.from, "bob@localhost/phone");
  // And bob sees alice back, now on his own node.
  await bob.next(isPresence("alice@localhost/laptop"), 10_000);
});
