// Federation with a real Debian ejabberd 23.01 started by the test: certificates (SASL EXTERNAL
// both ways), the dialback fallback when ejabberd refuses Lilt's serverAuth-only certificate,
// dialback to a self-signed ejabberd listed in s2s_insecure_domains, and the refusal of one that
// is not, with Lilt's reason in ejabberd's log.

import assert from "node:assert/strict";
import { type DnsResponder, startDnsResponder } from "../helpers/dns_responder.ts";
import { type EjabberdInstance, startEjabberd } from "../helpers/ejabberd.ts";
import { exchange, online, startFederatingServer } from "../helpers/federation.ts";
import { RawClient } from "../helpers/raw_client.ts";
import { createTestCa, type TestCa } from "../helpers/test_ca.ts";
import type { TestServer } from "../helpers/test_server.ts";

const LILT = "lilt.test";
const EJABBERD = "ejabberd.test";
const MODULES = ["disco", "ping", "roster", "presence", "offline"];

interface Pair {
  lilt: TestServer;
  ejabberd: EjabberdInstance;
  dns: DnsResponder;
  alice: RawClient;
  eve: RawClient;
}

interface PairOptions {
  /** ejabberd presents a self-signed certificate instead of one from the test CA. */
  ejabberdSelfSigned: boolean;
  /**
   * Lilt's certificate also carries the clientAuth purpose. ejabberd checks the certificate a
   * connecting server presents as a TLS client certificate (OpenSSL's purpose check), so it
   * refuses SASL EXTERNAL with a serverAuth-only one ("unsupported certificate purpose").
   */
  liltClientAuth: boolean;
  liltHostToml?: string;
}

/** Starts Lilt and ejabberd finding each other through one responder, a user online on each. */
async function withPair(options: PairOptions, run: (pair: Pair) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "lilt-ejabberd-s2s-" });
  const dns = await startDnsResponder();
  const ca = await createTestCa();
  const caFile = `${dir}/ca.pem`;
  await ca.writeCa(caFile);
  const cert = options.ejabberdSelfSigned
    ? await ca.selfSigned([EJABBERD])
    : await ca.issue({ names: [EJABBERD] });
  const files = await cert.writeTo(dir, EJABBERD);
  const liltCa: TestCa = options.liltClientAuth
    ? { ...ca, issue: (o) => ca.issue({ ...o, eku: ["serverAuth", "clientAuth"] }) }
    : ca;
  const lilt = await startFederatingServer({
    domain: LILT,
    dns,
    ca: liltCa,
    users: { alice: "pw" },
    modules: MODULES,
    hostToml: options.liltHostToml,
  });
  let ejabberd: EjabberdInstance | undefined;
  let alice: RawClient | undefined;
  let eve: RawClient | undefined;
  try {
    ejabberd = await startEjabberd({
      domain: EJABBERD,
      dns: { port: dns.port },
      certFile: files.certFile,
      keyFile: files.keyFile,
      caFile,
      users: { eve: "pw" },
    });
    // ejabberd asks the responder for SRV records only: it resolves SRV targets with the C
    // library (net:getaddrinfo), which never asks us, so its view of Lilt names an address.
    dns.set(`_xmpp-server._tcp.${LILT}`, {
      srv: [{ priority: 0, weight: 0, port: lilt.server.port("s2s"), target: "127.0.0.1" }],
    });
    dns.set(`_xmpp-server._tcp.${EJABBERD}`, {
      srv: [{ priority: 0, weight: 0, port: ejabberd.s2sPort, target: EJABBERD }],
    });
    dns.set(EJABBERD, { a: ["127.0.0.1"] });
    alice = await online(lilt.port, "alice", LILT);
    eve = await online(ejabberd.c2sPort, "eve", EJABBERD);
    await run({ lilt, ejabberd, dns, alice, eve });
  } catch (error) {
    throw new Error(`${(error as Error).message}\n${await diagnostics(lilt, ejabberd)}`, {
      cause: error,
    });
  } finally {
    alice?.close();
    eve?.close();
    await ejabberd?.stop();
    await lilt.stop();
    await dns.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** What went on between the servers: Lilt's links and refusals, ejabberd's s2s log lines. */
async function diagnostics(lilt: TestServer, ejabberd?: EjabberdInstance): Promise<string> {
  const remote = lilt.server.remote!;
  const s2sLines = (await ejabberd?.log() ?? "").split("\n")
    .filter((line) =>
      /^\d{4}-.*(s2s|jabber:server)/.test(line) && !/Running hook|Loading|Start/.test(line)
    )
    .slice(-12)
    .map((line) => line.slice(0, 400));
  return `--- Lilt's links ---\n${JSON.stringify(remote.links())}\n--- Lilt's refusals ---\n${
    JSON.stringify(remote.refusals())
  }\n--- ejabberd's s2s log (last lines) ---\n${s2sLines.join("\n")}`;
}

/** Lilt's links with ejabberd, by direction. */
function links(lilt: TestServer) {
  const all = lilt.server.remote!.links().filter((l) => l.remote === EJABBERD);
  const inbound = all.find((l) => l.direction === "in");
  const outbound = all.find((l) => l.direction === "out");
  assert.ok(inbound && outbound, JSON.stringify(all));
  return { inbound, outbound, all };
}

Deno.test("Lilt and ejabberd federate with CA certificates (SASL EXTERNAL both ways)", () =>
  withPair({ ejabberdSelfSigned: false, liltClientAuth: true }, async (pair) => {
    await exchange(
      { client: pair.alice, bare: `alice@${LILT}` },
      { client: pair.eve, bare: `eve@${EJABBERD}` },
    );
    const { inbound, outbound, all } = links(pair.lilt);
    for (const link of [inbound, outbound]) {
      assert.equal(link.state, "ready", JSON.stringify(all));
      assert.equal(link.auth, "sasl-external", JSON.stringify(all));
      assert.equal(link.certificate, "valid");
    }
    await pair.ejabberd.waitForLog(
      /Accepted inbound s2s EXTERNAL authentication lilt\.test -> ejabberd\.test/,
    );
    await pair.ejabberd.waitForLog(
      /Accepted outbound s2s EXTERNAL authentication ejabberd\.test -> lilt\.test/,
    );
    // ejabberd found Lilt through our responder (and asked for XEP-0368 direct TLS first).
    assert.ok(
      (pair.dns.queries.get(`_xmpp-server._tcp.${LILT}/SRV`) ?? 0) >= 1,
      JSON.stringify([...pair.dns.queries]),
    );
    assert.ok((pair.dns.queries.get(`_xmpps-server._tcp.${LILT}/SRV`) ?? 0) >= 1);
  }));

Deno.test("ejabberd refuses Lilt's serverAuth-only certificate and Lilt falls back to dialback", () =>
  withPair({ ejabberdSelfSigned: false, liltClientAuth: false }, async (pair) => {
    await exchange(
      { client: pair.alice, bare: `alice@${LILT}` },
      { client: pair.eve, bare: `eve@${EJABBERD}` },
    );
    await pair.ejabberd.waitForLog(
      /Failed inbound s2s EXTERNAL authentication lilt\.test -> ejabberd\.test .*unsupported certificate purpose/,
    );
    const { inbound, outbound, all } = links(pair.lilt);
    assert.equal(outbound.state, "ready", JSON.stringify(all));
    assert.equal(outbound.auth, "dialback", JSON.stringify(all));
    assert.equal(outbound.certificate, "valid");
    // ejabberd's own certificate is fine for Lilt, so that direction stays on certificates.
    assert.equal(inbound.auth, "sasl-external", JSON.stringify(all));
  }));

Deno.test("a self-signed ejabberd listed in s2s_insecure_domains federates by dialback", () =>
  withPair(
    {
      ejabberdSelfSigned: true,
      liltClientAuth: true,
      liltHostToml: `s2s_insecure_domains = ["${EJABBERD}"]`,
    },
    async (pair) => {
      await exchange(
        { client: pair.alice, bare: `alice@${LILT}` },
        { client: pair.eve, bare: `eve@${EJABBERD}` },
      );
      const { inbound, outbound, all } = links(pair.lilt);
      assert.equal(inbound.state, "ready", JSON.stringify(all));
      assert.equal(inbound.auth, "dialback", JSON.stringify(all));
      assert.equal(inbound.certificate, "self-signed");
      assert.equal(outbound.state, "ready", JSON.stringify(all));
      assert.equal(outbound.certificate, "self-signed");
    },
  ));

Deno.test("a self-signed ejabberd without an exception is refused, and ejabberd logs Lilt's reason", () =>
  withPair({ ejabberdSelfSigned: true, liltClientAuth: true }, async (pair) => {
    pair.alice.send(`<message to='eve@${EJABBERD}' type='chat' id='no'><body>x</body></message>`);
    const bounced = await pair.alice.next((el) => el.attrs.id === "no", 15_000);
    assert.equal(bounced.attrs.type, "error");
    assert.match(
      bounced.getChild("error")!.getChildText("text") ?? "",
      /self-signed.*s2s_secure_auth/,
    );
    // After STARTTLS, Lilt opens the stream on the TLS layer before its error: ejabberd logs
    // Lilt's reason, not "not well-formed".
    await pair.ejabberd.waitForLog(
      /Closing inbound s2s connection lilt\.test -> ejabberd\.test: Stream closed by peer: .*self-signed.*valid certificate is required \(s2s_secure_auth\) \(policy-violation\)/,
    );
    pair.eve.send(`<message to='alice@${LILT}' type='chat' id='in'><body>x</body></message>`);
    await pair.eve.next((el) => el.attrs.id === "in" && el.attrs.type === "error", 30_000);
    await pair.ejabberd.waitForLog(/ejabberd\.test -> lilt\.test.*valid certificate is required/);
    assert.ok(!/not[- ]well[- ]formed/i.test(await pair.ejabberd.log()));
  }));
