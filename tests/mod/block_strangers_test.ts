// Blocking strangers over real sockets: with the host option or an account's own toggle,
// messages and subscription requests from unknown senders are dropped, while roster contacts,
// people the account wrote to, people in one of its rooms and the server itself get through.

import assert from "node:assert/strict";
import type { Element } from "../../core/xml/element.ts";
import { parseElement } from "../../core/xml/parser.ts";
import { RawClient, roundTrip } from "../helpers/raw_client.ts";
import { startTestServer, type TestServer } from "../helpers/test_server.ts";

const NS = "urn:lilt:block-strangers:0";
const MODULES = ["disco", "ping", "roster", "presence", "blocklist", "block_strangers", "muc"];
const USERS = { alice: "pw", bob: "pw", carol: "pw", dave: "pw" };
const MUC = "conference.localhost";

function start(hostToml = ""): Promise<TestServer> {
  return startTestServer({
    modules: MODULES,
    users: USERS,
    hostToml,
    extraToml: `[[component]]\ndomain = "${MUC}"\nmodules = ["disco", "muc"]\n`,
  });
}

async function login(t: TestServer, user: string): Promise<RawClient> {
  const { client } = await RawClient.login(t.port, user, "pw", "r");
  client.send("<presence/>");
  await roundTrip(client);
  return client;
}

async function ask(client: RawClient, xml: string): Promise<Element> {
  const id = `iq-${crypto.randomUUID()}`;
  client.send(xml.replace("<iq ", `<iq id='${id}' `));
  return await client.next((el) => el.name === "iq" && el.attrs.id === id);
}

/**
 * Sends a message from one client to another account and tells whether it arrived: the
 * sender's round trip means the server routed it, the recipient's that it was written out.
 */
async function delivered(from: RawClient, to: RawClient, toJid: string): Promise<boolean> {
  const id = `m-${crypto.randomUUID()}`;
  from.send(`<message to='${toJid}' type='chat' id='${id}'><body>hi</body></message>`);
  await roundTrip(from);
  await roundTrip(to);
  return to.received.some((el) => el.name === "message" && el.attrs.id === id);
}

/** The same for a subscription request. */
async function subscribeArrives(from: RawClient, to: RawClient, toJid: string): Promise<boolean> {
  const id = `s-${crypto.randomUUID()}`;
  from.send(`<presence to='${toJid}' type='subscribe' id='${id}'/>`);
  await roundTrip(from);
  await roundTrip(to);
  return to.received.some((el) => el.name === "presence" && el.attrs.id === id);
}

async function shell(t: TestServer, ...args: string[]) {
  const spec = t.server.commands.get("spam", "strangers")!;
  return await spec.run(
    { server: t.server, emit: () => {}, signal: new AbortController().signal },
    args,
  );
}

Deno.test("block_strangers = true drops strangers' messages and subscription requests silently", async () => {
  const t = await start("block_strangers = true");
  try {
    const [alice, bob, carol] = await Promise.all([
      login(t, "alice"),
      login(t, "bob"),
      login(t, "carol"),
    ]);
    // Bob has Alice in his roster; Carol is a stranger to him.
    const added = await ask(
      bob,
      "<iq type='set'><query xmlns='jabber:iq:roster'><item jid='alice@localhost'/></query></iq>",
    );
    assert.equal(added.attrs.type, "result");

    assert.equal(await delivered(carol, bob, "bob@localhost"), false);
    assert.equal(await delivered(carol, bob, "bob@localhost/r"), false);
    assert.equal(await subscribeArrives(carol, bob, "bob@localhost"), false);
    // No error went back to Carol: it would tell her the account exists.
    assert.equal(carol.received.some((el) => el.attrs.type === "error"), false);

    assert.equal(await delivered(alice, bob, "bob@localhost"), true);
    assert.equal(await subscribeArrives(alice, bob, "bob@localhost"), true);

    // Once Bob writes to Carol, she may answer.
    assert.equal(await delivered(bob, carol, "carol@localhost"), true);
    assert.equal(await delivered(carol, bob, "bob@localhost"), true);

    // The server itself is never a stranger: a message from the host reaches Bob.
    const fromServer = `srv-${crypto.randomUUID()}`;
    t.server.route(
      parseElement(
        `<message from='localhost' to='bob@localhost' id='${fromServer}'><body>notice</body></message>`,
      ),
      t.server.hostSession("localhost"),
    );
    await roundTrip(bob);
    assert.ok(bob.received.some((el) => el.attrs.id === fromServer));

    for (const c of [alice, bob, carol]) c.close();
  } finally {
    await t.stop();
  }
});

Deno.test("an account turns stranger blocking on and off itself, and the shell shows and sets it", async () => {
  const t = await start();
  try {
    const [bob, carol] = await Promise.all([login(t, "bob"), login(t, "carol")]);
    const initial = await ask(bob, `<iq type='get'><block-strangers xmlns='${NS}'/></iq>`);
    assert.equal(initial.getChild("block-strangers", NS)?.attrs.enabled, "false");
    assert.equal(initial.getChild("block-strangers", NS)?.attrs.source, "host");
    assert.equal(await delivered(carol, bob, "bob@localhost"), true);

    const on = await ask(
      bob,
      `<iq type='set'><block-strangers xmlns='${NS}' enabled='true'/></iq>`,
    );
    assert.equal(on.attrs.type, "result");
    assert.equal(await delivered(carol, bob, "bob@localhost"), false);
    const shown = await shell(t, "bob@localhost");
    assert.deepEqual(shown.data, { jid: "bob@localhost", setting: "on", enabled: true });

    const bad = await ask(
      bob,
      `<iq type='set'><block-strangers xmlns='${NS}' enabled='maybe'/></iq>`,
    );
    assert.equal(bad.attrs.type, "error");
    assert.ok(bad.getChild("error")?.getChild("bad-request"));

    // The operator turns it off again; Carol gets through.
    const off = await shell(t, "bob@localhost", "off");
    assert.match(off.message!, /does not block strangers \(its own setting\)/);
    assert.equal(await delivered(carol, bob, "bob@localhost"), true);
    await assert.rejects(shell(t, "bob@localhost", "sometimes"), /Expected on, off or default/);
    await assert.rejects(shell(t, "nobody@localhost", "on"), /No account nobody@localhost/);
    await assert.rejects(shell(t, "localhost"), /Expected an account address/);

    // Back to the host's default (off here), kept across a login.
    await shell(t, "bob@localhost", "default");
    const again = await ask(bob, `<iq type='get'><block-strangers xmlns='${NS}'/></iq>`);
    assert.equal(again.getChild("block-strangers", NS)?.attrs.source, "host");
    bob.close();
    carol.close();
  } finally {
    await t.stop();
  }
});

Deno.test("people in a room with the account are not strangers", async () => {
  const t = await start("block_strangers = true");
  try {
    const [bob, carol, dave] = await Promise.all([
      login(t, "bob"),
      login(t, "carol"),
      login(t, "dave"),
    ]);
    // Bob and Dave join one room (an instant room: the joins carry no MUC <x/>); Carol does not.
    for (const [client, nick] of [[bob, "bob"], [dave, "dave"]] as const) {
      client.send(`<presence to='lobby@${MUC}/${nick}'/>`);
      await client.next((el) => el.name === "presence" && el.attrs.from === `lobby@${MUC}/${nick}`);
    }
    assert.equal(await delivered(dave, bob, "bob@localhost"), true);
    assert.equal(await delivered(carol, bob, "bob@localhost"), false);
    // Again, now that both answers are remembered.
    assert.equal(await delivered(dave, bob, "bob@localhost"), true);
    assert.equal(await delivered(carol, bob, "bob@localhost"), false);
    for (const c of [bob, carol, dave]) c.close();
  } finally {
    await t.stop();
  }
});

Deno.test("a stranger added to the roster counts at once", async () => {
  const t = await start("block_strangers = true");
  try {
    const [bob, carol] = await Promise.all([login(t, "bob"), login(t, "carol")]);
    assert.equal(await delivered(carol, bob, "bob@localhost"), false);
    const added = await ask(
      bob,
      "<iq type='set'><query xmlns='jabber:iq:roster'><item jid='carol@localhost'/></query></iq>",
    );
    assert.equal(added.attrs.type, "result");
    assert.equal(await delivered(carol, bob, "bob@localhost"), true);
    bob.close();
    carol.close();
  } finally {
    await t.stop();
  }
});
