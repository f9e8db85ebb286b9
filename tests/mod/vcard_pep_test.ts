// XEP-0398 over real sockets: a vCard PHOTO becomes XEP-0084 avatar data and metadata in PEP and
// the other way round, removal both ways, no echo of the server's own writes, the XEP-0153 hash
// in available presence, and the vCard NICKNAME mirrored with the XEP-0172 nick node.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import type { Element } from "../../core/xml/element.ts";
import { imageSize } from "../../mod/vcard_pep.ts";
import type { RosterItem } from "../../mod/roster_store.ts";
import { RawClient, roundTrip } from "../helpers/raw_client.ts";
import { startTestServer, type TestServer } from "../helpers/test_server.ts";

const NS_INFO = "http://jabber.org/protocol/disco#info";
const NS_PUBSUB = "http://jabber.org/protocol/pubsub";
const NS_EVENT = "http://jabber.org/protocol/pubsub#event";
const NS_DATA = "urn:xmpp:avatar:data";
const NS_METADATA = "urn:xmpp:avatar:metadata";
const NS_NICK = "http://jabber.org/protocol/nick";
const NS_UPDATE = "vcard-temp:x:update";

/** A 1x1 PNG and a 2x3 GIF. */
const PNG_BASE64 =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
const GIF_BASE64 = "R0lGODlhAgADAIAAAP///wAAACwAAAAAAgADAAACAoRRADs=";

function bytesOf(base64: string): Uint8Array {
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}
function sha1(base64: string): string {
  return createHash("sha1").update(bytesOf(base64)).digest("hex");
}

async function start(): Promise<TestServer> {
  const t = await startTestServer({ users: { alice: "pw", bob: "pw", carol: "pw" } });
  // alice and bob share presence both ways; carol is a stranger to both.
  const rosters = t.server.storage.map<RosterItem>("localhost", "roster");
  rosters.set("alice", "bob@localhost", { subscription: "both", groups: [] });
  rosters.set("bob", "alice@localhost", { subscription: "both", groups: [] });
  return t;
}

async function online(t: TestServer, user: string, presence = "<presence/>") {
  const { client } = await RawClient.login(t.port, user, "pw", "res");
  client.send(presence);
  await roundTrip(client);
  return client;
}

let counter = 0;
async function iq(client: RawClient, type: "get" | "set", body: string, to?: string) {
  const id = `iq-${++counter}`;
  const toAttr = to === undefined ? "" : ` to='${to}'`;
  client.send(`<iq type='${type}' id='${id}'${toAttr}>${body}</iq>`);
  const answer = await client.next((el) => el.name === "iq" && el.attrs.id === id);
  return answer;
}

async function setVcard(client: RawClient, inner: string) {
  const answer = await iq(client, "set", `<vCard xmlns='vcard-temp'>${inner}</vCard>`);
  assert.equal(answer.attrs.type, "result");
}

async function getVcard(client: RawClient, of?: string): Promise<Element | undefined> {
  const answer = await iq(client, "get", "<vCard xmlns='vcard-temp'/>", of);
  return answer.attrs.type === "result" ? answer.getChild("vCard", "vcard-temp") : undefined;
}

async function publish(client: RawClient, node: string, payload: string, id?: string) {
  const idAttr = id === undefined ? "" : ` id='${id}'`;
  const answer = await iq(
    client,
    "set",
    `<pubsub xmlns='${NS_PUBSUB}'><publish node='${node}'><item${idAttr}>${payload}</item>` +
      `</publish></pubsub>`,
  );
  assert.equal(answer.attrs.type, "result", `publish to ${node}`);
}

/** The items of one of `owner`'s nodes as `client` sees them (undefined: an error). */
async function items(client: RawClient, owner: string, node: string) {
  const answer = await iq(
    client,
    "get",
    `<pubsub xmlns='${NS_PUBSUB}'><items node='${node}'/></pubsub>`,
    owner,
  );
  if (answer.attrs.type !== "result") return undefined;
  return answer.getChild("pubsub", NS_PUBSUB)!.getChild("items", NS_PUBSUB)!
    .getChildren("item", NS_PUBSUB);
}

const photoOf = (card: Element | undefined) => card?.getChild("PHOTO", "vcard-temp");

Deno.test("a vCard PHOTO is published as avatar data and metadata with the SHA-1 as ids, open to anyone; the card stays as sent", async () => {
  const t = await start();
  const clients: RawClient[] = [];
  try {
    const alice = await online(t, "alice");
    const carol = await online(t, "carol");
    clients.push(alice, carol);
    const info = await iq(alice, "get", `<query xmlns='${NS_INFO}'/>`, "alice@localhost");
    const features = info.getChild("query", NS_INFO)!.getChildren("feature", NS_INFO)
      .map((f) => f.attrs.var);
    assert.ok(features.includes("urn:xmpp:pep-vcard-conversion:0"));

    // BINVAL folded over lines, as vCard writers do: a mirror written back would unfold it.
    const folded = `${PNG_BASE64.slice(0, 40)}\n${PNG_BASE64.slice(40)}`;
    await setVcard(
      alice,
      `<FN>Alice</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>${folded}</BINVAL></PHOTO>`,
    );
    const hash = sha1(PNG_BASE64);
    // carol shares no presence with alice, yet reads the avatar: the nodes are open.
    const data = await items(carol, "alice@localhost", NS_DATA);
    assert.equal(data?.length, 1);
    assert.equal(data![0].attrs.id, hash);
    assert.equal(data![0].getChildText("data", NS_DATA), PNG_BASE64);
    const metadata = await items(carol, "alice@localhost", NS_METADATA);
    assert.equal(metadata?.length, 1);
    assert.equal(metadata![0].attrs.id, hash);
    const infoEl = metadata![0].getChild("metadata", NS_METADATA)!.getChildren("info", NS_METADATA);
    assert.equal(infoEl.length, 1);
    assert.deepEqual(infoEl[0].attrs, {
      bytes: String(bytesOf(PNG_BASE64).length),
      id: hash,
      type: "image/png",
      width: "1",
      height: "1",
    });
    // The stored card is exactly what alice sent: the PEP publish did not come back to it.
    const card = await getVcard(alice);
    assert.equal(card?.getChildText("FN", "vcard-temp"), "Alice");
    assert.equal(card?.getChildren("PHOTO", "vcard-temp").length, 1);
    assert.equal(photoOf(card)?.getChildText("BINVAL", "vcard-temp"), folded);

    // The same photo again publishes nothing new.
    await setVcard(
      alice,
      `<FN>Alice A.</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>${PNG_BASE64}</BINVAL></PHOTO>`,
    );
    const again = await items(alice, "alice@localhost", NS_METADATA);
    assert.equal(again?.length, 1);

    // A card without PHOTO disables the avatar: empty metadata (XEP-0084 §4.5).
    await setVcard(alice, "<FN>Alice</FN>");
    const disabled = await items(carol, "alice@localhost", NS_METADATA);
    assert.equal(disabled?.length, 1);
    assert.equal(disabled![0].getChild("metadata", NS_METADATA)?.elements().length, 0);
  } finally {
    for (const client of clients) client.close();
    await t.stop();
  }
});

Deno.test("a PEP avatar becomes the vCard PHOTO, which empty metadata or a retraction removes again", async () => {
  const t = await start();
  const clients: RawClient[] = [];
  try {
    const alice = await online(t, "alice");
    const carol = await online(t, "carol");
    clients.push(alice, carol);
    await setVcard(alice, "<FN>Alice</FN>");
    const hash = sha1(GIF_BASE64);
    await publish(alice, NS_DATA, `<data xmlns='${NS_DATA}'>${GIF_BASE64}</data>`, hash);
    // Data alone changes nothing: metadata announces the avatar.
    assert.equal(photoOf(await getVcard(carol, "alice@localhost")), undefined);
    await publish(
      alice,
      NS_METADATA,
      `<metadata xmlns='${NS_METADATA}'>` +
        `<info id='0000' bytes='10' type='image/png' url='https://example.org/a.png'/>` +
        `<info id='${hash}' bytes='${bytesOf(GIF_BASE64).length}' type='image/gif'/></metadata>`,
      hash,
    );
    // A legacy reader (carol) sees the photo in the vCard; the card's other fields stay.
    const card = await getVcard(carol, "alice@localhost");
    assert.equal(card?.getChildText("FN", "vcard-temp"), "Alice");
    assert.equal(photoOf(card)?.getChildText("TYPE", "vcard-temp"), "image/gif");
    assert.equal(photoOf(card)?.getChildText("BINVAL", "vcard-temp"), GIF_BASE64);
    // No echo: the metadata node holds alice's own item, not a republication by the server.
    const metadata = await items(alice, "alice@localhost", NS_METADATA);
    assert.equal(metadata?.length, 1);
    assert.equal(metadata![0].getChild("metadata", NS_METADATA)!.elements().length, 2);

    // Empty metadata: the avatar is disabled, the PHOTO goes.
    await publish(alice, NS_METADATA, `<metadata xmlns='${NS_METADATA}'/>`, "none");
    const cleared = await getVcard(carol, "alice@localhost");
    assert.equal(photoOf(cleared), undefined);
    assert.equal(cleared?.getChildText("FN", "vcard-temp"), "Alice");

    // Published again, then the metadata item retracted: the PHOTO goes too.
    await publish(
      alice,
      NS_METADATA,
      `<metadata xmlns='${NS_METADATA}'><info id='${hash}' bytes='1' type='image/gif'/></metadata>`,
      hash,
    );
    assert.ok(photoOf(await getVcard(carol, "alice@localhost")));
    const retract = await iq(
      alice,
      "set",
      `<pubsub xmlns='${NS_PUBSUB}'><retract node='${NS_METADATA}'><item id='${hash}'/>` +
        `</retract></pubsub>`,
    );
    assert.equal(retract.attrs.type, "result");
    assert.equal(photoOf(await getVcard(carol, "alice@localhost")), undefined);
  } finally {
    for (const client of clients) client.close();
    await t.stop();
  }
});

Deno.test("avatar data whose SHA-1 is not its id is not copied into the vCard", async () => {
  const t = await start();
  const clients: RawClient[] = [];
  try {
    const alice = await online(t, "alice");
    clients.push(alice);
    const wrong = "0123456789abcdef0123456789abcdef01234567";
    await publish(alice, NS_DATA, `<data xmlns='${NS_DATA}'>${PNG_BASE64}</data>`, wrong);
    await publish(
      alice,
      NS_METADATA,
      `<metadata xmlns='${NS_METADATA}'><info id='${wrong}' bytes='1' type='image/png'/></metadata>`,
      wrong,
    );
    assert.equal(photoOf(await getVcard(alice)), undefined);
    // Not base64 at all: the same, and the server keeps serving.
    await publish(alice, NS_DATA, `<data xmlns='${NS_DATA}'>not base64!</data>`, "bad");
    await publish(
      alice,
      NS_METADATA,
      `<metadata xmlns='${NS_METADATA}'><info id='bad' bytes='1' type='image/png'/></metadata>`,
      "bad",
    );
    assert.equal(photoOf(await getVcard(alice)), undefined);
  } finally {
    for (const client of clients) client.close();
    await t.stop();
  }
});

Deno.test("available presence carries the avatar hash (XEP-0153), unless the client sent an empty photo", async () => {
  const t = await start();
  const clients: RawClient[] = [];
  try {
    const bob = await online(t, "bob");
    clients.push(bob);
    const fromAlice = (el: Element) =>
      el.name === "presence" && el.attrs.from === "alice@localhost/res" &&
      el.attrs.type === undefined;
    // No avatar yet: a bare presence is left alone, an <x/> gets an empty <photo/>.
    const alice = await online(t, "alice", `<presence><x xmlns='${NS_UPDATE}'/></presence>`);
    clients.push(alice);
    const first = await bob.next(fromAlice);
    const noneYet = first.getChild("x", NS_UPDATE)?.getChild("photo", NS_UPDATE);
    assert.ok(noneYet);
    assert.equal(noneYet.text(), "");

    await setVcard(alice, `<PHOTO><TYPE>image/png</TYPE><BINVAL>${PNG_BASE64}</BINVAL></PHOTO>`);
    alice.send("<presence><show>away</show></presence>");
    const withHash = await bob.next(fromAlice);
    assert.equal(
      withHash.getChild("x", NS_UPDATE)?.getChildText("photo", NS_UPDATE),
      sha1(PNG_BASE64),
    );
    // The client's own copy carries it too.
    await roundTrip(alice);
    const echo = alice.received.filter(fromAlice).at(-1);
    assert.equal(
      echo?.getChild("x", NS_UPDATE)?.getChildText("photo", NS_UPDATE),
      sha1(PNG_BASE64),
    );

    // A stale hash from the client is replaced; only one <x/> goes out.
    alice.send(`<presence><x xmlns='${NS_UPDATE}'><photo>abc</photo></x></presence>`);
    const replaced = await bob.next(fromAlice);
    assert.equal(replaced.getChildren("x", NS_UPDATE).length, 1);
    assert.equal(
      replaced.getChild("x", NS_UPDATE)?.getChildText("photo", NS_UPDATE),
      sha1(PNG_BASE64),
    );

    // An empty photo is the client's choice and passes untouched.
    alice.send(`<presence><x xmlns='${NS_UPDATE}'><photo/></x></presence>`);
    const empty = await bob.next(fromAlice);
    assert.equal(empty.getChild("x", NS_UPDATE)?.getChildText("photo", NS_UPDATE), "");

    // A new avatar published in PEP: the next presence carries its hash (the cache follows).
    const gifHash = sha1(GIF_BASE64);
    await publish(alice, NS_DATA, `<data xmlns='${NS_DATA}'>${GIF_BASE64}</data>`, gifHash);
    await publish(
      alice,
      NS_METADATA,
      `<metadata xmlns='${NS_METADATA}'><info id='${gifHash}' bytes='1' type='image/gif'/></metadata>`,
      gifHash,
    );
    alice.send("<presence/>");
    const updated = await bob.next(fromAlice);
    assert.equal(updated.getChild("x", NS_UPDATE)?.getChildText("photo", NS_UPDATE), gifHash);

    // Directed presence (a MUC join, say) gets it as well.
    const carol = await online(t, "carol");
    clients.push(carol);
    alice.send("<presence to='carol@localhost/res'/>");
    const directed = await carol.next(fromAlice);
    assert.equal(directed.getChild("x", NS_UPDATE)?.getChildText("photo", NS_UPDATE), gifHash);
  } finally {
    for (const client of clients) client.close();
    await t.stop();
  }
});

Deno.test("the vCard NICKNAME and the XEP-0172 nick node follow each other", async () => {
  const t = await start();
  const clients: RawClient[] = [];
  try {
    const alice = await online(t, "alice");
    clients.push(alice);
    await setVcard(alice, "<FN>Alice Liddell</FN><NICKNAME>Ally</NICKNAME>");
    const nick = await items(alice, "alice@localhost", NS_NICK);
    assert.equal(nick?.length, 1);
    assert.equal(nick![0].getChildText("nick", NS_NICK), "Ally");

    await publish(alice, NS_NICK, `<nick xmlns='${NS_NICK}'>Wonder</nick>`);
    const card = await getVcard(alice);
    assert.equal(card?.getChildText("NICKNAME", "vcard-temp"), "Wonder");
    assert.equal(card?.getChildText("FN", "vcard-temp"), "Alice Liddell");
    // No echo: the nick node holds alice's item only.
    const after = await items(alice, "alice@localhost", NS_NICK);
    assert.equal(after?.length, 1);
    assert.equal(after![0].getChildText("nick", NS_NICK), "Wonder");
    // No notification storm either: nothing arrived that alice did not ask for.
    await roundTrip(alice);
    assert.equal(
      alice.received.filter((el) => el.getChild("event", NS_EVENT) !== undefined).length,
      0,
    );
  } finally {
    for (const client of clients) client.close();
    await t.stop();
  }
});

Deno.test("image sizes are read from PNG, GIF and JPEG headers", () => {
  assert.deepEqual(imageSize(bytesOf(PNG_BASE64)), { width: 1, height: 1 });
  assert.deepEqual(imageSize(bytesOf(GIF_BASE64)), { width: 2, height: 3 });
  // SOI, an APP0 segment of 4 bytes, then SOF0 with height 5 and width 7.
  const jpeg = new Uint8Array([
    0xff,
    0xd8,
    0xff,
    0xe0,
    0x00,
    0x04,
    0x00,
    0x00,
    0xff,
    0xc0,
    0x00,
    0x11,
    0x08,
    0x00,
    0x05,
    0x00,
    0x07,
    0x03,
  ]);
  assert.deepEqual(imageSize(jpeg), { width: 7, height: 5 });
  assert.equal(imageSize(new Uint8Array([1, 2, 3])), undefined);
  assert.equal(imageSize(new Uint8Array([0xff, 0xd8, 0x00, 0x00, 0, 0, 0, 0, 0, 0])), undefined);
});
