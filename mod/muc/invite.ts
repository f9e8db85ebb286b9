// XEP-0045 §7.8.2 mediated invitations and declines: an occupant asks the room to invite a JID,
// the room forwards the invitation (with the password) from its own address, and in a
// members-only room an invitation by whoever may invite there makes the invitee a member.

import { type JID, tryParseJid } from "../../core/jid.ts";
import { Element } from "../../core/xml/element.ts";
import { MucError } from "./errors.ts";
import { AFFILIATION_RANK, NS_MUC_USER, type Room } from "./room.ts";
import type { MucService } from "./service.ts";

/**
 * Handles the `<invite/>` and `<decline/>` children of a muc#user `<x/>` sent to the room by
 * `from`. Throws MucError: not-acceptable for an invitation from a non-occupant, forbidden when
 * the occupant may not invite to a members-only room, jid-malformed or bad-request for an
 * invitation or decline without a usable `to`, bad-request when there is neither.
 */
export function handleInvitations(
  service: MucService,
  room: Room,
  stanza: Element,
  from: JID,
): void {
  const x = stanza.getChild("x", NS_MUC_USER)!;
  const invites = x.getChildren("invite");
  const declines = x.getChildren("decline");
  if (invites.length === 0 && declines.length === 0) {
    throw new MucError("bad-request", "Expected an <invite/> or a <decline/> in the muc#user <x/>");
  }
  if (invites.length > 0) invite(service, room, stanza, from, invites);
  for (const decline of declines) forwardDecline(service, room, stanza, from, decline);
}

function target(element: Element, what: string): JID {
  const to = element.attrs.to;
  if (to === undefined) throw new MucError("bad-request", `A ${what} names who it is for in 'to'`);
  const jid = tryParseJid(to);
  if (!jid) throw new MucError("jid-malformed", `Invalid JID '${to}' in the ${what}`);
  return jid;
}

function invite(
  service: MucService,
  room: Room,
  stanza: Element,
  from: JID,
  invites: Element[],
): void {
  const inviter = room.bySession.get(from.toString());
  if (!inviter) {
    throw new MucError("not-acceptable", "Only occupants may invite others to the room");
  }
  const rank = AFFILIATION_RANK[room.affiliation(inviter.bare)];
  // §7.8.2, Prosody: in a members-only room admins and owners invite, members only when the
  // room allows it (`muc#roomconfig_allowinvites`); an invitation there grants membership.
  const minimum = room.config.allowInvites ? AFFILIATION_RANK.member : AFFILIATION_RANK.admin;
  if (room.config.membersOnly && rank < minimum) {
    throw new MucError(
      "forbidden",
      room.config.allowInvites
        ? "Only members may invite others to this room"
        : "Only admins and owners may invite others to this room",
    );
  }
  const invitees = invites.map((element) => ({ element, jid: target(element, "invitation") }));
  for (const { element, jid } of invitees) {
    const bare = jid.bare.toString();
    if (
      room.config.membersOnly && AFFILIATION_RANK[room.affiliation(bare)] < AFFILIATION_RANK.member
    ) {
      if (room.affiliation(bare) !== "outcast") {
        service.setAffiliation(room, bare, { affiliation: "member" });
      }
    }
    const reason = element.getChildText("reason");
    const message = new Element("message", {
      from: room.jid,
      to: jid.toString(),
      id: stanza.attrs.id ?? crypto.randomUUID(),
    });
    const x = message.c("x", { xmlns: NS_MUC_USER });
    // The invitee learns the inviter's real JID only if it would see real JIDs in the room:
    // whois is anyone, or its affiliation makes it a moderator (as Prosody does).
    const seesJids = room.config.whois === "anyone" ||
      room.defaultRole(room.affiliation(bare)) === "moderator";
    const inviterJid = seesJids ? from.toString() : room.occupantJid(inviter.nick);
    const forwarded = x.c("invite", { from: inviterJid });
    if (reason !== undefined) forwarded.c("reason").t(reason);
    const continued = element.getChild("continue");
    if (continued) forwarded.append(continued.clone());
    if (room.config.password !== "") x.c("password").t(room.config.password);
    message.c("body").t(
      `${inviterJid} invites you to the room ${room.jid}` + (reason ? `: ${reason}` : ""),
    );
    service.send(message);
  }
}

function forwardDecline(
  service: MucService,
  room: Room,
  stanza: Element,
  from: JID,
  decline: Element,
): void {
  const inviter = target(decline, "decline");
  const message = new Element("message", {
    from: room.jid,
    to: inviter.toString(),
    id: stanza.attrs.id ?? crypto.randomUUID(),
  });
  const forwarded = message.c("x", { xmlns: NS_MUC_USER }).c("decline", {
    from: from.bare.toString(),
  });
  const reason = decline.getChildText("reason");
  if (reason !== undefined) forwarded.c("reason").t(reason);
  service.send(message);
}
