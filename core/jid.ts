// XMPP addresses (RFC 7622): parsing, PRECIS preparation of each part and comparison, so every
// other part of the server handles only normalised JIDs and compares them with plain equality.

import { isIPv4, isIPv6 } from "node:net";
import { domainToASCII, domainToUnicode } from "node:url";

/** Thrown when a string is not a valid JID or JID part. */
export class JidError extends Error {
  /** What is wrong, without the quoted input (e.g. "more than one '@'"). */
  readonly reason: string;

  /** Creates the error; `name` is "JidError". */
  constructor(message: string, reason: string = message) {
    super(message);
    this.name = "JidError";
    this.reason = reason;
  }
}

/**
 * An immutable, prepared XMPP address. Construct one with {@link parseJid}; the constructor
 * trusts that its parts are already prepared.
 *
 * @example
 * ```ts
 * const jid = parseJid("Juliet@Example.com/balcony");
 * jid.toString(); // "juliet@example.com/balcony"
 * jid.bare.toString(); // "juliet@example.com"
 * ```
 */
export class JID {
  /** The prepared localpart, or undefined for a domain JID. */
  readonly local?: string;
  /** The prepared domainpart (lowercase U-label form, or an IP literal). */
  readonly domain: string;
  /** The prepared resourcepart, or undefined for a bare JID. */
  readonly resource?: string;
  #bare?: JID;
  #string?: string;

  /** Builds a JID from parts that are already prepared; use {@link parseJid} for input. */
  constructor(local: string | undefined, domain: string, resource?: string) {
    this.local = local || undefined;
    this.domain = domain;
    this.resource = resource || undefined;
  }

  /** The JID without its resource (itself when already bare). */
  get bare(): JID {
    if (this.resource === undefined) return this;
    return this.#bare ??= new JID(this.local, this.domain);
  }

  /** True when the JID has no resource. */
  isBare(): boolean {
    return this.resource === undefined;
  }

  /** True when the JID has neither a localpart nor a resource (a server or component). */
  isDomain(): boolean {
    return this.local === undefined && this.resource === undefined;
  }

  /** A new JID with the same local and domain parts and a prepared resource. */
  withResource(resource: string): JID {
    return new JID(this.local, this.domain, prepResource(resource));
  }

  /** The JID as `local@domain/resource`. */
  toString(): string {
    if (this.#string === undefined) {
      let text = this.local === undefined ? this.domain : `${this.local}@${this.domain}`;
      if (this.resource !== undefined) text += `/${this.resource}`;
      this.#string = text;
    }
    return this.#string;
  }

  /** The bare JID as `local@domain`. */
  bareString(): string {
    return this.local === undefined ? this.domain : `${this.local}@${this.domain}`;
  }

  /** True when all three parts are equal. */
  equals(other: JID): boolean {
    return this === other ||
      (this.domain === other.domain && this.local === other.local &&
        this.resource === other.resource);
  }
}

/** Longest part in bytes of UTF-8 (RFC 7622 §3.2–3.4). */
const MAX_PART_BYTES = 1023;
/** Longest DNS label in octets of its A-label form. */
const MAX_LABEL_OCTETS = 63;
/** Entries kept per cache before the oldest is dropped. */
const CACHE_SIZE = 4096;

/** A small insertion-ordered cache: when full, the oldest entry is dropped. */
class BoundedCache<V> {
  #map = new Map<string, V>();
  #limit: number;

  constructor(limit: number) {
    this.#limit = limit;
  }

  get(key: string): V | undefined {
    return this.#map.get(key);
  }

  set(key: string, value: V): void {
    if (this.#map.size >= this.#limit) {
      const oldest = this.#map.keys().next();
      if (!oldest.done) this.#map.delete(oldest.value);
    }
    this.#map.set(key, value);
  }
}

const localCache = new BoundedCache<string>(CACHE_SIZE);
const domainCache = new BoundedCache<string>(CACHE_SIZE);
const resourceCache = new BoundedCache<string>(CACHE_SIZE);
const jidCache = new BoundedCache<JID>(CACHE_SIZE);

/** Why a part failed preparation, without the part's name (callers add context). */
class PrepFailure {
  constructor(readonly reason: string) {}
}

/**
 * Parses and prepares a JID string.
 *
 * @throws {JidError} with a message such as "Cannot parse JID 'a@@b': more than one '@'"
 */
export function parseJid(input: string): JID {
  const cached = jidCache.get(input);
  if (cached) return cached;
  const result = parseUncached(input);
  if (result instanceof PrepFailure) {
    throw new JidError(`Cannot parse JID '${display(input)}': ${result.reason}`, result.reason);
  }
  jidCache.set(input, result);
  return result;
}

/** Like {@link parseJid} but returns undefined instead of throwing. */
export function tryParseJid(input: string): JID | undefined {
  const cached = jidCache.get(input);
  if (cached) return cached;
  const result = parseUncached(input);
  if (result instanceof PrepFailure) return undefined;
  jidCache.set(input, result);
  return result;
}

/** Prepares a localpart (PRECIS UsernameCaseMapped plus RFC 7622's excluded characters). */
export function prepLocal(s: string): string {
  const result = cachedPrep(localCache, s, prepLocalUncached);
  if (result instanceof PrepFailure) {
    throw new JidError(`Invalid localpart '${display(s)}': ${result.reason}`, result.reason);
  }
  return result;
}

/** Prepares a domainpart (IDNA2008/UTS-46 to lowercase U-labels; IP literals kept). */
export function prepDomain(s: string): string {
  const result = cachedPrep(domainCache, s, prepDomainUncached);
  if (result instanceof PrepFailure) {
    throw new JidError(`Invalid domainpart '${display(s)}': ${result.reason}`, result.reason);
  }
  return result;
}

/** Prepares a resourcepart (PRECIS OpaqueString). */
export function prepResource(s: string): string {
  const result = cachedPrep(resourceCache, s, prepResourceUncached);
  if (result instanceof PrepFailure) {
    throw new JidError(`Invalid resourcepart '${display(s)}': ${result.reason}`, result.reason);
  }
  return result;
}

function cachedPrep(
  cache: BoundedCache<string>,
  s: string,
  prep: (s: string) => string | PrepFailure,
): string | PrepFailure {
  const cached = cache.get(s);
  if (cached !== undefined) return cached;
  const result = prep(s);
  if (typeof result === "string") cache.set(s, result);
  return result;
}

function parseUncached(input: string): JID | PrepFailure {
  if (input.length === 0) return new PrepFailure("it is empty");
  // Each part is at most 1023 bytes, so at most 1023 UTF-16 units: refuse huge input early.
  const maxLength = 3 * MAX_PART_BYTES + 2;
  if (input.length > maxLength) {
    return new PrepFailure(`it is ${input.length} characters long, expected at most ${maxLength}`);
  }
  // RFC 7622 §3.2: the resourcepart starts after the first '/', the localpart ends at the
  // first '@' before it; separators are found before any mapping can produce new ones.
  const slash = input.indexOf("/");
  const beforeSlash = slash === -1 ? input : input.slice(0, slash);
  const at = beforeSlash.indexOf("@");
  let local: string | undefined;
  let domain = beforeSlash;
  if (at !== -1) {
    local = beforeSlash.slice(0, at);
    domain = beforeSlash.slice(at + 1);
    if (domain.includes("@")) return new PrepFailure("more than one '@'");
    if (local.length === 0) return new PrepFailure("localpart is empty");
  }
  let resource: string | undefined;
  if (slash !== -1) {
    resource = input.slice(slash + 1);
    if (resource.length === 0) return new PrepFailure("resourcepart is empty");
  }

  const preparedDomain = cachedPrep(domainCache, domain, prepDomainUncached);
  if (preparedDomain instanceof PrepFailure) return inPart("domainpart", preparedDomain);
  let preparedLocal: string | undefined;
  if (local !== undefined) {
    const result = cachedPrep(localCache, local, prepLocalUncached);
    if (result instanceof PrepFailure) return inPart("localpart", result);
    preparedLocal = result;
  }
  let preparedResource: string | undefined;
  if (resource !== undefined) {
    const result = cachedPrep(resourceCache, resource, prepResourceUncached);
    if (result instanceof PrepFailure) return inPart("resourcepart", result);
    preparedResource = result;
  }
  return new JID(preparedLocal, preparedDomain, preparedResource);
}

function inPart(part: string, failure: PrepFailure): PrepFailure {
  return new PrepFailure(`${part} ${failure.reason}`);
}

// ---------------------------------------------------------------------------------------------
// Localpart: PRECIS UsernameCaseMapped (RFC 8265 §3.3) on the IdentifierClass (RFC 8264 §4.2).

const ASCII_PRINTABLE = /^[\x21-\x7e]+$/;
const LOCAL_EXCLUDED = /["&'/:<>@]/;
const WIDE_OR_NARROW = /[\u3000\uff01-\uffee]/g;

function prepLocalUncached(s: string): string | PrepFailure {
  if (s.length === 0) return new PrepFailure("is empty");
  let prepared: string;
  if (ASCII_PRINTABLE.test(s)) {
    prepared = s.toLowerCase();
  } else {
    // Width mapping, case mapping, then NFC (RFC 8265 §3.3.2 steps 1, 3, 4).
    prepared = s.replace(WIDE_OR_NARROW, (c) => c.normalize("NFKC")).toLowerCase()
      .normalize("NFC");
    if (prepared.length === 0) return new PrepFailure("is empty");
    const failure = checkCodePoints(prepared, true);
    if (failure) return failure;
  }
  const excluded = LOCAL_EXCLUDED.exec(prepared);
  if (excluded) return disallowed(excluded[0], "");
  return checkBytes(prepared);
}

// ---------------------------------------------------------------------------------------------
// Resourcepart: PRECIS OpaqueString (RFC 8265 §4.2) on the FreeformClass (RFC 8264 §4.3).

const ASCII_WITH_SPACE = /^[\x20-\x7e]+$/;
const NON_ASCII_SPACE = /(?![ ])\p{Zs}/gu;

function prepResourceUncached(s: string): string | PrepFailure {
  if (s.length === 0) return new PrepFailure("is empty");
  if (ASCII_WITH_SPACE.test(s)) return checkBytes(s);
  const prepared = s.replace(NON_ASCII_SPACE, " ").normalize("NFC");
  const failure = checkCodePoints(prepared, false);
  if (failure) return failure;
  return checkBytes(prepared);
}

// ---------------------------------------------------------------------------------------------
// Domainpart: IDNA2008 through UTS-46 mapping (RFC 7622 §3.2), IP literals kept as they are.

const LABEL_SEPARATOR = /[.\u3002\uff0e\uff61]$/;
const LDH_LABEL = /^[a-z0-9-]+$/;
const LDH_CHAR = /[^a-z0-9-]/;

function prepDomainUncached(input: string): string | PrepFailure {
  let s = input;
  // RFC 7622 §3.2: a final label separator is stripped before the domain is used.
  if (LABEL_SEPARATOR.test(s)) s = s.slice(0, -1);
  if (s.length === 0) return new PrepFailure("is empty");

  if (s.startsWith("[")) {
    const inner = s.endsWith("]") ? s.slice(1, -1) : "";
    if (!isIPv6(inner)) {
      return new PrepFailure(`'${display(s)}' is not a valid IPv6 address literal`);
    }
    return `[${inner.toLowerCase()}]`;
  }
  if (isIPv4(s)) return s;

  let prepared: string;
  if (ASCII_PRINTABLE.test(s) && !/(^|\.)xn--/i.test(s)) {
    prepared = s.toLowerCase();
    const failure = checkLabels(prepared);
    if (failure) return failure;
  } else {
    const ascii = domainToASCII(s);
    if (ascii.length === 0) {
      return new PrepFailure("is not a valid internationalized domain name");
    }
    const failure = checkLabels(ascii);
    if (failure) return failure;
    prepared = domainToUnicode(ascii);
    for (const label of prepared.split(".")) {
      const labelFailure = checkDomainCodePoints(label);
      if (labelFailure) return labelFailure;
    }
    if (domainToASCII(prepared) !== ascii) {
      return new PrepFailure(`'${display(s)}' is not in canonical IDNA form`);
    }
  }
  return checkBytes(prepared);
}

/** Checks the LDH rule and label lengths on the ASCII (A-label) form of a domain. */
function checkLabels(ascii: string): PrepFailure | undefined {
  for (const label of ascii.split(".")) {
    if (label.length === 0) return new PrepFailure("has an empty label");
    if (!LDH_LABEL.test(label)) {
      const bad = LDH_CHAR.exec(label)![0];
      return disallowed(bad, "");
    }
    if (label.length > MAX_LABEL_OCTETS) {
      return new PrepFailure(
        `label '${
          display(label)
        }' is ${label.length} octets long, expected at most ${MAX_LABEL_OCTETS}`,
      );
    }
    if (label.startsWith("-") || label.endsWith("-")) {
      return new PrepFailure(`label '${label}' starts or ends with a hyphen`);
    }
    if (label[2] === "-" && label[3] === "-" && !label.startsWith("xn--")) {
      return new PrepFailure(`label '${label}' has hyphens in the third and fourth positions`);
    }
  }
  return undefined;
}

/** IDNA2008 allows only letters, digits and marks (plus the RFC 5892 exceptions) in U-labels. */
function checkDomainCodePoints(label: string): PrepFailure | undefined {
  for (const ch of label) {
    const cp = ch.codePointAt(0)!;
    if (cp < 0x80) continue;
    if (EXCEPTION_PVALID.has(cp) || EXCEPTION_CONTEXTO.has(cp)) continue;
    if (EXCEPTION_DISALLOWED.has(cp) || !LETTER_DIGITS.test(ch) || hasCompat(ch)) {
      return disallowed(ch, describeClass(ch));
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// PRECIS derived property (RFC 8264 §8), checked code point by code point.

const EXCEPTION_PVALID = new Set([0x00df, 0x03c2, 0x06fd, 0x06fe, 0x0f0b, 0x3007]);
const EXCEPTION_CONTEXTO = new Set([
  0x00b7,
  0x0375,
  0x05f3,
  0x05f4,
  0x30fb,
  ...range(0x0660, 0x0669),
  ...range(0x06f0, 0x06f9),
]);
const EXCEPTION_DISALLOWED = new Set([
  0x0640,
  0x07fa,
  0x302e,
  0x302f,
  ...range(0x3031, 0x3035),
  0x303b,
]);

const UNASSIGNED = /^\p{Cn}$/u;
const NONCHARACTER = /^\p{Noncharacter_Code_Point}$/u;
const IGNORABLE = /^\p{Default_Ignorable_Code_Point}$/u;
const CONTROL = /^\p{Cc}$/u;
const LETTER_DIGITS = /^[\p{Ll}\p{Lu}\p{Lo}\p{Nd}\p{Lm}\p{Mn}\p{Mc}]$/u;
const OTHER_LETTER_DIGITS = /^[\p{Lt}\p{Nl}\p{No}\p{Me}]$/u;
const SPACES = /^\p{Zs}$/u;
const SYMBOLS = /^[\p{Sm}\p{Sc}\p{Sk}\p{So}]$/u;
const PUNCTUATION = /^\p{P}$/u;
const GREEK = /^\p{Script=Greek}$/u;
const HEBREW = /^\p{Script=Hebrew}$/u;
const KANA_OR_HAN = /[\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Han}]/u;

function range(from: number, to: number): number[] {
  const out: number[] = [];
  for (let cp = from; cp <= to; cp++) out.push(cp);
  return out;
}

function hasCompat(ch: string): boolean {
  return ch.normalize("NFKC") !== ch;
}

function isOldHangulJamo(cp: number): boolean {
  return (cp >= 0x1100 && cp <= 0x11ff) || (cp >= 0xa960 && cp <= 0xa97f) ||
    (cp >= 0xd7b0 && cp <= 0xd7ff);
}

/**
 * Checks every code point against the IdentifierClass (`identifier`) or the FreeformClass.
 * Join controls are refused outright instead of applying their CONTEXTJ rule.
 */
function checkCodePoints(s: string, identifier: boolean): PrepFailure | undefined {
  const chars = Array.from(s);
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i];
    const cp = ch.codePointAt(0)!;
    if (cp >= 0x21 && cp <= 0x7e) continue;
    if (EXCEPTION_PVALID.has(cp)) continue;
    if (EXCEPTION_DISALLOWED.has(cp)) return disallowed(ch, "");
    if (EXCEPTION_CONTEXTO.has(cp)) {
      const failure = checkContextO(chars, i);
      if (failure) return failure;
      continue;
    }
    if (UNASSIGNED.test(ch) && !NONCHARACTER.test(ch)) {
      return disallowed(ch, "unassigned code points are not allowed");
    }
    if (cp === 0x200c || cp === 0x200d) return disallowed(ch, "join controls are not allowed");
    if (isOldHangulJamo(cp)) return disallowed(ch, "old Hangul jamo are not allowed");
    if (IGNORABLE.test(ch) || NONCHARACTER.test(ch)) {
      return disallowed(ch, "ignorable code points are not allowed");
    }
    if (CONTROL.test(ch)) return disallowed(ch, "control characters are not allowed");
    if (hasCompat(ch)) {
      if (identifier) return disallowed(ch, "compatibility characters are not allowed");
      continue;
    }
    if (LETTER_DIGITS.test(ch)) continue;
    if (
      OTHER_LETTER_DIGITS.test(ch) || SPACES.test(ch) || SYMBOLS.test(ch) ||
      PUNCTUATION.test(ch)
    ) {
      if (identifier) return disallowed(ch, describeClass(ch));
      continue;
    }
    return disallowed(ch, "");
  }
  return undefined;
}

/** The contextual rules of RFC 5892 Appendix A for the CONTEXTO exceptions. */
function checkContextO(chars: string[], i: number): PrepFailure | undefined {
  const cp = chars[i].codePointAt(0)!;
  const before = chars[i - 1];
  const after = chars[i + 1];
  let ok = true;
  if (cp === 0x00b7) ok = before === "l" && after === "l";
  else if (cp === 0x0375) ok = after !== undefined && GREEK.test(after);
  else if (cp === 0x05f3 || cp === 0x05f4) ok = before !== undefined && HEBREW.test(before);
  else if (cp === 0x30fb) ok = chars.some((c) => c !== "\u30fb" && KANA_OR_HAN.test(c));
  else if (cp >= 0x0660 && cp <= 0x0669) {
    ok = !chars.some((c) => c >= "\u06f0" && c <= "\u06f9");
  } else if (cp >= 0x06f0 && cp <= 0x06f9) {
    ok = !chars.some((c) => c >= "\u0660" && c <= "\u0669");
  }
  return ok ? undefined : disallowed(chars[i], "it is not allowed in this context");
}

function describeClass(ch: string): string {
  if (ch === " " || SPACES.test(ch)) return "spaces are not allowed";
  if (SYMBOLS.test(ch)) return "symbols are not allowed";
  if (PUNCTUATION.test(ch)) return "punctuation is not allowed";
  if (OTHER_LETTER_DIGITS.test(ch)) return "this kind of letter or number is not allowed";
  if (hasCompat(ch)) return "compatibility characters are not allowed";
  return "";
}

function disallowed(ch: string, why: string): PrepFailure {
  const cp = ch.codePointAt(0)!;
  const hex = `U+${cp.toString(16).toUpperCase().padStart(4, "0")}`;
  const visible = /^[\p{L}\p{M}\p{N}\p{P}\p{S} ]$/u.test(ch) ? `'${ch}' (${hex})` : hex;
  if (why === "" && ch === " ") why = "spaces are not allowed";
  return new PrepFailure(`contains ${visible}${why ? `: ${why}` : ", which is not allowed"}`);
}

const encoder = new TextEncoder();

function checkBytes(prepared: string): string | PrepFailure {
  // Fast bound: UTF-8 needs at most 3 bytes per UTF-16 unit.
  if (prepared.length * 3 <= MAX_PART_BYTES) return prepared;
  const bytes = encoder.encode(prepared).length;
  if (bytes > MAX_PART_BYTES) {
    return new PrepFailure(`is ${bytes} bytes long, expected at most ${MAX_PART_BYTES}`);
  }
  return prepared;
}

// deno-lint-ignore no-control-regex
const CONTROL_CHARS = /[\x00-\x1f\x7f]/g;

/** Makes input safe and short enough to quote in an error message. */
function display(s: string): string {
  const escaped = s.replace(
    CONTROL_CHARS,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
  return escaped.length > 80 ? `${escaped.slice(0, 77)}...` : escaped;
}
