// XEP-0030 Service Discovery for the server: disco#info lists the identities and features
// modules registered, disco#items lists the host's components.

import type { StanzaEvent } from "../core/hosts.ts";
import type { ModuleAPI } from "../core/modules.ts";
import { errorReply, reply } from "../core/xml/stanza.ts";

const NS_INFO = "http://jabber.org/protocol/disco#info";
const NS_ITEMS = "http://jabber.org/protocol/disco#items";

/** One line for module listings. */
export const description = "XEP-0030: service discovery on the server and accounts";

/** Loads service discovery on a host. */
export default function disco(m: ModuleAPI): void {
  m.addFeature(NS_INFO);
  m.addFeature(NS_ITEMS);
  m.addIdentity("server", "im", m.optionString("server_name", "Lilt"));

  m.hook(`iq-get/host/${NS_INFO}:query`, ({ stanza, origin }: StanzaEvent) => {
    const node = stanza.firstElement()?.attrs.node;
    if (node !== undefined) {
      origin.send(errorReply(stanza, "item-not-found"));
      return true;
    }
    const answer = reply(stanza);
    const query = answer.c("query", { xmlns: NS_INFO });
    for (const identity of m.host.disco.identities()) {
      query.c("identity", {
        category: identity.category,
        type: identity.type,
        name: identity.name,
      });
    }
    for (const feature of m.host.disco.features()) query.c("feature", { var: feature });
    for (const form of m.host.disco.extensions()) query.append(form.clone());
    origin.send(answer);
    return true;
  });

  m.hook(`iq-get/host/${NS_ITEMS}:query`, ({ stanza, origin }: StanzaEvent) => {
    const node = stanza.firstElement()?.attrs.node;
    if (node !== undefined) {
      origin.send(errorReply(stanza, "item-not-found"));
      return true;
    }
    const answer = reply(stanza);
    const query = answer.c("query", { xmlns: NS_ITEMS });
    for (const component of m.server.hosts.values()) {
      if (component.kind === "component" && component.domain.endsWith(`.${m.domain}`)) {
        query.c("item", { jid: component.domain });
      }
    }
    origin.send(answer);
    return true;
  });

  // An account's own bare JID: the server answers on the account's behalf (XEP-0030 §3.1).
  const accountInfo = ({ stanza, origin }: StanzaEvent) => {
    const answer = reply(stanza);
    const query = answer.c("query", { xmlns: NS_INFO });
    query.c("identity", { category: "account", type: "registered" });
    query.c("feature", { var: NS_INFO });
    origin.send(answer);
    return true;
  };
  m.hook(`iq-get/self/${NS_INFO}:query`, accountInfo);
}
