// Tests for verifying a remote server's certificate for s2s: trust paths, dates, key usage and
// the XMPP identities of RFC 6120 section 13.7.1.2 / RFC 6125, also over a real TLS connection.

import assert from "node:assert/strict";
import { once } from "node:events";
import * as net from "node:net";
import * as tls from "node:tls";
import { loadX509 } from "../../../core/net/certificates.ts";
import {
  loadTrustStore,
  peerChain,
  TrustStore,
  verifyPeerCertificate,
} from "../../../core/net/peer_certificate.ts";
import { createTestCa, type IssueOptions, type TestCa } from "../../helpers/test_ca.ts";

const HOUR_MS = 3600_000;
const DAY_MS = 24 * HOUR_MS;

let shared: Promise<{ ca: TestCa; trust: TrustStore }> | undefined;

// One CA for the whole file: key generation is the slow part.
function testCa(): Promise<{ ca: TestCa; trust: TrustStore }> {
  shared ??= createTestCa().then((ca) => ({ ca, trust: new TrustStore([ca.caDer]) }));
  return shared;
}

async function verdictFor(domain: string, options: IssueOptions, now?: Date) {
  const { ca, trust } = await testCa();
  const peer = await ca.issue(options);
  return verifyPeerCertificate(peer.chain, domain, trust, now);
}

async function withTempDir(run: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "lilt-peer-cert-" });
  try {
    await run(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a certificate issued directly by a trusted CA for the domain is valid", async () => {
  const { ca, trust } = await testCa();
  const peer = await ca.issue({ names: ["b.example"] });
  const verdict = verifyPeerCertificate(peer.chain, "b.example", trust);
  assert.equal(verdict.status, "valid", verdict.reason);
  assert.equal(
    verdict.reason,
    "The certificate of 'b.example' is valid for 'dns:b.example', trusted through 'CN=Lilt Test CA'",
  );
  assert.deepEqual(verdict.names, ["dns:b.example", "cn:b.example"]);
  assert.equal(verdict.subject, "CN=b.example");
  assert.equal(verdict.issuer, "CN=Lilt Test CA");
  assert.match(verdict.fingerprint256!, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  assert.ok(verdict.notAfter!.getTime() > Date.now());
});

Deno.test("a chain through an intermediate is valid whatever order the extra certificates come in", async () => {
  const { ca, trust } = await testCa();
  const peer = await ca.issue({ names: ["b.example"], intermediate: true });
  assert.equal(peer.chain.length, 2);
  const [leaf, intermediate] = peer.chain;
  const garbage = new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x00]);
  for (const chain of [[leaf, intermediate], [leaf, ca.caDer, garbage, intermediate]]) {
    const verdict = verifyPeerCertificate(chain, "b.example", trust);
    assert.equal(verdict.status, "valid", verdict.reason);
    assert.equal(verdict.issuer, "CN=Lilt Test CA Intermediate");
  }
});

Deno.test("a leaf whose intermediate is missing is untrusted, naming the unknown issuer", async () => {
  const { ca, trust } = await testCa();
  const peer = await ca.issue({ names: ["b.example"], intermediate: true });
  const verdict = verifyPeerCertificate([peer.der], "b.example", trust);
  assert.equal(verdict.status, "untrusted");
  assert.equal(
    verdict.reason,
    "The certificate of 'b.example' is issued by 'CN=Lilt Test CA Intermediate' which is not a trusted authority",
  );
});

Deno.test("a chain ending at a root that is not trusted is untrusted", async () => {
  const other = await createTestCa({ name: "Other Root" });
  const { trust } = await testCa();
  const peer = await other.issue({ names: ["b.example"], intermediate: true });
  const withRoot = verifyPeerCertificate([...peer.chain, other.caDer], "b.example", trust);
  assert.equal(withRoot.status, "untrusted");
  assert.equal(
    withRoot.reason,
    "The certificate of 'b.example' chains to 'CN=Other Root' which is not a trusted authority",
  );
  const withoutRoot = verifyPeerCertificate(peer.chain, "b.example", trust);
  assert.equal(withoutRoot.status, "untrusted");
  assert.equal(
    withoutRoot.reason,
    "The certificate of 'b.example' chains through 'CN=Other Root Intermediate' to " +
      "'CN=Other Root' which is not a trusted authority",
  );
});

Deno.test("signatures by RSA (PKCS#1 v1.5 and PSS) CAs verify, as public CAs use RSA", async () => {
  const x509 = await loadX509();
  const rsa = { publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 };
  const algorithms = [
    { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256", ...rsa },
    { name: "RSA-PSS", hash: "SHA-384", saltLength: 48, ...rsa },
  ];
  const now = Date.now();
  const validity = { notBefore: new Date(now - HOUR_MS), notAfter: new Date(now + DAY_MS) };
  const leafKeys = await crypto.subtle.generateKey(
    { name: "ECDSA", namedCurve: "P-256" },
    true,
    ["sign", "verify"],
  ) as CryptoKeyPair;
  for (const algorithm of algorithms) {
    const keys = await crypto.subtle.generateKey(algorithm, true, ["sign", "verify"]);
    const ca = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: "01",
      name: "CN=RSA CA",
      keys,
      signingAlgorithm: algorithm,
      ...validity,
      extensions: [new x509.BasicConstraintsExtension(true, undefined, true)],
    });
    const leaf = await x509.X509CertificateGenerator.create({
      serialNumber: "02",
      subject: "CN=b.example",
      issuer: ca.subject,
      publicKey: leafKeys.publicKey,
      signingKey: keys.privateKey,
      signingAlgorithm: algorithm,
      ...validity,
    });
    const trust = new TrustStore([new Uint8Array(ca.rawData)]);
    const verdict = verifyPeerCertificate([new Uint8Array(leaf.rawData)], "b.example", trust);
    assert.equal(verdict.status, "valid", `${algorithm.name}: ${verdict.reason}`);
  }
});

Deno.test("a certificate signed by another key under the trusted CA's name is untrusted", async () => {
  const { trust } = await testCa();
  const impostor = await createTestCa(); // the same name "CN=Lilt Test CA", another key
  const peer = await impostor.issue({ names: ["b.example"] });
  const verdict = verifyPeerCertificate(peer.chain, "b.example", trust);
  assert.equal(verdict.status, "untrusted");
  assert.match(verdict.reason, /does not verify with the key of 'CN=Lilt Test CA'/);
});

Deno.test("a certificate issued by a certificate that is no CA is untrusted", async () => {
  const { ca, trust } = await testCa();
  const issuer = await ca.issue({ names: ["a.example"] });
  const peer = await ca.issue({ names: ["b.example"], signedBy: issuer });
  assert.equal(peer.chain.length, 2);
  const verdict = verifyPeerCertificate(peer.chain, "b.example", trust);
  assert.equal(verdict.status, "untrusted");
  assert.equal(
    verdict.reason,
    "The certificate of 'b.example' is not trusted: 'CN=a.example' is not a certificate authority",
  );
});

Deno.test("extendedKeyUsage serverAuth only, clientAuth only or none at all is accepted", async () => {
  const usages: IssueOptions["eku"][] = [["serverAuth"], ["clientAuth"], "none"];
  for (const eku of usages) {
    const verdict = await verdictFor("b.example", { names: ["b.example"], eku });
    assert.equal(verdict.status, "valid", `${eku}: ${verdict.reason}`);
  }
});

Deno.test("extendedKeyUsage codeSigning only is the wrong usage", async () => {
  const verdict = await verdictFor("b.example", { names: ["b.example"], eku: ["codeSigning"] });
  assert.equal(verdict.status, "wrong-usage");
  assert.equal(
    verdict.reason,
    "The certificate of 'b.example' allows 'codeSigning', not server or client authentication",
  );
});

Deno.test("an expired leaf is expired, also when only the clock says so", async () => {
  const now = Date.now();
  const past = await verdictFor("b.example", {
    names: ["b.example"],
    notBefore: new Date(now - 2 * DAY_MS),
    notAfter: new Date(Date.UTC(2026, 0, 1)),
  });
  assert.equal(past.status, "expired");
  assert.equal(past.reason, "The certificate of 'b.example' expired on 2026-01-01T00:00:00Z");

  const later = await verdictFor(
    "b.example",
    { names: ["b.example"] },
    new Date(now + 30 * DAY_MS),
  );
  assert.equal(later.status, "expired");
  assert.match(later.reason, /^The certificate of 'b\.example' expired on /);
});

Deno.test("a leaf whose validity has not started is not yet valid", async () => {
  const verdict = await verdictFor("b.example", {
    names: ["b.example"],
    notBefore: new Date(Date.UTC(2099, 0, 1)),
    notAfter: new Date(Date.UTC(2099, 1, 1)),
  });
  assert.equal(verdict.status, "not-yet-valid");
  assert.equal(
    verdict.reason,
    "The certificate of 'b.example' is not valid before 2099-01-01T00:00:00Z",
  );
});

Deno.test("an expired CA makes a fresh leaf expired, naming the CA", async () => {
  const now = Date.now();
  const old = await createTestCa({
    name: "Old CA",
    notBefore: new Date(now - 10 * DAY_MS),
    notAfter: new Date(now - DAY_MS),
  });
  const peer = await old.issue({ names: ["b.example"] });
  const verdict = verifyPeerCertificate(peer.chain, "b.example", new TrustStore([old.caDer]));
  assert.equal(verdict.status, "expired");
  assert.match(
    verdict.reason,
    /^The certificate of 'b\.example' chains to 'CN=Old CA' which expired/,
  );
});

Deno.test("trust is checked before dates, dates before usage, usage before the name", async () => {
  const { ca } = await testCa();
  const peer = await ca.issue({
    names: ["other.example"],
    eku: ["codeSigning"],
    notBefore: new Date(Date.now() - 2 * DAY_MS),
    notAfter: new Date(Date.now() - DAY_MS),
  });
  assert.equal(
    verifyPeerCertificate(peer.chain, "b.example", new TrustStore()).status,
    "untrusted",
  );
  const trust = new TrustStore([ca.caDer]);
  assert.equal(verifyPeerCertificate(peer.chain, "b.example", trust).status, "expired");
  const fresh = await ca.issue({ names: ["other.example"], eku: ["codeSigning"] });
  assert.equal(verifyPeerCertificate(fresh.chain, "b.example", trust).status, "wrong-usage");
});

Deno.test("a self-signed certificate is self-signed unless it is pinned in the trust store", async () => {
  const { ca, trust } = await testCa();
  const peer = await ca.selfSigned(["b.example"]);
  const verdict = verifyPeerCertificate(peer.chain, "b.example", trust);
  assert.equal(verdict.status, "self-signed");
  assert.equal(
    verdict.reason,
    "The certificate of 'b.example' is self-signed ('CN=b.example') and not pinned in the trust store",
  );

  const pinned = new TrustStore([ca.caDer, peer.der]);
  const accepted = verifyPeerCertificate(peer.chain, "b.example", pinned);
  assert.equal(accepted.status, "valid", accepted.reason);
  assert.equal(
    accepted.reason,
    "The certificate of 'b.example' is valid for 'dns:b.example', pinned in the trust store",
  );
  assert.equal(verifyPeerCertificate(peer.chain, "c.example", pinned).status, "name-mismatch");
});

Deno.test("a DNS-ID matches exactly, ignoring case and a trailing dot", async () => {
  const verdict = await verdictFor("B.Example.", { names: ["other.example", "b.EXAMPLE"] });
  assert.equal(verdict.status, "valid", verdict.reason);
  const miss = await verdictFor("c.example", { names: ["other.example", "b.example"] });
  assert.equal(miss.status, "name-mismatch");
  assert.equal(
    miss.reason,
    "The certificate of 'c.example' names 'dns:other.example', 'dns:b.example', " +
      "'cn:other.example', none of which is 'c.example'",
  );
});

Deno.test("a wildcard DNS-ID covers exactly one leftmost label", async () => {
  const { ca, trust } = await testCa();
  const peer = await ca.issue({ names: ["*.b.example"] });
  const check = (domain: string) => verifyPeerCertificate(peer.chain, domain, trust).status;
  assert.equal(check("chat.b.example"), "valid");
  assert.equal(check("CHAT.b.example."), "valid");
  assert.equal(check("b.example"), "name-mismatch");
  assert.equal(check("x.chat.b.example"), "name-mismatch");

  const broad = await ca.issue({ names: ["*.example", "c*.b.example"] });
  assert.equal(verifyPeerCertificate(broad.chain, "b.example", trust).status, "name-mismatch");
  assert.equal(verifyPeerCertificate(broad.chain, "chat.b.example", trust).status, "name-mismatch");
});

Deno.test("an XmppAddr equal to the domain matches, a JID does not", async () => {
  const verdict = await verdictFor("b.example", {
    xmppAddrs: ["user@b.example", "B.example"],
    cn: "unrelated.example",
  });
  assert.equal(verdict.status, "valid", verdict.reason);
  assert.match(verdict.reason, /valid for 'xmpp:B\.example'/);
  assert.deepEqual(verdict.names, [
    "xmpp:user@b.example",
    "xmpp:B.example",
    "cn:unrelated.example",
  ]);
  const jidOnly = await verdictFor("b.example", { xmppAddrs: ["user@b.example"] });
  assert.equal(jidOnly.status, "name-mismatch");
});

Deno.test("an SRV-ID for _xmpp-server or _xmpps-server matches, _xmpp-client does not", async () => {
  for (const srv of ["_xmpp-server.b.example", "_xmpps-server.B.example."]) {
    const verdict = await verdictFor("b.example", { srvNames: [srv], cn: "unrelated.example" });
    assert.equal(verdict.status, "valid", `${srv}: ${verdict.reason}`);
    assert.deepEqual(verdict.names[0], `srv:${srv}`);
  }
  const client = await verdictFor("b.example", { srvNames: ["_xmpp-client.b.example"] });
  assert.equal(client.status, "name-mismatch");
});

Deno.test("the common name counts only when there is no DNS, SRV or XmppAddr SAN", async () => {
  const cnOnly = await verdictFor("b.example", { cn: "b.example" });
  assert.equal(cnOnly.status, "valid", cnOnly.reason);
  assert.deepEqual(cnOnly.names, ["cn:b.example"]);
  assert.match(cnOnly.reason, /valid for 'cn:b\.example'/);
  for (const san of [{ names: ["other.example"] }, { xmppAddrs: ["other.example"] }]) {
    const verdict = await verdictFor("b.example", { cn: "b.example", ...san });
    assert.equal(verdict.status, "name-mismatch");
  }
});

Deno.test("internationalized domains compare in A-label form", async () => {
  const dns = await verdictFor("BÜCHER.example", { names: ["xn--bcher-kva.example"] });
  assert.equal(dns.status, "valid", dns.reason);
  const xmpp = await verdictFor("xn--bcher-kva.example", { xmppAddrs: ["bücher.example"] });
  assert.equal(xmpp.status, "valid", xmpp.reason);
  const srv = await verdictFor("bücher.example", {
    srvNames: ["_xmpp-server.xn--bcher-kva.example"],
  });
  assert.equal(srv.status, "valid", srv.reason);
  const other = await verdictFor("bucher.example", { names: ["xn--bcher-kva.example"] });
  assert.equal(other.status, "name-mismatch");
});

Deno.test("garbage or no certificate never throws", async () => {
  const { ca, trust } = await testCa();
  const peer = await ca.issue({ names: ["b.example"] });
  const garbage = [
    new Uint8Array(),
    new Uint8Array([1, 2, 3]),
    new Uint8Array([0x30, 0x84, 0xff, 0xff, 0xff, 0xff]),
    new Uint8Array([0x30]),
    peer.der.subarray(0, peer.der.length - 10),
    crypto.getRandomValues(new Uint8Array(300)),
  ];
  for (const der of garbage) {
    const verdict = verifyPeerCertificate([der], "b.example", trust);
    assert.equal(verdict.status, "untrusted");
    assert.match(verdict.reason, /^The certificate of 'b\.example' cannot be parsed: /);
    assert.deepEqual(verdict.names, []);
  }
  const none = verifyPeerCertificate([], "b.example", trust);
  assert.deepEqual(none, {
    status: "no-certificate",
    reason: "The peer 'b.example' presented no certificate",
    names: [],
  });
});

Deno.test("the trust store holds the bundled roots, the system bundle and every CA file certificate", async () => {
  await withTempDir(async (dir) => {
    const { ca } = await testCa();
    const other = await createTestCa({ name: "Second CA" });
    const pinnedPeer = await ca.selfSigned(["pinned.example"]);
    await Deno.writeTextFile(`${dir}/bundle.pem`, `# two CAs\n${ca.caPem}\n${other.caPem}`);
    const { certFile } = await pinnedPeer.writeTo(dir, "pinned");

    const trust = await loadTrustStore({
      caFiles: [`${dir}/bundle.pem`, certFile],
      system: false,
    });
    assert.equal(trust.size, tls.rootCertificates.length + 3);
    assert.ok(trust.has(ca.caDer) && trust.has(other.caDer) && trust.has(pinnedPeer.der));
    const fromOther = await other.issue({ names: ["b.example"], intermediate: true });
    assert.equal(verifyPeerCertificate(fromOther.chain, "b.example", trust).status, "valid");
    assert.equal(verifyPeerCertificate(pinnedPeer.chain, "pinned.example", trust).status, "valid");

    const system = await loadTrustStore({ caFiles: [], system: true });
    assert.ok(system.size >= tls.rootCertificates.length);
  });
});

Deno.test("without the bundled roots and the system bundle, the trust store holds only the CA files", async () => {
  await withTempDir(async (dir) => {
    const { ca } = await testCa();
    await Deno.writeTextFile(`${dir}/ca.pem`, ca.caPem);
    const trust = await loadTrustStore({
      caFiles: [`${dir}/ca.pem`],
      system: false,
      bundled: false,
    });
    assert.equal(trust.size, 1);
    assert.ok(trust.has(ca.caDer));
    const root = tls.rootCertificates[0].replace(/-----[^-]+-----|\s+/g, "");
    assert.ok(!trust.has(Uint8Array.from(atob(root), (c) => c.charCodeAt(0))));
    const peer = await ca.issue({ names: ["b.example"] });
    assert.equal(verifyPeerCertificate(peer.chain, "b.example", trust).status, "valid");
  });
});

Deno.test("a CA file that is missing, empty or damaged is an error naming the file", async () => {
  await withTempDir(async (dir) => {
    const { ca } = await testCa();
    const missing = `${dir}/missing.pem`;
    await assert.rejects(loadTrustStore({ caFiles: [missing], system: false }), {
      message: `Cannot read trusted certificates file '${missing}': file not found`,
    });

    const text = `${dir}/notes.txt`;
    await Deno.writeTextFile(text, "just some text\n");
    await assert.rejects(loadTrustStore({ caFiles: [text], system: false }), {
      message:
        `Cannot load trusted certificates file '${text}': expected a PEM CERTIFICATE block, found none`,
    });

    const damaged = `${dir}/damaged.pem`;
    const body = ca.caPem.split("\n").slice(1, -2).join("\n");
    await Deno.writeTextFile(
      damaged,
      ca.caPem + `-----BEGIN CERTIFICATE-----\n${body.slice(0, 40)}\n-----END CERTIFICATE-----\n`,
    );
    await assert.rejects(loadTrustStore({ caFiles: [damaged], system: false }), {
      message: new RegExp(
        `^Cannot load trusted certificates file '${damaged}': certificate 2 cannot be parsed \\(`,
      ),
    });

    const notBase64 = `${dir}/not-base64.pem`;
    await Deno.writeTextFile(
      notBase64,
      "-----BEGIN CERTIFICATE-----\n%%%\n-----END CERTIFICATE-----\n",
    );
    await assert.rejects(loadTrustStore({ caFiles: [notBase64], system: false }), {
      message:
        `Cannot load trusted certificates file '${notBase64}': PEM block 1 is not valid base64`,
    });
  });
});

Deno.test("a serverAuth-only client certificate seen over real TLS verifies as valid", async () => {
  // With the CA in the server's context, Deno still says `authorized` false for these
  // (UNABLE_TO_VERIFY_LEAF_SIGNATURE): the EKU lacks clientAuth.
  const { ca, trust } = await testCa();
  const serverCert = await ca.issue({ names: ["a.example"] });
  const peers = [
    await ca.issue({ names: ["b.example"], eku: ["serverAuth"] }),
    await ca.issue({
      srvNames: ["_xmpp-server.b.example"],
      eku: ["serverAuth"],
      intermediate: true,
    }),
  ];
  const tlsServer = tls.createServer({
    key: serverCert.keyPem,
    cert: serverCert.chainPem,
    ca: [ca.caPem],
    requestCert: true,
    rejectUnauthorized: false,
  });
  const listener = net.createServer((socket) => tlsServer.emit("connection", socket));
  listener.listen(0, "127.0.0.1");
  await once(listener, "listening");
  const { port } = listener.address() as net.AddressInfo;
  try {
    for (const peer of peers) {
      const accepted = once(tlsServer, "secureConnection") as Promise<[tls.TLSSocket]>;
      const client = tls.connect({
        host: "127.0.0.1",
        port,
        servername: "a.example",
        ca: [ca.caPem],
        cert: peer.chainPem,
        key: peer.keyPem,
      });
      try {
        await once(client, "secureConnect");
        const [socket] = await accepted;
        const chain = peerChain(socket);
        // What the peer sent, leaf first; node:tls appends the root when its context knows it.
        assert.deepEqual(chain.slice(0, peer.chain.length), peer.chain);
        const verdict = verifyPeerCertificate(chain, "b.example", trust);
        assert.equal(verdict.status, "valid", verdict.reason);
        socket.destroy();
      } finally {
        client.destroy();
      }
    }
  } finally {
    listener.close();
    await once(listener, "close");
  }
});
