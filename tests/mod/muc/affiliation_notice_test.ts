// XEP-0045 status 101 over real sockets: a user whose affiliation changes while not in the room
// gets a message from the room saying so; an occupant learns it from its presence instead.

import assert from "node:assert/strict";
import { serialize } from "../../../core/xml/serializer.ts";
import { createInstantRoom, iq, join, MUC, NS_ADMIN, NS_USER, statuses, world } from "./helpers.ts";

const ROOM = `lounge@${MUC}`;

Deno.test("affiliation change of a user outside the room: a message with status 101 and the new affiliation", async () => {
  const w = await world(["alice", "bob", "carol"]);
  try {
    const { alice, bob, carol } = w.clients;
    await createInstantRoom(alice, "lounge", "Al");
    const set = await iq(
      alice,
      "set",
      ROOM,
      `<query xmlns='${NS_ADMIN}'><item affiliation='member' jid='bob@localhost'>` +
        `<reason>Welcome</reason></item></query>`,
    );
    assert.equal(set.attrs.type, "result", serialize(set));
    const notice = await bob.next((el) => el.name === "message" && el.attrs.from === ROOM);
    assert.equal(notice.attrs.to, "bob@localhost");
    assert.deepEqual(statuses(notice), [101]);
    const item = notice.getChild("x", NS_USER)!.getChild("item")!;
    assert.equal(item.attrs.affiliation, "member");
    assert.equal(item.attrs.jid, "bob@localhost");
    assert.equal(item.getChildText("reason"), "Welcome");

    // Carol is in the room: her change shows in her presence, and the room sends no 101.
    await join(carol, "lounge", "Carol");
    const granted = await iq(
      alice,
      "set",
      ROOM,
      `<query xmlns='${NS_ADMIN}'><item affiliation='member' jid='carol@localhost'/></query>`,
    );
    assert.equal(granted.attrs.type, "result", serialize(granted));
    const presence = await carol.next((el) =>
      el.name === "presence" && el.attrs.from === `${ROOM}/Carol`
    );
    assert.equal(presence.getChild("x", NS_USER)?.getChild("item")?.attrs.affiliation, "member");
    // The next thing from the room after a new ping of ours is not a 101 message.
    carol.send(`<iq type='get' id='c1' to='${ROOM}/Carol'><ping xmlns='urn:xmpp:ping'/></iq>`);
    const next = await carol.next((el) =>
      (el.name === "message" && el.attrs.from === ROOM) || el.attrs.id === "c1"
    );
    assert.equal(next.name, "iq", serialize(next));
  } finally {
    await w.end();
  }
});
