// Minimal roster (RFC 6121 §2.2): answers roster gets so a client's login completes and
// marks the resource as interested. Roster storage and pushes come with the IM work.

import type { StanzaEvent } from "../core/hosts.ts";
import type { ModuleAPI } from "../core/modules.ts";
import { errorReply, reply } from "../core/xml/stanza.ts";

const NS_ROSTER = "jabber:iq:roster";

/** One line for module listings. */
export const description = "RFC 6121 roster get (empty roster for now)";

/** Loads the roster responder on a host. */
export default function roster(m: ModuleAPI): void {
  m.hook(`iq-get/self/${NS_ROSTER}:query`, ({ stanza, origin }: StanzaEvent) => {
    origin.interested = true;
    const answer = reply(stanza);
    delete answer.attrs.from;
    answer.c("query", { xmlns: NS_ROSTER });
    origin.send(answer);
    return true;
  });
  m.hook(`iq-set/self/${NS_ROSTER}:query`, ({ stanza, origin }: StanzaEvent) => {
    origin.send(
      errorReply(stanza, "feature-not-implemented", {
        text: "Roster changes are not supported yet",
      }),
    );
    return true;
  });
}
