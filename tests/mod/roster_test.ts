// RFC 6121 rosters and subscriptions over the wire: the handshake with every resource's pushes,
// pending requests, pre-approval, cancelling, removal, versioning, errors, limits, restarts.

import assert from "node:assert/strict";
import type { Element } from "../../core/xml/element.ts";
import { conditionOf, RawClient, roundTrip } from "../helpers/raw_client.ts";
import { startTestServer, type TestServer } from "../helpers/test_server.ts";

const NS_ROSTER = "jabber:iq:roster";
const MODULES = ["disco", "ping", "roster", "presence"];
const USERS = { alice: "pw", bob: "pw", carol: "pw" };

/** What a test compares of a roster item: only the attributes that are present. */
interface ItemSummary {
  jid: string;
  subscription?: string;
  ask?: string;
  approved?: string;
  name?: string;
  groups?: string[];
}

function summary(item: Element): ItemSummary {
  const out: ItemSummary = { jid: item.attrs.jid };
  for (const key of ["subscription", "ask", "approved", "name"] as const) {
    if (item.attrs[key] !== undefined) out[key] = item.attrs[key];
  }
  const groups = item.getChildren("group").map((g) => g.text());
  if (groups.length > 0) out.groups = groups;
  return out;
}

function isPush(el: Element): boolean {
  return el.name === "iq" && el.attrs.type === "set" &&
    el.getChild("query", NS_ROSTER) !== undefined;
}

/** Every roster push the client received so far, as item summaries. */
function pushesOf(client: RawClient): ItemSummary[] {
  return client.received.filter(isPush).map((iq) => {
    const items = iq.getChild("query", NS_ROSTER)!.getChildren("item");
    assert.equal(items.length, 1, "a roster push carries one item");
    return summary(items[0]);
  });
}

/** The presence stanzas the client received from other accounts: from and type. */
function presencesOf(client: RawClient, own: string): { from: string; type?: string }[] {
  return client.received
    .filter((el) => el.name === "presence" && !el.attrs.from?.startsWith(`${own}@`))
    .map((el) =>
      el.attrs.type ? { from: el.attrs.from, type: el.attrs.type } : { from: el.attrs.from }
    );
}

/** Round trips in order: what the first client caused has reached all the others. */
async function settle(...clients: RawClient[]): Promise<void> {
  for (const client of clients) await roundTrip(client);
}

let iqCounter = 0;

/** Sends an iq and returns its answer. */
async function request(client: RawClient, xml: (id: string) => string): Promise<Element> {
  const id = `iq-${++iqCounter}`;
  client.send(xml(id));
  return await client.next((el) => el.name === "iq" && el.attrs.id === id);
}

/** A roster get (with `ver` when given); returns the answer. */
function getRoster(client: RawClient, ver?: string): Promise<Element> {
  const verAttr = ver === undefined ? "" : ` ver='${ver}'`;
  return request(
    client,
    (id) => `<iq type='get' id='${id}'><query xmlns='${NS_ROSTER}'${verAttr}/></iq>`,
  );
}

/** The items of a roster result. */
function itemsOf(result: Element): ItemSummary[] {
  return result.getChild("query", NS_ROSTER)!.getChildren("item").map(summary);
}

/** A roster set with the given <item/> XML; returns the answer. */
function setRoster(client: RawClient, itemXml: string): Promise<Element> {
  return request(
    client,
    (id) => `<iq type='set' id='${id}'><query xmlns='${NS_ROSTER}'>${itemXml}</query></iq>`,
  );
}

interface LoginOptions {
  /** Fetch the roster (become an interested resource); default true. */
  roster?: boolean;
  /** Send initial presence (become an available resource); default true. */
  presence?: boolean;
}

/** Logs a resource in, optionally fetching the roster and sending initial presence. */
async function login(
  t: TestServer,
  user: string,
  resource: string,
  options: LoginOptions = {},
): Promise<RawClient> {
  const { client } = await RawClient.login(t.port, user, "pw", resource);
  if (options.roster ?? true) await getRoster(client);
  if (options.presence ?? true) {
    client.send("<presence/>");
    await client.next((el) =>
      el.name === "presence" && el.attrs.from === `${user}@localhost/${resource}`
    );
  }
  return client;
}

/** Makes alice and bob subscribed to each other (both), through the protocol itself. */
async function befriend(a: RawClient, b: RawClient, all: RawClient[]): Promise<void> {
  a.send("<presence to='bob@localhost' type='subscribe'/>");
  await settle(a, b);
  b.send("<presence to='alice@localhost' type='subscribed'/>");
  b.send("<presence to='alice@localhost' type='subscribe'/>");
  await settle(b, a);
  a.send("<presence to='bob@localhost' type='subscribed'/>");
  await settle(a, ...all);
}

async function start(hostToml = ""): Promise<TestServer> {
  return await startTestServer({ users: USERS, modules: MODULES, hostToml });
}

Deno.test("a subscription handshake pushes every state to every resource (RFC 6121 §3.1)", async () => {
  const t = await start();
  try {
    const a1 = await login(t, "alice", "a1");
    const a2 = await login(t, "alice", "a2");
    const b1 = await login(t, "bob", "b1");
    const b2 = await login(t, "bob", "b2");
    const all = [a1, a2, b1, b2];

    // 1. alice asks: her resources see "none" + ask, and bob's unavailable presence that
    // acknowledges the request; bob's available resources get the request.
    a1.send("<presence to='bob@localhost/b1' type='subscribe'/>"); // full JID: handled as bare
    await settle(a1, ...all);
    const aliceAsk = { jid: "bob@localhost", subscription: "none", ask: "subscribe" };
    const bobAck = { from: "bob@localhost", type: "unavailable" };
    for (const a of [a1, a2]) {
      assert.deepEqual(pushesOf(a), [aliceAsk]);
      assert.deepEqual(presencesOf(a, "alice"), [bobAck]);
    }
    for (const b of [b1, b2]) {
      assert.deepEqual(pushesOf(b), [], "a pending request is not a roster item yet");
      assert.deepEqual(presencesOf(b, "bob"), [{ from: "alice@localhost", type: "subscribe" }]);
    }
    const request = b1.received.find((el) => el.attrs.type === "subscribe")!;
    assert.equal(request.attrs.to, "bob@localhost");

    // 2. bob approves: "from" for bob, "to" for alice, who also gets bob's presence.
    b1.send("<presence to='alice@localhost' type='subscribed'/>");
    await settle(b1, ...all);
    const aliceTo = { jid: "bob@localhost", subscription: "to" };
    const bobFrom = { jid: "alice@localhost", subscription: "from" };
    for (const a of [a1, a2]) {
      assert.deepEqual(pushesOf(a), [aliceAsk, aliceTo]);
      assert.deepEqual(presencesOf(a, "alice"), [
        bobAck,
        { from: "bob@localhost", type: "subscribed" },
        { from: "bob@localhost/b1" },
        { from: "bob@localhost/b2" },
      ]);
    }
    for (const b of [b1, b2]) assert.deepEqual(pushesOf(b), [bobFrom]);

    // 3. bob asks back: "from" + ask for bob; alice's item is unchanged ("To + Pending In").
    b2.send("<presence to='alice@localhost' type='subscribe'/>");
    await settle(b2, ...all);
    const bobAsk = { jid: "alice@localhost", subscription: "from", ask: "subscribe" };
    for (const b of [b1, b2]) assert.deepEqual(pushesOf(b), [bobFrom, bobAsk]);
    for (const a of [a1, a2]) {
      assert.deepEqual(pushesOf(a), [aliceAsk, aliceTo]);
      assert.deepEqual(presencesOf(a, "alice").at(-1), {
        from: "bob@localhost",
        type: "subscribe",
      });
    }

    // 4. alice approves: "both" on each side; bob gets the approval and alice's presence.
    a2.send("<presence to='bob@localhost' type='subscribed'/>");
    await settle(a2, ...all);
    const aliceBoth = { jid: "bob@localhost", subscription: "both" };
    const bobBoth = { jid: "alice@localhost", subscription: "both" };
    for (const a of [a1, a2]) assert.deepEqual(pushesOf(a), [aliceAsk, aliceTo, aliceBoth]);
    for (const b of [b1, b2]) {
      assert.deepEqual(pushesOf(b), [bobFrom, bobAsk, bobBoth]);
      assert.deepEqual(presencesOf(b, "bob"), [
        { from: "alice@localhost", type: "subscribe" },
        { from: "alice@localhost", type: "unavailable" },
        { from: "alice@localhost", type: "subscribed" },
        { from: "alice@localhost/a1" },
        { from: "alice@localhost/a2" },
      ]);
    }
    // alice saw no second request and nothing else from bob.
    assert.equal(presencesOf(a1, "alice").length, 5);

    // Pushes are addressed to each resource and carry increasing, distinct versions.
    const pushes = a1.received.filter(isPush);
    assert.ok(pushes.every((p) => p.attrs.to === "alice@localhost/a1" && !p.attrs.from));
    const versions = pushes.map((p) => p.getChild("query")!.attrs.ver);
    assert.equal(new Set(versions).size, 3);

    const aliceRoster = await getRoster(a1);
    assert.deepEqual(itemsOf(aliceRoster), [aliceBoth]);
    assert.equal(aliceRoster.getChild("query")!.attrs.ver, versions.at(-1));
    assert.deepEqual(itemsOf(await getRoster(b1)), [bobBoth]);
    for (const c of all) c.close();
  } finally {
    await t.stop();
  }
});

Deno.test("a request to an offline contact waits for its initial presence (RFC 6121 §3.1.3)", async () => {
  const t = await start();
  try {
    const a = await login(t, "alice", "a");
    a.send("<presence to='bob@localhost' type='subscribe'><status>hi</status></presence>");
    await settle(a);

    // Fetching the roster is not enough: the request waits for an available resource.
    const b1 = await login(t, "bob", "b1", { presence: false });
    assert.deepEqual(itemsOf(await getRoster(b1)), []);
    await settle(b1);
    assert.deepEqual(presencesOf(b1, "bob"), []);
    b1.send("<presence/>");
    const stored = await b1.next((el) => el.attrs.type === "subscribe");
    assert.equal(stored.attrs.from, "alice@localhost");
    assert.equal(stored.getChildText("status"), "hi");

    // Unanswered, it comes again at the next login.
    b1.close();
    const b2 = await login(t, "bob", "b2", { presence: false });
    b2.send("<presence/>");
    await b2.next((el) => el.attrs.type === "subscribe" && el.attrs.from === "alice@localhost");

    // A repeated request while one is pending is not delivered twice.
    a.send("<presence to='bob@localhost' type='subscribe'/>");
    await settle(a, b2);
    assert.equal(b2.received.filter((el) => el.attrs.type === "subscribe").length, 1);

    // Answered, it is gone.
    b2.send("<presence to='alice@localhost' type='subscribed'/>");
    await settle(b2, a);
    assert.deepEqual(pushesOf(a).at(-1), { jid: "bob@localhost", subscription: "to" });
    const b3 = await login(t, "bob", "b3");
    await settle(b3);
    assert.deepEqual(presencesOf(b3, "bob").filter((p) => p.type === "subscribe"), []);
    for (const c of [a, b2, b3]) c.close();
  } finally {
    await t.stop();
  }
});

Deno.test("a denied request clears the pending state on both sides (RFC 6121 §3.2)", async () => {
  const t = await start();
  try {
    const a = await login(t, "alice", "a");
    const b = await login(t, "bob", "b");
    a.send("<presence to='bob@localhost' type='subscribe'/>");
    await settle(a, b);
    b.send("<presence to='alice@localhost' type='unsubscribed'/>");
    await settle(b, a);
    assert.deepEqual(pushesOf(a), [
      { jid: "bob@localhost", subscription: "none", ask: "subscribe" },
      { jid: "bob@localhost", subscription: "none" },
    ]);
    assert.deepEqual(presencesOf(a, "alice"), [
      { from: "bob@localhost", type: "unavailable" },
      { from: "bob@localhost", type: "unsubscribed" },
    ]);
    assert.deepEqual(pushesOf(b), [], "the hidden request went away without a push");
    const b2 = await login(t, "bob", "b2");
    await settle(b2);
    assert.deepEqual(presencesOf(b2, "bob"), []);

    // A request to an account that does not exist is refused the same way.
    a.send("<presence to='nobody@localhost' type='subscribe'/>");
    await settle(a);
    assert.deepEqual(pushesOf(a).slice(-2), [
      { jid: "nobody@localhost", subscription: "none", ask: "subscribe" },
      { jid: "nobody@localhost", subscription: "none" },
    ]);
    assert.deepEqual(presencesOf(a, "alice").at(-1), {
      from: "nobody@localhost",
      type: "unsubscribed",
    });
    for (const c of [a, b, b2]) c.close();
  } finally {
    await t.stop();
  }
});

Deno.test("a pre-approved request is approved by the server (RFC 6121 §3.4)", async () => {
  const t = await start();
  try {
    const a = await login(t, "alice", "a");
    const b = await login(t, "bob", "b");
    b.send("<presence to='alice@localhost' type='subscribed'/>");
    await settle(b, a);
    assert.deepEqual(pushesOf(b), [{
      jid: "alice@localhost",
      subscription: "none",
      approved: "true",
    }]);
    assert.deepEqual(presencesOf(a, "alice"), [], "a pre-approval is not sent to the contact");

    a.send("<presence to='bob@localhost' type='subscribe'/>");
    await settle(a, b, a);
    assert.deepEqual(pushesOf(a), [
      { jid: "bob@localhost", subscription: "none", ask: "subscribe" },
      { jid: "bob@localhost", subscription: "to" },
    ]);
    assert.deepEqual(presencesOf(a, "alice"), [
      { from: "bob@localhost", type: "subscribed" },
      { from: "bob@localhost/b" },
    ]);
    assert.deepEqual(pushesOf(b), [
      { jid: "alice@localhost", subscription: "none", approved: "true" },
      { jid: "alice@localhost", subscription: "from" },
    ]);
    assert.deepEqual(presencesOf(b, "bob"), [], "bob is not asked");

    // A pre-approval can be cancelled with "unsubscribed", without telling the contact.
    const c = await login(t, "carol", "c");
    b.send("<presence to='carol@localhost' type='subscribed'/>");
    b.send("<presence to='carol@localhost' type='unsubscribed'/>");
    await settle(b, c);
    assert.deepEqual(pushesOf(b).slice(-2), [
      { jid: "carol@localhost", subscription: "none", approved: "true" },
      { jid: "carol@localhost", subscription: "none" },
    ]);
    assert.deepEqual(presencesOf(c, "carol"), []);
    c.send("<presence to='bob@localhost' type='subscribe'/>");
    await settle(c, b);
    assert.deepEqual(presencesOf(b, "bob"), [{ from: "carol@localhost", type: "subscribe" }]);
    for (const x of [a, b, c]) x.close();
  } finally {
    await t.stop();
  }
});

Deno.test("unsubscribed and unsubscribe cancel each direction (RFC 6121 §3.2, §3.3)", async () => {
  const t = await start();
  try {
    const a = await login(t, "alice", "a");
    const b = await login(t, "bob", "b");
    await befriend(a, b, [a, b]);
    const aliceBefore = pushesOf(a).length;
    const bobBefore = pushesOf(b).length;
    const alicePresences = presencesOf(a, "alice").length;
    const bobPresences = presencesOf(b, "bob").length;

    // alice cancels bob's subscription to her: bob gets the notice and her unavailable.
    a.send("<presence to='bob@localhost' type='unsubscribed'/>");
    await settle(a, b);
    assert.deepEqual(pushesOf(a).slice(aliceBefore), [{
      jid: "bob@localhost",
      subscription: "to",
    }]);
    assert.deepEqual(pushesOf(b).slice(bobBefore), [{
      jid: "alice@localhost",
      subscription: "from",
    }]);
    assert.deepEqual(presencesOf(b, "bob").slice(bobPresences), [
      { from: "alice@localhost", type: "unsubscribed" },
      { from: "alice@localhost/a", type: "unavailable" },
    ]);

    // alice unsubscribes from bob: bob gets the notice, alice gets bob's unavailable.
    a.send("<presence to='bob@localhost' type='unsubscribe'/>");
    await settle(a, b, a);
    assert.deepEqual(pushesOf(a).slice(aliceBefore), [
      { jid: "bob@localhost", subscription: "to" },
      { jid: "bob@localhost", subscription: "none" },
    ]);
    assert.deepEqual(pushesOf(b).slice(bobBefore), [
      { jid: "alice@localhost", subscription: "from" },
      { jid: "alice@localhost", subscription: "none" },
    ]);
    assert.deepEqual(presencesOf(b, "bob").slice(bobPresences + 2), [
      { from: "alice@localhost", type: "unsubscribe" },
    ]);
    assert.deepEqual(presencesOf(a, "alice").slice(alicePresences), [
      { from: "bob@localhost/b", type: "unavailable" },
    ]);

    // Nothing left to cancel: no pushes, nothing routed.
    a.send("<presence to='bob@localhost' type='unsubscribe'/>");
    a.send("<presence to='bob@localhost' type='unsubscribed'/>");
    await settle(a, b);
    assert.equal(pushesOf(a).length, aliceBefore + 2);
    assert.equal(pushesOf(b).length, bobBefore + 2);
    assert.equal(presencesOf(b, "bob").length, bobPresences + 3);
    for (const c of [a, b]) c.close();
  } finally {
    await t.stop();
  }
});

Deno.test("removing an item cancels both subscriptions (RFC 6121 §2.5)", async () => {
  const t = await start();
  try {
    const a = await login(t, "alice", "a");
    const b = await login(t, "bob", "b");
    await befriend(a, b, [a, b]);
    const aliceBefore = pushesOf(a).length;
    const bobBefore = pushesOf(b).length;
    const alicePresences = presencesOf(a, "alice").length;
    const bobPresences = presencesOf(b, "bob").length;

    const result = await setRoster(a, "<item jid='bob@localhost' subscription='remove'/>");
    assert.equal(result.attrs.type, "result");
    await settle(a, b, a);
    assert.deepEqual(pushesOf(a).slice(aliceBefore), [
      { jid: "bob@localhost", subscription: "remove" },
    ]);
    assert.deepEqual(presencesOf(b, "bob").slice(bobPresences), [
      { from: "alice@localhost", type: "unsubscribe" },
      { from: "alice@localhost", type: "unsubscribed" },
      { from: "alice@localhost/a", type: "unavailable" },
    ]);
    assert.deepEqual(pushesOf(b).slice(bobBefore), [
      { jid: "alice@localhost", subscription: "to" },
      { jid: "alice@localhost", subscription: "none" },
    ]);
    assert.deepEqual(presencesOf(a, "alice").slice(alicePresences), [
      { from: "bob@localhost/b", type: "unavailable" },
    ]);
    assert.deepEqual(itemsOf(await getRoster(a)), []);
    assert.deepEqual(itemsOf(await getRoster(b)), [{
      jid: "alice@localhost",
      subscription: "none",
    }]);
    for (const c of [a, b]) c.close();
  } finally {
    await t.stop();
  }
});

/** Logs in by hand to read the post-authentication stream features. */
async function featuresAfterLogin(
  t: TestServer,
  user: string,
): Promise<{ client: RawClient; features: Element }> {
  const client = await RawClient.connect(t.port);
  await client.open();
  await client.starttls();
  client.send(
    `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${
      btoa(`\0${user}\0pw`)
    }</auth>`,
  );
  await client.next((el) => el.name === "success");
  client.restart();
  const features = await client.open();
  return { client, features };
}

Deno.test("roster versioning: unchanged versions get an empty result (RFC 6121 §2.6)", async () => {
  const t = await start();
  try {
    const { client, features } = await featuresAfterLogin(t, "alice");
    assert.ok(features.getChild("ver", "urn:xmpp:features:rosterver"));
    client.close();

    const a1 = await login(t, "alice", "a1", { roster: false });
    const first = await getRoster(a1, "");
    assert.deepEqual(itemsOf(first), []);
    const v1 = first.getChild("query")!.attrs.ver;
    assert.ok(v1);
    assert.equal((await getRoster(a1, v1)).children.length, 0, "unchanged: empty result");

    await setRoster(a1, "<item jid='bob@localhost' name='Bob'><group>Friends</group></item>");
    const push = await a1.next(isPush);
    const v2 = push.getChild("query")!.attrs.ver;
    assert.ok(v2 && v2 !== v1);

    const a2 = await login(t, "alice", "a2", { roster: false });
    const same = await getRoster(a2, v2);
    assert.equal(same.attrs.type, "result");
    assert.equal(same.children.length, 0);
    const stale = await getRoster(a2, v1);
    assert.equal(stale.getChild("query")!.attrs.ver, v2);
    assert.deepEqual(itemsOf(stale), [
      { jid: "bob@localhost", subscription: "none", name: "Bob", groups: ["Friends"] },
    ]);
    // Without 'ver' the full roster comes too, with its version.
    assert.equal((await getRoster(a2)).getChild("query")!.attrs.ver, v2);

    // A later change reaches a2 (interested since its roster get) with the new version.
    await setRoster(a1, "<item jid='bob@localhost' name='Robert'/>");
    const later = await a2.next(isPush);
    assert.notEqual(later.getChild("query")!.attrs.ver, v2);
    assert.deepEqual(summary(later.getChild("query")!.getChild("item")!), {
      jid: "bob@localhost",
      subscription: "none",
      name: "Robert",
    });
    for (const c of [a1, a2]) c.close();
  } finally {
    await t.stop();
  }
});

Deno.test("roster sets are validated (RFC 6121 §2.1.5, §2.3.3)", async () => {
  const t = await start();
  try {
    const a = await login(t, "alice", "a");
    const cases: [string, string][] = [
      ["<item jid='bob@localhost'/><item jid='carol@localhost'/>", "bad-request"],
      ["<item jid='bob@localhost'><group>A</group><group>A</group></item>", "bad-request"],
      ["<item jid='bob@localhost'><group></group></item>", "not-acceptable"],
      [`<item jid='bob@localhost' name='${"n".repeat(1024)}'/>`, "not-acceptable"],
      [`<item jid='bob@localhost'><group>${"g".repeat(1024)}</group></item>`, "not-acceptable"],
      ["<item jid='a@@b'/>", "bad-request"],
      ["<item name='no jid'/>", "bad-request"],
      ["<item jid='bob@localhost/res'/>", "bad-request"],
      ["<item jid='alice@localhost'/>", "not-allowed"],
      ["<item jid='nobody@localhost' subscription='remove'/>", "item-not-found"],
    ];
    for (const [xml, condition] of cases) {
      const answer = await setRoster(a, xml);
      assert.equal(answer.attrs.type, "error", xml);
      assert.equal(conditionOf(answer), condition, xml);
    }
    await settle(a);
    assert.deepEqual(pushesOf(a), [], "failed sets change nothing");

    // Another account's roster is off limits.
    const other = await request(
      a,
      (id) =>
        `<iq type='set' id='${id}' to='bob@localhost'><query xmlns='${NS_ROSTER}'><item jid='carol@localhost'/></query></iq>`,
    );
    assert.equal(conditionOf(other), "forbidden");

    // Client-set 'subscription', 'ask' and 'approved' are ignored.
    const ok = await setRoster(
      a,
      "<item jid='bob@localhost' subscription='both' ask='subscribe' approved='true'/>",
    );
    assert.equal(ok.attrs.type, "result");
    assert.deepEqual(pushesOf(a), [{ jid: "bob@localhost", subscription: "none" }]);
    a.close();
  } finally {
    await t.stop();
  }
});

Deno.test("the roster size limit refuses new items, not updates (max_roster_size)", async () => {
  const t = await start("max_roster_size = 2");
  try {
    const a = await login(t, "alice", "a");
    assert.equal((await setRoster(a, "<item jid='bob@localhost'/>")).attrs.type, "result");
    assert.equal((await setRoster(a, "<item jid='carol@localhost'/>")).attrs.type, "result");
    const refused = await setRoster(a, "<item jid='dave@localhost'/>");
    assert.equal(conditionOf(refused), "policy-violation");
    assert.equal(refused.getChild("error")!.getChildText("text"), "A roster holds at most 2 items");
    assert.equal(
      (await setRoster(a, "<item jid='bob@localhost' name='Bob'/>")).attrs.type,
      "result",
    );
    // A subscription request to a new contact is refused the same way.
    a.send("<presence to='dave@localhost' type='subscribe' id='sub1'/>");
    const error = await a.next((el) => el.name === "presence" && el.attrs.id === "sub1");
    assert.equal(error.attrs.type, "error");
    assert.equal(conditionOf(error), "policy-violation");
    assert.equal(itemsOf(await getRoster(a)).length, 2);
    a.close();
  } finally {
    await t.stop();
  }
});

Deno.test("rosters and pending requests survive a restart", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "lilt-roster-" });
  try {
    let t = await startTestServer({ users: USERS, modules: MODULES, dataDir });
    try {
      const a = await login(t, "alice", "a");
      await setRoster(a, "<item jid='bob@localhost' name='Bob'><group>Friends</group></item>");
      a.send("<presence to='bob@localhost' type='subscribe'/>");
      await settle(a);
      a.close();
    } finally {
      await t.stop();
    }
    t = await startTestServer({ users: USERS, modules: MODULES, dataDir });
    try {
      const a = await login(t, "alice", "a", { presence: false });
      assert.deepEqual(itemsOf(await getRoster(a)), [
        {
          jid: "bob@localhost",
          subscription: "none",
          ask: "subscribe",
          name: "Bob",
          groups: ["Friends"],
        },
      ]);
      const b = await login(t, "bob", "b", { presence: false });
      b.send("<presence/>");
      const pending = await b.next((el) => el.attrs.type === "subscribe");
      assert.equal(pending.attrs.from, "alice@localhost");
      b.send("<presence to='alice@localhost' type='subscribed'/>");
      await settle(b, a);
      assert.deepEqual(pushesOf(a), [
        { jid: "bob@localhost", subscription: "to", name: "Bob", groups: ["Friends"] },
      ]);
      for (const c of [a, b]) c.close();
    } finally {
      await t.stop();
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
});

Deno.test("roster items are in the jabber:iq:roster namespace on the wire", async () => {
  const t = await startTestServer({
    users: { alice: "pw" },
    modules: ["disco", "ping", "roster", "presence"],
  });
  try {
    const { client } = await RawClient.login(t.port, "alice", "pw");
    client.send("<iq type='get' id='r0'><query xmlns='jabber:iq:roster'/></iq>");
    await client.next((el) => el.attrs.id === "r0");
    client.send(
      "<iq type='set' id='r1'><query xmlns='jabber:iq:roster'><item jid='bob@localhost'/></query></iq>",
    );
    const push = await client.next((el) => el.name === "iq" && el.attrs.type === "set");
    assert.equal(push.getChild("query")!.getChild("item")!.ns, "jabber:iq:roster");
    client.send("<iq type='get' id='r2'><query xmlns='jabber:iq:roster'/></iq>");
    const result = await client.next((el) => el.attrs.id === "r2");
    assert.equal(result.getChild("query")!.getChild("item")!.ns, "jabber:iq:roster");
    assert.ok(!client.text.includes("<item xmlns='jabber:client'"));
    client.close();
  } finally {
    await t.stop();
  }
});
