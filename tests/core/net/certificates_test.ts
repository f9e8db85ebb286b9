// Tests for loading the operator's certificate files and for creating, storing and reusing the
// self-signed certificate of a host that has none.

import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { rootCertificates } from "node:tls";
import {
  certificateMatchesName,
  createSelfSignedCertificate,
  describeCertificate,
  loadOrCreateCertificate,
  loadX509,
  tlsServerEndPointHash,
} from "../../../core/net/certificates.ts";
import { createTestCa } from "../../helpers/test_ca.ts";

async function withTempDir(run: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "lilt-certs-" });
  try {
    await run(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function modeOf(path: string): number {
  return (Deno.statSync(path).mode ?? 0) & 0o777;
}

Deno.test("a host without certificate files gets a generated ECDSA P-256 certificate", async () => {
  await withTempDir(async (dataDir) => {
    const cert = await loadOrCreateCertificate("Example.TEST", {
      dataDir,
      certificate: "",
      key: "",
    });
    assert.equal(cert.domain, "example.test");
    assert.equal(cert.generated, true);
    assert.equal(cert.selfSigned, true);
    assert.deepEqual(cert.names, ["example.test", "*.example.test"]);
    const days = (cert.notAfter.getTime() - Date.now()) / 86_400_000;
    assert.ok(days > 364 && days < 366, `expected one year of validity, found ${days} days`);

    const parsed = new X509Certificate(cert.der);
    assert.equal(parsed.subject, "CN=example.test");
    assert.equal(parsed.publicKey.asymmetricKeyType, "ec");
    assert.equal(parsed.publicKey.asymmetricKeyDetails?.namedCurve, "prime256v1");
    assert.match(parsed.subjectAltName ?? "", /DNS:example\.test/);

    const crt = `${dataDir}/certs/example.test.crt`;
    const key = `${dataDir}/certs/example.test.key`;
    assert.equal(modeOf(key), 0o600);
    assert.equal(modeOf(crt), 0o644);
    assert.equal(await Deno.readTextFile(crt), cert.certPem);
    assert.equal(await Deno.readTextFile(key), cert.keyPem);
    assert.deepEqual([...Deno.readDirSync(`${dataDir}/certs`)].length, 2); // no temp files left
  });
});

Deno.test("a generated certificate is reused on the next start", async () => {
  await withTempDir(async (dataDir) => {
    const first = await loadOrCreateCertificate("localhost", { dataDir });
    const second = await loadOrCreateCertificate("localhost", { dataDir });
    assert.equal(second.generated, false);
    assert.equal(second.selfSigned, true);
    assert.deepEqual(second.der, first.der);
    assert.equal(second.keyPem, first.keyPem);
  });
});

Deno.test("a generated certificate that expires within 7 days or is damaged is replaced", async () => {
  await withTempDir(async (dataDir) => {
    const crt = `${dataDir}/certs/localhost.crt`;
    const key = `${dataDir}/certs/localhost.key`;
    await Deno.mkdir(`${dataDir}/certs`);
    const expiring = await createSelfSignedCertificate("localhost", { validDays: 5 });
    await Deno.writeTextFile(crt, expiring.certPem);
    await Deno.writeTextFile(key, expiring.keyPem);
    const renewed = await loadOrCreateCertificate("localhost", { dataDir });
    assert.equal(renewed.generated, true);
    assert.notEqual(renewed.certPem, expiring.certPem);
    assert.equal(modeOf(key), 0o600);

    const other = await createSelfSignedCertificate("localhost");
    await Deno.writeTextFile(key, other.keyPem); // no longer matches the certificate
    const replaced = await loadOrCreateCertificate("localhost", { dataDir });
    assert.equal(replaced.generated, true);
    assert.notEqual(replaced.certPem, renewed.certPem);

    await Deno.writeTextFile(crt, "not a certificate");
    assert.equal((await loadOrCreateCertificate("localhost", { dataDir })).generated, true);
  });
});

Deno.test("an imported CA-issued certificate is kept until it expires, and never overwritten when broken", async () => {
  await withTempDir(async (dataDir) => {
    const crt = `${dataDir}/certs/localhost.crt`;
    const key = `${dataDir}/certs/localhost.key`;
    await Deno.mkdir(`${dataDir}/certs`);
    const ca = await createTestCa();
    const imported = await ca.issue({
      names: ["localhost"],
      notAfter: new Date(Date.now() + 3 * 24 * 3600_000),
    });
    await Deno.writeTextFile(crt, imported.chainPem);
    await Deno.writeTextFile(key, imported.keyPem);
    const kept = await loadOrCreateCertificate("localhost", { dataDir });
    assert.equal(kept.generated, false, "3 days left: still served, not replaced");
    assert.equal(kept.certPem, imported.chainPem);
    assert.equal(kept.certificateFile, crt);

    const stranger = await ca.issue({ names: ["localhost"] });
    await Deno.writeTextFile(key, stranger.keyPem);
    await assert.rejects(
      loadOrCreateCertificate("localhost", { dataDir }),
      /^Error: The certificate stored for localhost in '.*localhost\.crt' cannot be used \(Private key file .* does not match .*\): run 'lilt cert import DIR' again, or remove both files/,
    );
    assert.equal(await Deno.readTextFile(crt), imported.chainPem, "left as it was");
  });
});

Deno.test("a generated certificate for another domain is not reused", async () => {
  await withTempDir(async (dataDir) => {
    await Deno.mkdir(`${dataDir}/certs`);
    const wrong = await createSelfSignedCertificate("other.test");
    await Deno.writeTextFile(`${dataDir}/certs/a.test.crt`, wrong.certPem);
    await Deno.writeTextFile(`${dataDir}/certs/a.test.key`, wrong.keyPem);
    const cert = await loadOrCreateCertificate("a.test", { dataDir });
    assert.equal(cert.generated, true);
    assert.ok(certificateMatchesName(cert, "a.test"));
  });
});

Deno.test("configured certificate and key files are loaded", async () => {
  await withTempDir(async (dir) => {
    const pair = await createSelfSignedCertificate("chat.example");
    await Deno.writeTextFile(`${dir}/chat.crt`, pair.certPem);
    await Deno.writeTextFile(`${dir}/chat.key`, pair.keyPem);
    const cert = await loadOrCreateCertificate("chat.example", {
      dataDir: `${dir}/unused`,
      certificate: `${dir}/chat.crt`,
      key: `${dir}/chat.key`,
    });
    assert.equal(cert.generated, false);
    assert.equal(cert.selfSigned, true);
    assert.deepEqual(cert.names, ["chat.example", "*.chat.example"]);
    assert.equal(cert.certPem, pair.certPem);
    assert.deepEqual(cert.der, new Uint8Array(new X509Certificate(pair.certPem).raw));
    await assert.rejects(Deno.stat(`${dir}/unused`), Deno.errors.NotFound); // nothing generated
  });
});

Deno.test("a chain file is kept whole and the leaf is described", async () => {
  const leaf = await createSelfSignedCertificate("leaf.example");
  const extra = await createSelfSignedCertificate("intermediate.example");
  const cert = describeCertificate("leaf.example", {
    certPem: leaf.certPem + extra.certPem,
    keyPem: leaf.keyPem,
  });
  assert.deepEqual(cert.names, ["leaf.example", "*.leaf.example"]);
  assert.equal(cert.certPem, leaf.certPem + extra.certPem);
});

Deno.test("a missing certificate or key file is named in the error", async () => {
  await withTempDir(async (dir) => {
    const pair = await createSelfSignedCertificate("a.test");
    await Deno.writeTextFile(`${dir}/a.crt`, pair.certPem);
    await Deno.writeTextFile(`${dir}/a.key`, pair.keyPem);
    const load = (certificate: string, key: string) =>
      loadOrCreateCertificate("a.test", { dataDir: dir, certificate, key });
    await assert.rejects(
      load(`${dir}/missing.crt`, `${dir}/a.key`),
      (error: Error) =>
        error.message.includes(`${dir}/missing.crt`) && /not found/.test(error.message),
    );
    await assert.rejects(
      load(`${dir}/a.crt`, `${dir}/missing.key`),
      (error: Error) => error.message.includes(`${dir}/missing.key`),
    );
    await assert.rejects(load(`${dir}/a.crt`, ""), /Expected both a certificate and a key/);
  });
});

Deno.test("unparsable files and a key that does not match are clear errors", async () => {
  await withTempDir(async (dir) => {
    const pair = await createSelfSignedCertificate("a.test");
    const other = await createSelfSignedCertificate("a.test");
    await Deno.writeTextFile(`${dir}/a.crt`, pair.certPem);
    await Deno.writeTextFile(`${dir}/other.key`, other.keyPem);
    await Deno.writeTextFile(`${dir}/junk.crt`, "hello");
    await Deno.writeTextFile(`${dir}/junk.key`, "hello");
    const load = (certificate: string, key: string) =>
      loadOrCreateCertificate("a.test", { dataDir: dir, certificate, key });
    await assert.rejects(
      load(`${dir}/a.crt`, `${dir}/other.key`),
      (error: Error) =>
        error.message.includes("does not match") && error.message.includes(`${dir}/other.key`) &&
        error.message.includes(`${dir}/a.crt`),
    );
    await assert.rejects(
      load(`${dir}/junk.crt`, `${dir}/other.key`),
      (error: Error) => error.message.startsWith(`Cannot parse certificate file '${dir}/junk.crt'`),
    );
    await assert.rejects(
      load(`${dir}/a.crt`, `${dir}/junk.key`),
      (error: Error) => error.message.startsWith(`Cannot parse private key file '${dir}/junk.key'`),
    );
  });
});

Deno.test("certificateMatchesName follows exact and one-label wildcard rules", () => {
  const cert = { names: ["example.com", "*.example.com"] };
  assert.ok(certificateMatchesName(cert, "example.com"));
  assert.ok(certificateMatchesName(cert, "EXAMPLE.com."));
  assert.ok(certificateMatchesName(cert, "conference.example.com"));
  assert.ok(!certificateMatchesName(cert, "a.b.example.com"));
  assert.ok(!certificateMatchesName(cert, "badexample.com"));
  assert.ok(!certificateMatchesName(cert, "example.org"));
  assert.ok(!certificateMatchesName(cert, ""));
  assert.ok(!certificateMatchesName({ names: ["*.example.com"] }, "example.com"));
});

Deno.test("tls-server-end-point hashes follow the signature algorithm (RFC 5929)", async () => {
  const generated = await createSelfSignedCertificate("a.test");
  assert.equal(tlsServerEndPointHash(new X509Certificate(generated.certPem).raw), "sha256");

  // Deno's X509Certificate names the signature algorithm; the bundled roots cover the usual ones.
  const expected: Record<string, string> = {
    "sha1WithRSAEncryption": "sha256",
    "sha256WithRSAEncryption": "sha256",
    "sha384WithRSAEncryption": "sha384",
    "sha512WithRSAEncryption": "sha512",
    "ecdsa-with-SHA256": "sha256",
    "ecdsa-with-SHA384": "sha384",
  };
  const seen = new Set<string>();
  for (const pem of rootCertificates) {
    const root = new X509Certificate(pem);
    const algorithm = (root as unknown as { signatureAlgorithm?: string }).signatureAlgorithm;
    if (!algorithm || !(algorithm in expected)) continue;
    assert.equal(tlsServerEndPointHash(root.raw), expected[algorithm], algorithm);
    seen.add(algorithm);
  }
  assert.ok(seen.size >= 4, `expected several signature algorithms, found ${[...seen]}`);

  // Ed25519 signatures have no single hash, so the binding is undefined.
  const x509 = await loadX509();
  const keys = await crypto.subtle.generateKey({ name: "Ed25519" }, true, [
    "sign",
    "verify",
  ]) as CryptoKeyPair;
  const ed = await x509.X509CertificateGenerator.createSelfSigned({
    name: "CN=ed.test",
    keys,
    signingAlgorithm: { name: "Ed25519" },
  });
  assert.equal(tlsServerEndPointHash(new Uint8Array(ed.rawData)), undefined);
  assert.equal(tlsServerEndPointHash(new Uint8Array([0x30, 0x05, 0x01])), undefined);
});
