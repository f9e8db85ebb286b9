// Turns Element trees back into XML text for the wire and for storage; on the hot path of every
// outgoing stanza, so it avoids regular expressions and intermediate arrays.

import { type Element, isStanzaNamespace, NS_CLIENT } from "./element.ts";

// 1 marks a character escapeText must replace, 2 one only escapeAttr must replace.
const TEXT_ESCAPE = 1;
const ATTR_ESCAPE = 2;
const ESCAPE = new Uint8Array(63);
ESCAPE[38] = TEXT_ESCAPE | ATTR_ESCAPE; // &
ESCAPE[60] = TEXT_ESCAPE | ATTR_ESCAPE; // <
ESCAPE[62] = TEXT_ESCAPE | ATTR_ESCAPE; // >
ESCAPE[13] = TEXT_ESCAPE | ATTR_ESCAPE; // \r: a parser would turn a literal one into \n
ESCAPE[34] = ATTR_ESCAPE; // "
ESCAPE[39] = ATTR_ESCAPE; // '
ESCAPE[9] = ATTR_ESCAPE; // \t and \n: a parser would turn literal ones into spaces
ESCAPE[10] = ATTR_ESCAPE;

function replacement(c: number): string {
  switch (c) {
    case 38:
      return "&amp;";
    case 60:
      return "&lt;";
    case 62:
      return "&gt;";
    case 34:
      return "&quot;";
    case 39:
      return "&apos;";
    case 9:
      return "&#9;";
    case 10:
      return "&#10;";
    default:
      return "&#13;";
  }
}

function escape(s: string, mask: number): string {
  const len = s.length;
  let i = 0;
  for (; i < len; i++) {
    const c = s.charCodeAt(i);
    if (c < 63 && (ESCAPE[c] & mask) !== 0) break;
  }
  if (i === len) return s;
  let out = s.slice(0, i);
  let from = i;
  for (; i < len; i++) {
    const c = s.charCodeAt(i);
    if (c < 63 && (ESCAPE[c] & mask) !== 0) {
      out += s.slice(from, i) + replacement(c);
      from = i + 1;
    }
  }
  return out + s.slice(from);
}

/**
 * Escapes character data: `&`, `<` and `>` become references. A carriage return becomes
 * `&#13;` so it survives a parser's line-end normalization.
 */
export function escapeText(text: string): string {
  return escape(text, TEXT_ESCAPE);
}

/**
 * Escapes an attribute value for use inside single quotes: `&`, `<`, `>`, `"` and `'` become
 * references (`&apos;` for the quote). Tab, newline and carriage return become character
 * references so attribute-value normalization does not turn them into spaces.
 */
export function escapeAttr(value: string): string {
  return escape(value, ATTR_ESCAPE);
}

/** The namespace stanzas carry on external component streams (XEP-0114). */
export const NS_COMPONENT = "jabber:component:accept";

function write(el: Element, parentNs: string): string {
  let out = "<" + el.name;
  if (el.ns !== parentNs) out += " xmlns='" + escape(el.ns, ATTR_ESCAPE) + "'";
  return writeRest(el, out);
}

function writeRest(el: Element, out: string): string {
  const attrs = el.attrs;
  for (const key in attrs) {
    const value = attrs[key];
    if (value === undefined || key === "xmlns") continue;
    out += " " + key + "='" + escape(value, ATTR_ESCAPE) + "'";
  }
  const children = el.children;
  const count = children.length;
  if (count === 0) return out + "/>";
  out += ">";
  const ns = el.ns;
  for (let i = 0; i < count; i++) {
    const child = children[i];
    out += typeof child === "string" ? escape(child, TEXT_ESCAPE) : write(child, ns);
  }
  return out + "</" + el.name + ">";
}

/**
 * Serializes an element. `xmlns` is written only where an element's namespace differs from its
 * parent's, or at the top from `contextNs` (the stream's content namespace, default
 * `jabber:client`). A top-level element in `jabber:client` or `jabber:server` written into a
 * stream of either of those namespaces, or of `jabber:component:accept`, gets no `xmlns`, so
 * stanzas move between c2s, s2s and component streams unchanged. Prefixed attributes
 * (`xml:lang`, `xmlns:p`, `p:attr`) are written as stored; element names are written
 * unprefixed. Childless elements are written as `<x/>`.
 *
 * @example
 * ```ts
 * serialize(new Element("message", { to: "a@b" }).c("body").t("hi & bye").root());
 * // "<message to='a@b'><body>hi &amp; bye</body></message>"
 * ```
 */
export function serialize(el: Element, contextNs: string = NS_CLIENT): string {
  let out = "<" + el.name;
  if (
    el.ns !== contextNs &&
    !(isStanzaNamespace(el.ns) && (isStanzaNamespace(contextNs) || contextNs === NS_COMPONENT))
  ) {
    out += " xmlns='" + escape(el.ns, ATTR_ESCAPE) + "'";
  }
  return writeRest(el, out);
}
