// Stanzas a client session took but never got to its client go to the account again as RFC 6121
// says, through one path: stream management's unacknowledged queue when a session ends, and the
// output a client that stopped reading left behind when it was cut off.

import type { ServerContext } from "./context.ts";
import type { Session } from "./sessions.ts";
import type { Element } from "./xml/element.ts";
import { errorReply } from "./xml/stanza.ts";

const NS_CARBONS = "urn:xmpp:carbons:2";
const NS_DELAY = "urn:xmpp:delay";

/**
 * The origin of stanzas delivered again for `domain`: no local host as sender (so the sender's
 * `pre-` hooks, carbons among them, do not run twice) and nowhere to bounce to but the router
 * (an error about a stanza delivered again, offline storage full, goes to its sender).
 */
export function redeliveryOrigin(server: ServerContext, domain: string): Session {
  const origin: Session = {
    id: `redelivery:${domain}`,
    kind: "internal",
    host: "",
    jid: undefined,
    ip: "",
    secure: true,
    authenticated: true,
    connectedAt: Date.now(),
    lastActivity: Date.now(),
    send(stanza: Element) {
      server.route(stanza, origin);
    },
    close() {},
  };
  return origin;
}

/** Where and how {@link redeliver} sends a stanza again. */
export interface RedeliveryOptions {
  server: ServerContext;
  /** The local host the stanza was for (the delay stamp's `from`). */
  domain: string;
  /** The sender the router sees (see {@link redeliveryOrigin}). */
  origin: Session;
  /** When the stanza first arrived for the client (ms epoch). */
  queuedAt: number;
}

/**
 * Hands back a stanza its client never got, once the session is unbound: a message goes to the
 * account again (its other resources or offline storage, RFC 6121 §8.5.3.2.1, the resource
 * being gone), stamped with when it first arrived (`queuedAt`, ms epoch) unless it already has
 * a delay; an iq request gets `recipient-unavailable`; presence, errors, groupchat and headline
 * messages and carbon copies are dropped (the account's presence and the originals live
 * elsewhere).
 */
export function redeliver(stanza: Element, options: RedeliveryOptions): void {
  const { server, origin } = options;
  const type = stanza.attrs.type;
  if (stanza.name === "iq") {
    if (type === "get" || type === "set") {
      server.route(errorReply(stanza, "recipient-unavailable"), origin);
    }
    return;
  }
  if (stanza.name !== "message" || type === "error" || type === "groupchat") return;
  if (type === "headline") return;
  for (const child of stanza.children) {
    if (typeof child !== "string" && child.ns === NS_CARBONS) return;
  }
  const again = stanza.clone();
  if (!again.getChild("delay", NS_DELAY)) {
    again.c("delay", {
      xmlns: NS_DELAY,
      from: options.domain,
      stamp: new Date(options.queuedAt).toISOString().replace(/\.\d+Z$/, "Z"),
    });
  }
  server.route(again, origin);
}
