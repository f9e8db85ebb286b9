// Mutations for the fuzzer (scripts/fuzz): Deno has no coverage instrumentation to guide a
// fuzzer, so inputs are derived from a seed corpus by small random edits, with each target's
// dictionary of tokens that matter to its grammar.

import { createRandom, type Random, randomInt } from "../core/xml/corpus.ts";

export { createRandom, type Random, randomInt };

/**
 * Characters U+F780–U+F7FF stand for the raw bytes 0x80–0xFF when a target feeds bytes (see
 * {@link encodeWithRawBytes}), so a string input can carry invalid UTF-8.
 */
export const RAW_BYTE_BASE = 0xf780;

/** Encodes text as UTF-8, writing each U+F780–U+F7FF character as the raw byte it stands for. */
export function encodeWithRawBytes(text: string): Uint8Array {
  const encoder = new TextEncoder();
  const parts: Uint8Array[] = [];
  let from = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= RAW_BYTE_BASE && c <= RAW_BYTE_BASE + 0x7f) {
      if (i > from) parts.push(encoder.encode(text.slice(from, i)));
      parts.push(Uint8Array.of(0x80 + c - RAW_BYTE_BASE));
      from = i + 1;
    }
  }
  if (from === 0) return encoder.encode(text);
  parts.push(encoder.encode(text.slice(from)));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** True when `text` holds a character standing for a raw byte. */
export function hasRawBytes(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= RAW_BYTE_BASE && c <= RAW_BYTE_BASE + 0x7f) return true;
  }
  return false;
}

/** Characters every target's mutations draw from, besides its dictionary. */
const SPECIAL_CHARS = [
  "\0",
  "\t",
  "\n",
  "\r",
  " ",
  "\x01",
  "\x1f",
  "\x7f",
  "\u0085",
  "\u00a0",
  "\u00df",
  "\u0130",
  "\u0345",
  "\u03a3",
  "\u200b",
  "\u200d",
  "\u2028",
  "\u3002",
  "\ufb01",
  "\ufeff",
  "\ufffd",
  "\ufffe",
  "\uffff",
  "\ud800",
  "\udc00",
  "\ud83d\ude00",
  "\u{10ffff}",
  "\u0301",
  "\u212b",
  "\uff21",
  String.fromCharCode(RAW_BYTE_BASE + 0x40), // raw 0xC0
  String.fromCharCode(RAW_BYTE_BASE + 0x00), // raw 0x80
  String.fromCharCode(RAW_BYTE_BASE + 0x6d), // raw 0xED
  String.fromCharCode(RAW_BYTE_BASE + 0x7f), // raw 0xFF
];

/** How a target's inputs are mutated. */
export interface MutationOptions {
  /** Tokens of the target's grammar, inserted or swapped in whole. */
  dictionary: readonly string[];
  /** Longest input a mutation may produce, in UTF-16 units. */
  maxLength: number;
}

function pick<T>(random: Random, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)];
}

/** A random position in `text`, favouring the places near its grammar's delimiters. */
function position(random: Random, text: string): number {
  if (text.length === 0) return 0;
  if (random() < 0.5) {
    for (let tries = 0; tries < 4; tries++) {
      const at = randomInt(random, 0, text.length - 1);
      if ("<>/='\"&;:@,.[]\n".includes(text[at])) return at + (random() < 0.5 ? 0 : 1);
    }
  }
  return randomInt(random, 0, text.length);
}

function randomChar(random: Random): string {
  const roll = random();
  if (roll < 0.4) return String.fromCharCode(randomInt(random, 0x20, 0x7e));
  if (roll < 0.7) return pick(random, SPECIAL_CHARS);
  if (roll < 0.9) return String.fromCharCode(randomInt(random, 0, 0xffff));
  return String.fromCodePoint(randomInt(random, 0x10000, 0x10ffff));
}

/** One random edit of `text`; `other` is another corpus entry for splicing. */
function mutateOnce(random: Random, text: string, other: string, options: MutationOptions) {
  const at = position(random, text);
  const span = Math.min(text.length - at, randomInt(random, 1, random() < 0.8 ? 8 : 64));
  switch (randomInt(random, 0, 10)) {
    case 0: // replace one character
      return text.slice(0, at) + randomChar(random) + text.slice(at + 1);
    case 1: // insert characters
      return text.slice(0, at) + randomChar(random) +
        randomChar(random).repeat(randomInt(random, 0, 2)) +
        text.slice(at);
    case 2: // delete a run
      return text.slice(0, at) + text.slice(at + span);
    case 3: // duplicate a run
      return text.slice(0, at + span) + text.slice(at, at + span) + text.slice(at + span);
    case 4: // insert a dictionary token
    case 5:
      return text.slice(0, at) + pick(random, options.dictionary) + text.slice(at);
    case 6: // replace a run with a dictionary token
      return text.slice(0, at) + pick(random, options.dictionary) + text.slice(at + span);
    case 7: { // splice in a piece of another input
      const from = randomInt(random, 0, other.length);
      const piece = other.slice(from, from + randomInt(random, 1, 200));
      return random() < 0.5
        ? text.slice(0, at) + piece + text.slice(at)
        : text.slice(0, at) + other.slice(from);
    }
    case 8: { // repeat a run many times (nesting, long names, many attributes)
      const times = randomInt(random, 2, random() < 0.9 ? 16 : 200);
      return text.slice(0, at) + text.slice(at, at + span).repeat(times) + text.slice(at);
    }
    case 9: // truncate
      return text.slice(0, at);
    default: { // change the case of a run
      const run = text.slice(at, at + span);
      const changed = random() < 0.5 ? run.toUpperCase() : run.toLowerCase();
      return text.slice(0, at) + changed + text.slice(at + span);
    }
  }
}

/** A mutant of `text`: one to a few random edits, clipped to the target's length limit. */
export function mutate(
  random: Random,
  text: string,
  other: string,
  options: MutationOptions,
): string {
  let out = text;
  const edits = random() < 0.6 ? 1 : randomInt(random, 2, 6);
  for (let i = 0; i < edits; i++) out = mutateOnce(random, out, other, options);
  return out.length > options.maxLength ? out.slice(0, options.maxLength) : out;
}
