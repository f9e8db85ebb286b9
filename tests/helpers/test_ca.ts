// Makes a throwaway certificate authority and CA-signed server certificates for tests, so
// real clients can verify the server's certificate (via DENO_CERT) instead of skipping checks.

import { loadX509 } from "../../core/net/certificates.ts";

const ALGORITHM = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

function pem(label: string, der: ArrayBuffer): string {
  const b64 = btoa(String.fromCharCode(...new Uint8Array(der)));
  return `-----BEGIN ${label}-----\n${b64.match(/.{1,64}/g)!.join("\n")}\n-----END ${label}-----\n`;
}

/** Files written by `makeTestCa`. */
export interface TestCertificates {
  /** PEM of the CA certificate (give it to clients as a trust anchor). */
  caFile: string;
  /** PEM of the server certificate for the requested names. */
  certFile: string;
  /** PEM (PKCS#8) of the server key. */
  keyFile: string;
}

/** Creates a CA and a server certificate for `names` (DNS SANs) in `dir`. */
export async function makeTestCa(dir: string, names: string[]): Promise<TestCertificates> {
  const x509 = await loadX509();
  const now = Date.now();
  const notBefore = new Date(now - 60_000);
  const notAfter = new Date(now + 7 * 24 * 3600_000);
  const caKeys = await crypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name: "CN=Lilt Test CA",
    notBefore,
    notAfter,
    keys: caKeys,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  const leafKeys = await crypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]);
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: "02",
    subject: `CN=${names[0]}`,
    issuer: ca.subject,
    notBefore,
    notAfter,
    publicKey: leafKeys.publicKey,
    signingKey: caKeys.privateKey,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(
        names.map((n) => ({ type: "dns" as const, value: n })),
      ),
      await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  const files: TestCertificates = {
    caFile: `${dir}/test-ca.crt`,
    certFile: `${dir}/server.crt`,
    keyFile: `${dir}/server.key`,
  };
  await Deno.writeTextFile(files.caFile, ca.toString("pem") + "\n");
  await Deno.writeTextFile(files.certFile, leaf.toString("pem") + "\n");
  const pkcs8 = await crypto.subtle.exportKey("pkcs8", leafKeys.privateKey);
  await Deno.writeTextFile(files.keyFile, pem("PRIVATE KEY", pkcs8), { mode: 0o600 });
  return files;
}
