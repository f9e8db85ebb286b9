// Outbound server-to-server streams on the wire, against a scripted remote server: what the
// peer receives when Lilt refuses it by policy after STARTTLS (a stream header on the new TLS
// layer, then a stream error with the reason), and that `s2s_dialback = false` means no dialback.

import assert from "node:assert/strict";
import { conditionName } from "../../../core/xml/stanza.ts";
import { type DnsResponder, startDnsResponder } from "../../helpers/dns_responder.ts";
import { online, startFederatingServer } from "../../helpers/federation.ts";
import { conditionOf } from "../../helpers/raw_client.ts";
import { type PeerLayer, ScriptedS2SPeer } from "../../helpers/scripted_s2s_peer.ts";
import { createTestCa, type IssuedCertificate, type TestCa } from "../../helpers/test_ca.ts";
import type { TestServer } from "../../helpers/test_server.ts";

const NS_STREAM = "http://etherx.jabber.org/streams";
const NS_STREAMS_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams";
const PEER = "peer.test";

/** a.test (with alice) and a scripted peer.test it finds through the DNS responder. */
async function withPeer(
  options: { peerCertificate: (ca: TestCa) => Promise<IssuedCertificate>; hostToml?: string },
  run: (a: TestServer, peer: ScriptedS2SPeer, send: (id: string) => Promise<string>) => Promise<
    void
  >,
): Promise<void> {
  const dns: DnsResponder = await startDnsResponder();
  const ca = await createTestCa();
  const issued = await options.peerCertificate(ca);
  const peer = await ScriptedS2SPeer.start({
    domain: PEER,
    certificate: { cert: issued.chainPem, key: issued.keyPem },
  });
  dns.set(`_xmpp-server._tcp.${PEER}`, {
    srv: [{ priority: 0, weight: 0, port: peer.port, target: PEER }],
  });
  dns.set(PEER, { a: ["127.0.0.1"] });
  const a = await startFederatingServer({
    domain: "a.test",
    dns,
    ca,
    users: { alice: "pw" },
    modules: ["roster", "presence"],
    hostToml: options.hostToml,
  });
  const alice = await online(a.port, "alice", "a.test");
  // Sends a message to the peer's domain; resolves with the text of the bounce that follows.
  const send = async (id: string) => {
    alice.send(`<message to='x@${PEER}' type='chat' id='${id}'><body>hi</body></message>`);
    const bounced = await alice.next((el) => el.attrs.id === id, 15_000);
    assert.equal(bounced.attrs.type, "error");
    assert.equal(conditionOf(bounced), "remote-server-timeout");
    return bounced.getChild("error")!.getChildText("text") ?? "";
  };
  try {
    await run(a, peer, send);
  } finally {
    alice.close();
    await a.stop();
    await peer.close();
    await dns.close();
  }
}

/**
 * Asserts that a layer is a well-formed stream from a.test to the peer that ended with a
 * stream error of `condition` whose text matches `text`.
 */
function assertClosedWithError(layer: PeerLayer, condition: string, text: RegExp): void {
  assert.deepEqual(layer.parseErrors, [], `not well-formed: ${layer.text}`);
  assert.equal(layer.headers.length, 1, layer.text);
  assert.equal(layer.headers[0].attrs.from, "a.test");
  assert.equal(layer.headers[0].attrs.to, PEER);
  const error = layer.elements.find((el) => el.name === "error" && el.ns === NS_STREAM);
  assert.ok(error, `no stream error in: ${layer.text}`);
  assert.equal(conditionName(error), condition);
  assert.match(error.getChildText("text", NS_STREAMS_ERRORS) ?? "", text);
  assert.ok(layer.streamClosed, layer.text);
}

Deno.test("outbound: a self-signed peer refused after STARTTLS gets a stream header and policy-violation with the reason", () =>
  withPeer(
    { peerCertificate: (ca) => ca.selfSigned([PEER]) },
    async (_a, peer, send) => {
      const reason = await send("m1");
      assert.match(reason, /self-signed.*valid certificate is required \(s2s_secure_auth\)/);
      const connection = await peer.firstConnection();
      await connection.waitEnded();
      // Before TLS: our header and <starttls/>, nothing else.
      assert.equal(connection.plain.headers.length, 1);
      assert.deepEqual(connection.plain.elements.map((el) => el.name), ["starttls"]);
      // On the TLS layer: a new header first, so the error and the closing tag parse.
      assertClosedWithError(
        connection.secure,
        "policy-violation",
        /self-signed.*valid certificate is required \(s2s_secure_auth\)/,
      );
      assert.ok(
        connection.secure.text.startsWith("<?xml version='1.0'?><stream:stream "),
        connection.secure.text,
      );
    },
  ));

Deno.test("outbound: with s2s_dialback = false a peer without SASL EXTERNAL gets no dialback key", () =>
  withPeer(
    {
      peerCertificate: (ca) => ca.issue({ names: [PEER] }),
      hostToml: "s2s_dialback = false",
    },
    async (a, peer, send) => {
      const reason = await send("m1");
      assert.match(reason, /does not offer SASL EXTERNAL, and dialback is off.*s2s_dialback/);
      const connection = await peer.firstConnection();
      await connection.waitEnded();
      const names = connection.secure.elements.map((el) => el.name);
      assert.ok(!names.includes("result"), `dialback was attempted: ${connection.secure.text}`);
      assertClosedWithError(connection.secure, "policy-violation", /s2s_dialback = false/);
      const refusals = a.server.remote!.refusals();
      assert.ok(refusals.some((r) => r.remote === PEER && /s2s_dialback/.test(r.reason)));
    },
  ));

Deno.test("outbound: with s2s_dialback = false a peer with an invalid certificate is refused even in s2s_insecure_domains", () =>
  withPeer(
    {
      peerCertificate: (ca) => ca.selfSigned([PEER]),
      hostToml: `s2s_dialback = false\ns2s_insecure_domains = ["${PEER}"]`,
    },
    async (_a, peer, send) => {
      const reason = await send("m1");
      assert.match(reason, /self-signed.*valid certificate is required \(s2s_dialback = false\)/);
      const connection = await peer.firstConnection();
      await connection.waitEnded();
      assertClosedWithError(connection.secure, "policy-violation", /s2s_dialback = false/);
    },
  ));
