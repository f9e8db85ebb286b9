// XEP-0045 §7.13 and §8.6 voice requests over real sockets: a visitor's muc#request form
// reaches the moderators as an approval form, an approval gives voice (broadcast), refusals.

import assert from "node:assert/strict";
import type { Element } from "../../../core/xml/element.ts";
import { serialize } from "../../../core/xml/serializer.ts";
import {
  createInstantRoom,
  iq,
  join,
  messageError,
  MUC,
  NS_OWNER,
  NS_USER,
  world,
} from "./helpers.ts";

const ROOM = `lounge@${MUC}`;
const REQUEST = "http://jabber.org/protocol/muc#request";

function form(fields: Record<string, string>): string {
  let xml = `<x xmlns='jabber:x:data' type='submit'>` +
    `<field var='FORM_TYPE'><value>${REQUEST}</value></field>`;
  for (const [name, value] of Object.entries(fields)) {
    xml += `<field var='${name}'><value>${value}</value></field>`;
  }
  return `${xml}</x>`;
}

function value(x: Element, variable: string): string | undefined {
  return x.getChildren("field").find((f) => f.attrs.var === variable)?.getChildText("value");
}

async function moderatedRoom(alice: Parameters<typeof iq>[0]): Promise<void> {
  await createInstantRoom(alice, "lounge", "Al");
  const set = await iq(
    alice,
    "set",
    ROOM,
    `<query xmlns='${NS_OWNER}'><x xmlns='jabber:x:data' type='submit'>` +
      `<field var='muc#roomconfig_moderatedroom'><value>1</value></field></x></query>`,
  );
  assert.equal(set.attrs.type, "result", serialize(set));
}

Deno.test("voice request: moderators get the approval form, and approving it gives the visitor voice", async () => {
  const w = await world(["alice", "bob"]);
  try {
    const { alice, bob } = w.clients;
    await moderatedRoom(alice);
    const info = await iq(
      bob,
      "get",
      ROOM,
      "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    );
    const features = info.getChild("query")!.getChildren("feature").map((f) => f.attrs.var);
    assert.ok(features.includes(REQUEST), "the room advertises muc#request");
    await join(bob, "lounge", "Bob");
    bob.send(`<message to='${ROOM}'>${form({ "muc#role": "participant" })}</message>`);
    const approval = await alice.next((el) =>
      el.name === "message" && el.attrs.from === ROOM &&
      el.getChild("x", "jabber:x:data") !== undefined
    );
    const x = approval.getChild("x", "jabber:x:data")!;
    assert.equal(x.attrs.type, "form");
    assert.equal(value(x, "FORM_TYPE"), REQUEST);
    assert.equal(value(x, "muc#role"), "participant");
    assert.equal(value(x, "muc#jid"), "bob@localhost/r");
    assert.equal(value(x, "muc#roomnick"), "Bob");
    assert.equal(value(x, "muc#request_allow"), "false");

    alice.send(
      `<message to='${ROOM}'>${
        form({
          "muc#role": "participant",
          "muc#jid": "bob@localhost/r",
          "muc#roomnick": "Bob",
          "muc#request_allow": "true",
        })
      }</message>`,
    );
    const voiced = await bob.next((el) =>
      el.name === "presence" && el.attrs.from === `${ROOM}/Bob` &&
      el.getChild("x", NS_USER)?.getChild("item")?.attrs.role === "participant"
    );
    assert.ok(voiced);
    await alice.next((el) =>
      el.name === "presence" && el.attrs.from === `${ROOM}/Bob` &&
      el.getChild("x", NS_USER)?.getChild("item")?.attrs.role === "participant"
    );
    bob.send(`<message to='${ROOM}' type='groupchat'><body>thanks</body></message>`);
    await alice.next((el) => el.name === "message" && el.attrs.from === `${ROOM}/Bob`);
  } finally {
    await w.end();
  }
});

Deno.test("voice request refusals: outsiders, occupants with voice, approvals by non-moderators", async () => {
  const w = await world(["alice", "bob", "carol"]);
  try {
    const { alice, bob, carol } = w.clients;
    await moderatedRoom(alice);
    await join(bob, "lounge", "Bob");
    const request = form({ "muc#role": "participant" });
    assert.equal(await messageError(carol, ROOM, "normal", request), "not-acceptable");
    assert.equal(await messageError(alice, ROOM, "normal", request), "bad-request");
    assert.equal(
      await messageError(
        bob,
        ROOM,
        "normal",
        form({ "muc#roomnick": "Bob", "muc#request_allow": "true" }),
      ),
      "forbidden",
    );
    assert.equal(
      await messageError(
        alice,
        ROOM,
        "normal",
        form({ "muc#roomnick": "Nobody", "muc#request_allow": "true" }),
      ),
      "item-not-found",
    );
    assert.equal(await messageError(bob, ROOM, "groupchat", "<body>hi</body>"), "forbidden");
  } finally {
    await w.end();
  }
});
