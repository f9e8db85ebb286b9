// Sessions that change node, and nodes that stop in order: a login with a full JID another
// node holds replaces that session there (conflict); a stanza that reaches a node after its
// session ended is handled as RFC 6121 says for an unavailable resource; a node stopped with
// SIGTERM ends its sessions and leaves at once. Two `lilt start` processes, a password-protected
// Redis and one PostgreSQL schema, all started here.

import assert from "node:assert/strict";
import { createClient } from "@redis/client";
import { roundTrip } from "../../helpers/raw_client.ts";
import {
  isPresence,
  seeEachOther,
  sessionsOf,
  startCluster,
  subscribeBoth,
  untilShown,
} from "./nodes.ts";

const REDIS_PASSWORD = "correct horse battery staple";
const NS_STREAMS = "urn:ietf:params:xml:ns:xmpp-streams";

Deno.test("a full JID bound on another node moves there, a late stanza finds the bare JID, a stopped node leaves at once", async () => {
  await using cluster = await startCluster(["alpha", "beta"], {
    users: ["alice", "bob"],
    redisPassword: REDIS_PASSWORD,
  });
  const [alpha, beta] = cluster.nodes;
  const [nodeA, nodeB] = cluster.processes;
  const publisher = createClient({ url: cluster.redisUrl, password: REDIS_PASSWORD });
  try {
    const aliceOnA = await cluster.login(nodeA, "alice", "desk");
    const bob = await cluster.login(nodeB, "bob", "phone");
    // Each node learns of the other's available session before the subscriptions.
    await seeEachOther(
      { node: alpha, client: aliceOnA, jid: "alice@localhost/desk" },
      { node: beta, client: bob, jid: "bob@localhost/phone" },
    );
    await subscribeBoth(
      { client: aliceOnA, jid: "alice@localhost" },
      { client: bob, jid: "bob@localhost" },
    );
    await untilShown(
      beta,
      (nodes) => sessionsOf(nodes, "alpha").includes("alice@localhost/desk"),
      "beta to list alice on alpha",
    );

    // alice/desk logs in again on beta: the session on alpha ends with a conflict.
    const aliceOnB = await cluster.login(nodeB, "alice", "desk");
    const streamError = await aliceOnA.next(
      (el) => el.name === "error" && el.ns === "http://etherx.jabber.org/streams",
      10_000,
    );
    assert.ok(streamError.getChild("conflict", NS_STREAMS), streamError.toString());
    aliceOnB.send("<presence/>");
    await untilShown(
      alpha,
      (nodes) =>
        sessionsOf(nodes, "beta").includes("alice@localhost/desk") &&
        sessionsOf(nodes, "alpha").length === 0,
      "alpha to list alice/desk on beta",
    );
    bob.send("<message to='alice@localhost/desk' type='chat' id='m1'><body>here?</body></message>");
    await aliceOnB.next((el) => el.name === "message" && el.attrs.id === "m1", 10_000);

    // News of the older session on alpha, late (a presence change that crossed the new
    // login): neither node lets it replace the newer session.
    await publisher.connect();
    await publisher.publish(
      "lilt:cluster",
      JSON.stringify({
        t: "session",
        node: "alpha",
        jid: "alice@localhost/desk",
        session: {
          id: "older",
          connectedAt: 1,
          ip: "127.0.0.1",
          secure: true,
          available: true,
          interested: true,
          priority: 0,
          presence: null,
        },
      }),
    );
    await roundTrip(aliceOnB);
    await untilShown(
      alpha,
      (nodes) => sessionsOf(nodes, "beta").includes("alice@localhost/desk"),
      "alpha to keep alice/desk on beta",
    );
    bob.send(
      "<message to='alice@localhost/desk' type='chat' id='m2'><body>still?</body></message>",
    );
    await aliceOnB.next((el) => el.name === "message" && el.attrs.id === "m2", 10_000);
    assert.equal(aliceOnB.closedByServer, false);

    // Stanzas beta gets for a resource it no longer holds (as if alpha's view were late): a
    // chat message goes to the bare JID once, a request is answered with an error, and one
    // already sent on again is dropped.
    const late = (id: string, body: string) =>
      `<message from='alice@localhost/desk' to='bob@localhost/gone' type='chat' id='${id}'>` +
      `<body>${body}</body></message>`;
    await publisher.publish(
      "lilt:node:beta",
      JSON.stringify({
        t: "stanzas",
        from: "alpha",
        items: [
          ["bob@localhost/gone", late("dropped", "twice rerouted"), 1],
          [
            "bob@localhost/gone",
            "<iq from='alice@localhost/desk' to='bob@localhost/gone' type='get' id='q1'>" +
            "<ping xmlns='urn:xmpp:ping'/></iq>",
          ],
          ["bob@localhost/gone", late("l1", "late but here")],
        ],
      }),
    );
    const rerouted = await bob.next((el) => el.name === "message" && el.attrs.id === "l1");
    assert.equal(rerouted.getChildText("body"), "late but here");
    assert.ok(!bob.received.some((el) => el.attrs.id === "dropped"));
    const refused = await aliceOnB.next((el) => el.name === "iq" && el.attrs.id === "q1");
    assert.equal(refused.attrs.type, "error");
    assert.ok(refused.getChild("error")?.getChild("service-unavailable"), refused.toString());

    // bob on alpha too, then alpha stops in order: it ends bob/laptop itself (bob/phone on beta
    // hears the unavailable) and leaves, so beta forgets it without waiting for the timeout.
    const bobOnA = await cluster.login(nodeA, "bob", "laptop");
    bobOnA.send("<presence/>");
    await bob.next(isPresence("bob@localhost/laptop"), 10_000);
    nodeA.process.kill("SIGTERM");
    assert.equal((await nodeA.process.status).code, 0);
    await bob.next(isPresence("bob@localhost/laptop", "unavailable"), 10_000);
    await nodeB.waitFor(/Cluster node alpha left; 0 of its sessions dropped here/);
    const shown = await untilShown(beta, (nodes) => nodes.length === 1, "beta alone");
    assert.deepEqual(shown[0].sessions, [
      "alice@localhost/desk",
      "bob@localhost/phone",
    ]);
    assert.ok(!nodeB.log.includes("stopped answering"), nodeB.log);
  } finally {
    await publisher.close().catch(() => {});
  }
});
