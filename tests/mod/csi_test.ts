// XEP-0352 client state indication over real sockets: what an inactive client is not sent at
// once (presence updates, only the latest per contact; chat states), what releases it (an
// important stanza, <active/>, the bound), and how it meets binding, Bind2, stream management
// and module unloading.

import assert from "node:assert/strict";
import { C2SSession } from "../../core/net/c2s.ts";
import { Element } from "../../core/xml/element.ts";
import { parseElement } from "../../core/xml/parser.ts";
import { isImportant } from "../../mod/csi.ts";
import { RawClient, roundTrip } from "../helpers/raw_client.ts";
import { startTestServer, type TestServer } from "../helpers/test_server.ts";

const NS_CSI = "urn:xmpp:csi:0";
const NS_SM = "urn:xmpp:sm:3";
const NS_CHATSTATES = "http://jabber.org/protocol/chatstates";
const MODULES = ["disco", "roster", "presence", "offline", "carbons", "smacks", "csi"];
const INACTIVE = `<inactive xmlns='${NS_CSI}'/>`;
const ACTIVE = `<active xmlns='${NS_CSI}'/>`;

function server(hostToml = ""): Promise<TestServer> {
  return startTestServer({
    modules: MODULES,
    users: { alice: "pw", bob: "pw", carol: "pw" },
    hostToml,
  });
}

/** The server-side session bound to a full JID. */
function sessionOf(t: TestServer, jid: string): C2SSession {
  const session = t.server.sessions.all().find((s) => s.jid?.toString() === jid);
  assert.ok(session instanceof C2SSession, `a session for ${jid}`);
  return session;
}

/** What `c2s show` prints in the csi column for a session. */
function csiInfo(t: TestServer, jid: string): string | undefined {
  return sessionOf(t, jid).info.get("csi")?.();
}

/** Connects and authenticates without binding; returns the post-authentication features. */
async function authenticated(t: TestServer, user: string): Promise<{
  client: RawClient;
  features: Element;
  before: Element;
}> {
  const client = await RawClient.connect(t.port);
  await client.open("localhost");
  const before = await client.starttls("localhost");
  client.send(
    `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${
      btoa(`\0${user}\0pw`)
    }</auth>`,
  );
  assert.equal((await client.next((el) => el.name === "success")).name, "success");
  client.restart();
  const features = await client.open("localhost");
  return { client, features, before };
}

/** Logs in, binds `resource` and tells the server the client is inactive. */
async function inactiveClient(t: TestServer, user: string, resource: string): Promise<RawClient> {
  const { client } = await RawClient.login(t.port, user, "pw", resource);
  client.send(INACTIVE);
  await roundTrip(client); // an iq is important: it goes out at once
  return client;
}

/** Waits until the server has noticed a cut connection (the session is detached). */
async function detached(session: C2SSession): Promise<void> {
  for (let i = 0; i < 500 && session.transport !== undefined; i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.equal(session.transport, undefined, "the server noticed the cut");
}

function presence(to: string, show: string): string {
  return `<presence to='${to}'><show>${show}</show></presence>`;
}

function chatState(to: string, state: string): string {
  return `<message to='${to}' type='chat'><${state} xmlns='${NS_CHATSTATES}'/></message>`;
}

/** What the client was sent, as "kind from detail" lines (pings and bind excluded). */
function seen(client: RawClient): string[] {
  return client.received.filter((el) => el.name === "presence" || el.name === "message").map(
    (el) => {
      const detail = el.getChildText("show") ?? el.getChildText("body") ??
        el.elements().find((c) => c.ns === NS_CHATSTATES)?.name ?? el.attrs.type ?? "";
      return `${el.name} ${el.attrs.from} ${detail}`;
    },
  );
}

Deno.test("csi is offered after authentication only", async () => {
  const t = await server();
  try {
    const { client, features, before } = await authenticated(t, "alice");
    assert.equal(before.getChild("csi", NS_CSI), undefined, "not before authentication");
    assert.ok(features.getChild("csi", NS_CSI), "<csi/> in the post-auth features");
    client.close();
  } finally {
    await t.stop();
  }
});

Deno.test("presence is held while inactive and only the last per contact arrives on <active/>", async () => {
  const t = await server();
  try {
    const alice = await inactiveClient(t, "alice", "phone");
    assert.equal(csiInfo(t, "alice@localhost/phone"), "inactive, 0 held");
    const { client: bob } = await RawClient.login(t.port, "bob", "pw", "b");
    const { client: carol } = await RawClient.login(t.port, "carol", "pw", "c");
    bob.send(presence("alice@localhost/phone", "away"));
    await roundTrip(bob);
    carol.send(presence("alice@localhost/phone", "dnd"));
    await roundTrip(carol);
    bob.send(presence("alice@localhost/phone", "xa"));
    await roundTrip(bob);
    // The server has routed all three; two are held (bob's first was replaced).
    assert.equal(csiInfo(t, "alice@localhost/phone"), "inactive, 2 held");
    alice.send(ACTIVE);
    await roundTrip(alice);
    assert.deepEqual(seen(alice), [
      "presence carol@localhost/c dnd",
      "presence bob@localhost/b xa",
    ]);
    assert.equal(csiInfo(t, "alice@localhost/phone"), "active");
    // Active again: presence goes out at once.
    bob.send(presence("alice@localhost/phone", "chat"));
    await alice.next((el) => el.getChildText("show") === "chat");
    alice.close();
    bob.close();
    carol.close();
  } finally {
    await t.stop();
  }
});

Deno.test("a chat message with a body goes out after what was held, in order", async () => {
  const t = await server();
  try {
    const alice = await inactiveClient(t, "alice", "phone");
    const { client: bob } = await RawClient.login(t.port, "bob", "pw", "b");
    const to = "alice@localhost/phone";
    bob.send(presence(to, "away"));
    bob.send(chatState(to, "composing"));
    bob.send(chatState(to, "paused"));
    await roundTrip(bob);
    assert.equal(csiInfo(t, to), "inactive, 3 held", "chat states are held");
    bob.send(`<message to='${to}' type='chat'><body>hello</body></message>`);
    await alice.next((el) => el.getChildText("body") === "hello");
    assert.deepEqual(seen(alice), [
      "presence bob@localhost/b away",
      "message bob@localhost/b composing",
      "message bob@localhost/b paused",
      "message bob@localhost/b hello",
    ]);
    // Still inactive: the next chat state waits again.
    bob.send(chatState(to, "active"));
    await roundTrip(bob);
    assert.equal(csiInfo(t, to), "inactive, 1 held");
    alice.close();
    bob.close();
  } finally {
    await t.stop();
  }
});

Deno.test("an encrypted message and a subscription request release what is held", async () => {
  const t = await server();
  try {
    const { client: alice } = await RawClient.login(t.port, "alice", "pw", "phone");
    alice.send("<presence/>"); // available: subscription requests reach this resource
    await alice.next((el) => el.name === "presence");
    alice.send(INACTIVE);
    await roundTrip(alice);
    const { client: bob } = await RawClient.login(t.port, "bob", "pw", "b");
    const to = "alice@localhost/phone";
    bob.send(chatState(to, "composing"));
    await roundTrip(bob);
    assert.equal(csiInfo(t, to), "inactive, 1 held");
    bob.send(
      `<message to='${to}' type='chat' id='omemo'>` +
        `<encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'/></encrypted>` +
        `</message>`,
    );
    await alice.next((el) => el.attrs.id === "omemo");
    assert.equal(csiInfo(t, to), "inactive, 0 held");
    bob.send(chatState(to, "paused"));
    await roundTrip(bob);
    assert.equal(csiInfo(t, to), "inactive, 1 held");
    bob.send("<presence to='alice@localhost' type='subscribe'/>");
    await alice.next((el) => el.attrs.type === "subscribe");
    assert.equal(csiInfo(t, to), "inactive, 0 held");
    const states = alice.received.filter((el) =>
      el.name === "message" || el.attrs.type === "subscribe"
    ).map((el) => el.attrs.id ?? el.elements()[0]?.name ?? el.attrs.type);
    assert.deepEqual(states, ["composing", "omemo", "paused", "subscribe"]);
    alice.close();
    bob.close();
  } finally {
    await t.stop();
  }
});

Deno.test("no more than csi_max_held_stanzas are held: one more sends them all", async () => {
  const t = await server("csi_max_held_stanzas = 3");
  try {
    const alice = await inactiveClient(t, "alice", "phone");
    const { client: bob } = await RawClient.login(t.port, "bob", "pw", "b");
    const to = "alice@localhost/phone";
    for (const state of ["composing", "paused", "composing"]) bob.send(chatState(to, state));
    await roundTrip(bob);
    assert.equal(csiInfo(t, to), "inactive, 3 held");
    bob.send(chatState(to, "gone"));
    await alice.next((el) => el.getChild("gone", NS_CHATSTATES) !== undefined);
    assert.deepEqual(seen(alice).map((line) => line.split(" ")[2]), [
      "composing",
      "paused",
      "composing",
      "gone",
    ]);
    assert.equal(csiInfo(t, to), "inactive, 0 held");
    alice.close();
    bob.close();
  } finally {
    await t.stop();
  }
});

Deno.test("<inactive/> before binding applies from the bind on", async () => {
  const t = await server();
  try {
    const { client } = await authenticated(t, "alice");
    client.send(INACTIVE);
    client.send(
      "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>" +
        "<resource>phone</resource></bind></iq>",
    );
    assert.equal((await client.next((el) => el.attrs.id === "b")).attrs.type, "result");
    const bob = await heldPresenceFromBob(t);
    client.close();
    bob.close();
  } finally {
    await t.stop();
  }
});

/** alice/phone is inactive with nothing held; bob's presence to it is then held. */
async function heldPresenceFromBob(t: TestServer): Promise<RawClient> {
  assert.equal(csiInfo(t, "alice@localhost/phone"), "inactive, 0 held");
  const { client: bob } = await RawClient.login(t.port, "bob", "pw", "b");
  bob.send(presence("alice@localhost/phone", "away"));
  await roundTrip(bob);
  assert.equal(csiInfo(t, "alice@localhost/phone"), "inactive, 1 held");
  return bob;
}

Deno.test("an unknown element in the csi namespace ends the stream", async () => {
  const t = await server();
  try {
    const { client } = await RawClient.login(t.port, "alice", "pw", "phone");
    client.send(`<csi xmlns='${NS_CSI}'/>`);
    const error = await client.next((el) => el.name === "error");
    assert.ok(error.getChild("unsupported-stanza-type"));
    await client.waitClosed();
  } finally {
    await t.stop();
  }
});

Deno.test("Bind2: csi is an inline feature, and an inline <inactive/> starts the session inactive", async () => {
  const t = await server();
  try {
    const host = t.server.hosts.get("localhost")!;
    const { client } = await RawClient.login(t.port, "alice", "pw", "phone");
    const session = sessionOf(t, "alice@localhost/phone");
    const inline = new Element("inline", { xmlns: "urn:xmpp:bind:0" });
    host.events.fire("bind2-inline-features", { session, inline, host });
    assert.ok(inline.getChildren("feature").some((f) => f.attrs.var === NS_CSI));

    const request = parseElement(`<bind xmlns='urn:xmpp:bind:0'>${INACTIVE}</bind>`);
    const bound = new Element("bound", { xmlns: "urn:xmpp:bind:0" });
    host.events.fire("bind2-bound", { session, request, bound, host });
    const bob = await heldPresenceFromBob(t);
    client.close();
    bob.close();
  } finally {
    await t.stop();
  }
});

Deno.test("held stanzas are not counted by stream management; a resumed stream starts active", async () => {
  const t = await server();
  try {
    const { client } = await RawClient.login(t.port, "alice", "pw", "phone");
    client.send(`<enable xmlns='${NS_SM}' resume='true'/>`);
    const enabled = await client.next((el) => el.ns === NS_SM && el.name === "enabled");
    client.send(INACTIVE);
    const { client: bob } = await RawClient.login(t.port, "bob", "pw", "b");
    bob.send(presence("alice@localhost/phone", "away"));
    await roundTrip(bob);
    const jid = "alice@localhost/phone";
    assert.equal(csiInfo(t, jid), "inactive, 1 held");
    assert.match(sessionOf(t, jid).info.get("sm")!(), /, 0 unacked/);
    // The connection drops: what was held goes to stream management's queue.
    client.socket.destroy();
    const session = sessionOf(t, jid);
    await detached(session);
    assert.equal(csiInfo(t, jid), "active");
    assert.match(session.info.get("sm")!(), /, 1 unacked/);

    const { client: again } = await authenticated(t, "alice");
    again.send(`<resume xmlns='${NS_SM}' previd='${enabled.attrs.id}' h='0'/>`);
    await again.next((el) => el.ns === NS_SM && el.name === "resumed");
    await again.next((el) => el.getChildText("show") === "away");
    // Active on the new stream (XEP-0352 §5.2): the next presence is not held.
    bob.send(presence(jid, "dnd"));
    await again.next((el) => el.getChildText("show") === "dnd");
    assert.equal(csiInfo(t, jid), "active");
    again.close();
    bob.close();
  } finally {
    await t.stop();
  }
});

Deno.test("resumed before the cut was noticed: the next stanza goes out after what was held", async () => {
  const t = await server();
  try {
    const { client: old } = await RawClient.login(t.port, "alice", "pw", "phone");
    old.send(`<enable xmlns='${NS_SM}' resume='true'/>`);
    const enabled = await old.next((el) => el.ns === NS_SM && el.name === "enabled");
    old.send(INACTIVE);
    const { client: bob } = await RawClient.login(t.port, "bob", "pw", "b");
    const jid = "alice@localhost/phone";
    bob.send(presence(jid, "away"));
    await roundTrip(bob);
    assert.equal(csiInfo(t, jid), "inactive, 1 held");
    // The old connection is still open when the client resumes on a new one.
    const { client: again } = await authenticated(t, "alice");
    again.send(`<resume xmlns='${NS_SM}' previd='${enabled.attrs.id}' h='0'/>`);
    await again.next((el) => el.ns === NS_SM && el.name === "resumed");
    await old.waitClosed();
    bob.send(presence(jid, "dnd"));
    await again.next((el) => el.getChildText("show") === "dnd");
    assert.deepEqual(seen(again), [
      "presence bob@localhost/b away",
      "presence bob@localhost/b dnd",
    ]);
    assert.equal(csiInfo(t, jid), "active");
    again.close();
    bob.close();
  } finally {
    await t.stop();
  }
});

Deno.test("unloading the module sends what is held and shows no state", async () => {
  const t = await server();
  try {
    const alice = await inactiveClient(t, "alice", "phone");
    const { client: bob } = await RawClient.login(t.port, "bob", "pw", "b");
    bob.send(presence("alice@localhost/phone", "away"));
    await roundTrip(bob);
    assert.equal(csiInfo(t, "alice@localhost/phone"), "inactive, 1 held");
    assert.equal(t.server.modules.unload(t.server.hosts.get("localhost")!, "csi"), true);
    await alice.next((el) => el.getChildText("show") === "away");
    assert.equal(csiInfo(t, "alice@localhost/phone"), undefined);
    // Nothing holds presence any more.
    bob.send(presence("alice@localhost/phone", "dnd"));
    await alice.next((el) => el.getChildText("show") === "dnd");
    alice.close();
    bob.close();
  } finally {
    await t.stop();
  }
});

Deno.test("what is important to an inactive client", () => {
  const important = (xml: string) => isImportant(parseElement(xml));
  // Urgent.
  assert.ok(important("<iq type='result' id='1'/>"));
  assert.ok(important("<message type='error'><error type='cancel'/></message>"));
  assert.ok(important("<message><body>hi</body></message>"));
  assert.ok(important("<message type='groupchat'><subject>topic</subject></message>"));
  for (const ns of ["urn:xmpp:omemo:2", "eu.siacs.conversations.axolotl"]) {
    assert.ok(important(`<message><encrypted xmlns='${ns}'/></message>`), ns);
  }
  assert.ok(important("<message><x xmlns='jabber:x:encrypted'>...</x></message>"));
  assert.ok(important("<message><openpgp xmlns='urn:xmpp:openpgp:0'>...</openpgp></message>"));
  assert.ok(important("<message><propose xmlns='urn:xmpp:jingle-message:0' id='c'/></message>"));
  for (const type of ["subscribe", "subscribed", "unsubscribe", "unsubscribed", "error"]) {
    assert.ok(important(`<presence type='${type}'/>`), type);
  }
  assert.ok(important(
    "<presence from='room@muc/me'><x xmlns='http://jabber.org/protocol/muc#user'>" +
      "<status code='110'/></x></presence>",
  ));
  assert.ok(important(
    "<message><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>" +
      "<message xmlns='jabber:client'><body>copy</body></message></forwarded></received></message>",
  ));
  // Held.
  assert.ok(!important("<presence/>"));
  assert.ok(!important("<presence type='unavailable'/>"));
  assert.ok(!important(`<message><composing xmlns='${NS_CHATSTATES}'/></message>`));
  assert.ok(!important("<message><received xmlns='urn:xmpp:receipts' id='m'/></message>"));
  assert.ok(!important("<message><displayed xmlns='urn:xmpp:chat-markers:0' id='m'/></message>"));
  assert.ok(
    !important(
      "<message type='headline'><event xmlns='http://jabber.org/protocol/pubsub#event'/></message>",
    ),
  );
  assert.ok(
    !important(
      "<message><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>" +
        `<message xmlns='jabber:client'><paused xmlns='${NS_CHATSTATES}'/></message>` +
        "</forwarded></sent></message>",
    ),
  );
});
