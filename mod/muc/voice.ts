// XEP-0045 §7.13 and §8.6 voice requests: a visitor of a moderated room submits the
// `muc#request` form to the room, every moderator gets an approval form, and a moderator who
// submits it with `muc#request_allow` true gives the visitor voice (role participant).

import type { JID } from "../../core/jid.ts";
import { Element } from "../../core/xml/element.ts";
import { MucError } from "./errors.ts";
import type { Room } from "./room.ts";
import type { MucService } from "./service.ts";

/** FORM_TYPE of voice requests and their approval forms. */
export const NS_MUC_REQUEST = "http://jabber.org/protocol/muc#request";
const NS_DATA = "jabber:x:data";

/** The `muc#request` data form of a message, if it has one. */
export function requestForm(stanza: Element): Element | undefined {
  return stanza.getChildren("x", NS_DATA).find((x) =>
    fieldValue(x, "FORM_TYPE") === NS_MUC_REQUEST
  );
}

function fieldValue(form: Element, variable: string): string | undefined {
  const field = form.getChildren("field").find((f) => f.attrs.var === variable);
  return field?.getChildText("value");
}

/**
 * Handles a submitted `muc#request` form sent to the room by `from`: a visitor's request for
 * voice, or a moderator's answer to one. Throws MucError: not-acceptable from a non-occupant,
 * bad-request for a form that is neither, forbidden for an approval by a non-moderator,
 * item-not-found when the requester has left.
 */
export function handleVoiceForm(service: MucService, room: Room, form: Element, from: JID): void {
  const occupant = room.bySession.get(from.toString());
  if (!occupant) throw new MucError("not-acceptable", "Only occupants may request voice");
  if (form.attrs.type !== "submit") {
    throw new MucError("bad-request", "Expected a submitted muc#request form");
  }
  const allow = fieldValue(form, "muc#request_allow");
  if (allow !== undefined) {
    approve(service, room, form, occupant.role === "moderator", allow);
    return;
  }
  const role = fieldValue(form, "muc#role") ?? "participant";
  if (role !== "participant") {
    throw new MucError(
      "bad-request",
      `Only voice (role 'participant') may be requested, not '${role}'`,
    );
  }
  if (occupant.role !== "visitor") {
    throw new MucError("bad-request", "You already have voice in this room");
  }
  for (const [full, viewer] of room.sessions()) {
    if (viewer.role !== "moderator") continue;
    service.send(approvalForm(room, full, from.toString(), occupant.nick));
  }
}

/** The §8.6 form a moderator gets for one voice request. */
function approvalForm(room: Room, to: string, requester: string, nick: string): Element {
  const message = new Element("message", {
    from: room.jid,
    to,
    type: "normal",
    id: crypto.randomUUID(),
  });
  const form = message.c("x", { xmlns: NS_DATA, type: "form" });
  form.c("title").t("Voice request");
  form.c("instructions").t(`${nick} asks for voice in ${room.jid}; set the checkbox to grant it`);
  form.c("field", { var: "FORM_TYPE", type: "hidden" }).c("value").t(NS_MUC_REQUEST);
  form.c("field", { var: "muc#role", type: "list-single", label: "Requested role" })
    .c("value").t("participant");
  form.c("field", { var: "muc#jid", type: "jid-single", label: "User ID" }).c("value").t(requester);
  form.c("field", { var: "muc#roomnick", type: "text-single", label: "Room Nickname" })
    .c("value").t(nick);
  form.c("field", {
    var: "muc#request_allow",
    type: "boolean",
    label: "Grant voice to this person?",
  }).c("value").t("false");
  return message;
}

function approve(
  service: MucService,
  room: Room,
  form: Element,
  byModerator: boolean,
  allow: string,
): void {
  if (!byModerator) throw new MucError("forbidden", "Only moderators may answer voice requests");
  if (allow !== "true" && allow !== "1") return; // The moderator turned the request down.
  const nick = fieldValue(form, "muc#roomnick");
  const jid = fieldValue(form, "muc#jid");
  // The real JID names the requester even after a nick change; the nick is the fallback.
  const requester = (jid !== undefined ? room.bySession.get(jid) : undefined) ??
    (nick !== undefined ? room.occupants.get(nick) : undefined);
  if (!requester) {
    throw new MucError(
      "item-not-found",
      "The occupant who asked for voice is no longer in the room",
    );
  }
  if (requester.role !== "visitor") return; // Already has voice (another moderator granted it).
  requester.role = "participant";
  service.broadcastPresence(room, requester);
}
