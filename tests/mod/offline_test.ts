// XEP-0160 offline messages over the wire: stored while the account is offline, delivered with a
// XEP-0203 delay on the next non-negative initial presence, bounded per account, kept on restart.

import assert from "node:assert/strict";
import type { Element } from "../../core/xml/element.ts";
import { conditionOf, RawClient, roundTrip } from "../helpers/raw_client.ts";
import {
  startTestServer,
  testConfigText,
  type TestServer,
  type TestServerOptions,
} from "../helpers/test_server.ts";
import { reloadConfiguration } from "../../shell/reload.ts";

const NS_DELAY = "urn:xmpp:delay";
const MODULES = ["disco", "roster", "presence", "offline"];

async function start(options: TestServerOptions = {}): Promise<TestServer> {
  const t = await startTestServer({
    modules: MODULES,
    users: { alice: "pw", bob: "pw" },
    ...options,
  });
  return t;
}

function messages(client: RawClient): Element[] {
  return client.received.filter((el) => el.name === "message");
}

Deno.test("messages to an offline account arrive after login, in order, with a delay stamp", async () => {
  const t = await start();
  try {
    const { client: bob } = await RawClient.login(t.port, "bob", "pw", "b");
    const before = Date.now();
    for (const n of [1, 2, 3]) {
      bob.send(`<message to='alice@localhost' type='chat' id='m${n}'><body>${n}</body></message>`);
    }
    // A typing notification alone is not worth storing, and is not answered either.
    bob.send(
      "<message to='alice@localhost' type='chat' id='typing'>" +
        "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
    );
    await roundTrip(bob);
    assert.deepEqual(messages(bob), []);

    const { client: alice } = await RawClient.login(t.port, "alice", "pw", "a");
    await roundTrip(alice);
    assert.deepEqual(messages(alice), [], "nothing before initial presence");
    alice.send("<presence/>");
    const got = [];
    for (let i = 0; i < 3; i++) got.push(await alice.next((el) => el.name === "message"));
    assert.deepEqual(got.map((el) => el.attrs.id), ["m1", "m2", "m3"]);
    for (const [i, message] of got.entries()) {
      assert.equal(message.attrs.from, "bob@localhost/b");
      assert.equal(message.attrs.to, "alice@localhost");
      assert.equal(message.getChildText("body"), String(i + 1));
      const delay = message.getChild("delay", NS_DELAY)!;
      assert.equal(delay.attrs.from, "localhost");
      assert.equal(delay.text(), "Offline Storage");
      assert.match(delay.attrs.stamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
      const stamp = Date.parse(delay.attrs.stamp);
      assert.ok(stamp >= before - 1000 && stamp <= Date.now(), `stamp ${delay.attrs.stamp}`);
    }
    await roundTrip(alice);
    assert.equal(messages(alice).length, 3, "the chat state was not stored");

    // Delivered messages are gone: the next resource gets nothing.
    const { client: again } = await RawClient.login(t.port, "alice", "pw", "again");
    again.send("<presence/>");
    await again.next((el) => el.name === "presence" && el.attrs.from === "alice@localhost/again");
    await roundTrip(again);
    assert.deepEqual(messages(again), []);

    // While a resource is online, messages go straight to it.
    bob.send("<message to='alice@localhost' type='chat' id='live'><body>hi</body></message>");
    const live = await alice.next((el) => el.attrs.id === "live");
    assert.equal(live.getChild("delay", NS_DELAY), undefined);
    for (const c of [alice, again, bob]) c.close();
  } finally {
    await t.stop();
  }
});

Deno.test("the server advertises msgoffline", async () => {
  const t = await start();
  try {
    const { client } = await RawClient.login(t.port, "alice", "pw");
    client.send(
      "<iq type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    );
    const answer = await client.next((el) => el.attrs.id === "d1");
    const features = answer.getChild("query")!.getChildren("feature").map((f) => f.attrs.var);
    assert.ok(features.includes("msgoffline"), features.join(", "));
    client.close();
  } finally {
    await t.stop();
  }
});

Deno.test("a full offline store bounces further messages with resource-constraint", async () => {
  const t = await start({ hostToml: "offline_max_messages = 2" });
  try {
    const { client: bob } = await RawClient.login(t.port, "bob", "pw", "b");
    for (const n of [1, 2, 3]) {
      bob.send(`<message to='alice@localhost' id='q${n}'><body>${n}</body></message>`);
    }
    const bounce = await bob.next((el) => el.name === "message");
    assert.equal(bounce.attrs.id, "q3");
    assert.equal(bounce.attrs.type, "error");
    assert.equal(bounce.attrs.from, "alice@localhost");
    assert.equal(conditionOf(bounce), "resource-constraint");
    assert.equal(bounce.getChild("error")!.attrs.type, "wait");
    assert.equal(
      bounce.getChild("error")!.getChildText("text"),
      "The recipient's offline storage is full (at most 2 messages)",
    );
    assert.equal(bounce.getChildText("body"), "3");
    await roundTrip(bob);
    assert.equal(messages(bob).length, 1, "only the third message bounced");

    const { client: alice } = await RawClient.login(t.port, "alice", "pw", "a");
    alice.send("<presence/>");
    const first = await alice.next((el) => el.name === "message");
    const second = await alice.next((el) => el.name === "message");
    assert.deepEqual([first.attrs.id, second.attrs.id], ["q1", "q2"]);
    for (const c of [alice, bob]) c.close();
  } finally {
    await t.stop();
  }
});

Deno.test("config reload applies a new offline_max_messages at once", async () => {
  const t = await start({ hostToml: "offline_max_messages = 1" });
  try {
    const { client: bob } = await RawClient.login(t.port, "bob", "pw", "b");
    bob.send("<message to='alice@localhost' id='r1'><body>1</body></message>");
    bob.send("<message to='alice@localhost' id='r2'><body>2</body></message>");
    const bounce = await bob.next((el) => el.name === "message");
    assert.equal(bounce.attrs.id, "r2");
    assert.equal(conditionOf(bounce), "resource-constraint");

    // The operator raises the limit in the file and reloads, as SIGHUP or `config reload` do.
    const text = testConfigText(t.dataDir, {
      modules: MODULES,
      hostToml: "offline_max_messages = 3",
    });
    await Deno.writeTextFile(t.config.file, text);
    const result = await reloadConfiguration(t.server);
    assert.ok(result.ok, result.error);
    // The option's line depends on the storage section the test engine adds above it.
    const line = text.split("\n").indexOf("offline_max_messages = 3") + 1;
    assert.deepEqual(result.applied, [
      `offline_max_messages on localhost (${t.config.file}:${line})`,
    ]);
    bob.send("<message to='alice@localhost' id='r3'><body>3</body></message>");
    bob.send("<message to='alice@localhost' id='r4'><body>4</body></message>");
    await roundTrip(bob);
    assert.deepEqual(messages(bob).map((el) => el.attrs.id), ["r2"], "nothing more bounced");

    const { client: alice } = await RawClient.login(t.port, "alice", "pw", "a");
    alice.send("<presence/>");
    const got = [];
    for (let i = 0; i < 3; i++) got.push(await alice.next((el) => el.name === "message"));
    assert.deepEqual(got.map((el) => el.attrs.id), ["r1", "r3", "r4"]);
    for (const c of [alice, bob]) c.close();
  } finally {
    await t.stop();
  }
});

Deno.test("a negative-priority resource does not get offline messages", async () => {
  const t = await start();
  try {
    const { client: bob } = await RawClient.login(t.port, "bob", "pw", "b");
    bob.send("<message to='alice@localhost' type='chat' id='n1'><body>x</body></message>");
    await roundTrip(bob);

    const { client: shy } = await RawClient.login(t.port, "alice", "pw", "shy");
    shy.send("<presence><priority>-1</priority></presence>");
    await shy.next((el) => el.name === "presence" && el.attrs.from === "alice@localhost/shy");
    await roundTrip(shy);
    assert.deepEqual(messages(shy), []);

    // A message arriving now is still stored: the only available resource is negative.
    bob.send("<message to='alice@localhost' type='chat' id='n2'><body>y</body></message>");
    await roundTrip(bob);
    assert.deepEqual(messages(bob), []);

    const { client: main } = await RawClient.login(t.port, "alice", "pw", "main");
    main.send("<presence><priority>0</priority></presence>");
    const first = await main.next((el) => el.name === "message");
    const second = await main.next((el) => el.name === "message");
    assert.deepEqual([first.attrs.id, second.attrs.id], ["n1", "n2"]);
    await roundTrip(shy);
    assert.deepEqual(messages(shy), []);
    for (const c of [shy, main, bob]) c.close();
  } finally {
    await t.stop();
  }
});

Deno.test("offline messages survive a server restart", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "lilt-test-offline-" });
  try {
    const first = await start({ dataDir });
    try {
      const { client: bob } = await RawClient.login(first.port, "bob", "pw", "b");
      bob.send("<message to='alice@localhost' type='chat' id='r1'><body>kept</body></message>");
      await roundTrip(bob);
      bob.close();
    } finally {
      await first.stop();
    }
    const second = await start({ dataDir });
    try {
      const { client: alice } = await RawClient.login(second.port, "alice", "pw", "a");
      alice.send("<presence/>");
      const message = await alice.next((el) => el.name === "message");
      assert.equal(message.attrs.id, "r1");
      assert.equal(message.getChildText("body"), "kept");
      assert.equal(message.getChild("delay", NS_DELAY)?.attrs.from, "localhost");
      alice.close();
    } finally {
      await second.stop();
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
