// Tests for the streaming XML parser: chunking invariance, agreement with saxes, hostile input
// rejected with the right stream error condition, and stream open/close/reset behaviour.

import assert from "node:assert/strict";
import { SaxesParser } from "saxes";
import { Element } from "../../../core/xml/element.ts";
import {
  DEFAULT_XML_LIMITS,
  parseElement,
  StreamParser,
  type XmlErrorCondition,
  type XmlLimits,
  XmlStreamError,
} from "../../../core/xml/parser.ts";
import {
  createRandom,
  generateCorpus,
  generateStanzas,
  randomInt,
  STREAM_FOOTER,
  streamHeader,
} from "./corpus.ts";

/** A tree without parent links, with adjacent text runs merged, for deep comparison. */
interface Plain {
  name: string;
  ns: string;
  attrs: Record<string, string>;
  children: (Plain | string)[];
}

function toPlain(el: Element, parent?: Element): Plain {
  assert.equal(el.parent, parent, `parent link of <${el.name}>`);
  const children: (Plain | string)[] = [];
  for (const child of el.children) {
    if (typeof child === "string") {
      assert.notEqual(child, "", "empty text child");
      if (typeof children.at(-1) === "string") children[children.length - 1] += child;
      else children.push(child);
    } else {
      children.push(toPlain(child, el));
    }
  }
  return { name: el.name, ns: el.ns, attrs: { ...el.attrs }, children };
}

interface Outcome {
  header?: Element;
  stanzas: Plain[];
  closed: boolean;
  error?: XmlStreamError;
  /** Bytes fed when the error arrived. */
  errorAfter?: number;
}

function run(chunks: (Uint8Array | string)[], limits?: Partial<XmlLimits>): Outcome {
  const outcome: Outcome = { stanzas: [], closed: false };
  let fed = 0;
  const parser = new StreamParser({
    streamOpen(header) {
      assert.equal(outcome.header, undefined, "stream opened twice");
      assert.equal(header.children.length, 0);
      outcome.header = header;
    },
    stanza(stanza) {
      outcome.stanzas.push(toPlain(stanza));
    },
    streamClose() {
      outcome.closed = true;
    },
    error(error) {
      assert.equal(outcome.error, undefined, "more than one error reported");
      outcome.error = error;
      outcome.errorAfter = fed;
    },
  }, limits);
  for (const chunk of chunks) {
    fed += typeof chunk === "string" ? chunk.length : chunk.length;
    parser.feed(chunk);
  }
  return outcome;
}

const encoder = new TextEncoder();

function splitBytes(bytes: Uint8Array, seed: number, min = 1, max = 300): Uint8Array[] {
  const random = createRandom(seed);
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < bytes.length;) {
    const size = randomInt(random, min, max);
    chunks.push(bytes.subarray(i, i + size));
    i += size;
  }
  return chunks;
}

function expectError(
  input: string | (Uint8Array | string)[],
  condition: XmlErrorCondition,
  limits?: Partial<XmlLimits>,
): Outcome {
  const chunks = typeof input === "string" ? [encoder.encode(input)] : input;
  const outcome = run(chunks, limits);
  assert.ok(outcome.error, `expected a ${condition} error, got none`);
  assert.equal(outcome.error.condition, condition, outcome.error.message);
  assert.ok(outcome.error instanceof XmlStreamError);
  if (typeof input === "string") {
    // Byte by byte, the resumable state machine sees the input instead of the fast paths.
    for (const size of [1, 2, 3, 5]) {
      const split = run(splitBytes(chunks[0] as Uint8Array, 1, size, size), limits);
      assert.equal(split.error?.condition, condition, `in ${size}-byte chunks: ${input}`);
      assert.deepEqual(split.stanzas, outcome.stanzas, `in ${size}-byte chunks: ${input}`);
    }
  }
  return outcome;
}

/** Feeds `xml` after a stream header as one chunk and expects `condition`. */
function expectStanzaError(xml: string, condition: XmlErrorCondition): void {
  expectError(streamHeader() + xml, condition);
}

const STREAM = streamHeader() + generateCorpus({ seed: 7, stanzas: 400 }) + STREAM_FOOTER;
const STREAM_BYTES = encoder.encode(STREAM);

Deno.test("the corpus parses into the expected number of stanzas and closes", () => {
  const outcome = run([STREAM_BYTES]);
  assert.equal(outcome.error, undefined, outcome.error?.message);
  assert.equal(outcome.stanzas.length, 400);
  assert.ok(outcome.closed);
  assert.equal(outcome.header?.name, "stream");
  assert.equal(outcome.header?.ns, "http://etherx.jabber.org/streams");
  assert.equal(outcome.header?.attrs["xmlns:stream"], "http://etherx.jabber.org/streams");
  assert.equal(outcome.header?.attrs["xml:lang"], "en");
  assert.equal(outcome.header?.parent, undefined);
});

Deno.test("any byte-level chunking yields identical stanza trees", () => {
  const whole = run([STREAM_BYTES]);
  for (let seed = 1; seed <= 40; seed++) {
    const chunked = run(splitBytes(STREAM_BYTES, seed));
    assert.equal(chunked.error, undefined, chunked.error?.message);
    assert.ok(chunked.closed);
    assert.deepEqual(chunked.stanzas, whole.stanzas, `seed ${seed}`);
  }
  // Tiny chunks hit every state boundary.
  const tiny = run(splitBytes(STREAM_BYTES.subarray(0, 40000), 99, 1, 3));
  assert.equal(tiny.error, undefined, tiny.error?.message);
  const expected = run([STREAM_BYTES.subarray(0, 40000)]);
  assert.deepEqual(tiny.stanzas, expected.stanzas);
});

Deno.test("a byte order mark is dropped at the start of the stream and kept as text later", () => {
  const body = "<message><body>a\uFEFFb</body></message>";
  const xml = streamHeader() + body + STREAM_FOOTER;
  const withBom = new Uint8Array([0xef, 0xbb, 0xbf, ...encoder.encode(xml)]);
  for (
    const chunks of [[withBom], [withBom.subarray(0, 2), withBom.subarray(2)], [
      withBom.subarray(0, 3),
      withBom.subarray(3),
    ]]
  ) {
    const outcome = run(chunks);
    assert.equal(outcome.error, undefined, outcome.error?.message);
    const text = (outcome.stanzas[0].children[0] as Plain).children;
    assert.deepEqual(text, ["a\uFEFFb"]);
  }
  // A chunk that starts with U+FEFF in the middle of the stream keeps it.
  const bytes = encoder.encode(xml);
  const at = bytes.indexOf(0xef);
  const split = run([bytes.subarray(0, at), bytes.subarray(at)]);
  assert.deepEqual((split.stanzas[0].children[0] as Plain).children, ["a\uFEFFb"]);
});

Deno.test("splits inside multi-byte UTF-8 sequences, tags, references and values are harmless", () => {
  const xml = streamHeader() +
    "<message to='用户@example.com/📱' id=\"a&amp;b&#x1F600;\"><body>😀 你好 &lt;&#233;&gt; " +
    "𝔘𝔫𝔦</body><x xmlns='urn:x' xmlns:p='urn:p' p:q='é'><![CDATA[<raw> ]] ]]]]><![CDATA[>]]>" +
    "</x></message> \n<presence/>" + STREAM_FOOTER;
  const bytes = encoder.encode(xml);
  const expected = run([bytes]);
  assert.equal(expected.error, undefined, expected.error?.message);
  assert.equal(expected.stanzas.length, 2);
  const body = expected.stanzas[0].children[0] as Plain;
  assert.deepEqual(body.children, ["😀 你好 <é> 𝔘𝔫𝔦"]);
  assert.equal(expected.stanzas[0].attrs.id, "a&b😀");
  assert.deepEqual((expected.stanzas[0].children[1] as Plain).children, ["<raw> ]] ]]>"]);
  for (let i = 1; i < bytes.length; i++) {
    const two = run([bytes.subarray(0, i), bytes.subarray(i)]);
    assert.equal(two.error, undefined, `split at ${i}: ${two.error?.message}`);
    assert.deepEqual(two.stanzas, expected.stanzas, `split at ${i}`);
    assert.ok(two.closed);
  }
  for (let i = 1; i + 1 < bytes.length; i += 7) {
    const three = run([bytes.subarray(0, i), bytes.subarray(i, i + 1), bytes.subarray(i + 1)]);
    assert.deepEqual(three.stanzas, expected.stanzas, `splits at ${i}, ${i + 1}`);
  }
  // String chunks may split surrogate pairs too.
  for (let i = 1; i < xml.length; i++) {
    const strings = run([xml.slice(0, i), xml.slice(i)]);
    assert.equal(strings.error, undefined, `string split at ${i}: ${strings.error?.message}`);
    assert.deepEqual(strings.stanzas, expected.stanzas, `string split at ${i}`);
  }
});

/** Builds the same plain trees as toPlain, with saxes as the parser. */
function saxesStanzas(xml: string): Plain[] {
  const parser = new SaxesParser({ xmlns: true });
  const stack: Plain[] = [];
  const stanzas: Plain[] = [];
  function addText(text: string): void {
    if (stack.length < 2) return;
    const children = stack[stack.length - 1].children;
    if (typeof children.at(-1) === "string") children[children.length - 1] += text;
    else if (text !== "") children.push(text);
  }
  parser.on("opentag", (tag) => {
    const attrs: Record<string, string> = {};
    for (const [name, attribute] of Object.entries(tag.attributes)) {
      if (name !== "xmlns") attrs[name] = attribute.value;
    }
    const node: Plain = { name: tag.local, ns: tag.uri, attrs, children: [] };
    if (stack.length >= 2) stack[stack.length - 1].children.push(node);
    stack.push(node);
  });
  parser.on("closetag", () => {
    const node = stack.pop()!;
    if (stack.length === 1) stanzas.push(node);
  });
  parser.on("text", addText);
  parser.on("cdata", addText);
  parser.on("error", (error) => {
    throw error;
  });
  parser.write(xml).close();
  return stanzas;
}

Deno.test("stanza trees match saxes (xmlns: true) on the corpus", () => {
  for (let seed = 1; seed <= 12; seed++) {
    const xml = streamHeader() + generateCorpus({ seed, stanzas: 300 }) + STREAM_FOOTER;
    const ours = run(splitBytes(encoder.encode(xml), seed + 1000));
    assert.equal(ours.error, undefined, ours.error?.message);
    assert.deepEqual(ours.stanzas, saxesStanzas(xml), `seed ${seed}`);
  }
});

Deno.test("the XML declaration is optional and whitespace keepalives are ignored", () => {
  for (const declaration of [true, false]) {
    const outcome = run([
      streamHeader(declaration),
      " ",
      "\n",
      "<presence/>",
      "\r\n\t ",
      "<message><body>hi</body></message>",
      "   ",
      STREAM_FOOTER,
    ]);
    assert.equal(outcome.error, undefined, outcome.error?.message);
    assert.equal(outcome.stanzas.length, 2);
    assert.deepEqual(outcome.stanzas[0], {
      name: "presence",
      ns: "jabber:client",
      attrs: {},
      children: [],
    });
    assert.ok(outcome.closed);
  }
  const doubleQuoted = run([`<?xml version="1.0" encoding="utf-8" standalone="yes" ?>
<stream:stream xmlns="jabber:server" xmlns:stream="http://etherx.jabber.org/streams"><iq/>`]);
  assert.equal(doubleQuoted.error, undefined, doubleQuoted.error?.message);
  assert.equal(doubleQuoted.stanzas[0].ns, "jabber:server");
});

Deno.test("streamClose fires once and later input is ignored", () => {
  let closes = 0;
  const stanzas: Element[] = [];
  const errors: XmlStreamError[] = [];
  const parser = new StreamParser({
    streamOpen() {},
    stanza: (s) => stanzas.push(s),
    streamClose: () => closes++,
    error: (e) => errors.push(e),
  });
  parser.feed(streamHeader() + "<presence/></stream:str");
  assert.equal(closes, 0);
  parser.feed("eam ><presence/> garbage <");
  assert.equal(closes, 1);
  assert.equal(stanzas.length, 1);
  assert.deepEqual(errors, []);
});

Deno.test("reset starts a new stream with a fresh decoder and an optional declaration", () => {
  const events: string[] = [];
  const parser: StreamParser = new StreamParser({
    streamOpen: (h) => events.push("open " + (h.attrs.to ?? "")),
    stanza: (s) => {
      events.push("stanza " + s.name);
      if (s.name === "proceed") parser.reset();
    },
    streamClose: () => events.push("close"),
    error: (e) => events.push("error " + e.condition),
  });
  const emoji = encoder.encode("<message><body>😀</body></message>");
  parser.feed(streamHeader());
  // The rest of the chunk after <proceed/> (here TLS bytes) is discarded by reset().
  parser.feed(
    new Uint8Array([
      ...encoder.encode("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
      0x16,
      0x03,
    ]),
  );
  // Half a UTF-8 sequence left in the old decoder must not leak into the new stream.
  parser.feed(streamHeader().replace("to='im.example.com'", "to='second'"));
  parser.feed(emoji.subarray(0, 17));
  parser.feed(emoji.subarray(17));
  parser.feed(emoji.subarray(0, 17)); // an unfinished stanza ending inside the emoji
  parser.reset();
  parser.feed(
    "<?xml version='1.0'?><stream:stream to='third' xmlns='jabber:client' " +
      "xmlns:stream='http://etherx.jabber.org/streams'><presence/></stream:stream>",
  );
  assert.deepEqual(events, [
    "open im.example.com",
    "stanza proceed",
    "open second",
    "stanza message",
    "open third",
    "stanza presence",
    "close",
  ]);
});

Deno.test("reset forgets an earlier error", () => {
  const events: string[] = [];
  const parser = new StreamParser({
    streamOpen: () => events.push("open"),
    stanza: (s) => events.push(s.name),
    streamClose: () => events.push("close"),
    error: (e) => events.push(e.condition),
  });
  parser.feed(streamHeader() + "<a><!-- no --></a>");
  parser.feed("<b/>");
  parser.reset();
  parser.feed(streamHeader() + "<c/>");
  assert.deepEqual(events, ["open", "restricted-xml", "open", "c"]);
});

Deno.test("only the first error is reported and stanzas before it are delivered", () => {
  const outcome = run([streamHeader() + "<a/><b/>\u0001<c/>", "<d/>&bogus;"]);
  assert.deepEqual(outcome.stanzas.map((s) => s.name), ["a", "b"]);
  assert.equal(outcome.error?.condition, "not-well-formed");
});

Deno.test("the content namespace declared on the header is exposed", () => {
  const parser = new StreamParser({
    streamOpen() {},
    stanza() {},
    streamClose() {},
    error() {},
  });
  assert.equal(parser.contentNamespace, undefined);
  parser.feed(streamHeader());
  assert.equal(parser.contentNamespace, "jabber:client");
  assert.deepEqual(parser.limits, { ...DEFAULT_XML_LIMITS });
});

Deno.test("prefixed elements resolve their namespace and keep declarations in attrs", () => {
  const outcome = run([
    streamHeader() +
    "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" +
    "<mechanism>PLAIN</mechanism></mechanisms></stream:features>" +
    "<db:result xmlns:db='jabber:server:dialback' from='a' to='b'>key</db:result>" +
    "<iq xmlns:e='urn:e' e:x='1' xml:lang='fr'><e:q><e:r e:y='2'/></e:q></iq>",
  ]);
  assert.equal(outcome.error, undefined, outcome.error?.message);
  const [features, result, iq] = outcome.stanzas;
  assert.equal(features.name, "features");
  assert.equal(features.ns, "http://etherx.jabber.org/streams");
  assert.equal((features.children[0] as Plain).ns, "urn:ietf:params:xml:ns:xmpp-sasl");
  assert.deepEqual(result, {
    name: "result",
    ns: "jabber:server:dialback",
    attrs: { "xmlns:db": "jabber:server:dialback", from: "a", to: "b" },
    children: ["key"],
  });
  assert.deepEqual(iq.attrs, { "xmlns:e": "urn:e", "e:x": "1", "xml:lang": "fr" });
  assert.equal((iq.children[0] as Plain).ns, "urn:e");
  assert.equal(((iq.children[0] as Plain).children[0] as Plain).ns, "urn:e");
});

Deno.test("a prefix declared on the stream header is re-declared on stanzas using it in attributes", () => {
  const outcome = run([
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' " +
    "xmlns:ext='urn:ext'><message ext:a='1'><body ext:b='2'/></message>",
  ]);
  assert.equal(outcome.error, undefined, outcome.error?.message);
  assert.deepEqual(outcome.stanzas[0].attrs, { "ext:a": "1", "xmlns:ext": "urn:ext" });
});

Deno.test("attribute values are normalized and references decoded", () => {
  const el = parseElement(
    "<x a='1\t2\n3\r\n4' b='&#9;&#10;&#13;' c=\"'&quot;&apos;&lt;&gt;&amp;\" d = 'e' />",
  );
  assert.deepEqual(el.attrs, { a: "1 2 3 4", b: "\t\n\r", c: `'"'<>&`, d: "e" });
  const text = parseElement("<x>a\r\nb\rc&#13;</x>");
  assert.deepEqual(text.children, ["a\nb\nc\r"]);
  const proto = parseElement("<x __proto__='p' constructor='c'/>");
  assert.equal(Object.getPrototypeOf(proto.attrs), Object.prototype);
  assert.deepEqual(Object.keys(proto.attrs), ["__proto__", "constructor"]);
  assert.equal(proto.attrs["constructor"], "c");
});

Deno.test("parseElement reads one standalone element in jabber:client by default", () => {
  const el = parseElement(
    "\n <message to='a@b'><body>hi</body><x xmlns='urn:x'><y/></x></message>\n",
  );
  assert.equal(el.ns, "jabber:client");
  assert.equal(el.parent, undefined);
  const body = el.getChild("body")!;
  assert.equal(body.ns, "jabber:client");
  assert.equal(body.parent, el);
  assert.equal(el.getChild("x")!.getChild("y")!.ns, "urn:x");
  assert.equal(parseElement("<iq xmlns='jabber:server'/>").ns, "jabber:server");
  for (
    const bad of [
      "",
      "  ",
      "<a>",
      "<a/><b/>",
      "<a/>text",
      "<a/><",
      "text<a/>",
      "<a></b>",
      "<a/>\uD83D",
    ]
  ) {
    assert.throws(() => parseElement(bad), (e) => {
      assert.ok(e instanceof XmlStreamError);
      assert.equal(e.condition, "not-well-formed", `${JSON.stringify(bad)}: ${e.message}`);
      return true;
    });
  }
  assert.throws(() => parseElement("<a><!-- c --></a>"), { condition: "restricted-xml" });
  assert.throws(() => parseElement("<?xml version='1.0'?><a/>"), { condition: "restricted-xml" });
  assert.throws(
    () => parseElement("<a><b><c/></b></a>", { maxDepth: 2 }),
    { condition: "policy-violation" },
  );
});

Deno.test("every corpus stanza parses standalone to the same tree as in the stream", () => {
  const stanzas = generateStanzas(11, 200);
  const streamed = run([streamHeader() + stanzas.join("")]);
  assert.equal(streamed.error, undefined, streamed.error?.message);
  assert.deepEqual(stanzas.map((s) => toPlain(parseElement(s))), streamed.stanzas);
});

// Hostile input: each case must fail with exactly the condition RFC 6120 asks for.

Deno.test("billion laughs, DOCTYPE and entity declarations are restricted-xml", () => {
  const laughs = "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>" +
    "<!ENTITY lol2 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>" +
    "<!ENTITY lol3 '&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;'>]>" +
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>" +
    "<message><body>&lol3;</body></message>";
  expectError(laughs, "restricted-xml");
  expectError("<!DOCTYPE stream>", "restricted-xml");
  expectStanzaError("<!ENTITY x 'y'>", "restricted-xml");
  expectStanzaError("<message><!DOCTYPE x></message>", "restricted-xml");
});

Deno.test("comments anywhere are restricted-xml", () => {
  expectError("<!-- hi --><stream:stream/>", "restricted-xml");
  expectStanzaError("<!-- between stanzas -->", "restricted-xml");
  expectStanzaError("<message><!-- inside --></message>", "restricted-xml");
});

Deno.test("processing instructions and misplaced XML declarations are restricted-xml", () => {
  expectStanzaError("<?php echo 1; ?>", "restricted-xml");
  expectStanzaError("<message><?pi x?></message>", "restricted-xml");
  expectError(" <?xml version='1.0'?><stream:stream/>", "restricted-xml");
  expectStanzaError("<?xml version='1.0'?>", "restricted-xml");
});

Deno.test("entity references other than the predefined five are restricted-xml", () => {
  expectStanzaError("<message><body>&nbsp;</body></message>", "restricted-xml");
  expectStanzaError("<message id='&foo;'/>", "restricted-xml");
});

Deno.test("malformed references and bare ampersands are not-well-formed", () => {
  expectStanzaError("<message><body>Tom & Jerry</body></message>", "not-well-formed");
  expectStanzaError("<message><body>&amp</body></message>", "not-well-formed");
  expectStanzaError("<message><body>&;</body></message>", "not-well-formed");
  expectStanzaError("<message><body>&#0;</body></message>", "not-well-formed");
  expectStanzaError("<message><body>&#x0;</body></message>", "not-well-formed");
  expectStanzaError("<message><body>&#xD800;</body></message>", "not-well-formed");
  expectStanzaError("<message><body>&#x110000;</body></message>", "not-well-formed");
  expectStanzaError("<message><body>&#xFFFE;</body></message>", "not-well-formed");
  expectStanzaError("<message><body>&#X41;</body></message>", "not-well-formed");
  expectStanzaError("<message><body>&#;</body></message>", "not-well-formed");
  expectStanzaError("<message a='&#1;'/>", "not-well-formed");
});

Deno.test("unclosed and mismatched tags are not-well-formed", () => {
  expectStanzaError("<message><body>hi</message>", "not-well-formed");
  expectStanzaError("<message><body>hi</body></stream:stream>", "not-well-formed");
  expectStanzaError("</message>", "not-well-formed");
  expectStanzaError("<message></Message>", "not-well-formed");
  expectStanzaError("<a:b xmlns:a='u'></b>", "not-well-formed");
});

Deno.test("tag syntax errors are not-well-formed", () => {
  expectStanzaError("<message to=a/>", "not-well-formed");
  expectStanzaError("<message to='a'id='b'/>", "not-well-formed");
  expectStanzaError("<message to/>", "not-well-formed");
  expectStanzaError("<message to='a' / >", "not-well-formed");
  expectStanzaError("< message/>", "not-well-formed");
  expectStanzaError("<1message/>", "not-well-formed");
  expectStanzaError("<mes@sage/>", "not-well-formed");
  expectStanzaError("<message></ message>", "not-well-formed");
  expectStanzaError("<a:/>", "not-well-formed");
  expectStanzaError("<:a/>", "not-well-formed");
  expectStanzaError("<a:b:c xmlns:a='u'/>", "not-well-formed");
  expectStanzaError("<message><![CDAT[x]]></message>", "not-well-formed");
  expectStanzaError("<![CDATA[between stanzas]]>", "not-well-formed");
  expectStanzaError("<message><!foo></message>", "not-well-formed");
});

Deno.test("'<' in an attribute value is not-well-formed", () => {
  expectStanzaError("<message to='a<b'/>", "not-well-formed");
  expectError(
    [encoder.encode(streamHeader() + "<message to='aaa"), encoder.encode("<b'/>")],
    "not-well-formed",
  );
});

Deno.test("duplicate attributes are not-well-formed, also after namespace resolution", () => {
  expectStanzaError("<message id='1' id='2'/>", "not-well-formed");
  expectStanzaError("<message xmlns:a='u' xmlns:b='u' a:x='1' b:x='2'/>", "not-well-formed");
  expectStanzaError("<message xmlns:a='u' xmlns:a='v'/>", "not-well-formed");
  expectStanzaError("<message xml:lang='en' xml:lang='fr'/>", "not-well-formed");
  // Different namespaces, or one unprefixed, are fine.
  const ok = run([streamHeader() + "<message xmlns:a='u' xmlns:b='v' a:x='1' b:x='2' x='3'/>"]);
  assert.equal(ok.error, undefined, ok.error?.message);
});

Deno.test("unbound prefixes and reserved namespace misuse are not-well-formed", () => {
  expectStanzaError("<foo:message/>", "not-well-formed");
  expectStanzaError("<message foo:bar='1'/>", "not-well-formed");
  expectStanzaError("<message><a xmlns:p='u'/><p:b/></message>", "not-well-formed");
  expectStanzaError("<message xmlns:p=''/>", "not-well-formed");
  expectStanzaError("<message xmlns:xml='urn:other'/>", "not-well-formed");
  expectStanzaError("<message xmlns:x='http://www.w3.org/XML/1998/namespace'/>", "not-well-formed");
  expectStanzaError("<message xmlns:xmlns='urn:x'/>", "not-well-formed");
  expectStanzaError("<xmlns:message/>", "not-well-formed");
  expectStanzaError("<message xmlns='http://www.w3.org/2000/xmlns/'/>", "not-well-formed");
});

Deno.test("a stream header outside the stream namespace is invalid-namespace", () => {
  expectError("<stream:stream xmlns='jabber:client'>", "invalid-namespace");
  expectError(
    "<stream:stream xmlns:stream='http://etherx.jabber.org/streamz'>",
    "invalid-namespace",
  );
  expectError("<stream xmlns='jabber:client'>", "invalid-namespace");
  expectError("<s:features xmlns:s='http://etherx.jabber.org/streams'>", "bad-format");
});

Deno.test("control characters and non-characters are not-well-formed", () => {
  for (
    const c of ["\u0000", "\u0001", "\u0008", "\u000b", "\u000c", "\u001f", "\ufffe", "\uffff"]
  ) {
    expectStanzaError(`<message><body>a${c}b</body></message>`, "not-well-formed");
    expectStanzaError(`<message id='a${c}b'/>`, "not-well-formed");
  }
  // A lone surrogate can only arrive in a string chunk.
  const outcome = run([streamHeader() + "<message><body>\uDC00</body></message>"]);
  assert.equal(outcome.error?.condition, "not-well-formed");
});

Deno.test("non-whitespace text between stanzas or before the root is not-well-formed", () => {
  expectStanzaError("hello<presence/>", "not-well-formed");
  expectStanzaError("<presence/>&amp;", "not-well-formed");
  expectError("hello<stream:stream/>", "not-well-formed");
  expectStanzaError("<message><body>a]]>b</body></message>", "not-well-formed");
});

Deno.test("invalid UTF-8 is unsupported-encoding (RFC 6120 §4.9.3.22)", () => {
  const head = encoder.encode(streamHeader() + "<message><body>");
  for (
    const bad of [[0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0x80]]
  ) {
    expectError([head, new Uint8Array(bad)], "unsupported-encoding");
  }
  // A UTF-16 stream starts with a byte order mark that is not UTF-8.
  expectError([new Uint8Array([0xfe, 0xff, 0x00, 0x3c])], "unsupported-encoding");
  expectError("<?xml version='1.0' encoding='ISO-8859-1'?>", "unsupported-encoding");
  expectError(`<?xml version="1.0" encoding="UTF-16"?>`, "unsupported-encoding");
  expectError("<?xml version='2.0'?>", "not-well-formed");
});

Deno.test("attribute values are decoded when a start tag ends in a later read (found by scripts/fuzz)", () => {
  const stanza = "<message to='a&amp;b@x' id='1&#65;\t2' type='chat'><body>hi</body></message>";
  const whole = run([encoder.encode(streamHeader() + stanza)]);
  assert.deepEqual(whole.stanzas[0].attrs, { to: "a&b@x", id: "1A 2", type: "chat" });
  const bytes = encoder.encode(streamHeader() + stanza);
  const start = encoder.encode(streamHeader()).length;
  for (let cut = start; cut < bytes.length; cut++) {
    const split = run([bytes.subarray(0, cut), bytes.subarray(cut)]);
    assert.deepEqual(split.stanzas, whole.stanzas, `cut at ${cut - start}`);
  }
  // The stream header's default namespace too.
  const header = "<stream:stream xmlns='a:&#65;b' xmlns:stream='http://etherx.jabber.org/streams'>";
  const cut = header.length - 1;
  const parser = new StreamParser({
    streamOpen() {},
    stanza(el) {
      assert.equal(el.ns, "a:Ab");
    },
    streamClose() {},
    error(error) {
      throw error;
    },
  });
  parser.feed(header.slice(0, cut));
  parser.feed(header.slice(cut) + "<m/>");
  assert.equal(parser.contentNamespace, "a:Ab");
});

Deno.test("what precedes invalid UTF-8 in the same read is parsed first (found by scripts/fuzz)", () => {
  const header = streamHeader();
  const stanzas = "<presence/><message><body>caf\u00e9</body></message>";
  for (const bad of [[0x80], [0xed, 0xa0, 0x80], [0xc3, 0x41]]) {
    const bytes = new Uint8Array([...encoder.encode(header + stanzas), ...bad]);
    const whole = run([bytes]);
    assert.equal(whole.error?.condition, "unsupported-encoding");
    assert.ok(whole.header, "the header before the invalid bytes is reported");
    assert.equal(whole.stanzas.length, 2, "the stanzas before the invalid bytes are reported");
    for (let seed = 1; seed <= 20; seed++) {
      const split = run(splitBytes(bytes, seed, 1, 9));
      assert.equal(split.error?.condition, "unsupported-encoding");
      assert.deepEqual(split.stanzas, whole.stanzas);
    }
  }
  // An earlier error in the same read wins over the encoding error after it.
  const early = run([new Uint8Array([...encoder.encode("'>"), 0xed, 0x2e])]);
  assert.equal(early.error?.condition, "not-well-formed");
  // The character held back from an earlier read counts: é split across reads, then garbage.
  const held = encoder.encode(header + "<message><body>caf\u00e9</body></message>");
  const split = run([
    held.subarray(0, held.length - 18),
    new Uint8Array([...held.subarray(held.length - 18), 0xff]),
  ]);
  assert.equal(split.error?.condition, "unsupported-encoding");
  assert.equal(split.stanzas.length, 1);
  assert.equal(
    split.stanzas[0].children[0] &&
      (split.stanzas[0].children[0] as { children: string[] }).children[0],
    "caf\u00e9",
  );
});

Deno.test("a 10 MB stanza is policy-violation before it has all arrived", () => {
  const total = 10 * 1024 * 1024;
  const chunks: Uint8Array[] = [encoder.encode(streamHeader() + "<message><body>")];
  const filler = encoder.encode("a".repeat(4096));
  for (let i = 0; i < total / 4096; i++) chunks.push(filler);
  const outcome = expectError(chunks, "policy-violation");
  assert.ok(outcome.errorAfter! < DEFAULT_XML_LIMITS.maxStanzaBytes + 16384);
  // A huge attribute value and a huge name fail just as early.
  const value = expectError(
    [encoder.encode(streamHeader() + "<message id='"), ...chunks.slice(1)],
    "policy-violation",
  );
  assert.ok(value.errorAfter! < DEFAULT_XML_LIMITS.maxStanzaBytes + 16384);
  const name = expectError(
    [encoder.encode(streamHeader() + "<a"), ...chunks.slice(1)],
    "policy-violation",
  );
  assert.ok(name.errorAfter! < DEFAULT_XML_LIMITS.maxStanzaBytes + 16384);
});

Deno.test("the stanza limit counts UTF-8 bytes from '<' through the end tag", () => {
  const stanza = "<a>é😀</a>"; // 3 + 2 + 4 + 4 = 13 bytes
  assert.equal(encoder.encode(stanza).length, 13);
  for (const split of [false, true]) {
    const bytes = encoder.encode(streamHeader() + "  " + stanza + " " + stanza);
    const chunks = split ? splitBytes(bytes, 5, 1, 4) : [bytes];
    const ok = run(chunks, { maxStanzaBytes: 13 });
    assert.equal(ok.error, undefined, ok.error?.message);
    assert.equal(ok.stanzas.length, 2);
    expectError(chunks, "policy-violation", { maxStanzaBytes: 12 });
  }
  // setLimits applies to the next stanza.
  const errors: string[] = [];
  const parser = new StreamParser({
    streamOpen() {},
    stanza() {},
    streamClose() {},
    error: (e) => errors.push(e.condition),
  });
  parser.feed(streamHeader() + stanza);
  parser.setLimits({ maxStanzaBytes: 12 });
  parser.feed(stanza);
  assert.deepEqual(errors, ["policy-violation"]);
  assert.throws(() => parser.setLimits({ maxDepth: 0 }), RangeError);
});

Deno.test("a huge stream header is policy-violation", () => {
  const attrs = Array.from({ length: 60 }, (_, i) => ` a${i}='${"x".repeat(1200)}'`).join("");
  expectError(
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'" +
      attrs + ">",
    "policy-violation",
  );
  expectError(" ".repeat(70000), "policy-violation");
});

Deno.test("a depth bomb is policy-violation", () => {
  expectStanzaError("<a>".repeat(65), "policy-violation");
  const ok = run([streamHeader() + "<a>".repeat(64) + "</a>".repeat(64)]);
  assert.equal(ok.error, undefined, ok.error?.message);
  expectError(streamHeader() + "<a><b><c/></b></a>", "policy-violation", { maxDepth: 2 });
});

Deno.test("too many attributes is policy-violation", () => {
  const attrs = (n: number) => Array.from({ length: n }, (_, i) => ` a${i}='1'`).join("");
  expectStanzaError(`<message${attrs(65)}/>`, "policy-violation");
  const ok = run([streamHeader() + `<message${attrs(64)}/>`]);
  assert.equal(ok.error, undefined, ok.error?.message);
  expectError(streamHeader() + "<message xmlns:a='u' b='1' c='2'/>", "policy-violation", {
    maxAttributes: 2,
  });
});

Deno.test("mutated streams give the same outcome whole and in small chunks", () => {
  const base = encoder.encode(
    streamHeader() + generateStanzas(5, 12).join("") + STREAM_FOOTER,
  );
  const replacements = encoder.encode("<>&'\"/=:]!?x \n\u0000");
  const random = createRandom(42);
  for (let i = 0; i < 400; i++) {
    let bytes = base.slice();
    const at = randomInt(random, 0, bytes.length - 1);
    const kind = random();
    if (kind < 0.6) bytes[at] = replacements[randomInt(random, 0, replacements.length - 1)];
    else if (kind < 0.7) bytes[at] = random() < 0.5 ? 0xff : 0xc3;
    else if (kind < 0.85) {
      bytes = new Uint8Array([...bytes.subarray(0, at), ...bytes.subarray(at + 1)]);
    } else {
      const end = Math.min(bytes.length, at + randomInt(random, 1, 20));
      bytes = new Uint8Array([...bytes.subarray(0, end), ...bytes.subarray(at)]);
    }
    const whole = run([bytes]);
    const split = run(splitBytes(bytes, i, 1, 7));
    assert.equal(split.error?.condition, whole.error?.condition, `mutation ${i}`);
    assert.equal(split.closed, whole.closed, `mutation ${i}`);
    assert.deepEqual(split.stanzas, whole.stanzas, `mutation ${i}`);
  }
});
