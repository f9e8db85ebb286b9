// Stream-level output shared by every XML stream Lilt serves (clients, external components):
// the opening header and the prefixed stream elements (<stream:features>, <stream:error>).

import type { Element } from "../xml/element.ts";
import { escapeAttr, escapeText, serialize } from "../xml/serializer.ts";
import { NS_STREAM } from "../xml/stanza.ts";

/** What goes into a stream header the server sends. */
export interface StreamHeaderOptions {
  /** The stream's content namespace (`jabber:client`, `jabber:component:accept`). */
  ns: string;
  /** The stream id. */
  id: string;
  /** The server's domain, when known. */
  from?: string;
  /** The peer's address, when known. */
  to?: string;
  /** Write `version='1.0'` and `xml:lang` (RFC 6120 streams; XEP-0114 streams have none). */
  version?: boolean;
}

/** The XML declaration and opening `<stream:stream>` tag the server sends. */
export function streamHeader(options: StreamHeaderOptions): string {
  const from = options.from ? ` from='${escapeAttr(options.from)}'` : "";
  const to = options.to ? ` to='${escapeAttr(options.to)}'` : "";
  const version = options.version ? ` version='1.0' xml:lang='en'` : "";
  return `<?xml version='1.0'?><stream:stream xmlns='${escapeAttr(options.ns)}'` +
    ` xmlns:stream='${NS_STREAM}' id='${escapeAttr(options.id)}'${from}${to}${version}>`;
}

/** Serializes a stream-level element (`<stream:features>`, `<stream:error>`) with its prefix. */
export function serializeStreamLevel(el: Element): string {
  let inner = "";
  for (const child of el.children) {
    inner += typeof child === "string" ? escapeText(child) : serialize(child, NS_STREAM);
  }
  return `<stream:${el.name}>${inner}</stream:${el.name}>`;
}
