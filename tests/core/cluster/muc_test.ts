// MUC and pubsub across two `lilt start` processes (issue 19): the internal components are
// served by one node (the live one whose name sorts first) and the other forwards their
// stanzas there. Clients on both nodes share a room and a pubsub node; when the serving node
// is killed the survivor takes over from the shared store, and clients rejoin.

import assert from "node:assert/strict";
import { conditionOf, type RawClient } from "../../helpers/raw_client.ts";
import type { Element } from "../../../core/xml/element.ts";
import { serialize } from "../../../core/xml/serializer.ts";
import { join, MUC, NS_OWNER, statuses } from "../../mod/muc/helpers.ts";
import { availableOn, startCluster, untilShown } from "./nodes.ts";

const PUBSUB = "pubsub.localhost";
const NS_PUBSUB = "http://jabber.org/protocol/pubsub";
const NS_EVENT = "http://jabber.org/protocol/pubsub#event";
const ROOM = `lounge@${MUC}`;

const COMPONENTS = `
[[component]]
domain = "${MUC}"
modules = ["disco", "muc"]

[[component]]
domain = "${PUBSUB}"
modules = ["disco", "pubsub"]
`;

/** Sends an iq and returns its answer. */
async function iq(client: RawClient, type: string, to: string, payload: string): Promise<Element> {
  const id = `iq-${crypto.randomUUID()}`;
  client.send(`<iq type='${type}' id='${id}' to='${to}'>${payload}</iq>`);
  return await client.next((el) => el.name === "iq" && el.attrs.id === id, 10_000);
}

function assertResult(answer: Element): void {
  if (answer.attrs.type !== "result") assert.fail(`expected a result: ${serialize(answer)}`);
}

function groupchat(client: RawClient, id: string, body: string): void {
  client.send(`<message to='${ROOM}' type='groupchat' id='${id}'><body>${body}</body></message>`);
}

/** The next message with this id (a groupchat reflection, a private message). */
function messageWithId(client: RawClient, id: string): Promise<Element> {
  return client.next((el) => el.name === "message" && el.attrs.id === id, 10_000);
}

/** The joining occupant's own presence among what a join returned. */
function selfPresence(stanzas: Element[], nick: string): Element {
  const own = stanzas.find((el) => el.name === "presence" && el.attrs.from === `${ROOM}/${nick}`);
  if (!own) assert.fail(`no presence of ${nick} in ${stanzas.map((el) => serialize(el)).join("")}`);
  return own;
}

/** The room's name as its disco#info tells it. */
async function roomName(client: RawClient): Promise<string | undefined> {
  const info = await iq(
    client,
    "get",
    ROOM,
    "<query xmlns='http://jabber.org/protocol/disco#info'/>",
  );
  assertResult(info);
  return info.getChild("query")?.getChild("identity")?.attrs.name;
}

Deno.test("MUC and pubsub across two nodes: one node serves the components, the survivor takes over from the store", async () => {
  // "alpha" sorts first: it serves the components while it lives.
  await using cluster = await startCluster(["alpha", "beta"], {
    users: ["alice", "bob"],
    extraConfig: COMPONENTS,
  });
  const [alpha] = cluster.nodes;
  const [nodeA, nodeB] = cluster.processes;
  await nodeB.waitFor(/internal components on alpha/);

  const alice = await cluster.login(nodeA, "alice", "desk");
  const bob = await cluster.login(nodeB, "bob", "phone");
  alice.send("<presence/>");
  bob.send("<presence/>");
  await untilShown(
    alpha,
    (nodes) => availableOn(nodes, "beta").includes("bob@localhost/phone"),
    "alpha to list bob on beta",
  );

  // bob, on beta, creates the room on alpha, and configures it: persistent, with a name.
  const created = selfPresence(await join(bob, "lounge", "Bob"), "Bob");
  assert.ok(statuses(created).includes(201), serialize(created));
  assertResult(
    await iq(
      bob,
      "set",
      ROOM,
      `<query xmlns='${NS_OWNER}'><x xmlns='jabber:x:data' type='submit'>` +
        `<field var='muc#roomconfig_persistentroom'><value>1</value></field>` +
        `<field var='muc#roomconfig_roomname'><value>Lounge Talk</value></field></x></query>`,
    ),
  );

  // alice, on alpha, joins: each sees the other's occupant presence.
  const aliceJoin = await join(alice, "lounge", "Al");
  assert.ok(
    aliceJoin.some((el) => el.name === "presence" && el.attrs.from === `${ROOM}/Bob`),
    "alice sees Bob in the room",
  );
  await bob.next((el) => el.name === "presence" && el.attrs.from === `${ROOM}/Al`, 10_000);

  // Groupchat both ways: every occupant gets every message, the sender its reflection.
  groupchat(bob, "g1", "hello from beta");
  for (const client of [alice, bob]) {
    const message = await messageWithId(client, "g1");
    assert.equal(message.attrs.from, `${ROOM}/Bob`);
    assert.equal(message.getChildText("body"), "hello from beta");
  }
  groupchat(alice, "g2", "hello from alpha");
  for (const client of [alice, bob]) {
    const message = await messageWithId(client, "g2");
    assert.equal(message.attrs.from, `${ROOM}/Al`);
  }

  // A private message through the room, from the node serving it to the other and back.
  alice.send(
    `<message to='${ROOM}/Bob' type='chat' id='p1'><body>just for you</body></message>`,
  );
  const p1 = await messageWithId(bob, "p1");
  assert.equal(p1.attrs.from, `${ROOM}/Al`);
  assert.equal(p1.getChildText("body"), "just for you");
  bob.send(`<message to='${ROOM}/Al' type='chat' id='p2'><body>thanks</body></message>`);
  assert.equal((await messageWithId(alice, "p2")).attrs.from, `${ROOM}/Bob`);

  // Pubsub on pubsub.localhost: alice's node, bob (on beta) subscribed, gets her item.
  assertResult(
    await iq(alice, "set", PUBSUB, `<pubsub xmlns='${NS_PUBSUB}'><create node='news'/></pubsub>`),
  );
  const subscribed = await iq(
    bob,
    "set",
    PUBSUB,
    `<pubsub xmlns='${NS_PUBSUB}'><subscribe node='news' jid='bob@localhost'/></pubsub>`,
  );
  assertResult(subscribed);
  assertResult(
    await iq(
      alice,
      "set",
      PUBSUB,
      `<pubsub xmlns='${NS_PUBSUB}'><publish node='news'><item id='i1'>` +
        `<entry xmlns='urn:example:news'>cluster news</entry></item></publish></pubsub>`,
    ),
  );
  const event = await bob.next(
    (el) => el.name === "message" && el.getChild("event", NS_EVENT) !== undefined,
    10_000,
  );
  assert.equal(event.attrs.from, PUBSUB);
  const items = event.getChild("event", NS_EVENT)!.getChild("items")!;
  assert.equal(items.attrs.node, "news");
  assert.equal(items.getChild("item")?.attrs.id, "i1");

  // The archive writes behind by a tenth of a second: let it reach the store, then kill the
  // node serving the room without a word.
  await new Promise((resolve) => setTimeout(resolve, 500));
  nodeA.process.kill("SIGKILL");
  await nodeA.process.status;
  await nodeB.waitFor(/This node serves the internal components now/, 15_000);

  // bob's self-ping (XEP-0410) tells him he is no longer in the room, which still exists.
  const ping = await iq(bob, "get", `${ROOM}/Bob`, "<ping xmlns='urn:xmpp:ping'/>");
  assert.equal(ping.attrs.type, "error", serialize(ping));
  assert.equal(conditionOf(ping), "not-acceptable");

  // He rejoins: the room kept its name, and the earlier messages come as history.
  const rejoined = await join(bob, "lounge", "Bob", "<history maxstanzas='10'/>");
  const history = rejoined.filter((el) => el.name === "message" && el.getChild("body"));
  assert.deepEqual(history.map((el) => el.getChildText("body")), [
    "hello from beta",
    "hello from alpha",
  ]);
  assert.ok(!statuses(selfPresence(rejoined, "Bob")).includes(201), "not created again");
  assert.equal(await roomName(bob), "Lounge Talk");

  // alice's node is gone: she logs in on beta and joins too; bob sees her come in.
  const aliceAgain = await cluster.login(nodeB, "alice", "laptop");
  aliceAgain.send("<presence/>");
  const again = await join(aliceAgain, "lounge", "Al");
  assert.ok(again.some((el) => el.attrs.from === `${ROOM}/Bob`), "alice sees Bob again");
  await bob.next((el) => el.name === "presence" && el.attrs.from === `${ROOM}/Al`, 10_000);
  groupchat(aliceAgain, "g3", "back");
  assert.equal((await messageWithId(bob, "g3")).attrs.from, `${ROOM}/Al`);

  // The pubsub node and bob's subscription are in the store: beta serves them now.
  assertResult(
    await iq(
      aliceAgain,
      "set",
      PUBSUB,
      `<pubsub xmlns='${NS_PUBSUB}'><publish node='news'><item id='i2'>` +
        `<entry xmlns='urn:example:news'>still here</entry></item></publish></pubsub>`,
    ),
  );
  const second = await bob.next(
    (el) =>
      el.name === "message" &&
      el.getChild("event", NS_EVENT)?.getChild("items")?.getChild("item")?.attrs.id === "i2",
    10_000,
  );
  assert.equal(second.attrs.from, PUBSUB);
});

Deno.test("a node whose name sorts first takes the components over when it joins; a dead node's occupants leave the rooms", async () => {
  await using cluster = await startCluster(["alpha", "beta"], {
    users: ["alice", "bob"],
    extraConfig: COMPONENTS,
    start: false,
  });
  const [alpha, beta] = cluster.nodes;
  // beta alone serves the room at first.
  const nodeB = await cluster.start(beta);
  const bob = await cluster.login(nodeB, "bob", "phone");
  bob.send("<presence/>");
  await join(bob, "lounge", "Bob");
  assertResult(
    await iq(
      bob,
      "set",
      ROOM,
      `<query xmlns='${NS_OWNER}'><x xmlns='jabber:x:data' type='submit'>` +
        `<field var='muc#roomconfig_persistentroom'><value>1</value></field>` +
        `<field var='muc#roomconfig_roomname'><value>Handed Over</value></field></x></query>`,
    ),
  );

  // alpha joins and, sorting first, serves the components; beta forgets its occupants.
  const nodeA = await cluster.start(alpha);
  await nodeB.waitFor(/no longer serves the internal components/, 15_000);
  const ping = await iq(bob, "get", `${ROOM}/Bob`, "<ping xmlns='urn:xmpp:ping'/>");
  assert.equal(conditionOf(ping), "not-acceptable", serialize(ping));
  await join(bob, "lounge", "Bob");
  assert.equal(await roomName(bob), "Handed Over");

  // alice, on alpha, joins and sees Bob (whose session is on beta).
  const alice = await cluster.login(nodeA, "alice", "desk");
  alice.send("<presence/>");
  const joined = await join(alice, "lounge", "Al");
  assert.ok(joined.some((el) => el.attrs.from === `${ROOM}/Bob`), "alice sees Bob");

  // beta dies: once alpha notices, Bob leaves the room as if his client had gone offline.
  nodeB.process.kill("SIGKILL");
  await nodeB.process.status;
  const gone = await alice.next(
    (el) =>
      el.name === "presence" && el.attrs.from === `${ROOM}/Bob` &&
      el.attrs.type === "unavailable",
    15_000,
  );
  assert.ok(gone.getChild("x", "http://jabber.org/protocol/muc#user"), serialize(gone));
  groupchat(alice, "g1", "alone");
  await messageWithId(alice, "g1");
});
