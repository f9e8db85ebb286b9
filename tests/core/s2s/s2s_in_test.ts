// Inbound server-to-server streams on the wire: TLS before anything else, EXTERNAL only for a
// certificate valid for the stream's 'from', dialback verification answers, and stanzas only
// from an authenticated domain to the domain it authenticated for.

import assert from "node:assert/strict";
import { connect as netConnect } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { dialbackKey } from "../../../core/s2s/dialback.ts";
import type { Element } from "../../../core/xml/element.ts";
import { StreamParser } from "../../../core/xml/parser.ts";
import { conditionName } from "../../../core/xml/stanza.ts";
import { type DnsResponder, startDnsResponder } from "../../helpers/dns_responder.ts";
import { type FederatingServerOptions, startFederatingServer } from "../../helpers/federation.ts";
import { RawClient } from "../../helpers/raw_client.ts";
import { createTestCa, type IssuedCertificate, type TestCa } from "../../helpers/test_ca.ts";
import type { TestServer } from "../../helpers/test_server.ts";

const SERVER = { ns: "jabber:server" };
const NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl";
const NS_DB = "jabber:server:dialback";
const SECRET = "s3cr3t-for-tests";
const NS_STREAM = "http://etherx.jabber.org/streams";
const NS_STREAMS_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams";

type ServerOptions = Partial<Omit<FederatingServerOptions, "dns" | "ca">>;

/**
 * Runs `run` against a.test (alice, the modules her session needs, a known dialback secret),
 * with `options` in place of any of these (a `hostToml`, say); stopped afterwards, whatever
 * happens.
 */
async function withServer(
  options: ServerOptions,
  run: (t: TestServer, ca: TestCa, dns: DnsResponder) => Promise<void>,
): Promise<void> {
  const dns = await startDnsResponder();
  const ca = await createTestCa();
  const t = await startFederatingServer({
    domain: "a.test",
    dns,
    ca,
    users: { alice: "pw" },
    modules: ["disco", "roster", "presence"],
    globalToml: `s2s_dialback_secret = "${SECRET}"`,
    ...options,
  });
  try {
    await run(t, ca, dns);
  } finally {
    await t.stop();
    await dns.close();
  }
}

/**
 * An s2s stream from `from` to a.test, secured with STARTTLS (presenting `issued` when given):
 * the peer and the features offered after TLS.
 */
async function secured(
  t: TestServer,
  from: string,
  issued?: IssuedCertificate,
): Promise<{ peer: RawClient; features: Element }> {
  const peer = await RawClient.connect(t.server.port("s2s"));
  await peer.open("a.test", { ...SERVER, from });
  const certificate = issued && { cert: issued.chainPem, key: issued.keyPem };
  const features = await peer.starttls("a.test", { ...SERVER, from, certificate });
  return { peer, features };
}

/** The condition of the stream error the server closed with. */
async function streamErrorOf(client: RawClient): Promise<string | undefined> {
  const error = await client.next((el) => el.name === "error");
  return conditionName(error);
}

Deno.test("inbound: TLS comes first; unknown hosts and client namespaces are refused", () =>
  withServer({}, async (t) => {
    const port = t.server.port("s2s");
    const plain = await RawClient.connect(port);
    const features = await plain.open("a.test", { ...SERVER, from: "x.test" });
    assert.ok(features.getChild("starttls")?.getChild("required"), "STARTTLS is required");
    assert.equal(features.getChild("mechanisms"), undefined);
    assert.equal(features.getChild("dialback"), undefined);
    assert.equal(plain.headers[0].attrs.from, "a.test");
    assert.ok(plain.headers[0].attrs.id);
    // A domain this server does not serve: a dialback error, the stream stays.
    plain.send(`<db:result from='x.test' to='nope.test'>abc</db:result>`);
    const unserved = await plain.next((el) => el.name === "result" && el.ns === NS_DB);
    assert.equal(unserved.attrs.type, "error");
    assert.ok(unserved.getChild("error")?.getChild("item-not-found"));
    // Written with the db prefix the header declares (ejabberd matches the literal name).
    assert.match(plain.text, /<db:result from='nope\.test' to='x\.test' type='error'><error /);
    // Dialback before TLS is refused by policy: the stream ends with the reason.
    plain.send(`<db:result from='x.test' to='a.test'>abc</db:result>`);
    const refused = await plain.next((el) => el.name === "error" && el.ns === NS_STREAM);
    assert.equal(conditionName(refused), "policy-violation");
    assert.match(refused.getChildText("text", NS_STREAMS_ERRORS) ?? "", /before TLS/);
    plain.close();

    const unknown = await RawClient.connect(port);
    unknown.send(
      `<?xml version='1.0'?><stream:stream to='nope.test' from='x.test' version='1.0' ` +
        `xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>`,
    );
    assert.equal(await streamErrorOf(unknown), "host-unknown");
    unknown.close();

    const client = await RawClient.connect(port);
    client.send(
      `<?xml version='1.0'?><stream:stream to='a.test' version='1.0' ` +
        `xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>`,
    );
    assert.equal(await streamErrorOf(client), "invalid-namespace");
    client.close();
  }));

Deno.test("inbound: EXTERNAL only for a certificate valid for 'from', then stanzas flow", () =>
  withServer({}, async (t, ca) => {
    const issued = await ca.issue({ names: ["x.test"] });
    const { client: alice } = await RawClient.login(t.port, "alice", "pw", "r", "a.test");

    // A stanza before authentication ends the stream.
    const { peer: early, features: secureFeatures } = await secured(t, "x.test", issued);
    const mechanisms = secureFeatures.getChild("mechanisms", NS_SASL)!.getChildren("mechanism");
    assert.deepEqual(mechanisms.map((m) => m.text()), ["EXTERNAL"]);
    assert.ok(secureFeatures.getChild("dialback", "urn:xmpp:features:dialback"));
    early.send("<message from='u@x.test' to='alice@a.test'><body>early</body></message>");
    assert.equal(await streamErrorOf(early), "not-authorized");
    early.close();

    // The certificate names x.test, not y.test: no EXTERNAL, and a forced attempt fails.
    const { peer: other, features: otherFeatures } = await secured(t, "y.test", issued);
    assert.equal(otherFeatures.getChild("mechanisms", NS_SASL), undefined);
    other.send(`<auth xmlns='${NS_SASL}' mechanism='EXTERNAL'>=</auth>`);
    const failure = await other.next((el) => el.name === "failure");
    assert.ok(failure.getChild("not-authorized"));
    assert.match(
      failure.getChildText("text") ?? "",
      /names 'dns:x.test'.*none of which is 'y.test'/,
    );
    other.close();

    // The right domain authenticates and may send stanzas from x.test to a.test only.
    const { peer } = await secured(t, "x.test", issued);
    peer.send(`<auth xmlns='${NS_SASL}' mechanism='EXTERNAL'>${btoa("x.test")}</auth>`);
    await peer.next((el) => el.name === "success");
    peer.restart();
    const after = await peer.open("a.test", { ...SERVER, from: "x.test" });
    assert.equal(after.getChild("mechanisms", NS_SASL), undefined);
    peer.send("<message from='u@x.test/r' to='alice@a.test/r' id='in1'><body>hi</body></message>");
    const got = await alice.next((el) => el.attrs.id === "in1");
    assert.equal(got.attrs.from, "u@x.test/r");
    assert.equal(got.ns, "jabber:client");
    assert.match(alice.text, /<message [^>]*id='in1'[^>]*><body>hi<\/body><\/message>/);
    const link = t.server.remote!.links().find((l) => l.remote === "x.test")!;
    assert.equal(link.auth, "sasl-external");
    assert.equal(link.direction, "in");
    peer.send("<message from='evil@z.test' to='alice@a.test'><body>spoof</body></message>");
    assert.equal(await streamErrorOf(peer), "invalid-from");
    assert.ok(!alice.received.some((el) => el.getChildText("body") === "spoof"));
    peer.close();
    alice.close();
  }));

Deno.test("inbound: db:verify is valid only for keys this server generated", () =>
  withServer({}, async (t) => {
    const { peer, features } = await secured(t, "x.test");
    assert.ok(features.getChild("dialback", "urn:xmpp:features:dialback"));
    const good = dialbackKey(SECRET, "x.test", "a.test", "stream-1");
    peer.send(`<db:verify from='x.test' to='a.test' id='stream-1'>${good}</db:verify>`);
    const valid = await peer.next((el) => el.name === "verify" && el.attrs.id === "stream-1");
    assert.equal(valid.attrs.type, "valid");
    assert.equal(valid.attrs.from, "a.test");
    assert.equal(valid.attrs.to, "x.test");
    const bad = dialbackKey("another secret", "x.test", "a.test", "stream-2");
    peer.send(`<db:verify from='x.test' to='a.test' id='stream-2'>${bad}</db:verify>`);
    const invalid = await peer.next((el) => el.name === "verify" && el.attrs.id === "stream-2");
    assert.equal(invalid.attrs.type, "invalid");
    peer.close();
  }));

Deno.test("inbound: a peer cannot pile up dialback requests waiting for verification", () =>
  withServer({ hostToml: "s2s_secure_auth = false" }, async (t, _ca, dns) => {
    // Names that never answer in DNS keep each verification pending.
    for (let i = 0; i < 20; i++) dns.set(`_xmpp-server._tcp.slow${i}.test`, { silent: true });
    for (let i = 0; i < 20; i++) dns.set(`_xmpps-server._tcp.slow${i}.test`, { silent: true });
    const { peer } = await secured(t, "slow0.test");
    for (let i = 0; i < 20; i++) {
      peer.send(`<db:result from='slow${i}.test' to='a.test'>key${i}</db:result>`);
    }
    assert.equal(await streamErrorOf(peer), "policy-violation");
    assert.match(peer.text, /Too many dialback requests/);
    peer.close();
  }));

Deno.test("inbound: a dialback request refused by s2s_secure_auth ends the stream with not-authorized and the reason", () =>
  withServer({}, async (t, ca) => {
    const issued = await ca.selfSigned(["x.test"]);
    const { peer, features } = await secured(t, "x.test", issued);
    assert.equal(features.getChild("mechanisms", NS_SASL), undefined);
    peer.send(`<db:result from='x.test' to='a.test'>some-key</db:result>`);
    // Nothing else is authenticated on this stream: it ends with the reason, as Prosody does.
    const error = await peer.next((el) => el.name === "error" && el.ns === NS_STREAM);
    assert.equal(conditionName(error), "not-authorized");
    assert.match(
      error.getChildText("text", NS_STREAMS_ERRORS) ?? "",
      /self-signed.*valid certificate is required \(s2s_secure_auth\)/,
    );
    await peer.waitClosed();
    assert.ok(peer.closedByServer, peer.text);
    peer.close();
  }));

Deno.test("inbound: with s2s_dialback = false dialback is neither offered nor accepted, even with a valid certificate", () =>
  withServer({ hostToml: "s2s_dialback = false" }, async (t, ca) => {
    const issued = await ca.issue({ names: ["x.test"] });
    const { peer, features } = await secured(t, "x.test", issued);
    assert.equal(features.getChild("dialback", "urn:xmpp:features:dialback"), undefined);
    assert.ok(features.getChild("mechanisms", NS_SASL), "SASL EXTERNAL is still offered");
    // Asked to verify a key as the authoritative server: we never send any.
    const key = dialbackKey("any", "x.test", "a.test", "s1");
    peer.send(`<db:verify from='x.test' to='a.test' id='s1'>${key}</db:verify>`);
    const verify = await peer.next((el) => el.name === "verify" && el.ns === NS_DB);
    assert.equal(verify.attrs.type, "error");
    assert.ok(verify.getChild("error")?.getChild("policy-violation"));
    // A dialback request is refused although the certificate is valid (no XEP-0344 shortcut).
    peer.send(`<db:result from='x.test' to='a.test'>some-key</db:result>`);
    const error = await peer.next((el) => el.name === "error" && el.ns === NS_STREAM);
    assert.equal(conditionName(error), "policy-violation");
    assert.match(
      error.getChildText("text", NS_STREAMS_ERRORS) ?? "",
      /Dialback is off for 'a\.test' \(s2s_dialback = false\)/,
    );
    await peer.waitClosed();
    assert.equal(t.server.remote!.links().length, 0);
    peer.close();
  }));

Deno.test("inbound: a stream closed after STARTTLS, before the peer's new header, still opens with a header", () =>
  withServer({ globalToml: "s2s_auth_timeout = 1" }, async (t) => {
    const socket = netConnect({ host: "127.0.0.1", port: t.server.port("s2s") });
    try {
      await new Promise((resolve, reject) => {
        socket.once("connect", resolve);
        socket.once("error", reject);
      });
      let plain = "";
      const proceed = new Promise<void>((resolve) => {
        socket.on("data", (chunk: Uint8Array) => {
          plain += new TextDecoder().decode(chunk);
          if (plain.includes("<proceed")) resolve();
        });
      });
      socket.write(
        `<?xml version='1.0'?><stream:stream to='a.test' from='x.test' version='1.0' ` +
          `xmlns='jabber:server' xmlns:stream='${NS_STREAM}'>`,
      );
      socket.write(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`);
      await proceed;
      socket.removeAllListeners("data");
      const secure = tlsConnect({ socket, servername: "a.test", rejectUnauthorized: false });
      // Everything a.test sends on the TLS layer, through our stream parser.
      const layer = { headers: [] as Element[], elements: [] as Element[], errors: [] as string[] };
      let text = "";
      let streamClosed!: () => void;
      const closed = new Promise<void>((resolve) => streamClosed = resolve);
      const parser = new StreamParser({
        streamOpen: (header) => layer.headers.push(header),
        stanza: (el) => layer.elements.push(el),
        streamClose: () => streamClosed(),
        error: (error) => {
          layer.errors.push(error.message);
          streamClosed();
        },
      }, { maxStanzaBytes: 100_000 });
      secure.on("data", (chunk: Uint8Array) => {
        text += new TextDecoder().decode(chunk);
        parser.feed(chunk);
      });
      secure.on("error", () => {});
      secure.on("close", () => streamClosed());
      // We never open the new stream: the server gives up after s2s_auth_timeout.
      await closed;
      secure.destroy();
      assert.deepEqual(layer.errors, [], `not well-formed: ${text}`);
      assert.equal(layer.headers.length, 1, text);
      assert.equal(layer.headers[0].attrs.from, "a.test");
      const error = layer.elements.find((el) => el.name === "error" && el.ns === NS_STREAM);
      assert.ok(error, text);
      assert.equal(conditionName(error), "connection-timeout");
    } finally {
      socket.destroy();
    }
  }));

Deno.test("inbound: features announce XEP-0478 limits (s2s_stanza_size_limit, s2s_idle_timeout)", () =>
  withServer({
    globalToml:
      `s2s_dialback_secret = "${SECRET}"\ns2s_stanza_size_limit = 123456\ns2s_idle_timeout = 77`,
  }, async (t) => {
    const peer = await RawClient.connect(t.server.port("s2s"));
    const plain = await peer.open("a.test", { ...SERVER, from: "b.test" });
    for (const features of [plain, await peer.starttls("a.test", { ...SERVER, from: "b.test" })]) {
      const limits = features.getChild("limits", "urn:xmpp:stream-limits:0");
      assert.equal(limits?.getChildText("max-bytes"), "123456");
      assert.equal(limits?.getChildText("idle-seconds"), "77");
    }
    peer.close();
  }));
