// XEP-0045 §8–§10.7 on `conference.localhost` over real sockets: kick (307), ban (301), voice,
// moderator, member, admin and owner changes through muc#admin, with the permission rules of §5,
// lists of roles and affiliations, and affiliations kept for users outside the room.

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
  NS_ADMIN,
  NS_OWNER,
  NS_USER,
  statuses,
  world,
} from "./helpers.ts";

const ROOM = `lounge@${MUC}`;

function admin(items: string): string {
  return `<query xmlns='${NS_ADMIN}'>${items}</query>`;
}

async function adminSet(client: RawClient, items: string): Promise<Element> {
  return await iq(client, "set", ROOM, admin(items));
}

async function ok(client: RawClient, items: string): Promise<void> {
  const answer = await adminSet(client, items);
  assert.equal(answer.attrs.type, "result", serialize(answer));
}

/** The next unavailable presence from an occupant JID. */
function leftFrom(client: RawClient, nick: string): Promise<Element> {
  return client.next((el) =>
    el.name === "presence" && el.attrs.type === "unavailable" &&
    el.attrs.from === `${ROOM}/${nick}`
  );
}

Deno.test("kick: the kicked get 307 and 110 with the actor and reason, the others 307; participants may not kick", async () => {
  const w = await world(["alice", "bob"]);
  try {
    const { alice, bob } = w.clients;
    await createInstantRoom(alice, "lounge", "Al");
    await join(bob, "lounge", "Bob");
    assert.equal(
      conditionOf(await adminSet(bob, "<item nick='Al' role='none'/>")),
      "forbidden",
    );
    await ok(alice, "<item nick='Bob' role='none'><reason>Spam</reason></item>");
    const own = await leftFrom(bob, "Bob");
    assert.deepEqual(statuses(own), [110, 307]);
    const item = own.getChild("x", NS_USER)!.getChild("item")!;
    assert.equal(item.attrs.role, "none");
    assert.equal(item.getChild("actor")?.attrs.nick, "Al");
    assert.equal(item.getChildText("reason"), "Spam");
    assert.deepEqual(statuses(await leftFrom(alice, "Bob")), [307]);
    // Kicked is not banned.
    await join(bob, "lounge", "Bob");
    assert.equal(
      conditionOf(await adminSet(alice, "<item nick='Nobody' role='none'/>")),
      "item-not-found",
    );
  } finally {
    await w.end();
  }
});

Deno.test("ban: 301 and affiliation outcast, the banned cannot return, the outcast list has them; a ban of someone absent is kept", async () => {
  const w = await world(["alice", "bob", "carol"]);
  try {
    const { alice, bob, carol } = w.clients;
    await createInstantRoom(alice, "lounge", "Al");
    await join(bob, "lounge", "Bob");
    await ok(
      alice,
      "<item jid='bob@localhost' affiliation='outcast'><reason>Trolling</reason></item>" +
        "<item jid='carol@localhost' affiliation='outcast'/>",
    );
    const own = await leftFrom(bob, "Bob");
    assert.deepEqual(statuses(own), [110, 301]);
    assert.equal(itemOf(own).affiliation, "outcast");
    assert.deepEqual(statuses(await leftFrom(alice, "Bob")), [301]);
    assert.equal(await joinError(bob, "lounge", "Bob"), "forbidden");
    assert.equal(await joinError(carol, "lounge", "Carol"), "forbidden");
    const outcasts = await iq(alice, "get", ROOM, admin("<item affiliation='outcast'/>"));
    const items = outcasts.getChild("query", NS_ADMIN)!.getChildren("item");
    assert.deepEqual(items.map((i) => i.attrs.jid).sort(), ["bob@localhost", "carol@localhost"]);
    assert.equal(
      items.find((i) => i.attrs.jid === "bob@localhost")!.getChildText("reason"),
      "Trolling",
    );
    // Lifting the ban.
    await ok(alice, "<item jid='bob@localhost' affiliation='none'/>");
    await join(bob, "lounge", "Bob");
  } finally {
    await w.end();
  }
});

Deno.test("voice: moderators grant and revoke it in a moderated room; the role change is broadcast", async () => {
  const w = await world(["alice", "bob"]);
  try {
    const { alice, bob } = w.clients;
    await createInstantRoom(alice, "lounge", "Al");
    const set = await iq(
      alice,
      "set",
      ROOM,
      `<query xmlns='${NS_OWNER}'><x xmlns='jabber:x:data' type='submit'>` +
        `<field var='muc#roomconfig_moderatedroom'><value>1</value></field></x></query>`,
    );
    assert.equal(set.attrs.type, "result");
    await join(bob, "lounge", "Bob");
    assert.equal(await messageError(bob, ROOM, "groupchat", "<body>hi</body>"), "forbidden");
    await ok(alice, "<item nick='Bob' role='participant'/>");
    const voiced = await bob.next((el) =>
      el.name === "presence" && el.attrs.from === `${ROOM}/Bob` &&
      el.getChild("x", NS_USER)?.getChild("item")?.attrs.role === "participant"
    );
    assert.deepEqual(statuses(voiced), [110]);
    bob.send(`<message to='${ROOM}' type='groupchat'><body>now I speak</body></message>`);
    await messageFrom(alice, `${ROOM}/Bob`);
    const visitors = await iq(alice, "get", ROOM, admin("<item role='participant'/>"));
    assert.deepEqual(
      visitors.getChild("query", NS_ADMIN)!.getChildren("item").map((i) => i.attrs.nick),
      ["Bob"],
    );
    await ok(alice, "<item nick='Bob' role='visitor'/>");
    assert.equal(await messageError(bob, ROOM, "groupchat", "<body>hi</body>"), "forbidden");
  } finally {
    await w.end();
  }
});

Deno.test("affiliation rules: admins are moderators, may add members but not touch owners; the last owner stays", async () => {
  const w = await world(["alice", "bob", "carol"]);
  try {
    const { alice, bob, carol } = w.clients;
    await createInstantRoom(alice, "lounge", "Al");
    await join(bob, "lounge", "Bob");
    await join(carol, "lounge", "Carol");
    assert.equal(
      conditionOf(await adminSet(bob, "<item jid='carol@localhost' affiliation='member'/>")),
      "forbidden",
    );
    await ok(alice, "<item jid='bob@localhost' affiliation='admin'/>");
    const promoted = await carol.next((el) =>
      el.attrs.from === `${ROOM}/Bob` &&
      el.getChild("x", NS_USER)?.getChild("item")?.attrs.affiliation === "admin"
    );
    assert.equal(itemOf(promoted).role, "moderator");
    assert.equal(
      conditionOf(await adminSet(bob, "<item nick='Al' role='none'/>")),
      "not-allowed",
    );
    assert.equal(
      conditionOf(await adminSet(bob, "<item jid='carol@localhost' affiliation='owner'/>")),
      "not-allowed",
    );
    assert.equal(
      conditionOf(await adminSet(bob, "<item jid='alice@localhost' affiliation='member'/>")),
      "not-allowed",
    );
    await ok(bob, "<item jid='carol@localhost' affiliation='member'/>");
    const members = await iq(bob, "get", ROOM, admin("<item affiliation='member'/>"));
    assert.deepEqual(
      members.getChild("query", NS_ADMIN)!.getChildren("item").map((i) => i.attrs.jid),
      ["carol@localhost"],
    );
    // A participant may not list affiliations.
    assert.equal(
      conditionOf(await iq(carol, "get", ROOM, admin("<item affiliation='member'/>"))),
      "forbidden",
    );
    assert.equal(
      conditionOf(await adminSet(alice, "<item jid='alice@localhost' affiliation='admin'/>")),
      "conflict",
    );
    await ok(alice, "<item jid='carol@localhost' affiliation='owner'/>");
    await ok(alice, "<item jid='alice@localhost' affiliation='admin'/>");
  } finally {
    await w.end();
  }
});

Deno.test("members-only: a member added while away may enter; removing the membership removes them (321)", async () => {
  const w = await world(["alice", "bob"]);
  try {
    const { alice, bob } = w.clients;
    await createInstantRoom(alice, "lounge", "Al");
    const set = await iq(
      alice,
      "set",
      ROOM,
      `<query xmlns='${NS_OWNER}'><x xmlns='jabber:x:data' type='submit'>` +
        `<field var='muc#roomconfig_membersonly'><value>1</value></field></x></query>`,
    );
    assert.equal(set.attrs.type, "result");
    assert.equal(await joinError(bob, "lounge", "Bob"), "registration-required");
    await ok(alice, "<item jid='bob@localhost' affiliation='member'/>");
    const seen = await join(bob, "lounge", "Bob");
    assert.equal(itemOf(seen.at(-2)!).affiliation, "member");
    await ok(alice, "<item jid='bob@localhost' affiliation='none'/>");
    assert.deepEqual(statuses(await leftFrom(bob, "Bob")), [110, 321]);
  } finally {
    await w.end();
  }
});

Deno.test("affiliations of a persistent room survive a restart", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "lilt-muc-" });
  try {
    const first = await world(["alice", "bob"], { dataDir });
    try {
      const { alice } = first.clients;
      await createInstantRoom(alice, "lounge", "Al");
      const set = await iq(
        alice,
        "set",
        ROOM,
        `<query xmlns='${NS_OWNER}'><x xmlns='jabber:x:data' type='submit'>` +
          `<field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query>`,
      );
      assert.equal(set.attrs.type, "result");
      await ok(alice, "<item jid='bob@localhost' affiliation='outcast'><reason>No</reason></item>");
    } finally {
      await first.end();
    }
    const second = await world(["alice", "bob"], { dataDir });
    try {
      const { alice, bob } = second.clients;
      assert.equal(await joinError(bob, "lounge", "Bob"), "forbidden");
      await join(alice, "lounge", "Al");
      const outcasts = await iq(alice, "get", ROOM, admin("<item affiliation='outcast'/>"));
      const item = outcasts.getChild("query", NS_ADMIN)!.getChild("item")!;
      assert.equal(item.attrs.jid, "bob@localhost");
      assert.equal(item.getChildText("reason"), "No");
    } finally {
      await second.end();
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
