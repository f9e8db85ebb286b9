// XEP-0191 blocking over the wire: the list itself (get, block, unblock, pushes, persistence)
// and its enforcement on stanzas from and to blocked JIDs.

import assert from "node:assert/strict";
import type { Element } from "../../core/xml/element.ts";
import { conditionOf, RawClient, roundTrip } from "../helpers/raw_client.ts";
import { startTestServer, type TestServerOptions } from "../helpers/test_server.ts";

const NS_BLOCKING = "urn:xmpp:blocking";
const NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";
const MODULES = ["disco", "ping", "roster", "presence", "blocklist"];
const USERS = { alice: "pw", bob: "pw", carol: "pw" };

function start(options: TestServerOptions = {}) {
  return startTestServer({ modules: MODULES, users: USERS, ...options });
}

/** True when the client got a stanza with this id (after a round trip of its own). */
async function got(client: RawClient, id: string): Promise<boolean> {
  await roundTrip(client);
  return client.received.some((el) => el.attrs.id === id);
}

/** Sends an iq and returns its answer. */
async function ask(client: RawClient, xml: string): Promise<Element> {
  const id = `iq-${crypto.randomUUID()}`;
  client.send(xml.replace("<iq ", `<iq id='${id}' `));
  return await client.next((el) => el.name === "iq" && el.attrs.id === id);
}

async function blocklistOf(client: RawClient): Promise<string[]> {
  const answer = await ask(client, `<iq type='get'><blocklist xmlns='${NS_BLOCKING}'/></iq>`);
  assert.equal(answer.attrs.type, "result");
  const list = answer.getChild("blocklist", NS_BLOCKING)!;
  return list.getChildren("item").map((item) => item.attrs.jid).sort();
}

async function block(client: RawClient, ...jids: string[]): Promise<Element> {
  const items = jids.map((jid) => `<item jid='${jid}'/>`).join("");
  return await ask(client, `<iq type='set'><block xmlns='${NS_BLOCKING}'>${items}</block></iq>`);
}

async function unblock(client: RawClient, ...jids: string[]): Promise<Element> {
  const items = jids.map((jid) => `<item jid='${jid}'/>`).join("");
  return await ask(
    client,
    `<iq type='set'><unblock xmlns='${NS_BLOCKING}'>${items}</unblock></iq>`,
  );
}

/** The next blocking push a client receives, as [command, jids]; answers it like a client. */
async function nextPush(client: RawClient): Promise<[string, string[]]> {
  const push = await client.next((el) =>
    el.name === "iq" && el.attrs.type === "set" && el.firstElement()?.ns === NS_BLOCKING
  );
  client.send(`<iq type='result' id='${push.attrs.id}'/>`);
  const command = push.firstElement()!;
  return [command.name, command.getChildren("item").map((item) => item.attrs.jid)];
}

function pushesOf(client: RawClient): Element[] {
  return client.received.filter((el) =>
    el.name === "iq" && el.attrs.type === "set" && el.firstElement()?.ns === NS_BLOCKING
  );
}

Deno.test("block, unblock and unblock-all update the list and push to interested resources", async () => {
  const t = await start();
  try {
    const { client: one } = await RawClient.login(t.port, "alice", "pw", "one");
    const { client: two } = await RawClient.login(t.port, "alice", "pw", "two");
    const { client: quiet } = await RawClient.login(t.port, "alice", "pw", "quiet");
    assert.deepEqual(await blocklistOf(one), []);
    assert.deepEqual(await blocklistOf(two), []);

    const blocked = await block(one, "Bob@LocalHost", "evil.example");
    assert.equal(blocked.attrs.type, "result");
    assert.equal(blocked.firstElement(), undefined);
    assert.deepEqual(await nextPush(one), ["block", ["bob@localhost", "evil.example"]]);
    assert.deepEqual(await nextPush(two), ["block", ["bob@localhost", "evil.example"]]);
    assert.deepEqual(await blocklistOf(two), ["bob@localhost", "evil.example"]);

    const unblocked = await unblock(two, "evil.example");
    assert.equal(unblocked.attrs.type, "result");
    assert.deepEqual(await nextPush(one), ["unblock", ["evil.example"]]);
    assert.deepEqual(await nextPush(two), ["unblock", ["evil.example"]]);
    assert.deepEqual(await blocklistOf(one), ["bob@localhost"]);

    await block(one, "carol@localhost");
    await nextPush(one);
    await nextPush(two);
    assert.equal((await unblock(one)).attrs.type, "result");
    assert.deepEqual(await nextPush(one), ["unblock", []]);
    assert.deepEqual(await nextPush(two), ["unblock", []]);
    assert.deepEqual(await blocklistOf(one), []);

    await roundTrip(quiet);
    assert.deepEqual(pushesOf(quiet), [], "no pushes for a resource that never asked");
    for (const c of [one, two, quiet]) c.close();
  } finally {
    await t.stop();
  }
});

Deno.test("a block without items or with a bad JID is refused", async () => {
  const t = await start();
  try {
    const { client } = await RawClient.login(t.port, "alice", "pw");
    const empty = await ask(client, `<iq type='set'><block xmlns='${NS_BLOCKING}'/></iq>`);
    assert.equal(empty.attrs.type, "error");
    assert.equal(conditionOf(empty), "bad-request");
    const bad = await block(client, "a@b@c");
    assert.equal(conditionOf(bad), "jid-malformed");
    const missing = await ask(
      client,
      `<iq type='set'><block xmlns='${NS_BLOCKING}'><item/></block></iq>`,
    );
    assert.equal(conditionOf(missing), "bad-request");
    assert.deepEqual(await blocklistOf(client), []);

    client.send(
      "<iq type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    );
    const disco = await client.next((el) => el.attrs.id === "d1");
    const features = disco.getChild("query")!.getChildren("feature").map((f) => f.attrs.var);
    assert.ok(features.includes(NS_BLOCKING), features.join(", "));
    client.close();
  } finally {
    await t.stop();
  }
});

Deno.test("nothing from a blocked JID arrives, and nothing reaches it", async () => {
  const t = await start();
  try {
    const { client: alice } = await RawClient.login(t.port, "alice", "pw", "a");
    const { client: bob } = await RawClient.login(t.port, "bob", "pw", "b");
    alice.send("<presence/>");
    await alice.next((el) => el.name === "presence");
    await block(alice, "bob@localhost");

    // Inbound: messages and presence vanish silently; iq get/set get service-unavailable.
    bob.send("<message to='alice@localhost' type='chat' id='in1'><body>hi</body></message>");
    bob.send("<message to='alice@localhost/a' type='chat' id='in2'><body>hi</body></message>");
    bob.send("<presence to='alice@localhost' type='subscribe' id='in3'/>");
    bob.send("<presence to='alice@localhost/a' id='in4'/>");
    const iq = await ask(
      bob,
      "<iq type='get' to='alice@localhost/a'><query xmlns='jabber:iq:version'/></iq>",
    );
    assert.equal(conditionOf(iq), "service-unavailable");
    for (const id of ["in1", "in2", "in3", "in4"]) {
      assert.equal(await got(alice, id), false, id);
      assert.equal(await got(bob, id), false, `no answer to ${id}`);
    }

    // Outbound: not-acceptable with <blocked/>; presence is dropped.
    alice.send("<message to='bob@localhost' type='chat' id='out1'><body>psst</body></message>");
    const refused = await alice.next((el) => el.attrs.id === "out1");
    assert.equal(refused.attrs.type, "error");
    assert.equal(refused.attrs.from, "bob@localhost");
    assert.equal(conditionOf(refused), "not-acceptable");
    assert.equal(refused.getChild("error")!.attrs.type, "cancel");
    assert.ok(refused.getChild("error")!.getChild("blocked", "urn:xmpp:blocking:errors"));
    assert.equal(refused.getChildText("body"), "psst");
    const outIq = await ask(
      alice,
      "<iq type='get' to='bob@localhost/b'><query xmlns='jabber:iq:version'/></iq>",
    );
    assert.equal(conditionOf(outIq), "not-acceptable");
    assert.ok(outIq.getChild("error")!.getChild("blocked", "urn:xmpp:blocking:errors"));
    alice.send("<presence to='bob@localhost/b' id='out2'/>");
    assert.equal(await got(bob, "out1"), false);
    assert.equal(await got(bob, "out2"), false);
    assert.equal(await got(alice, "out2"), false, "no error for presence");

    // Unblocking restores delivery both ways.
    await unblock(alice, "bob@localhost");
    bob.send("<message to='alice@localhost' type='chat' id='back1'><body>hi</body></message>");
    await alice.next((el) => el.attrs.id === "back1");
    alice.send("<message to='bob@localhost/b' type='chat' id='back2'><body>hi</body></message>");
    await bob.next((el) => el.attrs.id === "back2");
    for (const c of [alice, bob]) c.close();
  } finally {
    await t.stop();
  }
});

Deno.test("with bounce_blocked_messages a blocked sender gets service-unavailable", async () => {
  const t = await start({ hostToml: "bounce_blocked_messages = true" });
  try {
    const { client: alice } = await RawClient.login(t.port, "alice", "pw", "a");
    const { client: bob } = await RawClient.login(t.port, "bob", "pw", "b");
    alice.send("<presence/>");
    await alice.next((el) => el.name === "presence");
    await block(alice, "bob@localhost");
    bob.send("<message to='alice@localhost' type='chat' id='m1'><body>hi</body></message>");
    const bounce = await bob.next((el) => el.attrs.id === "m1");
    assert.equal(bounce.attrs.type, "error");
    assert.equal(conditionOf(bounce), "service-unavailable");
    assert.equal(await got(alice, "m1"), false);
    // Errors are never answered with errors.
    bob.send(
      "<message to='alice@localhost/a' type='error' id='m2'><error type='cancel'>" +
        `<item-not-found xmlns='${NS_STANZAS}'/></error></message>`,
    );
    assert.equal(await got(alice, "m2"), false);
    assert.equal(await got(bob, "m2"), false);
    for (const c of [alice, bob]) c.close();
  } finally {
    await t.stop();
  }
});

Deno.test("a full JID blocks one resource, a domain blocks everyone on it", async () => {
  const t = await start();
  try {
    const { client: alice } = await RawClient.login(t.port, "alice", "pw", "a");
    const { client: bobB } = await RawClient.login(t.port, "bob", "pw", "b");
    const { client: bobC } = await RawClient.login(t.port, "bob", "pw", "c");
    const { client: carol } = await RawClient.login(t.port, "carol", "pw", "x");
    await block(alice, "bob@localhost/b");
    bobB.send("<message to='alice@localhost/a' type='chat' id='f1'><body>1</body></message>");
    bobC.send("<message to='alice@localhost/a' type='chat' id='f2'><body>2</body></message>");
    assert.equal(await got(alice, "f1"), false);
    await alice.next((el) => el.attrs.id === "f2");

    await block(alice, "localhost");
    carol.send("<message to='alice@localhost/a' type='chat' id='f3'><body>3</body></message>");
    assert.equal(await got(alice, "f3"), false);
    // The server itself still answers (a ping to the blocked domain is not refused).
    const ping = await ask(
      alice,
      "<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
    );
    assert.equal(ping.attrs.type, "result");
    // ... and the account's own resources still reach each other.
    const { client: other } = await RawClient.login(t.port, "alice", "pw", "other");
    other.send("<message to='alice@localhost/a' type='chat' id='f4'><body>4</body></message>");
    await alice.next((el) => el.attrs.id === "f4");
    for (const c of [alice, bobB, bobC, carol, other]) c.close();
  } finally {
    await t.stop();
  }
});

Deno.test("blocking and unblocking a subscribed contact updates presence both ways", async () => {
  const t = await start();
  try {
    // alice and bob share a mutual subscription; carol is not in alice's roster.
    const rosters = t.server.storage.map("localhost", "roster");
    rosters.set("alice", "bob@localhost", { groups: [], subscription: "both" });
    rosters.set("bob", "alice@localhost", { groups: [], subscription: "both" });
    const { client: alice } = await RawClient.login(t.port, "alice", "pw", "a");
    const { client: bob } = await RawClient.login(t.port, "bob", "pw", "b");
    const { client: carol } = await RawClient.login(t.port, "carol", "pw", "c");
    for (const c of [alice, bob, carol]) {
      c.send("<presence><show>away</show></presence>");
      await c.next((el) => el.name === "presence");
    }
    for (const c of [alice, bob, carol]) await roundTrip(c);
    const since = (c: RawClient, mark: number) =>
      c.received.slice(mark).filter((el) => el.name === "presence");
    let marks = [alice, bob, carol].map((c) => c.received.length);

    await block(alice, "bob@localhost", "carol@localhost");
    const toBob = await bob.next((el) => el.name === "presence" && el.attrs.type === "unavailable");
    assert.equal(toBob.attrs.from, "alice@localhost/a");
    const toAlice = await alice.next((el) =>
      el.name === "presence" && el.attrs.type === "unavailable" &&
      el.attrs.from === "bob@localhost"
    );
    assert.equal(toAlice.attrs.to, "alice@localhost/a");
    for (const c of [alice, bob, carol]) await roundTrip(c);
    assert.equal(since(alice, marks[0]).length, 1, "nothing about carol");
    assert.equal(since(bob, marks[1]).length, 1);
    assert.deepEqual(since(carol, marks[2]), [], "carol may not see alice's presence");

    // While blocked, presence changes do not reach bob (nor carol).
    alice.send("<presence><show>dnd</show></presence>");
    bob.send("<presence><show>chat</show></presence>");
    for (const c of [alice, bob, carol]) await roundTrip(c);
    assert.equal(
      since(bob, marks[1]).filter((el) => el.attrs.from === "alice@localhost/a").length,
      1,
    );
    assert.equal(
      since(alice, marks[0]).filter((el) => el.attrs.from === "bob@localhost/b").length,
      0,
    );

    // Unblocking sends bob alice's current presence again; carol still gets nothing.
    marks = [alice, bob, carol].map((c) => c.received.length);
    await unblock(alice);
    const back = await bob.waitUntil(() =>
      since(bob, marks[1]).find((el) =>
        el.attrs.from === "alice@localhost/a" && el.attrs.type === undefined
      )
    );
    assert.equal(back.getChildText("show"), "dnd");
    // ... and alice asks for bob's presence again (a probe the presence module answers).
    const bobAgain = await alice.waitUntil(() =>
      since(alice, marks[0]).find((el) => el.attrs.from === "bob@localhost/b")
    );
    assert.equal(bobAgain.getChildText("show"), "chat");
    for (const c of [alice, bob, carol]) await roundTrip(c);
    assert.deepEqual(since(carol, marks[2]), []);
    for (const c of [alice, bob, carol]) c.close();
  } finally {
    await t.stop();
  }
});

Deno.test("the blocklist survives a server restart", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "lilt-test-blocklist-" });
  try {
    const first = await start({ dataDir });
    try {
      const { client } = await RawClient.login(first.port, "alice", "pw");
      await block(client, "bob@localhost", "carol@localhost");
      await unblock(client, "carol@localhost");
      client.close();
    } finally {
      await first.stop();
    }
    const second = await start({ dataDir });
    try {
      const { client: alice } = await RawClient.login(second.port, "alice", "pw", "a");
      const { client: bob } = await RawClient.login(second.port, "bob", "pw", "b");
      assert.deepEqual(await blocklistOf(alice), ["bob@localhost"]);
      bob.send("<message to='alice@localhost/a' type='chat' id='r1'><body>hi</body></message>");
      assert.equal(await got(alice, "r1"), false);
      for (const c of [alice, bob]) c.close();
    } finally {
      await second.stop();
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
