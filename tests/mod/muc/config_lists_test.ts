// XEP-0045 §10.2's owners and admins lists (`muc#roomconfig_roomowners`, `_roomadmins`) in the
// room configuration form over real sockets: shown with the current holders, submitted lists
// change affiliations like `muc#admin` does, and bad lists are refused without any change.

import assert from "node:assert/strict";
import type { Element } from "../../../core/xml/element.ts";
import { serialize } from "../../../core/xml/serializer.ts";
import { conditionOf, type RawClient } from "../../helpers/raw_client.ts";
import {
  createInstantRoom,
  iq,
  itemOf,
  join,
  MUC,
  NS_ADMIN,
  NS_OWNER,
  NS_USER,
  presenceFrom,
  statuses,
  world,
} from "./helpers.ts";

const ROOM = `lounge@${MUC}`;
const ROOMCONFIG = "http://jabber.org/protocol/muc#roomconfig";

/** A submitted form with text fields and jid-multi lists (each list may be empty). */
function submit(fields: Record<string, string | string[]>): string {
  let xml = `<query xmlns='${NS_OWNER}'><x xmlns='jabber:x:data' type='submit'>` +
    `<field var='FORM_TYPE'><value>${ROOMCONFIG}</value></field>`;
  for (const [name, value] of Object.entries(fields)) {
    const values = Array.isArray(value) ? value : [value];
    xml += `<field var='muc#roomconfig_${name}'>` +
      values.map((v) => `<value>${v}</value>`).join("") + `</field>`;
  }
  return `${xml}</x></query>`;
}

async function formValues(client: RawClient): Promise<Map<string, Element>> {
  const answer = await iq(client, "get", ROOM, `<query xmlns='${NS_OWNER}'/>`);
  assert.equal(answer.attrs.type, "result", serialize(answer));
  const x = answer.getChild("query", NS_OWNER)!.getChild("x", "jabber:x:data")!;
  return new Map(x.getChildren("field").map((f) => [f.attrs.var, f]));
}

function values(field: Element | undefined): string[] {
  assert.ok(field, "the field is in the form");
  return field.getChildren("value").map((v) => v.text()).sort();
}

/** The bare JIDs holding `affiliation`, from a muc#admin list query. */
async function holders(client: RawClient, affiliation: string): Promise<string[]> {
  const answer = await iq(
    client,
    "get",
    ROOM,
    `<query xmlns='${NS_ADMIN}'><item affiliation='${affiliation}'/></query>`,
  );
  assert.equal(answer.attrs.type, "result", serialize(answer));
  return answer.getChild("query", NS_ADMIN)!.getChildren("item").map((i) => i.attrs.jid).sort();
}

async function setAffiliation(client: RawClient, jid: string, affiliation: string) {
  const answer = await iq(
    client,
    "set",
    ROOM,
    `<query xmlns='${NS_ADMIN}'><item affiliation='${affiliation}' jid='${jid}'/></query>`,
  );
  assert.equal(answer.attrs.type, "result", serialize(answer));
}

Deno.test("the configuration form lists the room's owners and admins as jid-multi fields", async () => {
  const w = await world(["alice", "bob"]);
  try {
    const { alice } = w.clients;
    await createInstantRoom(alice, "lounge", "Al");
    await setAffiliation(alice, "bob@localhost", "admin");
    const fields = await formValues(alice);
    assert.equal(fields.get("muc#roomconfig_roomowners")?.attrs.type, "jid-multi");
    assert.equal(fields.get("muc#roomconfig_roomadmins")?.attrs.type, "jid-multi");
    assert.deepEqual(values(fields.get("muc#roomconfig_roomowners")), ["alice@localhost"]);
    assert.deepEqual(values(fields.get("muc#roomconfig_roomadmins")), ["bob@localhost"]);
  } finally {
    await w.end();
  }
});

Deno.test("submitting the lists makes an occupant admin (new role broadcast) and an absent user owner (101)", async () => {
  const w = await world(["alice", "bob", "carol"]);
  try {
    const { alice, bob, carol } = w.clients;
    await createInstantRoom(alice, "lounge", "Al");
    await join(bob, "lounge", "Bob");
    const bobSeen = presenceFrom(bob, `${ROOM}/Bob`);
    // Alice may still get Bob's join presence first: wait for the one with the change.
    const aliceSeen = alice.next((el) =>
      el.name === "presence" && el.attrs.from === `${ROOM}/Bob` &&
      el.getChild("x", NS_USER)?.getChild("item")?.attrs.affiliation === "admin"
    );
    const notice = carol.next((el) => el.name === "message" && el.attrs.from === ROOM);
    const answer = await iq(
      alice,
      "set",
      ROOM,
      submit({
        roomowners: ["alice@localhost", "carol@localhost"],
        roomadmins: ["bob@localhost"],
      }),
    );
    assert.equal(answer.attrs.type, "result", serialize(answer));
    const self = await bobSeen;
    assert.equal(itemOf(self).affiliation, "admin");
    assert.equal(itemOf(self).role, "moderator");
    assert.ok(statuses(self).includes(110));
    assert.equal(itemOf(await aliceSeen).role, "moderator");
    const told = await notice;
    assert.equal(told.attrs.type, "headline");
    assert.equal(itemOf(told).affiliation, "owner");
    assert.deepEqual(statuses(told), [101]);
    assert.deepEqual(await holders(alice, "owner"), ["alice@localhost", "carol@localhost"]);
    assert.deepEqual(await holders(alice, "admin"), ["bob@localhost"]);
    // Left out of a later owners list, carol loses the affiliation; bob stays admin.
    const again = await iq(alice, "set", ROOM, submit({ roomowners: ["alice@localhost"] }));
    assert.equal(again.attrs.type, "result", serialize(again));
    assert.deepEqual(await holders(alice, "owner"), ["alice@localhost"]);
    assert.deepEqual(await holders(alice, "admin"), ["bob@localhost"]);
  } finally {
    await w.end();
  }
});

Deno.test("an owners list that leaves no owner is refused with conflict and changes nothing", async () => {
  const w = await world(["alice", "bob"]);
  try {
    const { alice } = w.clients;
    await createInstantRoom(alice, "lounge", "Al");
    const empty = await iq(alice, "set", ROOM, submit({ roomname: "Renamed", roomowners: [] }));
    assert.equal(conditionOf(empty), "conflict", serialize(empty));
    // Moving the only owner to the admins list leaves no owner either.
    const moved = await iq(
      alice,
      "set",
      ROOM,
      submit({ roomowners: [], roomadmins: ["alice@localhost"] }),
    );
    assert.equal(conditionOf(moved), "conflict", serialize(moved));
    assert.deepEqual(await holders(alice, "owner"), ["alice@localhost"]);
    const fields = await formValues(alice);
    assert.notDeepEqual(values(fields.get("muc#roomconfig_roomname")), ["Renamed"]);
    // Handing the room to another owner in one form is allowed.
    const handed = await iq(alice, "set", ROOM, submit({ roomowners: ["bob@localhost"] }));
    assert.equal(handed.attrs.type, "result", serialize(handed));
    const owners = await iq(
      w.clients.bob,
      "get",
      ROOM,
      `<query xmlns='${NS_ADMIN}'><item affiliation='owner'/></query>`,
    );
    assert.deepEqual(
      owners.getChild("query", NS_ADMIN)!.getChildren("item").map((i) => i.attrs.jid),
      ["bob@localhost"],
    );
  } finally {
    await w.end();
  }
});

Deno.test("a list value that is not a valid bare JID is refused with bad-request", async () => {
  const w = await world(["alice", "bob"]);
  try {
    const { alice } = w.clients;
    await createInstantRoom(alice, "lounge", "Al");
    for (const bad of ["bob@localhost/phone", "a@b@c", "@localhost"]) {
      const answer = await iq(alice, "set", ROOM, submit({ roomadmins: [bad] }));
      assert.equal(conditionOf(answer), "bad-request", `${bad}: ${serialize(answer)}`);
    }
    const owner = await iq(alice, "set", ROOM, submit({ roomowners: ["alice@localhost", "x/y"] }));
    assert.equal(conditionOf(owner), "bad-request", serialize(owner));
    assert.deepEqual(await holders(alice, "admin"), []);
    assert.deepEqual(await holders(alice, "owner"), ["alice@localhost"]);
  } finally {
    await w.end();
  }
});

Deno.test("a submitted form without the lists leaves owners and admins alone", async () => {
  const w = await world(["alice", "bob", "carol"]);
  try {
    const { alice } = w.clients;
    await createInstantRoom(alice, "lounge", "Al");
    await setAffiliation(alice, "bob@localhost", "admin");
    await setAffiliation(alice, "carol@localhost", "owner");
    const answer = await iq(alice, "set", ROOM, submit({ roomname: "Lounge" }));
    assert.equal(answer.attrs.type, "result", serialize(answer));
    assert.deepEqual(await holders(alice, "owner"), ["alice@localhost", "carol@localhost"]);
    assert.deepEqual(await holders(alice, "admin"), ["bob@localhost"]);
    // Only the admins list: owners stay, bob is no longer admin.
    const admins = await iq(alice, "set", ROOM, submit({ roomadmins: [] }));
    assert.equal(admins.attrs.type, "result", serialize(admins));
    assert.deepEqual(await holders(alice, "owner"), ["alice@localhost", "carol@localhost"]);
    assert.deepEqual(await holders(alice, "admin"), []);
  } finally {
    await w.end();
  }
});
