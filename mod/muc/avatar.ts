// Room avatars (XEP-0486): owners publish a vcard-temp on the room JID, anyone may read it, and
// the room's muc#roominfo carries the SHA-1 of each photo so clients know when to fetch it.

import { createHash } from "node:crypto";
import { decodeBase64 } from "../../core/auth/scram.ts";
import type { JID } from "../../core/jid.ts";
import type { KeyValueStore } from "../../core/storage/stores.ts";
import { Element } from "../../core/xml/element.ts";
import { parseElement } from "../../core/xml/parser.ts";
import { serialize } from "../../core/xml/serializer.ts";
import { reply } from "../../core/xml/stanza.ts";
import { MucError } from "./errors.ts";
import { NS_MUC_USER, type Room } from "./room.ts";

/** Namespace of XEP-0054 vCards, which carry a room's avatar. */
export const NS_VCARD = "vcard-temp";
/** The largest room vCard kept, in bytes of XML. */
export const MAX_ROOM_VCARD_BYTES = 256 * 1024;

/** The stored vCards of a service's rooms and the avatar hashes derived from them. */
export class RoomAvatars {
  #store: KeyValueStore<string>;
  #hashes = new Map<string, string[]>();

  constructor(store: KeyValueStore<string>) {
    this.#store = store;
  }

  /** The key of a room's vCard: a room re-created under the same name starts without one. */
  #key(room: Room): string {
    return `${room.local}/${room.createdMs}`;
  }

  /** The room's stored vCard, if one is set. */
  vcard(room: Room): Element | undefined {
    const text = this.#store.get(this.#key(room));
    return text === undefined ? undefined : parseElement(text);
  }

  /** SHA-1 (hex) of each photo in the room's vCard, for `muc#roominfo_avatarhash`. */
  hashes(room: Room): string[] {
    const key = this.#key(room);
    let hashes = this.#hashes.get(key);
    if (!hashes) {
      const vcard = this.vcard(room);
      hashes = vcard ? photoHashes(vcard) : [];
      this.#hashes.set(key, hashes);
    }
    return hashes;
  }

  /** Drops the vCard of a room that is gone (destroyed, or temporary and empty). */
  forget(room: Room): void {
    const key = this.#key(room);
    this.#store.set(key, undefined);
    this.#hashes.delete(key);
  }

  /** Stores the room's vCard; one without children removes it. */
  set(room: Room, vcard: Element): void {
    const key = this.#key(room);
    const hashes = photoHashes(vcard);
    const empty = vcard.children.every((child) => typeof child === "string" && !child.trim());
    this.#store.set(key, empty ? undefined : serialize(vcard));
    this.#hashes.set(key, empty ? [] : hashes);
  }
}

/** Base64-decodes each `<PHOTO><BINVAL/>` and hashes it; a bad encoding is a bad request. */
function photoHashes(vcard: Element): string[] {
  const hashes: string[] = [];
  for (const photo of vcard.getChildren("PHOTO")) {
    const binval = photo.getChildText("BINVAL");
    if (binval === undefined) continue;
    const bytes = decodeBase64(binval.replace(/\s+/g, ""));
    if (!bytes) throw new MucError("bad-request", "The photo's BINVAL is not valid base64");
    hashes.push(createHash("sha1").update(bytes).digest("hex"));
  }
  return hashes;
}

/** What answering a vCard query needs from the service. */
export interface VcardQueryOptions {
  /** Sends a stanza from the room. */
  send(stanza: Element): void;
}

/**
 * Answers a vcard-temp get (anyone) or set (owners only) on the room; a set tells every
 * occupant the configuration changed (status 104), as XEP-0486 §3.2 asks.
 */
export function handleVcardQuery(
  avatars: RoomAvatars,
  room: Room,
  stanza: Element,
  actor: JID,
  options: VcardQueryOptions,
): Element {
  const bare = actor.bare.toString();
  if (stanza.attrs.type === "get") {
    if (room.affiliation(bare) === "outcast") {
      throw new MucError("forbidden", "You are banned from this room");
    }
    const result = reply(stanza);
    result.append(avatars.vcard(room) ?? new Element("vCard", { xmlns: NS_VCARD }));
    return result;
  }
  if (room.affiliation(bare) !== "owner") {
    throw new MucError("forbidden", "Only owners may set the room's vCard");
  }
  const vcard = stanza.getChild("vCard", NS_VCARD)!;
  if (new TextEncoder().encode(serialize(vcard)).length > MAX_ROOM_VCARD_BYTES) {
    throw new MucError(
      "not-acceptable",
      `The vCard is larger than the ${MAX_ROOM_VCARD_BYTES} bytes a room keeps`,
    );
  }
  avatars.set(room, vcard);
  for (const full of room.bySession.keys()) {
    const notice = new Element("message", { from: room.jid, to: full, type: "groupchat" });
    notice.c("x", { xmlns: NS_MUC_USER }).c("status", { code: "104" });
    options.send(notice);
  }
  return reply(stanza);
}
