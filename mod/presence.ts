// Minimal presence (RFC 6121 §4): a client's broadcast presence reaches the account's other
// available resources, and a new resource learns theirs. Subscriptions come with the IM work.

import type { SessionEvent, StanzaEvent } from "../core/hosts.ts";
import type { ModuleAPI } from "../core/modules.ts";
import type { Session } from "../core/sessions.ts";
import { Element } from "../core/xml/element.ts";

/** One line for module listings. */
export const description = "RFC 6121 presence broadcast to the account's own resources";

/** Parses <priority/> (RFC 6121 §4.7.2.3): an integer -128..127, default 0. */
function priorityOf(presence: Element): number {
  const text = presence.getChildText("priority")?.trim();
  if (!text || !/^[+-]?\d+$/.test(text)) return 0;
  return Math.max(-128, Math.min(127, Number(text)));
}

/** Copies a presence for delivery to one session. */
function addressed(presence: Element, to: Session): Element {
  const copy = presence.clone();
  copy.attrs.to = to.jid!.toString();
  return copy;
}

/** Loads presence broadcasting on a host. */
export default function presence(m: ModuleAPI): void {
  const siblings = (session: Session) =>
    m.server.sessions.userSessions(session.host, session.jid!.local!).filter((s) => s !== session);

  m.hook("presence/self", ({ stanza, origin }: StanzaEvent) => {
    const type = stanza.attrs.type;
    if (type === undefined) {
      const initial = !origin.available;
      origin.available = true;
      origin.priority = priorityOf(stanza);
      const broadcast = stanza.clone();
      delete broadcast.attrs.to;
      origin.presence = broadcast;
      for (const other of siblings(origin)) {
        if (other.available) other.send(addressed(broadcast, other));
        if (initial && other.available && other.presence) {
          origin.send(addressed(other.presence, origin));
        }
      }
      origin.send(addressed(broadcast, origin));
    } else if (type === "unavailable") {
      const wasAvailable = origin.available;
      origin.available = false;
      origin.presence = undefined;
      if (wasAvailable) {
        for (const other of siblings(origin)) {
          if (other.available) other.send(addressed(stanza, other));
        }
      }
    }
    // Subscription management and probes are not implemented yet: ignore them.
    return true;
  });

  m.hook("resource-unbind", ({ session }: SessionEvent) => {
    if (!session.available || !session.jid) return;
    session.available = false;
    const unavailable = new Element("presence", {
      type: "unavailable",
      from: session.jid.toString(),
    });
    for (const other of siblings(session)) {
      if (other.available) other.send(addressed(unavailable, other));
    }
  });
}
