// XEP-0045 on `conference.localhost` over real sockets: creating and entering rooms (§7.2, with
// its order and status codes), refusals, groupchat, history, subject, nick changes, private
// messages, several resources under one nick, leaving, and stanzas to rooms that do not exist.

import assert from "node:assert/strict";
import { conditionOf } from "../../helpers/raw_client.ts";
import {
  createOpenRoom,
  iq,
  itemOf,
  join,
  joinError,
  login,
  messageError,
  messageFrom,
  MUC,
  NS_MUC,
  NS_USER,
  presenceFrom,
  statuses,
  world,
} from "./helpers.ts";

const ROOM = `lounge@${MUC}`;

Deno.test("a new room: the creator is owner and moderator with 110 and 201, then the empty subject; others find it locked", async () => {
  const w = await world(["alice", "bob"]);
  try {
    const { alice, bob } = w.clients;
    const seen = await join(alice, "lounge", "Al");
    assert.equal(seen.length, 2);
    const [self, subject] = seen;
    assert.equal(self.attrs.from, `${ROOM}/Al`);
    assert.deepEqual(statuses(self), [110, 170, 201]);
    assert.deepEqual(itemOf(self), {
      affiliation: "owner",
      jid: "alice@localhost/r",
      role: "moderator",
    });
    assert.equal(subject.attrs.from, ROOM);
    assert.equal(subject.attrs.type, "groupchat");
    assert.equal(subject.getChild("subject")?.text(), "");
    // §10.1.1: locked until the owner configures it.
    assert.equal(await joinError(bob, "lounge", "Bob"), "item-not-found");
  } finally {
    await w.end();
  }
});

Deno.test("entering: the others' presence first, then one's own with 110, then the subject; jids only to moderators", async () => {
  const w = await world(["alice", "bob", "carol"]);
  try {
    const { alice, bob, carol } = w.clients;
    await createOpenRoom(alice, "lounge", "Al");
    const seen = await join(bob, "lounge", "Bob");
    assert.deepEqual(seen.map((s) => s.attrs.from), [`${ROOM}/Al`, `${ROOM}/Bob`, ROOM]);
    // Semi-anonymous by default: a participant sees no real JID, and no 100.
    assert.deepEqual(itemOf(seen[0]), { affiliation: "owner", role: "moderator" });
    assert.deepEqual(statuses(seen[0]), []);
    assert.deepEqual(statuses(seen[1]), [110, 170]);
    assert.deepEqual(itemOf(seen[1]), {
      affiliation: "none",
      jid: "bob@localhost/r",
      role: "participant",
    });
    // The moderator sees the newcomer's JID, without 110.
    const atAlice = await presenceFrom(alice, `${ROOM}/Bob`);
    assert.deepEqual(statuses(atAlice), []);
    assert.equal(itemOf(atAlice).jid, "bob@localhost/r");
    // The presence payload (show, status) is carried.
    bob.send(`<presence to='${ROOM}/Bob'><show>away</show><status>lunch</status></presence>`);
    const update = await presenceFrom(alice, `${ROOM}/Bob`);
    assert.equal(update.getChildText("show"), "away");
    assert.equal(update.getChildText("status"), "lunch");
    const own = await presenceFrom(bob, `${ROOM}/Bob`);
    assert.deepEqual(statuses(own), [110]);
    // Nick taken by someone else.
    assert.equal(await joinError(carol, "lounge", "Bob"), "conflict");
    // No nick at all.
    carol.send(`<presence to='${ROOM}'><x xmlns='${NS_MUC}'/></presence>`);
    const noNick = await carol.next((el) => el.name === "presence" && el.attrs.type === "error");
    assert.equal(conditionOf(noNick), "jid-malformed");
  } finally {
    await w.end();
  }
});

Deno.test("groupchat is reflected to every occupant from the occupant JID with its id; non-occupants get not-acceptable", async () => {
  const w = await world(["alice", "bob", "carol"]);
  try {
    const { alice, bob, carol } = w.clients;
    await createOpenRoom(alice, "lounge", "Al");
    await join(bob, "lounge", "Bob");
    bob.send(`<message to='${ROOM}' type='groupchat' id='m1'><body>hello</body></message>`);
    for (const client of [alice, bob]) {
      const message = await messageFrom(client, `${ROOM}/Bob`);
      assert.equal(message.attrs.id, "m1");
      assert.equal(message.attrs.type, "groupchat");
      assert.equal(message.getChildText("body"), "hello");
    }
    assert.equal(
      await messageError(carol, ROOM, "groupchat", "<body>let me in</body>"),
      "not-acceptable",
    );
    // A room that does not exist answers item-not-found to messages and iqs alike.
    assert.equal(
      await messageError(carol, `nowhere@${MUC}`, "groupchat", "<body>hi</body>"),
      "item-not-found",
    );
    const info = await iq(
      carol,
      "get",
      `nowhere@${MUC}`,
      "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    );
    assert.equal(conditionOf(info), "item-not-found");
  } finally {
    await w.end();
  }
});

Deno.test("history goes to newcomers with delay stamps, before the subject, as maxstanzas, maxchars and since ask", async () => {
  const w = await world(["alice", "bob", "carol"]);
  try {
    const { alice, bob, carol } = w.clients;
    await createOpenRoom(alice, "lounge", "Al");
    for (const text of ["one", "two", "three"]) {
      alice.send(
        `<message to='${ROOM}' type='groupchat' id='${text}'><body>${text}</body></message>`,
      );
      await messageFrom(alice, `${ROOM}/Al`);
    }
    const seen = await join(bob, "lounge", "Bob");
    const history = seen.filter((s) => s.getChild("body"));
    assert.deepEqual(history.map((m) => m.getChildText("body")), ["one", "two", "three"]);
    const delay = history[0].getChild("delay", "urn:xmpp:delay");
    assert.equal(delay?.attrs.from, ROOM);
    assert.ok(!Number.isNaN(Date.parse(delay!.attrs.stamp)));
    assert.equal(history[0].attrs.from, `${ROOM}/Al`);
    assert.equal(history[0].attrs.id, "one");
    assert.equal(seen.at(-1)!.getChild("subject")?.text(), "");

    const two = await join(carol, "lounge", "C1", "<history maxstanzas='2'/>");
    assert.deepEqual(two.filter((s) => s.getChild("body")).map((m) => m.getChildText("body")), [
      "two",
      "three",
    ]);
    carol.send(`<presence to='${ROOM}/C1' type='unavailable'/>`);
    await carol.next((el) => el.attrs.type === "unavailable" && statuses(el).includes(110));
    const none = await join(carol, "lounge", "C2", "<history maxchars='0'/>");
    assert.equal(none.filter((s) => s.getChild("body")).length, 0);
    carol.send(`<presence to='${ROOM}/C2' type='unavailable'/>`);
    await carol.next((el) => el.attrs.type === "unavailable" && statuses(el).includes(110));
    const future = new Date(Date.now() + 3_600_000).toISOString();
    const since = await join(carol, "lounge", "C3", `<history since='${future}'/>`);
    assert.equal(since.filter((s) => s.getChild("body")).length, 0);
  } finally {
    await w.end();
  }
});

Deno.test("subject: participants may not change it by default, moderators may; newcomers get it from its setter", async () => {
  const w = await world(["alice", "bob", "carol"]);
  try {
    const { alice, bob, carol } = w.clients;
    await createOpenRoom(alice, "lounge", "Al");
    await join(bob, "lounge", "Bob");
    assert.equal(
      await messageError(bob, ROOM, "groupchat", "<subject>mine</subject>"),
      "forbidden",
    );
    alice.send(`<message to='${ROOM}' type='groupchat'><subject>Plans</subject></message>`);
    for (const client of [alice, bob]) {
      const message = await messageFrom(client, `${ROOM}/Al`);
      assert.equal(message.getChildText("subject"), "Plans");
    }
    const seen = await join(carol, "lounge", "Carol");
    const subject = seen.at(-1)!;
    assert.equal(subject.attrs.from, `${ROOM}/Al`);
    assert.equal(subject.getChildText("subject"), "Plans");
  } finally {
    await w.end();
  }
});

Deno.test("nick change: unavailable with the new nick and 303, then the new presence; a taken nick is a conflict", async () => {
  const w = await world(["alice", "bob"]);
  try {
    const { alice, bob } = w.clients;
    await createOpenRoom(alice, "lounge", "Al");
    await join(bob, "lounge", "Bob");
    await presenceFrom(alice, `${ROOM}/Bob`);
    bob.send(`<presence to='${ROOM}/Robert'/>`);
    const gone = await presenceFrom(alice, `${ROOM}/Bob`);
    assert.equal(gone.attrs.type, "unavailable");
    assert.deepEqual(statuses(gone), [303]);
    assert.equal(itemOf(gone).nick, "Robert");
    const back = await presenceFrom(alice, `${ROOM}/Robert`);
    assert.equal(back.attrs.type, undefined);
    const ownGone = await presenceFrom(bob, `${ROOM}/Bob`);
    assert.deepEqual(statuses(ownGone), [110, 303]);
    assert.deepEqual(statuses(await presenceFrom(bob, `${ROOM}/Robert`)), [110]);
    bob.send(`<presence to='${ROOM}/Al'/>`);
    const conflict = await bob.next((el) =>
      el.name === "presence" && el.attrs.type === "error" && el.attrs.from === `${ROOM}/Al`
    );
    assert.equal(conditionOf(conflict), "conflict");
  } finally {
    await w.end();
  }
});

Deno.test("private messages reach the occupant's resources with a muc#user <x/>; unknown nicks and outsiders are refused", async () => {
  const w = await world(["alice", "bob", "carol"]);
  try {
    const { alice, bob, carol } = w.clients;
    await createOpenRoom(alice, "lounge", "Al");
    await join(bob, "lounge", "Bob");
    bob.send(`<message to='${ROOM}/Al' type='chat' id='pm1'><body>psst</body></message>`);
    const pm = await messageFrom(alice, `${ROOM}/Bob`);
    assert.equal(pm.attrs.id, "pm1");
    assert.equal(pm.getChildText("body"), "psst");
    assert.ok(pm.getChild("x", NS_USER));
    assert.equal(
      await messageError(bob, `${ROOM}/Nobody`, "chat", "<body>hi</body>"),
      "item-not-found",
    );
    assert.equal(
      await messageError(carol, `${ROOM}/Al`, "chat", "<body>hi</body>"),
      "not-acceptable",
    );
    assert.equal(
      await messageError(bob, `${ROOM}/Al`, "groupchat", "<body>hi</body>"),
      "bad-request",
    );
  } finally {
    await w.end();
  }
});

Deno.test("several resources under one nick are one occupant: both get private messages, leaving one keeps the nick", async () => {
  const w = await world(["alice", "bob"]);
  try {
    const { alice, bob } = w.clients;
    await createOpenRoom(alice, "lounge", "Al");
    await join(bob, "lounge", "Bob");
    const phone = await login(w.t, "bob", "phone");
    const seen = await join(phone, "lounge", "Bob");
    assert.deepEqual(statuses(seen.at(-2)!), [110, 170]);
    bob.send(`<message to='${ROOM}/Al' type='chat'><body>one</body></message>`);
    await messageFrom(alice, `${ROOM}/Bob`);
    alice.send(`<message to='${ROOM}/Bob' type='chat' id='both'><body>to you</body></message>`);
    for (const client of [bob, phone]) {
      const message = await client.next((el) => el.name === "message" && el.attrs.id === "both");
      assert.equal(message.attrs.from, `${ROOM}/Al`);
    }
    phone.send(`<presence to='${ROOM}/Bob' type='unavailable'/>`);
    const left = await phone.next((el) => el.attrs.type === "unavailable");
    assert.deepEqual(statuses(left), [110]);
    // Bob is still in the room under his nick.
    alice.send(`<message to='${ROOM}/Bob' type='chat' id='still'><body>there?</body></message>`);
    await bob.next((el) => el.name === "message" && el.attrs.id === "still");
    phone.close();
  } finally {
    await w.end();
  }
});

Deno.test("leaving: unavailable with role none and 110 to oneself; a temporary room goes away with its last occupant", async () => {
  const w = await world(["alice", "bob"]);
  try {
    const { alice, bob } = w.clients;
    await createOpenRoom(alice, "lounge", "Al");
    await join(bob, "lounge", "Bob");
    bob.send(`<presence to='${ROOM}/Bob' type='unavailable'><status>bye</status></presence>`);
    const own = await bob.next((el) => el.attrs.type === "unavailable");
    assert.deepEqual(statuses(own), [110]);
    assert.equal(itemOf(own).role, "none");
    const seen = await alice.next((el) =>
      el.attrs.type === "unavailable" && el.attrs.from === `${ROOM}/Bob`
    );
    assert.deepEqual(itemOf(seen), { affiliation: "none", jid: "bob@localhost/r", role: "none" });
    assert.equal(seen.getChildText("status"), "bye");
    // Disconnecting leaves the room (the server's unavailable on logout, RFC 6121 §4.6).
    await join(bob, "lounge", "Bob");
    alice.close();
    const dropped = await bob.next((el) =>
      el.attrs.type === "unavailable" && el.attrs.from === `${ROOM}/Al`
    );
    assert.equal(itemOf(dropped).role, "none");
    // The last occupant leaves: the temporary room is gone.
    bob.send(`<presence to='${ROOM}/Bob' type='unavailable'/>`);
    await bob.next((el) => el.attrs.type === "unavailable" && statuses(el).includes(110));
    const answer = await iq(
      bob,
      "get",
      ROOM,
      "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    );
    assert.equal(conditionOf(answer), "item-not-found");
  } finally {
    await w.end();
  }
});

Deno.test("room creation follows muc_room_creation", async () => {
  const w = await world(["alice"], { extra: 'muc_room_creation = "admins"\n' });
  try {
    assert.equal(await joinError(w.clients.alice, "lounge", "Al"), "not-allowed");
  } finally {
    await w.end();
  }
});

Deno.test("disco: the service is a text conference listing public rooms with their occupant count; a room describes itself", async () => {
  const w = await world(["alice"]);
  try {
    const { alice } = w.clients;
    const service = await iq(
      alice,
      "get",
      MUC,
      "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    );
    const query = service.getChild("query")!;
    assert.ok(
      query.getChildren("identity").some((i) =>
        i.attrs.category === "conference" && i.attrs.type === "text"
      ),
    );
    assert.ok(query.getChildren("feature").some((f) => f.attrs.var === NS_MUC));
    await createOpenRoom(alice, "lounge", "Al");
    const items = await iq(
      alice,
      "get",
      MUC,
      "<query xmlns='http://jabber.org/protocol/disco#items'/>",
    );
    assert.deepEqual(items.getChild("query")!.getChildren("item").map((i) => i.attrs), [
      { jid: ROOM, name: "lounge (1)" },
    ]);
    const info = await iq(
      alice,
      "get",
      ROOM,
      "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    );
    const roomQuery = info.getChild("query")!;
    assert.equal(roomQuery.getChild("identity")?.attrs.category, "conference");
    const features = roomQuery.getChildren("feature").map((f) => f.attrs.var);
    for (
      const feature of [
        NS_MUC,
        "muc_public",
        "muc_temporary",
        "muc_open",
        "muc_unmoderated",
        "muc_unsecured",
        "muc_semianonymous",
      ]
    ) {
      assert.ok(features.includes(feature), feature);
    }
    const fields = Object.fromEntries(
      roomQuery.getChild("x", "jabber:x:data")!.getChildren("field").map((f) => [
        f.attrs.var,
        f.getChildText("value"),
      ]),
    );
    assert.equal(fields["FORM_TYPE"], "http://jabber.org/protocol/muc#roominfo");
    assert.equal(fields["muc#roominfo_occupants"], "1");
  } finally {
    await w.end();
  }
});

Deno.test("limits: muc_max_rooms refuses another room, muc_max_occupants fills a room (another resource under a joined nick still enters)", async () => {
  const w = await world(["alice", "bob", "carol"], {
    extra: "muc_max_rooms = 1\nmuc_max_occupants = 2\n",
  });
  try {
    const { alice, bob, carol } = w.clients;
    await createOpenRoom(alice, "lounge", "Al");
    assert.equal(await joinError(bob, "second", "Bob"), "resource-constraint");
    await join(bob, "lounge", "Bob");
    const refused = await joinError(carol, "lounge", "Carol");
    assert.equal(refused, "service-unavailable");
    // The owner's second resource under the same nick is not a new occupant.
    const phone = await login(w.t, "alice", "phone");
    await join(phone, "lounge", "Al");
    phone.close();
  } finally {
    await w.end();
  }
});

Deno.test("muc_joins_per_minute refuses a user's joins beyond the limit with policy-violation", async () => {
  const w = await world(["alice", "bob"], { extra: "muc_joins_per_minute = 2\n" });
  try {
    const { alice, bob } = w.clients;
    await createOpenRoom(alice, "lounge", "Al");
    for (let i = 0; i < 2; i++) {
      await join(bob, "lounge", "Bob");
      bob.send(`<presence to='${ROOM}/Bob' type='unavailable'/>`);
      await bob.next((el) => el.attrs.type === "unavailable" && statuses(el).includes(110));
    }
    assert.equal(await joinError(bob, "lounge", "Bob"), "policy-violation");
  } finally {
    await w.end();
  }
});

Deno.test("XEP-0410 self-ping: answered for a joined occupant, not-acceptable once it is not in the room", async () => {
  const w = await world(["alice", "bob"]);
  try {
    const { alice, bob } = w.clients;
    await createOpenRoom(alice, "lounge", "Al");
    await join(bob, "lounge", "Bob");
    const ping = "<ping xmlns='urn:xmpp:ping'/>";
    assert.equal((await iq(bob, "get", `${ROOM}/Bob`, ping)).attrs.type, "result");
    bob.send(`<presence to='${ROOM}/Bob' type='unavailable'/>`);
    await bob.next((el) => el.attrs.type === "unavailable" && statuses(el).includes(110));
    assert.equal(conditionOf(await iq(bob, "get", `${ROOM}/Bob`, ping)), "not-acceptable");
    assert.equal(conditionOf(await iq(bob, "get", `gone@${MUC}/Bob`, ping)), "item-not-found");
  } finally {
    await w.end();
  }
});
