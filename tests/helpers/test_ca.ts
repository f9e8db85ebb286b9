// Makes throwaway certificate authorities and certificates for tests: CA-signed server certificates
// so real clients can verify the server, and s2s peer certificates with XMPP identities.

import type * as X509 from "@peculiar/x509";
import { loadX509 } from "../../core/net/certificates.ts";

const ALGORITHM = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const DAY_MS = 24 * 3600_000;
const OID_SUBJECT_ALT_NAME = "2.5.29.17";
const OID_XMPP_ADDR = "1.3.6.1.5.5.7.8.5";
const OID_SRV_NAME = "1.3.6.1.5.5.7.8.7";

function pem(label: string, der: ArrayBuffer | Uint8Array): string {
  const bytes = der instanceof Uint8Array ? der : new Uint8Array(der);
  const b64 = btoa(String.fromCharCode(...bytes));
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
  const ca = await createTestCa();
  const server = await ca.issue({ names, cn: names[0] });
  const files: TestCertificates = {
    caFile: `${dir}/test-ca.crt`,
    certFile: `${dir}/server.crt`,
    keyFile: `${dir}/server.key`,
  };
  await ca.writeCa(files.caFile);
  await Deno.writeTextFile(files.certFile, server.certPem);
  await Deno.writeTextFile(files.keyFile, server.keyPem, { mode: 0o600 });
  return files;
}

/** An extendedKeyUsage purpose a test certificate can carry. */
export type TestKeyPurpose = "serverAuth" | "clientAuth" | "codeSigning";

/** What {@link TestCa.issue} puts into a certificate. */
export interface IssueOptions {
  /** DNS-ID subjectAltNames. */
  names?: string[];
  /** XmppAddr otherName subjectAltNames (id-on-xmppAddr, UTF8String). */
  xmppAddrs?: string[];
  /** SRV-ID otherName subjectAltNames (id-on-dnsSRV, IA5String), e.g. "_xmpp-server.b.example". */
  srvNames?: string[];
  /** Subject common name. Default the first DNS name, else "Lilt Test Peer". */
  cn?: string;
  /** extendedKeyUsage purposes, or "none" to leave the extension out. Default ["serverAuth"]. */
  eku?: TestKeyPurpose[] | "none";
  /** Start of validity. Default one minute ago. */
  notBefore?: Date;
  /** End of validity. Default in seven days. */
  notAfter?: Date;
  /** Issue from the CA's intermediate (created once per CA) instead of the CA itself. */
  intermediate?: boolean;
  /** Sign with this certificate's key and name instead (e.g. to test an issuer that is no CA). */
  signedBy?: IssuedCertificate;
}

/** Files written by {@link IssuedCertificate.writeTo}. */
export interface IssuedFiles {
  /** PEM chain: the leaf, then its intermediate when there is one. */
  certFile: string;
  /** PEM (PKCS#8) of the leaf's key, mode 0600. */
  keyFile: string;
}

/** A certificate made by {@link TestCa}. */
export interface IssuedCertificate {
  /** PEM of the certificate alone. */
  certPem: string;
  /** PEM (PKCS#8) of its private key. */
  keyPem: string;
  /** PEM of the certificate followed by its intermediate, if any (what a server presents). */
  chainPem: string;
  /** DER of the certificate. */
  der: Uint8Array;
  /** DER of the presented chain, leaf first (the input of verifyPeerCertificate). */
  chain: Uint8Array[];
  /** The subject name, e.g. "CN=b.example". */
  subject: string;
  /** The key pair (WebCrypto), for signing further certificates with {@link IssueOptions.signedBy}. */
  keys: CryptoKeyPair;
  /** Writes `<dir>/<basename>.crt` (chainPem) and `<dir>/<basename>.key`. */
  writeTo(dir: string, basename: string): Promise<IssuedFiles>;
}

/** A throwaway certificate authority (ECDSA P-256). */
export interface TestCa {
  /** PEM of the CA certificate. */
  caPem: string;
  /** DER of the CA certificate. */
  caDer: Uint8Array;
  /** The CA's subject name. */
  name: string;
  /** Writes the CA certificate as PEM to `path`. */
  writeCa(path: string): Promise<void>;
  /** Issues a certificate from this CA (or its intermediate). */
  issue(options?: IssueOptions): Promise<IssuedCertificate>;
  /** Makes a self-signed certificate for `names` (DNS SANs, CN the first name). */
  selfSigned(
    names: string[],
    options?: Omit<IssueOptions, "intermediate" | "signedBy" | "names">,
  ): Promise<IssuedCertificate>;
}

/** Options for {@link createTestCa}. */
export interface TestCaOptions {
  /** The CA's common name. Default "Lilt Test CA". */
  name?: string;
  /** Start of the CA's validity. Default one minute ago. */
  notBefore?: Date;
  /** End of the CA's validity. Default in seven days. */
  notAfter?: Date;
}

interface Signer {
  name: string;
  keys: CryptoKeyPair;
  chain: Uint8Array[];
  chainPem: string;
}

/**
 * Creates a test CA. Certificates it issues carry digitalSignature key usage, the requested
 * extendedKeyUsage and subjectAltNames, and an authority key identifier.
 *
 * @example
 * ```ts
 * const ca = await createTestCa();
 * const peer = await ca.issue({ names: ["b.example"], intermediate: true });
 * await ca.writeCa(`${dir}/ca.pem`);
 * ```
 */
export async function createTestCa(options: TestCaOptions = {}): Promise<TestCa> {
  const x509 = await loadX509();
  const now = Date.now();
  const name = `CN=${options.name ?? "Lilt Test CA"}`;
  const caKeys = await generateKeys();
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name,
    notBefore: options.notBefore ?? new Date(now - 60_000),
    notAfter: options.notAfter ?? new Date(now + 7 * DAY_MS),
    keys: caKeys,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  const caPem = ca.toString("pem") + "\n";
  const root: Signer = { name, keys: caKeys, chain: [], chainPem: "" };
  let intermediate: Promise<Signer> | undefined;

  function intermediateSigner(): Promise<Signer> {
    intermediate ??= (async () => {
      const keys = await generateKeys();
      const subject = `CN=${options.name ?? "Lilt Test CA"} Intermediate`;
      const certificate = await x509.X509CertificateGenerator.create({
        serialNumber: randomSerial(),
        subject,
        issuer: name,
        notBefore: new Date(now - 60_000),
        notAfter: new Date(now + 7 * DAY_MS),
        publicKey: keys.publicKey,
        signingKey: caKeys.privateKey,
        signingAlgorithm: ALGORITHM,
        extensions: [
          new x509.BasicConstraintsExtension(true, 0, true),
          new x509.KeyUsagesExtension(
            x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
            true,
          ),
          await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
          await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey),
        ],
      });
      const der = new Uint8Array(certificate.rawData);
      return { name: subject, keys, chain: [der], chainPem: pem("CERTIFICATE", der) };
    })();
    return intermediate;
  }

  return {
    caPem,
    caDer: new Uint8Array(ca.rawData),
    name,
    async writeCa(path) {
      await Deno.writeTextFile(path, caPem);
    },
    async issue(issueOptions = {}) {
      let signer = issueOptions.intermediate ? await intermediateSigner() : root;
      if (issueOptions.signedBy) {
        const by = issueOptions.signedBy;
        signer = { name: by.subject, keys: by.keys, chain: by.chain, chainPem: by.chainPem };
      }
      return await makeCertificate(x509, issueOptions, signer);
    },
    async selfSigned(names, selfOptions = {}) {
      return await makeCertificate(x509, {
        eku: ["serverAuth", "clientAuth"],
        ...selfOptions,
        names,
      });
    },
  };
}

async function makeCertificate(
  x509: typeof X509,
  options: IssueOptions,
  signer?: Signer,
): Promise<IssuedCertificate> {
  const now = Date.now();
  const keys = await generateKeys();
  const names = options.names ?? [];
  const subject = `CN=${options.cn ?? names[0] ?? "Lilt Test Peer"}`;
  const eku = options.eku ?? ["serverAuth"];
  const extensions: X509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
  ];
  if (eku !== "none") {
    extensions.push(new x509.ExtendedKeyUsageExtension(eku.map((p) => KEY_PURPOSES[p])));
  }
  const altNames = subjectAltNames(names, options.xmppAddrs ?? [], options.srvNames ?? []);
  if (altNames) extensions.push(new x509.Extension(OID_SUBJECT_ALT_NAME, false, altNames));
  const notBefore = options.notBefore ?? new Date(now - 60_000);
  const notAfter = options.notAfter ?? new Date(now + 7 * DAY_MS);
  let certificate: X509.X509Certificate;
  if (signer) {
    extensions.push(await x509.AuthorityKeyIdentifierExtension.create(signer.keys.publicKey));
    certificate = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject,
      issuer: signer.name,
      notBefore,
      notAfter,
      publicKey: keys.publicKey,
      signingKey: signer.keys.privateKey,
      signingAlgorithm: ALGORITHM,
      extensions,
    });
  } else {
    certificate = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: randomSerial(),
      name: subject,
      notBefore,
      notAfter,
      keys,
      signingAlgorithm: ALGORITHM,
      extensions,
    });
  }
  const der = new Uint8Array(certificate.rawData);
  const certPem = pem("CERTIFICATE", der);
  const keyPem = pem("PRIVATE KEY", await crypto.subtle.exportKey("pkcs8", keys.privateKey));
  const chainPem = certPem + (signer?.chainPem ?? "");
  return {
    certPem,
    keyPem,
    chainPem,
    der,
    chain: [der, ...(signer?.chain ?? [])],
    subject,
    keys,
    async writeTo(dir, basename) {
      const files = { certFile: `${dir}/${basename}.crt`, keyFile: `${dir}/${basename}.key` };
      await Deno.writeTextFile(files.certFile, chainPem);
      await Deno.writeTextFile(files.keyFile, keyPem, { mode: 0o600 });
      return files;
    },
  };
}

const KEY_PURPOSES: Record<TestKeyPurpose, string> = {
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
  codeSigning: "1.3.6.1.5.5.7.3.3",
};

function generateKeys(): Promise<CryptoKeyPair> {
  return crypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]) as Promise<CryptoKeyPair>;
}

function randomSerial(): string {
  const serial = crypto.getRandomValues(new Uint8Array(12));
  serial[0] = (serial[0] & 0x7f) | 0x01; // positive and never zero
  return Array.from(serial, (b) => b.toString(16).padStart(2, "0")).join("");
}

// @peculiar/x509's GeneralName knows no XmppAddr or SRVName otherName, so the subjectAltName
// extension value (GeneralNames, RFC 5280 section 4.2.1.6) is encoded here.
function subjectAltNames(
  dns: string[],
  xmppAddrs: string[],
  srvNames: string[],
): Uint8Array<ArrayBuffer> | undefined {
  const text = new TextEncoder();
  const names = [
    ...srvNames.map((name) => otherName(OID_SRV_NAME, derElement(0x16, text.encode(name)))),
    ...xmppAddrs.map((name) => otherName(OID_XMPP_ADDR, derElement(0x0c, text.encode(name)))),
    ...dns.map((name) => derElement(0x82, text.encode(name))),
  ];
  return names.length === 0 ? undefined : derElement(0x30, ...names);
}

function otherName(oid: string, value: Uint8Array): Uint8Array {
  return derElement(0xa0, derElement(0x06, encodeOid(oid)), derElement(0xa0, value));
}

function derElement(tag: number, ...contents: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const length = contents.reduce((sum, part) => sum + part.length, 0);
  const lengthBytes: number[] = [];
  if (length < 0x80) {
    lengthBytes.push(length);
  } else {
    for (let rest = length; rest > 0; rest = Math.floor(rest / 256)) {
      lengthBytes.unshift(rest & 0xff);
    }
    lengthBytes.unshift(0x80 | lengthBytes.length);
  }
  const out = new Uint8Array(1 + lengthBytes.length + length);
  out[0] = tag;
  out.set(lengthBytes, 1);
  let offset = 1 + lengthBytes.length;
  for (const part of contents) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function encodeOid(dotted: string): Uint8Array {
  const [first, second, ...rest] = dotted.split(".").map(Number);
  const bytes: number[] = [];
  for (const arc of [first * 40 + second, ...rest]) {
    const chunk = [arc & 0x7f];
    for (let value = Math.floor(arc / 128); value > 0; value = Math.floor(value / 128)) {
      chunk.unshift((value & 0x7f) | 0x80);
    }
    bytes.push(...chunk);
  }
  return new Uint8Array(bytes);
}
