// XEP-0199 XMPP Ping: the server answers pings sent to it (or with no 'to' at all), and pings
// clients that have been quiet for a while, closing the ones that no longer answer.

import type { OptionSpec } from "../core/config_schema.ts";
import type { StanzaEvent } from "../core/hosts.ts";
import { IqError, type ModuleAPI } from "../core/modules.ts";
import type { Session } from "../core/sessions.ts";
import { Element } from "../core/xml/element.ts";
import { reply } from "../core/xml/stanza.ts";

const NS_PING = "urn:xmpp:ping";

/** One line for module listings. */
export const description = "XEP-0199: answers pings and pings idle clients to detect dead links";

/** Options this module reads. */
export const options: Record<string, OptionSpec> = {
  c2s_ping_interval: {
    type: "integer",
    default: 300,
    min: 0,
    max: 86400,
    scope: "host",
    description: "Seconds of client silence before the server pings it (0: never)",
  },
  c2s_ping_timeout: {
    type: "integer",
    default: 60,
    min: 1,
    max: 3600,
    scope: "host",
    description: "Seconds a pinged client has to answer before its stream is closed",
  },
};

/** Answers a ping with an empty result. */
function answerPing({ stanza, origin }: StanzaEvent): boolean {
  origin.send(reply(stanza));
  return true;
}

/** Loads the ping responder and the client keepalive on a host. */
export default function ping(m: ModuleAPI): void {
  m.addFeature(NS_PING);
  // A ping round trip tells a client its earlier stanzas were handled, stored ones included:
  // the writes of this moment commit before the reply can reach the socket.
  const answer = (event: StanzaEvent) => {
    m.database.commitWrites();
    return answerPing(event);
  };
  m.hook(`iq-get/host/${NS_PING}:ping`, answer);
  m.hook(`iq-get/self/${NS_PING}:ping`, answer);

  const intervalMs = m.option<number>("c2s_ping_interval") * 1000;
  const timeoutMs = m.option<number>("c2s_ping_timeout") * 1000;
  if (intervalMs === 0) return;

  // Sessions with a ping in flight: never ping one twice at once.
  const pending = new WeakSet<Session>();

  const keepalive = async (session: Session) => {
    pending.add(session);
    const stanza = new Element("iq", { type: "get", from: m.domain, to: session.jid!.toString() })
      .c("ping", { xmlns: NS_PING }).root();
    const sentAt = Date.now();
    try {
      await m.sendIq(stanza, timeoutMs);
    } catch (error) {
      // An error answer still proves the client is there, and so does anything it sent since
      // the ping (e.g. an answer without 'to' that the router does not match to this iq).
      if (
        error instanceof IqError && error.condition === "remote-server-timeout" &&
        session.lastActivity <= sentAt
      ) {
        session.close("connection-timeout", "No answer to a keepalive ping");
      }
    } finally {
      pending.delete(session);
    }
  };

  const sweep = () => {
    const now = Date.now();
    for (const session of m.server.sessions.all()) {
      if (
        session.kind !== "c2s" || !session.jid || session.host !== m.domain ||
        pending.has(session) || now - session.lastActivity < intervalMs
      ) {
        continue;
      }
      keepalive(session);
    }
  };
  // Check a few times per interval so a silent client is pinged soon after it is due.
  m.addTimer(Math.min(15_000, Math.max(250, intervalMs / 4)), sweep, {
    repeat: true,
    label: "keepalive pings to silent clients",
  });
}
