// XEP-0045 §7.8.2 mediated invitations and declines over real sockets (forwarded from the room
// with the reason and password, members-only rooms adding the invitee, refusals), and XEP-0249
// direct invitations passing through the router and the room untouched.

import assert from "node:assert/strict";
import type { Element } from "../../../core/xml/element.ts";
import { serialize } from "../../../core/xml/serializer.ts";
import { roundTrip } from "../../helpers/raw_client.ts";
import {
  createInstantRoom,
  iq,
  join,
  joinError,
  messageError,
  MUC,
  NS_ADMIN,
  NS_OWNER,
  NS_USER,
  world,
} from "./helpers.ts";

const ROOM = `lounge@${MUC}`;

async function configure(client: Parameters<typeof iq>[0], fields: Record<string, string>) {
  let form = `<query xmlns='${NS_OWNER}'><x xmlns='jabber:x:data' type='submit'>`;
  for (const [name, value] of Object.entries(fields)) {
    form += `<field var='muc#roomconfig_${name}'><value>${value}</value></field>`;
  }
  const answer = await iq(client, "set", ROOM, `${form}</x></query>`);
  assert.equal(answer.attrs.type, "result", serialize(answer));
}

function inviteOf(message: Element): Element {
  const invite = message.getChild("x", NS_USER)?.getChild("invite");
  if (!invite) assert.fail(`no invitation in ${serialize(message)}`);
  return invite;
}

Deno.test("mediated invitation: forwarded from the room with reason and password; the decline reaches the inviter", async () => {
  const w = await world(["alice", "bob", "carol"]);
  try {
    const { alice, bob, carol } = w.clients;
    await createInstantRoom(alice, "lounge", "Al");
    await configure(alice, { passwordprotectedroom: "1", roomsecret: "cauldron" });
    alice.send(
      `<message to='${ROOM}' id='inv1'><x xmlns='${NS_USER}'>` +
        `<invite to='bob@localhost'><reason>Come and see</reason></invite></x></message>`,
    );
    const forwarded = await bob.next((el) => el.name === "message" && el.attrs.from === ROOM);
    const invite = inviteOf(forwarded);
    // whois is "moderators": the invitee sees the inviter's occupant JID, not the real one.
    assert.equal(invite.attrs.from, `${ROOM}/Al`);
    assert.equal(invite.getChildText("reason"), "Come and see");
    assert.equal(forwarded.getChild("x", NS_USER)!.getChildText("password"), "cauldron");
    assert.ok(forwarded.getChildText("body"), "a body for clients without MUC support");

    bob.send(
      `<message to='${ROOM}'><x xmlns='${NS_USER}'>` +
        `<decline to='alice@localhost/r'><reason>Too busy</reason></decline></x></message>`,
    );
    const declined = await alice.next((el) =>
      el.name === "message" && el.attrs.from === ROOM &&
      el.getChild("x", NS_USER)?.getChild("decline") !== undefined
    );
    const decline = declined.getChild("x", NS_USER)!.getChild("decline")!;
    assert.equal(decline.attrs.from, "bob@localhost");
    assert.equal(decline.getChildText("reason"), "Too busy");

    // Someone outside the room may not invite; an invitation needs a valid `to`.
    const outsider = await messageError(
      carol,
      ROOM,
      "normal",
      `<x xmlns='${NS_USER}'><invite to='bob@localhost'/></x>`,
    );
    assert.equal(outsider, "not-acceptable");
    assert.equal(
      await messageError(alice, ROOM, "normal", `<x xmlns='${NS_USER}'><invite/></x>`),
      "bad-request",
    );
    assert.equal(
      await messageError(alice, ROOM, "normal", `<x xmlns='${NS_USER}'><invite to='a@@b'/></x>`),
      "jid-malformed",
    );
    assert.equal(
      await messageError(alice, ROOM, "normal", `<x xmlns='${NS_USER}'/>`),
      "bad-request",
    );
    assert.equal(
      await messageError(bob, ROOM, "normal", `<x xmlns='${NS_USER}'><decline/></x>`),
      "bad-request",
    );
  } finally {
    await w.end();
  }
});

Deno.test("mediated invitation in a whois=anyone room carries the inviter's real JID", async () => {
  const w = await world(["alice", "bob"]);
  try {
    const { alice, bob } = w.clients;
    await createInstantRoom(alice, "lounge", "Al");
    await configure(alice, { whois: "anyone" });
    alice.send(
      `<message to='${ROOM}'><x xmlns='${NS_USER}'><invite to='bob@localhost'/></x></message>`,
    );
    const forwarded = await bob.next((el) => el.name === "message" && el.attrs.from === ROOM);
    assert.equal(inviteOf(forwarded).attrs.from, "alice@localhost/r");
    assert.equal(forwarded.getChild("x", NS_USER)!.getChild("password"), undefined);

    // With whois=moderators, an invitee who would enter as a moderator (an admin) sees it too.
    await configure(alice, { whois: "moderators" });
    const made = await iq(
      alice,
      "set",
      ROOM,
      `<query xmlns='${NS_ADMIN}'><item affiliation='admin' jid='bob@localhost'/></query>`,
    );
    assert.equal(made.attrs.type, "result", serialize(made));
    alice.send(
      `<message to='${ROOM}' id='inv3'><x xmlns='${NS_USER}'><invite to='bob@localhost'/></x></message>`,
    );
    const again = await bob.next((el) => el.name === "message" && el.attrs.id === "inv3");
    assert.equal(inviteOf(again).attrs.from, "alice@localhost/r");
  } finally {
    await w.end();
  }
});

Deno.test("members-only room: an owner's invitation makes the invitee a member; a member may not invite", async () => {
  const w = await world(["alice", "bob", "carol"]);
  try {
    const { alice, bob, carol } = w.clients;
    await createInstantRoom(alice, "lounge", "Al");
    await configure(alice, { membersonly: "1" });
    assert.equal(await joinError(bob, "lounge", "Bob"), "registration-required");
    alice.send(
      `<message to='${ROOM}'><x xmlns='${NS_USER}'><invite to='bob@localhost'/></x></message>`,
    );
    await bob.next((el) => el.name === "message" && el.attrs.from === ROOM);
    await join(bob, "lounge", "Bob");
    assert.equal(
      await messageError(
        bob,
        ROOM,
        "normal",
        `<x xmlns='${NS_USER}'><invite to='carol@localhost'/></x>`,
      ),
      "forbidden",
    );
    assert.equal(await joinError(carol, "lounge", "Carol"), "registration-required");
  } finally {
    await w.end();
  }
});

Deno.test("a message to the room that is neither groupchat, invitation nor voice request is refused", async () => {
  const w = await world(["alice"]);
  try {
    const { alice } = w.clients;
    await createInstantRoom(alice, "lounge", "Al");
    assert.equal(await messageError(alice, ROOM, "chat", "<body>hi</body>"), "bad-request");
  } finally {
    await w.end();
  }
});

Deno.test("XEP-0249 direct invitations reach the invitee, directly and through an occupant JID", async () => {
  const w = await world(["alice", "bob"]);
  try {
    const { alice, bob } = w.clients;
    await createInstantRoom(alice, "lounge", "Al");
    const direct = `<x xmlns='jabber:x:conference' jid='${ROOM}' reason='Join us'/>`;
    alice.send(`<message to='bob@localhost' id='d1'>${direct}</message>`);
    const got = await bob.next((el) => el.name === "message" && el.attrs.id === "d1");
    assert.equal(got.attrs.from, "alice@localhost/r");
    assert.equal(got.getChild("x", "jabber:x:conference")?.attrs.jid, ROOM);

    await join(bob, "lounge", "Bob");
    await roundTrip(alice);
    alice.send(`<message to='${ROOM}/Bob' id='d2'>${direct}</message>`);
    const relayed = await bob.next((el) => el.name === "message" && el.attrs.id === "d2");
    assert.equal(relayed.attrs.from, `${ROOM}/Al`);
    assert.equal(relayed.getChild("x", "jabber:x:conference")?.attrs.jid, ROOM);
  } finally {
    await w.end();
  }
});

Deno.test("members-only room with muc#roomconfig_allowinvites: a member's invitation makes the invitee a member", async () => {
  const w = await world(["alice", "bob", "carol", "dave"]);
  try {
    const { alice, bob, carol, dave } = w.clients;
    await createInstantRoom(alice, "lounge", "Al");
    await configure(alice, { membersonly: "1", allowinvites: "1" });
    alice.send(
      `<message to='${ROOM}'><x xmlns='${NS_USER}'><invite to='bob@localhost'/></x></message>`,
    );
    await bob.next((el) => el.name === "message" && el.attrs.from === ROOM);
    await join(bob, "lounge", "Bob");
    bob.send(
      `<message to='${ROOM}'><x xmlns='${NS_USER}'><invite to='carol@localhost'/></x></message>`,
    );
    const forwarded = await carol.next((el) => el.name === "message" && el.attrs.from === ROOM);
    assert.equal(inviteOf(forwarded).attrs.from, `${ROOM}/Bob`);
    await join(carol, "lounge", "Carol");
    // Without occupancy there is no inviting, even for someone the room knows.
    assert.equal(
      await messageError(
        dave,
        ROOM,
        "normal",
        `<x xmlns='${NS_USER}'><invite to='dave@localhost'/></x>`,
      ),
      "not-acceptable",
    );
  } finally {
    await w.end();
  }
});
