// XEP-0280 message carbons: every carbons-enabled resource of an account sees both sides of its
// conversations, as <received/> copies of incoming messages and <sent/> copies of outgoing ones.

import type { MessageDeliveredEvent, SessionEvent, StanzaEvent } from "../core/hosts.ts";
import { type JID, tryParseJid } from "../core/jid.ts";
import type { ModuleAPI } from "../core/modules.ts";
import type { Session } from "../core/sessions.ts";
import { Element } from "../core/xml/element.ts";
import { errorReply, reply } from "../core/xml/stanza.ts";

const NS_CARBONS = "urn:xmpp:carbons:2";
const NS_FORWARD = "urn:xmpp:forward:0";
const NS_HINTS = "urn:xmpp:hints";
const NS_MUC_USER = "http://jabber.org/protocol/muc#user";
const NS_DIRECT_INVITE = "jabber:x:conference";
/** Payloads that make a bodiless normal message part of a conversation (XEP-0280 §6). */
const IM_PAYLOADS = new Set([
  "http://jabber.org/protocol/chatstates", // XEP-0085
  "urn:xmpp:receipts", // XEP-0184
  "urn:xmpp:chat-markers:0", // XEP-0333
]);
/** How many copied messages are remembered so that errors answering them are copied too. */
const REMEMBERED_MESSAGES = 4096;

/** One line for module listings. */
export const description =
  "XEP-0280: copies messages to all of an account's carbons-enabled resources";

/** Which way a message crosses the account's boundary. */
type Direction = "sent" | "received";

/**
 * Recently copied messages by (account, peer, id), so an error sent in response to one of them
 * is eligible too (XEP-0280 §6). Oldest entries are forgotten first.
 */
class CopiedMessages {
  #keys = new Set<string>();

  #key(account: string, peer: string, id: string): string {
    return `${account}\n${peer}\n${id}`;
  }

  remember(account: string, peer: string, id: string): void {
    const key = this.#key(account, peer, id);
    this.#keys.delete(key);
    this.#keys.add(key);
    if (this.#keys.size > REMEMBERED_MESSAGES) {
      this.#keys.delete(this.#keys.values().next().value!);
    }
  }

  has(account: string, peer: string, id: string): boolean {
    return this.#keys.has(this.#key(account, peer, id));
  }
}

/**
 * XEP-0280 §6 eligibility, apart from errors (which need the history in `CopiedMessages`):
 * chat messages, normal messages with a body or an IM payload, and MUC invitations; never
 * groupchat or headline, never messages marked private or no-copy, never carbons themselves,
 * and not private messages received from a MUC occupant (the MUC copies those itself).
 */
function eligibleContent(stanza: Element, direction: Direction): boolean {
  let body = false;
  let imPayload = false;
  let mucUser: Element | undefined;
  let directInvite = false;
  for (const child of stanza.children) {
    if (typeof child === "string") continue;
    const ns = child.ns;
    if (ns === NS_CARBONS) return false; // <private/>, or an already wrapped carbon
    if (ns === NS_HINTS && child.name === "no-copy") return false;
    if (child.name === "body") body = true;
    else if (ns === NS_MUC_USER) mucUser = child;
    else if (ns === NS_DIRECT_INVITE && child.name === "x") directInvite = true;
    else if (IM_PAYLOADS.has(ns)) imPayload = true;
  }
  const type = stanza.attrs.type ?? "normal";
  if (type !== "chat" && type !== "normal") return false;
  if (directInvite || mucUser?.getChild("invite")) return true;
  if (mucUser && direction === "received") return false;
  return type === "chat" || body || imPayload;
}

/** Wraps a message for one resource of the account (XEP-0280 §7, §8). */
function carbon(stanza: Element, direction: Direction, account: JID, to: Session): Element {
  const wrapper = new Element("message", {
    from: account.toString(),
    to: to.jid!.toString(),
    type: stanza.attrs.type,
  });
  wrapper.c(direction, { xmlns: NS_CARBONS })
    .c("forwarded", { xmlns: NS_FORWARD })
    .append(stanza.clone());
  return wrapper;
}

/** Loads message carbons on a host. */
export default function carbons(m: ModuleAPI): void {
  const enabled = new WeakSet<Session>();
  const copied = new CopiedMessages();
  // Messages whose <private/> this host stripped before delivery: never copied.
  const markedPrivate = new WeakSet<Element>();

  m.addFeature(NS_CARBONS);

  const toggle = (on: boolean) => ({ stanza, origin }: StanzaEvent) => {
    if (origin.kind !== "c2s" || origin.host !== m.domain || !origin.jid) {
      origin.send(errorReply(stanza, "not-allowed"));
      return true;
    }
    if (on) enabled.add(origin);
    else enabled.delete(origin);
    const answer = reply(stanza);
    delete answer.attrs.from;
    origin.send(answer);
    return true;
  };
  for (const toType of ["self", "host"]) {
    m.hook(`iq-set/${toType}/${NS_CARBONS}:enable`, toggle(true));
    m.hook(`iq-set/${toType}/${NS_CARBONS}:disable`, toggle(false));
  }
  m.hook("resource-unbind", ({ session }: SessionEvent) => {
    enabled.delete(session);
  });

  /** True when the message should be copied for `account`, exchanged with `peer`. */
  const eligible = (stanza: Element, direction: Direction, account: JID, peer: JID) => {
    const id = stanza.attrs.id;
    if (stanza.attrs.type === "error") {
      return id !== undefined && copied.has(account.toString(), peer.bareString(), id) &&
        stanza.getChild("private", NS_CARBONS) === undefined &&
        stanza.getChild("no-copy", NS_HINTS) === undefined;
    }
    if (!eligibleContent(stanza, direction)) return false;
    if (id !== undefined) copied.remember(account.toString(), peer.bareString(), id);
    return true;
  };

  /** Sends a copy to each carbons-enabled resource of the account not in `skip`. */
  const copyTo = (account: JID, stanza: Element, direction: Direction, skip: Session[]) => {
    for (const session of m.server.sessions.userSessions(account.domain, account.local!)) {
      if (enabled.has(session) && !skip.includes(session)) {
        session.send(carbon(stanza, direction, account, session));
      }
    }
  };

  // Sent carbons: a local client's message, before routing (XEP-0280 §8).
  const sent = ({ stanza, origin }: StanzaEvent) => {
    if (origin.kind !== "c2s" || origin.host !== m.domain || !origin.jid?.local) return false;
    const to = tryParseJid(stanza.attrs.to ?? "");
    if (!to) return false;
    const account = origin.jid.bare;
    // Messages between an account's own resources are already seen by both ends.
    if (to.local === account.local && to.domain === account.domain) return false;
    if (!eligible(stanza, "sent", account, to)) return false;
    copyTo(account, stanza, "sent", [origin]);
    return false;
  };
  for (const toType of ["bare", "full", "host"]) m.hook(`pre-message/${toType}`, sent);

  // The receiving server removes <private/> before delivery (XEP-0280 §9) and remembers it.
  const stripPrivate = ({ stanza }: StanzaEvent) => {
    if (stanza.getChild("private", NS_CARBONS)) {
      markedPrivate.add(stanza);
      stanza.removeChildren("private", NS_CARBONS);
    }
    return false;
  };
  m.hook("message/bare", stripPrivate, 100);
  m.hook("message/full", stripPrivate, 100);

  // Received carbons: after the router delivered a message to local resources (XEP-0280 §7).
  m.hook("message-delivered", ({ stanza, recipients }: MessageDeliveredEvent) => {
    if (markedPrivate.has(stanza)) return;
    const to = tryParseJid(stanza.attrs.to ?? "");
    const from = tryParseJid(stanza.attrs.from ?? "");
    if (!to?.local || !from || to.domain !== m.domain) return;
    const account = to.bare;
    if (from.local === account.local && from.domain === account.domain) return;
    if (!eligible(stanza, "received", account, from)) return;
    copyTo(account, stanza, "received", recipients);
  });
}
