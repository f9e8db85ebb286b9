// Tests for JID parsing and preparation: the RFC 7622 §3.5/§3.6 examples, normalisation,
// length limits and the error messages people will read.

import assert from "node:assert/strict";
import {
  JID,
  JidError,
  parseJid,
  prepDomain,
  prepLocal,
  prepResource,
  tryParseJid,
} from "../../core/jid.ts";

function parts(input: string): [string | undefined, string, string | undefined] {
  const jid = parseJid(input);
  return [jid.local, jid.domain, jid.resource];
}

function parseError(input: string): string {
  try {
    parseJid(input);
  } catch (error) {
    assert.ok(error instanceof JidError);
    return error.message;
  }
  assert.fail(`expected '${input}' to be rejected`);
}

Deno.test("the RFC 7622 examples of valid JIDs parse into their parts", () => {
  assert.deepEqual(parts("juliet@example.com"), ["juliet", "example.com", undefined]);
  assert.deepEqual(parts("juliet@example.com/foo"), ["juliet", "example.com", "foo"]);
  assert.deepEqual(parts("juliet@example.com/foo bar"), ["juliet", "example.com", "foo bar"]);
  assert.deepEqual(parts("juliet@example.com/foo@bar"), ["juliet", "example.com", "foo@bar"]);
  assert.deepEqual(parts("foo\\20bar@example.com"), ["foo\\20bar", "example.com", undefined]);
  assert.deepEqual(parts("fussball@example.com"), ["fussball", "example.com", undefined]);
  assert.deepEqual(parts("fu\u00dfball@example.com"), ["fu\u00dfball", "example.com", undefined]);
  assert.deepEqual(parts("\u03c0@example.com"), ["\u03c0", "example.com", undefined]);
  assert.deepEqual(parts("\u03a3@example.com/foo"), ["\u03c3", "example.com", "foo"]);
  assert.deepEqual(parts("\u03c3@example.com/foo"), ["\u03c3", "example.com", "foo"]);
  assert.deepEqual(parts("\u03c2@example.com/foo"), ["\u03c2", "example.com", "foo"]);
  assert.deepEqual(parts("king@example.com/\u265a"), ["king", "example.com", "\u265a"]);
  assert.deepEqual(parts("example.com"), [undefined, "example.com", undefined]);
  assert.deepEqual(parts("example.com/foobar"), [undefined, "example.com", "foobar"]);
  assert.deepEqual(parts("a.example.com/b@example.net"), [
    undefined,
    "a.example.com",
    "b@example.net",
  ]);
});

Deno.test("the RFC 7622 examples of invalid JIDs are rejected with the reason", () => {
  assert.equal(
    parseError('"juliet"@example.com'),
    `Cannot parse JID '"juliet"@example.com': localpart contains '"' (U+0022), which is not allowed`,
  );
  assert.equal(
    parseError("foo bar@example.com"),
    "Cannot parse JID 'foo bar@example.com': localpart contains ' ' (U+0020): spaces are not allowed",
  );
  assert.equal(
    parseError("juliet@example.com/"),
    "Cannot parse JID 'juliet@example.com/': resourcepart is empty",
  );
  assert.equal(parseError("@example.com/"), "Cannot parse JID '@example.com/': localpart is empty");
  assert.match(parseError("henry\u2163@example.com"), /localpart contains .*\(U\+2173\)/);
  assert.equal(
    parseError("\u265a@example.com"),
    "Cannot parse JID '\u265a@example.com': localpart contains '\u265a' (U+265A): " +
      "symbols are not allowed",
  );
  assert.equal(parseError("juliet@"), "Cannot parse JID 'juliet@': domainpart is empty");
  assert.equal(parseError("/foobar"), "Cannot parse JID '/foobar': domainpart is empty");
});

Deno.test("a second '@' before the resource is reported as such", () => {
  assert.equal(parseError("a@@b"), "Cannot parse JID 'a@@b': more than one '@'");
  assert.equal(parseError("a@b@c/d"), "Cannot parse JID 'a@b@c/d': more than one '@'");
  assert.equal(parseJid("a@b/c@d@e").resource, "c@d@e");
});

Deno.test("the first '/' starts the resource, so the resource may contain '/' and '@'", () => {
  assert.deepEqual(parts("server/resource@foo/bar"), [undefined, "server", "resource@foo/bar"]);
  assert.deepEqual(parts("u@d/a/b"), ["u", "d", "a/b"]);
});

Deno.test("empty input and empty parts are errors", () => {
  assert.equal(parseError(""), "Cannot parse JID '': it is empty");
  assert.equal(parseError("@d"), "Cannot parse JID '@d': localpart is empty");
  assert.equal(parseError("d/"), "Cannot parse JID 'd/': resourcepart is empty");
  assert.equal(parseError("u@/r"), "Cannot parse JID 'u@/r': domainpart is empty");
});

Deno.test("localparts are case-folded and width-mapped, resources keep their case", () => {
  assert.equal(parseJid("JuLiEt@Example.COM/BalCony").toString(), "juliet@example.com/BalCony");
  assert.equal(prepLocal("\uff2a\uff55\uff4c\uff49\uff45\uff54"), "juliet");
  assert.equal(prepLocal("\u00c9MILE"), "\u00e9mile");
  // NFC: e + combining acute becomes é.
  assert.equal(prepLocal("e\u0301"), "\u00e9");
  assert.equal(prepResource("e\u0301"), "\u00e9");
});

Deno.test("resources map non-ASCII spaces to U+0020 and refuse controls", () => {
  assert.equal(prepResource("a\u3000b\u00a0c"), "a b c");
  assert.throws(() => prepResource("a\u0007"), /Invalid resourcepart 'a\\u0007': contains U\+0007/);
  assert.throws(() => prepResource(""), /Invalid resourcepart '': is empty/);
  assert.equal(prepResource("\u{1f37a}"), "\u{1f37a}");
});

Deno.test("localparts refuse the characters RFC 7622 excludes", () => {
  for (const c of ['"', "&", "'", "/", ":", "<", ">", "@"]) {
    assert.throws(() => prepLocal(`a${c}b`), JidError, `'${c}' should be refused`);
  }
  assert.throws(() => prepLocal("a\u200db"), /join controls are not allowed/);
  assert.throws(() => prepLocal("a\u0378"), /unassigned code points are not allowed/);
  assert.throws(() => prepLocal("a\u00adb"), /ignorable code points are not allowed/);
  assert.throws(() => prepLocal("a\u00bdb"), /compatibility characters are not allowed/);
  assert.throws(() => prepLocal("a!b\u2014"), /punctuation is not allowed/);
  assert.equal(prepLocal("l\u00b7l"), "l\u00b7l");
  assert.throws(() => prepLocal("a\u00b7b"), /not allowed in this context/);
});

Deno.test("domains are lowercased, IDNA-mapped to U-labels and lose one trailing dot", () => {
  assert.equal(prepDomain("CaSe-InSeNsItIvE"), "case-insensitive");
  assert.equal(prepDomain("example.com."), "example.com");
  assert.equal(prepDomain("B\u00fccher.DE"), "b\u00fccher.de");
  assert.equal(prepDomain("xn--bcher-kva.de"), "b\u00fccher.de");
  assert.equal(prepDomain("\uff25\uff38.com"), "ex.com");
  assert.equal(prepDomain("example\u3002com"), "example.com");
  assert.equal(parseJid("u@example.com./r").toString(), "u@example.com/r");
});

Deno.test("IP literals are kept as domains", () => {
  assert.equal(parseJid("user@192.168.1.1").domain, "192.168.1.1");
  assert.equal(parseJid("user@[::1]/r").domain, "[::1]");
  assert.equal(parseJid("user@[2001:DB8::1]").domain, "[2001:db8::1]");
  assert.throws(() => parseJid("user@[nope]"), /not a valid IPv6 address literal/);
});

Deno.test("bad domains are refused with the reason", () => {
  assert.equal(
    parseError("x@ex ample.com"),
    "Cannot parse JID 'x@ex ample.com': domainpart contains ' ' (U+0020): spaces are not allowed",
  );
  assert.match(parseError("x@\u2603.net"), /domainpart contains '\u2603' \(U\+2603\): symbols/);
  assert.match(parseError("x@example..com"), /domainpart has an empty label/);
  assert.match(parseError("x@example.com.."), /domainpart has an empty label/);
  assert.match(parseError("x@-a.com"), /label '-a' starts or ends with a hyphen/);
  assert.match(parseError("x@a_b.com"), /domainpart contains '_' \(U\+005F\)/);
  assert.match(parseError("x@xn--zz.de"), /not a valid internationalized domain name/);
});

Deno.test("labels are limited to 63 octets in A-label form", () => {
  const ok = `${"a".repeat(63)}.com`;
  assert.equal(prepDomain(ok), ok);
  assert.throws(
    () => prepDomain(`${"a".repeat(64)}.com`),
    /label 'a{64}' is 64 octets long, expected at most 63/,
  );
  // 60 × "ü" fits in 63 characters but not in 63 octets once punycoded.
  assert.throws(() => prepDomain(`${"\u00fc".repeat(60)}.de`), /octets long, expected at most 63/);
});

Deno.test("each part is limited to 1023 bytes of UTF-8", () => {
  assert.equal(prepLocal("a".repeat(1023)), "a".repeat(1023));
  assert.throws(() => prepLocal("a".repeat(1024)), /is 1024 bytes long, expected at most 1023/);
  assert.equal(prepResource("\u00e9".repeat(511)).length, 511);
  assert.throws(() => prepResource("\u00e9".repeat(512)), /is 1024 bytes long/);
  const message = parseError(`u@d/${"r".repeat(1024)}`);
  assert.match(message, /resourcepart is 1024 bytes long, expected at most 1023$/);
  assert.ok(message.length < 200, "long input is shortened in the message");
  assert.match(parseError("x".repeat(4000)), /it is 4000 characters long, expected at most 3071/);
});

Deno.test("JID objects expose bare, domain and resource views", () => {
  const full = parseJid("juliet@example.com/balcony");
  assert.equal(full.bare.toString(), "juliet@example.com");
  assert.equal(full.bareString(), "juliet@example.com");
  assert.equal(full.isBare(), false);
  assert.equal(full.bare.isBare(), true);
  assert.equal(full.bare.bare, full.bare);
  assert.equal(full.isDomain(), false);
  assert.equal(parseJid("example.com").isDomain(), true);
  assert.equal(parseJid("example.com/r").isDomain(), false);
  const other = full.bare.withResource("Garden");
  assert.equal(other.toString(), "juliet@example.com/Garden");
  assert.throws(() => full.withResource(""), JidError);
});

Deno.test("equal JIDs compare equal whatever their input form", () => {
  assert.ok(parseJid("Juliet@EXAMPLE.com/r").equals(parseJid("juliet@example.com./r")));
  assert.ok(!parseJid("juliet@example.com/r").equals(parseJid("juliet@example.com/R")));
  assert.ok(new JID("a", "b", "c").equals(parseJid("a@b/c")));
  assert.ok(!parseJid("a@b").equals(parseJid("b")));
});

Deno.test("tryParseJid returns undefined instead of throwing", () => {
  assert.equal(tryParseJid("a@@b"), undefined);
  assert.equal(tryParseJid("a@b")?.toString(), "a@b");
});

Deno.test("errors carry the reason without the input", () => {
  try {
    parseJid("a@@b");
    assert.fail("expected an error");
  } catch (error) {
    assert.ok(error instanceof JidError);
    assert.equal(error.reason, "more than one '@'");
    assert.equal(error.name, "JidError");
  }
});

Deno.test("control characters in input are escaped in messages", () => {
  assert.equal(
    parseError("a\nb@c"),
    "Cannot parse JID 'a\\u000ab@c': localpart contains U+000A: control characters are not allowed",
  );
});
