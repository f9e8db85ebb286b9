// XEP-0045 §10 on `conference.localhost` over real sockets: instant and reserved rooms, the
// muc#roomconfig form and what each option does, destroying a room, and persistent rooms
// surviving a restart.

import assert from "node:assert/strict";
import type { Element } from "../../../core/xml/element.ts";
import { serialize } from "../../../core/xml/serializer.ts";
import { conditionOf, type RawClient } from "../../helpers/raw_client.ts";
import {
  createInstantRoom,
  iq,
  itemOf,
  join,
  joinError,
  messageError,
  messageFrom,
  MUC,
  NS_OWNER,
  NS_USER,
  presenceFrom,
  statuses,
  world,
} from "./helpers.ts";

const ROOM = `lounge@${MUC}`;
const DISCO_INFO = "<query xmlns='http://jabber.org/protocol/disco#info'/>";

function submit(fields: Record<string, string>): string {
  let xml = `<query xmlns='${NS_OWNER}'><x xmlns='jabber:x:data' type='submit'>` +
    `<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>`;
  for (const [name, value] of Object.entries(fields)) {
    xml += `<field var='muc#roomconfig_${name}'><value>${value}</value></field>`;
  }
  return `${xml}</x></query>`;
}

async function configure(client: RawClient, fields: Record<string, string>): Promise<Element> {
  const answer = await iq(client, "set", ROOM, submit(fields));
  assert.equal(answer.attrs.type, "result", serialize(answer));
  return answer;
}

Deno.test("instant room: an empty submitted form unlocks a new room (§10.1.2)", async () => {
  const w = await world(["alice", "bob"]);
  try {
    const { alice, bob } = w.clients;
    const seen = await createInstantRoom(alice, "lounge", "Al");
    assert.deepEqual(statuses(seen[0]), [110, 170, 201]);
    const entered = await join(bob, "lounge", "Bob");
    assert.deepEqual(statuses(entered.at(-2)!), [110, 170]);
  } finally {
    await w.end();
  }
});

Deno.test("reserved room: the owner gets the muc#roomconfig form, submits it, and its values apply (§10.1.3)", async () => {
  const w = await world(["alice", "bob"]);
  try {
    const { alice, bob } = w.clients;
    await join(alice, "lounge", "Al");
    // Others may not read the form.
    const denied = await iq(bob, "get", ROOM, `<query xmlns='${NS_OWNER}'/>`);
    assert.equal(conditionOf(denied), "forbidden");
    const form = await iq(alice, "get", ROOM, `<query xmlns='${NS_OWNER}'/>`);
    const x = form.getChild("query", NS_OWNER)!.getChild("x", "jabber:x:data")!;
    assert.equal(x.attrs.type, "form");
    const vars = x.getChildren("field").map((f) => f.attrs.var);
    for (
      const name of [
        "FORM_TYPE",
        "muc#roomconfig_roomname",
        "muc#roomconfig_roomdesc",
        "muc#roomconfig_persistentroom",
        "muc#roomconfig_publicroom",
        "muc#roomconfig_membersonly",
        "muc#roomconfig_moderatedroom",
        "muc#roomconfig_passwordprotectedroom",
        "muc#roomconfig_roomsecret",
        "muc#roomconfig_whois",
        "muc#roomconfig_maxusers",
        "muc#roomconfig_changesubject",
        "muc#roomconfig_allowpm",
        "muc#roomconfig_historylength",
      ]
    ) assert.ok(vars.includes(name), name);
    // A bad value is refused and leaves the room locked.
    const bad = await iq(alice, "set", ROOM, submit({ whois: "everyone" }));
    assert.equal(conditionOf(bad), "not-acceptable");
    assert.equal(await joinError(bob, "lounge", "Bob"), "item-not-found");
    await configure(alice, {
      roomname: "The Lounge",
      roomdesc: "Chat",
      passwordprotectedroom: "1",
      roomsecret: "s3cret",
    });
    assert.equal(await joinError(bob, "lounge", "Bob"), "not-authorized");
    assert.equal(
      await joinError(bob, "lounge", "Bob", "<password>wrong</password>"),
      "not-authorized",
    );
    await join(bob, "lounge", "Bob", "<password>s3cret</password>");
    const info = await iq(bob, "get", ROOM, DISCO_INFO);
    const query = info.getChild("query")!;
    assert.equal(query.getChild("identity")?.attrs.name, "The Lounge");
    const features = query.getChildren("feature").map((f) => f.attrs.var);
    assert.ok(features.includes("muc_passwordprotected"));
  } finally {
    await w.end();
  }
});

Deno.test("cancelling the first configuration destroys the new room", async () => {
  const w = await world(["alice"]);
  try {
    const { alice } = w.clients;
    await join(alice, "lounge", "Al");
    const answer = await iq(
      alice,
      "set",
      ROOM,
      `<query xmlns='${NS_OWNER}'><x xmlns='jabber:x:data' type='cancel'/></query>`,
    );
    assert.equal(answer.attrs.type, "result");
    const gone = await presenceFrom(alice, `${ROOM}/Al`);
    assert.equal(gone.attrs.type, "unavailable");
    assert.equal(conditionOf(await iq(alice, "get", ROOM, DISCO_INFO)), "item-not-found");
  } finally {
    await w.end();
  }
});

Deno.test("configuration changes are announced with 104 (and 172 when JIDs become public); non-anonymous rooms give 100 and JIDs", async () => {
  const w = await world(["alice", "bob", "carol"]);
  try {
    const { alice, bob, carol } = w.clients;
    await createInstantRoom(alice, "lounge", "Al");
    await join(bob, "lounge", "Bob");
    await configure(alice, { whois: "anyone" });
    const note = await bob.next((el) => el.name === "message" && el.attrs.from === ROOM);
    assert.deepEqual(statuses(note), [104, 172]);
    const seen = await join(carol, "lounge", "Carol");
    assert.equal(itemOf(seen[0]).jid !== undefined, true);
    assert.deepEqual(statuses(seen.at(-2)!), [100, 110, 170]);
  } finally {
    await w.end();
  }
});

Deno.test("maxusers, moderated, changesubject, allowpm and historylength take effect", async () => {
  const w = await world(["alice", "bob", "carol"]);
  try {
    const { alice, bob, carol } = w.clients;
    await createInstantRoom(alice, "lounge", "Al");
    await configure(alice, {
      maxusers: "2",
      moderatedroom: "1",
      changesubject: "1",
      allowpm: "none",
      historylength: "1",
    });
    await join(bob, "lounge", "Bob");
    assert.equal(await joinError(carol, "lounge", "Carol"), "service-unavailable");
    // A visitor in a moderated room has no voice.
    assert.equal(
      await messageError(bob, ROOM, "groupchat", "<body>hi</body>"),
      "forbidden",
    );
    assert.equal(await messageError(bob, `${ROOM}/Al`, "chat", "<body>hi</body>"), "forbidden");
    alice.send(`<message to='${ROOM}' type='groupchat'><body>one</body></message>`);
    alice.send(`<message to='${ROOM}' type='groupchat'><body>two</body></message>`);
    await messageFrom(bob, `${ROOM}/Al`);
    await messageFrom(bob, `${ROOM}/Al`);
    bob.send(`<presence to='${ROOM}/Bob' type='unavailable'/>`);
    await bob.next((el) => el.attrs.type === "unavailable" && statuses(el).includes(110));
    const seen = await join(bob, "lounge", "Bob");
    assert.deepEqual(seen.filter((s) => s.getChild("body")).map((s) => s.getChildText("body")), [
      "two",
    ]);
    const self = seen.find((s) => s.name === "presence" && statuses(s).includes(110))!;
    assert.equal(itemOf(self).role, "visitor");
  } finally {
    await w.end();
  }
});

Deno.test("participants may change the subject when changesubject is on", async () => {
  const w = await world(["alice", "bob"]);
  try {
    const { alice, bob } = w.clients;
    await createInstantRoom(alice, "lounge", "Al");
    await configure(alice, { changesubject: "1" });
    await join(bob, "lounge", "Bob");
    bob.send(`<message to='${ROOM}' type='groupchat'><subject>Bob's</subject></message>`);
    const subject = await messageFrom(alice, `${ROOM}/Bob`);
    assert.equal(subject.getChildText("subject"), "Bob's");
  } finally {
    await w.end();
  }
});

Deno.test("a room that becomes members-only removes non-members with 322 and refuses them", async () => {
  const w = await world(["alice", "bob"]);
  try {
    const { alice, bob } = w.clients;
    await createInstantRoom(alice, "lounge", "Al");
    await join(bob, "lounge", "Bob");
    await configure(alice, { membersonly: "1" });
    const removed = await bob.next((el) =>
      el.name === "presence" && el.attrs.type === "unavailable"
    );
    assert.deepEqual(statuses(removed), [110, 322]);
    const seen = await alice.next((el) =>
      el.attrs.from === `${ROOM}/Bob` && el.attrs.type === "unavailable"
    );
    assert.deepEqual(statuses(seen), [322]);
    assert.equal(await joinError(bob, "lounge", "Bob"), "registration-required");
  } finally {
    await w.end();
  }
});

Deno.test("destroy: occupants get unavailable with <destroy/>, the alternate venue and reason; only owners may", async () => {
  const w = await world(["alice", "bob"]);
  try {
    const { alice, bob } = w.clients;
    await createInstantRoom(alice, "lounge", "Al");
    await join(bob, "lounge", "Bob");
    const denied = await iq(bob, "set", ROOM, `<query xmlns='${NS_OWNER}'><destroy/></query>`);
    assert.equal(conditionOf(denied), "forbidden");
    const answer = await iq(
      alice,
      "set",
      ROOM,
      `<query xmlns='${NS_OWNER}'><destroy jid='attic@${MUC}'><reason>Moving</reason></destroy></query>`,
    );
    assert.equal(answer.attrs.type, "result");
    const gone = await presenceFrom(bob, `${ROOM}/Bob`);
    assert.equal(gone.attrs.type, "unavailable");
    const x = gone.getChild("x", NS_USER)!;
    assert.deepEqual(x.getChild("item")?.attrs, { affiliation: "none", role: "none" });
    assert.equal(x.getChild("destroy")?.attrs.jid, `attic@${MUC}`);
    assert.equal(x.getChild("destroy")?.getChildText("reason"), "Moving");
    assert.equal(conditionOf(await iq(bob, "get", ROOM, DISCO_INFO)), "item-not-found");
  } finally {
    await w.end();
  }
});

Deno.test("persistent rooms, their subject and owner survive a restart; temporary rooms do not", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "lilt-muc-" });
  try {
    const first = await world(["alice", "bob"], { dataDir });
    try {
      const { alice, bob } = first.clients;
      await createInstantRoom(alice, "lounge", "Al");
      await configure(alice, { persistentroom: "1", roomname: "Kept" });
      alice.send(`<message to='${ROOM}' type='groupchat'><subject>Still here</subject></message>`);
      await messageFrom(alice, `${ROOM}/Al`);
      await createInstantRoom(bob, "passing", "Bob");
      // Everyone leaves: the persistent room stays, empty.
      alice.send(`<presence to='${ROOM}/Al' type='unavailable'/>`);
      await alice.next((el) => el.attrs.type === "unavailable" && statuses(el).includes(110));
      const info = await iq(alice, "get", ROOM, DISCO_INFO);
      assert.equal(info.attrs.type, "result");
    } finally {
      await first.end();
    }
    const second = await world(["alice", "bob"], { dataDir });
    try {
      const { alice, bob } = second.clients;
      const items = await iq(
        bob,
        "get",
        MUC,
        "<query xmlns='http://jabber.org/protocol/disco#items'/>",
      );
      assert.deepEqual(items.getChild("query")!.getChildren("item").map((i) => i.attrs.jid), [
        ROOM,
      ]);
      const seen = await join(bob, "lounge", "Bob");
      assert.equal(seen.at(-1)!.getChildText("subject"), "Still here");
      assert.equal(seen.at(-1)!.attrs.from, `${ROOM}/Al`);
      const self = await join(alice, "lounge", "Al");
      assert.deepEqual(itemOf(self.at(-2)!).affiliation, "owner");
      assert.equal(
        conditionOf(await iq(alice, "get", `passing@${MUC}`, DISCO_INFO)),
        "item-not-found",
      );
    } finally {
      await second.end();
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
