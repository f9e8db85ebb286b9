// Stanza helpers shared by the core and modules: namespaces, reply/error construction, and
// the RFC 6120 stanza and stream error vocabularies.

import { Element, NS_CLIENT } from "./element.ts";

/** Namespace of stanza error conditions (RFC 6120 §8.3). */
export const NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";
/** Namespace of stream error conditions (RFC 6120 §4.9). */
export const NS_STREAMS_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams";
/** Namespace of the stream root and features. */
export const NS_STREAM = "http://etherx.jabber.org/streams";
/** STARTTLS namespace (RFC 6120 §5). */
export const NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls";
/** SASL namespace (RFC 6120 §6). */
export const NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl";
/** Resource binding namespace (RFC 6120 §7). */
export const NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind";
/** Legacy session establishment (RFC 3921), advertised as optional for old clients. */
export const NS_SESSION = "urn:ietf:params:xml:ns:xmpp-session";

/** Stanza error types (RFC 6120 §8.3.2). */
export type StanzaErrorType = "auth" | "cancel" | "continue" | "modify" | "wait";

/** Defined stanza error conditions (RFC 6120 §8.3.3). */
export type StanzaErrorCondition =
  | "bad-request"
  | "conflict"
  | "feature-not-implemented"
  | "forbidden"
  | "gone"
  | "internal-server-error"
  | "item-not-found"
  | "jid-malformed"
  | "not-acceptable"
  | "not-allowed"
  | "not-authorized"
  | "policy-violation"
  | "recipient-unavailable"
  | "redirect"
  | "registration-required"
  | "remote-server-not-found"
  | "remote-server-timeout"
  | "resource-constraint"
  | "service-unavailable"
  | "subscription-required"
  | "undefined-condition"
  | "unexpected-request";

/** The type each condition carries by default (RFC 6120 §8.3.3 examples). */
const DEFAULT_ERROR_TYPE: Record<StanzaErrorCondition, StanzaErrorType> = {
  "bad-request": "modify",
  "conflict": "cancel",
  "feature-not-implemented": "cancel",
  "forbidden": "auth",
  "gone": "cancel",
  "internal-server-error": "cancel",
  "item-not-found": "cancel",
  "jid-malformed": "modify",
  "not-acceptable": "modify",
  "not-allowed": "cancel",
  "not-authorized": "auth",
  "policy-violation": "modify",
  "recipient-unavailable": "wait",
  "redirect": "modify",
  "registration-required": "auth",
  "remote-server-not-found": "cancel",
  "remote-server-timeout": "wait",
  "resource-constraint": "wait",
  "service-unavailable": "cancel",
  "subscription-required": "auth",
  "undefined-condition": "cancel",
  "unexpected-request": "wait",
};

/** Stream error conditions (RFC 6120 §4.9.3). */
export type StreamErrorCondition =
  | "bad-format"
  | "bad-namespace-prefix"
  | "conflict"
  | "connection-timeout"
  | "host-gone"
  | "host-unknown"
  | "improper-addressing"
  | "internal-server-error"
  | "invalid-from"
  | "invalid-namespace"
  | "invalid-xml"
  | "not-authorized"
  | "not-well-formed"
  | "policy-violation"
  | "remote-connection-failed"
  | "reset"
  | "resource-constraint"
  | "restricted-xml"
  | "see-other-host"
  | "system-shutdown"
  | "undefined-condition"
  | "unsupported-encoding"
  | "unsupported-feature"
  | "unsupported-stanza-type"
  | "unsupported-version";

/** The stanza kinds the router knows. */
export type StanzaKind = "message" | "presence" | "iq";

/** True when the element is one of the three stanza kinds. */
export function isStanza(el: Element): boolean {
  return el.name === "message" || el.name === "presence" || el.name === "iq";
}

/** Iqs that `reply` (and so `errorReply`) built an answer for. */
const answeredIqs = new WeakSet<Element>();

/**
 * True when `reply` or `errorReply` built an answer to this iq: the event bus then does not
 * answer it again when its handler fails afterwards (RFC 6120 §8.2.3: exactly one reply).
 */
export function wasAnswered(iq: Element): boolean {
  return answeredIqs.has(iq);
}

/**
 * Builds the reply skeleton for a stanza: same kind and id, to/from swapped.
 * An iq reply gets type "result"; other kinds keep no type.
 */
export function reply(stanza: Element, attrs?: Record<string, string | undefined>): Element {
  if (stanza.name === "iq") answeredIqs.add(stanza);
  const out = new Element(stanza.name, {
    to: stanza.attrs.from,
    from: stanza.attrs.to,
    id: stanza.attrs.id,
    type: stanza.name === "iq" ? "result" : undefined,
    ...attrs,
  });
  out.ns = stanza.ns;
  return out;
}

/** Options for `errorReply`. */
export interface ErrorReplyOptions {
  /** Error type; defaults to the condition's usual type. */
  type?: StanzaErrorType;
  /** Human-readable text (sent with xml:lang="en"). */
  text?: string;
  /** Entity that generated the error (RFC 6120 §8.3.2 `by`). */
  by?: string;
  /** Include the original payload (messages and presence, as RFC 6120 allows). */
  includeOriginal?: boolean;
}

/**
 * Builds an error reply to a stanza (RFC 6120 §8.3). Never call it for a stanza that is
 * itself an error: check `isError` first (errors are never answered with errors).
 *
 * @example
 * ```ts
 * origin.send(errorReply(stanza, "service-unavailable"));
 * ```
 */
export function errorReply(
  stanza: Element,
  condition: StanzaErrorCondition,
  options: ErrorReplyOptions = {},
): Element {
  const out = reply(stanza, { type: "error" });
  if (options.includeOriginal && stanza.name !== "iq") {
    for (const child of stanza.children) {
      if (typeof child !== "string" && child.name !== "error") out.append(child.clone());
    }
  }
  const error = out.c("error", {
    type: options.type ?? DEFAULT_ERROR_TYPE[condition],
    by: options.by,
  });
  error.c(condition, { xmlns: NS_STANZAS });
  if (options.text) error.c("text", { xmlns: NS_STANZAS, "xml:lang": "en" }).t(options.text);
  return out;
}

/** True when the stanza has type="error" (never answer it with another error). */
export function isError(stanza: Element): boolean {
  return stanza.attrs.type === "error";
}

/** Builds a stream error element (`<stream:error>`) with an optional text. */
export function streamError(condition: StreamErrorCondition, text?: string): Element {
  const el = new Element("error", { xmlns: NS_STREAM });
  el.c(condition, { xmlns: NS_STREAMS_ERRORS });
  if (text) el.c("text", { xmlns: NS_STREAMS_ERRORS, "xml:lang": "en" }).t(text);
  return el;
}

/** Builds an iq stanza. */
export function iq(
  type: "get" | "set" | "result" | "error",
  attrs: Record<string, string | undefined> = {},
): Element {
  return new Element("iq", { type, ...attrs });
}

/**
 * The condition inside an error-like element (`<error/>`, SASL `<failure/>`, `<stream:error/>`):
 * the name of its first child other than `<text/>`.
 */
export function conditionName(el: Element): string | undefined {
  return el.elements().find((child) => child.name !== "text")?.name;
}

/** Returns the stanza error condition name of an error stanza, if any. */
export function errorCondition(stanza: Element): string | undefined {
  const error = stanza.getChild("error");
  if (!error) return undefined;
  for (const child of error.children) {
    if (typeof child !== "string" && child.ns === NS_STANZAS && child.name !== "text") {
      return child.name;
    }
  }
  return undefined;
}

/**
 * Moves an element received on a server or component stream from that stream's namespace
 * (`jabber:server`, `jabber:component:accept`) into `jabber:client`, with its unqualified
 * descendants (body, error, ...), so modules and other streams see the same stanzas as from
 * clients.
 */
export function toClientNamespace(el: Element, streamNs: string): void {
  if (el.ns !== streamNs) return;
  el.ns = NS_CLIENT;
  for (const child of el.children) {
    if (typeof child !== "string") toClientNamespace(child, streamNs);
  }
}
