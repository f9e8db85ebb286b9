// Reads the Lua table literals Prosody's file storage writes (`return { ... };` in .dat files,
// `item({ ... });` lines in .list files) without running any Lua: a small parser for literals
// only (strings, numbers, booleans, nil, nested tables), so a crafted file can do no harm.

/** A key of a Lua table: Lua strings, numbers and booleans (nil and tables never occur here). */
export type LuaKey = string | number | boolean;
/** A Lua value as data: nil is `undefined` (a table never stores it). */
export type LuaValue = string | number | boolean | LuaTable;

/** A Lua table: one map for the array part (keys 1..n) and the hash part alike. */
export class LuaTable {
  /** Every entry, in the order the file wrote them. */
  readonly entries: Map<LuaKey, LuaValue> = new Map();

  /** The value at `key`, or undefined. */
  get(key: LuaKey): LuaValue | undefined {
    return this.entries.get(key);
  }

  /** The string at `key`, or undefined when absent or of another type. */
  string(key: LuaKey): string | undefined {
    const value = this.entries.get(key);
    return typeof value === "string" ? value : undefined;
  }

  /** The number at `key`, or undefined when absent or of another type. */
  number(key: LuaKey): number | undefined {
    const value = this.entries.get(key);
    return typeof value === "number" ? value : undefined;
  }

  /** The table at `key`, or undefined when absent or of another type. */
  table(key: LuaKey): LuaTable | undefined {
    const value = this.entries.get(key);
    return value instanceof LuaTable ? value : undefined;
  }

  /** The array part: values at 1, 2, 3 … up to the first missing index (Lua's `ipairs`). */
  array(): LuaValue[] {
    const out: LuaValue[] = [];
    for (let i = 1;; i++) {
      const value = this.entries.get(i);
      if (value === undefined) return out;
      out.push(value);
    }
  }

  /** The entries whose keys are strings (Lua's `pairs` restricted to string keys). */
  stringEntries(): [string, LuaValue][] {
    return [...this.entries].filter((e): e is [string, LuaValue] => typeof e[0] === "string");
  }
}

/** The text is not a Lua literal this parser reads; the message names the line and column. */
export class LuaSyntaxError extends Error {}

/** Options for {@link parseLuaReturn} and {@link parseLuaItems}. */
export interface LuaParseOptions {
  /** Named in error messages (a file path). */
  source?: string;
  /** How deeply tables may nest (default 200; Prosody writes at most 127). */
  maxDepth?: number;
}

/**
 * Parses a `.dat` file: `return <value>;` (or an empty file, which is nil). Strings are Lua
 * byte strings decoded as UTF-8; one that is not valid UTF-8 is an error.
 *
 * @example
 * ```ts
 * const t = parseLuaReturn('return { ["salt"] = "x"; iteration_count = 4096 };');
 * (t as LuaTable).string("salt"); // "x"
 * ```
 */
export function parseLuaReturn(
  text: string | Uint8Array,
  options: LuaParseOptions = {},
): LuaValue | undefined {
  const parser = new Parser(text, options);
  parser.skipSpace();
  if (parser.atEnd()) return undefined;
  parser.expectWord("return");
  const value = parser.value(0);
  parser.skipSpace();
  parser.optional(";");
  parser.skipSpace();
  if (!parser.atEnd()) parser.fail("expected the end of the file after the returned value");
  return value;
}

/** Parses a `.list` file: any number of `item(<value>);` calls, in order. */
export function parseLuaItems(
  text: string | Uint8Array,
  options: LuaParseOptions = {},
): LuaValue[] {
  const parser = new Parser(text, options);
  const items: LuaValue[] = [];
  for (;;) {
    parser.skipSpace();
    if (parser.atEnd()) return items;
    parser.expectWord("item");
    parser.skipSpace();
    parser.expect("(");
    const value = parser.value(0);
    if (value === undefined) parser.fail("expected a value in item(...), found nil");
    items.push(value!);
    parser.skipSpace();
    parser.expect(")");
    parser.skipSpace();
    parser.optional(";");
  }
}

const SIMPLE_ESCAPES: Record<string, number> = {
  a: 7,
  b: 8,
  f: 12,
  n: 10,
  r: 13,
  t: 9,
  v: 11,
  "\\": 92,
  '"': 34,
  "'": 39,
  "\n": 10,
};

const DECODER = new TextDecoder("utf-8", { fatal: true });

class Parser {
  #bytes: Uint8Array;
  #pos = 0;
  #source: string;
  #maxDepth: number;

  constructor(text: string | Uint8Array, options: LuaParseOptions) {
    this.#bytes = typeof text === "string" ? new TextEncoder().encode(text) : text;
    this.#source = options.source ?? "Lua data";
    this.#maxDepth = options.maxDepth ?? 200;
  }

  atEnd(): boolean {
    return this.#pos >= this.#bytes.length;
  }

  fail(message: string, at = this.#pos): never {
    let line = 1;
    let column = 1;
    for (let i = 0; i < at && i < this.#bytes.length; i++) {
      if (this.#bytes[i] === 10) {
        line++;
        column = 1;
      } else {
        column++;
      }
    }
    throw new LuaSyntaxError(`${this.#source}:${line}:${column}: ${message}`);
  }

  #peek(offset = 0): number {
    return this.#bytes[this.#pos + offset] ?? -1;
  }

  #describe(): string {
    if (this.atEnd()) return "the end of the file";
    const c = this.#peek();
    return c >= 33 && c < 127 ? `'${String.fromCharCode(c)}'` : `byte ${c}`;
  }

  skipSpace(): void {
    for (;;) {
      const c = this.#peek();
      if (c === 32 || c === 9 || c === 10 || c === 13 || c === 11 || c === 12) {
        this.#pos++;
      } else if (c === 45 && this.#peek(1) === 45) {
        this.#pos += 2;
        const level = this.#longBracketLevel();
        if (level >= 0) {
          this.#longString(level);
        } else {
          while (!this.atEnd() && this.#peek() !== 10) this.#pos++;
        }
      } else {
        return;
      }
    }
  }

  optional(char: string): boolean {
    if (this.#peek() === char.charCodeAt(0)) {
      this.#pos++;
      return true;
    }
    return false;
  }

  expect(char: string): void {
    if (!this.optional(char)) this.fail(`expected '${char}', found ${this.#describe()}`);
  }

  #name(): string | undefined {
    const start = this.#pos;
    const first = this.#peek();
    if (!isNameStart(first)) return undefined;
    while (isNameChar(this.#peek())) this.#pos++;
    return String.fromCharCode(...this.#bytes.subarray(start, this.#pos));
  }

  expectWord(word: string): void {
    const start = this.#pos;
    const name = this.#name();
    if (name !== word) {
      this.fail(`expected '${word}', found ${name ? `'${name}'` : "nothing"}`, start);
    }
  }

  /** One value; nil is undefined. */
  value(depth: number): LuaValue | undefined {
    this.skipSpace();
    const c = this.#peek();
    const start = this.#pos;
    if (c === 123) return this.#table(depth + 1);
    if (c === 34 || c === 39) return this.#quotedString(c);
    if (c === 91 && this.#longBracketLevel() >= 0) {
      this.#pos = start;
      return this.#longString(this.#longBracketLevel());
    }
    this.#pos = start;
    if (c === 45 || c === 46 || (c >= 48 && c <= 57)) return this.#number();
    if (c === 40) return this.#parenthesised(depth);
    const name = this.#name();
    if (name === "true") return true;
    if (name === "false") return false;
    if (name === "nil") return undefined;
    if (name !== undefined) this.fail(`'${name}' is not a literal (no code is run)`, start);
    return this.fail(`expected a value, found ${this.#describe()}`);
  }

  /** `(a/b)` as Prosody writes infinities and NaN, or any parenthesised literal. */
  #parenthesised(depth: number): LuaValue | undefined {
    this.#pos++;
    const first = this.value(depth);
    this.skipSpace();
    if (this.optional("/")) {
      const second = this.value(depth);
      if (typeof first !== "number" || typeof second !== "number") {
        this.fail("only numbers may be divided");
      }
      this.skipSpace();
      this.expect(")");
      return (first as number) / (second as number);
    }
    this.expect(")");
    return first;
  }

  #number(): number {
    const start = this.#pos;
    let negative = false;
    if (this.#peek() === 45) {
      negative = true;
      this.#pos++;
      this.skipSpace();
    }
    const digitsStart = this.#pos;
    let text: string;
    if (this.#peek() === 48 && (this.#peek(1) === 120 || this.#peek(1) === 88)) {
      this.#pos += 2;
      while (isHexDigit(this.#peek())) this.#pos++;
      text = String.fromCharCode(...this.#bytes.subarray(digitsStart + 2, this.#pos));
      if (text === "") this.fail("expected hexadecimal digits", start);
      const value = parseInt(text, 16);
      return negative ? -value : value;
    }
    while (isDigit(this.#peek())) this.#pos++;
    if (this.#peek() === 46) {
      this.#pos++;
      while (isDigit(this.#peek())) this.#pos++;
    }
    if (this.#peek() === 101 || this.#peek() === 69) {
      this.#pos++;
      if (this.#peek() === 43 || this.#peek() === 45) this.#pos++;
      if (!isDigit(this.#peek())) this.fail("expected an exponent", start);
      while (isDigit(this.#peek())) this.#pos++;
    }
    text = String.fromCharCode(...this.#bytes.subarray(digitsStart, this.#pos));
    const value = Number(text);
    if (text === "" || text === "." || !Number.isFinite(value)) {
      this.fail(`'${text}' is not a number`, start);
    }
    if (isNameChar(this.#peek())) this.fail("malformed number", start);
    return negative ? -value : value;
  }

  #quotedString(quote: number): string {
    const start = this.#pos;
    this.#pos++;
    const out: number[] = [];
    for (;;) {
      if (this.atEnd()) this.fail("unfinished string", start);
      const c = this.#peek();
      this.#pos++;
      if (c === quote) break;
      if (c === 10) this.fail("unfinished string (a line break inside quotes)", start);
      if (c !== 92) {
        out.push(c);
        continue;
      }
      const e = this.#peek();
      const escape = String.fromCharCode(e);
      if (escape in SIMPLE_ESCAPES) {
        this.#pos++;
        out.push(SIMPLE_ESCAPES[escape]);
      } else if (e === 13) {
        this.#pos++;
        if (this.#peek() === 10) this.#pos++;
        out.push(10);
      } else if (isDigit(e)) {
        let n = 0;
        for (let i = 0; i < 3 && isDigit(this.#peek()); i++) {
          n = n * 10 + this.#peek() - 48, this.#pos++;
        }
        if (n > 255) this.fail("decimal escape too large", this.#pos - 3);
        out.push(n);
      } else if (e === 120) {
        this.#pos++;
        const hex = String.fromCharCode(this.#peek(), this.#peek(1));
        if (!/^[0-9a-fA-F]{2}$/.test(hex)) this.fail("expected two hexadecimal digits after \\x");
        this.#pos += 2;
        out.push(parseInt(hex, 16));
      } else if (e === 122) {
        this.#pos++;
        while ([32, 9, 10, 13, 11, 12].includes(this.#peek())) this.#pos++;
      } else if (e === 117) {
        this.#pos++;
        this.expect("{");
        const hexStart = this.#pos;
        while (isHexDigit(this.#peek())) this.#pos++;
        const hex = String.fromCharCode(...this.#bytes.subarray(hexStart, this.#pos));
        this.expect("}");
        const code = parseInt(hex, 16);
        if (hex === "" || code > 0x10ffff) this.fail("bad \\u{...} escape", hexStart);
        out.push(...new TextEncoder().encode(String.fromCodePoint(code)));
      } else {
        this.fail(`invalid escape '\\${escape}' in a string`);
      }
    }
    return this.#decode(out, start);
  }

  /** The level of a long bracket `[==[` at the position (consumed), or -1 (nothing consumed). */
  #longBracketLevel(): number {
    if (this.#peek() !== 91) return -1;
    let level = 0;
    while (this.#peek(1 + level) === 61) level++;
    if (this.#peek(1 + level) !== 91) return -1;
    this.#pos += level + 2;
    return level;
  }

  #longString(level: number): string {
    const start = this.#pos;
    // A line break right after the opening bracket is not part of the string.
    if (this.#peek() === 13) this.#pos++;
    if (this.#peek() === 10) this.#pos++;
    const contentStart = this.#pos;
    for (;;) {
      if (this.atEnd()) this.fail("unfinished long string", start);
      if (this.#peek() === 93) {
        let n = 0;
        while (this.#peek(1 + n) === 61) n++;
        if (n === level && this.#peek(1 + n) === 93) {
          const content = this.#bytes.subarray(contentStart, this.#pos);
          this.#pos += level + 2;
          return this.#decode(Array.from(content), start);
        }
      }
      this.#pos++;
    }
  }

  #decode(bytes: number[], start: number): string {
    try {
      return DECODER.decode(new Uint8Array(bytes));
    } catch {
      return this.fail("the string is not valid UTF-8", start);
    }
  }

  #table(depth: number): LuaTable {
    if (depth > this.#maxDepth) this.fail(`tables nested deeper than ${this.#maxDepth}`);
    this.#pos++;
    const table = new LuaTable();
    let next = 1;
    for (;;) {
      this.skipSpace();
      if (this.optional("}")) return table;
      const start = this.#pos;
      let key: LuaKey | undefined;
      let value: LuaValue | undefined;
      if (this.#peek() === 91 && this.#longBracketLevel() < 0) {
        this.#pos++;
        const k = this.value(depth);
        if (k === undefined) this.fail("a table key cannot be nil", start);
        if (k instanceof LuaTable) this.fail("a table key cannot be a table", start);
        if (typeof k === "number" && Number.isNaN(k)) this.fail("a table key cannot be NaN", start);
        key = k as LuaKey;
        this.skipSpace();
        this.expect("]");
        this.skipSpace();
        this.expect("=");
        value = this.value(depth);
      } else {
        this.#pos = start;
        const name = isNameStart(this.#peek()) ? this.#name() : undefined;
        this.skipSpace();
        if (name !== undefined && this.#peek() === 61 && this.#peek(1) !== 61) {
          this.#pos++;
          key = name;
          value = this.value(depth);
        } else {
          this.#pos = start;
          value = this.value(depth);
          key = next++;
        }
      }
      if (value !== undefined) table.entries.set(key!, value);
      this.skipSpace();
      if (this.optional(",") || this.optional(";")) continue;
      if (this.optional("}")) return table;
      this.fail(`expected ',', ';' or '}' in a table, found ${this.#describe()}`);
    }
  }
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

function isHexDigit(c: number): boolean {
  return isDigit(c) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102);
}

function isNameStart(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
}

function isNameChar(c: number): boolean {
  return isNameStart(c) || isDigit(c);
}

/**
 * A value decoded from Prosody's JSON (its SQL storage's "json" type) as the Lua table it
 * stood for: objects keep their string keys, and Prosody's `__array` (the positional part) and
 * `__hash` (non-string keys as a flat key, value list) members are unfolded. JSON null becomes
 * undefined.
 */
export function luaFromJson(json: unknown): LuaValue | undefined {
  if (json === null || json === undefined) return undefined;
  if (typeof json === "string" || typeof json === "number" || typeof json === "boolean") {
    return json;
  }
  const table = new LuaTable();
  if (Array.isArray(json)) {
    json.forEach((item, i) => {
      const value = luaFromJson(item);
      if (value !== undefined) table.entries.set(i + 1, value);
    });
    return table;
  }
  const object = json as Record<string, unknown>;
  for (const [key, item] of Object.entries(object)) {
    if (key === "__array" || key === "__hash") continue;
    const value = luaFromJson(item);
    if (value !== undefined) table.entries.set(key, value);
  }
  if (Array.isArray(object.__array)) {
    object.__array.forEach((item, i) => {
      const value = luaFromJson(item);
      if (value !== undefined) table.entries.set(i + 1, value);
    });
  }
  if (Array.isArray(object.__hash)) {
    const flat = object.__hash;
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const key = luaFromJson(flat[i]);
      const value = luaFromJson(flat[i + 1]);
      if (key === undefined || key instanceof LuaTable || value === undefined) continue;
      table.entries.set(key, value);
    }
  }
  return table;
}
