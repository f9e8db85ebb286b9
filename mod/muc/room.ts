// One multi-user chat room: its configuration, affiliations (persistent), occupants with their
// roles and sessions, the in-memory history, and the presence XEP-0045 §7.2 has occupants see.

import { Element } from "../../core/xml/element.ts";
import { serialize } from "../../core/xml/serializer.ts";
import type { RoomConfig } from "./config.ts";
import type { AffiliationRecord, StoredAffiliation } from "./storage.ts";

/** Namespace of the join element (`<x/>` in a join presence). */
export const NS_MUC = "http://jabber.org/protocol/muc";
/** Namespace of the occupant data the room adds (`<x/>` with items and status codes). */
export const NS_MUC_USER = "http://jabber.org/protocol/muc#user";
/** Namespace of XEP-0421 occupant ids, added to occupants' messages and presence. */
export const NS_OCCUPANT_ID = "urn:xmpp:occupant-id:0";
/** Namespace of XEP-0203 delayed delivery, stamped on history. */
export const NS_DELAY = "urn:xmpp:delay";

/** A role in the room (XEP-0045 §5.1): lasts for one visit. */
export type Role = "moderator" | "participant" | "visitor" | "none";
/** An affiliation with the room (XEP-0045 §5.2): lasts across visits. */
export type Affiliation = StoredAffiliation | "none";

/** Affiliations from lowest to highest, for the comparisons of XEP-0045 §5.2. */
export const AFFILIATION_RANK: Record<Affiliation, number> = {
  outcast: 0,
  none: 1,
  member: 2,
  admin: 3,
  owner: 4,
};

/** Someone in the room under one nick, possibly from several resources of one account. */
export interface Occupant {
  nick: string;
  /** The real bare JID. */
  bare: string;
  role: Role;
  /** Each joined resource (full JID) with the last presence it sent to the room. */
  sessions: Map<string, Element>;
  /** The presence shown for the occupant: the one its resources sent last. */
  presence: Element;
  /** The XEP-0421 occupant id (stable per room and real bare JID), when the service has one. */
  occupantId?: string;
}

/** One groupchat message kept for newcomers. */
export interface HistoryEntry {
  /** The message as reflected (from the occupant JID), without `to`. */
  message: Element;
  /** When the room received it (ms since the epoch). */
  stampMs: number;
  /** Its size in characters, for `maxchars`. */
  chars: number;
}

/** What a joining user asked of the history (XEP-0045 §7.2.14). */
export interface HistoryRequest {
  maxChars?: number;
  maxStanzas?: number;
  seconds?: number;
  sinceMs?: number;
}

/** A room and the occupants in it. */
export class Room {
  /** The room's bare JID (`room@service`). */
  readonly jid: string;
  /** The room's local part. */
  readonly local: string;
  config: RoomConfig;
  subject = "";
  /** The nick that set the subject, when an occupant did. */
  subjectBy: string | undefined;
  readonly createdMs: number;
  /** True from creation until the owner configures the room or accepts the instant room. */
  locked = false;
  /** Affiliations other than "none", by bare JID. */
  readonly affiliations: Map<string, AffiliationRecord>;
  /** Occupants by nick. */
  readonly occupants = new Map<string, Occupant>();
  /** Occupants by the full JID of each of their joined resources. */
  readonly bySession = new Map<string, Occupant>();
  readonly history: HistoryEntry[] = [];

  constructor(
    jid: string,
    config: RoomConfig,
    createdMs: number,
    affiliations = new Map<string, AffiliationRecord>(),
  ) {
    this.jid = jid;
    this.local = jid.slice(0, jid.indexOf("@"));
    this.config = config;
    this.createdMs = createdMs;
    this.affiliations = affiliations;
  }

  /** A bare JID's affiliation. */
  affiliation(bare: string): Affiliation {
    return this.affiliations.get(bare)?.affiliation ?? "none";
  }

  /** The role a user with this affiliation gets on entering (XEP-0045 §5.1.2). */
  defaultRole(affiliation: Affiliation): Role {
    if (affiliation === "owner" || affiliation === "admin") return "moderator";
    if (affiliation === "outcast") return "none";
    if (affiliation === "member") return "participant";
    return this.config.moderated ? "visitor" : "participant";
  }

  /** The occupant JID of a nick (`room@service/nick`). */
  occupantJid(nick: string): string {
    return `${this.jid}/${nick}`;
  }

  /** Every joined resource's full JID with its occupant. */
  *sessions(): Iterable<[string, Occupant]> {
    yield* this.bySession;
  }

  /** Whether `viewer` may see the real JIDs of occupants (the `whois` setting). */
  seesJids(viewer: Occupant | undefined): boolean {
    return this.config.whois === "anyone" || viewer?.role === "moderator";
  }

  /** Keeps a groupchat message for newcomers, within the room's history length. */
  remember(message: Element, nowMs: number): void {
    const kept = message.clone();
    delete kept.attrs.to;
    this.history.push({ message: kept, stampMs: nowMs, chars: serialize(kept).length });
    const excess = this.history.length - this.config.historyLength;
    if (excess > 0) this.history.splice(0, excess);
  }

  /** The history a newcomer asked for, oldest first (XEP-0045 §7.2.14). */
  historyFor(request: HistoryRequest, nowMs: number): HistoryEntry[] {
    let entries = this.history;
    if (request.maxStanzas !== undefined) {
      entries = request.maxStanzas === 0 ? [] : entries.slice(-request.maxStanzas);
    }
    const seconds = request.seconds;
    if (seconds !== undefined) entries = entries.filter((e) => nowMs - e.stampMs <= seconds * 1000);
    const since = request.sinceMs;
    if (since !== undefined) entries = entries.filter((e) => e.stampMs > since);
    if (request.maxChars !== undefined) {
      let budget = request.maxChars;
      let first = entries.length;
      while (first > 0 && entries[first - 1].chars <= budget) {
        budget -= entries[first - 1].chars;
        first--;
      }
      entries = entries.slice(first);
    }
    return entries;
  }
}

/** What an occupant presence carries besides the occupant's own presence. */
export interface PresenceOptions {
  /** The presence type ("unavailable" for a departure), none for available. */
  type?: "unavailable";
  /** Status codes (XEP-0045 §15.6), in the order given. */
  statuses?: number[];
  /** Show the real JID in the item. */
  withJid?: boolean;
  /** The real JID to show (the resource that left), instead of the first joined one. */
  jid?: string;
  /** The new nick in a nick change (status 303). */
  newNick?: string;
  /** Who kicked or banned, and why (the item's `<actor/>` and `<reason/>`). */
  actorNick?: string;
  reason?: string;
  /** Role to show instead of the occupant's (e.g. "none" on leaving). */
  role?: Role;
  /** Extra children of the muc#user `<x/>` (e.g. `<destroy/>`). */
  extra?: Element[];
}

/**
 * The presence of an occupant as one recipient sees it: the occupant's own presence payload
 * (show, status, caps, ...) plus a muc#user `<x/>` with the item and status codes.
 */
export function occupantPresence(
  room: Room,
  occupant: Occupant,
  to: string,
  options: PresenceOptions = {},
): Element {
  const presence = new Element("presence", {
    from: room.occupantJid(occupant.nick),
    to,
    type: options.type,
  });
  if (options.type !== "unavailable") {
    for (const child of occupant.presence.children) {
      if (typeof child === "string") continue;
      if (child.ns === NS_MUC || child.ns === NS_MUC_USER || child.ns === NS_OCCUPANT_ID) continue;
      presence.append(child.clone());
    }
  } else {
    const status = occupant.presence.getChild("status");
    if (status && !options.statuses?.includes(303)) presence.append(status.clone());
  }
  const x = presence.c("x", { xmlns: NS_MUC_USER });
  const item = x.c("item", {
    affiliation: room.affiliation(occupant.bare),
    jid: options.withJid
      ? options.jid ?? [...occupant.sessions.keys()][0] ?? occupant.bare
      : undefined,
    nick: options.newNick,
    role: options.role ?? occupant.role,
  });
  if (options.actorNick !== undefined) item.c("actor", { nick: options.actorNick });
  if (options.reason !== undefined) item.c("reason").t(options.reason);
  for (const extra of options.extra ?? []) x.append(extra);
  for (const code of options.statuses ?? []) x.c("status", { code: String(code) });
  if (occupant.occupantId !== undefined) {
    presence.c("occupant-id", { xmlns: NS_OCCUPANT_ID, id: occupant.occupantId });
  }
  return presence;
}
