// XEP-0060 on the `pubsub.localhost` component, over real sockets: node lifecycle, items,
// subscriptions and their notifications, configuration, affiliations, access models,
// publish-options and limits, each asserted on what a client sees on the wire.

import assert from "node:assert/strict";
import type { Element } from "../../core/xml/element.ts";
import { serialize } from "../../core/xml/serializer.ts";
import { conditionOf, RawClient, roundTrip } from "../helpers/raw_client.ts";
import { startTestServer, type TestServer } from "../helpers/test_server.ts";

const PS = "http://jabber.org/protocol/pubsub";
const OWNER = "http://jabber.org/protocol/pubsub#owner";
const EVENT = "http://jabber.org/protocol/pubsub#event";
const ERRORS = "http://jabber.org/protocol/pubsub#errors";
const SERVICE = "pubsub.localhost";

function componentToml(extra = ""): string {
  return `[[component]]\ndomain = "${SERVICE}"\nmodules = ["disco", "pubsub"]\n${extra}`;
}

interface World {
  t: TestServer;
  alice: RawClient;
  bob: RawClient;
  carol: RawClient;
}

async function world(extra = ""): Promise<World> {
  const t = await startTestServer({
    users: { alice: "pw", bob: "pw", carol: "pw" },
    extraToml: componentToml(extra),
  });
  const alice = (await RawClient.login(t.port, "alice", "pw", "a")).client;
  const bob = (await RawClient.login(t.port, "bob", "pw", "b")).client;
  const carol = (await RawClient.login(t.port, "carol", "pw", "c")).client;
  // Available resources: a headline to a bare JID goes to those (RFC 6121 §8.5.2.1.1).
  for (const client of [alice, bob, carol]) {
    client.send("<presence/>");
    await roundTrip(client);
  }
  return { t, alice, bob, carol };
}

async function end(w: World): Promise<void> {
  for (const c of [w.alice, w.bob, w.carol]) c.close();
  await w.t.stop();
}

let counter = 0;

/** Sends an iq to the service and returns the answer (result or error). */
async function iq(
  client: RawClient,
  type: "get" | "set",
  payload: string,
  to = SERVICE,
): Promise<Element> {
  const id = `q${++counter}`;
  client.send(`<iq type='${type}' id='${id}' to='${to}'>${payload}</iq>`);
  return await client.next((el) => el.name === "iq" && el.attrs.id === id);
}

async function ok(client: RawClient, type: "get" | "set", payload: string): Promise<Element> {
  const answer = await iq(client, type, payload);
  if (answer.attrs.type !== "result") assert.fail(`expected a result, got ${serialize(answer)}`);
  return answer;
}

/** Asserts an error answer: its condition and pubsub-specific child (or none). */
function assertError(answer: Element, condition: string, pubsubChild?: string): void {
  if (answer.attrs.type !== "error") assert.fail(`expected an error, got ${serialize(answer)}`);
  assert.equal(conditionOf(answer), condition);
  const error = answer.getChild("error")!;
  const specific = error.elements().find((el) => el.ns === ERRORS);
  assert.equal(specific?.name, pubsubChild);
}

function pubsub(inner: string): string {
  return `<pubsub xmlns='${PS}'>${inner}</pubsub>`;
}

function owner(inner: string): string {
  return `<pubsub xmlns='${OWNER}'>${inner}</pubsub>`;
}

function configForm(fields: Record<string, string | string[]>, formType = "node_config"): string {
  let xml = `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>` +
    `<value>${PS}#${formType}</value></field>`;
  for (const [name, value] of Object.entries(fields)) {
    const values = Array.isArray(value) ? value : [value];
    xml += `<field var='${name}'>${values.map((v) => `<value>${v}</value>`).join("")}</field>`;
  }
  return xml + "</x>";
}

function publishXml(node: string, id: string | undefined, body: string): string {
  const idAttr = id === undefined ? "" : ` id='${id}'`;
  return pubsub(
    `<publish node='${node}'><item${idAttr}><entry xmlns='urn:example:news'>${body}</entry></item></publish>`,
  );
}

/** The next event notification for `node` that a client receives. */
function nextEvent(client: RawClient, node: string, name = "items"): Promise<Element> {
  return client.next((el) =>
    el.name === "message" &&
    el.getChild("event", EVENT)?.getChild(name, EVENT)?.attrs.node === node
  );
}

function eventOf(message: Element, name = "items"): Element {
  return message.getChild("event", EVENT)!.getChild(name, EVENT)!;
}

/** The event's child, or undefined for any other stanza (for `next` predicates). */
function eventChild(el: Element, name = "items"): Element | undefined {
  return el.getChild("event", EVENT)?.getChild(name, EVENT);
}

function itemIds(answer: Element): string[] {
  return answer.getChild("pubsub", PS)!.getChild("items")!.getChildren("item")
    .map((item) => item.attrs.id);
}

Deno.test("pubsub: disco shows the service, its features and its nodes", async () => {
  const w = await world();
  try {
    const info = await iq(w.alice, "get", "<query xmlns='http://jabber.org/protocol/disco#info'/>");
    const query = info.getChild("query")!;
    assert.ok(
      query.getChildren("identity").some((i) =>
        i.attrs.category === "pubsub" && i.attrs.type === "service"
      ),
    );
    const features = query.getChildren("feature").map((f) => f.attrs.var);
    for (const f of ["", "#publish", "#create-nodes", "#publish-options", "#access-whitelist"]) {
      assert.ok(features.includes(`${PS}${f}`), `feature ${PS}${f}`);
    }
    assert.ok(!features.includes(`${PS}#auto-create`));
    assert.ok(features.includes(`${PS}#subscription-options`));

    await ok(w.alice, "set", pubsub("<create node='news'/>"));
    await ok(w.alice, "set", publishXml("news", "first", "hello"));
    const items = await iq(
      w.alice,
      "get",
      "<query xmlns='http://jabber.org/protocol/disco#items'/>",
    );
    assert.deepEqual(
      items.getChild("query")!.getChildren("item").map((i) => [i.attrs.jid, i.attrs.node]),
      [[SERVICE, "news"]],
    );
    const nodeItems = await iq(
      w.alice,
      "get",
      "<query xmlns='http://jabber.org/protocol/disco#items' node='news'/>",
    );
    assert.deepEqual(nodeItems.getChild("query")!.getChildren("item").map((i) => i.attrs.name), [
      "first",
    ]);
    const nodeInfo = await iq(
      w.alice,
      "get",
      "<query xmlns='http://jabber.org/protocol/disco#info' node='news'/>",
    );
    assert.equal(nodeInfo.getChild("query")!.getChild("identity")!.attrs.type, "leaf");
    const meta = nodeInfo.getChild("query")!.getChild("x", "jabber:x:data")!;
    assert.equal(fieldValue(meta, "FORM_TYPE"), `${PS}#meta-data`);
    assert.equal(fieldValue(meta, "pubsub#owner"), "alice@localhost");
    assert.equal(fieldValue(meta, "pubsub#access_model"), "open");
    const missing = await iq(
      w.alice,
      "get",
      "<query xmlns='http://jabber.org/protocol/disco#info' node='nope'/>",
    );
    assertError(missing, "item-not-found");
  } finally {
    await end(w);
  }
});

Deno.test("pubsub: create named and instant nodes; conflicts and who may create", async () => {
  const w = await world();
  try {
    const named = await ok(w.alice, "set", pubsub("<create node='blog'/>"));
    assert.equal(named.getChild("pubsub"), undefined);
    const instant = await ok(w.alice, "set", pubsub("<create/>"));
    const generated = instant.getChild("pubsub", PS)!.getChild("create")!.attrs.node;
    assert.ok(generated && generated.length > 0);
    assertError(await iq(w.bob, "set", pubsub("<create node='blog'/>")), "conflict");
    // Create and configure in one request (§8.1.3).
    await ok(
      w.alice,
      "set",
      pubsub(
        `<create node='configured'/><configure>${
          configForm({ "pubsub#title": "Configured", "pubsub#max_items": "3" })
        }</configure>`,
      ),
    );
    const form = await ok(w.alice, "get", owner("<configure node='configured'/>"));
    const fields = form.getChild("pubsub", OWNER)!.getChild("configure")!.getChild("x")!;
    const value = (name: string) =>
      fields.getChildren("field").find((f) => f.attrs.var === name)?.getChildText("value");
    assert.equal(value("pubsub#title"), "Configured");
    assert.equal(value("pubsub#max_items"), "3");
    assertError(
      await iq(
        w.alice,
        "set",
        pubsub(
          `<create node='bad'/><configure>${
            configForm({ "pubsub#max_items": "lots" })
          }</configure>`,
        ),
      ),
      "not-acceptable",
    );
  } finally {
    await end(w);
  }
});

Deno.test("pubsub: only local accounts create nodes by default; 'admins' limits it further", async () => {
  const t = await startTestServer({
    users: { alice: "pw", bob: "pw" },
    hostToml: 'admins = ["alice@localhost"]',
    extraToml: componentToml('pubsub_create = "admins"\n'),
  });
  try {
    const alice = (await RawClient.login(t.port, "alice", "pw", "a")).client;
    const bob = (await RawClient.login(t.port, "bob", "pw", "b")).client;
    assertError(await iq(bob, "set", pubsub("<create node='x'/>")), "forbidden");
    await ok(alice, "set", pubsub("<create node='x'/>"));
    alice.close();
    bob.close();
  } finally {
    await t.stop();
  }
});

Deno.test("pubsub: publish, replace, and retrieve all, by id and the most recent", async () => {
  const w = await world();
  try {
    await ok(w.alice, "set", pubsub("<create node='news'/>"));
    const generated = await ok(w.alice, "set", publishXml("news", undefined, "one"));
    const genId = generated.getChild("pubsub", PS)!.getChild("publish")!.getChild("item")!
      .attrs.id;
    assert.ok(genId);
    await ok(w.alice, "set", publishXml("news", "two", "two"));
    await ok(w.alice, "set", publishXml("news", "three", "three"));
    // Publishing an existing id replaces it and makes it the newest.
    await ok(w.alice, "set", publishXml("news", "two", "two again"));
    const all = await ok(w.bob, "get", pubsub("<items node='news'/>"));
    assert.deepEqual(itemIds(all), [genId, "three", "two"]);
    const two = all.getChild("pubsub", PS)!.getChild("items")!.getChildren("item")[2];
    assert.equal(two.getChild("entry", "urn:example:news")!.text(), "two again");
    assert.equal(two.attrs.publisher, "alice@localhost");
    const recent = await ok(w.bob, "get", pubsub("<items node='news' max_items='2'/>"));
    assert.deepEqual(itemIds(recent), ["three", "two"]);
    const byId = await ok(w.bob, "get", pubsub(`<items node='news'><item id='${genId}'/></items>`));
    assert.deepEqual(itemIds(byId), [genId]);
    assertError(await iq(w.bob, "get", pubsub("<items node='nope'/>")), "item-not-found");
    assertError(await iq(w.bob, "get", pubsub("<items/>")), "bad-request", "nodeid-required");
    assertError(
      await iq(w.bob, "get", pubsub("<items node='news' max_items='-3'/>")),
      "bad-request",
    );
  } finally {
    await end(w);
  }
});

Deno.test("pubsub: publish errors follow XEP-0060 §7.1.3", async () => {
  const w = await world("pubsub_max_item_size = 200\n");
  try {
    await ok(w.alice, "set", pubsub("<create node='news'/>"));
    assertError(await iq(w.bob, "set", publishXml("news", "x", "hi")), "forbidden");
    assertError(await iq(w.alice, "set", publishXml("nope", "x", "hi")), "item-not-found");
    assertError(
      await iq(w.alice, "set", pubsub("<publish><item><a xmlns='urn:x'/></item></publish>")),
      "bad-request",
      "nodeid-required",
    );
    assertError(
      await iq(
        w.alice,
        "set",
        pubsub("<publish node='news'><item><a xmlns='urn:x'/><b xmlns='urn:x'/></item></publish>"),
      ),
      "bad-request",
      "invalid-payload",
    );
    assertError(
      await iq(w.alice, "set", pubsub("<publish node='news'><item id='e'/></publish>")),
      "bad-request",
      "payload-required",
    );
    assertError(
      await iq(w.alice, "set", pubsub("<publish node='news'/>")),
      "bad-request",
      "item-required",
    );
    assertError(
      await iq(w.alice, "set", publishXml("news", "big", "x".repeat(300))),
      "not-acceptable",
      "payload-too-big",
    );
    // Nothing of the refused items was stored.
    assert.deepEqual(itemIds(await ok(w.alice, "get", pubsub("<items node='news'/>"))), []);
  } finally {
    await end(w);
  }
});

Deno.test("pubsub: subscribers get publish, retract, purge and delete notifications", async () => {
  const w = await world();
  try {
    await ok(w.alice, "set", pubsub("<create node='news'/>"));
    const sub = await ok(
      w.bob,
      "set",
      pubsub("<subscribe node='news' jid='bob@localhost'/>"),
    );
    const subscription = sub.getChild("pubsub", PS)!.getChild("subscription")!;
    assert.equal(subscription.attrs.subscription, "subscribed");
    assert.equal(subscription.attrs.jid, "bob@localhost");
    assert.ok(subscription.attrs.subid);
    // A full JID subscription is its own.
    await ok(w.carol, "set", pubsub("<subscribe node='news' jid='carol@localhost/c'/>"));

    await ok(w.alice, "set", publishXml("news", "n1", "breaking"));
    const published = await nextEvent(w.bob, "news");
    assert.equal(published.attrs.from, SERVICE);
    assert.equal(published.attrs.type, "headline");
    const item = eventOf(published).getChild("item", EVENT)!;
    assert.equal(item.attrs.id, "n1");
    assert.equal(item.getChild("entry", "urn:example:news")!.text(), "breaking");
    assert.equal((await nextEvent(w.carol, "news")).attrs.to, "carol@localhost/c");

    await ok(
      w.alice,
      "set",
      pubsub("<retract node='news' notify='true'><item id='n1'/></retract>"),
    );
    const retracted = await w.bob.next((el) =>
      eventChild(el)?.getChild("retract", EVENT) !== undefined
    );
    assert.equal(eventOf(retracted).getChild("retract")!.attrs.id, "n1");
    assertError(
      await iq(w.alice, "set", pubsub("<retract node='news'><item id='n1'/></retract>")),
      "item-not-found",
    );
    assertError(
      await iq(w.bob, "set", pubsub("<retract node='news'><item id='x'/></retract>")),
      "forbidden",
    );

    // Unsubscribed: no more notifications for carol.
    await ok(w.carol, "set", pubsub("<unsubscribe node='news' jid='carol@localhost/c'/>"));
    assertError(
      await iq(w.carol, "set", pubsub("<unsubscribe node='news' jid='carol@localhost/c'/>")),
      "unexpected-request",
      "not-subscribed",
    );
    await ok(w.alice, "set", publishXml("news", "n2", "more"));
    await nextEvent(w.bob, "news");
    assertError(await iq(w.bob, "set", owner("<purge node='news'/>")), "forbidden");
    await ok(w.alice, "set", owner("<purge node='news'/>"));
    await nextEvent(w.bob, "news", "purge");
    assert.deepEqual(itemIds(await ok(w.bob, "get", pubsub("<items node='news'/>"))), []);

    assertError(await iq(w.bob, "set", owner("<delete node='news'/>")), "forbidden");
    await ok(
      w.alice,
      "set",
      owner("<delete node='news'><redirect uri='xmpp:pubsub.localhost?;node=other'/></delete>"),
    );
    const deleted = await nextEvent(w.bob, "news", "delete");
    assert.equal(
      eventOf(deleted, "delete").getChild("redirect")!.attrs.uri,
      "xmpp:pubsub.localhost?;node=other",
    );
    assertError(await iq(w.bob, "get", pubsub("<items node='news'/>")), "item-not-found");
    // Carol, unsubscribed, saw none of the later events.
    await roundTrip(w.carol);
    assert.ok(
      !w.carol.received.some((el) =>
        el.getChild("event", EVENT)?.getChild("delete") !== undefined ||
        el.getChild("event", EVENT)?.getChild("purge") !== undefined ||
        el.getChild("event", EVENT)?.getChild("items")?.getChild("item")?.attrs.id === "n2"
      ),
    );
  } finally {
    await end(w);
  }
});

Deno.test("pubsub: subscribe errors, own subscriptions and affiliations, subscription options", async () => {
  const w = await world();
  try {
    await ok(w.alice, "set", pubsub("<create node='news'/>"));
    assertError(
      await iq(w.bob, "set", pubsub("<subscribe node='news' jid='carol@localhost'/>")),
      "bad-request",
      "invalid-jid",
    );
    assertError(
      await iq(w.bob, "set", pubsub("<subscribe node='nope' jid='bob@localhost'/>")),
      "item-not-found",
    );
    assertError(
      await iq(w.bob, "set", pubsub("<subscribe jid='bob@localhost'/>")),
      "bad-request",
      "nodeid-required",
    );
    await ok(w.bob, "set", pubsub("<subscribe node='news' jid='bob@localhost/b'/>"));
    const mine = await ok(w.bob, "get", pubsub("<subscriptions/>"));
    assert.deepEqual(
      mine.getChild("pubsub", PS)!.getChild("subscriptions")!.getChildren("subscription")
        .map((s) => [s.attrs.node, s.attrs.jid, s.attrs.subscription]),
      [["news", "bob@localhost/b", "subscribed"]],
    );
    const affs = await ok(w.alice, "get", pubsub("<affiliations/>"));
    assert.deepEqual(
      affs.getChild("pubsub", PS)!.getChild("affiliations")!.getChildren("affiliation")
        .map((a) => [a.attrs.node, a.attrs.affiliation]),
      [["news", "owner"]],
    );
    const options = await iq(
      w.bob,
      "get",
      pubsub("<options node='news' jid='bob@localhost/b'/>"),
    );
    // Subscription options are covered in pubsub_options_test.ts.
    assert.equal(options.attrs.type, "result");
    assertError(
      await iq(
        w.bob,
        "set",
        pubsub("<unsubscribe node='news' jid='bob@localhost/b' subid='wrong'/>"),
      ),
      "not-acceptable",
      "invalid-subid",
    );
    assertError(
      await iq(w.carol, "set", pubsub("<unsubscribe node='news' jid='bob@localhost/b'/>")),
      "forbidden",
    );
  } finally {
    await end(w);
  }
});

Deno.test("pubsub: the last published item reaches a new subscriber when the node says so", async () => {
  const w = await world();
  try {
    await ok(
      w.alice,
      "set",
      pubsub(
        `<create node='status'/><configure>${
          configForm({ "pubsub#send_last_published_item": "on_sub" })
        }</configure>`,
      ),
    );
    await ok(w.alice, "set", publishXml("status", "s1", "old"));
    await ok(w.alice, "set", publishXml("status", "s2", "latest"));
    await ok(w.bob, "set", pubsub("<subscribe node='status' jid='bob@localhost'/>"));
    const last = await nextEvent(w.bob, "status");
    assert.deepEqual(eventOf(last).getChildren("item").map((i) => i.attrs.id), ["s2"]);

    // Default: never.
    await ok(w.alice, "set", pubsub("<create node='quiet'/>"));
    await ok(w.alice, "set", publishXml("quiet", "q1", "x"));
    await ok(w.bob, "set", pubsub("<subscribe node='quiet' jid='bob@localhost'/>"));
    await roundTrip(w.bob);
    assert.ok(
      !w.bob.received.some((el) =>
        el.getChild("event", EVENT)?.getChild("items")?.attrs.node === "quiet"
      ),
    );
  } finally {
    await end(w);
  }
});

function fieldValue(form: Element, name: string): string | undefined {
  return form.getChildren("field").find((f) => f.attrs.var === name)?.getChildText("value");
}

async function configOf(client: RawClient, node: string): Promise<Element> {
  const answer = await ok(client, "get", owner(`<configure node='${node}'/>`));
  return answer.getChild("pubsub", OWNER)!.getChild("configure")!.getChild("x")!;
}

async function configure(client: RawClient, node: string, fields: Record<string, string>) {
  return await iq(
    client,
    "set",
    owner(`<configure node='${node}'>${configForm(fields)}</configure>`),
  );
}

Deno.test("pubsub: owners configure nodes; the form, defaults, max_items and notify_config", async () => {
  const w = await world("pubsub_max_items = 4\n");
  try {
    await ok(w.alice, "set", pubsub("<create node='news'/>"));
    const form = await configOf(w.alice, "news");
    assert.equal(fieldValue(form, "FORM_TYPE"), `${PS}#node_config`);
    assert.equal(fieldValue(form, "pubsub#access_model"), "open");
    assert.equal(fieldValue(form, "pubsub#max_items"), "4");
    const defaults = await ok(w.alice, "get", owner("<default/>"));
    assert.equal(
      fieldValue(
        defaults.getChild("pubsub", OWNER)!.getChild("default")!.getChild("x")!,
        "pubsub#persist_items",
      ),
      "1",
    );
    assertError(await iq(w.bob, "get", owner("<configure node='news'/>")), "forbidden");
    assertError(await configure(w.bob, "news", { "pubsub#title": "Mine" }), "forbidden");
    assertError(await iq(w.alice, "get", owner("<configure node='nope'/>")), "item-not-found");
    // Fields of options the service lacks are ignored; bad values of known ones are refused.
    assert.equal(
      (await configure(w.alice, "news", { "pubsub#body_xslt": "x" })).attrs.type,
      "result",
    );
    assertError(await configure(w.alice, "news", { "pubsub#max_items": "5" }), "not-acceptable");
    assertError(
      await configure(w.alice, "news", { "pubsub#access_model": "everyone" }),
      "not-acceptable",
    );

    await ok(w.bob, "set", pubsub("<subscribe node='news' jid='bob@localhost'/>"));
    assert.equal(
      (await configure(w.alice, "news", {
        "pubsub#title": "News",
        "pubsub#max_items": "2",
        "pubsub#notify_config": "1",
      })).attrs.type,
      "result",
    );
    const changed = await nextEvent(w.bob, "news", "configuration");
    assert.equal(
      fieldValue(eventOf(changed, "configuration").getChild("x")!, "pubsub#title"),
      "News",
    );
    for (const id of ["a", "b", "c"]) await ok(w.alice, "set", publishXml("news", id, id));
    assert.deepEqual(itemIds(await ok(w.bob, "get", pubsub("<items node='news'/>"))), ["b", "c"]);
    // max means the service's cap (pubsub_max_items = 4).
    await configure(w.alice, "news", { "pubsub#max_items": "max" });
    for (const id of ["d", "e", "f"]) await ok(w.alice, "set", publishXml("news", id, id));
    assert.deepEqual(itemIds(await ok(w.bob, "get", pubsub("<items node='news'/>"))), [
      "c",
      "d",
      "e",
      "f",
    ]);
    // Without persistence only the last item is kept (for send_last_published_item).
    await configure(w.alice, "news", { "pubsub#persist_items": "0" });
    assert.deepEqual(itemIds(await ok(w.bob, "get", pubsub("<items node='news'/>"))), ["f"]);
    // notification_type changes the message type.
    await configure(w.alice, "news", { "pubsub#notification_type": "normal" });
    await ok(w.alice, "set", publishXml("news", "g", "g"));
    const normal = await w.bob.next((el) => eventChild(el)?.getChild("item")?.attrs.id === "g");
    assert.equal(normal.attrs.type, "normal");
  } finally {
    await end(w);
  }
});

Deno.test("pubsub: owners manage affiliations: publisher, publish-only, member, outcast", async () => {
  const w = await world();
  try {
    await ok(w.alice, "set", pubsub("<create node='news'/>"));
    assertError(await iq(w.bob, "get", owner("<affiliations node='news'/>")), "forbidden");
    await ok(
      w.alice,
      "set",
      owner(
        "<affiliations node='news'><affiliation jid='bob@localhost' affiliation='publisher'/>" +
          "<affiliation jid='carol@localhost' affiliation='publish-only'/></affiliations>",
      ),
    );
    // Each entity learns its new affiliation (§8.9.4).
    const told = await w.bob.next((el) =>
      el.name === "message" && el.getChild("pubsub", PS)?.getChild("affiliations") !== undefined
    );
    assert.equal(
      told.getChild("pubsub", PS)!.getChild("affiliations")!.getChild("affiliation")!.attrs
        .affiliation,
      "publisher",
    );
    const list = await ok(w.alice, "get", owner("<affiliations node='news'/>"));
    assert.deepEqual(
      list.getChild("pubsub", OWNER)!.getChild("affiliations")!.getChildren("affiliation")
        .map((a) => [a.attrs.jid, a.attrs.affiliation]),
      [["alice@localhost", "owner"], ["bob@localhost", "publisher"], [
        "carol@localhost",
        "publish-only",
      ]],
    );
    await ok(w.bob, "set", publishXml("news", "by-bob", "hi"));
    await ok(w.carol, "set", publishXml("news", "by-carol", "hi"));
    // Publish-only: publishes and deletes its own items, but neither reads nor subscribes.
    assertError(await iq(w.carol, "get", pubsub("<items node='news'/>")), "forbidden");
    assertError(
      await iq(w.carol, "set", pubsub("<subscribe node='news' jid='carol@localhost'/>")),
      "forbidden",
    );
    assertError(
      await iq(w.carol, "set", pubsub("<retract node='news'><item id='by-bob'/></retract>")),
      "forbidden",
    );
    await ok(w.carol, "set", publishXml("news", "by-carol-2", "hi"));
    await ok(w.carol, "set", pubsub("<retract node='news'><item id='by-carol-2'/></retract>"));
    // A publisher may retract anyone's item.
    await ok(w.bob, "set", pubsub("<retract node='news'><item id='by-carol'/></retract>"));
    // Back to no affiliation, carol may subscribe to the open node.
    await ok(
      w.alice,
      "set",
      owner(
        "<affiliations node='news'><affiliation jid='carol@localhost' affiliation='none'/></affiliations>",
      ),
    );

    // An outcast loses its subscription and every access.
    await ok(w.carol, "set", pubsub("<subscribe node='news' jid='carol@localhost'/>"));
    await ok(
      w.alice,
      "set",
      owner(
        "<affiliations node='news'><affiliation jid='carol@localhost' affiliation='outcast'/></affiliations>",
      ),
    );
    assertError(await iq(w.carol, "get", pubsub("<items node='news'/>")), "forbidden");
    assertError(
      await iq(w.carol, "set", pubsub("<subscribe node='news' jid='carol@localhost'/>")),
      "forbidden",
    );
    assertError(await iq(w.carol, "set", publishXml("news", "x", "x")), "forbidden");
    const subs = await ok(w.alice, "get", owner("<subscriptions node='news'/>"));
    assert.deepEqual(
      subs.getChild("pubsub", OWNER)!.getChild("subscriptions")!.getChildren("subscription"),
      [],
    );

    // The last owner cannot step down; bad values are refused without changing anything.
    assertError(
      await iq(
        w.alice,
        "set",
        owner(
          "<affiliations node='news'><affiliation jid='alice@localhost' affiliation='none'/></affiliations>",
        ),
      ),
      "not-acceptable",
    );
    assertError(
      await iq(
        w.alice,
        "set",
        owner(
          "<affiliations node='news'><affiliation jid='bob@localhost' affiliation='king'/></affiliations>",
        ),
      ),
      "bad-request",
    );
    assertError(
      await iq(
        w.alice,
        "set",
        owner(
          "<affiliations node='news'><affiliation jid='@@' affiliation='member'/></affiliations>",
        ),
      ),
      "jid-malformed",
    );
    // A second owner may then take over.
    await ok(
      w.alice,
      "set",
      owner(
        "<affiliations node='news'><affiliation jid='bob@localhost' affiliation='owner'/></affiliations>",
      ),
    );
    await ok(w.bob, "get", owner("<configure node='news'/>"));
  } finally {
    await end(w);
  }
});

Deno.test("pubsub: owners manage subscriptions (§8.8)", async () => {
  const w = await world();
  try {
    await ok(w.alice, "set", pubsub("<create node='news'/>"));
    await ok(w.bob, "set", pubsub("<subscribe node='news' jid='bob@localhost'/>"));
    assertError(await iq(w.bob, "get", owner("<subscriptions node='news'/>")), "forbidden");
    await ok(
      w.alice,
      "set",
      owner(
        "<subscriptions node='news'><subscription jid='carol@localhost' subscription='subscribed'/>" +
          "<subscription jid='bob@localhost' subscription='none'/></subscriptions>",
      ),
    );
    const told = await w.carol.next((el) => eventChild(el, "subscription") !== undefined);
    assert.equal(eventOf(told, "subscription").attrs.subscription, "subscribed");
    const list = await ok(w.alice, "get", owner("<subscriptions node='news'/>"));
    assert.deepEqual(
      list.getChild("pubsub", OWNER)!.getChild("subscriptions")!.getChildren("subscription")
        .map((s) => [s.attrs.jid, s.attrs.subscription]),
      [["carol@localhost", "subscribed"]],
    );
    await ok(w.alice, "set", publishXml("news", "n", "n"));
    await nextEvent(w.carol, "news");
    assertError(
      await iq(
        w.alice,
        "set",
        owner(
          "<subscriptions node='news'><subscription jid='bob@localhost' subscription='maybe'/></subscriptions>",
        ),
      ),
      "bad-request",
    );
  } finally {
    await end(w);
  }
});

Deno.test("pubsub: access models open, presence, roster, whitelist and authorize", async () => {
  const w = await world();
  try {
    for (const model of ["presence", "roster", "whitelist", "authorize"]) {
      await ok(
        w.alice,
        "set",
        pubsub(
          `<create node='${model}'/><configure>${
            configForm({ "pubsub#access_model": model, "pubsub#roster_groups_allowed": "friends" })
          }</configure>`,
        ),
      );
      await ok(w.alice, "set", publishXml(model, "i", model));
    }
    const subscribe = (client: RawClient, node: string, jid: string) =>
      iq(client, "set", pubsub(`<subscribe node='${node}' jid='${jid}'/>`));

    // presence: only contacts subscribed to the owner's presence.
    assertError(
      await iq(w.bob, "get", pubsub("<items node='presence'/>")),
      "not-authorized",
      "presence-subscription-required",
    );
    assertError(
      await subscribe(w.bob, "presence", "bob@localhost"),
      "not-authorized",
      "presence-subscription-required",
    );
    w.bob.send("<presence type='subscribe' to='alice@localhost'/>");
    await w.alice.next((el) => el.name === "presence" && el.attrs.type === "subscribe");
    w.alice.send("<presence type='subscribed' to='bob@localhost'/>");
    await roundTrip(w.alice);
    assert.deepEqual(itemIds(await ok(w.bob, "get", pubsub("<items node='presence'/>"))), ["i"]);
    await ok(w.bob, "set", pubsub("<subscribe node='presence' jid='bob@localhost'/>"));

    // roster: only contacts in an allowed roster group.
    assertError(
      await subscribe(w.carol, "roster", "carol@localhost"),
      "not-authorized",
      "not-in-roster-group",
    );
    w.alice.send(
      "<iq type='set' id='r1'><query xmlns='jabber:iq:roster'><item jid='carol@localhost'>" +
        "<group>friends</group></item></query></iq>",
    );
    await w.alice.next((el) => el.attrs.id === "r1");
    w.alice.send(
      "<iq type='set' id='r2'><query xmlns='jabber:iq:roster'><item jid='bob@localhost'>" +
        "<group>work</group></item></query></iq>",
    );
    await w.alice.next((el) => el.attrs.id === "r2");
    await ok(w.carol, "set", pubsub("<subscribe node='roster' jid='carol@localhost'/>"));
    assertError(
      await iq(w.bob, "get", pubsub("<items node='roster'/>")),
      "not-authorized",
      "not-in-roster-group",
    );
    // Access is checked at delivery: moved out of the group, carol gets nothing more.
    await ok(w.alice, "set", publishXml("roster", "r-1", "x"));
    await nextEvent(w.carol, "roster");
    w.alice.send(
      "<iq type='set' id='r3'><query xmlns='jabber:iq:roster'><item jid='carol@localhost'>" +
        "<group>work</group></item></query></iq>",
    );
    await w.alice.next((el) => el.attrs.id === "r3");
    await ok(w.alice, "set", publishXml("roster", "r-2", "x"));
    await roundTrip(w.carol);
    assert.ok(!w.carol.received.some((el) => eventChild(el)?.getChild("item")?.attrs.id === "r-2"));

    // whitelist: members only.
    assertError(await subscribe(w.bob, "whitelist", "bob@localhost"), "not-allowed", "closed-node");
    assertError(
      await iq(w.bob, "get", pubsub("<items node='whitelist'/>")),
      "not-allowed",
      "closed-node",
    );
    await ok(
      w.alice,
      "set",
      owner(
        "<affiliations node='whitelist'><affiliation jid='bob@localhost' affiliation='member'/></affiliations>",
      ),
    );
    assert.deepEqual(itemIds(await ok(w.bob, "get", pubsub("<items node='whitelist'/>"))), ["i"]);
    await ok(w.bob, "set", pubsub("<subscribe node='whitelist' jid='bob@localhost'/>"));

    // authorize: the subscription waits for the owner's approval form.
    const pending = await subscribe(w.carol, "authorize", "carol@localhost");
    assert.equal(
      pending.getChild("pubsub", PS)!.getChild("subscription")!.attrs.subscription,
      "pending",
    );
    assertError(
      await iq(w.carol, "get", pubsub("<items node='authorize'/>")),
      "not-authorized",
      "not-subscribed",
    );
    const ask = await w.alice.next((el) =>
      el.name === "message" && el.getChild("x", "jabber:x:data") !== undefined
    );
    const askForm = ask.getChild("x", "jabber:x:data")!;
    assert.equal(fieldValue(askForm, "FORM_TYPE"), `${PS}#subscribe_authorization`);
    assert.equal(fieldValue(askForm, "pubsub#subscriber_jid"), "carol@localhost");
    w.alice.send(
      `<message to='${SERVICE}' id='approve'>${
        configForm({
          "pubsub#node": "authorize",
          "pubsub#subscriber_jid": "carol@localhost",
          "pubsub#allow": "true",
        }, "subscribe_authorization")
      }</message>`,
    );
    const approved = await w.carol.next((el) => eventChild(el, "subscription") !== undefined);
    assert.equal(eventOf(approved, "subscription").attrs.subscription, "subscribed");
    assert.deepEqual(itemIds(await ok(w.carol, "get", pubsub("<items node='authorize'/>"))), ["i"]);
    await ok(w.alice, "set", publishXml("authorize", "j", "j"));
    await nextEvent(w.carol, "authorize");
  } finally {
    await end(w);
  }
});

Deno.test("pubsub: publish-options preconditions; auto-created nodes take them as config", async () => {
  const w = await world("pubsub_autocreate_on_publish = true\n");
  try {
    const withOptions = (node: string, id: string, fields: Record<string, string>) =>
      iq(
        w.alice,
        "set",
        pubsub(
          `<publish node='${node}'><item id='${id}'><e xmlns='urn:x'/></item></publish>` +
            `<publish-options>${configForm(fields, "publish-options")}</publish-options>`,
        ),
      );
    // Auto-created with the options as its configuration.
    assert.equal(
      (await withOptions("private", "1", { "pubsub#access_model": "whitelist" })).attrs.type,
      "result",
    );
    assert.equal(
      fieldValue(await configOf(w.alice, "private"), "pubsub#access_model"),
      "whitelist",
    );
    assertError(
      await iq(w.bob, "get", pubsub("<items node='private'/>")),
      "not-allowed",
      "closed-node",
    );
    // Matching preconditions publish; a mismatch is conflict + precondition-not-met.
    assert.equal(
      (await withOptions("private", "2", { "pubsub#access_model": "whitelist" })).attrs.type,
      "result",
    );
    assertError(
      await withOptions("private", "3", { "pubsub#access_model": "open" }),
      "conflict",
      "precondition-not-met",
    );
    assertError(
      await withOptions("private", "4", { "pubsub#persist_items": "0" }),
      "conflict",
      "precondition-not-met",
    );
    assertError(
      await withOptions("private", "5", { "pubsub#max_items": "lots" }),
      "conflict",
      "precondition-not-met",
    );
    assert.deepEqual(itemIds(await ok(w.alice, "get", pubsub("<items node='private'/>"))), [
      "1",
      "2",
    ]);
    // Auto-create is offered in disco when enabled.
    const info = await iq(w.alice, "get", "<query xmlns='http://jabber.org/protocol/disco#info'/>");
    assert.ok(
      info.getChild("query")!.getChildren("feature").some((f) =>
        f.attrs.var === `${PS}#auto-create`
      ),
    );
    // Bob may not auto-create a node named by someone else... but may create his own.
    await ok(w.bob, "set", publishXml("bobs", "1", "x"));
    assertError(await iq(w.bob, "set", publishXml("private", "6", "x")), "forbidden");
  } finally {
    await end(w);
  }
});

Deno.test("pubsub: limits on nodes per service and malformed requests", async () => {
  const w = await world("pubsub_max_nodes = 2\n");
  try {
    await ok(w.alice, "set", pubsub("<create node='a'/>"));
    await ok(w.alice, "set", pubsub("<create/>"));
    assertError(
      await iq(w.alice, "set", pubsub("<create node='c'/>")),
      "not-allowed",
      "max-nodes-exceeded",
    );
    assertError(
      await iq(w.alice, "set", pubsub("<subscribe node='a' jid='not a@@jid'/>")),
      "jid-malformed",
    );
    assertError(await iq(w.alice, "set", pubsub("")), "bad-request");
    assertError(
      await iq(w.alice, "set", publishXml("a", "i".repeat(1025), "x")),
      "bad-request",
    );
    const unknown = await iq(w.alice, "set", pubsub("<frobnicate node='a'/>"));
    assertError(unknown, "feature-not-implemented", "unsupported");
    assertError(await iq(w.alice, "set", owner("<configure node='a'/>")), "bad-request");
    // The server is still fine.
    await ok(w.alice, "get", pubsub("<items node='a'/>"));
  } finally {
    await end(w);
  }
});

Deno.test("pubsub: items page through with result set management (XEP-0059)", async () => {
  const w = await world();
  try {
    await ok(w.alice, "set", pubsub("<create node='log'/>"));
    for (const id of ["a", "b", "c", "d", "e"]) await ok(w.alice, "set", publishXml("log", id, id));
    const page = async (set: string) => {
      const answer = await ok(
        w.bob,
        "get",
        pubsub(`<items node='log'/><set xmlns='http://jabber.org/protocol/rsm'>${set}</set>`),
      );
      const rsm = answer.getChild("pubsub", PS)!.getChild("set", "http://jabber.org/protocol/rsm")!;
      return {
        ids: itemIds(answer),
        first: rsm.getChildText("first"),
        index: rsm.getChild("first")?.attrs.index,
        last: rsm.getChildText("last"),
        count: rsm.getChildText("count"),
      };
    };
    assert.deepEqual(await page("<max>2</max>"), {
      ids: ["a", "b"],
      first: "a",
      index: "0",
      last: "b",
      count: "5",
    });
    assert.deepEqual((await page("<max>2</max><after>b</after>")).ids, ["c", "d"]);
    assert.deepEqual(await page("<max>2</max><before/>"), {
      ids: ["d", "e"],
      first: "d",
      index: "3",
      last: "e",
      count: "5",
    });
    assert.deepEqual((await page("<max>2</max><before>d</before>")).ids, ["b", "c"]);
    assert.deepEqual((await page("<max>0</max>")).ids, []);
    assertError(
      await iq(
        w.bob,
        "get",
        pubsub(
          "<items node='log'/><set xmlns='http://jabber.org/protocol/rsm'><after>zz</after></set>",
        ),
      ),
      "item-not-found",
    );
    assertError(
      await iq(
        w.bob,
        "get",
        pubsub("<items node='log'/><set xmlns='http://jabber.org/protocol/rsm'><max>x</max></set>"),
      ),
      "bad-request",
    );
  } finally {
    await end(w);
  }
});

Deno.test("pubsub: notifications without payloads, or none at all, when the node says so", async () => {
  const w = await world();
  try {
    await ok(
      w.alice,
      "set",
      pubsub(
        `<create node='light'/><configure>${
          configForm({ "pubsub#deliver_payloads": "0" })
        }</configure>`,
      ),
    );
    await ok(w.bob, "set", pubsub("<subscribe node='light' jid='bob@localhost'/>"));
    await ok(w.alice, "set", publishXml("light", "l1", "heavy payload"));
    const light = await nextEvent(w.bob, "light");
    const item = eventOf(light).getChild("item", EVENT)!;
    assert.equal(item.attrs.id, "l1");
    assert.deepEqual(item.elements(), []);
    // The item itself keeps its payload.
    const stored = await ok(w.bob, "get", pubsub("<items node='light'/>"));
    assert.equal(
      stored.getChild("pubsub", PS)!.getChild("items")!.getChild("item")!
        .getChildText("entry", "urn:example:news"),
      "heavy payload",
    );

    await configure(w.alice, "light", { "pubsub#deliver_notifications": "0" });
    await ok(w.alice, "set", publishXml("light", "l2", "silent"));
    await roundTrip(w.bob);
    assert.ok(
      !w.bob.received.some((el) => eventChild(el)?.getChild("item", EVENT)?.attrs.id === "l2"),
    );
  } finally {
    await end(w);
  }
});
