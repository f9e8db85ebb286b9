// Tests for the XML serializer: escaping, when `xmlns` is written, and that serialized trees
// parse back to the same trees.

import assert from "node:assert/strict";
import { Element, NS_CLIENT, NS_SERVER } from "../../../core/xml/element.ts";
import { parseElement } from "../../../core/xml/parser.ts";
import { escapeAttr, escapeText, NS_COMPONENT, serialize } from "../../../core/xml/serializer.ts";
import { generateStanzas } from "./corpus.ts";

/** A tree without parent links, for deep comparison. */
interface Plain {
  name: string;
  ns: string;
  attrs: Record<string, string>;
  children: (Plain | string)[];
}

function toPlain(el: Element): Plain {
  return {
    name: el.name,
    ns: el.ns,
    attrs: { ...el.attrs },
    children: el.children.map((child) => typeof child === "string" ? child : toPlain(child)),
  };
}

Deno.test("escapeText replaces &, < and > and keeps other text as is", () => {
  assert.equal(escapeText("plain text 😀 你好"), "plain text 😀 你好");
  assert.equal(escapeText("a & b < c > d"), "a &amp; b &lt; c &gt; d");
  assert.equal(escapeText("]]>"), "]]&gt;");
  assert.equal(escapeText(`"quotes" 'stay'`), `"quotes" 'stay'`);
  assert.equal(escapeText("line\r\nend\tx"), "line&#13;\nend\tx");
  assert.equal(escapeText(""), "");
  assert.equal(escapeText("&&"), "&amp;&amp;");
});

Deno.test("escapeAttr also replaces quotes and whitespace that normalization would change", () => {
  assert.equal(escapeAttr("juliet@capulet.lit/balcony"), "juliet@capulet.lit/balcony");
  assert.equal(escapeAttr(`it's "x" <&>`), "it&apos;s &quot;x&quot; &lt;&amp;&gt;");
  assert.equal(escapeAttr("a\tb\nc\rd"), "a&#9;b&#10;c&#13;d");
});

Deno.test("empty elements are written as <x/> and text is escaped", () => {
  const el = new Element("message", { to: "romeo@montague.lit", type: "chat" });
  el.c("body").t("Tom & Jerry <3");
  el.c("active", { xmlns: "http://jabber.org/protocol/chatstates" });
  assert.equal(
    serialize(el),
    "<message to='romeo@montague.lit' type='chat'><body>Tom &amp; Jerry &lt;3</body>" +
      "<active xmlns='http://jabber.org/protocol/chatstates'/></message>",
  );
  assert.equal(serialize(new Element("presence")), "<presence/>");
  const quoted = new Element("x", { xmlns: "urn:x", a: "it's" });
  assert.equal(serialize(quoted), "<x xmlns='urn:x' a='it&apos;s'/>");
});

Deno.test("xmlns is written only where the namespace changes", () => {
  const iq = new Element("iq", { type: "result", id: "1" });
  const query = iq.c("query", { xmlns: "jabber:iq:roster" });
  query.c("item", { jid: "a@b" }).c("group").t("Friends");
  const none = iq.c("x", { xmlns: "" });
  none.c("y");
  assert.equal(
    serialize(iq),
    "<iq type='result' id='1'><query xmlns='jabber:iq:roster'><item jid='a@b'>" +
      "<group>Friends</group></item></query><x xmlns=''><y/></x></iq>",
  );
  // Children of an element in another namespace re-declare the default when they differ.
  const back = new Element("a", { xmlns: "urn:a" });
  back.c("b", { xmlns: NS_CLIENT });
  assert.equal(serialize(back), "<a xmlns='urn:a'><b xmlns='jabber:client'/></a>");
});

Deno.test("stanzas move between client, server and component streams without xmlns", () => {
  const client = new Element("message", { to: "a@b" });
  const server = new Element("message", { xmlns: NS_SERVER, to: "a@b" });
  for (const el of [client, server]) {
    assert.equal(serialize(el), "<message to='a@b'/>");
    assert.equal(serialize(el, NS_CLIENT), "<message to='a@b'/>");
    assert.equal(serialize(el, NS_SERVER), "<message to='a@b'/>");
    assert.equal(serialize(el, NS_COMPONENT), "<message to='a@b'/>");
  }
  // Other top-level namespaces are declared unless they are the context.
  const sm = new Element("r", { xmlns: "urn:xmpp:sm:3" });
  assert.equal(serialize(sm), "<r xmlns='urn:xmpp:sm:3'/>");
  assert.equal(serialize(sm, "urn:xmpp:sm:3"), "<r/>");
  // Within a jabber:server stanza, children in the same namespace inherit it.
  server.c("body").t("hi");
  assert.equal(serialize(server, NS_CLIENT), "<message to='a@b'><body>hi</body></message>");
});

Deno.test("prefixed attributes and namespace declarations are written as stored", () => {
  const el = parseElement(
    "<iq xmlns:e='urn:e' e:x='1' xml:lang='fr'><e:q e:y='2'><r/></e:q></iq>",
  );
  const xml = serialize(el);
  assert.equal(
    xml,
    "<iq xmlns:e='urn:e' e:x='1' xml:lang='fr'><q xmlns='urn:e' e:y='2'>" +
      "<r xmlns='jabber:client'/></q></iq>",
  );
  assert.deepEqual(toPlain(parseElement(xml)), toPlain(el));
});

Deno.test("every corpus stanza survives serialize then parse unchanged", () => {
  for (const source of generateStanzas(21, 600)) {
    const el = parseElement(source);
    const xml = serialize(el);
    const again = parseElement(xml);
    assert.deepEqual(toPlain(again), toPlain(el), source);
    assert.equal(serialize(again), xml);
  }
});

Deno.test("awkward text and attribute values round-trip exactly", () => {
  const samples = [
    "a\r\nb\rc\nd",
    "\ttabs\tand  spaces ",
    `quotes ' and " and &apos; literally`,
    "]]> and ]] > and <![CDATA[",
    "😀 👨‍👩‍👧 你好 \u00a0 \u2028 \ud800\udc00",
    "& &amp; &#38; <>",
    "",
  ];
  for (const value of samples) {
    const el = new Element("message", { id: value, "xml:lang": "en" });
    el.c("body").t(value);
    el.c("x", { xmlns: "urn:x:" + value.length }).t(value).c("y", { v: value });
    const back = parseElement(serialize(el));
    assert.deepEqual(toPlain(back), toPlain(el), JSON.stringify(value));
  }
});
