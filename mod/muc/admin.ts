// The `muc#admin` queries (XEP-0045 §8 and §9, §10.3–10.7): role changes by nick (kick, voice,
// moderator) and affiliation changes by JID (ban, member, admin, owner) with the permission
// rules of §5, and the lists of who holds a role or an affiliation.

import { type JID, tryParseJid } from "../../core/jid.ts";
import { Element } from "../../core/xml/element.ts";
import { reply } from "../../core/xml/stanza.ts";
import { MucError } from "./errors.ts";
import {
  type Affiliation,
  AFFILIATION_RANK,
  NS_MUC_USER,
  type Occupant,
  type Role,
  type Room,
} from "./room.ts";
import type { MucService } from "./service.ts";

/** Namespace of the moderators' and admins' queries. */
export const NS_MUC_ADMIN = "http://jabber.org/protocol/muc#admin";

const ROLES: readonly Role[] = ["moderator", "participant", "visitor", "none"];
const AFFILIATIONS: readonly Affiliation[] = ["owner", "admin", "member", "outcast", "none"];

/** One requested change, checked before any is applied. */
type Change =
  | { kind: "role"; occupant: Occupant; role: Role; reason?: string }
  | { kind: "affiliation"; bare: string; affiliation: Affiliation; reason?: string };

/** Answers a `muc#admin` query from `actor` to `room` (throws MucError to refuse). */
export function handleAdminQuery(
  service: MucService,
  room: Room,
  stanza: Element,
  actor: JID,
): Element {
  const query = stanza.getChild("query", NS_MUC_ADMIN)!;
  const items = query.getChildren("item");
  if (items.length === 0) throw new MucError("bad-request", "Expected at least one <item/>");
  const bare = actor.bare.toString();
  const actorAffiliation = room.affiliation(bare);
  const actorOccupant = room.bySession.get(actor.toString());
  if (stanza.attrs.type === "get") {
    return list(room, stanza, items[0], actorAffiliation, actorOccupant);
  }

  const changes = items.map((item) => check(room, item, actorAffiliation, actorOccupant));
  const actorNick = actorOccupant?.nick;
  for (const change of changes) {
    if (change.kind === "role") applyRole(service, room, change, actorNick);
    else applyAffiliation(service, room, change, actorNick);
  }
  return reply(stanza);
}

/** §8.5, §9.5, §9.8, §10.5: who holds a role or an affiliation. */
function list(
  room: Room,
  stanza: Element,
  item: Element,
  actorAffiliation: Affiliation,
  actorOccupant: Occupant | undefined,
): Element {
  const result = reply(stanza);
  const query = result.c("query", { xmlns: NS_MUC_ADMIN });
  const role = item.attrs.role;
  const affiliation = item.attrs.affiliation;
  if (role !== undefined) {
    if (!ROLES.includes(role as Role) || role === "none") {
      throw new MucError("bad-request", `Cannot list the role '${role}'`);
    }
    if (actorOccupant?.role !== "moderator") {
      throw new MucError("forbidden", "Only moderators may list roles");
    }
    for (const occupant of room.occupants.values()) {
      if (occupant.role !== role) continue;
      query.c("item", {
        affiliation: room.affiliation(occupant.bare),
        jid: room.seesJids(actorOccupant) ? occupant.bare : undefined,
        nick: occupant.nick,
        role: occupant.role,
      });
    }
    return result;
  }
  if (affiliation === undefined || !AFFILIATIONS.includes(affiliation as Affiliation)) {
    throw new MucError("bad-request", "Expected a role or an affiliation to list");
  }
  if (affiliation === "none") {
    throw new MucError("bad-request", "Cannot list the affiliation 'none'");
  }
  if (AFFILIATION_RANK[actorAffiliation] < AFFILIATION_RANK.admin) {
    throw new MucError("forbidden", "Only admins and owners may list affiliations");
  }
  for (const [jid, record] of room.affiliations) {
    if (record.affiliation !== affiliation) continue;
    const el = query.c("item", { affiliation, jid, nick: record.nick });
    if (record.reason) el.c("reason").t(record.reason);
  }
  return result;
}

/** Checks one change against the permission rules of XEP-0045 §5. */
function check(
  room: Room,
  item: Element,
  actorAffiliation: Affiliation,
  actorOccupant: Occupant | undefined,
): Change {
  const reason = item.getChildText("reason");
  const rank = AFFILIATION_RANK[actorAffiliation];
  if (item.attrs.role !== undefined && item.attrs.affiliation === undefined) {
    const role = item.attrs.role as Role;
    if (!ROLES.includes(role)) throw new MucError("bad-request", `Unknown role '${role}'`);
    const nick = item.attrs.nick;
    if (nick === undefined) throw new MucError("bad-request", "A role change names a nick");
    const occupant = room.occupants.get(nick);
    if (!occupant) throw new MucError("item-not-found", `No occupant '${nick}' in this room`);
    if (actorOccupant?.role !== "moderator") {
      throw new MucError("forbidden", "Only moderators may change roles");
    }
    const targetRank = AFFILIATION_RANK[room.affiliation(occupant.bare)];
    // §8.2–8.4: admins and owners keep their role against moderators below them.
    if (targetRank >= AFFILIATION_RANK.admin && role !== "moderator" && targetRank >= rank) {
      throw new MucError("not-allowed", "You may not change the role of an admin or owner");
    }
    if ((role === "moderator" || occupant.role === "moderator") && rank < AFFILIATION_RANK.admin) {
      // §9.6–9.7: granting or revoking moderation is an admin's act.
      throw new MucError("not-allowed", "Only admins and owners may grant or revoke moderation");
    }
    return { kind: "role", occupant, role, reason };
  }
  const affiliation = item.attrs.affiliation as Affiliation | undefined;
  if (affiliation === undefined || !AFFILIATIONS.includes(affiliation)) {
    throw new MucError("bad-request", "Expected a role or an affiliation");
  }
  let bare: string | undefined;
  if (item.attrs.jid !== undefined) {
    const jid = tryParseJid(item.attrs.jid);
    if (!jid) throw new MucError("jid-malformed", `Invalid JID '${item.attrs.jid}'`);
    bare = jid.bare.toString();
  } else if (item.attrs.nick !== undefined) {
    bare = room.occupants.get(item.attrs.nick)?.bare;
    if (!bare) {
      throw new MucError("item-not-found", `No occupant '${item.attrs.nick}' in this room`);
    }
  } else {
    throw new MucError("bad-request", "An affiliation change names a jid");
  }
  if (rank < AFFILIATION_RANK.admin) {
    throw new MucError("forbidden", "Only admins and owners may change affiliations");
  }
  const current = room.affiliation(bare);
  const touchesHigh = AFFILIATION_RANK[current] >= AFFILIATION_RANK.admin ||
    AFFILIATION_RANK[affiliation] >= AFFILIATION_RANK.admin;
  if (touchesHigh && actorAffiliation !== "owner") {
    // §10.3–10.7: only owners grant or revoke admin and owner.
    throw new MucError("not-allowed", "Only owners may change admin and owner affiliations");
  }
  if (current === "owner" && affiliation !== "owner") {
    const owners = [...room.affiliations.values()].filter((r) => r.affiliation === "owner");
    if (owners.length === 1) {
      throw new MucError("conflict", "A room keeps at least one owner");
    }
  }
  return { kind: "affiliation", bare, affiliation, reason };
}

function applyRole(
  service: MucService,
  room: Room,
  change: Extract<Change, { kind: "role" }>,
  actorNick: string | undefined,
): void {
  const { occupant, role, reason } = change;
  if (role === "none") {
    // §8.2: kicked, status 307.
    occupant.role = "none";
    service.expel(room, occupant, {
      type: "unavailable",
      role: "none",
      statuses: [307],
      actorNick,
      reason,
    });
    return;
  }
  occupant.role = role;
  service.broadcastPresence(room, occupant, { reason });
}

/**
 * Sets a bare JID's affiliation on the service operator's authority (the admin shell), with the
 * same effects on its occupants as an owner's change (ban 301, 321, new role).
 */
export function operatorSetAffiliation(
  service: MucService,
  room: Room,
  bare: string,
  affiliation: Affiliation,
  reason?: string,
): void {
  applyAffiliation(service, room, { kind: "affiliation", bare, affiliation, reason }, undefined);
}

/** Affiliation changes planned from the form's owner and admin lists, applied later. */
export type AffiliationListChanges = Extract<Change, { kind: "affiliation" }>[];

/**
 * Plans the affiliation changes an owner's submitted `muc#roomconfig_roomowners` and
 * `muc#roomconfig_roomadmins` lists ask for (XEP-0045 §10.2): listed JIDs gain the affiliation,
 * JIDs holding it but missing from a submitted list lose it (to admin when they are in the
 * admins list, none otherwise); a list left out changes nothing, and a JID in both lists is an
 * owner. Throws `conflict` when no owner would be left (§10.5).
 */
export function planAffiliationLists(
  room: Room,
  lists: { owners?: string[]; admins?: string[] },
): AffiliationListChanges {
  const target = new Map<string, Affiliation>();
  for (const [bare, record] of room.affiliations) target.set(bare, record.affiliation);
  if (lists.owners !== undefined) {
    for (const [bare, affiliation] of target) {
      if (affiliation === "owner") target.set(bare, "none");
    }
  }
  if (lists.admins !== undefined) {
    for (const [bare, affiliation] of target) {
      if (affiliation === "admin") target.set(bare, "none");
    }
    for (const bare of lists.admins) target.set(bare, "admin");
  }
  if (lists.owners !== undefined) {
    for (const bare of lists.owners) target.set(bare, "owner");
  } else if (lists.admins !== undefined) {
    // Owners stay owners when only the admins list is submitted, even if listed there.
    for (const [bare, record] of room.affiliations) {
      if (record.affiliation === "owner") target.set(bare, "owner");
    }
  }
  if (![...target.values()].includes("owner")) {
    throw new MucError("conflict", "A room keeps at least one owner");
  }
  const changes: AffiliationListChanges = [];
  for (const [bare, affiliation] of target) {
    if (room.affiliation(bare) !== affiliation) {
      changes.push({ kind: "affiliation", bare, affiliation });
    }
  }
  return changes;
}

/**
 * Applies planned list changes with the same effects as `muc#admin` changes (presences with
 * the new role, 321 in members-only rooms, 101 notices to users not in the room).
 */
export function applyAffiliationListChanges(
  service: MucService,
  room: Room,
  changes: AffiliationListChanges,
  actorNick: string | undefined,
): void {
  for (const change of changes) applyAffiliation(service, room, change, actorNick);
}

function applyAffiliation(
  service: MucService,
  room: Room,
  change: Extract<Change, { kind: "affiliation" }>,
  actorNick: string | undefined,
): void {
  const { bare, affiliation, reason } = change;
  const kept = room.affiliations.get(bare);
  service.setAffiliation(
    room,
    bare,
    affiliation === "none" ? undefined : { affiliation, reason, nick: kept?.nick },
  );
  const occupants = [...room.occupants.values()].filter((occupant) => occupant.bare === bare);
  if (occupants.length === 0) service.send(affiliationNotice(room, bare, affiliation, reason));
  for (const occupant of occupants) {
    if (affiliation === "outcast") {
      // §9.1: banned, status 301.
      service.expel(room, occupant, {
        type: "unavailable",
        role: "none",
        statuses: [301],
        actorNick,
        reason,
      });
      continue;
    }
    if (room.config.membersOnly && AFFILIATION_RANK[affiliation] < AFFILIATION_RANK.member) {
      // §9.4: no longer a member of a members-only room, status 321.
      service.expel(room, occupant, {
        type: "unavailable",
        role: "none",
        statuses: [321],
        actorNick,
        reason,
      });
      continue;
    }
    occupant.role = room.defaultRole(affiliation);
    service.broadcastPresence(room, occupant, { reason });
  }
}

/**
 * XEP-0045 status 101: the out-of-room message telling a user who is not in the room that
 * their affiliation changed (sent to the bare JID, as a headline, like Prosody does).
 * It carries no body (optional in the XEP), only the muc#user item and the status.
 */
function affiliationNotice(
  room: Room,
  bare: string,
  affiliation: Affiliation,
  reason: string | undefined,
): Element {
  const message = new Element("message", { from: room.jid, to: bare, type: "headline" });
  const x = message.c("x", { xmlns: NS_MUC_USER });
  const item = x.c("item", { affiliation, jid: bare });
  if (reason !== undefined) item.c("reason").t(reason);
  x.c("status", { code: "101" });
  return message;
}
