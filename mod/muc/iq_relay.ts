// Iqs between occupants (XEP-0045 §7.7 and §17.3): a query from one occupant to another's room
// JID goes to a real JID of the target with the sender's occupant JID as `from` and an id of
// the room's own; the answer goes back to the asker from the target's occupant JID with the
// asker's id. vcard-temp queries go to the target's bare JID (the account's vCard).

import { Element } from "../../core/xml/element.ts";
import type { Occupant, Room } from "./room.ts";

const NS_VCARD = "vcard-temp";
/** The most queries awaiting an answer; past it the oldest are forgotten. */
const MAX_PENDING = 10_000;

/** One relayed query awaiting its answer. */
interface Pending {
  /** The asker's id. */
  id: string;
  /** The asker's full JID. */
  asker: string;
  /** The JID the query went to (the only one whose answer counts). */
  sentTo: string;
  /** The target's occupant JID, the `from` of the answer the asker gets. */
  occupantJid: string;
}

/** The iqs relayed between occupants of a service's rooms, and the answers still awaited. */
export class IqRelay {
  #pending = new Map<string, Pending>();

  /**
   * The query `stanza` from `asker` (an occupant, at its full JID `askerFull`) rewritten for
   * `target`: to one of its real JIDs, from the asker's occupant JID, with a fresh id.
   */
  forward(
    room: Room,
    stanza: Element,
    asker: Occupant,
    askerFull: string,
    target: Occupant,
  ): Element {
    const payload = stanza.children.find((c): c is Element => typeof c !== "string");
    const vcard = payload?.name === "vCard" && payload.ns === NS_VCARD;
    const sentTo = vcard ? target.bare : [...target.sessions.keys()].at(-1) ?? target.bare;
    const id = `muc-${crypto.randomUUID()}`;
    this.#pending.set(id, {
      id: stanza.attrs.id ?? "",
      asker: askerFull,
      sentTo,
      occupantJid: room.occupantJid(target.nick),
    });
    if (this.#pending.size > MAX_PENDING) {
      this.#pending.delete(this.#pending.keys().next().value!);
    }
    const forwarded = stanza.clone();
    forwarded.attrs.from = room.occupantJid(asker.nick);
    forwarded.attrs.to = sentTo;
    forwarded.attrs.id = id;
    return forwarded;
  }

  /**
   * The answer (result or error) to a relayed query, rewritten for the asker; undefined when
   * `stanza` answers nothing this relay sent, or comes from another JID than the one asked.
   */
  answer(stanza: Element): Element | undefined {
    const pending = this.#pending.get(stanza.attrs.id ?? "");
    if (!pending || pending.sentTo !== stanza.attrs.from) return undefined;
    this.#pending.delete(stanza.attrs.id!);
    const answer = stanza.clone();
    answer.attrs.from = pending.occupantJid;
    answer.attrs.to = pending.asker;
    answer.attrs.id = pending.id;
    return answer;
  }
}
