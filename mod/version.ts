// XEP-0092 Software Version: the server tells who asks its product name, version and (unless
// the operator hides it) operating system.

import type { OptionSpec } from "../core/config_schema.ts";
import type { StanzaEvent } from "../core/hosts.ts";
import type { ModuleAPI } from "../core/modules.ts";
import { reply } from "../core/xml/stanza.ts";
import { LILT_NAME, LILT_VERSION } from "../core/version.ts";

const NS_VERSION = "jabber:iq:version";

/** One line for module listings. */
export const description = "XEP-0092: reports the server's software name, version and OS";

/** Options this module reads. */
export const options: Record<string, OptionSpec> = {
  hide_os_type: {
    type: "boolean",
    default: false,
    scope: "host",
    description: "Leave the operating system out of software version answers (XEP-0092)",
  },
};

/** Loads the software version responder on a host. */
export default function version(m: ModuleAPI): void {
  const hideOs = m.option<boolean>("hide_os_type");
  m.addFeature(NS_VERSION);
  m.hook(`iq-get/host/${NS_VERSION}:query`, ({ stanza, origin }: StanzaEvent) => {
    const answer = reply(stanza);
    const query = answer.c("query", { xmlns: NS_VERSION });
    query.c("name").t(LILT_NAME);
    query.c("version").t(LILT_VERSION);
    if (!hideOs) query.c("os").t(Deno.build.os);
    origin.send(answer);
    return true;
  });
}
