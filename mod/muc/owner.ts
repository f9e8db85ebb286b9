// The owner's `muc#owner` queries (XEP-0045 §10): the configuration form (get and submit, the
// instant room's empty form, cancelling a new room) and destroying a room (§10.9).

import type { JID } from "../../core/jid.ts";
import { Element } from "../../core/xml/element.ts";
import { reply } from "../../core/xml/stanza.ts";
import { applyAffiliationListChanges, planAffiliationLists } from "./admin.ts";
import {
  applyRoomConfigForm,
  readAffiliationLists,
  type RoomConfig,
  roomConfigForm,
} from "./config.ts";
import { MucError } from "./errors.ts";
import { AFFILIATION_RANK, NS_MUC_USER, type Room } from "./room.ts";
import type { MucService } from "./service.ts";

/** Namespace of the owner's queries. */
export const NS_MUC_OWNER = "http://jabber.org/protocol/muc#owner";
const NS_DATA = "jabber:x:data";

/** Answers a `muc#owner` query from `actor` to `room` (throws MucError to refuse). */
export function handleOwnerQuery(
  service: MucService,
  room: Room,
  stanza: Element,
  actor: JID,
): Element {
  if (room.affiliation(actor.bare.toString()) !== "owner") {
    throw new MucError("forbidden", "Only owners may configure or destroy this room");
  }
  const query = stanza.getChild("query", NS_MUC_OWNER)!;
  if (stanza.attrs.type === "get") {
    const result = reply(stanza);
    result.c("query", { xmlns: NS_MUC_OWNER }).append(
      roomConfigForm(room.config, service.limits, affiliationLists(room)),
    );
    return result;
  }
  const destroy = query.getChild("destroy");
  if (destroy) {
    destroyRoom(service, room, destroy);
    return reply(stanza);
  }
  const form = query.getChild("x", NS_DATA);
  if (!form) throw new MucError("bad-request", "Expected a configuration form or <destroy/>");
  if (form.attrs.type === "cancel") {
    // §10.1.3: cancelling the configuration of a room never unlocked destroys it.
    if (room.locked) destroyRoom(service, room, undefined);
    return reply(stanza);
  }
  if (form.attrs.type !== "submit") {
    throw new MucError("bad-request", "Expected a form of type 'submit' or 'cancel'");
  }
  const before = room.config;
  const after = applyRoomConfigForm(before, form, service.limits);
  // Checked before anything changes, so a refused list leaves the room as it was.
  const listChanges = planAffiliationLists(room, readAffiliationLists(form));
  const wasLocked = room.locked;
  room.config = after;
  room.locked = false;
  if (room.history.length > after.historyLength) {
    room.history.splice(0, room.history.length - after.historyLength);
  }
  if (after.persistent) service.persist(room);
  else if (before.persistent) service.unpersist(room);
  if (!wasLocked) announceChanges(service, room, before, after);
  if (after.membersOnly && !before.membersOnly) removeNonMembers(service, room);
  const actorNick = room.bySession.get(actor.toString())?.nick;
  applyAffiliationListChanges(service, room, listChanges, actorNick);
  return reply(stanza);
}

/** The room's owners and admins for the form's jid-multi fields. */
function affiliationLists(room: Room): { owners: string[]; admins: string[] } {
  const owners: string[] = [];
  const admins: string[] = [];
  for (const [bare, record] of room.affiliations) {
    if (record.affiliation === "owner") owners.push(bare);
    else if (record.affiliation === "admin") admins.push(bare);
  }
  return { owners, admins };
}

/**
 * §10.2.1: occupants learn that the configuration changed (104), of JID visibility (172/173)
 * and of the archive being switched on or off (170/171).
 */
function announceChanges(
  service: MucService,
  room: Room,
  before: RoomConfig,
  after: RoomConfig,
): void {
  const codes = [104];
  // 170/171: the room's archive was switched on or off (when the service keeps one).
  if (before.archiving !== after.archiving && service.archive !== undefined) {
    codes.push(after.archiving ? 170 : 171);
  }
  if (before.whois !== after.whois) codes.push(after.whois === "anyone" ? 172 : 173);
  codes.sort((a, b) => a - b);
  for (const full of room.bySession.keys()) {
    const message = new Element("message", { from: room.jid, to: full, type: "groupchat" });
    const x = message.c("x", { xmlns: NS_MUC_USER });
    for (const code of codes) x.c("status", { code: String(code) });
    service.send(message);
  }
}

/** §9.4 / status 322: a room that becomes members-only removes those who are not members. */
function removeNonMembers(service: MucService, room: Room): void {
  for (const occupant of [...room.occupants.values()]) {
    if (AFFILIATION_RANK[room.affiliation(occupant.bare)] >= AFFILIATION_RANK.member) continue;
    service.expel(room, occupant, { type: "unavailable", role: "none", statuses: [322] });
  }
}

/**
 * §10.9: every occupant is told the room is gone (unavailable with `<destroy/>`, its alternate
 * venue and reason), and the room is forgotten.
 */
export function destroyRoom(service: MucService, room: Room, destroy: Element | undefined): void {
  const extra = new Element("destroy", { xmlns: NS_MUC_USER, jid: destroy?.attrs.jid });
  const reason = destroy?.getChildText("reason");
  if (reason !== undefined) extra.c("reason").t(reason);
  const password = destroy?.getChildText("password");
  if (password !== undefined) extra.c("password").t(password);
  for (const [full, occupant] of room.sessions()) {
    const presence = new Element("presence", {
      from: room.occupantJid(occupant.nick),
      to: full,
      type: "unavailable",
    });
    const x = presence.c("x", { xmlns: NS_MUC_USER });
    x.c("item", { affiliation: "none", role: "none" });
    x.append(extra.clone());
    service.send(presence);
  }
  room.occupants.clear();
  room.bySession.clear();
  service.forget(room);
}
