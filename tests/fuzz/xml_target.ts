// The XML fuzz target: feeds mutated streams to the stream parser (core/xml/parser.ts) and checks
// what must hold for any input: only XmlStreamError failures, the same events however the bytes
// are chunked, stanzas that survive serialize/parse unchanged, and saxes' accept/reject verdict
// on the documents both parsers must judge alike (see differential.ts).

import { SaxesParser } from "saxes";
import type { Element } from "../../core/xml/element.ts";
import { parseElement, StreamParser, XmlStreamError } from "../../core/xml/parser.ts";
import { serialize } from "../../core/xml/serializer.ts";
import { encodeWithRawBytes, hasRawBytes, type Random, randomInt } from "./mutate.ts";
import { FuzzFinding, type FuzzTarget, shape } from "./target.ts";

/** Limits high enough that only well-formedness decides, for the differential and round trips. */
const UNLIMITED = { maxStanzaBytes: 1 << 30, maxDepth: 1 << 20, maxAttributes: 1 << 20 };

const CONDITIONS = new Set([
  "not-well-formed",
  "restricted-xml",
  "policy-violation",
  "unsupported-encoding",
  "invalid-namespace",
  "bad-format",
]);

/** What a stream parser reported, as comparable strings. */
interface StreamRun {
  events: string[];
  stanzas: Element[];
  error?: XmlStreamError;
}

/** Feeds `chunks` to a fresh parser; a throw out of `feed` is a finding. */
function runStream(chunks: (string | Uint8Array)[], how: string): StreamRun {
  const run: StreamRun = { events: [], stanzas: [] };
  const parser = new StreamParser({
    streamOpen(header) {
      run.events.push(`open ${serialize(header, "")}`);
    },
    stanza(stanza) {
      run.stanzas.push(stanza);
      run.events.push(`stanza ${serialize(stanza)}`);
    },
    streamClose() {
      run.events.push("close");
    },
    error(error) {
      if (!(error instanceof XmlStreamError) || !CONDITIONS.has(error.condition)) {
        throw new FuzzFinding("bad-error", `error handler got ${String(error)}`);
      }
      run.error = error;
      run.events.push(`error ${error.condition}`);
    },
  });
  for (const chunk of chunks) {
    try {
      parser.feed(chunk);
    } catch (error) {
      if (error instanceof FuzzFinding) throw error;
      throw new FuzzFinding("exception", `feed (${how}) threw ${describe(error)}`);
    }
  }
  return run;
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** Splits bytes at random places, including inside UTF-8 sequences. */
function splitBytes(random: Random, bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let at = 0;
  while (at < bytes.length) {
    const size = randomInt(random, 1, random() < 0.5 ? 4 : 200);
    out.push(bytes.subarray(at, at + size));
    at += size;
  }
  return out;
}

function splitString(random: Random, text: string): string[] {
  const out: string[] = [];
  let at = 0;
  while (at < text.length) {
    const size = randomInt(random, 1, random() < 0.5 ? 4 : 200);
    out.push(text.slice(at, at + size));
    at += size;
  }
  return out;
}

function sameEvents(a: StreamRun, b: StreamRun, what: string): void {
  const length = Math.max(a.events.length, b.events.length);
  for (let i = 0; i < length; i++) {
    if (a.events[i] !== b.events[i]) {
      throw new FuzzFinding(
        "chunking",
        `${what}: event ${i} differs: ${clip(a.events[i])} vs ${clip(b.events[i])}`,
      );
    }
  }
}

function clip(text: string | undefined): string {
  if (text === undefined) return "(none)";
  return text.length > 120 ? `${JSON.stringify(text.slice(0, 120))}…` : JSON.stringify(text);
}

/** A stanza serialized, parsed back and serialized again must come out the same. */
function checkRoundTrip(stanza: Element): void {
  const first = serialize(stanza);
  let again: Element;
  try {
    again = parseElement(first, UNLIMITED);
  } catch (error) {
    throw new FuzzFinding(
      "round-trip",
      `a stanza the parser produced serializes to text it refuses: ${describe(error)}; ` +
        `text ${clip(first)}`,
    );
  }
  const second = serialize(again);
  if (second !== first) {
    throw new FuzzFinding(
      "round-trip",
      `serialize(parse(x)) changed ${clip(first)} into ${clip(second)}`,
    );
  }
}

/**
 * Whether both parsers must judge `text` alike: Lilt refuses comments, processing
 * instructions (the XML declaration included) and DTDs by design (RFC 6120 §11.1), which saxes
 * accepts, so a document with `<!` other than `<![CDATA[`, or with `<?`, is not compared; nor is
 * one carrying raw bytes, which only the byte-fed stream sees, nor one with a lone surrogate
 * (no UTF-8 encodes it, so no socket delivers one; saxes lets it through as a character, which
 * XML 1.0's Char production excludes and Lilt refuses), nor one starting with U+FEFF (saxes
 * drops a byte order mark from a string; Lilt reads a string as text already decoded, where
 * U+FEFF is a character, and drops the mark only from bytes).
 */
export function comparableWithSaxes(text: string): boolean {
  return !/<!(?!\[CDATA\[)|<\?/.test(text) && !hasRawBytes(text) && text.isWellFormed() &&
    !text.startsWith("\ufeff");
}

/** saxes' verdict on a whole document: undefined when it accepts, its first error otherwise. */
export function saxesVerdict(text: string): string | undefined {
  const parser = new SaxesParser({ xmlns: true });
  let failure: string | undefined;
  parser.on("error", (error) => {
    failure ??= error.message;
  });
  try {
    parser.write(text).close();
  } catch (error) {
    failure ??= describe(error);
  }
  return failure;
}

/** Lilt's verdict on a whole document (parseElement, no limits): undefined when it accepts. */
export function liltVerdict(text: string): string | undefined {
  try {
    parseElement(text, UNLIMITED);
    return undefined;
  } catch (error) {
    if (error instanceof XmlStreamError) return `${error.condition}: ${error.message}`;
    throw new FuzzFinding("exception", `parseElement threw ${describe(error)}`);
  }
}

/** Throws a finding when Lilt and saxes disagree on a comparable document. */
export function checkDifferential(text: string): string {
  if (!comparableWithSaxes(text)) return "skip";
  const lilt = liltVerdict(text);
  const saxes = saxesVerdict(text);
  // saxes checks names as XML 1.0 Names only; a colon leaving a side that is no NCName
  // (`p:3x`, `a:`, `:a`, `a:b:c`) breaks XML-NAMES' QName production, which Lilt enforces.
  if (lilt !== undefined && saxes === undefined && lilt.includes("of the form 'prefix:local'")) {
    return "lilt-stricter-qname";
  }
  if ((lilt === undefined) !== (saxes === undefined)) {
    throw new FuzzFinding(
      "differential",
      lilt === undefined
        ? `Lilt accepts a document saxes refuses (${saxes})`
        : `Lilt refuses a document saxes accepts (${lilt})`,
    );
  }
  return lilt === undefined ? "both-accept" : "both-refuse";
}

/** The XML stream parser target. */
export const xmlTarget: FuzzTarget = {
  name: "xml",
  maxLength: 16384,
  dictionary: [
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='a'>",
    "</stream:stream>",
    "<?xml version='1.0'?>",
    "<?xml version='1.0' encoding='UTF-16'?>",
    "<message to='a@b' type='chat'>",
    "</message>",
    "<body>",
    "</body>",
    "<a/>",
    "<![CDATA[",
    "]]>",
    "]]",
    "<!--",
    "-->",
    "<!DOCTYPE a>",
    "<!ENTITY x 'y'>",
    "&amp;",
    "&lt;",
    "&gt;",
    "&quot;",
    "&apos;",
    "&nbsp;",
    "&#0;",
    "&#9;",
    "&#x10FFFF;",
    "&#x110000;",
    "&#xD800;",
    "&#65;",
    "&#x;",
    "&#99999999999999999999;",
    " xmlns='urn:x'",
    " xmlns=''",
    " xmlns:p='urn:p'",
    " xmlns:p=''",
    " xmlns:xml='http://www.w3.org/XML/1998/namespace'",
    " xmlns:xmlns='urn:x'",
    " xml:lang='en'",
    " p:a='1'",
    " q:a='1'",
    "<p:x>",
    "</p:x>",
    ":",
    "::",
    "'",
    '"',
    "=",
    "/>",
    "</",
    "<",
    ">",
    "&",
    "\u00b7",
    "\u0300",
  ],
  check(input: string, random: Random): string {
    const whole = runStream([input], "whole string");
    const bytes = encodeWithRawBytes(input);
    const raw = hasRawBytes(input);
    // Strings with lone surrogates cannot be written as UTF-8 as they are, and raw bytes mean
    // nothing to the string path: only byte feeds are compared with each other then. A byte
    // order mark is an encoding signature only in bytes (a string is text already, where
    // U+FEFF before the root is not whitespace), so neither is an input that starts with one.
    const byteWhole = runStream([bytes], "whole bytes");
    if (!raw && input.isWellFormed() && !input.startsWith("\ufeff")) {
      sameEvents(whole, byteWhole, "string vs bytes");
    }
    sameEvents(byteWhole, runStream(splitBytes(random, bytes), "split bytes"), "split bytes");
    if (!raw) {
      sameEvents(whole, runStream(splitString(random, input), "split string"), "split string");
    }
    for (const stanza of whole.stanzas) checkRoundTrip(stanza);
    const differential = checkDifferential(input);
    const error = whole.error ?? byteWhole.error;
    return `${error ? `${error.condition} ${shape(error.message)}` : "ok"} ` +
      `${Math.min(whole.stanzas.length, 3)} ${differential}`;
  },
};
