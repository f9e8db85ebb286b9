// XEP-0402 bookmarks with #compat over real sockets: XEP-0048 bookmarks written to private XML
// become one PEP item per room (with notifications), PEP publishes and retractions show in the
// private XML and legacy PEP views, details survive the conversion both ways, malformed
// bookmarks are refused, and the node has the configuration XEP-0402 asks for.

import assert from "node:assert/strict";
import type { Element } from "../../core/xml/element.ts";
import { capsHash } from "../../mod/disco.ts";
import { conditionOf, RawClient, roundTrip } from "../helpers/raw_client.ts";
import { startTestServer, type TestServer } from "../helpers/test_server.ts";

const NS_CAPS = "http://jabber.org/protocol/caps";
const NS_INFO = "http://jabber.org/protocol/disco#info";
const NS_PUBSUB = "http://jabber.org/protocol/pubsub";
const NS_OWNER = "http://jabber.org/protocol/pubsub#owner";
const NS_EVENT = "http://jabber.org/protocol/pubsub#event";
const NS_ERRORS = "http://jabber.org/protocol/pubsub#errors";
const NS_PRIVATE = "jabber:iq:private";
const NS_DATA = "jabber:x:data";
const BOOKMARKS = "urn:xmpp:bookmarks:1";
const LEGACY = "storage:bookmarks";
const CAPS_NODE = "https://lilt.example/test-client";
const IDENTITIES = [{ category: "client", type: "pc", name: "Test" }];

async function start(): Promise<TestServer> {
  return await startTestServer({ users: { alice: "pw" } });
}

let counter = 0;

/** Sends an iq and waits for its answer. */
async function iq(
  client: RawClient,
  type: "get" | "set",
  body: string,
  to?: string,
): Promise<Element> {
  const id = `iq-${++counter}`;
  const toAttr = to === undefined ? "" : ` to='${to}'`;
  client.send(`<iq type='${type}' id='${id}'${toAttr}>${body}</iq>`);
  return await client.next((el) => el.name === "iq" && el.attrs.id === id);
}

/** Logs in with available presence whose caps ask for these nodes' notifications. */
async function online(t: TestServer, resource: string, notify: string[] = []): Promise<RawClient> {
  const { client } = await RawClient.login(t.port, "alice", "pw", resource);
  const features = [NS_INFO, ...notify.map((node) => `${node}+notify`)];
  const ver = capsHash(IDENTITIES, features);
  client.send(
    `<presence><c xmlns='${NS_CAPS}' hash='sha-1' node='${CAPS_NODE}' ver='${ver}'/></presence>`,
  );
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

const setPrivate = (client: RawClient, storage: string) =>
  iq(client, "set", `<query xmlns='${NS_PRIVATE}'>${storage}</query>`);

/** The `<storage/>` a private XML get answers. */
async function getPrivate(client: RawClient): Promise<Element> {
  const answer = await iq(
    client,
    "get",
    `<query xmlns='${NS_PRIVATE}'><storage xmlns='${LEGACY}'/></query>`,
  );
  assert.equal(answer.attrs.type, "result");
  return answer.getChild("query", NS_PRIVATE)!.getChild("storage", LEGACY)!;
}

/** The items of one of the account's nodes: id -> payload. */
async function items(client: RawClient, node: string): Promise<Map<string, Element>> {
  const answer = await iq(
    client,
    "get",
    `<pubsub xmlns='${NS_PUBSUB}'><items node='${node}'/></pubsub>`,
  );
  assert.equal(answer.attrs.type, "result", `items of ${node}`);
  return new Map(
    answer.getChild("pubsub", NS_PUBSUB)!.getChild("items", NS_PUBSUB)!
      .getChildren("item", NS_PUBSUB).map((item) => [item.attrs.id!, item.elements()[0]]),
  );
}

function publishBody(node: string, id: string, payload: string, options = ""): string {
  return `<pubsub xmlns='${NS_PUBSUB}'><publish node='${node}'><item id='${id}'>${payload}` +
    `</item></publish>${options}</pubsub>`;
}

/** XEP-0402's publish-options (§3.2 of the XEP's examples). */
const PUBLISH_OPTIONS = `<publish-options><x xmlns='${NS_DATA}' type='submit'>` +
  `<field var='FORM_TYPE' type='hidden'><value>${NS_PUBSUB}#publish-options</value></field>` +
  `<field var='pubsub#persist_items'><value>true</value></field>` +
  `<field var='pubsub#max_items'><value>max</value></field>` +
  `<field var='pubsub#send_last_published_item'><value>never</value></field>` +
  `<field var='pubsub#access_model'><value>whitelist</value></field></x></publish-options>`;

const isEvent = (node: string) => (el: Element) =>
  el.name === "message" && el.getChild("event", NS_EVENT)?.firstElement()?.attrs.node === node;

function eventItems(message: Element): Element[] {
  return message.getChild("event", NS_EVENT)!.getChild("items", NS_EVENT)!.elements();
}

const TEA = "<conference jid='tea@muc.localhost' autojoin='true' name='Tea &amp; cake'>" +
  "<nick>Alice</nick><password>secret</password><pinned xmlns='urn:example:pin'/></conference>";
const BOARD = "<conference jid='board@muc.localhost' name='Board'/>";
const URL = "<url name='Home' url='https://example.org/'/>";

Deno.test("a private XML set becomes one XEP-0402 item per room, notified to a +notify resource", async () => {
  const t = await start();
  const clients: RawClient[] = [];
  try {
    const legacy = await online(t, "legacy");
    const modern = await online(t, "modern", [BOOKMARKS]);
    clients.push(legacy, modern);
    const stored = await setPrivate(
      legacy,
      `<storage xmlns='${LEGACY}'>${TEA}${BOARD}${URL}</storage>`,
    );
    assert.equal(stored.attrs.type, "result");

    // The other resource asked for the node's notifications: one per room.
    const first = await modern.next(isEvent(BOOKMARKS));
    const second = await modern.next(isEvent(BOOKMARKS));
    const notified = [...eventItems(first), ...eventItems(second)].map((item) => item.attrs.id);
    assert.deepEqual(notified.sort(), ["board@muc.localhost", "tea@muc.localhost"]);
    // The legacy resource asked for nothing and gets nothing.
    await roundTrip(legacy);
    assert.equal(legacy.received.filter(isEvent(BOOKMARKS)).length, 0);

    // The items: id = room JID, autojoin, name, nick, password and the extension preserved.
    const found = await items(modern, BOOKMARKS);
    assert.deepEqual([...found.keys()].sort(), ["board@muc.localhost", "tea@muc.localhost"]);
    const tea = found.get("tea@muc.localhost")!;
    assert.ok(tea.is("conference", BOOKMARKS));
    assert.equal(tea.attrs.name, "Tea & cake");
    assert.equal(tea.attrs.autojoin, "true");
    assert.equal(tea.getChildText("nick", BOOKMARKS), "Alice");
    assert.equal(tea.getChildText("password", BOOKMARKS), "secret");
    assert.ok(tea.getChild("extensions", BOOKMARKS)?.getChild("pinned", "urn:example:pin"));
    assert.equal(tea.attrs.jid, undefined, "the room JID is the item id only");
    const board = found.get("board@muc.localhost")!;
    assert.equal(board.attrs.autojoin, undefined);
    assert.equal(board.getChild("nick", BOOKMARKS), undefined);

    // The node has the configuration XEP-0402 asks for.
    const config = await iq(
      modern,
      "get",
      `<pubsub xmlns='${NS_OWNER}'><configure node='${BOOKMARKS}'/></pubsub>`,
    );
    const fields = new Map(
      config.getChild("pubsub", NS_OWNER)!.getChild("configure", NS_OWNER)!
        .getChild("x", NS_DATA)!.getChildren("field", NS_DATA)
        .map((f) => [f.attrs.var, f.getChildText("value", NS_DATA)]),
    );
    assert.equal(fields.get("pubsub#persist_items"), "1");
    assert.equal(fields.get("pubsub#max_items"), "max");
    assert.equal(fields.get("pubsub#send_last_published_item"), "never");
    assert.equal(fields.get("pubsub#access_model"), "whitelist");

    // Reading private XML back gives the same bookmarks, URL bookmark included.
    const storage = await getPrivate(legacy);
    const conferences = storage.getChildren("conference", LEGACY);
    assert.deepEqual(conferences.map((c) => c.attrs.jid).sort(), [
      "board@muc.localhost",
      "tea@muc.localhost",
    ]);
    const teaBack = conferences.find((c) => c.attrs.jid === "tea@muc.localhost")!;
    assert.equal(teaBack.attrs.name, "Tea & cake");
    assert.equal(teaBack.attrs.autojoin, "true");
    assert.equal(teaBack.getChildText("nick", LEGACY), "Alice");
    assert.equal(teaBack.getChildText("password", LEGACY), "secret");
    assert.ok(teaBack.getChild("pinned", "urn:example:pin"));
    assert.equal(storage.getChild("url", LEGACY)?.attrs.url, "https://example.org/");

    // A new list without the board: it is retracted (with a notification); tea is unchanged
    // and not notified again.
    const before = modern.received.filter(isEvent(BOOKMARKS)).length;
    assert.equal(
      (await setPrivate(legacy, `<storage xmlns='${LEGACY}'>${TEA}</storage>`)).attrs.type,
      "result",
    );
    const retraction = await modern.next(isEvent(BOOKMARKS));
    const retracted = eventItems(retraction);
    assert.equal(retracted[0].name, "retract");
    assert.equal(retracted[0].attrs.id, "board@muc.localhost");
    await roundTrip(modern);
    assert.equal(modern.received.filter(isEvent(BOOKMARKS)).length, before + 1);
    assert.deepEqual([...(await items(modern, BOOKMARKS)).keys()], ["tea@muc.localhost"]);
    const after = await getPrivate(legacy);
    assert.equal(after.getChildren("conference", LEGACY).length, 1);
    assert.equal(after.getChild("url", LEGACY), undefined, "the new list has no URL bookmark");
  } finally {
    for (const client of clients) await client.close();
    await t.stop();
  }
});

Deno.test("XEP-0402 publishes and retractions show in private XML and the legacy PEP node", async () => {
  const t = await start();
  const clients: RawClient[] = [];
  try {
    const modern = await online(t, "modern");
    const legacyPep = await online(t, "legacypep", [LEGACY]);
    clients.push(modern, legacyPep);
    const conference = `<conference xmlns='${BOOKMARKS}' name='Orchard' autojoin='1'>` +
      `<nick>JC</nick><password>pw</password>` +
      `<extensions><state xmlns='urn:example:state'>x</state></extensions></conference>`;
    const published = await iq(
      modern,
      "set",
      publishBody(BOOKMARKS, "orchard@muc.localhost", conference, PUBLISH_OPTIONS),
    );
    assert.equal(published.attrs.type, "result");

    const storage = await getPrivate(modern);
    const [orchard] = storage.getChildren("conference", LEGACY);
    assert.equal(orchard.attrs.jid, "orchard@muc.localhost");
    assert.equal(orchard.attrs.name, "Orchard");
    assert.equal(orchard.attrs.autojoin, "1");
    assert.equal(orchard.getChildText("nick", LEGACY), "JC");
    assert.equal(orchard.getChildText("password", LEGACY), "pw");
    assert.equal(orchard.getChildText("state", "urn:example:state"), "x");

    // The legacy PEP node (XEP-0048 over XEP-0223) got the whole list, with a notification.
    const event = await legacyPep.next(isEvent(LEGACY));
    const [item] = eventItems(event);
    assert.equal(item.attrs.id, "current");
    assert.equal(
      item.getChild("storage", LEGACY)?.getChild("conference", LEGACY)?.attrs.jid,
      "orchard@muc.localhost",
    );

    // A retraction empties both views.
    const retracted = await iq(
      modern,
      "set",
      `<pubsub xmlns='${NS_PUBSUB}'><retract node='${BOOKMARKS}' notify='true'>` +
        `<item id='orchard@muc.localhost'/></retract></pubsub>`,
    );
    assert.equal(retracted.attrs.type, "result");
    assert.equal((await getPrivate(modern)).getChildren("conference", LEGACY).length, 0);
    const legacyItem = (await items(modern, LEGACY)).get("current")!;
    assert.equal(legacyItem.getChildren("conference", LEGACY).length, 0);
  } finally {
    for (const client of clients) await client.close();
    await t.stop();
  }
});

Deno.test("a legacy PEP publish of storage:bookmarks updates the XEP-0402 node", async () => {
  const t = await start();
  const clients: RawClient[] = [];
  try {
    const client = await online(t, "c");
    clients.push(client);
    const answer = await iq(
      client,
      "set",
      publishBody(LEGACY, "current", `<storage xmlns='${LEGACY}'>${TEA}${URL}</storage>`),
    );
    assert.equal(answer.attrs.type, "result");
    const found = await items(client, BOOKMARKS);
    assert.deepEqual([...found.keys()], ["tea@muc.localhost"]);
    assert.equal(found.get("tea@muc.localhost")!.getChildText("nick", BOOKMARKS), "Alice");
    // Private XML sees it too, URL bookmark included.
    const storage = await getPrivate(client);
    assert.equal(storage.getChildren("conference", LEGACY).length, 1);
    assert.equal(storage.getChild("url", LEGACY)?.attrs.name, "Home");
  } finally {
    for (const client of clients) await client.close();
    await t.stop();
  }
});

Deno.test("malformed bookmarks are refused with bad-request and change nothing", async () => {
  const t = await start();
  const clients: RawClient[] = [];
  try {
    const client = await online(t, "c");
    clients.push(client);
    assert.equal(
      (await setPrivate(client, `<storage xmlns='${LEGACY}'>${TEA}</storage>`)).attrs.type,
      "result",
    );

    // Private XML: a conference without a room JID, one with a full JID, a bad autojoin.
    for (
      const bad of [
        "<conference name='No JID'/>",
        "<conference jid='room@muc.localhost/nick'/>",
        "<conference jid='room@muc.localhost' autojoin='yes'/>",
      ]
    ) {
      const answer = await setPrivate(client, `<storage xmlns='${LEGACY}'>${bad}</storage>`);
      assert.equal(answer.attrs.type, "error", bad);
      assert.equal(conditionOf(answer), "bad-request");
      assert.ok(
        answer.getChild("error")?.getChildText("text", "urn:ietf:params:xml:ns:xmpp-stanzas"),
      );
    }
    assert.deepEqual([...(await items(client, BOOKMARKS)).keys()], ["tea@muc.localhost"]);
    assert.equal((await getPrivate(client)).getChildren("conference", LEGACY).length, 1);

    // PEP: an item id that is not a JID, a payload that is not a conference.
    for (
      const [id, payload] of [
        ["not@a@jid", `<conference xmlns='${BOOKMARKS}'/>`],
        ["room@muc.localhost", `<note xmlns='urn:example:note'/>`],
        ["room@muc.localhost/nick", `<conference xmlns='${BOOKMARKS}'/>`],
      ]
    ) {
      const answer = await iq(client, "set", publishBody(BOOKMARKS, id, payload));
      assert.equal(answer.attrs.type, "error", `${id} ${payload}`);
      assert.equal(conditionOf(answer), "bad-request");
      assert.ok(answer.getChild("error")?.getChild("invalid-payload", NS_ERRORS));
    }
    const legacy = await iq(
      client,
      "set",
      publishBody(LEGACY, "current", `<storage xmlns='${LEGACY}'><conference/></storage>`),
    );
    assert.equal(conditionOf(legacy), "bad-request");
    assert.deepEqual([...(await items(client, BOOKMARKS)).keys()], ["tea@muc.localhost"]);
  } finally {
    for (const client of clients) await client.close();
    await t.stop();
  }
});

Deno.test("the account advertises #compat, #compat-pep and XEP-0411 conversion", async () => {
  const t = await start();
  try {
    const client = await online(t, "c");
    const answer = await iq(client, "get", `<query xmlns='${NS_INFO}'/>`, "alice@localhost");
    const features = answer.getChild("query", NS_INFO)!.getChildren("feature", NS_INFO)
      .map((f) => f.attrs.var);
    assert.ok(features.includes(`${BOOKMARKS}#compat`));
    assert.ok(features.includes(`${BOOKMARKS}#compat-pep`));
    assert.ok(features.includes("urn:xmpp:bookmarks-conversion:0"));
    await client.close();
  } finally {
    await t.stop();
  }
});

Deno.test("a publish without publish-options still gets a node configured as XEP-0402 asks", async () => {
  const t = await start();
  const clients: RawClient[] = [];
  try {
    const client = await online(t, "c");
    clients.push(client);
    for (const room of ["one", "two"]) {
      const answer = await iq(
        client,
        "set",
        publishBody(BOOKMARKS, `${room}@muc.localhost`, `<conference xmlns='${BOOKMARKS}'/>`),
      );
      assert.equal(answer.attrs.type, "result");
    }
    // Both kept (PEP's default would keep one), private to the account.
    assert.deepEqual([...(await items(client, BOOKMARKS)).keys()], [
      "one@muc.localhost",
      "two@muc.localhost",
    ]);
    const config = await iq(
      client,
      "get",
      `<pubsub xmlns='${NS_OWNER}'><configure node='${BOOKMARKS}'/></pubsub>`,
    );
    const access = config.getChild("pubsub", NS_OWNER)!.getChild("configure", NS_OWNER)!
      .getChild("x", NS_DATA)!.getChildren("field", NS_DATA)
      .find((f) => f.attrs.var === "pubsub#access_model")?.getChildText("value", NS_DATA);
    assert.equal(access, "whitelist");
  } finally {
    for (const client of clients) await client.close();
    await t.stop();
  }
});

Deno.test("bookmarks stored in private XML before the module ran move to PEP on the first read", async () => {
  const t = await start();
  const clients: RawClient[] = [];
  try {
    const host = t.server.hosts.get("localhost")!;
    assert.equal(t.server.modules.unload(host, "bookmarks"), true);
    const client = await online(t, "c");
    clients.push(client);
    assert.equal(
      (await setPrivate(client, `<storage xmlns='${LEGACY}'>${TEA}${URL}</storage>`)).attrs.type,
      "result",
    );
    await t.server.modules.load(host, "bookmarks");
    const storage = await getPrivate(client);
    assert.deepEqual(storage.getChildren("conference", LEGACY).map((c) => c.attrs.jid), [
      "tea@muc.localhost",
    ]);
    assert.equal(storage.getChild("url", LEGACY)?.attrs.name, "Home");
    const found = await items(client, BOOKMARKS);
    assert.equal(found.get("tea@muc.localhost")?.getChildText("nick", BOOKMARKS), "Alice");
  } finally {
    for (const client of clients) await client.close();
    await t.stop();
  }
});
