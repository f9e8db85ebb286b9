// Announcements over the wire: HOST/announce/online is for users allowed `lilt:announce`
// (forbidden otherwise), and the `announce` shell commands reach online and offline users.

import assert from "node:assert/strict";
import type { CommandResult } from "../../core/admin_commands.ts";
import { roleModelFor } from "../../core/auth/roles.ts";
import type { Element } from "../../core/xml/element.ts";
import * as announceModule from "../../mod/announce.ts";
import { conditionOf, RawClient, roundTrip } from "../helpers/raw_client.ts";
import { startTestServer, type TestServer } from "../helpers/test_server.ts";

const NS_DELAY = "urn:xmpp:delay";

async function start(hostToml = ""): Promise<TestServer> {
  const t = await startTestServer({
    modules: ["disco", "roster", "presence", "offline"],
    users: { boss: "pw", alice: "pw", bob: "pw", carol: "pw" },
    hostToml,
  });
  // Until mod/builtin.ts lists it, the module is registered here.
  if (!t.server.modules.isLoaded("localhost", "announce")) {
    t.server.modules.register("announce", announceModule);
    await t.server.modules.load(t.server.hosts.get("localhost")!, "announce");
  }
  return t;
}

async function online(t: TestServer, user: string, resource = "r"): Promise<RawClient> {
  const { client } = await RawClient.login(t.port, user, "pw", resource);
  client.send("<presence/>");
  await client.next((el) =>
    el.name === "presence" && el.attrs.from === `${user}@localhost/${resource}`
  );
  return client;
}

async function shell(t: TestServer, name: string, args: string[]): Promise<CommandResult> {
  const spec = t.server.commands.get("announce", name);
  assert.ok(spec, `announce ${name} is registered`);
  return await spec.run(
    { server: t.server, emit() {}, signal: new AbortController().signal },
    args,
  );
}

function headlines(client: RawClient): Element[] {
  return client.received.filter((el) => el.name === "message" && el.attrs.type === "headline");
}

Deno.test("a member's message to HOST/announce/online is forbidden and reaches nobody", async () => {
  const t = await start();
  try {
    const alice = await online(t, "alice");
    const bob = await online(t, "bob");
    roleModelFor(t.server, "localhost").setRole("localhost", "alice", "member");
    alice.send(
      "<message to='localhost/announce/online' id='a1'><body>Free pizza</body></message>",
    );
    const error = await alice.next((el) => el.attrs.id === "a1");
    assert.equal(error.attrs.type, "error");
    assert.equal(error.attrs.from, "localhost/announce/online");
    assert.equal(conditionOf(error), "forbidden");
    await roundTrip(bob);
    assert.deepEqual(headlines(bob), []);
    alice.close();
    bob.close();
  } finally {
    await t.stop();
  }
});

Deno.test("an admin's message to HOST/announce/online reaches every available session", async () => {
  const t = await start('admins = ["boss@localhost"]');
  try {
    const boss = await online(t, "boss");
    const alice = await online(t, "alice");
    const bob = await online(t, "bob", "phone");
    boss.send(
      "<message to='localhost/announce/online' id='a2'>" +
        "<subject>Maintenance</subject><body>Restart at noon</body></message>",
    );
    for (
      const [client, to] of [[alice, "alice@localhost/r"], [bob, "bob@localhost/phone"]] as const
    ) {
      const got = await client.next((el) => el.name === "message" && el.attrs.type === "headline");
      assert.equal(got.attrs.from, "localhost");
      assert.equal(got.attrs.to, to);
      assert.equal(got.getChildText("subject"), "Maintenance");
      assert.equal(got.getChildText("body"), "Restart at noon");
    }
    await boss.next((el) => el.attrs.type === "headline"); // the sender is online too
    assert.deepEqual(boss.received.filter((el) => el.attrs.type === "error"), []);
    for (const c of [boss, alice, bob]) c.close();
  } finally {
    await t.stop();
  }
});

Deno.test("announce online (shell) reaches a connected client, not one without presence", async () => {
  const t = await start();
  try {
    const alice = await online(t, "alice");
    const { client: quiet } = await RawClient.login(t.port, "bob", "pw", "quiet");
    const result = await shell(t, "online", ["localhost", "Hello", "everyone"]);
    assert.deepEqual(result.data, { sent: 1 });
    const got = await alice.next((el) => el.attrs.type === "headline");
    assert.equal(got.attrs.from, "localhost");
    assert.equal(got.getChildText("body"), "Hello everyone");
    await roundTrip(quiet);
    assert.deepEqual(headlines(quiet), []);
    await assert.rejects(
      async () => await shell(t, "online", ["nowhere.example", "hi"]),
      /Unknown host/,
    );
    await assert.rejects(async () => await shell(t, "online", ["localhost"]), /announcement text/);
    alice.close();
    quiet.close();
  } finally {
    await t.stop();
  }
});

Deno.test("announce all reaches online users now and offline users at their next login", async () => {
  const t = await start();
  try {
    const alice = await online(t, "alice");
    const result = await shell(t, "all", ["localhost", "New", "terms"]);
    assert.deepEqual(result.data, { sent: 1, stored: 3 }); // boss, bob and carol are offline
    assert.equal(
      (await alice.next((el) => el.attrs.type === "headline")).getChildText("body"),
      "New terms",
    );

    const { client: bob } = await RawClient.login(t.port, "bob", "pw", "b");
    bob.send("<presence/>");
    const stored = await bob.next((el) => el.name === "message");
    assert.equal(stored.attrs.type, "headline");
    assert.equal(stored.attrs.from, "localhost");
    assert.equal(stored.attrs.to, "bob@localhost");
    assert.equal(stored.getChildText("body"), "New terms");
    assert.equal(stored.getChild("delay", NS_DELAY)?.attrs.from, "localhost");
    await roundTrip(alice);
    assert.equal(headlines(alice).length, 1, "online users get it once");
    alice.close();
    bob.close();
  } finally {
    await t.stop();
  }
});

Deno.test("announce role reaches only online users with that role", async () => {
  const t = await start('admins = ["boss@localhost"]');
  try {
    const boss = await online(t, "boss");
    const alice = await online(t, "alice");
    const result = await shell(t, "role", ["localhost", "admin", "Admins", "only"]);
    assert.deepEqual(result.data, { sent: 1 });
    assert.equal(
      (await boss.next((el) => el.attrs.type === "headline")).getChildText("body"),
      "Admins only",
    );
    await roundTrip(alice);
    assert.deepEqual(headlines(alice), []);
    await assert.rejects(
      async () => await shell(t, "role", ["localhost", "king", "hi"]),
      /Unknown role 'king'/,
    );
    boss.close();
    alice.close();
  } finally {
    await t.stop();
  }
});
