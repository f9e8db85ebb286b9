// Real-time block lists over real sockets: Lilt's own pubsub component plays the list service
// (xmppbl.org's role). The host and a MUC component follow its node; items are SHA-256 hashes
// of bare JIDs or domains; additions and retractions arrive as notifications; listed senders'
// messages, subscription requests and room joins are dropped; the shell lists and tests.

import assert from "node:assert/strict";
import { Element } from "../../core/xml/element.ts";
import { parseJid } from "../../core/jid.ts";
import { hostService } from "../../core/modules.ts";
import { parseConfigText } from "../../core/config.ts";
import { options, rtblHash } from "../../mod/rtbl.ts";
import { RawClient, roundTrip } from "../helpers/raw_client.ts";
import { startTestServer, testConfigText, type TestServer } from "../helpers/test_server.ts";

const PS = "http://jabber.org/protocol/pubsub";
const LIST = "pubsub.localhost";
const MUC = "conference.localhost";
const NODE = "muc_bans_sha256";
const SERVICES = `rtbl_services = [{ jid = "${LIST}", node = "${NODE}" }]`;

async function start(): Promise<TestServer> {
  return await startTestServer({
    modules: ["disco", "ping", "roster", "presence", "rtbl"],
    users: { alice: "pw", bob: "pw", mallory: "pw" },
    hostToml: SERVICES,
    extraToml: `[[component]]\ndomain = "${LIST}"\nmodules = ["disco", "pubsub"]\n\n` +
      `[[component]]\ndomain = "${MUC}"\nmodules = ["disco", "muc", "rtbl"]\n${SERVICES}\n`,
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
  const answer = await client.next((el) => el.name === "iq" && el.attrs.id === id);
  return answer;
}

async function shell(t: TestServer, name: string, ...args: string[]) {
  const spec = t.server.commands.get("rtbl", name)!;
  return await spec.run(
    { server: t.server, emit: () => {}, signal: new AbortController().signal },
    args,
  );
}

async function publish(owner: RawClient, id: string): Promise<void> {
  const answer = await ask(
    owner,
    `<iq type='set' to='${LIST}'><pubsub xmlns='${PS}'><publish node='${NODE}'>` +
      `<item id='${id}'><report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'/></item>` +
      `</publish></pubsub></iq>`,
  );
  assert.equal(answer.attrs.type, "result");
}

async function retract(owner: RawClient, id: string): Promise<void> {
  const answer = await ask(
    owner,
    `<iq type='set' to='${LIST}'><pubsub xmlns='${PS}'><retract node='${NODE}' notify='true'>` +
      `<item id='${id}'/></retract></pubsub></iq>`,
  );
  assert.equal(answer.attrs.type, "result");
}

async function delivered(from: RawClient, to: RawClient, toJid: string, subscribe = false) {
  const id = `x-${crypto.randomUUID()}`;
  from.send(
    subscribe
      ? `<presence to='${toJid}' type='subscribe' id='${id}'/>`
      : `<message to='${toJid}' type='chat' id='${id}'><body>buy now</body></message>`,
  );
  await roundTrip(from);
  await roundTrip(to);
  return to.received.some((el) => el.attrs.id === id);
}

Deno.test("a followed block list drops listed senders, and follows additions and retractions", async () => {
  const t = await start();
  try {
    const [alice, bob, mallory] = await Promise.all([
      login(t, "alice"),
      login(t, "bob"),
      login(t, "mallory"),
    ]);
    // The list does not exist yet: the first fetch fails and says so.
    const before = await shell(t, "refresh");
    assert.match(before.message!, /item-not-found/);

    // Alice runs the list: a node whose first item names Mallory's bare JID by its hash.
    const created = await ask(
      alice,
      `<iq type='set' to='${LIST}'><pubsub xmlns='${PS}'><create node='${NODE}'/></pubsub></iq>`,
    );
    assert.equal(created.attrs.type, "result");
    await publish(alice, rtblHash("mallory@localhost"));
    await shell(t, "refresh");

    const listed = await shell(t, "list");
    assert.deepEqual(
      (listed.data as { host: string; items: number; status: string }[]).map((l) => [
        l.host,
        l.items,
        l.status,
      ]),
      [["localhost", 1, "ok"], [MUC, 1, "ok"]],
    );
    assert.deepEqual(listed.table!.columns, [
      "host",
      "service",
      "node",
      "items",
      "status",
      "updated",
    ]);

    // Mallory's messages and subscription requests go nowhere, unanswered.
    assert.equal(await delivered(mallory, bob, "bob@localhost"), false);
    assert.equal(await delivered(mallory, bob, "bob@localhost/r"), false);
    assert.equal(await delivered(mallory, bob, "bob@localhost", true), false);
    assert.equal(mallory.received.some((el) => el.attrs.type === "error"), false);
    assert.equal(await delivered(alice, bob, "bob@localhost"), true);
    assert.ok((t.server.metrics.snapshot()["rtbl.dropped"] ?? 0) >= 3);

    // Nor can she join a room on the MUC service that follows the list.
    mallory.send(`<presence to='lobby@${MUC}/mal' id='join'/>`);
    const refused = await mallory.next((el) => el.name === "presence" && el.attrs.id === "join");
    assert.equal(refused.attrs.type, "error");
    assert.ok(refused.getChild("error")?.getChild("forbidden"));

    const tested = await shell(t, "test", "mallory@localhost/phone");
    assert.match(
      tested.message!,
      /mallory@localhost is blocked by pubsub\.localhost muc_bans_sha256 \(jid, on localhost\)/,
    );
    assert.equal((await shell(t, "test", "bob@localhost")).message, "bob@localhost is not blocked");
    await assert.rejects(shell(t, "test", "@@"), /Not a JID/);

    // A whole domain, added while following: the notification updates the list at once.
    await publish(alice, rtblHash("spam.example"));
    await roundTrip(alice);
    assert.deepEqual(
      ((await shell(t, "test", "anyone@spam.example")).data as { matches: { by: string }[] })
        .matches.map((m) => m.by),
      ["domain", "domain"],
    );

    // Retracting Mallory's entry lets her through again.
    await retract(alice, rtblHash("mallory@localhost"));
    await roundTrip(alice);
    assert.equal(await delivered(mallory, bob, "bob@localhost"), true);
    const after = (await shell(t, "list")).data as { items: number }[];
    assert.deepEqual(after.map((l) => l.items), [1, 1]);

    // Someone listed while in a room can no longer write to it.
    for (const [client, nick] of [[alice, "alice"], [bob, "bob"]] as const) {
      client.send(`<presence to='lobby@${MUC}/${nick}'/>`);
      await client.next((el) => el.name === "presence" && el.attrs.from === `lobby@${MUC}/${nick}`);
    }
    const said = async () => {
      const id = `g-${crypto.randomUUID()}`;
      bob.send(
        `<message to='lobby@${MUC}' type='groupchat' id='${id}'><body>offer</body></message>`,
      );
      await roundTrip(bob);
      await roundTrip(alice);
      return alice.received.some((el) => el.attrs.id === id);
    };
    assert.equal(await said(), true);
    await publish(alice, rtblHash("bob@localhost"));
    await roundTrip(alice);
    assert.equal(await said(), false);

    // Purging the node empties the list everywhere.
    const purged = await ask(
      alice,
      `<iq type='set' to='${LIST}'><pubsub xmlns='${PS}#owner'><purge node='${NODE}'/></pubsub></iq>`,
    );
    assert.equal(purged.attrs.type, "result");
    await roundTrip(alice);
    assert.deepEqual(((await shell(t, "list")).data as { items: number }[]).map((l) => l.items), [
      0,
      0,
    ]);
    assert.equal(await said(), true);

    for (const c of [alice, bob, mallory]) c.close();
  } finally {
    await t.stop();
  }
});

Deno.test("rtbl_services entries are checked when the configuration is read", () => {
  const text = `${testConfigText("/tmp/unused")}` +
    `rtbl_services = [{ jid = "a@@b", node = "" }, { jid = "xmppbl.org", node = "n", x = 1 }]\n`;
  const { config, problems } = parseConfigText(text, "lilt.toml", { moduleOptions: options });
  assert.equal(config, undefined);
  const messages = problems.map((p) => p.message).join("\n");
  assert.match(messages, /'jid' must be the list's pubsub service JID/);
  assert.match(messages, /'node' must be the list's node name/);
  assert.match(messages, /Unknown key 'x'/);
});

Deno.test("the SHA-256 of a JID is its lowercase hex digest, as RTBL item ids are", () => {
  assert.equal(
    rtblHash("sales@stolen-cardz.example"),
    "7583a9b348a498d329089a20d51b4fa0da65da0cab52bf300e0d775750311fc9",
  );
});

Deno.test("a list longer than one page (RSM) is fetched whole", async () => {
  const t = await startTestServer({
    modules: ["disco", "ping", "rtbl"],
    users: { alice: "pw" },
    hostToml: SERVICES,
    extraToml: `[[component]]\ndomain = "${LIST}"\nmodules = ["disco", "pubsub"]\n` +
      "pubsub_max_items = 5000\n",
  });
  try {
    const alice = await login(t, "alice");
    const form = "<x xmlns='jabber:x:data' type='submit'>" +
      "<field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>" +
      "<field var='pubsub#max_items'><value>max</value></field></x>";
    const created = await ask(
      alice,
      `<iq type='set' to='${LIST}'><pubsub xmlns='${PS}'><create node='${NODE}'/>` +
        `<configure>${form}</configure></pubsub></iq>`,
    );
    assert.equal(created.attrs.type, "result");
    // 2,345 entries (three pages of at most 1,000), published through the service itself: a
    // client would take a minute at the per-account iq rate limit.
    const total = 2345;
    const service = hostService(t.server.hosts.get(LIST)!, "pubsub")!.service;
    const owner = parseJid("alice@localhost");
    for (let i = 0; i < total; i++) {
      service.publish(owner, NODE, {
        id: rtblHash(`spammer${i}@spam.example`),
        payload: [new Element("report", { xmlns: "urn:xmpp:reporting:1" })],
        hasItem: true,
      });
    }
    await shell(t, "refresh");
    const lists = (await shell(t, "list")).data as { items: number; status: string }[];
    assert.deepEqual(lists.map((l) => [l.items, l.status]), [[total, "ok"]]);
    assert.equal(
      ((await shell(t, "test", "spammer2344@spam.example")).data as { blocked: boolean }).blocked,
      true,
    );
    alice.close();
  } finally {
    await t.stop();
  }
});
