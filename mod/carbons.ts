// XEP-0280 message carbons: every carbons-enabled resource of an account sees both sides of its
// conversations, as <received/> copies of incoming messages and <sent/> copies of outgoing ones.

import type {
  Bind2Event,
  Host,
  InlineFeaturesEvent,
  MessageDeliveredEvent,
  SessionEvent,
  StanzaEvent,
} from "../core/hosts.ts";
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

/**
 * Payload of `carbon-copy`, this module's own event: the message about to be copied to an
 * account's other resources (`sent` or `received`), and the copy they get, which another module
 * may annotate (the archive adds the account's stanza-id to sent copies).
 */
export interface CarbonCopyEvent {
  original: Element;
  copy: Element;
  direction: "sent" | "received";
  account: JID;
  host: Host;
}

declare module "../core/hosts.ts" {
  interface ModuleEvents {
    "carbon-copy": CarbonCopyEvent;
  }
}

/** One line for module listings. */
export const description =
  "XEP-0280: copies messages to all of an account's carbons-enabled resources";

/** Which way a message crosses the account's boundary. */
type Direction = "sent" | "received";

/**
 * Recently copied messages by (account, peer, id), so an error sent in response to one of them
 * is eligible too (XEP-0280 §6). A ring of the last `REMEMBERED_MESSAGES` keys with a count per
 * key: remembering and forgetting the oldest are constant time.
 */
class CopiedMessages {
  #ring: (string | undefined)[] = new Array(REMEMBERED_MESSAGES);
  #next = 0;
  #counts = new Map<string, number>();

  #key(account: string, peer: string, id: string): string {
    return `${account}\n${peer}\n${id}`;
  }

  remember(account: string, peer: string, id: string): void {
    const key = this.#key(account, peer, id);
    const oldest = this.#ring[this.#next];
    if (oldest !== undefined) {
      const n = this.#counts.get(oldest)!;
      if (n === 1) this.#counts.delete(oldest);
      else this.#counts.set(oldest, n - 1);
    }
    this.#ring[this.#next] = key;
    this.#next = (this.#next + 1) % REMEMBERED_MESSAGES;
    this.#counts.set(key, (this.#counts.get(key) ?? 0) + 1);
  }

  has(account: string, peer: string, id: string): boolean {
    return this.#counts.has(this.#key(account, peer, id));
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
function carbon(inner: Element, direction: Direction, account: JID, to: Session): Element {
  const wrapper = new Element("message", {
    from: account.toString(),
    to: to.jid!.toString(),
    type: inner.attrs.type,
  });
  wrapper.c(direction, { xmlns: NS_CARBONS })
    .c("forwarded", { xmlns: NS_FORWARD })
    .append(inner);
  return wrapper;
}

/** Loads message carbons on a host. */
export default function carbons(m: ModuleAPI): void {
  const enabled = new WeakSet<Session>();
  // Carbons-enabled resources per account (localpart): most accounts have none, and their
  // messages are then passed over without any further work.
  const enabledPerUser = new Map<string, number>();
  const copied = new CopiedMessages();

  const enable = (session: Session, local: string) => {
    if (enabled.has(session)) return;
    enabled.add(session);
    enabledPerUser.set(local, (enabledPerUser.get(local) ?? 0) + 1);
  };
  const disable = (session: Session) => {
    const local = session.jid?.local;
    if (!enabled.delete(session) || local === undefined) return;
    const n = enabledPerUser.get(local) ?? 1;
    if (n <= 1) enabledPerUser.delete(local);
    else enabledPerUser.set(local, n - 1);
  };
  // Messages whose <private/> this host stripped before delivery: never copied.
  const markedPrivate = new WeakSet<Element>();

  m.addFeature(NS_CARBONS);

  const toggle = (on: boolean) => ({ stanza, origin }: StanzaEvent) => {
    const local = origin.jid?.local;
    if (origin.kind !== "c2s" || origin.host !== m.domain || local === undefined) {
      origin.send(errorReply(stanza, "not-allowed"));
      return true;
    }
    if (on) enable(origin, local);
    else disable(origin);
    const answer = reply(stanza);
    delete answer.attrs.from;
    origin.send(answer);
    return true;
  };
  m.hook(`iq-set/self/${NS_CARBONS}:enable`, toggle(true));
  m.hook(`iq-set/host/${NS_CARBONS}:enable`, toggle(true));
  m.hook(`iq-set/self/${NS_CARBONS}:disable`, toggle(false));
  m.hook(`iq-set/host/${NS_CARBONS}:disable`, toggle(false));
  // XEP-0386: a client binding with Bind2 may turn carbons on in the same round trip.
  m.hook("bind2-inline-features", ({ inline }: InlineFeaturesEvent) => {
    inline.c("feature", { var: NS_CARBONS });
  });
  m.hook("bind2-bound", ({ session, request }: Bind2Event) => {
    const local = session.jid?.local;
    if (local !== undefined && request.getChild("enable", NS_CARBONS)) enable(session, local);
  });

  m.hook("resource-unbind", ({ session }: SessionEvent) => {
    disable(session);
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
    let inner: Element | undefined;
    for (const session of m.server.sessions.userSessions(account.domain, account.local!)) {
      if (enabled.has(session) && !skip.includes(session)) {
        if (!inner) {
          // One copy for every resource; modules may annotate it (the archive's stanza-id).
          inner = stanza.clone();
          m.host.events.fire("carbon-copy", {
            original: stanza,
            copy: inner,
            direction,
            account,
            host: m.host,
          });
        }
        session.send(carbon(inner, direction, account, session));
      }
    }
  };

  // Sent carbons: a local client's message, before routing (XEP-0280 §8).
  const sent = ({ stanza, origin }: StanzaEvent) => {
    if (origin.kind !== "c2s" || origin.host !== m.domain || !origin.jid?.local) return false;
    if (!enabledPerUser.has(origin.jid.local)) return false;
    const to = tryParseJid(stanza.attrs.to ?? "");
    if (!to) return false;
    const account = origin.jid.bare;
    // Messages between an account's own resources are already seen by both ends.
    if (to.local === account.local && to.domain === account.domain) return false;
    if (!eligible(stanza, "sent", account, to)) return false;
    copyTo(account, stanza, "sent", [origin]);
    return false;
  };
  m.hook("pre-message/bare", sent);
  m.hook("pre-message/full", sent);
  m.hook("pre-message/host", sent);

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
    // The recipients are resources of the account the message is for.
    const local = recipients[0]?.jid?.local;
    if (local === undefined || !enabledPerUser.has(local)) return;
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
