// RFC 6121 §8.5 delivery for local JIDs, seen from real clients: priorities decide which
// resources get a message to the bare JID, message types change the rules, and full JIDs
// of resources that are gone fall back to the bare JID for chat.

import assert from "node:assert/strict";
import type { ModuleAPI } from "../../core/modules.ts";
import { reply } from "../../core/xml/stanza.ts";
import { conditionOf, RawClient, roundTrip } from "../helpers/raw_client.ts";
import { startTestServer } from "../helpers/test_server.ts";

/** Sends a stanza and waits until the server has routed it. */
async function sendAndSettle(client: RawClient, xml: string): Promise<void> {
  client.send(xml);
  await roundTrip(client);
}

/** True when the client received a message with this id (after a round trip of its own). */
async function gotMessage(client: RawClient, id: string): Promise<boolean> {
  await roundTrip(client);
  return client.received.some((el) => el.name === "message" && el.attrs.id === id);
}

Deno.test("messages to a bare JID follow priorities and types (RFC 6121 §8.5.2)", async () => {
  const t = await startTestServer({ users: { alice: "pw", bob: "pw" } });
  try {
    const { client: high } = await RawClient.login(t.port, "alice", "pw", "high");
    const { client: low } = await RawClient.login(t.port, "alice", "pw", "low");
    const { client: negative } = await RawClient.login(t.port, "alice", "pw", "negative");
    const { client: quiet } = await RawClient.login(t.port, "alice", "pw", "quiet"); // no presence
    const { client: bob } = await RawClient.login(t.port, "bob", "pw", "b");
    high.send("<presence><priority>5</priority></presence>");
    low.send("<presence><priority>1</priority></presence>");
    negative.send("<presence><priority>-1</priority></presence>");
    for (const c of [high, low, negative]) await c.next((el) => el.name === "presence");
    // Presence is routed in order: wait until the last one is seen by the first resource.
    await high.next((el) => el.name === "presence" && el.attrs.from === "alice@localhost/negative");

    await sendAndSettle(
      bob,
      "<message to='alice@localhost' type='chat' id='chat1'><body>1</body></message>",
    );
    assert.equal(await gotMessage(high, "chat1"), true);
    assert.equal(await gotMessage(low, "chat1"), false);
    assert.equal(await gotMessage(negative, "chat1"), false);
    assert.equal(await gotMessage(quiet, "chat1"), false);

    await sendAndSettle(
      bob,
      "<message to='alice@localhost' type='headline' id='news'><body>2</body></message>",
    );
    assert.equal(await gotMessage(high, "news"), true);
    assert.equal(await gotMessage(low, "news"), true);
    assert.equal(await gotMessage(negative, "news"), false);

    await sendAndSettle(
      bob,
      "<message to='alice@localhost' type='groupchat' id='gc'><body>3</body></message>",
    );
    assert.equal(conditionOf(await bob.next((el) => el.attrs.id === "gc")), "service-unavailable");

    // A full JID reaches exactly that resource, whatever its priority or presence.
    await sendAndSettle(
      bob,
      "<message to='alice@localhost/quiet' type='normal' id='direct'><body>4</body></message>",
    );
    assert.equal(await gotMessage(quiet, "direct"), true);
    assert.equal(await gotMessage(high, "direct"), false);

    // chat to a resource that is gone is treated as addressed to the bare JID.
    await sendAndSettle(
      bob,
      "<message to='alice@localhost/gone' type='chat' id='fallback'><body>5</body></message>",
    );
    assert.equal(await gotMessage(high, "fallback"), true);
    // ... while a headline to it is dropped silently.
    await sendAndSettle(
      bob,
      "<message to='alice@localhost/gone' type='headline' id='lost'><body>6</body></message>",
    );
    assert.equal(await gotMessage(high, "lost"), false);
    assert.equal(await gotMessage(bob, "lost"), false);

    // iq to a full JID is delivered; to a missing resource it gets service-unavailable.
    bob.send(
      "<iq type='get' id='iq1' to='alice@localhost/low'><query xmlns='urn:example:q'/></iq>",
    );
    const iq = await low.next((el) => el.name === "iq" && el.attrs.id === "iq1");
    assert.equal(iq.attrs.from, "bob@localhost/b");
    bob.send(
      "<iq type='get' id='iq2' to='alice@localhost/gone'><query xmlns='urn:example:q'/></iq>",
    );
    assert.equal(conditionOf(await bob.next((el) => el.attrs.id === "iq2")), "service-unavailable");
    for (const c of [high, low, negative, quiet, bob]) c.close();
  } finally {
    await t.stop();
  }
});

Deno.test("whitespace keepalives keep an idle session open", async () => {
  const t = await startTestServer({ users: { alice: "pw" }, globalToml: "c2s_idle_timeout = 1" });
  try {
    const { client } = await RawClient.login(t.port, "alice", "pw");
    for (let i = 0; i < 8; i++) {
      client.send(" ");
      await new Promise((r) => setTimeout(r, 250));
    }
    client.send("<iq type='get' id='alive' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    assert.equal((await client.next((el) => el.attrs.id === "alive")).attrs.type, "result");
    assert.equal(client.received.some((el) => el.name === "error"), false);
    client.close();
  } finally {
    await t.stop();
  }
});

Deno.test("an async handler that declines lets routing go on; one that takes the stanza stops it", async () => {
  const t = await startTestServer({ users: { alice: "pw", bob: "pw" } });
  try {
    const host = t.server.hosts.get("localhost")!;
    t.server.modules.register("async_probe", {
      default(m: ModuleAPI) {
        // Declines after a store-like wait: the default answer must still come.
        m.hook("iq-get/host/urn:example:async:query", async () => {
          await new Promise((resolve) => setTimeout(resolve, 5));
          return false;
        });
        // Takes the stanza after a wait and answers it itself.
        m.hook("iq-get/host/urn:example:async:taken", async ({ stanza, origin }) => {
          await new Promise((resolve) => setTimeout(resolve, 5));
          origin.send(reply(stanza));
          return true;
        });
        // A message filter that declines asynchronously: the message is still delivered.
        m.hook("message/full", () => Promise.resolve(false));
      },
    });
    await t.server.modules.load(host, "async_probe");
    const { client: alice } = await RawClient.login(t.port, "alice", "pw", "a");
    const { client: bob } = await RawClient.login(t.port, "bob", "pw", "b");
    alice.send("<iq type='get' id='q1' to='localhost'><query xmlns='urn:example:async'/></iq>");
    const declined = await alice.next((el) => el.attrs.id === "q1");
    assert.equal(declined.attrs.type, "error");
    assert.equal(conditionOf(declined), "service-unavailable");
    alice.send("<iq type='get' id='q2' to='localhost'><taken xmlns='urn:example:async'/></iq>");
    await alice.next((el) => el.attrs.id === "q2" && el.attrs.type === "result");
    await roundTrip(alice);
    assert.equal(alice.received.filter((el) => el.attrs.id === "q2").length, 1, "answered once");
    bob.send("<message to='alice@localhost/a' type='chat' id='m1'><body>hi</body></message>");
    assert.ok(await gotMessage(alice, "m1"));
    alice.close();
    bob.close();
  } finally {
    await t.stop();
  }
});
