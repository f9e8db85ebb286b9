// What a fuzz target is (scripts/fuzz): a name, how its inputs are mutated, and a check that
// throws a FuzzFinding when an input breaks a property the code under test must keep.

import type { Random } from "./mutate.ts";

/** A broken property: the input that showed it is saved and printed by the fuzzer. */
export class FuzzFinding extends Error {
  /** What kind of property broke, e.g. "exception", "round-trip", "differential". */
  readonly kind: string;

  /** Creates a finding of `kind`; the message says what was expected and what happened. */
  constructor(kind: string, message: string) {
    super(message);
    this.name = "FuzzFinding";
    this.kind = kind;
  }
}

/** One thing the fuzzer exercises. */
export interface FuzzTarget {
  /** The name given to `--target` and used for the corpus folder (tests/fuzz/corpus/NAME). */
  readonly name: string;
  /** Longest input the mutations produce, in UTF-16 units. */
  readonly maxLength: number;
  /** Tokens of the grammar under test, which mutations insert whole. */
  readonly dictionary: readonly string[];
  /**
   * Runs one input; throws a {@link FuzzFinding} when a property breaks (any other exception
   * is a finding too). Returns a short signature of the behaviour seen (an error's kind and
   * shape), so inputs that show a new one join the corpus: a cheap stand-in for coverage.
   */
  check(input: string, random: Random): string | Promise<string>;
}

/** A message's shape for signatures: what was found, quoted text and numbers taken out. */
export function shape(message: string): string {
  // Greedy: a quoted input may hold quotes itself.
  return message.replace(/\bfound\b.*$/s, "found").replace(/'.*'|".*"|<\S*/gs, "''")
    .replace(/U\+[0-9A-F]+/g, "U+X").replace(/\d+/g, "N").slice(0, 80);
}
