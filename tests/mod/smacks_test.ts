// XEP-0198 stream management over real sockets: acknowledgements both ways, resumption on a new
// connection with the unacknowledged stanzas sent again, hibernation limits and expiry (what was
// never acknowledged goes to offline storage), and the errors for wrong or hostile input.

import assert from "node:assert/strict";
import { C2SSession } from "../../core/net/c2s.ts";
import type { Element } from "../../core/xml/element.ts";
import { newlyAcknowledged } from "../../mod/smacks.ts";
import { c2sCommands } from "../../shell/sections/c2s.ts";
import { RawClient } from "../helpers/raw_client.ts";
import { startTestServer, type TestServer } from "../helpers/test_server.ts";
import { presenceOf } from "../../core/presence_state.ts";

const NS_SM = "urn:xmpp:sm:3";
const NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";
const NS_CARBONS = "urn:xmpp:carbons:2";
const MODULES = ["disco", "roster", "presence", "offline", "carbons", "smacks"];

function server(hostToml = ""): Promise<TestServer> {
  return startTestServer({
    modules: MODULES,
    users: { alice: "pw", bob: "pw", eve: "pw" },
    hostToml,
  });
}

const isSm = (name: string) => (el: Element) => el.name === name && el.ns === NS_SM;

/** Logs in and binds, then enables stream management; returns the resumption id. */
async function managed(
  t: TestServer,
  user: string,
  resource: string,
  enable = "<enable xmlns='urn:xmpp:sm:3' resume='true'/>",
): Promise<{ client: RawClient; id: string | undefined }> {
  const { client } = await RawClient.login(t.port, user, "pw", resource);
  client.send(enable);
  const enabled = await client.next((el) => el.ns === NS_SM);
  assert.equal(enabled.name, "enabled");
  return { client, id: enabled.attrs.id };
}

/** Connects and authenticates without binding (where a resumption happens). */
async function authenticated(t: TestServer, user: string): Promise<{
  client: RawClient;
  features: Element;
}> {
  const client = await RawClient.connect(t.port);
  await client.open("localhost");
  await client.starttls("localhost");
  const token = btoa(`\0${user}\0pw`);
  client.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${token}</auth>`);
  const outcome = await client.next((el) => el.name === "success" || el.name === "failure");
  assert.equal(outcome.name, "success");
  client.restart();
  const features = await client.open("localhost");
  return { client, features };
}

/** How many stanzas the client received since stream management was enabled (its `h`). */
function handled(client: RawClient): number {
  const start = client.received.findIndex((el) => el.name === "enabled" && el.ns === NS_SM);
  return client.received.slice(start + 1).filter((el) =>
    el.name === "message" || el.name === "presence" || el.name === "iq"
  ).length;
}

/** Cuts the connection without closing the stream (a phone losing its network). */
function cut(client: RawClient): void {
  client.socket.destroy();
}

/** Waits until the server has noticed the cut (the session hibernates). */
async function hibernating(t: TestServer, jid: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const session = t.server.sessions.all().find((s) => s.jid?.toString() === jid);
    const c2s = session as { transport?: unknown } | undefined;
    if (c2s && c2s.transport === undefined) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`${jid} did not hibernate`);
}

/** Cuts alice/phone's connection and waits until its session hibernates. */
async function drop(t: TestServer, client: RawClient): Promise<void> {
  cut(client);
  await hibernating(t, "alice@localhost/phone");
}

/** A new connection authenticated as alice that sends `<resume/>` for `id` with `h`. */
async function resumeAs(t: TestServer, id: string | undefined, h: number | string) {
  const { client } = await authenticated(t, "alice");
  client.send(resumeElement(id, h));
  return client;
}

function resumeElement(id: string | undefined, h: number | string): string {
  return `<resume xmlns='urn:xmpp:sm:3' previd='${id}' h='${h}'/>`;
}

function chat(to: string, body: string, id = crypto.randomUUID()): string {
  return `<message to='${to}' type='chat' id='${id}'><body>${body}</body></message>`;
}

Deno.test("sm is offered after authentication, and enable before binding fails cleanly", async () => {
  const t = await server();
  try {
    const { client, features } = await authenticated(t, "alice");
    assert.ok(features.getChild("sm", NS_SM), "<sm/> in the post-auth features");
    client.send("<enable xmlns='urn:xmpp:sm:3'/>");
    const failed = await client.next(isSm("failed"));
    assert.ok(failed.getChild("unexpected-request", NS_STANZAS));
    // The stream is still usable: binding works.
    client.send(
      "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>",
    );
    const bound = await client.next((el) => el.attrs.id === "b");
    assert.equal(bound.attrs.type, "result");
    client.close();
  } finally {
    await t.stop();
  }
});

Deno.test("the server counts what it receives and asks for acks of what it sends", async () => {
  const t = await server("smacks_max_unacked_stanzas = 3");
  try {
    const { client, id } = await managed(t, "alice", "phone");
    assert.ok(id, "a resumption id");
    const { client: bob } = await RawClient.login(t.port, "bob", "pw", "b");
    // Three stanzas from the client, then <r/>: h is 3.
    for (let i = 0; i < 3; i++) {
      client.send(`<iq type='get' id='p${i}'><ping xmlns='urn:xmpp:ping'/></iq>`);
    }
    client.send("<r xmlns='urn:xmpp:sm:3'/>");
    const a = await client.next(isSm("a"));
    assert.equal(a.attrs.h, "3");
    // Three stanzas to the client: the server asks for an ack.
    for (let i = 0; i < 3; i++) bob.send(chat("alice@localhost/phone", `m${i}`));
    await client.next((el) => el.getChildText("body") === "m2");
    await client.next(isSm("r"));
    assert.equal(handled(client), 6); // 3 ping errors + 3 messages
    client.send("<a xmlns='urn:xmpp:sm:3' h='6'/>");
    // Acknowledging more than was sent is a stream error.
    bob.send(chat("alice@localhost/phone", "one more"));
    await client.next((el) => el.name === "message" && el.getChildText("body") === "one more");
    client.send("<a xmlns='urn:xmpp:sm:3' h='99'/>");
    const error = await client.next((el) => el.name === "error");
    assert.ok(error.getChild("undefined-condition"));
    await client.waitClosed();
    bob.close();
  } finally {
    await t.stop();
  }
});

Deno.test("a cut connection is resumed and a message sent meanwhile arrives exactly once", async () => {
  const t = await server();
  try {
    const { client, id } = await managed(t, "alice", "phone");
    const { client: bob } = await RawClient.login(t.port, "bob", "pw", "b");
    client.send("<presence/>"); // available: messages to the bare JID come here too
    await client.next((el) => el.name === "presence");
    bob.send(chat("alice@localhost/phone", "before"));
    await client.next((el) => el.getChildText("body") === "before");
    const h = handled(client);
    client.send(`<a xmlns='urn:xmpp:sm:3' h='${h}'/>`);
    await drop(t, client);
    bob.send(chat("alice@localhost/phone", "while away"));
    bob.send(chat("alice@localhost", "to the bare JID"));

    const again = await resumeAs(t, id, h);
    const resumed = await again.next((el) => el.ns === NS_SM);
    assert.equal(resumed.name, "resumed");
    assert.equal(resumed.attrs.previd, id);
    const bodies = async () => {
      await new Promise((resolve) => setTimeout(resolve, 300));
      return again.received.filter((el) => el.name === "message").map((el) =>
        el.getChildText("body")
      );
    };
    assert.deepEqual(await bodies(), ["while away", "to the bare JID"]);
    // The resumed session is the same one: same JID, reachable, no second copy later.
    bob.send(chat("alice@localhost/phone", "after"));
    await again.next((el) => el.getChildText("body") === "after");
    assert.deepEqual(await bodies(), ["while away", "to the bare JID", "after"]);
    assert.equal(
      t.server.sessions.userSessions("localhost", "alice").length,
      1,
      "one session for alice",
    );
    again.close();
    bob.close();
  } finally {
    await t.stop();
  }
});

Deno.test("the unacknowledged stanzas are sent again after resumption, in order", async () => {
  const t = await server("smacks_max_unacked_stanzas = 100");
  try {
    const { client, id } = await managed(t, "alice", "phone");
    const { client: bob } = await RawClient.login(t.port, "bob", "pw", "b");
    for (let i = 1; i <= 4; i++) bob.send(chat("alice@localhost/phone", `m${i}`));
    await client.next((el) => el.getChildText("body") === "m4");
    await drop(t, client); // nothing acknowledged
    // The client says it handled the first two.
    const again = await resumeAs(t, id, 2);
    await again.next(isSm("resumed"));
    await again.next((el) => el.getChildText("body") === "m4");
    const bodies = again.received.filter((el) => el.name === "message").map((el) =>
      el.getChildText("body")
    );
    assert.deepEqual(bodies, ["m3", "m4"]);
    again.close();
    bob.close();
  } finally {
    await t.stop();
  }
});

Deno.test("resumption before the server noticed the cut moves the session to the new connection", async () => {
  const t = await server();
  try {
    const { client: old, id } = await managed(t, "alice", "phone");
    const again = await resumeAs(t, id, 0);
    await again.next(isSm("resumed"));
    await old.waitClosed(); // the old connection is dropped
    const { client: bob } = await RawClient.login(t.port, "bob", "pw", "b");
    bob.send(chat("alice@localhost/phone", "here"));
    await again.next((el) => el.getChildText("body") === "here");
    again.close();
    bob.close();
  } finally {
    await t.stop();
  }
});

Deno.test("another account cannot resume a session, and a wrong id fails with the stream usable", async () => {
  const t = await server();
  try {
    const { client, id } = await managed(t, "alice", "phone");
    await drop(t, client);
    const { client: eve } = await authenticated(t, "eve");
    eve.send(resumeElement(id, 0));
    const failed = await eve.next((el) => el.ns === NS_SM);
    assert.equal(failed.name, "failed");
    assert.ok(failed.getChild("item-not-found", NS_STANZAS));
    assert.equal(failed.attrs.h, undefined, "eve learns nothing of alice's session");
    // eve's stream goes on: she can bind.
    eve.send(
      "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>",
    );
    assert.equal((await eve.next((el) => el.attrs.id === "b")).attrs.type, "result");
    // alice still can.
    const again = await resumeAs(t, "not-an-id", 0);
    assert.equal((await again.next((el) => el.ns === NS_SM)).name, "failed");
    again.send(resumeElement(id, 0));
    assert.equal(
      (await again.next((el) => el.ns === NS_SM && el.name !== "failed")).name,
      "resumed",
    );
    eve.close();
    again.close();
  } finally {
    await t.stop();
  }
});

Deno.test("on expiry, unacknowledged messages go to offline storage and h is kept for <failed/>", async () => {
  const t = await server("smacks_hibernation_time = 1");
  try {
    const { client, id } = await managed(t, "alice", "phone");
    const { client: bob } = await RawClient.login(t.port, "bob", "pw", "b");
    bob.send("<presence/>");
    client.send("<presence/>");
    client.send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>");
    await client.next((el) => el.attrs.id === "r1");
    bob.send(chat("alice@localhost/phone", "never acked"));
    await client.next((el) => el.getChildText("body") === "never acked");
    await drop(t, client);
    bob.send(chat("alice@localhost/phone", "while hibernating"));
    // The hibernation runs out after 1 s.
    for (let i = 0; i < 300; i++) {
      if (t.server.sessions.userSessions("localhost", "alice").length === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal(t.server.sessions.userSessions("localhost", "alice").length, 0);
    // Resuming now fails, with the count of what the server had handled (presence + roster).
    const late = await resumeAs(t, id, 0);
    const failed = await late.next((el) => el.ns === NS_SM);
    assert.equal(failed.name, "failed");
    assert.equal(failed.attrs.h, "2");
    late.send(
      "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>",
    );
    await late.next((el) => el.attrs.id === "b");
    late.send("<presence/>");
    const first = await late.next((el) => el.getChildText("body") === "never acked");
    const second = await late.next((el) => el.getChildText("body") === "while hibernating");
    for (const message of [first, second]) {
      const delays = message.getChildren("delay", "urn:xmpp:delay");
      assert.equal(delays.length, 1, "one delay stamp");
      assert.equal(delays[0].attrs.from, "localhost");
    }
    late.close();
    bob.close();
  } finally {
    await t.stop();
  }
});

Deno.test("a session ended with a closing tag cannot be resumed", async () => {
  const t = await server();
  try {
    const { client, id } = await managed(t, "alice", "phone");
    client.close();
    for (let i = 0; i < 200; i++) {
      if (t.server.sessions.userSessions("localhost", "alice").length === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const again = await resumeAs(t, id, 0);
    const failed = await again.next((el) => el.ns === NS_SM);
    assert.equal(failed.name, "failed");
    assert.ok(failed.getChild("item-not-found", NS_STANZAS));
    again.close();
  } finally {
    await t.stop();
  }
});

Deno.test("resuming with an h beyond what was sent fails and ends the old session", async () => {
  const t = await server();
  try {
    const { client, id } = await managed(t, "alice", "phone");
    await drop(t, client);
    const again = await resumeAs(t, id, 5);
    const failed = await again.next((el) => el.ns === NS_SM);
    assert.equal(failed.name, "failed");
    assert.equal(t.server.sessions.userSessions("localhost", "alice").length, 0);
    again.close();
  } finally {
    await t.stop();
  }
});

Deno.test("a flood of <r/> without stanzas ends the stream with policy-violation", async () => {
  const t = await server();
  try {
    const { client } = await managed(t, "alice", "phone");
    client.send("<r xmlns='urn:xmpp:sm:3'/>".repeat(150));
    const error = await client.next((el) => el.name === "error");
    assert.ok(error.getChild("policy-violation"));
    await client.waitClosed();
  } finally {
    await t.stop();
  }
});

Deno.test("hibernating sessions are bounded per account: the oldest ends first", async () => {
  const t = await server("smacks_max_hibernated_sessions = 1");
  try {
    const { client: one, id: firstId } = await managed(t, "alice", "one");
    const { client: two, id: secondId } = await managed(t, "alice", "two");
    cut(one);
    await hibernating(t, "alice@localhost/one");
    cut(two);
    await hibernating(t, "alice@localhost/two");
    const resources = t.server.sessions.userSessions("localhost", "alice").map((s) =>
      s.jid?.resource
    );
    assert.deepEqual(resources, ["two"]);
    const again = await resumeAs(t, firstId, 0);
    assert.equal((await again.next((el) => el.ns === NS_SM)).name, "failed");
    again.send(resumeElement(secondId, 0));
    assert.equal(
      (await again.next((el) => el.ns === NS_SM && el.name !== "failed")).name,
      "resumed",
    );
    again.close();
  } finally {
    await t.stop();
  }
});

Deno.test("a resumed session keeps its carbons setting and its presence", async () => {
  const t = await server();
  try {
    const { client, id } = await managed(t, "alice", "phone");
    client.send(`<iq type='set' id='c'><enable xmlns='${NS_CARBONS}'/></iq>`);
    await client.next((el) => el.attrs.id === "c");
    client.send("<presence/>");
    await client.next((el) => el.name === "presence");
    const { client: desk } = await RawClient.login(t.port, "alice", "pw", "desk");
    const { client: bob } = await RawClient.login(t.port, "bob", "pw", "b");
    await new Promise((resolve) => setTimeout(resolve, 100));
    const h = handled(client);
    await drop(t, client);
    const again = await resumeAs(t, id, h);
    await again.next(isSm("resumed"));
    bob.send(chat("alice@localhost/desk", "to the desk"));
    await desk.next((el) => el.getChildText("body") === "to the desk");
    const carbon = await again.next((el) => el.getChild("received", NS_CARBONS) !== undefined);
    assert.equal(carbon.attrs.to, "alice@localhost/phone");
    const session = t.server.sessions.userSessions("localhost", "alice").find((s) =>
      s.jid?.resource === "phone"
    );
    assert.equal(session && presenceOf(session).available, true);
    again.close();
    desk.close();
    bob.close();
  } finally {
    await t.stop();
  }
});

Deno.test("acknowledgement counts wrap at 2^32", () => {
  const top = 2 ** 32;
  assert.equal(newlyAcknowledged(top - 2, 1, 5), 3);
  assert.equal(newlyAcknowledged(top - 2, top - 1, 5), 1);
  assert.equal(newlyAcknowledged(top - 2, top - 2, 5), 0);
  assert.equal(newlyAcknowledged(top - 2, 4, 5), undefined, "more than was sent");
  assert.equal(newlyAcknowledged(3, 2, 5), undefined, "less than already acknowledged");
});

Deno.test("the server's h wraps to 0 after 2^32 - 1 over the wire", async () => {
  const t = await server();
  try {
    const { client } = await managed(t, "alice", "phone");
    const session = t.server.sessions.userSessions("localhost", "alice")[0] as C2SSession;
    // As if 2^32 - 1 stanzas had been handled since <enable/>: two more make h wrap to 1.
    session.stanzasReceived += 2 ** 32 - 1;
    client.send("<presence/>");
    client.send("<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>");
    client.send("<r xmlns='urn:xmpp:sm:3'/>");
    assert.equal((await client.next(isSm("a"))).attrs.h, "1");
    client.close();
  } finally {
    await t.stop();
  }
});

Deno.test("c2s show reports stream management state, detached sessions included", async () => {
  const t = await server();
  try {
    const show = c2sCommands().find((c) => c.name === "show")!;
    const row = async () => {
      const result = await show.run(
        { server: t.server, emit: () => {}, signal: new AbortController().signal },
        ["alice@localhost"],
      );
      const columns = result.table!.columns;
      const [values] = result.table!.rows;
      return Object.fromEntries(columns.map((c, i) => [c, values[i]]));
    };
    const { client } = await managed(t, "alice", "phone");
    const { client: bob } = await RawClient.login(t.port, "bob", "pw", "b");
    bob.send(chat("alice@localhost/phone", "one"));
    await client.next((el) => el.getChildText("body") === "one");
    let shown = await row();
    assert.equal(shown.transport, "tcp");
    assert.match(String(shown.sm), /^enabled, resumable for 600 s, 1 unacked$/);
    await drop(t, client);
    shown = await row();
    assert.equal(shown.transport, "tcp (detached)");
    assert.match(String(shown.sm), /, 1 unacked, hibernating since \d{4}-\d\d-\d\dT/);
    bob.close();
  } finally {
    await t.stop();
  }
});

Deno.test("a second <resume/> on a stream that already resumed fails and the stream goes on", async () => {
  const t = await server();
  try {
    const { client, id } = await managed(t, "alice", "phone");
    await drop(t, client);
    const again = await resumeAs(t, id, 0);
    await again.next(isSm("resumed"));
    again.send(resumeElement(id, 0));
    const failed = await again.next(isSm("failed"));
    assert.ok(failed.getChild("unexpected-request", NS_STANZAS));
    again.send("<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>");
    assert.equal((await again.next((el) => el.attrs.id === "r")).attrs.type, "result");
    assert.equal(t.server.sessions.userSessions("localhost", "alice").length, 1);
    again.close();
  } finally {
    await t.stop();
  }
});

Deno.test("hibernating sessions are bounded per host too: the oldest account's session ends", async () => {
  const t = await server("smacks_max_hibernated_sessions_total = 1");
  try {
    const { client: alice } = await managed(t, "alice", "phone");
    const { client: bob, id: bobId } = await managed(t, "bob", "phone");
    await drop(t, alice);
    cut(bob);
    await hibernating(t, "bob@localhost/phone");
    assert.equal(t.server.sessions.userSessions("localhost", "alice").length, 0);
    assert.equal(t.server.sessions.userSessions("localhost", "bob").length, 1);
    const { client: again } = await authenticated(t, "bob");
    again.send(resumeElement(bobId, 0));
    assert.equal((await again.next((el) => el.ns === NS_SM)).name, "resumed");
    again.close();
  } finally {
    await t.stop();
  }
});

Deno.test("a queue past smacks_max_queue_size ends the session and nothing is lost", async () => {
  const t = await server("smacks_max_queue_size = 10\nsmacks_max_unacked_stanzas = 100");
  try {
    const { client } = await managed(t, "alice", "phone");
    await drop(t, client);
    const { client: bob } = await RawClient.login(t.port, "bob", "pw", "b");
    for (let i = 1; i <= 12; i++) bob.send(chat("alice@localhost/phone", `m${i}`));
    for (let i = 0; i < 300; i++) {
      if (t.server.sessions.userSessions("localhost", "alice").length === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal(t.server.sessions.userSessions("localhost", "alice").length, 0);
    // Every message waits in offline storage for alice's next login.
    const { client: back } = await RawClient.login(t.port, "alice", "pw", "back");
    back.send("<presence/>");
    await back.next((el) => el.getChildText("body") === "m12");
    const bodies = back.received.filter((el) => el.name === "message").map((el) =>
      el.getChildText("body")
    );
    assert.deepEqual(bodies, Array.from({ length: 12 }, (_, i) => `m${i + 1}`));
    back.close();
    bob.close();
  } finally {
    await t.stop();
  }
});

Deno.test("unloading the module ends hibernating sessions and stops counting the others", async () => {
  const t = await server();
  try {
    const { client: phone } = await managed(t, "alice", "phone");
    const { client: desk } = await managed(t, "bob", "desk");
    await drop(t, phone);
    const host = t.server.hosts.get("localhost")!;
    assert.equal(t.server.modules.unload(host, "smacks"), true);
    assert.equal(t.server.sessions.userSessions("localhost", "alice").length, 0);
    const [session] = t.server.sessions.userSessions("localhost", "bob") as C2SSession[];
    assert.equal(session.info.has("sm"), false);
    // bob's stream goes on without stream management.
    desk.send("<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>");
    assert.equal((await desk.next((el) => el.attrs.id === "r")).attrs.type, "result");
    desk.close();
  } finally {
    await t.stop();
  }
});

Deno.test("fewer unacked stanzas than the threshold get an <r/> after smacks_max_ack_delay", async () => {
  const t = await server("smacks_max_ack_delay = 1\nsmacks_max_unacked_stanzas = 100");
  try {
    const { client } = await managed(t, "alice", "phone");
    const { client: bob } = await RawClient.login(t.port, "bob", "pw", "b");
    bob.send(chat("alice@localhost/phone", "one"));
    await client.next((el) => el.getChildText("body") === "one");
    await client.next(isSm("r"), 3000);
    client.send("<a xmlns='urn:xmpp:sm:3' h='1'/>");
    client.close();
    bob.close();
  } finally {
    await t.stop();
  }
});
