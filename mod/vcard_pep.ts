// XEP-0398: an account's avatar and nickname kept the same in vcard-temp (XEP-0054/XEP-0153)
// and in PEP (XEP-0084 avatar nodes, XEP-0172 nick), whichever side a client writes, and the
// avatar's hash put into the account's available presence for XEP-0153 readers (MUC, old
// clients).

import { createHash } from "node:crypto";
import { decodeBase64, encodeBase64 } from "../core/auth/scram.ts";
import type { StanzaEvent } from "../core/hosts.ts";
import { type JID, parseJid } from "../core/jid.ts";
import type { ModuleAPI } from "../core/modules.ts";
import { Element } from "../core/xml/element.ts";
import type { PepItemsRemovedEvent, PepPublishedEvent } from "./pep.ts";
import { PubsubError } from "./pubsub/errors.ts";
import type { PubsubService } from "./pubsub/service.ts";
import type { VcardUpdatedEvent } from "./vcard.ts";

const NS_CONVERSION = "urn:xmpp:pep-vcard-conversion:0";
const NS_VCARD = "vcard-temp";
const NS_VCARD_UPDATE = "vcard-temp:x:update";
const NODE_DATA = "urn:xmpp:avatar:data";
const NODE_METADATA = "urn:xmpp:avatar:metadata";
const NODE_NICK = "http://jabber.org/protocol/nick";

/** One line for module listings. */
export const description =
  "XEP-0398: avatars (XEP-0084) and nicknames (XEP-0172) mirrored between PEP and vcard-temp, " +
  "with the XEP-0153 hash in presence";

/** PEP holds the avatar nodes, vcard the card; both must be loaded first. */
export const depends = ["pep", "vcard"];

/** An image as the two sides carry it. */
interface Avatar {
  bytes: Uint8Array;
  /** The MIME type (vCard TYPE, metadata `type`). */
  type: string;
  /** SHA-1 of the bytes, lower-case hex: the XEP-0084 item id and the XEP-0153 hash. */
  hash: string;
}

/** Lower-case hex SHA-1 of `bytes`. */
function sha1Hex(bytes: Uint8Array): string {
  return createHash("sha1").update(bytes).digest("hex");
}

/** Base64 as vCards and PEP items carry it (folded lines allowed); undefined when malformed. */
function decodeFolded(text: string): Uint8Array | undefined {
  const bytes = decodeBase64(text.replace(/\s+/g, ""));
  return bytes && bytes.length > 0 ? bytes : undefined;
}

/** Width and height of a PNG, GIF or JPEG, read from its header; undefined for others. */
export function imageSize(bytes: Uint8Array): { width: number; height: number } | undefined {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // PNG: signature, then the IHDR chunk's width and height (big-endian).
  if (bytes.length >= 24 && view.getUint32(0) === 0x89504e47 && view.getUint32(12) === 0x49484452) {
    return { width: view.getUint32(16), height: view.getUint32(20) };
  }
  // GIF87a/GIF89a: logical screen size (little-endian).
  if (bytes.length >= 10 && bytes[0] === 0x47 && bytes[1] === 0x49 && bytes[2] === 0x46) {
    return { width: view.getUint16(6, true), height: view.getUint16(8, true) };
  }
  // JPEG: walk the segments to the first start-of-frame marker.
  if (bytes.length >= 4 && bytes[0] === 0xff && bytes[1] === 0xd8) {
    let offset = 2;
    while (offset + 9 <= bytes.length) {
      if (bytes[offset] !== 0xff) return undefined;
      const marker = bytes[offset + 1];
      if (marker === 0xff) {
        offset++;
        continue;
      }
      const isFrame = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 &&
        marker !== 0xcc;
      if (isFrame) {
        return { width: view.getUint16(offset + 7), height: view.getUint16(offset + 5) };
      }
      offset += 2 + view.getUint16(offset + 2);
    }
  }
  return undefined;
}

/**
 * The avatar a vCard carries: undefined without a PHOTO, null for a PHOTO that is not an
 * inline image (an EXTVAL, malformed base64), which this module leaves alone.
 */
function avatarOfCard(card: Element | undefined): Avatar | undefined | null {
  const photo = card?.getChild("PHOTO", NS_VCARD);
  if (!photo) return undefined;
  const bytes = decodeFolded(photo.getChildText("BINVAL", NS_VCARD) ?? "");
  if (!bytes) return null;
  const type = photo.getChildText("TYPE", NS_VCARD)?.trim() || "image/png";
  return { bytes, type, hash: sha1Hex(bytes) };
}

/** The `<info/>` of a metadata payload that describes an image stored in PEP (no `url`). */
function storedInfo(metadata: Element): Element | undefined {
  return metadata.getChildren("info", NODE_METADATA).find((info) =>
    !info.attrs.url && info.attrs.id !== undefined
  );
}

/** Loads the conversion on an account host. */
export default function vcardPep(m: ModuleAPI): void {
  if (m.host.kind !== "local") {
    m.log.warn("Module vcard_pep serves accounts; idle on component {host}", { host: m.domain });
    return;
  }
  const pep = m.service("pep");
  const vcards = m.service("vcard");
  /**
   * Accounts whose PEP nodes or vCard this module is writing right now: the events that
   * writing fires are its own echo, not a client's change, and are not mirrored back.
   */
  const mirroring = new Set<string>();
  /** Each account's current avatar hash ("" for none), for the presence path. */
  const avatarHashes = new Map<string, string>();

  const accountJid = (user: string): JID => parseJid(`${user}@${m.domain}`);

  /** The last item's payload of one of the account's nodes, if the node has one. */
  const lastPayload = (service: PubsubService, user: string, node: string) => {
    if (!service.findNode(node)) return undefined;
    return service.items(accountJid(user), node, { max: 1 }).at(-1)?.payload;
  };

  /** The avatar hash the account's metadata node announces ("" none), undefined: no item. */
  function publishedHash(user: string): string | undefined {
    const metadata = lastPayload(pep.serviceOf(user), user, NODE_METADATA);
    if (!metadata) return undefined;
    return storedInfo(metadata)?.attrs.id ??
      metadata.getChild("info", NODE_METADATA)?.attrs.id ?? "";
  }

  /**
   * The account's avatar hash: the current metadata item's, else (no avatar published in PEP
   * yet, say a vCard stored before this module was loaded) the vCard PHOTO's.
   */
  function avatarHash(user: string): string {
    let hash = avatarHashes.get(user);
    if (hash === undefined) {
      hash = publishedHash(user) ?? avatarOfCard(vcards.get(user))?.hash ?? "";
      avatarHashes.set(user, hash);
    }
    return hash;
  }

  /** Runs a write of this module's own on `user`'s PEP or vCard, so its events are not echoed. */
  const asMirror = (user: string, write: () => void) => {
    mirroring.add(user);
    try {
      write();
    } catch (error) {
      if (!(error instanceof PubsubError)) throw error;
      m.log.warn("Could not mirror {user}'s vCard to PEP: {error}", { user, error });
    } finally {
      mirroring.delete(user);
    }
  };

  /**
   * Publishes to one of the account's nodes on its behalf. A node this creates is open: what
   * it mirrors comes from the vCard, which anyone may read anyway (XEP-0398 §6).
   */
  const publish = (
    service: PubsubService,
    user: string,
    node: string,
    payload: Element,
    id?: string,
  ) => {
    const actor = accountJid(user);
    if (!service.findNode(node)) {
      service.create(actor, node, new Map([["pubsub#access_model", ["open"]]]));
    }
    service.publish(actor, node, { id, payload: [payload], hasItem: true });
  };

  // ---------- vCard -> PEP (XEP-0398 §3.2) ----------

  m.hook("vcard-updated", ({ user, card }: VcardUpdatedEvent) => {
    if (mirroring.has(user)) return;
    const service = pep.serviceOf(user);
    const avatar = avatarOfCard(card);
    const current = publishedHash(user) ?? "";
    if (avatar && avatar.hash !== current) {
      asMirror(user, () => {
        const data = new Element("data", { xmlns: NODE_DATA });
        data.t(encodeBase64(avatar.bytes));
        publish(service, user, NODE_DATA, data, avatar.hash);
        const metadata = new Element("metadata", { xmlns: NODE_METADATA });
        const size = imageSize(avatar.bytes);
        metadata.c("info", {
          bytes: String(avatar.bytes.length),
          id: avatar.hash,
          type: avatar.type,
          width: size ? String(size.width) : undefined,
          height: size ? String(size.height) : undefined,
        });
        publish(service, user, NODE_METADATA, metadata, avatar.hash);
      });
    } else if (avatar === undefined && current !== "") {
      // The card no longer has a photo: the avatar is disabled (XEP-0084 §4.5).
      asMirror(user, () => {
        publish(service, user, NODE_METADATA, new Element("metadata", { xmlns: NODE_METADATA }));
      });
    }
    avatarHashes.delete(user);

    const nickname = card?.getChildText("NICKNAME", NS_VCARD)?.trim();
    if (nickname) {
      const published = lastPayload(service, user, NODE_NICK)?.text().trim();
      if (published !== nickname) {
        asMirror(user, () => {
          publish(service, user, NODE_NICK, new Element("nick", { xmlns: NODE_NICK }).t(nickname));
        });
      }
    }
  });

  // ---------- PEP -> vCard (XEP-0398 §3.1) ----------

  /** Changes the account's stored vCard (an empty one when it has none) and stores it back. */
  const editCard = (user: string, edit: (card: Element) => boolean) => {
    const card = vcards.get(user) ?? new Element("vCard", { xmlns: NS_VCARD });
    if (!edit(card)) return;
    if (!vcards.set(user, card)) {
      m.log.info("{user}'s avatar is not copied to the vCard: larger than vcard_max_size", {
        user,
      });
    }
  };
  const removePhoto = (user: string) =>
    editCard(user, (card) => {
      if (!card.getChild("PHOTO", NS_VCARD)) return false;
      card.removeChildren("PHOTO", NS_VCARD);
      return true;
    });

  /** A metadata item was published: its stored image becomes the vCard's PHOTO. */
  function metadataPublished(user: string, metadata: Element): void {
    const info = storedInfo(metadata);
    if (metadata.getChildren("info", NODE_METADATA).length === 0) {
      removePhoto(user);
      return;
    }
    if (!info) return; // Only images elsewhere (URLs): nothing to copy.
    const id = info.attrs.id!;
    const service = pep.serviceOf(user);
    const item = service.findNode(NODE_DATA)
      ? service.items(accountJid(user), NODE_DATA, { ids: [id] })[0]
      : undefined;
    const text = item?.payload?.is("data", NODE_DATA) ? item.payload.text() : undefined;
    const bytes = text === undefined ? undefined : decodeFolded(text);
    if (!bytes) {
      m.log.info("{user}'s avatar metadata names data item {id}, which is missing or not base64", {
        user,
        id,
      });
      return;
    }
    // XEP-0398 §3.1: the id should be the image's SHA-1; a mismatch is not copied.
    if (sha1Hex(bytes) !== id.toLowerCase()) {
      m.log.info("{user}'s avatar data item {id} does not match its SHA-1; not copied", {
        user,
        id,
      });
      return;
    }
    editCard(user, (card) => {
      const existing = avatarOfCard(card);
      if (existing && existing.hash === sha1Hex(bytes)) return false;
      card.removeChildren("PHOTO", NS_VCARD);
      const photo = card.c("PHOTO");
      photo.c("TYPE").t(info.attrs.type || "image/png");
      photo.c("BINVAL").t(encodeBase64(bytes));
      return true;
    });
  }

  m.hook("pep-published", ({ user, node, payload }: PepPublishedEvent) => {
    if (node === NODE_METADATA) avatarHashes.delete(user);
    if (mirroring.has(user) || payload === undefined) return;
    if (node === NODE_METADATA && payload.is("metadata", NODE_METADATA)) {
      metadataPublished(user, payload);
    } else if (node === NODE_NICK && payload.is("nick", NODE_NICK)) {
      const nickname = payload.text().trim();
      editCard(user, (card) => {
        if ((card.getChildText("NICKNAME", NS_VCARD)?.trim() ?? "") === nickname) return false;
        card.removeChildren("NICKNAME", NS_VCARD);
        if (nickname !== "") card.c("NICKNAME").t(nickname);
        return true;
      });
    }
  });

  // The metadata retracted, purged or deleted: no avatar any more.
  m.hook("pep-items-removed", ({ user, node }: PepItemsRemovedEvent) => {
    if (node !== NODE_METADATA) return;
    avatarHashes.delete(user);
    if (mirroring.has(user)) return;
    if (lastPayload(pep.serviceOf(user), user, NODE_METADATA) === undefined) removePhoto(user);
  });

  // ---------- XEP-0153 hash in available presence (XEP-0398 §4) ----------

  const injectHash = ({ stanza, origin }: StanzaEvent) => {
    if (stanza.attrs.type !== undefined || origin.kind !== "c2s") return false;
    const user = origin.jid?.domain === m.domain ? origin.jid.local : undefined;
    if (user === undefined) return false;
    const update = stanza.getChild("x", NS_VCARD_UPDATE);
    const photo = update?.getChild("photo", NS_VCARD_UPDATE);
    // An empty <photo/> is the client saying it advertises no avatar: left as it is.
    if (photo && photo.text().trim() === "") return false;
    const hash = avatarHash(user);
    if (hash === "") {
      // An <x/> without <photo/> must be overwritten; with no avatar, that says "none".
      if (update && !photo) update.c("photo");
      return false;
    }
    if (photo?.text().trim() === hash) return false;
    stanza.removeChildren("x", NS_VCARD_UPDATE);
    stanza.c("x", { xmlns: NS_VCARD_UPDATE }).c("photo").t(hash);
    return false;
  };
  // Before the presence module broadcasts or stores the presence (and before pep, 5).
  m.hook("pre-presence/self", injectHash, 20);
  m.hook("pre-presence/bare", injectHash, 20);
  m.hook("pre-presence/full", injectHash, 20);
  m.hook("pre-presence/host", injectHash, 20);

  m.hook("account-purged", ({ user }) => {
    avatarHashes.delete(user);
  });

  m.addAccountFeature(NS_CONVERSION);
  m.onUnload(() => avatarHashes.clear());
}
