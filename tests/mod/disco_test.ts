// XEP-0030 and XEP-0115 on the wire: the caps hash matches the XEP's own examples, the server
// advertises its hash in stream features before and after login, disco#info of node#ver
// equals the plain disco#info, and the hash follows modules being unloaded.

import assert from "node:assert/strict";
import type { ModuleAPI } from "../../core/modules.ts";
import { Element } from "../../core/xml/element.ts";
import { serialize } from "../../core/xml/serializer.ts";
import { CAPS_NODE, capsHash, type CapsIdentity, capsVerificationString } from "../../mod/disco.ts";
import { RawClient } from "../helpers/raw_client.ts";
import { startTestServer } from "../helpers/test_server.ts";

const NS_CAPS = "http://jabber.org/protocol/caps";
const NS_INFO = "http://jabber.org/protocol/disco#info";
const NS_DATA = "jabber:x:data";
const NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";

const EXAMPLE_FEATURES = [
  "http://jabber.org/protocol/caps",
  "http://jabber.org/protocol/disco#info",
  "http://jabber.org/protocol/disco#items",
  "http://jabber.org/protocol/muc",
];

Deno.test("the caps hash of XEP-0115 §5.2 (simple example)", () => {
  const identities = [{ category: "client", type: "pc", name: "Exodus 0.9.1" }];
  // Order of the input does not matter: the algorithm sorts.
  const features = [...EXAMPLE_FEATURES].reverse();
  assert.equal(
    capsVerificationString(identities, features),
    "client/pc//Exodus 0.9.1<http://jabber.org/protocol/caps<" +
      "http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<" +
      "http://jabber.org/protocol/muc<",
  );
  assert.equal(capsHash(identities, features), "QgayPKawpkPSDYmwT/WM94uAlu0=");
});

Deno.test("the caps hash of XEP-0115 §5.3 (languages and an extension form)", () => {
  const identities: CapsIdentity[] = [
    { category: "client", type: "pc", lang: "en", name: "Psi 0.11" },
    { category: "client", type: "pc", lang: "el", name: "Ψ 0.11" },
  ];
  const form = new Element("x", { xmlns: NS_DATA, type: "result" });
  const field = (name: string, values: string[], type?: string) => {
    const f = form.c("field", { var: name, type });
    for (const value of values) f.c("value").t(value);
  };
  field("FORM_TYPE", ["urn:xmpp:dataforms:softwareinfo"], "hidden");
  field("ip_version", ["ipv6", "ipv4"], "text-multi"); // unsorted on purpose
  field("os", ["Mac"]);
  field("os_version", ["10.5.1"]);
  field("software", ["Psi"]);
  field("software_version", ["0.11"]);
  // A form without FORM_TYPE is ignored (§5.4).
  const untyped = new Element("x", { xmlns: NS_DATA, type: "result" });
  untyped.c("field", { var: "noise" }).c("value").t("x");
  assert.equal(
    capsVerificationString(identities, EXAMPLE_FEATURES, [untyped, form]),
    "client/pc/el/Ψ 0.11<client/pc/en/Psi 0.11<http://jabber.org/protocol/caps<" +
      "http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<" +
      "http://jabber.org/protocol/muc<urn:xmpp:dataforms:softwareinfo<" +
      "ip_version<ipv4<ipv6<os<Mac<os_version<10.5.1<software<Psi<software_version<0.11<",
  );
  assert.equal(capsHash(identities, EXAMPLE_FEATURES, [form]), "q07IKJEyjvHSyhy//CH0CxmKi8w=");
});

/** The caps element of a features element, checked for its fixed attributes; returns ver. */
function capsVer(features: Element): string {
  const c = features.getChild("c", NS_CAPS);
  assert.ok(c, `no caps in ${serialize(features)}`);
  assert.equal(c.attrs.hash, "sha-1");
  assert.equal(c.attrs.node, CAPS_NODE);
  return c.attrs.ver;
}

/** The caps hash a client computes from a disco#info answer. */
function hashOfInfo(info: Element): string {
  const query = info.getChild("query", NS_INFO)!;
  const identities = query.getChildren("identity").map((i) => ({
    category: i.attrs.category,
    type: i.attrs.type,
    lang: i.attrs["xml:lang"],
    name: i.attrs.name,
  }));
  const features = query.getChildren("feature").map((f) => f.attrs.var);
  return capsHash(identities, features, query.getChildren("x", NS_DATA));
}

Deno.test("the server's caps are in stream features and disco#info of node#ver", async () => {
  const t = await startTestServer({
    users: { alice: "pw" },
    modules: ["disco", "ping", "version", "contact_info"],
    hostToml: `contact_info = { abuse = ["mailto:abuse@example.com"] }`,
  });
  try {
    const client = await RawClient.connect(t.port);
    const beforeTls = capsVer(await client.open());
    const afterTls = capsVer(await client.starttls());
    client.send(
      `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${
        btoa("\0alice\0pw")
      }</auth>`,
    );
    await client.next((el) => el.name === "success");
    client.restart();
    const afterAuth = capsVer(await client.open());
    assert.equal(afterTls, beforeTls);
    assert.equal(afterAuth, beforeTls);
    client.send(
      "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>",
    );
    const bound = await client.next((el) => el.attrs.id === "b");
    const jid = bound.getChild("bind")!.getChildText("jid")!;

    client.send(`<iq type='get' id='i1' to='localhost'><query xmlns='${NS_INFO}'/></iq>`);
    const plain = await client.next((el) => el.attrs.id === "i1");
    assert.equal(hashOfInfo(plain), beforeTls);
    assert.ok(
      plain.getChild("query")!.getChildren("feature").some((f) => f.attrs.var === NS_CAPS),
    );

    const node = `${CAPS_NODE}#${beforeTls}`;
    client.send(
      `<iq type='get' id='i2' to='localhost'><query xmlns='${NS_INFO}' node='${node}'/></iq>`,
    );
    const withNode = await client.next((el) => el.attrs.id === "i2");
    // Same contents; only the id and the echoed node differ.
    const expected = serialize(plain)
      .replace("id='i1'", "id='i2'")
      .replace(`<query xmlns='${NS_INFO}'>`, `<query xmlns='${NS_INFO}' node='${node}'>`);
    assert.equal(serialize(withNode), expected);

    client.send(
      `<iq type='get' id='i3' to='localhost'><query xmlns='${NS_INFO}' node='${CAPS_NODE}#stale'/></iq>`,
    );
    assert.equal(
      serialize(await client.next((el) => el.attrs.id === "i3")),
      `<iq to='${jid}' from='localhost' id='i3' type='error'><error type='cancel'>` +
        `<item-not-found xmlns='${NS_STANZAS}'/></error></iq>`,
    );

    // Unloading a module changes what the server offers, and so its hash.
    assert.equal(t.server.modules.unload(t.server.hosts.get("localhost")!, "version"), true);
    client.send(
      `<iq type='get' id='i4' to='localhost'><query xmlns='${NS_INFO}' node='${node}'/></iq>`,
    );
    assert.match(serialize(await client.next((el) => el.attrs.id === "i4")), /item-not-found/);
    const other = await RawClient.connect(t.port);
    const newVer = capsVer(await other.open());
    assert.notEqual(newVer, beforeTls);
    client.send(`<iq type='get' id='i5' to='localhost'><query xmlns='${NS_INFO}'/></iq>`);
    assert.equal(hashOfInfo(await client.next((el) => el.attrs.id === "i5")), newVer);
    other.close();
    client.close();
  } finally {
    await t.stop();
  }
});

Deno.test("the server answers disco on an account's bare JID, and not for unknown ones", async () => {
  const t = await startTestServer({ users: { alice: "pw", bob: "pw" } });
  try {
    const { client } = await RawClient.login(t.port, "bob", "pw");
    client.send(
      "<iq type='get' id='a' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    );
    const info = await client.next((el) => el.attrs.id === "a");
    assert.equal(info.attrs.type, "result");
    assert.equal(info.attrs.from, "alice@localhost");
    const identity = info.getChild("query")!.getChild("identity")!;
    assert.deepEqual(identity.attrs, { category: "account", type: "registered" });
    client.send(
      "<iq type='get' id='i' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>",
    );
    const items = await client.next((el) => el.attrs.id === "i");
    assert.equal(items.attrs.type, "result");
    assert.equal(items.getChild("query")!.elements().length, 0);
    client.send(
      "<iq type='get' id='n' to='nobody@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    );
    const unknown = await client.next((el) => el.attrs.id === "n");
    assert.equal(unknown.attrs.type, "error");
    assert.ok(unknown.getChild("error")!.getChild("service-unavailable"));
    client.close();
  } finally {
    await t.stop();
  }
});

Deno.test("modules add to what accounts and the host report, and take it back on unload", async () => {
  // Without the real pep module, whose identity this stand-in adds.
  const t = await startTestServer({ users: { alice: "pw", bob: "pw" }, modules: ["disco"] });
  try {
    const host = t.server.hosts.get("localhost")!;
    t.server.modules.register("pep_like", {
      default(m: ModuleAPI) {
        m.addAccountIdentity("pubsub", "pep");
        m.addAccountFeature("urn:example:account-feature");
        m.addItem({ jid: "upload.localhost", name: "File sharing" });
      },
    });
    await t.server.modules.load(host, "pep_like");
    const { client } = await RawClient.login(t.port, "bob", "pw");
    const ask = async (to: string, ns: string) => {
      const id = crypto.randomUUID();
      client.send(`<iq type='get' id='${id}' to='${to}'><query xmlns='${ns}'/></iq>`);
      return (await client.next((el) => el.attrs.id === id)).getChild("query")!;
    };
    let info = await ask("alice@localhost", NS_INFO);
    assert.deepEqual(
      info.getChildren("identity").map((i) => `${i.attrs.category}/${i.attrs.type}`),
      ["account/registered", "pubsub/pep"],
    );
    assert.ok(
      info.getChildren("feature").some((f) => f.attrs.var === "urn:example:account-feature"),
    );
    const items = await ask("localhost", "http://jabber.org/protocol/disco#items");
    assert.deepEqual(items.getChildren("item").map((i) => i.attrs), [
      { jid: "upload.localhost", name: "File sharing" },
    ]);
    assert.equal(t.server.modules.unload(host, "pep_like"), true);
    info = await ask("alice@localhost", NS_INFO);
    assert.deepEqual(info.getChildren("identity").map((i) => i.attrs.type), ["registered"]);
    assert.ok(
      !info.getChildren("feature").some((f) => f.attrs.var === "urn:example:account-feature"),
    );
    client.close();
  } finally {
    await t.stop();
  }
});
