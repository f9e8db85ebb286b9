// XEP-0045 iqs between occupants over real sockets: a query to an occupant JID reaches the
// target from the asker's occupant JID and the answer comes back with the asker's id; vCard
// queries are answered for the target's account; non-occupants and unknown nicks are refused.

import assert from "node:assert/strict";
import { serialize } from "../../../core/xml/serializer.ts";
import { conditionOf } from "../../helpers/raw_client.ts";
import { createOpenRoom, iq, join, MUC, world } from "./helpers.ts";

const ROOM = `lounge@${MUC}`;
const PING = "<ping xmlns='urn:xmpp:ping'/>";

Deno.test("iq to an occupant: relayed from the asker's occupant JID, the answer comes back with the asker's id", async () => {
  const w = await world(["alice", "bob"]);
  try {
    const { alice, bob } = w.clients;
    await createOpenRoom(alice, "lounge", "Al");
    await join(bob, "lounge", "Bob");
    bob.send(`<iq type='get' id='p1' to='${ROOM}/Al'>${PING}</iq>`);
    const relayed = await alice.next((el) => el.name === "iq" && el.attrs.type === "get");
    assert.equal(relayed.attrs.from, `${ROOM}/Bob`);
    assert.equal(relayed.attrs.to, "alice@localhost/r");
    assert.ok(relayed.getChild("ping", "urn:xmpp:ping"), serialize(relayed));
    alice.send(
      `<iq type='result' id='${relayed.attrs.id}' to='${ROOM}/Bob' from='alice@localhost/r'/>`,
    );
    const answer = await bob.next((el) => el.name === "iq" && el.attrs.id === "p1");
    assert.equal(answer.attrs.type, "result");
    assert.equal(answer.attrs.from, `${ROOM}/Al`);

    // An error answer is relayed the same way.
    bob.send(`<iq type='get' id='p2' to='${ROOM}/Al'><query xmlns='jabber:iq:version'/></iq>`);
    const second = await alice.next((el) => el.name === "iq" && el.attrs.type === "get");
    alice.send(
      `<iq type='error' id='${second.attrs.id}' to='${ROOM}/Bob'>` +
        `<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>` +
        `</error></iq>`,
    );
    const refused = await bob.next((el) => el.name === "iq" && el.attrs.id === "p2");
    assert.equal(conditionOf(refused), "service-unavailable");
    assert.equal(refused.attrs.from, `${ROOM}/Al`);
  } finally {
    await w.end();
  }
});

Deno.test("vCard of an occupant: the query goes to the account and its vCard comes back", async () => {
  const w = await world(["alice", "bob"]);
  try {
    const { alice, bob } = w.clients;
    const stored = await iq(
      alice,
      "set",
      "alice@localhost",
      "<vCard xmlns='vcard-temp'><FN>Alice Liddell</FN></vCard>",
    );
    assert.equal(stored.attrs.type, "result", serialize(stored));
    await createOpenRoom(alice, "lounge", "Al");
    await join(bob, "lounge", "Bob");
    const card = await iq(bob, "get", `${ROOM}/Al`, "<vCard xmlns='vcard-temp'/>");
    assert.equal(card.attrs.type, "result", serialize(card));
    assert.equal(card.attrs.from, `${ROOM}/Al`);
    assert.equal(card.getChild("vCard", "vcard-temp")?.getChildText("FN"), "Alice Liddell");
  } finally {
    await w.end();
  }
});

Deno.test("iq to an occupant: refused for non-occupants and unknown nicks; self-ping still answered", async () => {
  const w = await world(["alice", "bob"]);
  try {
    const { alice, bob } = w.clients;
    await createOpenRoom(alice, "lounge", "Al");
    assert.equal(conditionOf(await iq(bob, "get", `${ROOM}/Al`, PING)), "not-acceptable");
    await join(bob, "lounge", "Bob");
    assert.equal(conditionOf(await iq(bob, "get", `${ROOM}/Nobody`, PING)), "item-not-found");
    assert.equal((await iq(bob, "get", `${ROOM}/Bob`, PING)).attrs.type, "result");
  } finally {
    await w.end();
  }
});
