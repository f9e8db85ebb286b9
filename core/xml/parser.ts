// The streaming parser for XMPP's restricted XML (RFC 6120 §11): turns socket bytes into stanza
// trees as they arrive, enforcing well-formedness, namespaces and size limits on the way.

import { Element, NS_CLIENT } from "./element.ts";
import { NS_STREAM } from "./stanza.ts";

/*
 * Error conditions, chosen from RFC 6120 §4.9.3 and §11:
 * - Invalid UTF-8 is "unsupported-encoding": §4.9.3.22 defines it for an entity that "has
 *   otherwise improperly encoded the stream (e.g., by violating the rules of the [UTF-8]
 *   encoding)". An XML declaration naming another encoding is "unsupported-encoding" too.
 * - Comments, processing instructions, DTDs (`<!DOCTYPE`, `<!ENTITY` …) and entity references
 *   other than the five predefined ones are "restricted-xml" (§11.1). A misplaced XML declaration
 *   is a processing instruction as far as the stream is concerned, so it is "restricted-xml".
 * - CDATA sections are not in the §11.1 list and are well-formed XML, so they are accepted and
 *   their content becomes ordinary text (merged with adjacent text).
 * - An unbound prefix is "not-well-formed" (§4.9.3.13 covers violations of XML-NAMES), except on
 *   the stream header: §4.8.1 asks for "invalid-namespace" when the root is not qualified by the
 *   stream namespace, which is also used when its namespace is wrong. A root element not named
 *   `stream` is "bad-format".
 * - Size, depth and attribute-count limits are "policy-violation" (§4.9.3.18).
 */

/** The stream error condition (RFC 6120 §4.9.3) a parse failure maps to. */
export type XmlErrorCondition =
  | "not-well-formed"
  | "restricted-xml"
  | "policy-violation"
  | "unsupported-encoding"
  | "invalid-namespace"
  | "bad-format";

/** A parse failure, carrying the stream error condition to send to the peer. */
export class XmlStreamError extends Error {
  /** The RFC 6120 stream error condition that describes the failure. */
  readonly condition: XmlErrorCondition;

  /** Creates an error with a stream error condition and a human-readable message. */
  constructor(condition: XmlErrorCondition, message: string) {
    super(message);
    this.name = "XmlStreamError";
    this.condition = condition;
  }
}

/** Resource limits the parser enforces while reading a stream. */
export interface XmlLimits {
  /** Largest stanza in UTF-8 bytes, from its `<` through the end of its end tag. */
  maxStanzaBytes: number;
  /** Deepest element nesting below the stream root (a stanza is at depth 1). */
  maxDepth: number;
  /** Most attributes (namespace declarations included) on one element. */
  maxAttributes: number;
}

/** The limits used when none are given. */
export const DEFAULT_XML_LIMITS: Readonly<XmlLimits> = Object.freeze({
  maxStanzaBytes: 262144,
  maxDepth: 64,
  maxAttributes: 64,
});

/** Largest stream header (XML declaration, whitespace and root start tag) in UTF-8 bytes. */
export const MAX_HEADER_BYTES = 65536;

/** The namespace bound to the predefined `xml:` prefix. */
export const NS_XML = "http://www.w3.org/XML/1998/namespace";
const NS_XMLNS = "http://www.w3.org/2000/xmlns/";

/** Callbacks a {@link StreamParser} reports to. */
export interface StreamParserHandlers {
  /** The stream root (`<stream:stream …>`), without children; namespace declarations kept. */
  streamOpen(header: Element): void;
  /** Each complete first-level child of the root (a stanza or a negotiation element). */
  stanza(stanza: Element): void;
  /** The root's end tag (`</stream:stream>`); later input is ignored. */
  streamClose(): void;
  /** The first error; later input is ignored until {@link StreamParser.reset}. */
  error(error: XmlStreamError): void;
}

// Parser states. The tokenizer can stop at any character and resume with the next chunk.
const ST_START = 0; // very start of a stream: maybe an XML declaration
const ST_XMLDECL = 1; // inside the XML declaration
const ST_TEXT = 2; // character data (or whitespace outside stanzas)
const ST_LT = 3; // after '<'
const ST_OPEN_NAME = 4; // in a start tag's name
const ST_ATTRS = 5; // in a start tag, between attributes
const ST_ATTR_NAME = 6;
const ST_ATTR_EQ = 7; // after an attribute name, expecting '='
const ST_ATTR_QUOTE = 8; // after '=', expecting a quote
const ST_ATTR_VALUE = 9;
const ST_EMPTY_GT = 10; // after '/' in a start tag
const ST_CLOSE_NAME = 11; // in an end tag's name
const ST_CLOSE_GT = 12; // after an end tag's name
const ST_BANG = 13; // after '<!'
const ST_CDATA = 14;
const ST_DONE = 15; // stream closed or failed: input ignored

const MAX_XML_DECL_CHARS = 1024;
const NOT_FOUND = Number.MAX_SAFE_INTEGER;

// ASCII name characters: 1 = may start a name, 2 = may only continue one.
const NAME_CHAR = new Uint8Array(128);

/** Decodes whole chunks (no state between calls, so one serves every parser). */
const WHOLE_UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
for (let c = 65; c <= 90; c++) NAME_CHAR[c] = 1;
for (let c = 97; c <= 122; c++) NAME_CHAR[c] = 1;
for (let c = 48; c <= 57; c++) NAME_CHAR[c] = 2;
NAME_CHAR[58] = 1; // ':'
NAME_CHAR[95] = 1; // '_'
NAME_CHAR[45] = 2; // '-'
NAME_CHAR[46] = 2; // '.'

/** NameStartChar of XML 1.0 §2.3 above ASCII; surrogates stand for U+10000–U+EFFFF. */
function isWideNameStart(c: number): boolean {
  return (c >= 0xc0 && c <= 0x2ff && c !== 0xd7 && c !== 0xf7) ||
    (c >= 0x370 && c <= 0x1fff && c !== 0x37e) ||
    c === 0x200c || c === 0x200d ||
    (c >= 0x2070 && c <= 0x218f) ||
    (c >= 0x2c00 && c <= 0x2fef) ||
    (c >= 0x3001 && c <= 0xdb7f) ||
    (c >= 0xdc00 && c <= 0xdfff) ||
    (c >= 0xf900 && c <= 0xfdcf) ||
    (c >= 0xfdf0 && c <= 0xfffd);
}

function isWideNameChar(c: number): boolean {
  return isWideNameStart(c) || c === 0xb7 || (c >= 0x300 && c <= 0x36f) ||
    c === 0x203f || c === 0x2040;
}

function isNameStart(c: number): boolean {
  return c < 128 ? NAME_CHAR[c] === 1 : isWideNameStart(c);
}

/** Index of the first character at or after `p` that cannot continue a name. */
function scanName(s: string, p: number, len: number): number {
  while (p < len) {
    const c = s.charCodeAt(p);
    if (c < 128) {
      if (NAME_CHAR[c] === 0) return p;
    } else if (!isWideNameChar(c)) {
      return p;
    }
    p++;
  }
  return p;
}

/** Position of the first ':' found by the last {@link scanQName}, or -1. */
let scannedColon = -1;

/** Like {@link scanName}, also noting where the first ':' is, for namespace resolution. */
function scanQName(s: string, p: number, len: number): number {
  scannedColon = -1;
  while (p < len) {
    const c = s.charCodeAt(p);
    if (c < 128) {
      const kind = NAME_CHAR[c];
      if (kind === 0) return p;
      if (c === 58 && scannedColon === -1) scannedColon = p;
    } else if (!isWideNameChar(c)) {
      return p;
    }
    p++;
  }
  return p;
}

function isXmlName(s: string): boolean {
  return s.length > 0 && isNameStart(s.charCodeAt(0)) && scanName(s, 1, s.length) === s.length;
}

function isWhitespaceCode(c: number): boolean {
  return c === 32 || c === 10 || c === 9 || c === 13;
}

function isWhitespace(s: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (!isWhitespaceCode(s.charCodeAt(i))) return false;
  return true;
}

function isXmlChar(cp: number): boolean {
  return cp === 9 || cp === 10 || cp === 13 || (cp >= 0x20 && cp <= 0xd7ff) ||
    (cp >= 0xe000 && cp <= 0xfffd) || (cp >= 0x10000 && cp <= 0x10ffff);
}

/** UTF-8 length of `s[from, to)`; a surrogate pair counts 2 + 2 = 4 bytes. */
function utf8Length(s: string, from: number, to: number): number {
  let n = to - from;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) n += c < 0x800 || (c >= 0xd800 && c <= 0xdfff) ? 1 : 2;
  }
  return n;
}

/** Shows a character in an error message. */
function describeChar(s: string, p: number): string {
  if (p >= s.length) return "end of input";
  const c = s.codePointAt(p)!;
  if (c < 0x20 || c === 0x7f || (c >= 0xd800 && c <= 0xdfff) || c === 0xfffe || c === 0xffff) {
    return "U+" + c.toString(16).toUpperCase().padStart(4, "0");
  }
  return "'" + String.fromCodePoint(c) + "'";
}

function clip(s: string): string {
  return s.length > 40 ? s.slice(0, 40) + "…" : s;
}

function notWellFormed(message: string): XmlStreamError {
  return new XmlStreamError("not-well-formed", message);
}

function restricted(message: string): XmlStreamError {
  return new XmlStreamError("restricted-xml", message);
}

function policy(message: string): XmlStreamError {
  return new XmlStreamError("policy-violation", message);
}

// Characters that send a chunk down the careful path: anything but '\n' and printable ASCII.
const SPECIAL = /[^\n\x20-\x7f]/;
const NON_ASCII = /[^\0-\x7f]/g;
// U+FFFE and U+FFFF are looked up with indexOf: in one class with these they slow the scan 2x.
// deno-lint-ignore no-control-regex -- finding these characters is the point
const CONTROL_CHAR = /[\x00-\x08\x0b\x0c\x0e-\x1f]/g;
const CRLF = /\r\n?/g;
const ATTR_WHITESPACE = /\r\n|[\t\n\r]/g;
const XML_DECL =
  /^<\?xml[ \t\r\n]+version[ \t\r\n]*=[ \t\r\n]*(?:'1\.[0-9]+'|"1\.[0-9]+")(?:[ \t\r\n]+encoding[ \t\r\n]*=[ \t\r\n]*(?:'([A-Za-z][A-Za-z0-9._-]*)'|"([A-Za-z][A-Za-z0-9._-]*)"))?(?:[ \t\r\n]+standalone[ \t\r\n]*=[ \t\r\n]*(?:'(?:yes|no)'|"(?:yes|no)"))?[ \t\r\n]*\?>$/;

/** Replaces the references in `raw` (which contains '&') with the characters they stand for. */
function decodeReferences(raw: string): string {
  let out = "";
  let from = 0;
  let amp = raw.indexOf("&");
  while (amp !== -1) {
    const semi = raw.indexOf(";", amp + 1);
    if (semi === -1) {
      throw notWellFormed(
        `Expected a reference like '&amp;' after '&', found '${clip(raw.slice(amp))}'`,
      );
    }
    out += raw.slice(from, amp) + decodeReference(raw, amp + 1, semi);
    from = semi + 1;
    amp = raw.indexOf("&", from);
  }
  return out + raw.slice(from);
}

function decodeReference(raw: string, start: number, end: number): string {
  if (raw.charCodeAt(start) === 35) return decodeCharReference(raw, start + 1, end);
  const name = raw.slice(start, end);
  switch (name) {
    case "lt":
      return "<";
    case "gt":
      return ">";
    case "amp":
      return "&";
    case "quot":
      return '"';
    case "apos":
      return "'";
  }
  if (isXmlName(name)) {
    throw restricted(
      `Expected only the predefined entities (RFC 6120 §11.1), found '&${clip(name)};'`,
    );
  }
  throw notWellFormed(`Expected a reference like '&amp;' after '&', found '&${clip(name)};'`);
}

function decodeCharReference(raw: string, start: number, end: number): string {
  const hex = raw.charCodeAt(start) === 120; // 'x'
  let i = hex ? start + 1 : start;
  let cp = 0;
  if (i === end || end - i > 8) cp = -1;
  for (; i < end && cp !== -1; i++) {
    const c = raw.charCodeAt(i);
    if (c >= 48 && c <= 57) cp = cp * (hex ? 16 : 10) + c - 48;
    else if (hex && c >= 97 && c <= 102) cp = cp * 16 + c - 87;
    else if (hex && c >= 65 && c <= 70) cp = cp * 16 + c - 55;
    else cp = -1;
  }
  if (cp === -1 || !isXmlChar(cp)) {
    throw notWellFormed(
      `Expected a character reference to an XML character, found '&#${
        clip(raw.slice(start, end))
      };'`,
    );
  }
  return String.fromCodePoint(cp);
}

/** Checks raw character data and returns it with line ends normalized and references decoded. */
function checkText(raw: string): string {
  if (raw.indexOf("]]>") !== -1) {
    throw notWellFormed("Expected ']]>' only to end a CDATA section, found it in text");
  }
  if (raw.indexOf("\r") !== -1) raw = raw.replace(CRLF, "\n");
  return raw.indexOf("&") === -1 ? raw : decodeReferences(raw);
}

/** Applies attribute-value normalization (XML 1.0 §3.3.3) and reference decoding. */
function attributeValue(raw: string): string {
  if (raw.indexOf("\n") !== -1 || raw.indexOf("\t") !== -1 || raw.indexOf("\r") !== -1) {
    raw = raw.replace(ATTR_WHITESPACE, " ");
  }
  return raw.indexOf("&") === -1 ? raw : decodeReferences(raw);
}

/** Checks the `prefix:local` form Namespaces in XML asks for; `colon` is the first ':'. */
function checkQName(name: string, colon: number): void {
  if (
    colon === 0 || colon === name.length - 1 || name.indexOf(":", colon + 1) !== -1 ||
    !isNameStart(name.charCodeAt(colon + 1))
  ) {
    throw notWellFormed(`Expected a name of the form 'prefix:local', found '${clip(name)}'`);
  }
}

function setAttribute(attrs: Record<string, string>, name: string, value: string): void {
  if (name === "__proto__") {
    Object.defineProperty(attrs, name, {
      value,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  } else {
    attrs[name] = value;
  }
}

/** The tokenizer and tree builder behind {@link StreamParser} and {@link parseElement}. */
class Tokenizer {
  #handlers: StreamParserHandlers;
  #limits: XmlLimits;
  /** True for a standalone element under a virtual `jabber:client` root (parseElement). */
  #fragment: boolean;
  #fragmentDone = false;
  /**
   * A streaming decoder, made only once a chunk ends inside a multi-byte character (or holds
   * invalid bytes): until then whole chunks are decoded by a shared decoder, so an idle stream
   * keeps no native decoder (about 0.8 KiB each) and a login creates none.
   */
  #decoder: TextDecoder | undefined;
  /**
   * The bytes of an unfinished character the streaming decoder holds from the previous chunk:
   * when a chunk then turns out invalid, the characters before the invalid bytes are parsed
   * first, so the stream's events do not depend on where a read ended.
   */
  #carry: Uint8Array = NO_BYTES;
  /** Nothing decoded since the start or the last reset: a byte order mark here is dropped. */
  #atStart = true;
  /** Bumped by reset(), so a loop interrupted by a handler's reset() stops. */
  #generation = 0;
  #state = ST_START;
  /** A high surrogate held back from the end of a string chunk. */
  #pendingHigh = "";
  /** Whether the chunk being parsed is pure ASCII (so bytes equal characters). */
  #ascii = true;

  // Pieces of the construct under way, kept across chunks.
  #startBuf = "";
  #declBuf = "";
  #textRaw = "";
  #textDone = "";
  #nameAcc = "";
  #tagName = "";
  #attrNames: string[] = [];
  #attrValues: string[] = [];
  /** Offset of the first ':' in each attribute name, or -1. */
  #attrColons: number[] = [];
  #tagColon = -1;
  #attrCount = 0;
  #sawSpace = false;
  #quote = 39;
  #valueAcc = "";
  #bang = "";
  #cdata = "";

  // Open elements: level 0 is the stream root (or the virtual root of a fragment).
  #level = -1;
  #els: (Element | undefined)[] = [];
  #qnames: string[] = [];
  #defaultNs: string[] = [];
  #prefixes: (Map<string, string> | null)[] = [];
  #contentNs: string | undefined = undefined;

  // Size of the stream header or the stanza under way. Characters are counted until the size
  // could exceed the limit (bytes <= 3 * characters); the chunks seen so far are kept so their
  // exact UTF-8 size can then be computed, and counting goes on in bytes.
  #counting = false;
  #countExact = false;
  #countChars = 0;
  #countBytes = 0;
  #countFrom = 0;
  #countLimit = 0;
  #keptChunks: string[] = [];
  #keptFrom: number[] = [];
  #keptTo: number[] = [];
  #keptCount = 0;

  // Next positions of characters that need attention in the chunk being parsed, so text runs
  // and attribute values are not each searched again (NOT_FOUND once none is left).
  #nextAmp = -1;
  #nextCR = -1;
  #nextLF = -1;
  #nextTab = -1;
  #nextLt = -1;
  #nextCdataEnd = -1;

  constructor(
    handlers: StreamParserHandlers,
    limits: Partial<XmlLimits> | undefined,
    fragment: boolean,
  ) {
    this.#handlers = handlers;
    this.#limits = { ...DEFAULT_XML_LIMITS };
    if (limits) this.setLimits(limits);
    this.#fragment = fragment;
    this.#init();
  }

  get contentNamespace(): string | undefined {
    return this.#contentNs;
  }

  get limits(): XmlLimits {
    return { ...this.#limits };
  }

  setLimits(limits: Partial<XmlLimits>): void {
    for (const key of ["maxStanzaBytes", "maxDepth", "maxAttributes"] as const) {
      const value = limits[key];
      if (value === undefined) continue;
      if (!Number.isInteger(value) || value < 1) {
        throw new RangeError(`Expected ${key} to be a positive integer, found ${value}`);
      }
      this.#limits[key] = value;
    }
  }

  reset(): void {
    this.#generation++;
    this.#decoder = undefined;
    this.#carry = NO_BYTES;
    this.#atStart = true;
    this.#init();
  }

  #init(): void {
    this.#state = this.#fragment ? ST_TEXT : ST_START;
    this.#fragmentDone = false;
    this.#pendingHigh = "";
    this.#startBuf =
      this.#declBuf =
      this.#tagName =
      this.#bang =
        "";
    this.#clearPieces();
    this.#attrCount = 0;
    this.#els.length = 0;
    this.#qnames.length = 0;
    this.#defaultNs.length = 0;
    this.#prefixes.length = 0;
    this.#stopCount();
    this.#contentNs = undefined;
    if (this.#fragment) {
      this.#level = 0;
      this.#els[0] = undefined;
      this.#qnames[0] = "";
      this.#defaultNs[0] = NS_CLIENT;
      this.#prefixes[0] = null;
    } else {
      this.#level = -1;
    }
  }

  /** True when a fragment holds exactly one complete element and nothing unfinished. */
  get fragmentComplete(): boolean {
    return this.#fragmentDone && this.#state === ST_TEXT && this.#pendingHigh === "";
  }

  feed(chunk: Uint8Array | string): void {
    if (this.#state === ST_DONE) return;
    let s: string;
    const fromString = typeof chunk === "string";
    if (fromString) {
      s = this.#pendingHigh === "" ? chunk : this.#pendingHigh + chunk;
      this.#pendingHigh = "";
      const last = s.charCodeAt(s.length - 1);
      if (last >= 0xd800 && last <= 0xdbff) {
        this.#pendingHigh = s.slice(-1);
        s = s.slice(0, -1);
      }
    } else {
      try {
        s = this.#decode(chunk);
      } catch {
        this.#invalidUtf8(chunk);
        return;
      }
    }
    if (s.length === 0) return;
    this.#processChecked(s, fromString);
  }

  /** Parses decoded text, turning a parse failure into the stream's error. */
  #processChecked(s: string, fromString: boolean): void {
    const generation = this.#generation;
    try {
      this.#process(s, fromString);
    } catch (e) {
      if (!(e instanceof XmlStreamError) || this.#generation !== generation) throw e;
      this.#fail(e);
    }
  }

  /**
   * A chunk holds invalid UTF-8: what precedes the invalid bytes is parsed as if it had come
   * alone (it may hold stanzas, or an earlier error), then the stream fails.
   */
  #invalidUtf8(chunk: Uint8Array): void {
    let bytes = chunk;
    if (this.#carry.length > 0) {
      bytes = new Uint8Array(this.#carry.length + chunk.length);
      bytes.set(this.#carry);
      bytes.set(chunk, this.#carry.length);
    }
    this.#decoder = undefined;
    this.#carry = NO_BYTES;
    let s = WHOLE_UTF8.decode(bytes.subarray(0, validUtf8Length(bytes)));
    if (this.#atStart && s.length > 0) {
      this.#atStart = false;
      if (s.charCodeAt(0) === 0xfeff) s = s.slice(1);
    }
    const generation = this.#generation;
    if (s.length > 0) this.#processChecked(s, false);
    if (this.#generation !== generation || this.#state === ST_DONE) return;
    this.#fail(
      new XmlStreamError(
        "unsupported-encoding",
        "Expected UTF-8 (RFC 6120 §11.6), found an invalid byte sequence",
      ),
    );
  }

  /** UTF-8 to text; throws on invalid bytes (a character split across chunks is fine). */
  #decode(chunk: Uint8Array): string {
    if (this.#decoder) {
      const s = this.#decoder.decode(chunk, { stream: true });
      this.#carry = unfinishedTail(this.#carry, chunk);
      return s;
    }
    let s: string;
    try {
      s = WHOLE_UTF8.decode(chunk);
    } catch {
      // Invalid bytes, or a character that continues in the next chunk: only a streaming
      // decoder tells them apart, and it keeps the partial character for the next chunk.
      this.#decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: !this.#atStart });
      s = this.#decoder.decode(chunk, { stream: true });
      this.#carry = unfinishedTail(NO_BYTES, chunk);
      if (s.length > 0) this.#atStart = false;
      return s;
    }
    if (this.#atStart && s.length > 0) {
      this.#atStart = false;
      if (s.charCodeAt(0) === 0xfeff) s = s.slice(1);
    }
    return s;
  }

  #fail(error: XmlStreamError): void {
    this.#state = ST_DONE;
    this.#els.length = 0;
    this.#clearPieces();
    this.#handlers.error(error);
  }

  /** Drops the partial text, names and values (which may be large) kept across chunks. */
  #clearPieces(): void {
    this.#textRaw = "";
    this.#textDone = "";
    this.#valueAcc = "";
    this.#cdata = "";
    this.#nameAcc = "";
  }

  /** Screens a decoded chunk for characters XML forbids, then parses what precedes them. */
  #process(s: string, fromString: boolean): void {
    let badAt = -1;
    const special = s.search(SPECIAL);
    if (special === -1) {
      this.#ascii = true;
    } else {
      NON_ASCII.lastIndex = special;
      this.#ascii = !NON_ASCII.test(s);
      CONTROL_CHAR.lastIndex = special;
      const control = CONTROL_CHAR.exec(s);
      if (control !== null) badAt = control.index;
      if (!this.#ascii) {
        for (const nonCharacter of ["\ufffe", "\uffff"]) {
          const at = s.indexOf(nonCharacter, special);
          if (at !== -1 && (badAt === -1 || at < badAt)) badAt = at;
        }
        if (fromString && !s.isWellFormed()) {
          const lone = loneSurrogateIndex(s);
          if (badAt === -1 || lone < badAt) badAt = lone;
        }
      }
    }
    const generation = this.#generation;
    if (badAt === -1) {
      this.#run(s);
      return;
    }
    const bad = describeChar(s, badAt);
    if (badAt > 0) this.#run(s.slice(0, badAt));
    if (this.#generation === generation && this.#state !== ST_DONE) {
      throw notWellFormed(`Expected XML characters only, found ${bad}`);
    }
  }

  #run(s: string): void {
    if (this.#state === ST_START) {
      s = this.#startBuf + s;
      this.#startBuf = "";
      const prefix = "<?xml";
      let i = 0;
      const n = Math.min(s.length, 5);
      while (i < n && s.charCodeAt(i) === prefix.charCodeAt(i)) i++;
      if (i === n && s.length < 6) {
        this.#startBuf = s; // too short to tell whether an XML declaration starts here
        return;
      }
      this.#state = i === 5 && isWhitespaceCode(s.charCodeAt(5)) ? ST_XMLDECL : ST_TEXT;
      this.#declBuf = "";
      this.#startCount(0, MAX_HEADER_BYTES);
    }
    this.#parse(s);
  }

  #startCount(pos: number, limit: number): void {
    this.#counting = true;
    this.#countExact = false;
    this.#countChars = 0;
    this.#countBytes = 0;
    this.#countFrom = pos;
    this.#countLimit = limit;
  }

  #stopCount(): void {
    this.#counting = false;
    this.#forgetKeptChunks();
  }

  #forgetKeptChunks(): void {
    // Entries are overwritten rather than removed; long lists are dropped to free their chunks.
    if (this.#keptCount > 16) {
      this.#keptChunks.length = 0;
      this.#keptFrom.length = 0;
      this.#keptTo.length = 0;
    }
    this.#keptCount = 0;
  }

  /** Adds `s[countFrom, pos)` to the count and enforces the limit. */
  #flushCount(s: string, pos: number): void {
    const from = this.#countFrom;
    this.#countFrom = pos;
    if (this.#countExact) {
      this.#countBytes += this.#ascii ? pos - from : utf8Length(s, from, pos);
    } else {
      const chars = this.#countChars += pos - from;
      if (chars * 3 <= this.#countLimit) {
        if (pos > from) {
          const i = this.#keptCount++;
          this.#keptChunks[i] = s;
          this.#keptFrom[i] = from;
          this.#keptTo[i] = pos;
        }
        return;
      }
      let bytes = chars > this.#countLimit ? chars : 0;
      if (bytes === 0) {
        const kept = this.#keptChunks;
        for (let i = 0; i < this.#keptCount; i++) {
          bytes += utf8Length(kept[i], this.#keptFrom[i], this.#keptTo[i]);
        }
        bytes += this.#ascii ? pos - from : utf8Length(s, from, pos);
      }
      this.#forgetKeptChunks();
      this.#countExact = true;
      this.#countBytes = bytes;
    }
    if (this.#countBytes > this.#countLimit) {
      throw policy(
        this.#level < 0
          ? `Expected a stream header of at most ${this.#countLimit} bytes, found more`
          : `Expected a stanza of at most ${this.#countLimit} bytes, found more`,
      );
    }
  }

  /** Cheap check (characters never outnumber bytes) so a huge single chunk fails early. */
  #checkCount(s: string, pos: number): void {
    if (
      this.#counting &&
      (this.#countExact ? this.#countBytes : this.#countChars) + pos - this.#countFrom >
        this.#countLimit
    ) {
      this.#flushCount(s, pos);
    }
  }

  /** Invalidates the next-position caches when a new chunk starts. */
  #forgetPositions(): void {
    this.#nextAmp = -1;
    this.#nextCR = -1;
    this.#nextLF = -1;
    this.#nextTab = -1;
    this.#nextLt = -1;
    this.#nextCdataEnd = -1;
  }

  #parse(s: string): void {
    const len = s.length;
    const generation = this.#generation;
    let p = 0;
    this.#forgetPositions();
    while (p < len) {
      switch (this.#state) {
        case ST_TEXT: {
          const lt = s.indexOf("<", p);
          const end = lt === -1 ? len : lt;
          if (end > p) {
            if (this.#level > 0) {
              if (this.#textRaw !== "" || lt === -1) {
                this.#textRaw += s.slice(p, end); // continues in the next chunk
              } else {
                const text = this.#textRun(s, p, end);
                this.#textDone = this.#textDone === "" ? text : this.#textDone + text;
              }
              this.#checkCount(s, end);
            } else if (!isWhitespace(s, p, end)) {
              throw notWellFormed(
                this.#level < 0 || this.#fragmentDone
                  ? `Expected only whitespace outside the root element, found '${
                    clip(s.slice(p, end).trim())
                  }'`
                  : `Expected only whitespace between stanzas, found '${
                    clip(s.slice(p, end).trim())
                  }'`,
              );
            }
          }
          if (lt === -1) {
            p = len;
            break;
          }
          if (this.#textRaw !== "") this.#settleText();
          if (this.#level === 0 && !this.#counting) {
            this.#startCount(lt, this.#limits.maxStanzaBytes);
          }
          p = lt + 1;
          this.#state = ST_LT;
          break;
        }
        case ST_LT: {
          const c = s.charCodeAt(p);
          if (c < 128 ? NAME_CHAR[c] === 1 : isWideNameStart(c)) {
            if (this.#fragmentDone) {
              throw notWellFormed(
                `Expected only whitespace after the element, found ${describeChar(s, p - 1)}`,
              );
            }
            const end = this.#fastStartTag(s, p);
            if (end !== -1) {
              if (this.#generation !== generation) return;
              p = end;
              break;
            }
            // The fast path may have moved the next-position caches past the attribute values
            // the slow path now reads again from the tag's start.
            this.#forgetPositions();
            this.#nameAcc = "";
            this.#state = ST_OPEN_NAME;
          } else if (c === 47) {
            p++;
            // Fast path: the expected end tag, complete in this chunk.
            const expected = this.#level >= 0 ? this.#qnames[this.#level] : "";
            const end = p + expected.length;
            if (
              expected !== "" && end < len && s.charCodeAt(end) === 62 && s.startsWith(expected, p)
            ) {
              this.#tagName = expected;
              p = end + 1;
              this.#closeElement(s, p);
              if (this.#generation !== generation) return;
              break;
            }
            this.#nameAcc = "";
            this.#state = ST_CLOSE_NAME;
          } else if (c === 33) {
            p++;
            this.#bang = "";
            this.#state = ST_BANG;
          } else if (c === 63) {
            throw restricted("Expected no processing instructions (RFC 6120 §11.1), found '<?'");
          } else {
            throw notWellFormed(`Expected a tag name after '<', found ${describeChar(s, p)}`);
          }
          break;
        }
        case ST_OPEN_NAME: {
          const q = scanName(s, p, len);
          if (q === len) {
            this.#nameAcc += s.slice(p);
            p = len;
            break;
          }
          this.#tagName = this.#nameAcc === "" ? s.slice(p, q) : this.#nameAcc + s.slice(p, q);
          this.#tagColon = this.#tagName.indexOf(":");
          this.#nameAcc = "";
          this.#attrCount = 0;
          this.#sawSpace = false;
          this.#state = ST_ATTRS;
          p = q;
          break;
        }
        case ST_ATTRS: {
          let c = s.charCodeAt(p);
          if (isWhitespaceCode(c)) {
            this.#sawSpace = true;
            do {
              if (++p === len) break;
              c = s.charCodeAt(p);
            } while (isWhitespaceCode(c));
            if (p === len) break;
          }
          if (c === 62) {
            p++;
            this.#openElement(s, p, false);
            if (this.#generation !== generation) return;
          } else if (c === 47) {
            p++;
            this.#state = ST_EMPTY_GT;
          } else if (this.#sawSpace && (c < 128 ? NAME_CHAR[c] === 1 : isWideNameStart(c))) {
            if (this.#attrCount >= this.#limits.maxAttributes) {
              throw policy(
                `Expected at most ${this.#limits.maxAttributes} attributes on <${
                  clip(this.#tagName)
                }>, found more`,
              );
            }
            this.#nameAcc = "";
            this.#state = ST_ATTR_NAME;
          } else {
            throw notWellFormed(
              this.#sawSpace
                ? `Expected an attribute, '>' or '/>' in <${clip(this.#tagName)}>, found ${
                  describeChar(s, p)
                }`
                : `Expected whitespace, '>' or '/>' in <${clip(this.#tagName)}>, found ${
                  describeChar(s, p)
                }`,
            );
          }
          break;
        }
        case ST_ATTR_NAME: {
          const q = scanName(s, p, len);
          if (q === len) {
            this.#nameAcc += s.slice(p);
            p = len;
            break;
          }
          const name = this.#nameAcc === "" ? s.slice(p, q) : this.#nameAcc + s.slice(p, q);
          this.#attrNames[this.#attrCount] = name;
          this.#attrColons[this.#attrCount] = name.indexOf(":");
          this.#nameAcc = "";
          this.#state = ST_ATTR_EQ;
          p = q;
          break;
        }
        case ST_ATTR_EQ:
        case ST_ATTR_QUOTE: {
          let c = s.charCodeAt(p);
          while (isWhitespaceCode(c)) {
            if (++p === len) break;
            c = s.charCodeAt(p);
          }
          if (p === len) break;
          if (this.#state === ST_ATTR_EQ) {
            if (c !== 61) {
              throw notWellFormed(
                `Expected '=' after the attribute name '${
                  clip(this.#attrNames[this.#attrCount])
                }', found ${describeChar(s, p)}`,
              );
            }
            this.#state = ST_ATTR_QUOTE;
          } else {
            if (c !== 39 && c !== 34) {
              throw notWellFormed(
                `Expected a quoted value for the attribute '${
                  clip(this.#attrNames[this.#attrCount])
                }', found ${describeChar(s, p)}`,
              );
            }
            this.#quote = c;
            this.#valueAcc = "";
            this.#state = ST_ATTR_VALUE;
          }
          p++;
          break;
        }
        case ST_ATTR_VALUE: {
          const q = s.indexOf(this.#quote === 39 ? "'" : '"', p);
          const end = q === -1 ? len : q;
          if (this.#nextLt < p) this.#nextLt = find(s, "<", p);
          if (this.#nextLt < end) {
            throw notWellFormed(
              `Expected no '<' in the value of the attribute '${
                clip(this.#attrNames[this.#attrCount])
              }', found one`,
            );
          }
          if (q === -1) {
            this.#valueAcc += s.slice(p);
            p = len;
            break;
          }
          this.#attrValues[this.#attrCount++] = this.#valueAcc === ""
            ? this.#attributeRun(s, p, q)
            : attributeValue(this.#valueAcc + s.slice(p, q));
          this.#valueAcc = "";
          this.#sawSpace = false;
          this.#state = ST_ATTRS;
          p = q + 1;
          break;
        }
        case ST_EMPTY_GT: {
          if (s.charCodeAt(p) !== 62) {
            throw notWellFormed(
              `Expected '>' after '/' in <${clip(this.#tagName)}>, found ${describeChar(s, p)}`,
            );
          }
          p++;
          this.#openElement(s, p, true);
          if (this.#generation !== generation) return;
          break;
        }
        case ST_CLOSE_NAME: {
          if (this.#nameAcc === "" && !isNameStart(s.charCodeAt(p))) {
            throw notWellFormed(`Expected a tag name after '</', found ${describeChar(s, p)}`);
          }
          const q = scanName(s, p, len);
          if (q === len) {
            this.#nameAcc += s.slice(p);
            p = len;
            break;
          }
          this.#tagName = this.#nameAcc === "" ? s.slice(p, q) : this.#nameAcc + s.slice(p, q);
          this.#nameAcc = "";
          this.#state = ST_CLOSE_GT;
          p = q;
          break;
        }
        case ST_CLOSE_GT: {
          let c = s.charCodeAt(p);
          while (isWhitespaceCode(c)) {
            if (++p === len) break;
            c = s.charCodeAt(p);
          }
          if (p === len) break;
          if (c !== 62) {
            throw notWellFormed(
              `Expected '>' to end </${clip(this.#tagName)}, found ${describeChar(s, p)}`,
            );
          }
          p++;
          this.#closeElement(s, p);
          if (this.#generation !== generation) return;
          break;
        }
        case ST_BANG: {
          if (this.#bang === "") {
            const c = s.charCodeAt(p);
            if (c === 45) {
              throw restricted("Expected no comments (RFC 6120 §11.1), found '<!-'");
            }
            if (c >= 65 && c <= 90) {
              throw restricted(
                `Expected no DTD or markup declarations (RFC 6120 §11.1), found '<!${
                  s.slice(p, p + 7)
                }'`,
              );
            }
          }
          const take = s.slice(p, p + 7 - this.#bang.length);
          this.#bang += take;
          p += take.length;
          if (!"[CDATA[".startsWith(this.#bang)) {
            throw notWellFormed(`Expected '<![CDATA[', found '<!${clip(this.#bang)}'`);
          }
          if (this.#bang.length === 7) {
            if (this.#level < 1) {
              throw notWellFormed(
                "Expected CDATA sections only inside a stanza, found one outside",
              );
            }
            this.#settleText();
            this.#cdata = "";
            this.#state = ST_CDATA;
          }
          break;
        }
        case ST_CDATA: {
          const held = this.#cdata;
          let content: string | undefined;
          if (held.length > 0) {
            // The ']]>' may straddle the previous chunk and this one.
            const c = s.charCodeAt(p);
            if (c === 62 && held.endsWith("]]")) {
              content = held.slice(0, -2);
              p += 1;
            } else if (
              c === 93 && p + 1 < len && s.charCodeAt(p + 1) === 62 && held.endsWith("]")
            ) {
              content = held.slice(0, -1);
              p += 2;
            }
          }
          if (content === undefined) {
            const end = s.indexOf("]]>", p);
            if (end === -1) {
              this.#cdata = held + s.slice(p);
              p = len;
              this.#checkCount(s, p);
              break;
            }
            content = held + s.slice(p, end);
            p = end + 3;
          }
          this.#cdata = "";
          if (content.indexOf("\r") !== -1) {
            content = content.replace(CRLF, "\n");
          }
          this.#textDone += content;
          this.#state = ST_TEXT;
          break;
        }
        case ST_XMLDECL: {
          let end = -1;
          if (this.#declBuf.endsWith("?") && s.charCodeAt(p) === 62) {
            end = p + 1;
          } else {
            const q = s.indexOf("?>", p);
            if (q !== -1) end = q + 2;
          }
          if (end === -1) {
            this.#declBuf += s.slice(p);
            p = len;
          } else {
            this.#declBuf += s.slice(p, end);
            p = end;
          }
          if (this.#declBuf.length > MAX_XML_DECL_CHARS) {
            throw notWellFormed(
              `Expected an XML declaration of at most ${MAX_XML_DECL_CHARS} characters, found more`,
            );
          }
          if (end !== -1) {
            this.#checkXmlDeclaration(this.#declBuf);
            this.#declBuf = "";
            this.#state = ST_TEXT;
          }
          break;
        }
        default:
          return; // ST_DONE
      }
    }
    if (this.#counting && this.#state !== ST_DONE) {
      this.#flushCount(s, len);
      this.#countFrom = 0;
    }
  }

  /**
   * Parses a start tag that lies entirely in `s` from the name at `p`, and returns the position
   * after its '>'; or returns -1, leaving the state machine to parse it (and report errors).
   */
  #fastStartTag(s: string, p: number): number {
    const len = s.length;
    let q = scanQName(s, p, len);
    if (q === len) return -1;
    const tagEnd = q;
    const tagColon = scannedColon === -1 ? -1 : scannedColon - p;
    const names = this.#attrNames;
    const values = this.#attrValues;
    const colons = this.#attrColons;
    const maxAttributes = this.#limits.maxAttributes;
    let count = 0;
    for (;;) {
      let c = s.charCodeAt(q);
      let space = false;
      while (c === 32 || c === 10 || c === 9 || c === 13) {
        space = true;
        if (++q === len) return -1;
        c = s.charCodeAt(q);
      }
      if (c === 62 || c === 47) {
        const selfClosing = c === 47;
        if (selfClosing && (q + 1 === len || s.charCodeAt(q + 1) !== 62)) return -1;
        this.#tagName = s.slice(p, tagEnd);
        this.#tagColon = tagColon;
        this.#attrCount = count;
        q += selfClosing ? 2 : 1;
        this.#openElement(s, q, selfClosing);
        return q;
      }
      if (
        !space || count >= maxAttributes || !(c < 128 ? NAME_CHAR[c] === 1 : isWideNameStart(c))
      ) {
        return -1;
      }
      const nameStart = q;
      q = scanQName(s, q, len);
      if (q === len) return -1;
      const name = s.slice(nameStart, q);
      const colon = scannedColon === -1 ? -1 : scannedColon - nameStart;
      c = s.charCodeAt(q);
      while (c === 32 || c === 10 || c === 9 || c === 13) {
        if (++q === len) return -1;
        c = s.charCodeAt(q);
      }
      if (c !== 61 || ++q === len) return -1;
      c = s.charCodeAt(q);
      while (c === 32 || c === 10 || c === 9 || c === 13) {
        if (++q === len) return -1;
        c = s.charCodeAt(q);
      }
      if (c !== 39 && c !== 34) return -1;
      const close = s.indexOf(c === 39 ? "'" : '"', q + 1);
      if (close === -1) return -1;
      if (this.#nextLt <= q) this.#nextLt = find(s, "<", q + 1);
      if (this.#nextLt < close) return -1;
      names[count] = name;
      colons[count] = colon;
      values[count++] = this.#attributeRun(s, q + 1, close);
      q = close + 1;
    }
  }

  #checkXmlDeclaration(decl: string): void {
    const match = XML_DECL.exec(decl);
    if (match === null) {
      throw notWellFormed(
        `Expected an XML declaration like <?xml version='1.0'?>, found '${clip(decl)}'`,
      );
    }
    const encoding = match[1] ?? match[2];
    if (encoding !== undefined && encoding.toLowerCase() !== "utf-8") {
      throw new XmlStreamError(
        "unsupported-encoding",
        `Expected the UTF-8 encoding (RFC 6120 §11.6), found '${clip(encoding)}'`,
      );
    }
  }

  /** Checks and decodes the text `s[from, to)`, using the chunk's next-position caches. */
  #textRun(s: string, from: number, to: number): string {
    let text = s.slice(from, to);
    if (this.#nextCdataEnd < from) this.#nextCdataEnd = find(s, "]]>", from);
    if (this.#nextCdataEnd + 3 <= to) {
      throw notWellFormed("Expected ']]>' only to end a CDATA section, found it in text");
    }
    if (this.#nextCR < from) this.#nextCR = find(s, "\r", from);
    if (this.#nextCR < to) text = text.replace(CRLF, "\n");
    if (this.#nextAmp < from) this.#nextAmp = find(s, "&", from);
    return this.#nextAmp < to ? decodeReferences(text) : text;
  }

  /** Normalizes and decodes the attribute value `s[from, to)`, like {@link #textRun}. */
  #attributeRun(s: string, from: number, to: number): string {
    let value = s.slice(from, to);
    if (this.#nextLF < from) this.#nextLF = find(s, "\n", from);
    if (this.#nextTab < from) this.#nextTab = find(s, "\t", from);
    if (this.#nextCR < from) this.#nextCR = find(s, "\r", from);
    if (this.#nextLF < to || this.#nextTab < to || this.#nextCR < to) {
      value = value.replace(ATTR_WHITESPACE, " ");
    }
    if (this.#nextAmp < from) this.#nextAmp = find(s, "&", from);
    return this.#nextAmp < to ? decodeReferences(value) : value;
  }

  /** Decodes pending raw text into the decoded text buffer (before a CDATA section). */
  #settleText(): void {
    const raw = this.#textRaw;
    if (raw === "") return;
    this.#textRaw = "";
    this.#textDone += checkText(raw);
  }

  /** Appends the text gathered since the last tag to the innermost open element. */
  #flushText(): void {
    const text = this.#textDone;
    if (text === "") return;
    this.#textDone = "";
    this.#els[this.#level]!.children.push(text);
  }

  #resolvePrefix(prefix: string, own: Map<string, string> | null, level: number): number {
    if (own !== null && own.has(prefix)) return level;
    for (let i = level - 1; i >= 0; i--) {
      const declared = this.#prefixes[i];
      if (declared !== null && declared.has(prefix)) return i;
    }
    return -1;
  }

  #namespaceOf(prefix: string, own: Map<string, string> | null, level: number): string | undefined {
    const at = this.#resolvePrefix(prefix, own, level);
    if (at === -1) return prefix === "xml" ? NS_XML : undefined;
    return (at === level ? own : this.#prefixes[at])!.get(prefix);
  }

  /** Builds the element whose start tag just ended at `p` and links it into the tree. */
  #openElement(s: string, p: number, selfClosing: boolean): void {
    const qname = this.#tagName;
    const level = this.#level + 1;
    if (level > this.#limits.maxDepth) {
      throw policy(
        `Expected elements nested at most ${this.#limits.maxDepth} deep, found <${
          clip(qname)
        }> at depth ${level}`,
      );
    }
    if (level >= 2) this.#flushText();
    let defaultNs = level === 0 ? "" : this.#defaultNs[level - 1];
    let declared: Map<string, string> | null = null;
    const attrs: Record<string, string> = {};
    const names = this.#attrNames;
    const values = this.#attrValues;
    const colons = this.#attrColons;
    const count = this.#attrCount;
    let prefixedAttrs = false;
    for (let i = 0; i < count; i++) {
      const name = names[i];
      const value = values[i];
      for (let j = 0; j < i; j++) {
        if (names[j] === name) {
          throw notWellFormed(
            `Expected unique attribute names in <${clip(qname)}>, found '${clip(name)}' twice`,
          );
        }
      }
      const colon = colons[i];
      if (
        (colon === -1 ? name.length === 5 : colon === 5) && name.charCodeAt(0) === 120 &&
        name.startsWith("xmlns")
      ) {
        if (colon === -1) {
          if (value === NS_XML || value === NS_XMLNS) {
            throw notWellFormed(`Expected a usable default namespace, found '${value}'`);
          }
          defaultNs = value;
          continue;
        }
        const prefix = name.slice(6);
        checkPrefixDeclaration(name, prefix, value);
        (declared ??= new Map()).set(prefix, value);
        setAttribute(attrs, name, value);
        continue;
      }
      if (colon !== -1) {
        checkQName(name, colon);
        prefixedAttrs = true;
      }
      setAttribute(attrs, name, value);
    }

    let local = qname;
    let ns = defaultNs;
    const colon = this.#tagColon;
    if (colon !== -1) {
      checkQName(qname, colon);
      const prefix = qname.slice(0, colon);
      local = qname.slice(colon + 1);
      const uri = prefix === "xmlns" ? undefined : this.#namespaceOf(prefix, declared, level);
      if (uri === undefined) {
        throw new XmlStreamError(
          level === 0 ? "invalid-namespace" : "not-well-formed",
          `Expected a declared namespace prefix, found '${clip(prefix)}' in <${clip(qname)}>`,
        );
      }
      ns = uri;
    }

    const el = new Element(local);
    el.ns = ns;
    el.attrs = attrs;
    if (prefixedAttrs) this.#checkPrefixedAttributes(el, declared, level);

    if (level === 0) {
      if (ns !== NS_STREAM) {
        throw new XmlStreamError(
          "invalid-namespace",
          `Expected the stream header in the namespace '${NS_STREAM}', found '${clip(ns)}'`,
        );
      }
      if (local !== "stream") {
        throw new XmlStreamError(
          "bad-format",
          `Expected the root element <stream:stream>, found <${clip(qname)}>`,
        );
      }
      if (selfClosing) {
        throw new XmlStreamError("bad-format", "Expected an open stream header, found '/>'");
      }
      this.#flushCount(s, p);
      this.#stopCount();
      this.#push(0, el, qname, defaultNs, declared);
      this.#contentNs = defaultNs;
      this.#state = ST_TEXT;
      this.#handlers.streamOpen(el);
      return;
    }

    if (level >= 2) {
      const parent = this.#els[level - 1]!;
      el.parent = parent;
      parent.children.push(el);
    }
    this.#state = ST_TEXT;
    if (selfClosing) {
      if (level === 1) this.#emitStanza(el, s, p);
      return;
    }
    this.#push(level, el, qname, defaultNs, declared);
    this.#checkCount(s, p);
  }

  #push(
    level: number,
    el: Element,
    qname: string,
    defaultNs: string,
    declared: Map<string, string> | null,
  ): void {
    this.#level = level;
    this.#els[level] = el;
    this.#qnames[level] = qname;
    this.#defaultNs[level] = defaultNs;
    this.#prefixes[level] = declared;
  }

  /**
   * Resolves prefixed attribute names and rejects two that expand to the same name. A prefix
   * declared on the stream root is re-declared on the stanza so the stanza stands alone.
   */
  #checkPrefixedAttributes(el: Element, declared: Map<string, string> | null, level: number) {
    const seen: string[] = [];
    for (const name in el.attrs) {
      const colon = name.indexOf(":");
      if (colon === -1 || name.startsWith("xmlns:")) continue;
      const prefix = name.slice(0, colon);
      const at = this.#resolvePrefix(prefix, declared, level);
      let uri: string | undefined;
      if (at === -1) {
        uri = prefix === "xml" ? NS_XML : undefined;
      } else {
        uri = (at === level ? declared : this.#prefixes[at])!.get(prefix);
        if (at === 0 && level >= 1 && !this.#fragment) {
          const stanza = level === 1 ? el : this.#els[1]!;
          stanza.attrs["xmlns:" + prefix] ??= uri!;
        }
      }
      if (uri === undefined) {
        throw notWellFormed(
          `Expected a declared namespace prefix, found '${clip(prefix)}' in the attribute '${
            clip(name)
          }'`,
        );
      }
      const expanded = uri + " " + name.slice(colon + 1);
      if (seen.includes(expanded)) {
        throw notWellFormed(
          `Expected unique attribute names in <${clip(el.name)}>, found '${
            clip(name)
          }' duplicating another after namespace resolution`,
        );
      }
      seen.push(expanded);
    }
  }

  /** Handles the end tag that just ended at `p`. */
  #closeElement(s: string, p: number): void {
    const level = this.#level;
    const qname = this.#tagName;
    if (level < 0 || (level === 0 && this.#fragment)) {
      throw notWellFormed(`Expected no end tag here, found </${clip(qname)}>`);
    }
    const expected = this.#qnames[level];
    if (qname !== expected) {
      throw notWellFormed(`Expected </${clip(expected)}>, found </${clip(qname)}>`);
    }
    if (level === 0) {
      this.#stopCount();
      this.#state = ST_DONE;
      this.#els.length = 0;
      this.#handlers.streamClose();
      return;
    }
    this.#flushText();
    const el = this.#els[level]!;
    this.#els[level] = undefined;
    this.#prefixes[level] = null;
    this.#level = level - 1;
    this.#state = ST_TEXT;
    if (level === 1) this.#emitStanza(el, s, p);
  }

  #emitStanza(el: Element, s: string, p: number): void {
    this.#flushCount(s, p);
    this.#stopCount();
    if (this.#fragment) this.#fragmentDone = true;
    this.#handlers.stanza(el);
  }
}

function checkPrefixDeclaration(name: string, prefix: string, value: string): void {
  if (!isXmlName(prefix) || prefix.indexOf(":") !== -1) {
    throw notWellFormed(`Expected a namespace declaration 'xmlns:prefix', found '${clip(name)}'`);
  }
  if (prefix === "xmlns" || value === NS_XMLNS) {
    throw notWellFormed(
      `Expected no declaration of the reserved 'xmlns' namespace, found '${name}'`,
    );
  }
  if ((prefix === "xml") !== (value === NS_XML)) {
    throw notWellFormed(`Expected the 'xml' prefix bound only to '${NS_XML}', found '${name}'`);
  }
  if (value === "") {
    throw notWellFormed(`Expected a namespace name for '${clip(name)}', found an empty value`);
  }
}

/** Like indexOf, but "not found" is a position past any string, so caches stay valid. */
function find(s: string, search: string, from: number): number {
  const at = s.indexOf(search, from);
  return at === -1 ? NOT_FOUND : at;
}

const NO_BYTES = new Uint8Array(0);

/**
 * The bytes of a character left unfinished at the end of `chunk` (with `previous`, the
 * unfinished bytes before it, when the chunk is shorter than a character): what a streaming
 * UTF-8 decoder keeps for the next chunk.
 */
function unfinishedTail(previous: Uint8Array, chunk: Uint8Array): Uint8Array {
  let bytes = chunk;
  if (chunk.length < 3 && previous.length > 0) {
    bytes = new Uint8Array(previous.length + chunk.length);
    bytes.set(previous);
    bytes.set(chunk, previous.length);
  }
  const end = bytes.length;
  for (let back = 1; back <= 3 && back <= end; back++) {
    const b = bytes[end - back];
    if ((b & 0xc0) === 0x80) continue; // a continuation byte: look further back
    const length = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    return length > back ? bytes.slice(end - back) : NO_BYTES;
  }
  return NO_BYTES;
}

/** How many bytes at the start of `bytes` are whole, valid UTF-8 characters. */
function validUtf8Length(bytes: Uint8Array): number {
  let i = 0;
  const end = bytes.length;
  while (i < end) {
    const b = bytes[i];
    if (b < 0x80) {
      i++;
      continue;
    }
    let length: number;
    let min: number;
    let max = 0xbf; // the allowed range of the second byte (RFC 3629 §4)
    if (b >= 0xc2 && b <= 0xdf) {
      length = 2;
      min = 0x80;
    } else if (b >= 0xe0 && b <= 0xef) {
      length = 3;
      min = b === 0xe0 ? 0xa0 : 0x80;
      if (b === 0xed) max = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      length = 4;
      min = b === 0xf0 ? 0x90 : 0x80;
      if (b === 0xf4) max = 0x8f;
    } else {
      return i;
    }
    if (i + length > end) return i;
    if (bytes[i + 1] < min || bytes[i + 1] > max) return i;
    for (let k = 2; k < length; k++) {
      if ((bytes[i + k] & 0xc0) !== 0x80) return i;
    }
    i += length;
  }
  return i;
}

function loneSurrogateIndex(s: string): number {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
      else return i;
    } else if (c >= 0xdc00 && c <= 0xdfff) {
      return i;
    }
  }
  return -1;
}

/**
 * Incremental parser for one direction of an XMPP connection: feed it bytes as they arrive and
 * it reports the stream header, each complete stanza (as an {@link Element} tree), the stream's
 * end, or the first error.
 *
 * Chunks may be split anywhere, including inside UTF-8 sequences, tags, references and attribute
 * values. Only the construct under way is kept between chunks, and a stanza is rejected as soon
 * as it grows past `maxStanzaBytes`.
 *
 * @example
 * ```ts
 * const parser = new StreamParser({
 *   streamOpen: (header) => console.log("stream to", header.attr("to")),
 *   stanza: (stanza) => console.log(stanza.name),
 *   streamClose: () => console.log("closed"),
 *   error: (e) => console.log(e.condition, e.message),
 * });
 * parser.feed(new TextEncoder().encode("<stream:stream xmlns='jabber:client' " +
 *   "xmlns:stream='http://etherx.jabber.org/streams'><presence/>"));
 * ```
 */
export class StreamParser {
  #tokenizer: Tokenizer;

  /** Creates a parser reporting to `handlers`, with optional overrides of the default limits. */
  constructor(handlers: StreamParserHandlers, limits?: Partial<XmlLimits>) {
    this.#tokenizer = new Tokenizer(handlers, limits, false);
  }

  /**
   * Parses the next piece of the stream. Handlers run synchronously from inside this call; a
   * handler that calls {@link reset} discards the rest of the chunk being fed.
   */
  feed(chunk: Uint8Array | string): void {
    this.#tokenizer.feed(chunk);
  }

  /**
   * Starts over for a new stream (after STARTTLS or SASL success): fresh UTF-8 decoder, an
   * optional XML declaration, then a new root. Input not yet parsed is discarded, and an
   * earlier error is forgotten.
   */
  reset(): void {
    this.#tokenizer.reset();
  }

  /** Changes limits; a new stanza limit applies from the next stanza on. */
  setLimits(limits: Partial<XmlLimits>): void {
    this.#tokenizer.setLimits(limits);
  }

  /** The limits in force. */
  get limits(): XmlLimits {
    return this.#tokenizer.limits;
  }

  /**
   * The default namespace the stream header declared (`jabber:client`, `jabber:server`, …),
   * "" when it declared none, or undefined before the header arrived. The header Element
   * itself does not keep it, since `attrs` never holds `xmlns`.
   */
  get contentNamespace(): string | undefined {
    return this.#tokenizer.contentNamespace;
  }
}

/**
 * Parses one complete standalone element, e.g. a stanza read back from storage. Whitespace may
 * surround it; anything else is an error. Without an `xmlns` declaration the element is in
 * `jabber:client`.
 *
 * @throws {XmlStreamError} when the text is not exactly one well-formed, allowed element.
 */
export function parseElement(xml: string, limits?: Partial<XmlLimits>): Element {
  let result: Element | undefined;
  let failure: XmlStreamError | undefined;
  const tokenizer = new Tokenizer(
    {
      streamOpen() {},
      stanza(stanza) {
        result = stanza;
      },
      streamClose() {},
      error(error) {
        failure = error;
      },
    },
    limits,
    true,
  );
  tokenizer.feed(xml);
  if (failure !== undefined) throw failure;
  if (result === undefined || !tokenizer.fragmentComplete) {
    throw notWellFormed(
      result === undefined
        ? "Expected one complete element, found " +
          (xml.trim() === "" ? "none" : "an unfinished one")
        : "Expected only whitespace after the element, found an unfinished construct",
    );
  }
  return result;
}
