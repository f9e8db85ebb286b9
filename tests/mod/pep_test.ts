// XEP-0163 personal eventing over real sockets: nodes created on first publish, notifications to
// the owner's and contacts' resources that asked with `+notify` in their caps, access models,
// last items on coming online, XEP-0223 private storage, OMEMO device lists, limits, and an
// account's nodes going with it.

import assert from "node:assert/strict";
import { purgeAccount } from "../../core/auth/account_lifecycle.ts";
import { hostService } from "../../core/modules.ts";
import type { Element } from "../../core/xml/element.ts";
import { capsHash } from "../../mod/disco.ts";
import type { RosterItem, Subscription } from "../../mod/roster_store.ts";
import { conditionOf, RawClient, roundTrip } from "../helpers/raw_client.ts";
import { startTestServer, type TestServer } from "../helpers/test_server.ts";

const NS_CAPS = "http://jabber.org/protocol/caps";
const NS_INFO = "http://jabber.org/protocol/disco#info";
const NS_ITEMS = "http://jabber.org/protocol/disco#items";
const NS_PUBSUB = "http://jabber.org/protocol/pubsub";
const NS_OWNER = "http://jabber.org/protocol/pubsub#owner";
const NS_EVENT = "http://jabber.org/protocol/pubsub#event";
const NS_TUNE = "http://jabber.org/protocol/tune";
const NS_NICK = "http://jabber.org/protocol/nick";
const OMEMO_DEVICES = "eu.siacs.conversations.axolotl.devicelist";
const CAPS_NODE = "https://lilt.example/test-client";
const USERS = { alice: "pw", bob: "pw", carol: "pw", eve: "pw" };

async function start(options: { hostToml?: string } = {}): Promise<TestServer> {
  return await startTestServer({ users: USERS, hostToml: options.hostToml });
}

function store(t: TestServer) {
  return t.server.storage.map<RosterItem>("localhost", "roster");
}

/** Seeds rosters: [user, contact, subscription, groups] from the user's side. */
function seedRosters(t: TestServer, entries: [string, string, Subscription, string[]?][]): void {
  const store = t.server.storage.map<RosterItem>("localhost", "roster");
  for (const [user, contact, subscription, groups = []] of entries) {
    store.set(user, `${contact}@localhost`, { subscription, groups });
  }
}

/**
 * Logs in and sends available presence; with `notify`, the presence carries caps whose
 * features ask for those nodes (`NODE+notify`), and the server's disco#info query is answered.
 */
async function online(
  t: TestServer,
  user: string,
  resource: string,
  notify?: string[],
): Promise<RawClient> {
  const { client } = await RawClient.login(t.port, user, "pw", resource);
  if (notify === undefined) {
    client.send("<presence/>");
    await roundTrip(client);
    return client;
  }
  const features = [NS_INFO, ...notify.map((node) => `${node}+notify`)];
  const ver = capsHash(IDENTITIES, features);
  client.send(capsPresence(notify));
  await roundTrip(client);
  const query = client.received.find((el) =>
    el.name === "iq" && el.attrs.type === "get" &&
    el.getChild("query", NS_INFO)?.attrs.node === `${CAPS_NODE}#${ver}`
  );
  if (query) {
    const featureXml = features.map((f) => `<feature var='${f}'/>`).join("");
    client.send(
      `<iq type='result' id='${query.attrs.id}' to='${query.attrs.from}'>` +
        `<query xmlns='${NS_INFO}' node='${CAPS_NODE}#${ver}'>` +
        `<identity category='client' type='pc' name='Test'/>${featureXml}</query></iq>`,
    );
    await roundTrip(client);
  }
  return client;
}

const IDENTITIES = [{ category: "client", type: "pc", name: "Test" }];

/** Available presence whose caps ask for these nodes' notifications. */
function capsPresence(notify: string[]): string {
  const ver = capsHash(IDENTITIES, [NS_INFO, ...notify.map((node) => `${node}+notify`)]);
  return `<presence><c xmlns='${NS_CAPS}' hash='sha-1' node='${CAPS_NODE}' ver='${ver}'/></presence>`;
}

let counter = 0;

/** Sends an iq and waits for its answer. */
async function iq(client: RawClient, type: "get" | "set", body: string, to?: string) {
  const id = `iq-${++counter}`;
  const toAttr = to === undefined ? "" : ` to='${to}'`;
  client.send(`<iq type='${type}' id='${id}'${toAttr}>${body}</iq>`);
  return await client.next((el) => el.name === "iq" && el.attrs.id === id);
}

function publishOptions(fields: Record<string, string>): string {
  const xml = Object.entries(fields).map(([name, value]) =>
    `<field var='${name}'><value>${value}</value></field>`
  ).join("");
  return `<publish-options><x xmlns='jabber:x:data' type='submit'>` +
    `<field var='FORM_TYPE' type='hidden'><value>${NS_PUBSUB}#publish-options</value></field>` +
    `${xml}</x></publish-options>`;
}

/** Publishes one item; returns the iq answer. */
function publish(
  client: RawClient,
  node: string,
  payload: string,
  options: { id?: string; fields?: Record<string, string> } = {},
): Promise<Element> {
  const id = options.id === undefined ? "" : ` id='${options.id}'`;
  const opts = options.fields ? publishOptions(options.fields) : "";
  return iq(
    client,
    "set",
    `<pubsub xmlns='${NS_PUBSUB}'><publish node='${node}'><item${id}>${payload}</item></publish>` +
      `${opts}</pubsub>`,
  );
}

const tune = (title: string) => `<tune xmlns='${NS_TUNE}'><title>${title}</title></tune>`;

const isEvent = (node: string) => (el: Element) =>
  el.name === "message" && el.getChild("event", NS_EVENT)?.firstElement()?.attrs.node === node;

function eventsOf(client: RawClient, node: string): Element[] {
  return client.received.filter(isEvent(node));
}

/** Waits for pending deliveries to `clients`, then asserts none got an event of `node`. */
async function assertNoEvent(node: string, ...clients: RawClient[]): Promise<void> {
  for (const client of clients) {
    await roundTrip(client);
    assert.equal(eventsOf(client, node).length, 0, "no notification expected");
  }
}

function itemTitle(message: Element): string | undefined {
  return message.getChild("event", NS_EVENT)?.getChild("items", NS_EVENT)
    ?.getChild("item", NS_EVENT)?.getChild("tune", NS_TUNE)?.getChildText("title", NS_TUNE);
}

Deno.test("the first publish creates the node with PEP defaults; the owner's other resource with +notify is notified", async () => {
  const t = await start();
  const clients: RawClient[] = [];
  try {
    const phone = await online(t, "alice", "phone", [NS_TUNE]);
    const laptop = await online(t, "alice", "laptop", [NS_TUNE]);
    const plain = await online(t, "alice", "plain");
    clients.push(phone, laptop, plain);
    const result = await publish(phone, NS_TUNE, tune("Song"), { id: "current" });
    assert.equal(result.attrs.type, "result");
    assert.equal(
      result.getChild("pubsub", NS_PUBSUB)?.getChild("publish", NS_PUBSUB)?.attrs.node,
      NS_TUNE,
    );
    const event = await laptop.next(isEvent(NS_TUNE));
    assert.equal(event.attrs.from, "alice@localhost");
    assert.equal(event.attrs.to, "alice@localhost/laptop");
    assert.equal(event.attrs.type, "headline");
    assert.equal(itemTitle(event), "Song");
    // The publishing resource asked too; the one without caps did not.
    await phone.next(isEvent(NS_TUNE));
    await assertNoEvent(NS_TUNE, plain);

    // The node took PEP's defaults: presence access, last item on subscription and presence.
    const config = await iq(
      phone,
      "get",
      `<pubsub xmlns='${NS_OWNER}'><configure node='${NS_TUNE}'/></pubsub>`,
    );
    const fields = new Map(
      config.getChild("pubsub", NS_OWNER)!.getChild("configure", NS_OWNER)!
        .getChild("x", "jabber:x:data")!.getChildren("field", "jabber:x:data")
        .map((f) => [f.attrs.var, f.getChildText("value", "jabber:x:data")]),
    );
    assert.equal(fields.get("pubsub#access_model"), "presence");
    assert.equal(fields.get("pubsub#send_last_published_item"), "on_sub_and_presence");
    assert.equal(fields.get("pubsub#max_items"), "1");
    // An iq to the own bare JID is the owner's too, answered from that JID.
    const own = await iq(phone, "get", itemsRequest(NS_TUNE), "alice@localhost");
    assert.equal(own.attrs.type, "result");
    assert.equal(own.attrs.from, "alice@localhost");
    assert.deepEqual(itemIds(own), ["current"]);

    // disco#info of the account shows the PEP identity.
    const info = await iq(phone, "get", `<query xmlns='${NS_INFO}'/>`, "alice@localhost");
    const identities = info.getChild("query", NS_INFO)!.getChildren("identity", NS_INFO);
    assert.ok(identities.some((i) => i.attrs.category === "pubsub" && i.attrs.type === "pep"));
    const features = info.getChild("query", NS_INFO)!.getChildren("feature", NS_INFO)
      .map((f) => f.attrs.var);
    assert.ok(features.includes(`${NS_PUBSUB}#auto-create`));
    assert.ok(features.includes(`${NS_PUBSUB}#filtered-notifications`));

    // The admin shell's pubsub section sees the account's nodes without a pubsub component.
    const listed = await t.server.commands.get("pubsub", "list_nodes")!.run(
      { server: t.server, emit: () => {}, signal: new AbortController().signal },
      ["alice@localhost"],
    );
    assert.deepEqual((listed.data as { node: string }[]).map((n) => n.node), [NS_TUNE]);
  } finally {
    for (const c of clients) c.close();
    await t.stop();
  }
});

Deno.test("contacts sharing presence are notified when their caps ask; others are not", async () => {
  const t = await start();
  const clients: RawClient[] = [];
  try {
    seedRosters(t, [
      ["alice", "bob", "both"],
      ["bob", "alice", "both"],
      ["alice", "carol", "both"],
      ["carol", "alice", "both"],
      // eve sees alice's presence only by directed presence: no subscription.
    ]);
    const bob = await online(t, "bob", "b", [NS_TUNE]);
    const carol = await online(t, "carol", "c", [NS_NICK]);
    const eve = await online(t, "eve", "e", [NS_TUNE]);
    eve.send("<presence to='alice@localhost'/>");
    await roundTrip(eve);
    clients.push(bob, carol, eve);
    const alice = await online(t, "alice", "a", [NS_TUNE]);
    clients.push(alice);
    assert.equal((await publish(alice, NS_TUNE, tune("One"))).attrs.type, "result");
    const event = await bob.next(isEvent(NS_TUNE));
    assert.equal(event.attrs.from, "alice@localhost");
    assert.equal(event.attrs.to, "bob@localhost/b");
    assert.equal(itemTitle(event), "One");
    // XEP-0163 §4.3.1: a contact with a presence subscription learns the publishing resource.
    const address = event.getChild("addresses", "http://jabber.org/protocol/address")
      ?.getChild("address", "http://jabber.org/protocol/address");
    assert.equal(address?.attrs.type, "replyto");
    assert.equal(address?.attrs.jid, "alice@localhost/a");
    // carol shares presence but asked for nicknames only; eve asked but shares no presence.
    await assertNoEvent(NS_TUNE, carol, eve);
    // The owner's own notification carries no replyto.
    const own = await alice.next(isEvent(NS_TUNE));
    assert.equal(own.getChild("addresses", "http://jabber.org/protocol/address"), undefined);

    // Under the open model eve still gets nothing without a subscription (§4 rule 1), but
    // may fetch the items and, once subscribed, is notified.
    const config = `<pubsub xmlns='${NS_OWNER}'><configure node='${NS_TUNE}'>` +
      `<x xmlns='jabber:x:data' type='submit'>` +
      `<field var='FORM_TYPE' type='hidden'><value>${NS_PUBSUB}#node_config</value></field>` +
      `<field var='pubsub#access_model'><value>open</value></field></x></configure></pubsub>`;
    assert.equal((await iq(alice, "set", config)).attrs.type, "result");
    await publish(alice, NS_TUNE, tune("Two"));
    await bob.next((el) => isEvent(NS_TUNE)(el) && itemTitle(el) === "Two");
    await assertNoEvent(NS_TUNE, eve);
    const items = await iq(
      eve,
      "get",
      `<pubsub xmlns='${NS_PUBSUB}'><items node='${NS_TUNE}'/></pubsub>`,
      "alice@localhost",
    );
    assert.equal(items.attrs.type, "result");
    const subscribed = await iq(
      eve,
      "set",
      `<pubsub xmlns='${NS_PUBSUB}'><subscribe node='${NS_TUNE}' jid='eve@localhost/e'/></pubsub>`,
      "alice@localhost",
    );
    assert.equal(subscribed.attrs.type, "result");
    await publish(alice, NS_TUNE, tune("Three"));
    const toEve = await eve.next((el) => isEvent(NS_TUNE)(el) && itemTitle(el) === "Three");
    assert.equal(toEve.attrs.from, "alice@localhost");
    // No presence subscription: no replyto (§4.3.1).
    assert.equal(toEve.getChild("addresses", "http://jabber.org/protocol/address"), undefined);
  } finally {
    for (const c of clients) c.close();
    await t.stop();
  }
});

Deno.test("the presence model refuses items to a stranger; roster groups and the whitelist filter", async () => {
  const t = await start();
  const clients: RawClient[] = [];
  try {
    seedRosters(t, [
      ["alice", "bob", "both", ["Friends"]],
      ["bob", "alice", "both"],
      ["alice", "carol", "both", ["Work"]],
      ["carol", "alice", "both"],
    ]);
    const bob = await online(t, "bob", "b", [NS_TUNE]);
    const carol = await online(t, "carol", "c", [NS_TUNE]);
    const eve = await online(t, "eve", "e");
    clients.push(bob, carol, eve);
    const alice = await online(t, "alice", "a");
    clients.push(alice);
    await publish(alice, NS_TUNE, tune("Hello"));
    await bob.next(isEvent(NS_TUNE));
    await carol.next(isEvent(NS_TUNE));
    const refused = await iq(
      eve,
      "get",
      `<pubsub xmlns='${NS_PUBSUB}'><items node='${NS_TUNE}'/></pubsub>`,
      "alice@localhost",
    );
    assert.equal(refused.attrs.type, "error");
    assert.equal(conditionOf(refused), "not-authorized");
    // The stranger's disco#items does not list the node; bob's does.
    const strangerItems = await iq(eve, "get", `<query xmlns='${NS_ITEMS}'/>`, "alice@localhost");
    assert.ok(
      !strangerItems.getChild("query", NS_ITEMS)!.getChildren("item", NS_ITEMS)
        .some((i) => i.attrs.node === NS_TUNE),
    );
    const bobItems = await iq(bob, "get", `<query xmlns='${NS_ITEMS}'/>`, "alice@localhost");
    assert.ok(
      bobItems.getChild("query", NS_ITEMS)!.getChildren("item", NS_ITEMS)
        .some((i) => i.attrs.node === NS_TUNE && i.attrs.jid === "alice@localhost"),
    );

    // Roster model with the Friends group: bob only.
    const configure = (fields: string) =>
      `<pubsub xmlns='${NS_OWNER}'><configure node='${NS_TUNE}'>` +
      `<x xmlns='jabber:x:data' type='submit'>` +
      `<field var='FORM_TYPE' type='hidden'><value>${NS_PUBSUB}#node_config</value></field>` +
      `${fields}</x></configure></pubsub>`;
    assert.equal(
      (await iq(
        alice,
        "set",
        configure(
          `<field var='pubsub#access_model'><value>roster</value></field>` +
            `<field var='pubsub#roster_groups_allowed'><value>Friends</value></field>`,
        ),
      )).attrs.type,
      "result",
    );
    await publish(alice, NS_TUNE, tune("Friends only"));
    await bob.next((el) => isEvent(NS_TUNE)(el) && itemTitle(el) === "Friends only");
    await roundTrip(carol);
    assert.ok(!eventsOf(carol, NS_TUNE).some((el) => itemTitle(el) === "Friends only"));

    // Whitelist: only the owner (and affiliated members).
    await iq(
      alice,
      "set",
      configure(`<field var='pubsub#access_model'><value>whitelist</value></field>`),
    );
    await publish(alice, NS_TUNE, tune("Secret"));
    await roundTrip(bob);
    assert.ok(!eventsOf(bob, NS_TUNE).some((el) => itemTitle(el) === "Secret"));
    const closed = await iq(
      bob,
      "get",
      `<pubsub xmlns='${NS_PUBSUB}'><items node='${NS_TUNE}'/></pubsub>`,
      "alice@localhost",
    );
    assert.equal(conditionOf(closed), "not-allowed");
  } finally {
    for (const c of clients) c.close();
    await t.stop();
  }
});

Deno.test("only the account publishes to its own service", async () => {
  const t = await start();
  const clients: RawClient[] = [];
  try {
    seedRosters(t, [["alice", "bob", "both"], ["bob", "alice", "both"]]);
    const alice = await online(t, "alice", "a");
    const bob = await online(t, "bob", "b");
    clients.push(alice, bob);
    const forbidden = await iq(
      bob,
      "set",
      `<pubsub xmlns='${NS_PUBSUB}'><publish node='${NS_TUNE}'><item>${
        tune("x")
      }</item></publish></pubsub>`,
      "alice@localhost",
    );
    assert.equal(forbidden.attrs.type, "error");
    assert.equal(conditionOf(forbidden), "forbidden");
  } finally {
    for (const c of clients) c.close();
    await t.stop();
  }
});

const lastItemOf = (node: string, title: string) => (el: Element) =>
  isEvent(node)(el) && itemTitle(el) === title;

Deno.test("a contact's resource coming online gets the last item once per presence session", async () => {
  const t = await start();
  const clients: RawClient[] = [];
  try {
    seedRosters(t, [["alice", "bob", "both"], ["bob", "alice", "both"]]);
    const alice = await online(t, "alice", "a");
    clients.push(alice);
    await publish(alice, NS_TUNE, tune("Old"));
    await publish(alice, NS_TUNE, tune("Latest"));
    // bob's caps hash is new: the last item follows once the server learned his features.
    const bob = await online(t, "bob", "b", [NS_TUNE]);
    clients.push(bob);
    const last = await bob.next(lastItemOf(NS_TUNE, "Latest"));
    assert.equal(last.attrs.from, "alice@localhost");
    assert.equal(last.attrs.to, "bob@localhost/b");
    assert.ok(last.getChild("delay", "urn:xmpp:delay")?.attrs.stamp);
    // A presence update in the same session sends nothing again.
    bob.send("<presence><show>away</show></presence>");
    await roundTrip(bob);
    await roundTrip(alice);
    await roundTrip(bob);
    assert.equal(eventsOf(bob, NS_TUNE).length, 1);
    // Going unavailable and back is a new presence session: the item comes again.
    bob.send("<presence type='unavailable'/>");
    await roundTrip(bob);
    bob.send(capsPresence([NS_TUNE]));
    await bob.next((el) => lastItemOf(NS_TUNE, "Latest")(el) && el !== last);
    // A second resource with the now known caps gets it at once, from its own presence.
    const bob2 = await online(t, "bob", "b2", [NS_TUNE]);
    clients.push(bob2);
    await bob2.next(lastItemOf(NS_TUNE, "Latest"));
    // A resource without +notify gets nothing; neither does a stranger's presence.
    const bob3 = await online(t, "bob", "b3");
    const eve = await online(t, "eve", "e", [NS_TUNE]);
    clients.push(bob3, eve);
    eve.send("<presence to='alice@localhost'/>");
    await assertNoEvent(NS_TUNE, bob3, eve);
  } finally {
    for (const c of clients) c.close();
    await t.stop();
  }
});

Deno.test("the owner's own resource coming online gets the last item of the nodes it asked for", async () => {
  const t = await start();
  const clients: RawClient[] = [];
  try {
    const desk = await online(t, "alice", "desk");
    clients.push(desk);
    await publish(desk, NS_TUNE, tune("Mine"));
    await publish(desk, NS_NICK, `<nick xmlns='${NS_NICK}'>Alice</nick>`);
    const phone = await online(t, "alice", "phone", [NS_TUNE]);
    clients.push(phone);
    const last = await phone.next(lastItemOf(NS_TUNE, "Mine"));
    assert.equal(last.attrs.from, "alice@localhost");
    assert.equal(last.attrs.to, "alice@localhost/phone");
    phone.send("<presence><show>dnd</show></presence>");
    await assertNoEvent(NS_NICK, phone);
    assert.equal(eventsOf(phone, NS_TUNE).length, 1);
    // Unavailable, then available again in the same stream: a new presence session.
    phone.send("<presence type='unavailable'/>");
    await roundTrip(phone);
    phone.send(capsPresence([NS_TUNE]));
    await phone.next((el) => lastItemOf(NS_TUNE, "Mine")(el) && el !== last);
    await roundTrip(phone);
    assert.equal(eventsOf(phone, NS_TUNE).length, 2);
  } finally {
    for (const c of clients) c.close();
    await t.stop();
  }
});

const PRIVATE = {
  "pubsub#persist_items": "true",
  "pubsub#access_model": "whitelist",
};

function itemsRequest(node: string): string {
  return `<pubsub xmlns='${NS_PUBSUB}'><items node='${node}'/></pubsub>`;
}

function itemIds(answer: Element): string[] {
  return answer.getChild("pubsub", NS_PUBSUB)!.getChild("items", NS_PUBSUB)!
    .getChildren("item", NS_PUBSUB).map((item) => item.attrs.id!);
}

Deno.test("XEP-0223 private storage: publish-options create a whitelist node, match later, and a mismatch fails", async () => {
  const t = await start();
  const clients: RawClient[] = [];
  try {
    seedRosters(t, [["alice", "bob", "both"], ["bob", "alice", "both"]]);
    const bookmarks = "urn:xmpp:bookmarks:1";
    const bob = await online(t, "bob", "b", [bookmarks]);
    const alice = await online(t, "alice", "a", [bookmarks]);
    clients.push(bob, alice);
    const conference = (name: string) =>
      `<conference xmlns='${bookmarks}' name='${name}' autojoin='true'/>`;
    const fields = { ...PRIVATE, "pubsub#max_items": "max" };
    for (const room of ["one", "two", "three"]) {
      const answer = await publish(alice, bookmarks, conference(room), {
        id: `${room}@muc.localhost`,
        fields,
      });
      assert.equal(answer.attrs.type, "result", `publishing ${room}`);
    }
    // max_items = max keeps every bookmark.
    const all = await iq(alice, "get", itemsRequest(bookmarks));
    assert.deepEqual(itemIds(all), [
      "one@muc.localhost",
      "two@muc.localhost",
      "three@muc.localhost",
    ]);
    // The owner's resources are told; bob, a contact who asked, is not: the node is private.
    await alice.next(isEvent(bookmarks));
    await assertNoEvent(bookmarks, bob);
    const refused = await iq(bob, "get", itemsRequest(bookmarks), "alice@localhost");
    assert.equal(conditionOf(refused), "not-allowed");
    // Options the node does not have fail the precondition and store nothing.
    const mismatch = await publish(alice, bookmarks, conference("four"), {
      id: "four@muc.localhost",
      fields: { ...PRIVATE, "pubsub#access_model": "open" },
    });
    assert.equal(mismatch.attrs.type, "error");
    assert.equal(conditionOf(mismatch), "conflict");
    assert.ok(
      mismatch.getChild("error")!.getChild(
        "precondition-not-met",
        "http://jabber.org/protocol/pubsub#errors",
      ),
    );
    assert.equal(itemIds(await iq(alice, "get", itemsRequest(bookmarks))).length, 3);
  } finally {
    for (const c of clients) c.close();
    await t.stop();
  }
});

Deno.test("an OMEMO device list under the open model reaches a contact through +notify and any JID may fetch it", async () => {
  const t = await start();
  const clients: RawClient[] = [];
  try {
    seedRosters(t, [["alice", "bob", "both"], ["bob", "alice", "both"]]);
    const bob = await online(t, "bob", "b", [OMEMO_DEVICES]);
    const eve = await online(t, "eve", "e");
    const alice = await online(t, "alice", "a", [OMEMO_DEVICES]);
    clients.push(bob, eve, alice);
    const devices = `<list xmlns='eu.siacs.conversations.axolotl'><device id='12345'/></list>`;
    const answer = await publish(alice, OMEMO_DEVICES, devices, {
      id: "current",
      fields: { "pubsub#access_model": "open" },
    });
    assert.equal(answer.attrs.type, "result");
    const event = await bob.next(isEvent(OMEMO_DEVICES));
    assert.equal(event.attrs.from, "alice@localhost");
    const list = event.getChild("event", NS_EVENT)!.getChild("items", NS_EVENT)!
      .getChild("item", NS_EVENT)!.getChild("list", "eu.siacs.conversations.axolotl")!;
    assert.equal(list.getChild("device", "eu.siacs.conversations.axolotl")?.attrs.id, "12345");
    // eve shares no presence with alice: no notification, but the list is hers to fetch.
    await assertNoEvent(OMEMO_DEVICES, eve);
    const fetched = await iq(eve, "get", itemsRequest(OMEMO_DEVICES), "alice@localhost");
    assert.equal(fetched.attrs.type, "result");
    assert.deepEqual(itemIds(fetched), ["current"]);
    // The same for the OMEMO 2 node name.
    const v2 = "urn:xmpp:omemo:2:devices";
    await publish(alice, v2, `<devices xmlns='urn:xmpp:omemo:2'><device id='1'/></devices>`, {
      id: "current",
      fields: { "pubsub#access_model": "open" },
    });
    assert.deepEqual(itemIds(await iq(eve, "get", itemsRequest(v2), "alice@localhost")), [
      "current",
    ]);
  } finally {
    for (const c of clients) c.close();
    await t.stop();
  }
});

Deno.test("retractions and node deletion are notified to the contacts that asked", async () => {
  const t = await start();
  const clients: RawClient[] = [];
  try {
    seedRosters(t, [["alice", "bob", "both"], ["bob", "alice", "both"]]);
    const bob = await online(t, "bob", "b", [NS_TUNE]);
    const alice = await online(t, "alice", "a");
    clients.push(bob, alice);
    await publish(alice, NS_TUNE, tune("Gone soon"), { id: "t1" });
    await bob.next(lastItemOf(NS_TUNE, "Gone soon"));
    const retracted = await iq(
      alice,
      "set",
      `<pubsub xmlns='${NS_PUBSUB}'><retract node='${NS_TUNE}' notify='true'>` +
        `<item id='t1'/></retract></pubsub>`,
    );
    assert.equal(retracted.attrs.type, "result");
    const retraction = await bob.next((el) =>
      isEvent(NS_TUNE)(el) &&
      el.getChild("event", NS_EVENT)!.getChild("items", NS_EVENT)!.getChild("retract", NS_EVENT)
          ?.attrs.id === "t1"
    );
    assert.equal(retraction.attrs.from, "alice@localhost");
    const deleted = await iq(
      alice,
      "set",
      `<pubsub xmlns='${NS_OWNER}'><delete node='${NS_TUNE}'/></pubsub>`,
    );
    assert.equal(deleted.attrs.type, "result");
    const deletion = await bob.next((el) =>
      el.name === "message" &&
      el.getChild("event", NS_EVENT)?.getChild("delete", NS_EVENT)?.attrs.node === NS_TUNE
    );
    assert.equal(deletion.attrs.from, "alice@localhost");
    const gone = await iq(bob, "get", itemsRequest(NS_TUNE), "alice@localhost");
    assert.equal(conditionOf(gone), "item-not-found");
  } finally {
    for (const c of clients) c.close();
    await t.stop();
  }
});

Deno.test("pep_max_nodes, pep_max_items and pep_max_item_size limit an account", async () => {
  const t = await start({
    hostToml: "pep_max_nodes = 2\npep_max_items = 2\npep_max_item_size = 200",
  });
  const clients: RawClient[] = [];
  try {
    const alice = await online(t, "alice", "a");
    clients.push(alice);
    const keepAll = { "pubsub#max_items": "max" };
    for (const id of ["1", "2", "3"]) {
      const answer = await publish(alice, NS_TUNE, tune(id), { id, fields: keepAll });
      assert.equal(answer.attrs.type, "result");
    }
    assert.deepEqual(itemIds(await iq(alice, "get", itemsRequest(NS_TUNE))), ["2", "3"]);
    const tooBig = await publish(alice, NS_TUNE, tune("x".repeat(300)));
    assert.equal(conditionOf(tooBig), "not-acceptable");
    assert.equal(
      tooBig.getChild("error")!.getChildText("text"),
      "The item is larger than 200 bytes",
    );
    assert.equal(
      (await publish(alice, NS_NICK, `<nick xmlns='${NS_NICK}'>A</nick>`)).attrs.type,
      "result",
    );
    const third = await publish(alice, "urn:example:third", "<x xmlns='urn:example:third'/>");
    assert.equal(third.attrs.type, "error");
    assert.equal(conditionOf(third), "not-allowed");
    // Each account is its own PEP service: the text names the per-account limit.
    assert.equal(third.getChild("error")!.getChildText("text"), "A service holds at most 2 nodes");
  } finally {
    for (const c of clients) c.close();
    await t.stop();
  }
});

Deno.test("deleting an account removes its PEP nodes and items, also when deleted while the module was away", async () => {
  const t = await start();
  const clients: RawClient[] = [];
  try {
    const alice = await online(t, "alice", "a");
    const bob = await online(t, "bob", "b");
    clients.push(alice, bob);
    await publish(alice, NS_TUNE, tune("Bye"));
    await publish(bob, NS_TUNE, tune("Still here"));
    const host = t.server.hosts.get("localhost")!;
    const pep = hostService(host, "pep")!;
    assert.deepEqual(pep.users(), ["alice", "bob"]);
    alice.close();
    assert.equal(purgeAccount(t.server, "localhost", "alice"), true);
    assert.deepEqual(pep.users(), ["bob"]);
    assert.equal(pep.serviceOf("alice").nodes().length, 0);
    // An account purged behind the module's back (offline `lilt user delete`) is swept on load.
    bob.close();
    t.server.storage.deleteUser("localhost", "bob");
    t.server.accounts.purge("localhost", "bob", Date.now() + 60_000);
    // Modules built on PEP (bookmarks, avatars) go with it.
    assert.equal(t.server.modules.unload(host, "pep", { cascade: true }), true);
    await t.server.modules.load(host, "pep");
    assert.deepEqual(hostService(host, "pep")!.users(), []);
  } finally {
    for (const c of clients) c.close();
    await t.stop();
  }
});

Deno.test("a local contact whose presence came before the subscription was mutual is notified", async () => {
  const t = await start();
  const clients: RawClient[] = [];
  try {
    // bob's presence went out while alice's roster did not yet say he is subscribed to her.
    const bob = await online(t, "bob", "b", [NS_TUNE]);
    const alice = await online(t, "alice", "a");
    clients.push(bob, alice);
    seedRosters(t, [["alice", "bob", "both"], ["bob", "alice", "both"]]);
    await publish(alice, NS_TUNE, tune("Now"));
    const event = await bob.next(lastItemOf(NS_TUNE, "Now"));
    assert.equal(event.attrs.to, "bob@localhost/b");
    assert.equal(eventsOf(bob, NS_TUNE).length, 1);
  } finally {
    for (const c of clients) c.close();
    await t.stop();
  }
});

Deno.test("approving a contact's subscription sends it the last items its caps ask for", async () => {
  const t = await start();
  const clients: RawClient[] = [];
  try {
    const store = t.server.storage.map<RosterItem>("localhost", "roster");
    store.set("bob", "alice@localhost", { subscription: "none", groups: [], ask: "subscribe" });
    store.set("alice", "bob@localhost", {
      subscription: "none",
      groups: [],
      pendingIn: true,
      hidden: true,
    });
    const alice = await online(t, "alice", "a");
    const bob = await online(t, "bob", "b", [NS_TUNE]);
    clients.push(alice, bob);
    await publish(alice, NS_TUNE, tune("Welcome"));
    await assertNoEvent(NS_TUNE, bob);
    alice.send("<presence to='bob@localhost' type='subscribed'/>");
    const event = await bob.next(lastItemOf(NS_TUNE, "Welcome"));
    assert.equal(event.attrs.from, "alice@localhost");
    assert.equal(event.attrs.to, "bob@localhost/b");
    await roundTrip(alice);
    await roundTrip(bob);
    assert.equal(eventsOf(bob, NS_TUNE).length, 1);
  } finally {
    for (const c of clients) c.close();
    await t.stop();
  }
});

Deno.test("a contact the owner blocked gets no notifications (XEP-0163 §4.3.3)", async () => {
  const t = await start();
  const clients: RawClient[] = [];
  try {
    seedRosters(t, [
      ["alice", "bob", "both"],
      ["bob", "alice", "both"],
      ["alice", "carol", "both"],
      ["carol", "alice", "both"],
    ]);
    const bob = await online(t, "bob", "b", [NS_TUNE]);
    const carol = await online(t, "carol", "c", [NS_TUNE]);
    const alice = await online(t, "alice", "a");
    clients.push(bob, carol, alice);
    const blocked = await iq(
      alice,
      "set",
      "<block xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></block>",
    );
    assert.equal(blocked.attrs.type, "result");
    await publish(alice, NS_TUNE, tune("Not for bob"));
    await carol.next(lastItemOf(NS_TUNE, "Not for bob"));
    await assertNoEvent(NS_TUNE, bob);
  } finally {
    for (const c of clients) c.close();
    await t.stop();
  }
});

Deno.test("explicit subscriptions that lose access with a roster or subscription change are cancelled (XEP-0163 §7.1)", async () => {
  const t = await start();
  const clients: RawClient[] = [];
  try {
    seedRosters(t, [
      ["alice", "bob", "both", ["Friends"]],
      ["bob", "alice", "both"],
      ["alice", "carol", "both", ["Friends"]],
      ["carol", "alice", "both"],
    ]);
    const alice = await online(t, "alice", "a");
    const bob = await online(t, "bob", "b");
    const carol = await online(t, "carol", "c");
    clients.push(alice, bob, carol);
    await publish(alice, NS_TUNE, tune("x"), {
      fields: { "pubsub#access_model": "roster", "pubsub#roster_groups_allowed": "Friends" },
    });
    for (const [client, jid] of [[bob, "bob@localhost"], [carol, "carol@localhost"]] as const) {
      const answer = await iq(
        client,
        "set",
        `<pubsub xmlns='${NS_PUBSUB}'><subscribe node='${NS_TUNE}' jid='${jid}'/></pubsub>`,
        "alice@localhost",
      );
      assert.equal(answer.attrs.type, "result");
    }
    const subscribers = async () => {
      const answer = await iq(
        alice,
        "get",
        `<pubsub xmlns='${NS_OWNER}'><subscriptions node='${NS_TUNE}'/></pubsub>`,
      );
      return answer.getChild("pubsub", NS_OWNER)!.getChild("subscriptions", NS_OWNER)!
        .getChildren("subscription", NS_OWNER).map((s) => s.attrs.jid).sort();
    };
    assert.deepEqual(await subscribers(), ["bob@localhost", "carol@localhost"]);
    // alice moves bob out of Friends.
    await iq(
      alice,
      "set",
      "<query xmlns='jabber:iq:roster'><item jid='bob@localhost'><group>Work</group></item></query>",
    );
    assert.deepEqual(await subscribers(), ["carol@localhost"]);
    // alice cancels carol's presence subscription: carol is no longer in her roster's
    // presence-sharing contacts, but still in the group, so roster access holds.
    alice.send("<presence to='carol@localhost' type='unsubscribed'/>");
    await roundTrip(alice);
    assert.deepEqual(await subscribers(), ["carol@localhost"]);
    // Under the presence model, that cancellation ends carol's access and subscription.
    const config = `<pubsub xmlns='${NS_OWNER}'><configure node='${NS_TUNE}'>` +
      `<x xmlns='jabber:x:data' type='submit'>` +
      `<field var='FORM_TYPE' type='hidden'><value>${NS_PUBSUB}#node_config</value></field>` +
      `<field var='pubsub#access_model'><value>presence</value></field></x></configure></pubsub>`;
    assert.equal((await iq(alice, "set", config)).attrs.type, "result");
    store(t).set("alice", "carol@localhost", { subscription: "both", groups: ["Friends"] });
    carol.send("<presence to='alice@localhost' type='unsubscribe'/>");
    await roundTrip(carol);
    await roundTrip(alice);
    assert.deepEqual(await subscribers(), []);
  } finally {
    for (const c of clients) c.close();
    await t.stop();
  }
});
