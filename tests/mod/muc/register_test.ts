// XEP-0045 §7.10 and §7.12 on `conference.localhost` over real sockets: the muc#register form,
// registering (membership with a reserved nick), refusals, unregistering, the reserved nick's
// disco node and its effect on joins, and registrations kept across a restart.

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
  MUC,
  NS_ADMIN,
  NS_OWNER,
  statuses,
  world,
} from "./helpers.ts";

const ROOM = `lounge@${MUC}`;
const NS_REGISTER = "jabber:iq:register";
const NS_INFO = "http://jabber.org/protocol/disco#info";

function registration(nick: string, formType = "http://jabber.org/protocol/muc#register"): string {
  return `<query xmlns='${NS_REGISTER}'><x xmlns='jabber:x:data' type='submit'>` +
    `<field var='FORM_TYPE'><value>${formType}</value></field>` +
    `<field var='muc#register_first'><value>Bob</value></field>` +
    `<field var='muc#register_roomnick'><value>${nick}</value></field></x></query>`;
}

async function register(client: RawClient, nick: string): Promise<Element> {
  return await iq(client, "set", ROOM, registration(nick));
}

async function configure(client: RawClient, fields: Record<string, string>): Promise<void> {
  const inner = Object.entries(fields).map(([name, value]) =>
    `<field var='muc#roomconfig_${name}'><value>${value}</value></field>`
  ).join("");
  const answer = await iq(
    client,
    "set",
    ROOM,
    `<query xmlns='${NS_OWNER}'><x xmlns='jabber:x:data' type='submit'>${inner}</x></query>`,
  );
  assert.equal(answer.attrs.type, "result", serialize(answer));
}

async function reservedNick(client: RawClient): Promise<string | undefined> {
  const answer = await iq(
    client,
    "get",
    ROOM,
    `<query xmlns='${NS_INFO}' node='x-roomuser-item'/>`,
  );
  assert.equal(answer.attrs.type, "result", serialize(answer));
  const query = answer.getChild("query", NS_INFO)!;
  assert.equal(query.attrs.node, "x-roomuser-item");
  return query.getChild("identity")?.attrs.name;
}

async function members(client: RawClient): Promise<Record<string, string | undefined>[]> {
  const answer = await iq(
    client,
    "get",
    ROOM,
    `<query xmlns='${NS_ADMIN}'><item affiliation='member'/></query>`,
  );
  assert.equal(answer.attrs.type, "result", serialize(answer));
  return answer.getChild("query", NS_ADMIN)!.getChildren("item").map((item) => ({
    jid: item.attrs.jid,
    nick: item.attrs.nick,
  }));
}

Deno.test("the registration form has the muc#register fields, the nick required; the room advertises jabber:iq:register", async () => {
  const w = await world(["alice", "bob"]);
  try {
    const { alice, bob } = w.clients;
    await createInstantRoom(alice, "lounge", "Al");
    const answer = await iq(bob, "get", ROOM, `<query xmlns='${NS_REGISTER}'/>`);
    assert.equal(answer.attrs.type, "result", serialize(answer));
    const form = answer.getChild("query", NS_REGISTER)!.getChild("x", "jabber:x:data")!;
    assert.equal(form.attrs.type, "form");
    const fields = form.getChildren("field");
    assert.deepEqual(fields.map((f) => f.attrs.var), [
      "FORM_TYPE",
      "muc#register_first",
      "muc#register_last",
      "muc#register_roomnick",
      "muc#register_url",
      "muc#register_email",
      "muc#register_faqentry",
    ]);
    assert.equal(fields[0].getChildText("value"), "http://jabber.org/protocol/muc#register");
    assert.ok(fields[3].getChild("required"));
    assert.equal(fields[6].attrs.type, "text-multi");
    const info = await iq(bob, "get", ROOM, `<query xmlns='${NS_INFO}'/>`);
    const features = info.getChild("query", NS_INFO)!.getChildren("feature").map((f) =>
      f.attrs.var
    );
    assert.ok(features.includes(NS_REGISTER), serialize(info));
  } finally {
    await w.end();
  }
});

Deno.test("registering makes a member with a reserved nick: <registered/>, x-roomuser-item, the member list, the occupant's presence", async () => {
  const w = await world(["alice", "bob"]);
  try {
    const { alice, bob } = w.clients;
    await createInstantRoom(alice, "lounge", "Al");
    await join(bob, "lounge", "Bobby");
    assert.equal(await reservedNick(bob), undefined);
    const answer = await register(bob, "Bob");
    assert.equal(answer.attrs.type, "result", serialize(answer));
    // The affiliation change reaches the occupants (§9.3).
    const seen = await alice.next((el) =>
      el.name === "presence" && el.attrs.from === `${ROOM}/Bobby` &&
      itemOf(el).affiliation === "member"
    );
    assert.equal(itemOf(seen).role, "participant");
    const again = await iq(bob, "get", ROOM, `<query xmlns='${NS_REGISTER}'/>`);
    const query = again.getChild("query", NS_REGISTER)!;
    assert.ok(query.getChild("registered"), serialize(again));
    assert.equal(query.getChildText("username"), "Bob");
    assert.equal(await reservedNick(bob), "Bob");
    assert.deepEqual(await members(alice), [{ jid: "bob@localhost", nick: "Bob" }]);
  } finally {
    await w.end();
  }
});

Deno.test("a reserved nick: another user may not register it, join with it or change to it", async () => {
  const w = await world(["alice", "bob", "carol"]);
  try {
    const { alice, bob, carol } = w.clients;
    await createInstantRoom(alice, "lounge", "Al");
    assert.equal((await register(bob, "Bob")).attrs.type, "result");
    assert.equal(conditionOf(await register(carol, "Bob")), "conflict");
    // A nick an occupant uses is not registered by someone else either.
    assert.equal(conditionOf(await register(carol, "Al")), "conflict");
    assert.equal(await joinError(carol, "lounge", "Bob"), "conflict");
    await join(carol, "lounge", "Carol");
    carol.send(`<presence to='${ROOM}/Bob'/>`);
    const error = await carol.next((el) =>
      el.name === "presence" && el.attrs.type === "error" && el.attrs.from === `${ROOM}/Bob`
    );
    assert.equal(conditionOf(error), "conflict");
    // Its owner joins with it.
    await join(bob, "lounge", "Bob");
  } finally {
    await w.end();
  }
});

Deno.test("registration refusals: banned, no nick, a wrong FORM_TYPE, no form", async () => {
  const w = await world(["alice", "bob", "carol"]);
  try {
    const { alice, bob, carol } = w.clients;
    await createInstantRoom(alice, "lounge", "Al");
    const ban = await iq(
      alice,
      "set",
      ROOM,
      `<query xmlns='${NS_ADMIN}'><item jid='carol@localhost' affiliation='outcast'/></query>`,
    );
    assert.equal(ban.attrs.type, "result");
    assert.equal(conditionOf(await register(carol, "Carol")), "forbidden");
    assert.equal(
      conditionOf(await iq(carol, "get", ROOM, `<query xmlns='${NS_REGISTER}'/>`)),
      "forbidden",
    );
    assert.equal(conditionOf(await register(bob, "")), "bad-request");
    assert.equal(
      conditionOf(await iq(bob, "set", ROOM, registration("Bob", "urn:x"))),
      "bad-request",
    );
    assert.equal(
      conditionOf(await iq(bob, "set", ROOM, `<query xmlns='${NS_REGISTER}'/>`)),
      "bad-request",
    );
    assert.equal(
      conditionOf(await iq(bob, "set", ROOM, `<query xmlns='${NS_REGISTER}'><remove/></query>`)),
      "item-not-found",
    );
    assert.equal(
      conditionOf(await iq(bob, "get", `nowhere@${MUC}`, `<query xmlns='${NS_REGISTER}'/>`)),
      "item-not-found",
    );
  } finally {
    await w.end();
  }
});

Deno.test("registration admits to a members-only room; <remove/> ends membership (321) and frees the nick", async () => {
  const w = await world(["alice", "bob", "carol"]);
  try {
    const { alice, bob, carol } = w.clients;
    await createInstantRoom(alice, "lounge", "Al");
    await configure(alice, { membersonly: "1" });
    assert.equal(await joinError(bob, "lounge", "Bob"), "registration-required");
    assert.equal((await register(bob, "Bob")).attrs.type, "result");
    await join(bob, "lounge", "Bob");
    const removed = await iq(bob, "set", ROOM, `<query xmlns='${NS_REGISTER}'><remove/></query>`);
    assert.equal(removed.attrs.type, "result", serialize(removed));
    const left = await alice.next((el) =>
      el.name === "presence" && el.attrs.from === `${ROOM}/Bob` && el.attrs.type === "unavailable"
    );
    assert.deepEqual(statuses(left), [321]);
    assert.deepEqual(await members(alice), []);
    assert.equal(await reservedNick(bob), undefined);
    // The nick is free for another user now (carol becomes a member by registering).
    assert.equal((await register(carol, "Bob")).attrs.type, "result");
  } finally {
    await w.end();
  }
});

Deno.test("an owner's registration keeps the owner affiliation and reserves the nick", async () => {
  const w = await world(["alice"]);
  try {
    const { alice } = w.clients;
    await createInstantRoom(alice, "lounge", "Al");
    assert.equal((await register(alice, "Alice")).attrs.type, "result");
    assert.equal(await reservedNick(alice), "Alice");
    const owners = await iq(
      alice,
      "get",
      ROOM,
      `<query xmlns='${NS_ADMIN}'><item affiliation='owner'/></query>`,
    );
    const item = owners.getChild("query", NS_ADMIN)!.getChild("item")!;
    assert.equal(item.attrs.nick, "Alice");
    const removed = await iq(alice, "set", ROOM, `<query xmlns='${NS_REGISTER}'><remove/></query>`);
    assert.equal(removed.attrs.type, "result");
    assert.equal(await reservedNick(alice), undefined);
    const after = await iq(
      alice,
      "get",
      ROOM,
      `<query xmlns='${NS_ADMIN}'><item affiliation='owner'/></query>`,
    );
    assert.equal(after.getChild("query", NS_ADMIN)!.getChild("item")!.attrs.jid, "alice@localhost");
  } finally {
    await w.end();
  }
});

Deno.test("registrations of a persistent room survive a restart", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "lilt-muc-register-" });
  try {
    const first = await world(["alice", "bob", "carol"], { dataDir });
    try {
      const { alice, bob } = first.clients;
      await createInstantRoom(alice, "lounge", "Al");
      await configure(alice, { persistentroom: "1" });
      assert.equal((await register(bob, "Bob")).attrs.type, "result");
    } finally {
      await first.end();
    }
    const second = await world(["alice", "bob", "carol"], { dataDir });
    try {
      const { bob, carol } = second.clients;
      assert.equal(await reservedNick(bob), "Bob");
      assert.equal(await joinError(carol, "lounge", "Bob"), "conflict");
      await join(bob, "lounge", "Bob");
    } finally {
      await second.end();
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
