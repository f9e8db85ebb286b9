// Federation with a real Debian Prosody started by the test: certificates (SASL EXTERNAL both
// ways), dialback to a self-signed Prosody listed in s2s_insecure_domains, and the refusal, with
// its reason logged by both servers, when s2s_secure_auth is on and no exception applies.

import assert from "node:assert/strict";
import { type DnsResponder, startDnsResponder } from "../helpers/dns_responder.ts";
import { exchange, online, startFederatingServer } from "../helpers/federation.ts";
import { type ProsodyInstance, startProsody } from "../helpers/prosody.ts";
import { RawClient } from "../helpers/raw_client.ts";
import { createTestCa, type TestCa } from "../helpers/test_ca.ts";
import type { TestServer } from "../helpers/test_server.ts";

const LILT = "lilt.test";
const PROSODY = "prosody.test";
const MODULES = ["disco", "ping", "roster", "presence", "offline"];

interface Pair {
  lilt: TestServer;
  prosody: ProsodyInstance;
  alice: RawClient;
  pat: RawClient;
}

/** Starts Lilt and Prosody finding each other through one responder, with a user online on each. */
async function withPair(
  options: { prosodySelfSigned: boolean; liltHostToml?: string },
  run: (pair: Pair) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "lilt-prosody-s2s-" });
  const dns: DnsResponder = await startDnsResponder();
  const ca: TestCa = await createTestCa();
  const caFile = `${dir}/ca.pem`;
  await ca.writeCa(caFile);
  const prosodyCert = options.prosodySelfSigned
    ? await ca.selfSigned([PROSODY])
    : await ca.issue({ names: [PROSODY] });
  const files = await prosodyCert.writeTo(dir, PROSODY);
  const lilt = await startFederatingServer({
    domain: LILT,
    dns,
    ca,
    users: { alice: "pw" },
    modules: MODULES,
    hostToml: options.liltHostToml,
  });
  const prosody = await startProsody({
    domain: PROSODY,
    dns: { port: dns.port },
    certFile: files.certFile,
    keyFile: files.keyFile,
    caFile,
    s2sSecureAuth: true,
    users: { pat: "pw" },
  });
  dns.set(`_xmpp-server._tcp.${PROSODY}`, {
    srv: [{ priority: 0, weight: 0, port: prosody.s2sPort, target: PROSODY }],
  });
  dns.set(PROSODY, { a: ["127.0.0.1"] });
  let alice: RawClient | undefined;
  let pat: RawClient | undefined;
  try {
    alice = await online(lilt.port, "alice", LILT);
    pat = await online(prosody.c2sPort, "pat", PROSODY);
    await run({ lilt, prosody, alice, pat });
  } finally {
    alice?.close();
    pat?.close();
    await prosody.stop();
    await lilt.stop();
    await dns.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

Deno.test("Lilt and Prosody federate with CA certificates (SASL EXTERNAL both ways)", () =>
  withPair({ prosodySelfSigned: false }, async (pair) => {
    await exchange(
      { client: pair.alice, bare: `alice@${LILT}` },
      { client: pair.pat, bare: `pat@${PROSODY}` },
    );
    const links = pair.lilt.server.remote!.links().filter((l) => l.remote === PROSODY);
    assert.deepEqual(links.map((l) => l.direction).sort(), ["in", "out"]);
    for (const link of links) {
      assert.equal(link.state, "ready");
      assert.equal(link.auth, "sasl-external", JSON.stringify(link));
      assert.equal(link.certificate, "valid");
    }
    await pair.prosody.waitForLog(/Incoming s2s connection lilt\.test->prosody\.test complete/);
    await pair.prosody.waitForLog(/Outgoing s2s connection prosody\.test->lilt\.test complete/);
  }));

Deno.test("a self-signed Prosody listed in s2s_insecure_domains federates by dialback", () =>
  withPair(
    { prosodySelfSigned: true, liltHostToml: `s2s_insecure_domains = ["${PROSODY}"]` },
    async (pair) => {
      await exchange(
        { client: pair.alice, bare: `alice@${LILT}` },
        { client: pair.pat, bare: `pat@${PROSODY}` },
      );
      const links = pair.lilt.server.remote!.links().filter((l) => l.remote === PROSODY);
      const inbound = links.find((l) => l.direction === "in")!;
      assert.equal(inbound.auth, "dialback", JSON.stringify(links));
      assert.equal(inbound.certificate, "self-signed");
      const outbound = links.find((l) => l.direction === "out")!;
      assert.equal(outbound.certificate, "self-signed");
      assert.equal(outbound.state, "ready");
    },
  ));

Deno.test("with s2s_secure_auth and no exception, a self-signed Prosody is refused and the reason logged", () =>
  withPair({ prosodySelfSigned: true }, async ({ lilt, alice, pat, prosody }) => {
    alice.send(`<message to='pat@${PROSODY}' type='chat' id='no'><body>x</body></message>`);
    const bounced = await alice.next((el) => el.attrs.id === "no", 10_000);
    assert.equal(bounced.attrs.type, "error");
    const text = bounced.getChild("error")!.getChildText("text") ?? "";
    assert.match(text, /self-signed.*s2s_secure_auth/);
    pat.send(`<message to='alice@${LILT}' type='chat' id='in'><body>x</body></message>`);
    const refusedIn = await pat.next((el) => el.attrs.id === "in", 15_000);
    assert.equal(refusedIn.attrs.type, "error");
    assert.ok(!alice.received.some((el) => el.attrs.id === "in"), "nothing got through");
    const refusals = lilt.server.remote!.refusals().filter((r) => r.remote === PROSODY);
    assert.ok(
      refusals.some((r) => r.direction === "out" && /self-signed/.test(r.reason)),
      JSON.stringify(refusals),
    );
    assert.ok(
      refusals.some((r) => r.direction === "in" && /valid certificate is required/.test(r.reason)),
      JSON.stringify(refusals),
    );
    // Prosody logs Lilt's reasons, both ways: the stream errors parse on the TLS layer.
    await prosody.waitForLog(
      /Incoming s2s stream lilt\.test->prosody\.test closed: policy-violation \(.*self-signed.*s2s_secure_auth\)/,
    );
    await prosody.waitForLog(
      /Outgoing s2s stream prosody\.test->lilt\.test closed: not-authorized \(.*self-signed.*s2s_secure_auth\)/,
    );
  }));
