// The MUC room archive over real sockets: XEP-0313 queries on the room JID (paging, who may
// read, real JIDs), XEP-0359 stanza-ids, XEP-0421 occupant-ids, join history from the archive
// across a restart, and XEP-0425 moderation (broadcast, tombstone, errors).

import assert from "node:assert/strict";
import type { Element } from "../../../core/xml/element.ts";
import { serialize } from "../../../core/xml/serializer.ts";
import { conditionOf, type RawClient } from "../../helpers/raw_client.ts";
import {
  createInstantRoom,
  iq,
  join,
  MUC,
  NS_OWNER,
  NS_USER,
  presenceFrom,
  statuses,
  world,
} from "./helpers.ts";

const ROOM = `lounge@${MUC}`;
const NS_MAM = "urn:xmpp:mam:2";
const NS_SID = "urn:xmpp:sid:0";
const NS_OID = "urn:xmpp:occupant-id:0";
const NS_FORWARD = "urn:xmpp:forward:0";
const NS_RETRACT = "urn:xmpp:message-retract:1";
const NS_MODERATE = "urn:xmpp:message-moderate:1";
const NS_RSM = "http://jabber.org/protocol/rsm";

/** Submits room configuration fields (`muc#roomconfig_<name>`). */
async function configure(client: RawClient, fields: Record<string, string>): Promise<void> {
  let xml = `<query xmlns='${NS_OWNER}'><x xmlns='jabber:x:data' type='submit'>` +
    `<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>`;
  for (const [name, value] of Object.entries(fields)) {
    xml += `<field var='muc#roomconfig_${name}'><value>${value}</value></field>`;
  }
  const answer = await iq(client, "set", ROOM, `${xml}</x></query>`);
  assert.equal(answer.attrs.type, "result", serialize(answer));
}

/** Sends a groupchat message and returns the copy the room reflects to the sender. */
async function say(client: RawClient, nick: string, text: string): Promise<Element> {
  client.send(`<message to='${ROOM}' type='groupchat' id='${text}'><body>${text}</body></message>`);
  return await client.next((el) =>
    el.name === "message" && el.attrs.from === `${ROOM}/${nick}` && el.attrs.id === text
  );
}

/** The stanza-id the room put on a message. */
function stanzaId(message: Element): string {
  const sid = message.getChildren("stanza-id", NS_SID).find((el) => el.attrs.by === ROOM);
  assert.ok(sid?.attrs.id, `no stanza-id by the room in ${serialize(message)}`);
  return sid.attrs.id;
}

/** The occupant-id of a message or presence. */
function occupantId(stanza: Element): string {
  const id = stanza.getChild("occupant-id", NS_OID)?.attrs.id;
  assert.ok(id, `no occupant-id in ${serialize(stanza)}`);
  return id;
}

let queries = 0;

/** Runs an archive query on the room; returns the results and the iq answer. */
async function query(
  client: RawClient,
  inner = "",
): Promise<{ results: Element[]; answer: Element }> {
  const queryid = `q${++queries}`;
  const answer = await iq(
    client,
    "set",
    ROOM,
    `<query xmlns='${NS_MAM}' queryid='${queryid}'>${inner}</query>`,
  );
  // The results are sent before the answer, so they have all arrived with it.
  const results = client.received.filter((el) =>
    el.name === "message" && el.getChild("result", NS_MAM)?.attrs.queryid === queryid
  );
  return { results, answer };
}

/** The forwarded message of a result. */
function forwarded(result: Element): Element {
  const message = result.getChild("result", NS_MAM)?.getChild("forwarded", NS_FORWARD)
    ?.getChild("message");
  assert.ok(message, serialize(result));
  return message;
}

Deno.test("archive: occupants page through the room's messages; ids match the reflected stanza-ids; real JIDs only to who may see them", async () => {
  const w = await world(["alice", "bob", "carol"]);
  try {
    const { alice, bob, carol } = w.clients;
    const seen = await createInstantRoom(alice, "lounge", "Al");
    assert.deepEqual(statuses(seen[0]), [110, 170, 201]);
    await join(bob, "lounge", "Bob");
    const reflected: Element[] = [];
    for (const text of ["one", "two", "three", "four", "five"]) {
      reflected.push(await say(alice, "Al", text));
    }
    const atBob = await bob.next((el) => el.name === "message" && el.attrs.id === "one");
    assert.equal(stanzaId(atBob), stanzaId(reflected[0]));

    // Page 1 of 2 messages, then the next after its last.
    const first = await query(bob, `<set xmlns='${NS_RSM}'><max>2</max></set>`);
    assert.equal(first.answer.attrs.type, "result", serialize(first.answer));
    const fin = first.answer.getChild("fin", NS_MAM)!;
    assert.equal(fin.attrs.complete, "false");
    const rsm = fin.getChild("set", NS_RSM)!;
    assert.equal(rsm.getChildText("count"), "5");
    assert.equal(first.results.length, 2);
    assert.deepEqual(
      first.results.map((r) => r.getChild("result", NS_MAM)!.attrs.id),
      [stanzaId(reflected[0]), stanzaId(reflected[1])],
    );
    const message = forwarded(first.results[0]);
    assert.equal(first.results[0].attrs.from, ROOM);
    assert.equal(message.attrs.from, `${ROOM}/Al`);
    assert.equal(message.attrs.to, undefined);
    assert.equal(message.getChildText("body"), "one");
    // Bob is a participant of a semi-anonymous room: no real JID.
    assert.equal(message.getChild("x", NS_USER), undefined, serialize(message));
    const next = await query(
      bob,
      `<set xmlns='${NS_RSM}'><max>10</max><after>${rsm.getChildText("last")}</after></set>`,
    );
    assert.deepEqual(next.results.map((r) => forwarded(r).getChildText("body")), [
      "three",
      "four",
      "five",
    ]);
    assert.equal(next.answer.getChild("fin", NS_MAM)!.attrs.complete, "true");

    // The moderator sees who sent it.
    const own = await query(alice, `<set xmlns='${NS_RSM}'><max>1</max></set>`);
    assert.equal(
      forwarded(own.results[0]).getChild("x", NS_USER)?.getChild("item")?.attrs.jid,
      "alice@localhost/r",
    );
    // Public open room: a non-occupant may read it too; metadata names first and last.
    const outside = await query(carol, `<set xmlns='${NS_RSM}'><max>0</max></set>`);
    assert.equal(outside.answer.attrs.type, "result");
    const metadata = await iq(bob, "get", ROOM, `<metadata xmlns='${NS_MAM}'/>`);
    const meta = metadata.getChild("metadata", NS_MAM)!;
    assert.equal(meta.getChild("start")?.attrs.id, stanzaId(reflected[0]));
    assert.equal(meta.getChild("end")?.attrs.id, stanzaId(reflected[4]));

    // Disco advertises the archive, stanza-ids, occupant-ids and moderation.
    const info = await iq(
      bob,
      "get",
      ROOM,
      "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    );
    const features = info.getChild("query")!.getChildren("feature").map((f) => f.attrs.var);
    for (const feature of [NS_MAM, `${NS_MAM}#extended`, NS_SID, NS_OID, NS_MODERATE]) {
      assert.ok(features.includes(feature), `${feature} in ${features}`);
    }
  } finally {
    await w.end();
  }
});

Deno.test("archive: a members-only room's archive is forbidden to non-members; a room without archiving has none and no 170", async () => {
  const w = await world(["alice", "bob"]);
  try {
    const { alice, bob } = w.clients;
    await createInstantRoom(alice, "lounge", "Al");
    await say(alice, "Al", "secret");
    await configure(alice, { membersonly: "1" });
    const refused = await query(bob);
    assert.equal(conditionOf(refused.answer), "forbidden", serialize(refused.answer));
    const granted = await iq(
      alice,
      "set",
      ROOM,
      `<query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='member' jid='bob@localhost'/></query>`,
    );
    assert.equal(granted.attrs.type, "result", serialize(granted));
    const member = await query(bob);
    assert.deepEqual(member.results.map((r) => forwarded(r).getChildText("body")), ["secret"]);

    await configure(alice, { enablearchiving: "0", membersonly: "0" });
    const note = await alice.next((el) =>
      el.name === "message" && el.attrs.from === ROOM && statuses(el).includes(171)
    );
    assert.deepEqual(statuses(note), [104, 171]);
    const off = await query(bob);
    assert.equal(conditionOf(off.answer), "service-unavailable");
    const entered = await join(bob, "lounge", "Bob");
    assert.deepEqual(statuses(entered.at(-2)!), [110]);
    // Without an archive the in-memory history still serves newcomers.
    assert.deepEqual(entered.filter((el) => el.getChild("body")).length, 0);
  } finally {
    await w.end();
  }
});

Deno.test("occupant-id: stable for one user across a rejoin, different for two users, replaced when forged", async () => {
  const w = await world(["alice", "bob"]);
  try {
    const { alice, bob } = w.clients;
    const created = await createInstantRoom(alice, "lounge", "Al");
    const aliceId = occupantId(created[0]);
    const joined = await join(bob, "lounge", "Bob");
    const bobId = occupantId(joined.at(-2)!);
    assert.notEqual(aliceId, bobId);
    assert.equal(occupantId(await presenceFrom(alice, `${ROOM}/Bob`)), bobId);
    bob.send(
      `<message to='${ROOM}' type='groupchat' id='m1'><body>hi</body>` +
        `<occupant-id xmlns='${NS_OID}' id='forged'/></message>`,
    );
    const atAlice = await alice.next((el) => el.name === "message" && el.attrs.id === "m1");
    assert.deepEqual(atAlice.getChildren("occupant-id", NS_OID).map((el) => el.attrs.id), [
      bobId,
    ]);
    // Private messages carry it too.
    bob.send(
      `<message to='${ROOM}/Al' type='chat' id='pm1'><body>psst</body>` +
        `<occupant-id xmlns='${NS_OID}' id='forged'/></message>`,
    );
    const pm = await alice.next((el) => el.name === "message" && el.attrs.id === "pm1");
    assert.deepEqual(pm.getChildren("occupant-id", NS_OID).map((el) => el.attrs.id), [bobId]);
    bob.send(`<presence to='${ROOM}/Bob' type='unavailable'/>`);
    await bob.next((el) => el.attrs.type === "unavailable" && statuses(el).includes(110));
    const again = await join(bob, "lounge", "Robert");
    assert.equal(occupantId(again.at(-2)!), bobId);
  } finally {
    await w.end();
  }
});

Deno.test("history after a restart comes from the archive, with delay stamps and stanza-ids, as maxstanzas asks", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "lilt-muc-archive-" });
  try {
    const ids: string[] = [];
    const first = await world(["alice", "bob"], { dataDir });
    try {
      const { alice } = first.clients;
      await createInstantRoom(alice, "lounge", "Al");
      await configure(alice, { persistentroom: "1" });
      for (const text of ["one", "two", "three"]) ids.push(stanzaId(await say(alice, "Al", text)));
    } finally {
      await first.end();
    }
    const second = await world(["alice", "bob"], { dataDir });
    try {
      const { bob } = second.clients;
      const seen = await join(bob, "lounge", "Bob", "<history maxstanzas='2'/>");
      const history = seen.filter((el) => el.getChild("body"));
      assert.deepEqual(history.map((el) => el.getChildText("body")), ["two", "three"]);
      assert.deepEqual(history.map(stanzaId), ids.slice(1));
      const delay = history[0].getChild("delay", "urn:xmpp:delay");
      assert.equal(delay?.attrs.from, ROOM);
      assert.ok(!Number.isNaN(Date.parse(delay!.attrs.stamp)));
      assert.equal(history[0].attrs.from, `${ROOM}/Al`);
      assert.equal(history[0].getChild("x", NS_USER), undefined, "no real JID to a participant");
      const all = await query(bob);
      assert.equal(all.results.length, 3);
    } finally {
      await second.end();
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("moderation: a moderator retracts a message by its stanza-id; everyone is told, the archive keeps a tombstone; others are forbidden, unknown ids not found", async () => {
  const w = await world(["alice", "bob", "carol"]);
  try {
    const { alice, bob, carol } = w.clients;
    await createInstantRoom(alice, "lounge", "Al");
    await join(bob, "lounge", "Bob");
    const spam = await say(bob, "Bob", "spam");
    const id = stanzaId(spam);
    const moderate = (reason: string, target = id) =>
      `<moderate xmlns='${NS_MODERATE}' id='${target}'><retract xmlns='${NS_RETRACT}'/>` +
      `<reason>${reason}</reason></moderate>`;

    assert.equal(conditionOf(await iq(bob, "set", ROOM, moderate("mine"))), "forbidden");
    assert.equal(
      conditionOf(await iq(alice, "set", ROOM, moderate("nope", "1-1.unknown"))),
      "item-not-found",
    );
    const answer = await iq(alice, "set", ROOM, moderate("off-topic"));
    assert.equal(answer.attrs.type, "result", serialize(answer));
    for (const client of [alice, bob]) {
      const notice = await client.next((el) =>
        el.name === "message" && el.attrs.from === ROOM && el.getChild("retract", NS_RETRACT) !==
          undefined
      );
      assert.equal(notice.attrs.type, "groupchat");
      const retract = notice.getChild("retract", NS_RETRACT)!;
      assert.equal(retract.attrs.id, id);
      assert.equal(retract.getChild("moderated", NS_MODERATE)?.attrs.by, `${ROOM}/Al`);
      assert.equal(retract.getChildText("reason"), "off-topic");
    }
    // Retracting it twice finds nothing left to retract.
    assert.equal(conditionOf(await iq(alice, "set", ROOM, moderate("again"))), "item-not-found");

    const { results } = await query(bob);
    assert.equal(results.length, 1);
    assert.equal(results[0].getChild("result", NS_MAM)!.attrs.id, id);
    const tombstone = forwarded(results[0]);
    assert.equal(tombstone.attrs.from, `${ROOM}/Bob`);
    assert.equal(tombstone.getChild("body"), undefined, serialize(tombstone));
    assert.ok(!serialize(tombstone).includes(">spam<"), "the text is gone");
    const retracted = tombstone.getChild("retracted", NS_RETRACT);
    assert.equal(retracted?.getChild("moderated", NS_MODERATE)?.attrs.by, `${ROOM}/Al`);

    // Newcomers get no retracted message in their history.
    const seen = await join(carol, "lounge", "Carol");
    assert.equal(seen.filter((el) => el.getChild("body")).length, 0);
  } finally {
    await w.end();
  }
});

Deno.test("bad archive and moderation requests get clear errors and the room keeps working", async () => {
  const w = await world(["alice", "bob"]);
  try {
    const { alice, bob } = w.clients;
    await createInstantRoom(alice, "lounge", "Al");
    await join(bob, "lounge", "Bob");
    await say(bob, "Bob", "kept");
    const bad = async (inner: string) => conditionOf((await query(bob, inner)).answer);
    assert.equal(
      await bad(
        `<x xmlns='jabber:x:data' type='submit'><field var='start'><value>yesterday</value></field></x>`,
      ),
      "bad-request",
    );
    assert.equal(await bad(`<set xmlns='${NS_RSM}'><max>many</max></set>`), "bad-request");
    assert.equal(
      await bad(`<set xmlns='${NS_RSM}'><after>1-1.nosuchitem</after></set>`),
      "item-not-found",
    );
    assert.equal(
      conditionOf(await iq(alice, "set", ROOM, `<moderate xmlns='${NS_MODERATE}'/>`)),
      "bad-request",
    );
    assert.equal(
      conditionOf(
        await iq(alice, "set", ROOM, `<moderate xmlns='${NS_MODERATE}' id='x'><edit/></moderate>`),
      ),
      "bad-request",
    );
    assert.equal(
      conditionOf(await iq(bob, "get", `nowhere@${MUC}`, `<metadata xmlns='${NS_MAM}'/>`)),
      "item-not-found",
    );
    const { results } = await query(bob);
    assert.deepEqual(results.map((r) => forwarded(r).getChildText("body")), ["kept"]);
  } finally {
    await w.end();
  }
});
