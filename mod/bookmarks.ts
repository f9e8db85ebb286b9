// XEP-0402 PEP native bookmarks with `#compat`: clients that keep XEP-0048 bookmarks in private
// XML (XEP-0049) or in the legacy `storage:bookmarks` PEP node (XEP-0411) and clients that use
// one PEP item per room all see the same bookmarks, and each change reaches the others.
//
// One source of truth: the account's `urn:xmpp:bookmarks:1` PEP node holds the conferences. A
// private-XML get assembles `<storage xmlns='storage:bookmarks'>` from it when asked; a private
// XML set or a legacy PEP publish is turned into publishes and retractions there. What XEP-0402
// has no place for (XEP-0048 `<url/>` bookmarks, unknown children of `<storage/>`) is kept by
// this module per account. The legacy PEP node is a copy, published again after every change.

import type { JID } from "../core/jid.ts";
import { parseJid, tryParseJid } from "../core/jid.ts";
import type { ModuleAPI } from "../core/modules.ts";
import type { StanzaEvent } from "../core/hosts.ts";
import { Element } from "../core/xml/element.ts";
import { parseElement } from "../core/xml/parser.ts";
import { serialize } from "../core/xml/serializer.ts";
import type { PepItemsRemovedEvent, PepPublishedEvent } from "./pep.ts";
import type { PrivateXmlEvent } from "./private.ts";
import { PubsubError, pubsubErrorReply } from "./pubsub/errors.ts";
import { NS_PUBSUB } from "./pubsub/protocol.ts";
import type { PubsubService } from "./pubsub/service.ts";

/** The XEP-0402 node and payload namespace. */
export const NS_BOOKMARKS = "urn:xmpp:bookmarks:1";
/** The XEP-0048 namespace: private XML `<storage/>` and the legacy PEP node. */
export const NS_LEGACY = "storage:bookmarks";
/** XEP-0411's account feature (the conversion between private XML and legacy PEP). */
const NS_CONVERSION = "urn:xmpp:bookmarks-conversion:0";
/** The legacy PEP node's one item (XEP-0223 usage). */
const LEGACY_ITEM = "current";

/** One line for module listings. */
export const description =
  "XEP-0402 bookmarks in PEP, kept in sync with XEP-0048 bookmarks in private XML and legacy PEP";

/** PEP holds the bookmarks; private XML storage is where legacy clients look for them. */
export const depends = ["pep", "private"];

/** The node configuration XEP-0402 asks clients to publish with (private, every item kept). */
const BOOKMARKS_CONFIG = new Map([
  ["pubsub#persist_items", ["true"]],
  ["pubsub#max_items", ["max"]],
  ["pubsub#send_last_published_item", ["never"]],
  ["pubsub#access_model", ["whitelist"]],
]);

/** XEP-0223 private storage for the legacy node's one item. */
const LEGACY_CONFIG = new Map([
  ["pubsub#persist_items", ["true"]],
  ["pubsub#access_model", ["whitelist"]],
]);

const BOOLEANS = new Set(["true", "false", "1", "0"]);

/** A room's bookmark in XEP-0402 form: the room's bare JID (the item id) and its payload. */
export interface Bookmark {
  jid: string;
  conference: Element;
}

/** Why a bookmark is not acceptable, or undefined when the room JID is a bare JID. */
function roomJidProblem(jid: string | undefined): string | undefined {
  if (jid === undefined || jid === "") return "A conference bookmark needs the room's JID";
  const parsed = tryParseJid(jid);
  if (!parsed) return `The room JID '${jid}' is not a valid JID`;
  if (parsed.resource !== undefined) return `The room JID '${jid}' has a resource`;
  return undefined;
}

function autojoinProblem(value: string | undefined): string | undefined {
  if (value === undefined || BOOLEANS.has(value)) return undefined;
  return `autojoin must be true or false, found '${value}'`;
}

/**
 * Converts an XEP-0048 `<conference jid=…/>` into XEP-0402 form: name and autojoin as they
 * were, `<nick/>` and `<password/>`, and every other child inside `<extensions/>`. Returns the
 * reason when the conference is malformed (no room JID, or not a bare one; autojoin not a
 * boolean).
 */
export function fromLegacy(legacy: Element): Bookmark | string {
  const problem = roomJidProblem(legacy.attrs.jid) ?? autojoinProblem(legacy.attrs.autojoin);
  if (problem) return problem;
  const autojoin = legacy.attrs.autojoin;
  const conference = new Element("conference", {
    xmlns: NS_BOOKMARKS,
    name: legacy.attrs.name,
    autojoin: autojoin === undefined ? undefined : String(autojoin === "true" || autojoin === "1"),
  });
  const nick = legacy.getChild("nick", NS_LEGACY);
  if (nick) conference.c("nick").t(nick.text());
  const password = legacy.getChild("password", NS_LEGACY);
  if (password) conference.c("password").t(password.text());
  const others = legacy.elements().filter((child) => child !== nick && child !== password);
  if (others.length > 0) {
    conference.c("extensions").append(...others.map((child) => child.clone()));
  }
  return { jid: parseJid(legacy.attrs.jid).bareString(), conference };
}

/** Converts an XEP-0402 item back into an XEP-0048 `<conference jid=…/>`. */
export function toLegacy(bookmark: Bookmark): Element {
  const { conference } = bookmark;
  const legacy = new Element("conference", {
    xmlns: NS_LEGACY,
    jid: bookmark.jid,
    name: conference.attrs.name,
    autojoin: conference.attrs.autojoin,
  });
  const nick = conference.getChild("nick", NS_BOOKMARKS);
  if (nick) legacy.c("nick").t(nick.text());
  const password = conference.getChild("password", NS_BOOKMARKS);
  if (password) legacy.c("password").t(password.text());
  for (const extension of conference.getChild("extensions", NS_BOOKMARKS)?.elements() ?? []) {
    legacy.append(extension.clone());
  }
  return legacy;
}

/**
 * Why an item published to the XEP-0402 node is not a bookmark, or undefined: the id must be
 * the room's bare JID and the payload one `<conference xmlns='urn:xmpp:bookmarks:1'/>`.
 */
export function itemProblem(
  id: string | undefined,
  payload: Element | undefined,
): string | undefined {
  if (!payload || !payload.is("conference", NS_BOOKMARKS)) {
    return `A bookmark item carries a <conference xmlns='${NS_BOOKMARKS}'/>`;
  }
  return roomJidProblem(id) ?? autojoinProblem(payload.attrs.autojoin);
}

/** The conferences of an XEP-0048 `<storage/>` converted, or the first malformed one's reason. */
function conferencesOf(storage: Element): Bookmark[] | string {
  const bookmarks = new Map<string, Bookmark>();
  for (const legacy of storage.getChildren("conference", NS_LEGACY)) {
    const bookmark = fromLegacy(legacy);
    if (typeof bookmark === "string") return bookmark;
    // A room listed twice: the later entry wins, as a list of items keyed by room would.
    bookmarks.set(bookmark.jid, bookmark);
  }
  return [...bookmarks.values()];
}

/** The children of `<storage/>` XEP-0402 has no place for (URL bookmarks, unknown elements). */
function restOf(storage: Element): Element[] {
  return storage.elements().filter((child) => !child.is("conference", NS_LEGACY));
}

/** Loads bookmark synchronisation on an account host. */
export default function bookmarks(m: ModuleAPI): void {
  if (m.host.kind !== "local") {
    m.log.warn("Module bookmarks serves accounts; idle on component {host}", { host: m.domain });
    return;
  }
  const pep = m.service("pep");
  /** Per account, the serialized children of `<storage/>` that are not conferences. */
  const rests = m.openStore<string>("bookmarks", "map");
  /** Accounts whose nodes this module is changing: their PEP events are its own echoes. */
  const syncing = new Set<string>();

  m.addAccountFeature(`${NS_BOOKMARKS}#compat`);
  m.addAccountFeature(`${NS_BOOKMARKS}#compat-pep`);
  m.addAccountFeature(NS_CONVERSION);

  const ownerOf = (user: string): JID => parseJid(`${user}@${m.domain}`);

  /** The bookmarks of the XEP-0402 node, oldest first; malformed items are skipped. */
  function storedBookmarks(service: PubsubService, user: string): Bookmark[] {
    if (!service.findNode(NS_BOOKMARKS)) return [];
    const found: Bookmark[] = [];
    for (const item of service.items(ownerOf(user), NS_BOOKMARKS)) {
      const problem = itemProblem(item.id, item.payload);
      if (problem) {
        m.log.warn("Skipped bookmark {id} of {user}: {problem}", { id: item.id, user, problem });
        continue;
      }
      found.push({ jid: item.id, conference: item.payload! });
    }
    return found;
  }

  function restElements(user: string): Element[] {
    const text = rests.get(user, "storage");
    if (text === undefined) return [];
    try {
      return parseElement(text).elements();
    } catch (error) {
      m.log.error("Stored bookmark extras of {user} are unreadable: {error}", { user, error });
      return [];
    }
  }

  function saveRest(user: string, rest: Element[]): void {
    if (rest.length === 0) {
      rests.set(user, "storage", undefined);
      return;
    }
    const holder = new Element("storage", { xmlns: NS_LEGACY }).append(
      ...rest.map((el) => el.clone()),
    );
    rests.set(user, "storage", serialize(holder, ""));
  }

  /** XEP-0048's `<storage/>`: the account's conferences from PEP and its other bookmarks. */
  function legacyStorage(user: string): Element {
    const storage = new Element("storage", { xmlns: NS_LEGACY });
    for (const bookmark of storedBookmarks(pep.serviceOf(user), user)) {
      storage.append(toLegacy(bookmark));
    }
    storage.append(...restElements(user));
    return storage;
  }

  /** Creates `node` with `config` unless it exists (a client's own configuration stays). */
  function ensureNode(
    service: PubsubService,
    actor: JID,
    node: string,
    config: Map<string, string[]>,
  ) {
    if (!service.findNode(node)) service.create(actor, node, config);
  }

  /**
   * Makes the XEP-0402 node hold exactly `wanted`: new and changed rooms are published,
   * unchanged ones left alone (XEP-0402's compatibility notes: no notification for them),
   * rooms no longer listed retracted with a notification.
   */
  function applyBookmarks(user: string, actor: JID, wanted: Bookmark[]): void {
    const service = pep.serviceOf(user);
    if (wanted.length > service.limits.maxItemsPerNode) {
      throw new PubsubError("not-acceptable", undefined, {
        text: `At most ${service.limits.maxItemsPerNode} conference bookmarks can be kept`,
      });
    }
    ensureNode(service, actor, NS_BOOKMARKS, BOOKMARKS_CONFIG);
    const current = new Map<string, string>();
    for (const item of service.items(ownerOf(user), NS_BOOKMARKS)) {
      current.set(item.id, item.payload ? serialize(item.payload, "") : "");
    }
    for (const bookmark of wanted) {
      if (current.get(bookmark.jid) === serialize(bookmark.conference, "")) continue;
      service.publish(actor, NS_BOOKMARKS, {
        id: bookmark.jid,
        payload: [bookmark.conference],
        hasItem: true,
      });
    }
    const listed = new Set(wanted.map((bookmark) => bookmark.jid));
    for (const id of current.keys()) {
      if (!listed.has(id)) service.retract(actor, NS_BOOKMARKS, id, true);
    }
  }

  /** Publishes the legacy node's item again from the XEP-0402 node (XEP-0411 notifications). */
  function publishLegacy(user: string, actor: JID): void {
    const service = pep.serviceOf(user);
    ensureNode(service, actor, NS_LEGACY, LEGACY_CONFIG);
    service.publish(actor, NS_LEGACY, {
      id: LEGACY_ITEM,
      payload: [legacyStorage(user)],
      hasItem: true,
    });
  }

  /** Runs `change` for `user` with PEP events of the account taken as this module's own. */
  function quietly(user: string, change: () => void): void {
    if (syncing.has(user)) return;
    syncing.add(user);
    try {
      change();
    } finally {
      syncing.delete(user);
    }
  }

  /**
   * Takes an XEP-0048 `<storage/>` as the account's whole list: conferences into the XEP-0402
   * node, the rest kept here. Returns the reason when a conference is malformed (nothing
   * changes then).
   */
  function importStorage(user: string, actor: JID, storage: Element): string | undefined {
    const wanted = conferencesOf(storage);
    if (typeof wanted === "string") return wanted;
    quietly(user, () => {
      applyBookmarks(user, actor, wanted);
      saveRest(user, restOf(storage));
    });
    return undefined;
  }

  // ---------- XEP-0049 private XML: the `<storage xmlns='storage:bookmarks'/>` fragment ----------

  m.hook("private-xml-get", (event: PrivateXmlEvent) => {
    if (!event.fragment.is("storage", NS_LEGACY)) return;
    const { user, from } = event;
    // Bookmarks stored in private XML before this module ran move to PEP once, on first read.
    if (event.fragment.elements().length > 0 && !pep.serviceOf(user).findNode(NS_BOOKMARKS)) {
      try {
        const problem = importStorage(user, from, event.fragment);
        if (problem) {
          // Answered as stored, until a set replaces them.
          m.log.warn("Kept private bookmarks of {user} as they are: {problem}", { user, problem });
          return;
        }
        quietly(user, () => publishLegacy(user, from));
      } catch (error) {
        if (!(error instanceof PubsubError)) throw error;
        m.log.warn("Could not move private bookmarks of {user} to PEP: {error}", { user, error });
        return;
      }
    }
    event.fragment = legacyStorage(user);
  });

  m.hook("private-xml-set", (event: PrivateXmlEvent) => {
    if (!event.fragment.is("storage", NS_LEGACY)) return;
    const { user, from } = event;
    try {
      const problem = importStorage(user, from, event.fragment);
      if (problem) {
        event.error = { condition: "bad-request", text: problem };
        return;
      }
      quietly(user, () => publishLegacy(user, from));
    } catch (error) {
      if (!(error instanceof PubsubError)) throw error;
      event.error = {
        condition: error.condition,
        text: error.text ?? "The bookmarks could not be stored in PEP",
      };
      return;
    }
    // Private storage keeps nothing of it: the empty element clears what it had.
    event.fragment = new Element("storage", { xmlns: NS_LEGACY });
  });

  // ---------- PEP: bookmarks published by clients, checked before the engine takes them ----------

  m.hook(`iq-set/self/${NS_PUBSUB}:pubsub`, ({ stanza, origin }: StanzaEvent) => {
    const publish = stanza.firstElement()?.getChild("publish", NS_PUBSUB);
    const node = publish?.attrs.node;
    if (node !== NS_BOOKMARKS && node !== NS_LEGACY) return false;
    const item = publish!.getChild("item", NS_PUBSUB);
    if (!item) return false; // the engine answers item-required
    const payload = item.elements()[0];
    let problem: string | undefined;
    if (node === NS_BOOKMARKS) {
      problem = itemProblem(item.attrs.id, payload);
    } else if (payload?.is("storage", NS_LEGACY)) {
      const converted = conferencesOf(payload);
      if (typeof converted === "string") problem = converted;
    } else {
      problem = `The ${NS_LEGACY} node takes a <storage xmlns='${NS_LEGACY}'/>`;
    }
    if (problem === undefined) {
      // A client publishing without publish-options would get PEP's defaults (one item,
      // presence access): the node is created as XEP-0402 asks first.
      const user = origin.jid?.local;
      const hasOptions = stanza.firstElement()?.getChild("publish-options", NS_PUBSUB);
      if (node === NS_BOOKMARKS && user !== undefined && !hasOptions) {
        try {
          ensureNode(pep.serviceOf(user), origin.jid!, NS_BOOKMARKS, BOOKMARKS_CONFIG);
        } catch (error) {
          if (!(error instanceof PubsubError)) throw error;
          // The engine reports the same failure on the publish.
        }
      }
      return false;
    }
    origin.send(
      pubsubErrorReply(
        stanza,
        new PubsubError("bad-request", "invalid-payload", { text: problem }),
      ),
    );
    return true;
  }, 10);

  // A client changed the XEP-0402 node: the legacy node follows (private XML reads it live).
  const modernChanged = (user: string, publisher: JID) => {
    if (syncing.has(user)) return;
    try {
      quietly(user, () => publishLegacy(user, publisher));
    } catch (error) {
      if (!(error instanceof PubsubError)) throw error;
      m.log.warn("Could not update legacy PEP bookmarks of {user}: {error}", { user, error });
    }
  };

  m.hook("pep-published", ({ host, user, node, payload, publisher }: PepPublishedEvent) => {
    if (host !== m.host || syncing.has(user)) return;
    const actor = tryParseJid(publisher) ?? ownerOf(user);
    if (node === NS_BOOKMARKS) {
      modernChanged(user, actor);
    } else if (node === NS_LEGACY && payload?.is("storage", NS_LEGACY)) {
      // A legacy PEP client replaced its whole list: the XEP-0402 node takes it.
      try {
        const problem = importStorage(user, actor, payload);
        if (problem) {
          m.log.warn("Ignored legacy PEP bookmarks of {user}: {problem}", { user, problem });
        }
      } catch (error) {
        if (!(error instanceof PubsubError)) throw error;
        m.log.warn("Could not take legacy PEP bookmarks of {user}: {error}", { user, error });
      }
    }
  });

  m.hook("pep-items-removed", ({ host, user, node }: PepItemsRemovedEvent) => {
    if (host !== m.host || node !== NS_BOOKMARKS || syncing.has(user)) return;
    modernChanged(user, ownerOf(user));
  });
}
