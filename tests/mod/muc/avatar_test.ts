// XEP-0486 room avatars on `conference.localhost` over real sockets: an owner publishes the
// room's vCard, anyone reads it, disco#info carries the photo hashes, occupants get status 104,
// refusals, removal with an empty vCard, and the vCard of a persistent room after a restart.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import type { Element } from "../../../core/xml/element.ts";
import { serialize } from "../../../core/xml/serializer.ts";
import { conditionOf, type RawClient } from "../../helpers/raw_client.ts";
import { createInstantRoom, iq, join, MUC, NS_OWNER, statuses, world } from "./helpers.ts";

const ROOM = `lounge@${MUC}`;
const NS_INFO = "http://jabber.org/protocol/disco#info";
const NS_VCARD = "vcard-temp";
/** A 1×1 PNG's bytes as base64, and their SHA-1. */
const PNG =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
const PNG_SHA1 = createHash("sha1").update(Uint8Array.from(atob(PNG), (c) => c.charCodeAt(0)))
  .digest("hex");

function photoCard(binval = PNG): string {
  return `<vCard xmlns='${NS_VCARD}'><PHOTO><TYPE>image/png</TYPE><BINVAL>${binval}</BINVAL>` +
    `</PHOTO></vCard>`;
}

async function roomInfo(client: RawClient): Promise<Element> {
  const answer = await iq(client, "get", ROOM, `<query xmlns='${NS_INFO}'/>`);
  assert.equal(answer.attrs.type, "result", serialize(answer));
  return answer.getChild("query", NS_INFO)!;
}

async function avatarHashes(client: RawClient): Promise<string[] | undefined> {
  const form = (await roomInfo(client)).getChild("x", "jabber:x:data")!;
  const field = form.getChildren("field").find((f) => f.attrs.var === "muc#roominfo_avatarhash");
  return field?.getChildren("value").map((v) => v.text());
}

Deno.test("an owner publishes the room's avatar: occupants get 104, disco#info shows the hash, anyone reads the vCard", async () => {
  const w = await world(["alice", "bob", "carol"]);
  try {
    const { alice, bob, carol } = w.clients;
    await createInstantRoom(alice, "lounge", "Al");
    await join(bob, "lounge", "Bob");
    const features = (await roomInfo(bob)).getChildren("feature").map((f) => f.attrs.var);
    assert.ok(features.includes(NS_VCARD));
    assert.equal(await avatarHashes(bob), undefined);
    const empty = await iq(carol, "get", ROOM, `<vCard xmlns='${NS_VCARD}'/>`);
    assert.equal(empty.attrs.type, "result", serialize(empty));
    assert.equal(empty.getChild("vCard", NS_VCARD)?.children.length, 0);

    const set = await iq(alice, "set", ROOM, photoCard());
    assert.equal(set.attrs.type, "result", serialize(set));
    const notice = await bob.next((el) =>
      el.name === "message" && el.attrs.from === ROOM && statuses(el).includes(104)
    );
    assert.equal(notice.attrs.type, "groupchat");
    assert.deepEqual(await avatarHashes(carol), [PNG_SHA1]);
    const read = await iq(carol, "get", ROOM, `<vCard xmlns='${NS_VCARD}'/>`);
    const photo = read.getChild("vCard", NS_VCARD)!.getChild("PHOTO")!;
    assert.equal(photo.getChildText("TYPE"), "image/png");
    assert.equal(photo.getChildText("BINVAL"), PNG);

    // An empty vCard unpublishes it.
    assert.equal(
      (await iq(alice, "set", ROOM, `<vCard xmlns='${NS_VCARD}'/>`)).attrs.type,
      "result",
    );
    assert.equal(await avatarHashes(carol), undefined);
  } finally {
    await w.end();
  }
});

Deno.test("room vCard refusals: a non-owner sets, bad base64, a room that does not exist", async () => {
  const w = await world(["alice", "bob"]);
  try {
    const { alice, bob } = w.clients;
    await createInstantRoom(alice, "lounge", "Al");
    await join(bob, "lounge", "Bob");
    assert.equal(conditionOf(await iq(bob, "set", ROOM, photoCard())), "forbidden");
    assert.equal(
      conditionOf(await iq(alice, "set", ROOM, photoCard("!!not base64!!"))),
      "bad-request",
    );
    assert.equal(await avatarHashes(bob), undefined);
    assert.equal(
      conditionOf(await iq(bob, "get", `nowhere@${MUC}`, `<vCard xmlns='${NS_VCARD}'/>`)),
      "item-not-found",
    );
  } finally {
    await w.end();
  }
});

Deno.test("a destroyed room's avatar is gone: the same name created again has none", async () => {
  const w = await world(["alice"]);
  try {
    const { alice } = w.clients;
    await createInstantRoom(alice, "lounge", "Al");
    assert.equal((await iq(alice, "set", ROOM, photoCard())).attrs.type, "result");
    const destroyed = await iq(alice, "set", ROOM, `<query xmlns='${NS_OWNER}'><destroy/></query>`);
    assert.equal(destroyed.attrs.type, "result", serialize(destroyed));
    await createInstantRoom(alice, "lounge", "Al");
    assert.equal(await avatarHashes(alice), undefined);
    const read = await iq(alice, "get", ROOM, `<vCard xmlns='${NS_VCARD}'/>`);
    assert.equal(read.getChild("vCard", NS_VCARD)?.children.length, 0, serialize(read));
  } finally {
    await w.end();
  }
});

Deno.test("a persistent room's avatar survives a restart", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "lilt-muc-avatar-" });
  try {
    const first = await world(["alice", "bob"], { dataDir });
    try {
      const { alice } = first.clients;
      await createInstantRoom(alice, "lounge", "Al");
      const config = await iq(
        alice,
        "set",
        ROOM,
        `<query xmlns='${NS_OWNER}'><x xmlns='jabber:x:data' type='submit'>` +
          `<field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query>`,
      );
      assert.equal(config.attrs.type, "result");
      assert.equal((await iq(alice, "set", ROOM, photoCard())).attrs.type, "result");
    } finally {
      await first.end();
    }
    const second = await world(["alice", "bob"], { dataDir });
    try {
      assert.deepEqual(await avatarHashes(second.clients.bob), [PNG_SHA1]);
    } finally {
      await second.end();
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
