// XEP-0157 Contact Addresses for XMPP Services: the operator lists who to contact about abuse,
// security, support and so on, and the server publishes it as a form in its disco#info.

import type { OptionSpec } from "../core/config_schema.ts";
import { type ModuleAPI, ModuleOptionError } from "../core/modules.ts";
import { Element } from "../core/xml/element.ts";

const NS_DATA = "jabber:x:data";
/** The FORM_TYPE of XEP-0157 contact address forms. */
export const SERVERINFO_FORM_TYPE = "http://jabber.org/network/serverinfo";

/** The kinds of contact XEP-0157 defines; each becomes a `<kind>-addresses` field. */
export const CONTACT_KINDS = [
  "abuse",
  "admin",
  "feedback",
  "sales",
  "security",
  "status",
  "support",
] as const;

/** One kind of contact. */
export type ContactKind = typeof CONTACT_KINDS[number];

/** Addresses (URIs) per kind of contact. */
export type ContactAddresses = Partial<Record<ContactKind, string[]>>;

/** One line for module listings. */
export const description = "XEP-0157: publishes the server's contact addresses in disco#info";

/** Options this module reads. */
export const options: Record<string, OptionSpec> = {
  contact_info: {
    type: "table",
    default: {},
    scope: "host",
    description: "Contact URIs per kind (abuse, admin, feedback, sales, security, status, " +
      'support), e.g. { abuse = ["mailto:abuse@example.com"] }; default: the admins',
  },
};

/** True for an absolute URI with a scheme, such as `mailto:a@b` or `xmpp:a@b`. */
function isUri(text: string): boolean {
  return /^[a-z][a-z0-9+.-]*:[^\s]+$/i.test(text) && URL.canParse(text);
}

/**
 * Validates the `contact_info` option value: a table whose keys are contact kinds and whose
 * values are lists of URIs. Returns the addresses, or a message saying what is wrong.
 *
 * @example
 * ```ts
 * parseContactInfo({ abuse: ["mailto:abuse@example.com"] }); // { abuse: [...] }
 * parseContactInfo({ abuse: "x" }); // "expected a list of URIs for 'abuse', found \"x\""
 * ```
 */
export function parseContactInfo(value: unknown): ContactAddresses | string {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return `expected a table of contact kinds, found ${JSON.stringify(value)}`;
  }
  const addresses: ContactAddresses = {};
  for (const [key, list] of Object.entries(value)) {
    if (!(CONTACT_KINDS as readonly string[]).includes(key)) {
      return `expected contact kinds among ${CONTACT_KINDS.join(", ")}, found '${key}'`;
    }
    if (!Array.isArray(list) || list.some((item) => typeof item !== "string")) {
      return `expected a list of URIs for '${key}', found ${JSON.stringify(list)}`;
    }
    const bad = (list as string[]).find((item) => !isUri(item));
    if (bad !== undefined) {
      return `expected URIs such as "mailto:abuse@example.com" for '${key}', found '${bad}'`;
    }
    if (list.length > 0) addresses[key as ContactKind] = [...list];
  }
  return addresses;
}

/** Builds the XEP-0157 data form (XEP-0128 extension) for the given addresses. */
export function buildServerInfoForm(addresses: ContactAddresses): Element {
  const form = new Element("x", { xmlns: NS_DATA, type: "result" });
  form.c("field", { var: "FORM_TYPE", type: "hidden" }).c("value").t(SERVERINFO_FORM_TYPE);
  for (const kind of CONTACT_KINDS) {
    const list = addresses[kind];
    if (!list?.length) continue;
    const field = form.c("field", { var: `${kind}-addresses`, type: "list-multi" });
    for (const address of list) field.c("value").t(address);
  }
  return form;
}

/** Loads contact addresses on a host. */
export default function contactInfo(m: ModuleAPI): void {
  const raw = m.optionRaw("contact_info");
  let addresses: ContactAddresses;
  if (raw === undefined) {
    // Like Prosody: without the option, the host's admins are the contacts.
    const admins = m.hostOption("admins");
    addresses = admins.length > 0 ? { admin: admins.map((jid) => `xmpp:${jid}`) } : {};
  } else {
    const parsed = parseContactInfo(raw);
    if (typeof parsed === "string") {
      const line = m.server.config.lineOf(m.domain, "contact_info");
      const where = line ? `${m.server.config.file}:${line}: ` : "";
      throw new ModuleOptionError(
        `${where}Option 'contact_info' of module '${m.name}' ${parsed}`,
      );
    }
    addresses = parsed;
  }
  if (Object.keys(addresses).length === 0) return;
  m.addExtension(buildServerInfoForm(addresses));
}
