// Room registration (XEP-0045 §7.10) and reserved nicks (§7.12): a user registers with a room
// through a `muc#register` form, becoming a member whose nick nobody else may take.

import type { JID } from "../../core/jid.ts";
import { Element } from "../../core/xml/element.ts";
import { reply } from "../../core/xml/stanza.ts";
import { operatorSetAffiliation } from "./admin.ts";
import { MucError } from "./errors.ts";
import { AFFILIATION_RANK, type Room } from "./room.ts";
import type { MucService } from "./service.ts";

/** Namespace of in-band registration (XEP-0077), which rooms answer for §7.10. */
export const NS_REGISTER = "jabber:iq:register";
/** The disco node that tells a user its reserved nick (XEP-0045 §7.12). */
export const RESERVED_NICK_NODE = "x-roomuser-item";
const NS_DATA = "jabber:x:data";
const NS_INFO = "http://jabber.org/protocol/disco#info";
const FORM_TYPE = "http://jabber.org/protocol/muc#register";

/** The fields of the registration form: variable, label, field type, whether required. */
const FIELDS: readonly [string, string, string, boolean][] = [
  ["muc#register_first", "Given name", "text-single", false],
  ["muc#register_last", "Family name", "text-single", false],
  ["muc#register_roomnick", "Desired nickname", "text-single", true],
  ["muc#register_url", "Your URL", "text-single", false],
  ["muc#register_email", "Email address", "text-single", false],
  ["muc#register_faqentry", "FAQ entry", "text-multi", false],
];

/** The nick `bare` reserved in `room`, if any. */
export function reservedNick(room: Room, bare: string): string | undefined {
  return room.affiliations.get(bare)?.nick;
}

/** Answers a `jabber:iq:register` query from `actor` to `room` (throws MucError to refuse). */
export function handleRegisterQuery(
  service: MucService,
  room: Room,
  stanza: Element,
  actor: JID,
): Element {
  const bare = actor.bare.toString();
  const affiliation = room.affiliation(bare);
  if (affiliation === "outcast") {
    throw new MucError("forbidden", "You are banned from this room");
  }
  const nick = reservedNick(room, bare);
  const query = stanza.getChild("query", NS_REGISTER)!;
  if (stanza.attrs.type === "get") {
    const result = reply(stanza);
    const answer = result.c("query", { xmlns: NS_REGISTER });
    if (nick !== undefined) {
      // §7.10: already registered.
      answer.c("registered");
      answer.c("username").t(nick);
      return result;
    }
    answer.c("instructions").t("Fill in the form to register with this room");
    answer.append(registrationForm(room));
    return result;
  }
  if (query.getChild("remove")) {
    if (nick === undefined && affiliation !== "member") {
      throw new MucError("item-not-found", "You are not registered with this room");
    }
    if (AFFILIATION_RANK[affiliation] >= AFFILIATION_RANK.admin) {
      // Admins and owners keep their standing; only the nick is released.
      service.setAffiliation(room, bare, { ...room.affiliations.get(bare)!, nick: undefined });
    } else {
      operatorSetAffiliation(service, room, bare, "none");
    }
    return reply(stanza);
  }
  const form = query.getChild("x", NS_DATA);
  if (form?.attrs.type === "cancel") return reply(stanza);
  if (!form || form.attrs.type !== "submit") {
    throw new MucError("bad-request", "Expected a submitted muc#register form");
  }
  const values = new Map<string, string>();
  for (const field of form.getChildren("field")) {
    const variable = field.attrs.var;
    if (variable !== undefined) values.set(variable, field.getChildText("value")?.trim() ?? "");
  }
  const formType = values.get("FORM_TYPE");
  if (formType !== undefined && formType !== FORM_TYPE) {
    throw new MucError("bad-request", `Expected FORM_TYPE '${FORM_TYPE}', found '${formType}'`);
  }
  const wanted = values.get("muc#register_roomnick") ?? "";
  if (wanted === "") {
    // §7.10: a form without what the room requires is not a valid form.
    throw new MucError("bad-request", "The form needs a nickname (muc#register_roomnick)");
  }
  for (const [jid, record] of room.affiliations) {
    if (record.nick === wanted && jid !== bare) {
      throw new MucError("conflict", "That nickname is reserved by another user");
    }
  }
  const holder = room.occupants.get(wanted);
  if (holder && holder.bare !== bare) {
    throw new MucError("conflict", "That nickname is in use by another occupant");
  }
  if (affiliation === "none") {
    // Registering makes the user a member (§7.10), with the effects of an affiliation change.
    operatorSetAffiliation(service, room, bare, "member");
  }
  const record = room.affiliations.get(bare)!;
  service.setAffiliation(room, bare, { ...record, nick: wanted });
  return reply(stanza);
}

/** The `muc#register` form of §7.10 (the nick required, the other fields optional). */
function registrationForm(room: Room): Element {
  const form = new Element("x", { xmlns: NS_DATA, type: "form" });
  form.c("title").t(`Registration with ${room.config.name || room.jid}`);
  form.c("instructions").t("Reserve a nickname in this room; it makes you a member");
  form.c("field", { var: "FORM_TYPE", type: "hidden" }).c("value").t(FORM_TYPE);
  for (const [variable, label, type, required] of FIELDS) {
    const field = form.c("field", { var: variable, type, label });
    if (required) field.c("required");
  }
  return form;
}

/**
 * The answer to disco#info on the room's `x-roomuser-item` node (§7.12): an identity named with
 * the asker's reserved nick, or an empty query when it has none.
 */
export function reservedNickInfo(stanza: Element, room: Room, actor: JID): Element {
  const result = reply(stanza);
  const query = result.c("query", { xmlns: NS_INFO, node: RESERVED_NICK_NODE });
  const nick = reservedNick(room, actor.bare.toString());
  if (nick !== undefined) query.c("identity", { category: "conference", type: "text", name: nick });
  return result;
}
