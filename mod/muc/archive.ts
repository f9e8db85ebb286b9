// The rooms' message archive (XEP-0313 on the room JID): each room's groupchat messages and
// subject changes in one archive store owned by the room's node, whose ids are the XEP-0359
// stanza-ids the room stamps; XEP-0421 occupant ids salted per room; join history read back
// from it (so it survives a restart); XEP-0425 tombstones for moderated messages.

import { createHmac } from "node:crypto";
import type { ArchiveItem, ArchiveStore } from "../../core/storage/archive_store.ts";
import type { KeyValueStore } from "../../core/storage/stores.ts";
import type { Element } from "../../core/xml/element.ts";
import { parseElement } from "../../core/xml/parser.ts";
import { serialize } from "../../core/xml/serializer.ts";
import { type HistoryRequest, NS_MUC_USER, NS_OCCUPANT_ID } from "./room.ts";

export { NS_OCCUPANT_ID };

/** XEP-0359 stanza ids. */
export const NS_SID = "urn:xmpp:sid:0";
/** XEP-0425 moderated message retraction. */
export const NS_MODERATE = "urn:xmpp:message-moderate:1";
/** XEP-0424 message retraction. */
export const NS_RETRACT = "urn:xmpp:message-retract:1";
/** The archive item type of a moderated (retracted) message. */
export const RETRACTED_TYPE = "retracted";

/** One message read back from a room's archive. */
export interface ArchivedMessage {
  id: string;
  /** When the room received it (ms since the epoch). */
  stampMs: number;
  /** The message as reflected (from the occupant JID, no `to`), with the muc#user real JID. */
  message: Element;
}

/** A room's archive and occupant-id secret, by the room's local part. */
export class RoomArchive {
  #items: ArchiveStore;
  #secrets: KeyValueStore<string>;
  #secretCache = new Map<string, string>();

  constructor(items: ArchiveStore, secrets: KeyValueStore<string>) {
    this.#items = items;
    this.#secrets = secrets;
  }

  /** The store itself (for the XEP-0313 query answering). */
  get items(): ArchiveStore {
    return this.#items;
  }

  /**
   * The XEP-0421 occupant id of a real bare JID in a room: an HMAC of the JID under the
   * room's secret, created and stored on first use, so it is stable across joins and restarts
   * and tells nothing about the JID.
   */
  occupantId(room: string, bare: string): string {
    let secret = this.#secretCache.get(room) ?? this.#secrets.get(room);
    if (secret === undefined) {
      secret = crypto.randomUUID();
      this.#secrets.set(room, secret);
    }
    this.#secretCache.set(room, secret);
    return createHmac("sha256", secret).update(bare).digest("base64url").slice(0, 32);
  }

  /**
   * Archives a reflected message (`from` the occupant JID, no `to`) with the sender's real
   * JID in a muc#user item; returns its id (the stanza-id the room stamps).
   */
  append(room: string, message: Element, realJid: string, nowMs: number): string {
    const kept = message.clone();
    delete kept.attrs.to;
    kept.c("x", { xmlns: NS_MUC_USER }).c("item", { jid: realJid });
    return this.#items.append(room, {
      when: nowMs,
      with: message.attrs.from ?? "",
      type: "groupchat",
      payload: serialize(kept),
    });
  }

  /** Reads an archived item's message, or undefined when it cannot be parsed. */
  read(item: ArchiveItem): ArchivedMessage | undefined {
    try {
      return { id: item.id, stampMs: item.when, message: parseElement(item.payload) };
    } catch {
      return undefined;
    }
  }

  /**
   * The join history of XEP-0045 §7.2.14 from the archive, oldest first: at most
   * `historyLength` (and `maxstanzas`) of the newest messages, within `seconds`/`since`, and
   * as many of the newest as fit in `maxchars`. Retracted messages are left out.
   */
  history(
    room: string,
    historyLength: number,
    request: HistoryRequest,
    nowMs: number,
  ): ArchivedMessage[] {
    let limit = historyLength;
    if (request.maxStanzas !== undefined) limit = Math.min(limit, request.maxStanzas);
    if (limit <= 0) return [];
    let start: number | undefined;
    if (request.seconds !== undefined) start = nowMs - request.seconds * 1000;
    if (request.sinceMs !== undefined) start = Math.max(start ?? 0, request.sinceMs + 1);
    const items = this.#items.find(room, { start, limit: limit * 2 + 10, reverse: true });
    const picked: ArchivedMessage[] = [];
    let budget = request.maxChars ?? Infinity;
    for (const item of items) {
      if (picked.length >= limit) break;
      if (item.type === RETRACTED_TYPE) continue;
      const read = this.read(item);
      if (!read || read.message.getChild("body") === undefined) continue;
      const chars = serialize(read.message).length;
      if (chars > budget) break;
      budget -= chars;
      picked.push(read);
    }
    return picked.reverse();
  }

  /** The archived groupchat message with this stanza-id, if the room's archive holds it. */
  find(room: string, id: string): ArchivedMessage | undefined {
    const [item] = this.#items.find(room, { ids: [id] });
    return item === undefined ? undefined : this.read(item);
  }

  /** Replaces an archived message with its tombstone (XEP-0425 §5). */
  tombstone(room: string, id: string, tombstone: Element): boolean {
    return this.#items.replace(room, id, serialize(tombstone), RETRACTED_TYPE);
  }

  /** Forgets a destroyed room's messages and secret. */
  forget(room: string): void {
    this.#items.delete(room);
    this.#secrets.set(room, undefined);
    this.#secretCache.delete(room);
  }
}
