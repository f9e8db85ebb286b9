// XEP-0060 subscription options (§6.3) and the default options (§6.4) on the
// `pubsub.localhost` component and on PEP, over real sockets: the form, storing `pubsub#deliver`
// and what it does to notifications, subscribe-and-configure, and the §6.3.4–6.3.6 errors.

import assert from "node:assert/strict";
import type { Element } from "../../core/xml/element.ts";
import { serialize } from "../../core/xml/serializer.ts";
import { conditionOf, RawClient, roundTrip } from "../helpers/raw_client.ts";
import { startTestServer, type TestServer } from "../helpers/test_server.ts";

const PS = "http://jabber.org/protocol/pubsub";
const EVENT = "http://jabber.org/protocol/pubsub#event";
const ERRORS = "http://jabber.org/protocol/pubsub#errors";
const OPTIONS_FORM = "http://jabber.org/protocol/pubsub#subscribe_options";
const SERVICE = "pubsub.localhost";

interface World {
  t: TestServer;
  alice: RawClient;
  bob: RawClient;
  carol: RawClient;
}

async function world(): Promise<World> {
  const t = await startTestServer({
    users: { alice: "pw", bob: "pw", carol: "pw" },
    extraToml: `[[component]]\ndomain = "${SERVICE}"\nmodules = ["disco", "pubsub"]\n`,
  });
  const alice = (await RawClient.login(t.port, "alice", "pw", "a")).client;
  const bob = (await RawClient.login(t.port, "bob", "pw", "b")).client;
  const carol = (await RawClient.login(t.port, "carol", "pw", "c")).client;
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

async function iq(
  client: RawClient,
  type: "get" | "set",
  payload: string,
  to = SERVICE,
): Promise<Element> {
  const id = `o${++counter}`;
  client.send(`<iq type='${type}' id='${id}' to='${to}'>${payload}</iq>`);
  return await client.next((el) => el.name === "iq" && el.attrs.id === id);
}

async function ok(
  client: RawClient,
  type: "get" | "set",
  payload: string,
  to = SERVICE,
): Promise<Element> {
  const answer = await iq(client, type, payload, to);
  if (answer.attrs.type !== "result") assert.fail(`expected a result, got ${serialize(answer)}`);
  return answer;
}

function assertError(answer: Element, condition: string, pubsubChild?: string): void {
  if (answer.attrs.type !== "error") assert.fail(`expected an error, got ${serialize(answer)}`);
  assert.equal(conditionOf(answer), condition);
  const specific = answer.getChild("error")!.elements().find((el) => el.ns === ERRORS);
  assert.equal(specific?.name, pubsubChild);
}

function pubsub(inner: string): string {
  return `<pubsub xmlns='${PS}'>${inner}</pubsub>`;
}

function optionsForm(fields: Record<string, string>): string {
  let xml = `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>` +
    `<value>${OPTIONS_FORM}</value></field>`;
  for (const [name, value] of Object.entries(fields)) {
    xml += `<field var='${name}'><value>${value}</value></field>`;
  }
  return xml + "</x>";
}

function publishXml(node: string, id: string): string {
  return pubsub(
    `<publish node='${node}'><item id='${id}'><entry xmlns='urn:example:news'>${id}</entry>` +
      `</item></publish>`,
  );
}

/** The form in an answer's `<pubsub><NAME>` (options or default): var -> first value. */
function formOf(answer: Element, name = "options"): Map<string, string | undefined> {
  const x = answer.getChild("pubsub", PS)!.getChild(name, PS)!.getChild("x", "jabber:x:data")!;
  return new Map(
    x.getChildren("field").map((f) => [f.attrs.var, f.getChild("value")?.text()]),
  );
}

/** Whether a client received an item notification for `id` of `node`. */
function gotItem(client: RawClient, node: string, id: string): boolean {
  return client.received.some((el) => {
    const items = el.getChild("event", EVENT)?.getChild("items");
    return items?.attrs.node === node && items.getChild("item")?.attrs.id === id;
  });
}

function nextItem(client: RawClient, node: string, id: string): Promise<Element> {
  return client.next((el) => {
    const items = el.getChild("event", EVENT)?.getChild("items");
    return items?.attrs.node === node && items.getChild("item")?.attrs.id === id;
  });
}

Deno.test("pubsub options: the form, pubsub#deliver=false stops notifications, and back", async () => {
  const w = await world();
  try {
    const info = await ok(
      w.bob,
      "get",
      "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    );
    const features = info.getChild("query")!.getChildren("feature").map((f) => f.attrs.var);
    assert.ok(features.includes(`${PS}#subscription-options`));
    assert.ok(features.includes(`${PS}#retrieve-default-sub`));

    await ok(w.alice, "set", pubsub("<create node='news'/>"));
    const subscribed = await ok(
      w.bob,
      "set",
      pubsub("<subscribe node='news' jid='bob@localhost/b'/>"),
    );
    const subscription = subscribed.getChild("pubsub", PS)!.getChild("subscription", PS)!;
    assert.ok(subscription.getChild("subscribe-options", PS), "options supported (§6.1.5)");
    const subid = subscription.attrs.subid;
    await ok(w.carol, "set", pubsub("<subscribe node='news' jid='carol@localhost'/>"));

    // §6.3.2: the defaults until the subscriber sets anything.
    const got = await ok(w.bob, "get", pubsub("<options node='news' jid='bob@localhost/b'/>"));
    const options = got.getChild("pubsub", PS)!.getChild("options", PS)!;
    assert.equal(options.attrs.node, "news");
    assert.equal(options.attrs.jid, "bob@localhost/b");
    assert.equal(options.getChild("x", "jabber:x:data")!.attrs.type, "form");
    const form = formOf(got);
    assert.equal(form.get("FORM_TYPE"), OPTIONS_FORM);
    assert.equal(form.get("pubsub#deliver"), "1");
    // Options Lilt does not act on are not offered.
    assert.ok(!form.has("pubsub#digest"));

    // §6.3.5: delivery off; the next publish reaches carol but not bob.
    await ok(
      w.bob,
      "set",
      pubsub(
        `<options node='news' jid='bob@localhost/b' subid='${subid}'>` +
          `${optionsForm({ "pubsub#deliver": "0" })}</options>`,
      ),
    );
    assert.equal(
      formOf(await ok(w.bob, "get", pubsub("<options node='news' jid='bob@localhost/b'/>")))
        .get("pubsub#deliver"),
      "0",
    );
    await ok(w.alice, "set", publishXml("news", "quiet"));
    await nextItem(w.carol, "news", "quiet");
    await roundTrip(w.bob);
    assert.ok(!gotItem(w.bob, "news", "quiet"));
    // Still subscribed, though.
    const mine = await ok(w.bob, "get", pubsub("<subscriptions node='news'/>"));
    assert.equal(
      mine.getChild("pubsub", PS)!.getChild("subscriptions")!.getChild("subscription")!.attrs
        .subscription,
      "subscribed",
    );

    // Delivery back on.
    await ok(
      w.bob,
      "set",
      pubsub(
        `<options node='news' jid='bob@localhost/b'>` +
          `${optionsForm({ "pubsub#deliver": "true" })}</options>`,
      ),
    );
    await ok(w.alice, "set", publishXml("news", "loud"));
    await nextItem(w.bob, "news", "loud");
  } finally {
    await end(w);
  }
});

Deno.test("pubsub options: errors per XEP-0060 §6.3.4 and §6.3.6", async () => {
  const w = await world();
  try {
    await ok(w.alice, "set", pubsub("<create node='news'/>"));
    // Not subscribed.
    assertError(
      await iq(w.bob, "get", pubsub("<options node='news' jid='bob@localhost'/>")),
      "unexpected-request",
      "not-subscribed",
    );
    await ok(w.bob, "set", pubsub("<subscribe node='news' jid='bob@localhost'/>"));
    // No such node, no node, no JID, a malformed JID.
    assertError(
      await iq(w.bob, "get", pubsub("<options node='nope' jid='bob@localhost'/>")),
      "item-not-found",
    );
    assertError(
      await iq(w.bob, "get", pubsub("<options jid='bob@localhost'/>")),
      "bad-request",
      "nodeid-required",
    );
    assertError(
      await iq(w.bob, "get", pubsub("<options node='news'/>")),
      "bad-request",
      "jid-required",
    );
    assertError(
      await iq(w.bob, "get", pubsub("<options node='news' jid='@@bad'/>")),
      "jid-malformed",
    );
    // Someone else's subscription: forbidden + invalid-jid, for a get and a set alike.
    assertError(
      await iq(w.carol, "get", pubsub("<options node='news' jid='bob@localhost'/>")),
      "forbidden",
      "invalid-jid",
    );
    assertError(
      await iq(
        w.carol,
        "set",
        pubsub(
          `<options node='news' jid='bob@localhost'>${
            optionsForm({ "pubsub#deliver": "0" })
          }</options>`,
        ),
      ),
      "forbidden",
      "invalid-jid",
    );
    // The node's owner may read it.
    assert.equal(
      formOf(await ok(w.alice, "get", pubsub("<options node='news' jid='bob@localhost'/>")))
        .get("pubsub#deliver"),
      "1",
    );
    // A subid that is not the subscription's.
    assertError(
      await iq(w.bob, "get", pubsub("<options node='news' jid='bob@localhost' subid='wrong'/>")),
      "not-acceptable",
      "invalid-subid",
    );
    // A bad value, and a set without a form: bad-request + invalid-options; nothing changes.
    assertError(
      await iq(
        w.bob,
        "set",
        pubsub(
          `<options node='news' jid='bob@localhost'>${
            optionsForm({ "pubsub#deliver": "maybe" })
          }</options>`,
        ),
      ),
      "bad-request",
      "invalid-options",
    );
    assertError(
      await iq(w.bob, "set", pubsub("<options node='news' jid='bob@localhost'/>")),
      "bad-request",
      "invalid-options",
    );
    assert.equal(
      formOf(await ok(w.bob, "get", pubsub("<options node='news' jid='bob@localhost'/>")))
        .get("pubsub#deliver"),
      "1",
    );
  } finally {
    await end(w);
  }
});

Deno.test("pubsub options: subscribe and configure in one request (§6.3.7), defaults (§6.4)", async () => {
  const w = await world();
  try {
    await ok(w.alice, "set", pubsub("<create node='news'/>"));
    await ok(w.alice, "set", publishXml("news", "first"));

    // The default options, of the service and of one node.
    assert.equal(
      formOf(await ok(w.bob, "get", pubsub("<default/>")), "default").get(
        "pubsub#deliver",
      ),
      "1",
    );
    const nodeDefault = await ok(w.bob, "get", pubsub("<default node='news'/>"));
    assert.equal(nodeDefault.getChild("pubsub", PS)!.getChild("default")!.attrs.node, "news");
    assert.equal(formOf(nodeDefault, "default").get("FORM_TYPE"), OPTIONS_FORM);
    assertError(await iq(w.bob, "get", pubsub("<default node='nope'/>")), "item-not-found");

    // A bad options form refuses the subscription altogether.
    assertError(
      await iq(
        w.bob,
        "set",
        pubsub(
          "<subscribe node='news' jid='bob@localhost'/>" +
            `<options>${optionsForm({ "pubsub#deliver": "perhaps" })}</options>`,
        ),
      ),
      "bad-request",
      "invalid-options",
    );
    assertError(
      await iq(w.bob, "get", pubsub("<options node='news' jid='bob@localhost'/>")),
      "unexpected-request",
      "not-subscribed",
    );

    // Subscribed with delivery off: the answer shows the options, and neither the last item
    // (send_last_published_item on_sub) nor a new one arrives.
    await ok(
      w.alice,
      "set",
      `<pubsub xmlns='${PS}#owner'><configure node='news'><x xmlns='jabber:x:data' type='submit'>` +
        `<field var='FORM_TYPE' type='hidden'><value>${PS}#node_config</value></field>` +
        `<field var='pubsub#send_last_published_item'><value>on_sub</value></field>` +
        `</x></configure></pubsub>`,
    );
    const answer = await ok(
      w.bob,
      "set",
      pubsub(
        "<subscribe node='news' jid='bob@localhost'/>" +
          `<options>${optionsForm({ "pubsub#deliver": "0" })}</options>`,
      ),
    );
    const result = answer.getChild("pubsub", PS)!;
    assert.equal(result.getChild("subscription")!.attrs.subscription, "subscribed");
    assert.equal(result.getChild("options")!.getChild("x", "jabber:x:data")!.attrs.type, "result");
    assert.equal(formOf(answer).get("pubsub#deliver"), "0");
    await ok(w.carol, "set", pubsub("<subscribe node='news' jid='carol@localhost'/>"));
    await nextItem(w.carol, "news", "first");
    await ok(w.alice, "set", publishXml("news", "second"));
    await nextItem(w.carol, "news", "second");
    await roundTrip(w.bob);
    assert.ok(!gotItem(w.bob, "news", "first"));
    assert.ok(!gotItem(w.bob, "news", "second"));

    // Subscribing again with options changes those of the existing subscription.
    await ok(
      w.bob,
      "set",
      pubsub(
        "<subscribe node='news' jid='bob@localhost'/>" +
          `<options>${optionsForm({ "pubsub#deliver": "1" })}</options>`,
      ),
    );
    await ok(w.alice, "set", publishXml("news", "third"));
    await nextItem(w.bob, "news", "third");
  } finally {
    await end(w);
  }
});

Deno.test("pubsub options: PEP subscriptions take options too", async () => {
  const w = await world();
  try {
    const alicePep = "alice@localhost";
    await ok(
      w.alice,
      "set",
      pubsub(
        "<publish node='urn:example:mood'><item id='one'><mood xmlns='urn:example:mood'/></item>" +
          "</publish><publish-options><x xmlns='jabber:x:data' type='submit'>" +
          `<field var='FORM_TYPE' type='hidden'><value>${PS}#publish-options</value></field>` +
          "<field var='pubsub#access_model'><value>open</value></field></x></publish-options>",
      ),
      alicePep,
    );
    const disco = await ok(
      w.bob,
      "get",
      "<query xmlns='http://jabber.org/protocol/disco#info'/>",
      alicePep,
    );
    assert.ok(
      disco.getChild("query")!.getChildren("feature")
        .some((f) => f.attrs.var === `${PS}#subscription-options`),
    );
    await ok(
      w.bob,
      "set",
      pubsub(
        "<subscribe node='urn:example:mood' jid='bob@localhost/b'/>" +
          `<options>${optionsForm({ "pubsub#deliver": "0" })}</options>`,
      ),
      alicePep,
    );
    assert.equal(
      formOf(
        await ok(
          w.bob,
          "get",
          pubsub("<options node='urn:example:mood' jid='bob@localhost/b'/>"),
          alicePep,
        ),
      ).get("pubsub#deliver"),
      "0",
    );
    await ok(
      w.carol,
      "set",
      pubsub("<subscribe node='urn:example:mood' jid='carol@localhost/c'/>"),
      alicePep,
    );
    await ok(
      w.alice,
      "set",
      pubsub(
        "<publish node='urn:example:mood'><item id='two'><mood xmlns='urn:example:mood'/></item>" +
          "</publish>",
      ),
      alicePep,
    );
    await nextItem(w.carol, "urn:example:mood", "two");
    await roundTrip(w.bob);
    assert.ok(!gotItem(w.bob, "urn:example:mood", "two"));
  } finally {
    await end(w);
  }
});
