// XEP-0357 push notifications over real sockets: clients enable and disable registrations, and an
// external component plays the app server, receiving the pubsub publishes the server sends for
// offline messages, hibernating stream management sessions and inactive (CSI) clients.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import type { Element } from "../../core/xml/element.ts";
import { conditionOf, NS_STREAM, RawClient } from "../helpers/raw_client.ts";
import { startTestServer, type TestServer } from "../helpers/test_server.ts";

const NS_PUSH = "urn:xmpp:push:0";
const NS_PUBSUB = "http://jabber.org/protocol/pubsub";
const NS_DATA = "jabber:x:data";
const NS_SM = "urn:xmpp:sm:3";
const APP_SERVER = "push.localhost";
const MODULES = ["disco", "roster", "presence", "offline", "carbons", "smacks", "csi", "push"];

interface ServerOptions {
  /** Extra host options (push_notification_with_body, push_throttle_seconds, ...). */
  hostToml?: string;
  dataDir?: string;
}

function server(options: ServerOptions = {}): Promise<TestServer> {
  return startTestServer({
    modules: MODULES,
    users: { alice: "pw", bob: "pw" },
    globalToml: 'component_interfaces = ["127.0.0.1:0"]',
    // Every message notifies at once unless a test asks for throttling.
    hostToml: options.hostToml ?? "push_throttle_seconds = 0",
    extraToml: `[[component]]\ndomain = "${APP_SERVER}"\nsecret = "s3cret"\n`,
    dataDir: options.dataDir,
  });
}

/** Connects the fake app server: an XEP-0114 component at push.localhost. */
async function appServer(t: TestServer): Promise<RawClient> {
  const component = await RawClient.connect(t.server.port("component"));
  component.send(
    `<stream:stream xmlns='jabber:component:accept' xmlns:stream='${NS_STREAM}' ` +
      `to='${APP_SERVER}'>`,
  );
  await component.waitUntil(() => component.headers[0], 5000, "stream header");
  const digest = createHash("sha1").update(component.headers[0].attrs.id + "s3cret").digest(
    "hex",
  );
  component.send(`<handshake>${digest}</handshake>`);
  const answer = await component.next();
  assert.equal(answer.name, "handshake");
  return component;
}

/** Sends an iq and waits for its answer. */
async function iq(client: RawClient, type: string, payload: string): Promise<Element> {
  const id = crypto.randomUUID();
  client.send(`<iq type='${type}' id='${id}'>${payload}</iq>`);
  return await client.next((el) => el.name === "iq" && el.attrs.id === id);
}

function enableXml(node: string, form = ""): string {
  return `<enable xmlns='${NS_PUSH}' jid='${APP_SERVER}' node='${node}'>${form}</enable>`;
}

/** Logs in as alice with a resource and enables push on the app server's `node`. */
async function enabled(t: TestServer, node: string, resource = "phone", form = "") {
  const { client, jid } = await RawClient.login(t.port, "alice", "pw", resource);
  const answer = await iq(client, "set", enableXml(node, form));
  assert.equal(answer.attrs.type, "result");
  return { client, jid };
}

/** Polls server state until `check` holds (what the server did, not when). */
async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (check()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`Timed out waiting for ${what}`);
}

/** Closes a client's stream and waits until the server no longer has its session. */
async function goOffline(t: TestServer, client: RawClient, jid: string): Promise<void> {
  client.close();
  await until(() => t.server.sessions.all().every((s) => s.jid?.toString() !== jid), "logout");
}

const isPublish = (el: Element) =>
  el.name === "iq" && el.attrs.type === "set" && el.getChild("pubsub", NS_PUBSUB) !== undefined;

/** The summary form's fields of a notification publish, by var. */
function summary(publish: Element): Map<string, string> {
  const item = publish.getChild("pubsub", NS_PUBSUB)!.getChild("publish")!.getChild("item")!;
  const form = item.getChild("notification", NS_PUSH)!.getChild("x", NS_DATA)!;
  const fields = new Map<string, string>();
  for (const field of form.getChildren("field", NS_DATA)) {
    fields.set(field.attrs.var!, field.getChildText("value", NS_DATA) ?? "");
  }
  return fields;
}

/** Answers a publish as the app server (result, or an error with a condition and type). */
function answer(component: RawClient, publish: Element, error?: [string, string]): void {
  const attrs = `id='${publish.attrs.id}' from='${APP_SERVER}' to='${publish.attrs.from}'`;
  if (!error) {
    component.send(`<iq type='result' ${attrs}/>`);
    return;
  }
  component.send(
    `<iq type='error' ${attrs}><error type='${error[1]}'><${error[0]} ` +
      `xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`,
  );
}

function chat(to: string, body: string): string {
  return `<message to='${to}' type='chat' id='${crypto.randomUUID()}'><body>${body}</body></message>`;
}

/** The registrations stored for alice, as "service node resource". */
function storedRegistrations(t: TestServer): string[] {
  return t.server.database.prepare(
    "SELECT service, node, resource FROM push_registrations WHERE user = 'alice' ORDER BY node",
  ).all().map((row) => `${row.service} ${row.node} ${row.resource}`);
}

Deno.test("the account advertises urn:xmpp:push:0 on its bare JID", async () => {
  const t = await server();
  try {
    const { client } = await RawClient.login(t.port, "alice", "pw");
    const id = "info";
    client.send(
      `<iq type='get' id='${id}' to='alice@localhost'>` +
        "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    );
    const info = await client.next((el) => el.name === "iq" && el.attrs.id === id);
    const features = info.getChild("query")!.getChildren("feature").map((f) => f.attrs.var);
    assert.ok(features.includes(NS_PUSH), `features: ${features.join(", ")}`);
    client.close();
  } finally {
    await t.stop();
  }
});

Deno.test("enable and disable store and remove registrations; bad requests are refused", async () => {
  const t = await server();
  try {
    const { client } = await RawClient.login(t.port, "alice", "pw", "phone");
    const missing = await iq(client, "set", `<enable xmlns='${NS_PUSH}' node='n1'/>`);
    assert.equal(missing.attrs.type, "error");
    assert.equal(conditionOf(missing), "bad-request");
    const invalid = await iq(client, "set", `<enable xmlns='${NS_PUSH}' jid='a@@b' node='n1'/>`);
    assert.equal(conditionOf(invalid), "bad-request");
    const wrongForm = await iq(
      client,
      "set",
      enableXml(
        "n1",
        `<x xmlns='${NS_DATA}' type='submit'><field var='FORM_TYPE'><value>urn:other</value>` +
          "</field></x>",
      ),
    );
    assert.equal(conditionOf(wrongForm), "bad-request");
    assert.deepEqual(storedRegistrations(t), []);

    assert.equal((await iq(client, "set", enableXml("n1"))).attrs.type, "result");
    assert.equal((await iq(client, "set", enableXml("n2"))).attrs.type, "result");
    assert.deepEqual(storedRegistrations(t), [
      `${APP_SERVER} n1 phone`,
      `${APP_SERVER} n2 phone`,
    ]);

    const noJid = await iq(client, "set", `<disable xmlns='${NS_PUSH}'/>`);
    assert.equal(conditionOf(noJid), "bad-request");
    const one = await iq(
      client,
      "set",
      `<disable xmlns='${NS_PUSH}' jid='${APP_SERVER}' node='n1'/>`,
    );
    assert.equal(one.attrs.type, "result");
    assert.deepEqual(storedRegistrations(t), [`${APP_SERVER} n2 phone`]);
    const all = await iq(client, "set", `<disable xmlns='${NS_PUSH}' jid='${APP_SERVER}'/>`);
    assert.equal(all.attrs.type, "result");
    assert.deepEqual(storedRegistrations(t), []);

    // Addressed to the server rather than the account: the same.
    const id = "to-host";
    client.send(`<iq type='set' id='${id}' to='localhost'>${enableXml("n3")}</iq>`);
    const toHost = await client.next((el) => el.name === "iq" && el.attrs.id === id);
    assert.equal(toHost.attrs.type, "result");
    assert.deepEqual(storedRegistrations(t), [`${APP_SERVER} n3 phone`]);
    client.close();
  } finally {
    await t.stop();
  }
});

Deno.test("registrations per account are bounded: the oldest gives way", async () => {
  const t = await server({ hostToml: "push_max_registrations = 2" });
  try {
    const { client } = await RawClient.login(t.port, "alice", "pw", "phone");
    for (const node of ["a", "b", "c"]) {
      assert.equal((await iq(client, "set", enableXml(node))).attrs.type, "result");
    }
    assert.deepEqual(storedRegistrations(t), [`${APP_SERVER} b phone`, `${APP_SERVER} c phone`]);
    client.close();
  } finally {
    await t.stop();
  }
});

Deno.test("an offline message is published to the app server with the summary and publish-options", async () => {
  const t = await server();
  try {
    const component = await appServer(t);
    const options = `<x xmlns='${NS_DATA}' type='submit'>` +
      "<field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value>" +
      "</field><field var='secret'><value>s3cr3t-token</value></field></x>";
    const { client: alice, jid } = await enabled(t, "node-1", "phone", options);
    await goOffline(t, alice, jid);

    const { client: bob } = await RawClient.login(t.port, "bob", "pw");
    bob.send(chat("alice@localhost", "secret words"));
    const publish = await component.next(isPublish);
    assert.equal(publish.attrs.from, "alice@localhost");
    assert.equal(publish.attrs.to, APP_SERVER);
    const pubsub = publish.getChild("pubsub", NS_PUBSUB)!;
    assert.equal(pubsub.getChild("publish")!.attrs.node, "node-1");
    const fields = summary(publish);
    assert.equal(fields.get("FORM_TYPE"), "urn:xmpp:push:summary");
    assert.equal(fields.get("message-count"), "1");
    // Neither the body nor the sender by default; the stand-in body makes iOS show an alert.
    assert.equal(fields.get("last-message-body"), "New Message!");
    assert.equal(fields.has("last-message-sender"), false);
    assert.doesNotMatch(component.text, /secret words/);
    const sentOptions = pubsub.getChild("publish-options")!.getChild("x", NS_DATA)!;
    const secret = sentOptions.getChildren("field", NS_DATA).find((f) => f.attrs.var === "secret");
    assert.equal(secret?.getChildText("value", NS_DATA), "s3cr3t-token");
    answer(component, publish);
    bob.close();
    component.close();
  } finally {
    await t.stop();
  }
});

Deno.test("the body and sender are sent only when the options allow them", async () => {
  const t = await server({
    hostToml: "push_throttle_seconds = 0\npush_notification_with_body = true\n" +
      "push_notification_with_sender = true",
  });
  try {
    const component = await appServer(t);
    const { client: alice, jid } = await enabled(t, "node-1");
    await goOffline(t, alice, jid);
    const { client: bob, jid: bobJid } = await RawClient.login(t.port, "bob", "pw");
    bob.send(chat("alice@localhost", "hello there"));
    const fields = summary(await component.next(isPublish));
    assert.equal(fields.get("last-message-body"), "hello there");
    assert.equal(fields.get("last-message-sender"), bobJid);
    // An encrypted message without a body gets the stand-in, not an empty body.
    bob.send(
      "<message to='alice@localhost' type='chat' id='omemo'>" +
        "<encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'/></encrypted>" +
        "<store xmlns='urn:xmpp:hints'/></message>",
    );
    const first = component.received.find(isPublish);
    const encrypted = summary(await component.next((el) => isPublish(el) && el !== first));
    assert.equal(encrypted.get("message-count"), "2");
    assert.equal(encrypted.get("last-message-body"), "New Message!");
    bob.close();
    component.close();
  } finally {
    await t.stop();
  }
});

/** Logs alice in as `phone` with resumable stream management and push enabled. */
async function managedWithPush(t: TestServer, node: string) {
  const { client, jid } = await enabled(t, node);
  client.send(`<enable xmlns='${NS_SM}' resume='true'/>`);
  const sm = await client.next((el) => el.ns === NS_SM);
  assert.equal(sm.name, "enabled");
  client.send("<presence/>");
  return { client, jid };
}

/** Cuts a client's connection (a phone losing its network) and waits until it hibernates. */
async function cutAndHibernate(t: TestServer, client: RawClient, jid: string): Promise<void> {
  client.socket.destroy();
  await until(() => {
    const session = t.server.sessions.all().find((s) => s.jid?.toString() === jid) as
      | { transport?: unknown }
      | undefined;
    return session !== undefined && session.transport === undefined;
  }, "hibernation");
}

Deno.test("a message to a hibernating session pushes; a chat state alone does not", async () => {
  const t = await server();
  try {
    const component = await appServer(t);
    const { client: alice, jid } = await managedWithPush(t, "node-sm");
    await cutAndHibernate(t, alice, jid);

    const { client: bob } = await RawClient.login(t.port, "bob", "pw");
    // Full JID: the message reaches the hibernating session whatever bob's presence.
    bob.send(
      `<message to='${jid}' type='chat' id='cs'>` +
        "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
    );
    bob.send(chat(jid, "are you there?"));
    const publish = await component.next(isPublish);
    const fields = summary(publish);
    // The chat state was not counted: the first notification is about the one real message.
    assert.equal(fields.get("message-count"), "1");
    assert.equal(publish.getChild("pubsub", NS_PUBSUB)!.getChild("publish")!.attrs.node, "node-sm");
    assert.equal(component.received.filter(isPublish).length, 1);
    bob.close();
    component.close();
  } finally {
    await t.stop();
  }
});

Deno.test("an error from the app server removes the registration; a timeout-free result keeps it", async () => {
  const t = await server();
  try {
    const component = await appServer(t);
    const { client: alice, jid } = await enabled(t, "gone");
    await goOffline(t, alice, jid);
    const { client: bob } = await RawClient.login(t.port, "bob", "pw");
    bob.send(chat("alice@localhost", "one"));
    const first = await component.next(isPublish);
    answer(component, first); // accepted: still registered
    bob.send(chat("alice@localhost", "two"));
    const second = await component.next((el) => isPublish(el) && el !== first);
    assert.equal(summary(second).get("message-count"), "2");
    assert.deepEqual(storedRegistrations(t), [`${APP_SERVER} gone phone`]);
    answer(component, second, ["item-not-found", "cancel"]);
    await until(() => storedRegistrations(t).length === 0, "registration removed");
    // A message after that is not published: the next publish the app server sees is bob's.
    bob.send(chat("alice@localhost", "three"));
    const { client: bobPhone } = await RawClient.login(t.port, "bob", "pw", "phone");
    assert.equal(
      (await iq(bobPhone, "set", `<enable xmlns='${NS_PUSH}' jid='${APP_SERVER}' node='b'/>`))
        .attrs.type,
      "result",
    );
    bobPhone.close();
    const { client: alice2 } = await RawClient.login(t.port, "alice", "pw", "x");
    alice2.send(chat("bob@localhost", "for bob"));
    const third = await component.next((el) => isPublish(el) && el !== first && el !== second);
    assert.equal(third.attrs.from, "bob@localhost");
    alice2.close();
    bob.close();
    component.close();
  } finally {
    await t.stop();
  }
});

Deno.test("registrations survive a restart", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "lilt-push-" });
  try {
    const first = await server({ dataDir });
    try {
      const { client } = await enabled(first, "kept");
      client.close();
    } finally {
      await first.stop();
    }
    const t = await server({ dataDir });
    try {
      const component = await appServer(t);
      const { client: bob } = await RawClient.login(t.port, "bob", "pw");
      bob.send(chat("alice@localhost", "after restart"));
      const publish = await component.next(isPublish);
      assert.equal(publish.getChild("pubsub", NS_PUBSUB)!.getChild("publish")!.attrs.node, "kept");
      bob.close();
      component.close();
    } finally {
      await t.stop();
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
});

Deno.test("a burst of messages gives one notification now and one with the count later", async () => {
  const t = await server({ hostToml: "push_throttle_seconds = 1" });
  try {
    const component = await appServer(t);
    const { client: alice, jid } = await enabled(t, "burst");
    await goOffline(t, alice, jid);
    const { client: bob } = await RawClient.login(t.port, "bob", "pw");
    for (const body of ["one", "two", "three"]) bob.send(chat("alice@localhost", body));
    const first = await component.next(isPublish);
    assert.equal(summary(first).get("message-count"), "1");
    const second = await component.next((el) => isPublish(el) && el !== first);
    assert.equal(summary(second).get("message-count"), "3");
    assert.equal(component.received.filter(isPublish).length, 2);
    bob.close();
    component.close();
  } finally {
    await t.stop();
  }
});

Deno.test("an important message to an inactive (CSI) client pushes", async () => {
  const t = await server();
  try {
    const component = await appServer(t);
    const { client: alice, jid } = await enabled(t, "csi");
    alice.send("<presence/>");
    alice.send("<inactive xmlns='urn:xmpp:csi:0'/>");
    // A round trip: the inactive state is in force before bob writes.
    assert.equal((await iq(alice, "get", "<ping xmlns='urn:xmpp:ping'/>")).name, "iq");
    const { client: bob } = await RawClient.login(t.port, "bob", "pw");
    bob.send(chat(jid, "wake up"));
    await alice.next((el) => el.name === "message" && el.getChildText("body") === "wake up");
    const publish = await component.next(isPublish);
    assert.equal(summary(publish).get("message-count"), "1");
    alice.close();
    bob.close();
    component.close();
  } finally {
    await t.stop();
  }
});

Deno.test("a message left unacknowledged when the connection drops pushes as the session hibernates", async () => {
  const t = await server();
  try {
    const component = await appServer(t);
    const { client: alice, jid } = await managedWithPush(t, "unacked");
    const { client: bob } = await RawClient.login(t.port, "bob", "pw");
    bob.send(chat(jid, "did you get this?"));
    // Written to alice's socket but never acknowledged: the phone may never have read it.
    await alice.next((el) => el.name === "message" && el.getChildText("body") !== undefined);
    assert.equal(component.received.filter(isPublish).length, 0);
    await cutAndHibernate(t, alice, jid);
    const publish = await component.next(isPublish);
    assert.equal(summary(publish).get("message-count"), "1");
    bob.close();
    component.close();
  } finally {
    await t.stop();
  }
});

/** Stanzas a client received since stream management was enabled (its `h`). */
function handled(client: RawClient): number {
  const start = client.received.findIndex((el) => el.name === "enabled" && el.ns === NS_SM);
  return client.received.slice(start + 1).filter((el) =>
    el.name === "message" || el.name === "presence" || el.name === "iq"
  ).length;
}

Deno.test("the count starts over once the device resumes its session", async () => {
  const t = await server();
  try {
    const component = await appServer(t);
    const { client: alice, jid } = await managedWithPush(t, "resume");
    const sm = alice.received.find((el) => el.name === "enabled" && el.ns === NS_SM)!;
    await cutAndHibernate(t, alice, jid);
    const { client: bob } = await RawClient.login(t.port, "bob", "pw");
    bob.send(chat(jid, "first"));
    const first = await component.next(isPublish);
    assert.equal(summary(first).get("message-count"), "1");

    // The phone wakes up and resumes (PLAIN on a new connection, then <resume/>).
    const again = await RawClient.connect(t.port);
    await again.open("localhost");
    await again.starttls("localhost");
    again.send(
      `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${
        btoa("\0alice\0pw")
      }</auth>`,
    );
    assert.equal((await again.next((el) => el.name === "success")).name, "success");
    again.restart();
    await again.open("localhost");
    again.send(`<resume xmlns='${NS_SM}' previd='${sm.attrs.id}' h='${handled(alice)}'/>`);
    assert.equal((await again.next((el) => el.ns === NS_SM)).name, "resumed");
    await again.next((el) => el.name === "message" && el.getChildText("body") === "first");
    await cutAndHibernate(t, again, jid);

    bob.send(chat(jid, "second"));
    const second = await component.next((el) => isPublish(el) && el !== first);
    assert.equal(summary(second).get("message-count"), "1");
    bob.close();
    component.close();
  } finally {
    await t.stop();
  }
});

/** Runs a `push` shell command the way the admin socket does. */
async function shell(t: TestServer, name: string, ...args: string[]) {
  const spec = t.server.commands.get("push", name)!;
  return await spec.run(
    { server: t.server, emit: () => {}, signal: new AbortController().signal },
    args,
  );
}

Deno.test("the push shell section lists and removes an account's registrations", async () => {
  const t = await server();
  try {
    const { client } = await enabled(t, "n1");
    assert.equal((await iq(client, "set", enableXml("n2"))).attrs.type, "result");
    const listed = await shell(t, "list", "alice@localhost");
    assert.deepEqual(listed.table?.rows.map((row) => row.slice(0, 3)), [
      [APP_SERVER, "n1", "phone"],
      [APP_SERVER, "n2", "phone"],
    ]);
    assert.equal(
      (await shell(t, "list", "bob@localhost")).message,
      "bob@localhost has no push registrations",
    );
    await assert.rejects(shell(t, "list", "localhost"), /Not an account JID/);
    await assert.rejects(shell(t, "list", "x@elsewhere.example"), /push module is not loaded/);

    const one = await shell(t, "disable", "alice@localhost", APP_SERVER, "n1");
    assert.equal(one.message, "Removed 1 push registration of alice@localhost");
    assert.deepEqual(storedRegistrations(t), [`${APP_SERVER} n2 phone`]);
    const rest = await shell(t, "disable", "alice@localhost");
    assert.deepEqual(rest.data, { jid: "alice@localhost", removed: 1 });
    assert.deepEqual(storedRegistrations(t), []);
    client.close();
  } finally {
    await t.stop();
  }
});
