// Server certificates for TLS: load the operator's PEM files, or create and reuse a self-signed
// ECDSA certificate per host so a fresh install can offer STARTTLS from the first start.

import type * as X509 from "@peculiar/x509";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import { join } from "node:path";
import { domainToASCII } from "node:url";
import { decodeOid, readTlv } from "./der.ts";

/** Where the operator's certificate and key are: PEM file paths from the config ("" = none). */
export interface CertificateSource {
  /** Path of the PEM certificate (leaf first, then any intermediates). */
  certificate?: string;
  /** Path of the PEM private key matching the leaf certificate. */
  key?: string;
}

/** Where to look for (or create) a generated certificate when the source names no files. */
export interface LoadCertificateOptions extends CertificateSource {
  /** The server's data directory; generated pairs live in `<dataDir>/certs/<domain>.crt/.key`. */
  dataDir: string;
}

/** A certificate and key ready for a TLS context, with what callers need to know about them. */
export interface LoadedCertificate {
  /** The host the certificate was loaded for (lower case). */
  domain: string;
  /** The certificate chain in PEM, leaf first. */
  certPem: string;
  /** The private key in PEM. */
  keyPem: string;
  /** DER of the leaf certificate (what tls-server-end-point hashes). */
  der: Uint8Array;
  /** True when the leaf is issued by itself (clients will not trust it without pinning). */
  selfSigned: boolean;
  /** True when this call generated a new certificate (the caller should log a warning). */
  generated: boolean;
  /** End of the leaf's validity period. */
  notAfter: Date;
  /** DNS names from the leaf's subjectAltName extension, lower case (may hold wildcards). */
  names: string[];
  /** The file the certificate was read from (or written to), when it came from one. */
  certificateFile?: string;
  /** The file the key was read from (or written to), when it came from one. */
  keyFile?: string;
}

/** A certificate chain and its private key in PEM. */
export interface PemPair {
  /** The certificate chain in PEM, leaf first. */
  certPem: string;
  /** The private key in PEM. */
  keyPem: string;
}

/** Options for {@link createSelfSignedCertificate}. */
export interface SelfSignedOptions {
  /** How long the certificate is valid, in days. Default 365. */
  validDays?: number;
  /** The moment the validity starts (one minute earlier, for clock skew). Default now. */
  now?: Date;
}

/** What {@link describeCertificate} parses; the file names are used only in error messages. */
export interface DescribeOptions extends PemPair {
  /** Where the certificate came from, for error messages. */
  certificateFile?: string;
  /** Where the key came from, for error messages. */
  keyFile?: string;
  /** Value for {@link LoadedCertificate.generated}. Default false. */
  generated?: boolean;
}

const RENEW_BEFORE_MS = 7 * 24 * 60 * 60 * 1000;
const DAY_MS = 24 * 60 * 60 * 1000;
const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * Returns the certificate for `domain`: the operator's files when `certificate`/`key` are set,
 * else a previously generated pair from `<dataDir>/certs/` when it is still valid for more than
 * 7 days and covers the domain, else a newly generated self-signed ECDSA P-256 certificate
 * (SANs `domain` and `*.domain`, valid one year) written there with the key at mode 0600.
 *
 * @example
 * ```ts
 * const cert = await loadOrCreateCertificate("localhost", { dataDir: "./data" });
 * if (cert.generated) log.warn("Generated a self-signed certificate for {domain}", cert);
 * ```
 */
export async function loadOrCreateCertificate(
  domain: string,
  source: LoadCertificateOptions,
): Promise<LoadedCertificate> {
  const host = normalizeName(domain);
  const certificateFile = source.certificate ?? "";
  const keyFile = source.key ?? "";
  if (certificateFile !== "" || keyFile !== "") {
    if (certificateFile === "" || keyFile === "") {
      const found = certificateFile === ""
        ? `only key '${keyFile}'`
        : `only certificate '${certificateFile}'`;
      throw new Error(`Expected both a certificate and a key file for ${host}, found ${found}`);
    }
    const certPem = await readPem(certificateFile, "certificate", host);
    const keyPem = await readPem(keyFile, "key", host);
    return describeCertificate(host, { certPem, keyPem, certificateFile, keyFile });
  }

  const directory = join(source.dataDir, "certs");
  const fileBase = join(directory, fileNameFor(host));
  const existing = await reuseGenerated(host, `${fileBase}.crt`, `${fileBase}.key`);
  if (existing) return existing;

  const pair = await createSelfSignedCertificate(host);
  await Deno.mkdir(directory, { recursive: true, mode: 0o700 });
  await writeFileAtomically(`${fileBase}.key`, pair.keyPem, 0o600);
  await writeFileAtomically(`${fileBase}.crt`, pair.certPem, 0o644);
  return describeCertificate(host, {
    ...pair,
    certificateFile: `${fileBase}.crt`,
    keyFile: `${fileBase}.key`,
    generated: true,
  });
}

/** The files `lilt cert import` writes and the server reads for a host without its own files. */
export interface StoredCertificatePaths {
  /** `<dataDir>/certs/<domain>.crt`: the chain in PEM, leaf first. */
  certificateFile: string;
  /** `<dataDir>/certs/<domain>.key`: the private key in PEM, mode 0600. */
  keyFile: string;
}

/**
 * Where the certificate of `domain` lives under the data directory: the place
 * {@link loadOrCreateCertificate} reuses (and generates into) when no files are configured.
 * Throws for a name that cannot be a file name.
 */
export function storedCertificatePaths(dataDir: string, domain: string): StoredCertificatePaths {
  const base = join(dataDir, "certs", fileNameFor(normalizeName(domain)));
  return { certificateFile: `${base}.crt`, keyFile: `${base}.key` };
}

/**
 * The certificate stored for `domain` under `<dataDir>/certs/` (imported, or generated earlier),
 * when both files exist; undefined when they do not. Nothing is generated: components use this,
 * and fall back to their parent host's certificate without one. Throws when the files exist
 * but cannot be read or parsed, or the key does not match.
 */
export async function loadStoredCertificate(
  domain: string,
  dataDir: string,
): Promise<LoadedCertificate | undefined> {
  const { certificateFile, keyFile } = storedCertificatePaths(dataDir, domain);
  let certPem: string;
  let keyPem: string;
  try {
    certPem = await Deno.readTextFile(certificateFile);
    keyPem = await Deno.readTextFile(keyFile);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw new Error(`Cannot read the stored certificate of ${domain}: ${messageOf(error)}`);
  }
  return describeCertificate(domain, { certPem, keyPem, certificateFile, keyFile });
}

/**
 * Parses a PEM certificate chain and key into a {@link LoadedCertificate}. Throws when either
 * cannot be parsed or when the key does not belong to the leaf certificate.
 */
export function describeCertificate(domain: string, options: DescribeOptions): LoadedCertificate {
  const pems = options;
  const certificateFile = options.certificateFile ?? "certificate";
  const keyFile = options.keyFile ?? "key";
  const blocks = pems.certPem.match(PEM_CERTIFICATE);
  if (!blocks) {
    throw new Error(
      `Cannot parse certificate file '${certificateFile}': expected a PEM CERTIFICATE block, found none`,
    );
  }
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(blocks[0]);
  } catch (error) {
    throw new Error(`Cannot parse certificate file '${certificateFile}': ${messageOf(error)}`);
  }
  let key;
  try {
    key = createPrivateKey(pems.keyPem);
  } catch (error) {
    throw new Error(
      `Cannot parse private key file '${keyFile}': expected an unencrypted PEM private key (${
        messageOf(error)
      })`,
    );
  }
  if (!leaf.checkPrivateKey(key)) {
    throw new Error(
      `Private key file '${keyFile}' does not match certificate file '${certificateFile}': ` +
        `expected the key of the leaf certificate, found another key`,
    );
  }
  return {
    domain: normalizeName(domain),
    certPem: pems.certPem,
    keyPem: pems.keyPem,
    der: new Uint8Array(leaf.raw),
    selfSigned: isSelfSigned(leaf),
    generated: options.generated ?? false,
    notAfter: new Date(leaf.validTo),
    names: dnsNames(leaf),
    certificateFile: options.certificateFile,
    keyFile: options.keyFile,
  };
}

/**
 * Creates a self-signed ECDSA P-256 certificate for `domain` (CN=domain, SANs domain and
 * *.domain, or the address for an IP literal) with WebCrypto and `@peculiar/x509`.
 */
export async function createSelfSignedCertificate(
  domain: string,
  options: SelfSignedOptions = {},
): Promise<PemPair> {
  const x509 = await loadX509();
  const host = normalizeName(domain);
  const ascii = isIP(host) ? host : domainToASCII(host);
  if (ascii === "") {
    throw new Error(`Expected a valid domain name for a certificate, found '${domain}'`);
  }
  const algorithm = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = await crypto.subtle.generateKey(algorithm, true, [
    "sign",
    "verify",
  ]) as CryptoKeyPair;
  const start = (options.now ?? new Date()).getTime() - 60_000;
  const serial = crypto.getRandomValues(new Uint8Array(16));
  serial[0] &= 0x7f; // a positive INTEGER
  serial[0] |= 0x01; // and never zero
  const altNames: X509.JsonGeneralName[] = isIP(ascii)
    ? [{ type: "ip", value: ascii }]
    : [{ type: "dns", value: ascii }, { type: "dns", value: `*.${ascii}` }];
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Array.from(serial, (b) => b.toString(16).padStart(2, "0")).join(""),
    name: [{ CN: [ascii] }],
    notBefore: new Date(start),
    notAfter: new Date(start + (options.validDays ?? 365) * DAY_MS),
    signingAlgorithm: algorithm,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([
        x509.ExtendedKeyUsage.serverAuth,
        x509.ExtendedKeyUsage.clientAuth,
      ]),
      new x509.SubjectAlternativeNameExtension(altNames),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = await crypto.subtle.exportKey("pkcs8", keys.privateKey);
  return {
    certPem: certificate.toString("pem") + "\n",
    keyPem: x509.PemConverter.encode(pkcs8, "PRIVATE KEY") + "\n",
  };
}

/**
 * True when one of the certificate's DNS names covers `name`: an exact match, or a wildcard
 * `*.example.com` that covers exactly one more label (`chat.example.com`, not `example.com`).
 */
export function certificateMatchesName(
  cert: Pick<LoadedCertificate, "names">,
  name: string,
): boolean {
  const wanted = normalizeName(name);
  if (wanted === "") return false;
  const asciiWanted = isIP(wanted) ? wanted : domainToASCII(wanted) || wanted;
  for (const pattern of cert.names) {
    if (pattern === wanted || pattern === asciiWanted) return true;
    if (pattern.startsWith("*.")) {
      const dot = asciiWanted.indexOf(".");
      if (dot > 0 && asciiWanted.slice(dot + 1) === pattern.slice(2)) return true;
    }
  }
  return false;
}

/**
 * The hash that RFC 5929 tls-server-end-point uses for this certificate, as a node:crypto hash
 * name: the hash of its signature algorithm, with MD5 and SHA-1 upgraded to SHA-256. Returns
 * undefined when the algorithm uses no single hash (Ed25519, Ed448) or is unknown, since the
 * binding is then undefined.
 */
export function tlsServerEndPointHash(der: Uint8Array): string | undefined {
  try {
    const certificate = readTlv(der, 0);
    const tbs = readTlv(der, certificate.start);
    const algorithmIdentifier = readTlv(der, tbs.end);
    const oid = readTlv(der, algorithmIdentifier.start);
    if (oid.tag !== 0x06) return undefined;
    const name = decodeOid(der.subarray(oid.start, oid.end));
    if (name === RSASSA_PSS) {
      return pssHash(der, oid.end, algorithmIdentifier.end);
    }
    return SIGNATURE_HASHES[name];
  } catch {
    return undefined;
  }
}

let x509Module: Promise<typeof X509> | undefined;

/**
 * Loads `@peculiar/x509` once. The package's dependency injection (tsyringe) refuses to load
 * without the Reflect metadata API, so the `reflect-metadata` polyfill is imported first.
 * Import the package through this function, never with a static import, or it throws at
 * module load.
 */
export function loadX509(): Promise<typeof X509> {
  if (!x509Module) {
    x509Module = import("reflect-metadata").then(() => import("@peculiar/x509")).then((module) => {
      module.cryptoProvider.set(crypto);
      return module;
    });
  }
  return x509Module;
}

async function reuseGenerated(
  host: string,
  certificateFile: string,
  keyFile: string,
): Promise<LoadedCertificate | undefined> {
  let pems: PemPair;
  try {
    pems = {
      certPem: await Deno.readTextFile(certificateFile),
      keyPem: await Deno.readTextFile(keyFile),
    };
  } catch {
    return undefined;
  }
  try {
    const loaded = describeCertificate(host, { ...pems, certificateFile, keyFile });
    // A generated pair is renewed a week ahead; an imported one (`lilt cert import`, issued by
    // a CA) is kept until it expires, since a self-signed stand-in would be no better.
    const margin = loaded.selfSigned ? RENEW_BEFORE_MS : 0;
    const fresh = loaded.notAfter.getTime() - Date.now() > margin;
    return fresh && certificateMatchesName(loaded, host) ? loaded : undefined;
  } catch (error) {
    // A damaged or mismatched generated pair is replaced by a new one; an imported one is not
    // overwritten behind the operator's back (a broken import would turn into self-signed).
    if (!isImported(pems.certPem)) return undefined;
    throw new Error(
      `The certificate stored for ${host} in '${certificateFile}' cannot be used (${
        messageOf(error)
      }): run 'lilt cert import DIR' again, or remove both files to use a self-signed one`,
    );
  }
}

// A stored leaf issued by someone else (a CA): it came from `lilt cert import`, not from us.
function isImported(certPem: string): boolean {
  const first = certPem.match(PEM_CERTIFICATE)?.[0];
  if (!first) return false;
  try {
    return !isSelfSigned(new X509Certificate(first));
  } catch {
    return false;
  }
}

async function readPem(path: string, what: "certificate" | "key", host: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    const reason = error instanceof Deno.errors.NotFound ? "file not found" : messageOf(error);
    throw new Error(`Cannot read ${what} file '${path}' for ${host}: ${reason}`);
  }
}

/**
 * Writes `text` to `path` through a temporary file renamed into place, with exactly `mode`
 * (whatever the umask), so a reader never sees half a certificate or a key with loose modes.
 */
export async function writeFileAtomically(path: string, text: string, mode: number): Promise<void> {
  const temporary = `${path}.${crypto.randomUUID()}.tmp`;
  try {
    await Deno.writeTextFile(temporary, text, { mode, createNew: true });
    await Deno.chmod(temporary, mode); // the umask may have narrowed it; make it exact
    await Deno.rename(temporary, path);
  } catch (error) {
    await Deno.remove(temporary).catch(() => {});
    throw new Error(`Cannot write '${path}': ${messageOf(error)}`);
  }
}

function fileNameFor(host: string): string {
  if (host === "" || host.startsWith(".") || /[/\\\0]/.test(host)) {
    throw new Error(`Expected a domain name usable as a file name, found '${host}'`);
  }
  return host;
}

function normalizeName(name: string): string {
  const lower = name.trim().toLowerCase();
  return lower.endsWith(".") ? lower.slice(0, -1) : lower;
}

// checkIssued() is not used: like OpenSSL it also demands keyCertSign, which a self-signed
// server certificate (digitalSignature only) does not have.
function isSelfSigned(certificate: X509Certificate): boolean {
  try {
    return certificate.subject === certificate.issuer && certificate.verify(certificate.publicKey);
  } catch {
    return false;
  }
}

function dnsNames(certificate: X509Certificate): string[] {
  const names: string[] = [];
  for (const entry of (certificate.subjectAltName ?? "").split(/,\s*/)) {
    if (!entry.startsWith("DNS:")) continue;
    let value = entry.slice(4);
    if (value.startsWith('"')) {
      try {
        value = JSON.parse(value);
      } catch {
        continue;
      }
    }
    names.push(normalizeName(value));
  }
  return names;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

// Signature algorithm OID -> hash for tls-server-end-point (RFC 5929 section 4.1).
const RSASSA_PSS = "1.2.840.113549.1.1.10";
const SIGNATURE_HASHES: Record<string, string> = {
  "1.2.840.113549.1.1.4": "sha256", // md5WithRSAEncryption
  "1.2.840.113549.1.1.5": "sha256", // sha1WithRSAEncryption
  "1.2.840.113549.1.1.14": "sha224",
  "1.2.840.113549.1.1.11": "sha256",
  "1.2.840.113549.1.1.12": "sha384",
  "1.2.840.113549.1.1.13": "sha512",
  "1.2.840.10045.4.1": "sha256", // ecdsa-with-SHA1
  "1.2.840.10045.4.3.1": "sha224",
  "1.2.840.10045.4.3.2": "sha256",
  "1.2.840.10045.4.3.3": "sha384",
  "1.2.840.10045.4.3.4": "sha512",
  "1.2.840.10040.4.3": "sha256", // dsa-with-sha1
  "2.16.840.1.101.3.4.3.1": "sha224", // dsa-with-sha224
  "2.16.840.1.101.3.4.3.2": "sha256", // dsa-with-sha256
  "2.16.840.1.101.3.4.3.9": "sha3-224", // ecdsa-with-sha3-*
  "2.16.840.1.101.3.4.3.10": "sha3-256",
  "2.16.840.1.101.3.4.3.11": "sha3-384",
  "2.16.840.1.101.3.4.3.12": "sha3-512",
  "2.16.840.1.101.3.4.3.13": "sha3-224", // rsassa-pkcs1-v1_5-with-sha3-*
  "2.16.840.1.101.3.4.3.14": "sha3-256",
  "2.16.840.1.101.3.4.3.15": "sha3-384",
  "2.16.840.1.101.3.4.3.16": "sha3-512",
};
const DIGESTS: Record<string, string> = {
  "1.3.14.3.2.26": "sha256", // SHA-1
  "2.16.840.1.101.3.4.2.4": "sha224",
  "2.16.840.1.101.3.4.2.1": "sha256",
  "2.16.840.1.101.3.4.2.2": "sha384",
  "2.16.840.1.101.3.4.2.3": "sha512",
};

// RSASSA-PSS-params ::= SEQUENCE { hashAlgorithm [0] AlgorithmIdentifier DEFAULT sha1, ... }
function pssHash(der: Uint8Array, offset: number, end: number): string | undefined {
  if (offset >= end) return "sha256";
  const params = readTlv(der, offset);
  if (params.tag !== 0x30) return undefined;
  if (params.start >= params.end) return "sha256";
  const first = readTlv(der, params.start);
  if (first.tag !== 0xa0) return "sha256";
  const hashIdentifier = readTlv(der, first.start);
  const hashOid = readTlv(der, hashIdentifier.start);
  return DIGESTS[decodeOid(der.subarray(hashOid.start, hashOid.end))];
}
