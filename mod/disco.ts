// XEP-0030 Service Discovery for the server: disco#info lists the identities and features
// modules registered, disco#items lists the host's components. XEP-0115 entity capabilities
// advertise a hash of that disco#info in stream features, so clients can cache it.

import { createHash } from "node:crypto";
import type { OptionSpec } from "../core/config_schema.ts";
import type { StanzaEvent, StreamFeaturesEvent } from "../core/hosts.ts";
import { tryParseJid } from "../core/jid.ts";
import type { ModuleAPI } from "../core/modules.ts";
import type { Element } from "../core/xml/element.ts";
import { errorReply, reply } from "../core/xml/stanza.ts";

const NS_INFO = "http://jabber.org/protocol/disco#info";
const NS_ITEMS = "http://jabber.org/protocol/disco#items";
const NS_CAPS = "http://jabber.org/protocol/caps";
const NS_DATA = "jabber:x:data";

/** The XEP-0115 node naming Lilt as the software behind the caps hash. */
export const CAPS_NODE = "https://lilt.example/caps";

/** One line for module listings. */
export const description = "XEP-0030 service discovery and XEP-0115 capabilities of the server";

/** Options this module reads. */
export const options: Record<string, OptionSpec> = {
  server_name: {
    type: "string",
    default: "Lilt",
    scope: "host",
    description: "Name of the server identity in disco#info",
  },
};

/** A disco#info identity as XEP-0115 hashes it (`lang` is the identity's xml:lang). */
export interface CapsIdentity {
  category: string;
  type: string;
  lang?: string;
  name?: string;
}

/** Orders strings by their UTF-8 bytes (XEP-0115's "i;octet" collation), i.e. by code point. */
function compareOctets(a: string, b: string): number {
  const left = a[Symbol.iterator]();
  const right = b[Symbol.iterator]();
  for (;;) {
    const x = left.next();
    const y = right.next();
    if (x.done || y.done) return x.done ? (y.done ? 0 : -1) : 1;
    const diff = x.value.codePointAt(0)! - y.value.codePointAt(0)!;
    if (diff !== 0) return diff;
  }
}

/** The values of a data form field, in document order. */
function fieldValues(field: Element): string[] {
  return field.getChildren("value", NS_DATA).map((value) => value.text());
}

/**
 * The XEP-0115 §5.1 verification string of a disco#info: identities, features and extension
 * forms (XEP-0128 `jabber:x:data` elements), each sorted and `<`-terminated. Forms without a
 * FORM_TYPE field are left out, as §5.4 tells receivers to ignore them.
 */
export function capsVerificationString(
  identities: readonly CapsIdentity[],
  features: readonly string[],
  forms: readonly Element[] = [],
): string {
  let s = "";
  const sortedIdentities = [...identities].sort((a, b) =>
    compareOctets(a.category, b.category) || compareOctets(a.type, b.type) ||
    compareOctets(a.lang ?? "", b.lang ?? "") || compareOctets(a.name ?? "", b.name ?? "")
  );
  for (const identity of sortedIdentities) {
    s += `${identity.category}/${identity.type}/${identity.lang ?? ""}/${identity.name ?? ""}<`;
  }
  for (const feature of [...features].sort(compareOctets)) s += `${feature}<`;
  const typed: { formType: string; form: Element }[] = [];
  for (const form of forms) {
    const formTypeField = form.getChildren("field", NS_DATA).find((f) =>
      f.attrs.var === "FORM_TYPE"
    );
    if (!formTypeField) continue;
    typed.push({ formType: fieldValues(formTypeField)[0] ?? "", form });
  }
  typed.sort((a, b) => compareOctets(a.formType, b.formType));
  for (const { formType, form } of typed) {
    s += `${formType}<`;
    const fields = form.getChildren("field", NS_DATA)
      .filter((f) => f.attrs.var !== undefined && f.attrs.var !== "FORM_TYPE")
      .sort((a, b) => compareOctets(a.attrs.var!, b.attrs.var!));
    for (const field of fields) {
      s += `${field.attrs.var}<`;
      for (const value of fieldValues(field).sort(compareOctets)) s += `${value}<`;
    }
  }
  return s;
}

/**
 * The XEP-0115 `ver` attribute for hash "sha-1": base64 of the SHA-1 of the verification
 * string (§5.1).
 *
 * @example
 * ```ts
 * capsHash(
 *   [{ category: "client", type: "pc", name: "Exodus 0.9.1" }],
 *   [
 *     "http://jabber.org/protocol/caps",
 *     "http://jabber.org/protocol/disco#info",
 *     "http://jabber.org/protocol/disco#items",
 *     "http://jabber.org/protocol/muc",
 *   ],
 * ); // "QgayPKawpkPSDYmwT/WM94uAlu0="
 * ```
 */
export function capsHash(
  identities: readonly CapsIdentity[],
  features: readonly string[],
  forms: readonly Element[] = [],
): string {
  return createHash("sha1").update(capsVerificationString(identities, features, forms), "utf8")
    .digest("base64");
}

/** Loads service discovery and entity capabilities on a host. */
export default function disco(m: ModuleAPI): void {
  m.addFeature(NS_INFO);
  m.addFeature(NS_ITEMS);
  m.addFeature(NS_CAPS);
  // The server identity is the hosts'; a component says what it is through its own modules
  // (conference/text, pubsub/service), and `component/generic` when none does (XEP-0030 wants
  // at least one identity).
  if (m.host.kind === "local") m.addIdentity("server", "im", m.option<string>("server_name"));
  const identities = () => {
    const registered = m.host.disco.identities();
    return registered.length > 0 || m.host.kind === "local"
      ? registered
      : [{ category: "component", type: "generic", name: undefined }];
  };
  m.addAccountIdentity("account", "registered");
  m.addAccountFeature(NS_INFO);
  m.addAccountFeature(NS_ITEMS);

  // Modules come and go at runtime, so the hash follows the registry; the verification
  // string is cheap to build, and the SHA-1 is only redone when it changes.
  let cached = { s: "", ver: "" };
  const currentVer = (): string => {
    const disco = m.host.disco;
    const s = capsVerificationString(identities(), disco.features(), disco.extensions());
    if (s !== cached.s) {
      cached = { s, ver: createHash("sha1").update(s, "utf8").digest("base64") };
    }
    return cached.ver;
  };

  m.hook(`iq-get/host/${NS_INFO}:query`, ({ stanza, origin }: StanzaEvent) => {
    const node = stanza.firstElement()?.attrs.node;
    // The caps node with the current hash has the same info (XEP-0115 §6.2); others do not.
    if (node !== undefined && node !== `${CAPS_NODE}#${currentVer()}`) {
      origin.send(errorReply(stanza, "item-not-found"));
      return true;
    }
    const answer = reply(stanza);
    const query = answer.c("query", { xmlns: NS_INFO, node });
    for (const identity of identities()) {
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
    for (const item of m.host.disco.items()) query.c("item", { ...item });
    origin.send(answer);
    return true;
  });

  // XEP-0115 §6.3: the server's own caps as a stream feature, before and after login.
  m.hook("stream-features", ({ features }: StreamFeaturesEvent) => {
    features.c("c", { xmlns: NS_CAPS, hash: "sha-1", node: CAPS_NODE, ver: currentVer() });
  });

  // An account's bare JID: the server answers on the account's behalf (XEP-0030 §3.1). An
  // unknown account gets the router's default service-unavailable, as an offline one would.
  const accountExists = (stanza: Element) => {
    const to = tryParseJid(stanza.attrs.to ?? stanza.attrs.from ?? "");
    return to?.local !== undefined && m.server.accounts.exists(m.domain, to.local);
  };
  const accountInfo = ({ stanza, origin }: StanzaEvent) => {
    if (!accountExists(stanza)) return false;
    if (stanza.firstElement()?.attrs.node !== undefined) {
      origin.send(errorReply(stanza, "item-not-found"));
      return true;
    }
    const answer = reply(stanza);
    const query = answer.c("query", { xmlns: NS_INFO });
    const registry = m.host.accountDisco;
    for (const { category, type, name } of registry.identities()) {
      query.c("identity", { category, type, name });
    }
    for (const feature of registry.features()) query.c("feature", { var: feature });
    for (const form of registry.extensions()) query.append(form.clone());
    origin.send(answer);
    return true;
  };
  const accountItems = ({ stanza, origin }: StanzaEvent) => {
    if (!accountExists(stanza)) return false;
    const answer = reply(stanza);
    const query = answer.c("query", { xmlns: NS_ITEMS });
    for (const item of m.host.accountDisco.items()) query.c("item", { ...item });
    origin.send(answer);
    return true;
  };
  m.hook(`iq-get/self/${NS_INFO}:query`, accountInfo);
  m.hook(`iq-get/bare/${NS_INFO}:query`, accountInfo);
  m.hook(`iq-get/self/${NS_ITEMS}:query`, accountItems);
  m.hook(`iq-get/bare/${NS_ITEMS}:query`, accountItems);
}
