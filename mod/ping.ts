// XEP-0199 XMPP Ping: the server answers pings sent to it (or with no 'to' at all).

import type { ModuleAPI } from "../core/modules.ts";
import { reply } from "../core/xml/stanza.ts";
import type { StanzaEvent } from "../core/hosts.ts";

/** One line for module listings. */
export const description = "XEP-0199: answers pings to the server";

/** Answers a ping with an empty result. */
function answerPing({ stanza, origin }: StanzaEvent): boolean {
  origin.send(reply(stanza));
  return true;
}

/** Loads the ping responder on a host. */
export default function ping(m: ModuleAPI): void {
  m.addFeature("urn:xmpp:ping");
  m.hook("iq-get/host/urn:xmpp:ping:ping", answerPing);
  m.hook("iq-get/self/urn:xmpp:ping:ping", answerPing);
}
