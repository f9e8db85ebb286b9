// The Lua literal parser that reads Prosody's .dat and .list files: what Prosody's serializer
// writes (escapes, numbers, nested tables, [false] keys, item(...) lists) and what must be
// refused (code, broken syntax, invalid UTF-8, deep nesting), and Prosody's JSON shapes.

import assert from "node:assert/strict";
import {
  luaFromJson,
  LuaSyntaxError,
  LuaTable,
  parseLuaItems,
  parseLuaReturn,
} from "../../../cli/migrate/lua_table.ts";

function table(text: string): LuaTable {
  const value = parseLuaReturn(text);
  assert.ok(value instanceof LuaTable);
  return value;
}

Deno.test("lua_table: a Prosody account file with quoted keys and numbers", () => {
  const t = table(
    'return {\n\t["iteration_count"] = 10000;\n\t["salt"] = "e2ab-4c38";\n\t' +
      '["stored_key"] = "ff3b";\n};\n',
  );
  assert.equal(t.number("iteration_count"), 10000);
  assert.equal(t.string("salt"), "e2ab-4c38");
  assert.equal(t.string("stored_key"), "ff3b");
  assert.equal(t.get("missing"), undefined);
});

Deno.test("lua_table: string escapes, decimal bytes decoded as UTF-8", () => {
  const t = table(
    String.raw`return { a = "\195\188n\195\175code \"q\" \'s\' line\nbreak\ttab\\"; ` +
      String.raw`b = 'x\x41\u{1F600}\z
       y'; c = [[long
string]]; d = [==[with ]] inside]==] }`,
  );
  assert.equal(t.string("a"), "ünïcode \"q\" 's' line\nbreak\ttab\\");
  assert.equal(t.string("b"), "xA😀y");
  assert.equal(t.string("c"), "long\nstring");
  assert.equal(t.string("d"), "with ]] inside");
});

Deno.test("lua_table: numbers as Prosody's serializer writes them", () => {
  const t = table("return { 1, -2, 3.5, 1e3, 0x1F, (1/0), (-1/0), (0/0), -0.25 }");
  const [one, minus, frac, exp, hex, inf, negInf, nan, quarter] = t.array();
  assert.deepEqual([one, minus, frac, exp, hex, inf, negInf], [
    1,
    -2,
    3.5,
    1000,
    31,
    Infinity,
    -Infinity,
  ]);
  assert.ok(Number.isNaN(nan));
  assert.equal(quarter, -0.25);
});

Deno.test("lua_table: nested tables, positional items, boolean keys and nil values", () => {
  const t = table(
    'return {\n\t[false] = {\n\t\t["version"] = 3;\n\t\t["pending"] = {};\n\t};\n' +
      '\t["bob@example.com"] = { ["groups"] = { ["Friends"] = true; }; ["subscription"] = "to" };\n' +
      '\t"first", "second"; [3] = "third"; gone = nil; [true] = false, -- a comment\n' +
      "\t--[[ a long\n comment ]] last = true\n};",
  );
  assert.equal(t.table(false)?.number("version"), 3);
  assert.ok(t.table(false)?.table("pending") instanceof LuaTable);
  assert.equal(t.table("bob@example.com")?.table("groups")?.get("Friends"), true);
  assert.deepEqual(t.array(), ["first", "second", "third"]);
  assert.equal(t.entries.has("gone"), false);
  assert.equal(t.get(true), false);
  assert.equal(t.get("last"), true);
  assert.deepEqual(t.stringEntries().map(([k]) => k), ["bob@example.com", "last"]);
});

Deno.test("lua_table: an empty file is nil; a list file is its item(...) calls in order", () => {
  assert.equal(parseLuaReturn(""), undefined);
  assert.equal(parseLuaReturn("return nil;"), undefined);
  const items = parseLuaItems('item({ key = "a" });\nitem({ key = "b"; when = 1796609021 });\n');
  assert.deepEqual(items.map((i) => (i as LuaTable).string("key")), ["a", "b"]);
  assert.equal((items[1] as LuaTable).number("when"), 1796609021);
  assert.deepEqual(parseLuaItems(""), []);
});

Deno.test("lua_table: code is never run, and errors name the line and column", () => {
  const refuse = (
    text: string,
    pattern: RegExp,
    parse: (text: string, options: { source: string }) => unknown = parseLuaReturn,
  ) =>
    assert.throws(() => parse(text, { source: "x.dat" }), (error: unknown) => {
      assert.ok(error instanceof LuaSyntaxError);
      assert.match(error.message, pattern);
      return true;
    });
  refuse(
    'return {\n  a = os.execute("id")\n}',
    /^x\.dat:2:7: 'os' is not a literal \(no code is run\)/,
  );
  refuse("return (function() return 1 end)()", /'function' is not a literal/);
  refuse("return { a = 1 ", /expected ',', ';' or '}' in a table, found the end of the file/);
  refuse('return { a = "open }', /unfinished string/);
  refuse('return { a = "\\q" }', /invalid escape '\\q'/);
  refuse('return { a = "\\255\\254" }', /not valid UTF-8/);
  refuse("return {} trailing", /expected the end of the file/);
  refuse("os.exit(1)", /expected 'return', found 'os'/);
  refuse('item({}); print("x")', /expected 'item', found 'print'/, parseLuaItems);
  refuse("return " + "{".repeat(300) + "}".repeat(300), /nested deeper than 200/);
  refuse("return { [{}] = 1 }", /a table key cannot be a table/);
});

Deno.test("lua_table: Prosody's JSON with __array and __hash unfolds to the same tables", () => {
  const roster = luaFromJson(JSON.parse('{"__hash":[false,{"pending":{},"version":3}]}'));
  assert.ok(roster instanceof LuaTable);
  assert.equal(roster.table(false)?.number("version"), 3);
  const element = luaFromJson(
    JSON.parse('{"name":"prefs","attr":{"xmlns":"p"},"__array":[{"name":"x","__array":["t"]}]}'),
  ) as LuaTable;
  assert.equal(element.string("name"), "prefs");
  assert.equal((element.array()[0] as LuaTable).array()[0], "t");
  const children = luaFromJson(JSON.parse('[{"name":"FN"},null,"text"]')) as LuaTable;
  assert.equal(children.entries.size, 2);
  assert.equal(children.get(3), "text");
});
