// Verifies a remote server's certificate for s2s (RFC 6120 section 13.7, RFC 6125, XEP-0178)
// ourselves: Deno's node:tls rejects serverAuth-only client certificates and hides otherName SANs.

import { Buffer } from "node:buffer";
import {
  constants,
  createHash,
  createPublicKey,
  type KeyObject,
  verify as verifySignature,
} from "node:crypto";
import { type DetailedPeerCertificate, rootCertificates, type TLSSocket } from "node:tls";
import { domainToASCII } from "node:url";
import { decodeOid, decodeString, decodeTime, readChildren, readTlv, type Tlv } from "./der.ts";

/** The outcome of {@link verifyPeerCertificate}; only `"valid"` authenticates the peer. */
export type PeerCertificateStatus =
  | "valid"
  | "no-certificate"
  | "untrusted"
  | "self-signed"
  | "expired"
  | "not-yet-valid"
  | "name-mismatch"
  | "wrong-usage";

/** What {@link verifyPeerCertificate} found out about a peer's certificate. */
export interface PeerCertificateVerdict {
  /** The outcome; the checks run in the order no-certificate, trust, dates, usage, name. */
  status: PeerCertificateStatus;
  /** One sentence for the operator's log saying what was found and why it passes or fails. */
  reason: string;
  /**
   * The leaf's identities as found: `"dns:x"`, `"xmpp:x"` (XmppAddr), `"srv:_xmpp-server.x"`
   * (any SRV-ID) and `"cn:x"` (subject common names). Empty without a parseable leaf.
   */
  names: string[];
  /** The leaf's subject, e.g. `"CN=b.example, O=Example"` (attributes in certificate order). */
  subject?: string;
  /** The leaf's issuer, in the same form as `subject`. */
  issuer?: string;
  /** SHA-256 of the leaf's DER, as colon-separated upper-case hex (like node:tls). */
  fingerprint256?: string;
  /** The end of the leaf's validity period. */
  notAfter?: Date;
}

/** Where {@link loadTrustStore} takes trust anchors from. */
export interface TrustStoreOptions {
  /**
   * PEM files whose certificates are all trusted: CA bundles, or a peer's own (self-signed)
   * certificate to pin it.
   */
  caFiles: string[];
  /** Also trust the operating system's bundle (Debian's `/etc/ssl/certs/ca-certificates.crt`). */
  system: boolean;
  /**
   * Also trust the Mozilla roots bundled with Deno (`tls.rootCertificates`); default true.
   * False with `system` false leaves only `caFiles` (a closed federation).
   */
  bundled?: boolean;
}

/** The operating system CA bundle read by {@link loadTrustStore} when `system` is set. */
export const SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt";

// What we need of a certificate, parsed once from its DER.
interface ParsedCertificate {
  fingerprint256: string;
  version: number;
  /** The complete tbsCertificate element: the bytes the issuer signed. */
  tbs: Uint8Array;
  signatureAlgorithm: string;
  /** The DER of the signature algorithm's parameters (RSASSA-PSS only needs them). */
  signatureParameters?: Uint8Array;
  signature: Uint8Array;
  subject: string;
  subjectKey: string;
  issuer: string;
  issuerKey: string;
  notBefore: Date;
  notAfter: Date;
  spki: Uint8Array;
  ca: boolean;
  pathLength?: number;
  /** keyCertSign from the keyUsage extension; undefined when the extension is absent. */
  keyCertSign?: boolean;
  /** The extendedKeyUsage OIDs; undefined when the extension is absent. */
  extendedKeyUsage?: string[];
  dnsNames: string[];
  xmppAddrs: string[];
  srvNames: string[];
  commonNames: string[];
  /** The public key, created on first use; null when node:crypto cannot use it. */
  publicKey?: KeyObject | null;
}

let anchorsNamed: (store: TrustStore, nameKey: string) => readonly ParsedCertificate[];
let anchorWithFingerprint: (
  store: TrustStore,
  fingerprint: string,
) => ParsedCertificate | undefined;
let addParsedAnchor: (store: TrustStore, certificate: ParsedCertificate) => void;

/**
 * A set of trust anchors: CA certificates that may issue peer certificates, and pinned peer
 * certificates that are trusted as they are. Build one with {@link loadTrustStore}.
 *
 * @example
 * ```ts
 * const trust = new TrustStore([caDer]);
 * verifyPeerCertificate(peerChain(socket), "b.example", trust);
 * ```
 */
export class TrustStore {
  #byName = new Map<string, ParsedCertificate[]>();
  #byFingerprint = new Map<string, ParsedCertificate>();

  static {
    anchorsNamed = (store, nameKey) => store.#byName.get(nameKey) ?? [];
    anchorWithFingerprint = (store, fingerprint) => store.#byFingerprint.get(fingerprint);
    addParsedAnchor = (store, certificate) => store.#addParsed(certificate);
  }

  /** Creates a store trusting the given DER certificates; throws when one cannot be parsed. */
  constructor(certificates: Iterable<Uint8Array> = []) {
    for (const der of certificates) this.add(der);
  }

  /** How many distinct certificates the store holds. */
  get size(): number {
    return this.#byFingerprint.size;
  }

  /** Trusts one more DER certificate (a duplicate is ignored); throws when it cannot be parsed. */
  add(der: Uint8Array): void {
    this.#addParsed(parseCertificate(der));
  }

  /** True when exactly this DER certificate is in the store. */
  has(der: Uint8Array): boolean {
    return this.#byFingerprint.has(fingerprintOf(der));
  }

  #addParsed(certificate: ParsedCertificate): void {
    if (this.#byFingerprint.has(certificate.fingerprint256)) return;
    this.#byFingerprint.set(certificate.fingerprint256, certificate);
    const named = this.#byName.get(certificate.subjectKey);
    if (named) named.push(certificate);
    else this.#byName.set(certificate.subjectKey, [certificate]);
  }
}

/**
 * Builds the trust store for s2s: the Mozilla roots bundled with Deno (`tls.rootCertificates`)
 * unless `bundled` is false, the system bundle when `system` is set and it is readable (skipped
 * silently otherwise), and
 * every certificate of every `caFiles` PEM file. Throws when a CA file cannot be read, holds no
 * PEM certificate, or holds one that cannot be parsed; the message names the file.
 *
 * @example
 * ```ts
 * const trust = await loadTrustStore({ caFiles: ["/etc/lilt/peers.pem"], system: true });
 * ```
 */
export async function loadTrustStore(options: TrustStoreOptions): Promise<TrustStore> {
  const store = new TrustStore();
  if (options.bundled ?? true) {
    for (const certificate of bundledRoots()) addParsedAnchor(store, certificate);
  }
  if (options.system) {
    let bundle = "";
    try {
      bundle = await Deno.readTextFile(SYSTEM_CA_BUNDLE);
    } catch {
      // no system bundle on this machine: the bundled roots still apply
    }
    for (const der of pemCertificates(bundle)) {
      try {
        store.add(der);
      } catch {
        // an entry we cannot parse cannot anchor a path either
      }
    }
  }
  for (const file of options.caFiles) {
    let text: string;
    try {
      text = await Deno.readTextFile(file);
    } catch (error) {
      const reason = error instanceof Deno.errors.NotFound
        ? "file not found"
        : error instanceof Deno.errors.PermissionDenied
        ? "permission denied"
        : messageOf(error);
      throw new Error(`Cannot read trusted certificates file '${file}': ${reason}`);
    }
    let ders: Uint8Array[];
    try {
      ders = pemCertificates(text, true);
    } catch (error) {
      throw new Error(`Cannot load trusted certificates file '${file}': ${messageOf(error)}`);
    }
    if (ders.length === 0) {
      throw new Error(
        `Cannot load trusted certificates file '${file}': expected a PEM CERTIFICATE block, found none`,
      );
    }
    ders.forEach((der, index) => {
      try {
        store.add(der);
      } catch (error) {
        throw new Error(
          `Cannot load trusted certificates file '${file}': certificate ${
            index + 1
          } cannot be parsed (${messageOf(error)})`,
        );
      }
    });
  }
  return store;
}

/**
 * The DER certificates the peer of a TLS connection presented, leaf first, as node:tls reports
 * them (`getPeerCertificate(true)` and its `issuerCertificate` links). Empty when the peer sent
 * no certificate.
 */
export function peerChain(socket: TLSSocket): Uint8Array[] {
  const chain: Uint8Array[] = [];
  const seen = new Set<string>();
  try {
    let certificate: DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
    while (certificate?.raw && certificate.raw.length > 0) {
      const der = new Uint8Array(certificate.raw);
      const fingerprint = fingerprintOf(der);
      if (seen.has(fingerprint)) break;
      seen.add(fingerprint);
      chain.push(der);
      if (certificate.issuerCertificate === certificate) break;
      certificate = certificate.issuerCertificate;
    }
  } catch {
    // a socket that is already closed has no certificate to report
  }
  return chain;
}

/**
 * Decides whether `chain` (DER, leaf first, then any intermediates in any order, as presented)
 * authenticates the XMPP server `domain`:
 * - trust: a path from the leaf through presented intermediates to an anchor of `trust`, each
 *   issuer a CA whose signature verifies; a leaf that is itself in the store is trusted (pinning);
 * - dates: every certificate of the path is valid at `now`;
 * - usage: the leaf has no extendedKeyUsage, or one allowing serverAuth, clientAuth or any;
 * - name (RFC 6120 section 13.7.1.2, RFC 6125): an SRV-ID `_xmpp-server.<domain>` (or
 *   `_xmpps-server.`), an XmppAddr equal to `domain`, a DNS-ID equal to it or a wildcard for its
 *   leftmost label, or, only without any of those SANs, a common name matching like a DNS-ID.
 *
 * Names compare case-insensitively, without a trailing dot, IDNs as A-labels. Never throws:
 * unparseable input gives `"untrusted"`.
 *
 * @example
 * ```ts
 * const verdict = verifyPeerCertificate(peerChain(socket), "b.example", trust);
 * if (verdict.status !== "valid") log.info("Not authenticating b.example: {reason}", verdict);
 * ```
 */
export function verifyPeerCertificate(
  chain: Uint8Array[],
  domain: string,
  trust: TrustStore,
  now: Date = new Date(),
): PeerCertificateVerdict {
  if (chain.length === 0) {
    return {
      status: "no-certificate",
      reason: `The peer '${domain}' presented no certificate`,
      names: [],
    };
  }
  let leaf: ParsedCertificate;
  try {
    leaf = parseCertificate(chain[0]);
  } catch (error) {
    return {
      status: "untrusted",
      reason: `The certificate of '${domain}' cannot be parsed: ${messageOf(error)}`,
      names: [],
    };
  }
  const base = {
    names: identitiesOf(leaf),
    subject: leaf.subject,
    issuer: leaf.issuer,
    fingerprint256: leaf.fingerprint256,
    notAfter: leaf.notAfter,
  };
  try {
    return { ...base, ...judge(leaf, chain.slice(1), domain, trust, now) };
  } catch (error) {
    return {
      ...base,
      status: "untrusted",
      reason: `The certificate of '${domain}' cannot be verified: ${messageOf(error)}`,
    };
  }
}

type Judgement = Pick<PeerCertificateVerdict, "status" | "reason">;

function judge(
  leaf: ParsedCertificate,
  rest: Uint8Array[],
  domain: string,
  trust: TrustStore,
  now: Date,
): Judgement {
  const of = `The certificate of '${domain}'`;
  const pinned = anchorWithFingerprint(trust, leaf.fingerprint256) !== undefined;
  let paths: ParsedCertificate[][];
  if (pinned) {
    paths = [[leaf]];
  } else {
    const intermediates: ParsedCertificate[] = [];
    for (const der of rest.slice(0, MAX_PRESENTED)) {
      try {
        intermediates.push(parseCertificate(der));
      } catch {
        // an extra certificate we cannot parse cannot be part of a path
      }
    }
    const search: PathSearch = { trust, intermediates, paths: [], steps: 0, depth: 0, top: leaf };
    searchPaths([leaf], search);
    paths = search.paths;
    if (paths.length === 0) return untrusted(leaf, search, of);
  }

  let dateProblem: Judgement | undefined;
  let path: ParsedCertificate[] | undefined;
  for (const candidate of paths) {
    const problem = datesProblem(candidate, now, of);
    if (!problem) {
      path = candidate;
      break;
    }
    dateProblem ??= problem;
  }
  if (!path) return dateProblem!;

  if (leaf.extendedKeyUsage && !leaf.extendedKeyUsage.some((oid) => ACCEPTED_USAGES.has(oid))) {
    const usages = leaf.extendedKeyUsage.map((oid) => USAGE_NAMES[oid] ?? oid);
    const listed = usages.length === 0 ? "no purpose" : usages.map((u) => `'${u}'`).join(", ");
    return {
      status: "wrong-usage",
      reason: `${of} allows ${listed}, not server or client authentication`,
    };
  }

  const matched = matchIdentity(leaf, domain);
  if (!matched) {
    const names = identitiesOf(leaf);
    const found = names.length === 0
      ? "names no identity"
      : `names ${names.map((name) => `'${name}'`).join(", ")}`;
    return { status: "name-mismatch", reason: `${of} ${found}, none of which is '${domain}'` };
  }
  const anchor = path[path.length - 1];
  const how = pinned ? "pinned in the trust store" : `trusted through '${anchor.subject}'`;
  return { status: "valid", reason: `${of} is valid for '${matched}', ${how}` };
}

const MAX_PRESENTED = 16;
const MAX_DEPTH = 8;
const MAX_STEPS = 64;
const MAX_PATHS = 4;

interface PathSearch {
  trust: TrustStore;
  intermediates: ParsedCertificate[];
  paths: ParsedCertificate[][];
  steps: number;
  /** The longest partial path seen, for the reason when no path reaches an anchor. */
  depth: number;
  top: ParsedCertificate;
  /** Why a certificate named as the issuer of `top` was not accepted as its issuer. */
  problem?: string;
}

// Depth-first from the leaf: anchors first (so a presented copy of a root, or a cross-signed
// alternative, never hides the short path), then presented intermediates.
function searchPaths(path: ParsedCertificate[], search: PathSearch): void {
  const current = path[path.length - 1];
  if (path.length > search.depth) {
    search.depth = path.length;
    search.top = current;
    search.problem = undefined;
  }
  for (const anchor of anchorsNamed(search.trust, current.issuerKey)) {
    if (search.paths.length >= MAX_PATHS || ++search.steps > MAX_STEPS) return;
    if (path.some((certificate) => certificate.fingerprint256 === anchor.fingerprint256)) continue;
    const problem = issuerProblem(current, anchor, path.length - 1, true);
    if (problem) {
      if (current === search.top) search.problem ??= problem;
      continue;
    }
    search.paths.push([...path, anchor]);
  }
  if (path.length >= MAX_DEPTH) return;
  for (const candidate of search.intermediates) {
    if (search.paths.length >= MAX_PATHS || search.steps > MAX_STEPS) return;
    if (candidate.subjectKey !== current.issuerKey) continue;
    if (path.some((certificate) => certificate.fingerprint256 === candidate.fingerprint256)) {
      continue;
    }
    if (anchorWithFingerprint(search.trust, candidate.fingerprint256)) continue; // tried above
    search.steps++;
    const problem = issuerProblem(current, candidate, path.length - 1, false);
    if (problem) {
      if (current === search.top) search.problem ??= problem;
      continue;
    }
    searchPaths([...path, candidate], search);
  }
}

// Why `issuer` cannot have issued `child`, or undefined when it did. `below` counts the
// intermediates between `issuer` and the leaf, for pathLenConstraint.
function issuerProblem(
  child: ParsedCertificate,
  issuer: ParsedCertificate,
  below: number,
  anchor: boolean,
): string | undefined {
  // A version 1 root has no extensions at all; trust stores still hold a few.
  const ca = issuer.ca || (anchor && issuer.version === 1);
  if (!ca) return `'${issuer.subject}' is not a certificate authority`;
  if (issuer.keyCertSign === false) {
    return `'${issuer.subject}' may not sign certificates (keyUsage lacks keyCertSign)`;
  }
  if (issuer.pathLength !== undefined && below > issuer.pathLength) {
    return `'${issuer.subject}' allows only ${issuer.pathLength} intermediate certificates below it`;
  }
  const scheme = signatureSchemeOf(child);
  if (!scheme) {
    return `the signature algorithm ${child.signatureAlgorithm} of '${child.subject}' is not accepted`;
  }
  if (!signatureVerifies(child, issuer, scheme)) {
    return `the signature on '${child.subject}' does not verify with the key of '${issuer.subject}'`;
  }
  return undefined;
}

function untrusted(leaf: ParsedCertificate, search: PathSearch, of: string): Judgement {
  if (leaf.issuerKey === leaf.subjectKey && search.top === leaf) {
    const scheme = signatureSchemeOf(leaf);
    if (scheme && signatureVerifies(leaf, leaf, scheme)) {
      return {
        status: "self-signed",
        reason: `${of} is self-signed ('${leaf.subject}') and not pinned in the trust store`,
      };
    }
  }
  const top = search.top;
  if (search.problem) {
    const where = top === leaf ? "" : ` (via '${top.subject}')`;
    return { status: "untrusted", reason: `${of} is not trusted${where}: ${search.problem}` };
  }
  let link = `chains through '${top.subject}' to`;
  if (top === leaf) link = "is issued by";
  else if (top.issuerKey === top.subjectKey) link = "chains to"; // a root the peer sent along
  return {
    status: "untrusted",
    reason: `${of} ${link} '${top.issuer}' which is not a trusted authority`,
  };
}

function datesProblem(path: ParsedCertificate[], now: Date, of: string): Judgement | undefined {
  const time = now.getTime();
  for (const [index, certificate] of path.entries()) {
    const whose = index === 0 ? of : `${of} chains to '${certificate.subject}' which`;
    if (time < certificate.notBefore.getTime()) {
      return {
        status: "not-yet-valid",
        reason: `${whose} is not valid before ${isoTime(certificate.notBefore)}`,
      };
    }
    if (time > certificate.notAfter.getTime()) {
      return { status: "expired", reason: `${whose} expired on ${isoTime(certificate.notAfter)}` };
    }
  }
  return undefined;
}

// RFC 6120 section 13.7.1.2 and RFC 6125 section 6: returns the identity that matched.
function matchIdentity(leaf: ParsedCertificate, domain: string): string | undefined {
  const wanted = canonicalDomain(domain);
  if (wanted === undefined) return undefined;
  for (const name of leaf.srvNames) {
    const lower = name.toLowerCase();
    for (const service of XMPP_SERVER_SERVICES) {
      if (lower.startsWith(service) && canonicalDomain(name.slice(service.length)) === wanted) {
        return `srv:${name}`;
      }
    }
  }
  for (const name of leaf.xmppAddrs) {
    if (canonicalDomain(name) === wanted) return `xmpp:${name}`;
  }
  for (const name of leaf.dnsNames) {
    if (dnsNameMatches(name, wanted)) return `dns:${name}`;
  }
  const hasSans = leaf.dnsNames.length + leaf.xmppAddrs.length + leaf.srvNames.length > 0;
  if (!hasSans) {
    for (const name of leaf.commonNames) {
      if (dnsNameMatches(name, wanted)) return `cn:${name}`;
    }
  }
  return undefined;
}

const XMPP_SERVER_SERVICES = ["_xmpp-server.", "_xmpps-server."];

// A DNS-ID matches exactly, or as `*.rest` for one more leftmost label; the wildcard must be
// the whole label and `rest` must have two labels at least, so `*.com` covers nothing.
function dnsNameMatches(pattern: string, wanted: string): boolean {
  if (pattern.startsWith("*.")) {
    const rest = canonicalDomain(pattern.slice(2));
    if (rest === undefined || !rest.includes(".") || rest.includes("*")) return false;
    const dot = wanted.indexOf(".");
    return dot > 0 && wanted.slice(dot + 1) === rest;
  }
  if (pattern.includes("*")) return false;
  return canonicalDomain(pattern) === wanted;
}

// Lower case, no trailing dot, IDN labels as A-labels; undefined for what is no domain name.
function canonicalDomain(name: string): string | undefined {
  let lower = name.toLowerCase();
  if (lower.endsWith(".")) lower = lower.slice(0, -1);
  if (lower === "" || /[\s@/:]/.test(lower)) return undefined;
  const ascii = domainToASCII(lower);
  return ascii === "" ? undefined : ascii;
}

function identitiesOf(certificate: ParsedCertificate): string[] {
  return [
    ...certificate.srvNames.map((name) => `srv:${name}`),
    ...certificate.xmppAddrs.map((name) => `xmpp:${name}`),
    ...certificate.dnsNames.map((name) => `dns:${name}`),
    ...certificate.commonNames.map((name) => `cn:${name}`),
  ];
}

const SERVER_AUTH = "1.3.6.1.5.5.7.3.1";
const CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";
const ANY_USAGE = "2.5.29.37.0";
const ACCEPTED_USAGES = new Set([SERVER_AUTH, CLIENT_AUTH, ANY_USAGE]);
const USAGE_NAMES: Record<string, string> = {
  [SERVER_AUTH]: "serverAuth",
  [CLIENT_AUTH]: "clientAuth",
  "1.3.6.1.5.5.7.3.3": "codeSigning",
  "1.3.6.1.5.5.7.3.4": "emailProtection",
  "1.3.6.1.5.5.7.3.8": "timeStamping",
  "1.3.6.1.5.5.7.3.9": "OCSPSigning",
};

// --- signatures ---

interface SignatureScheme {
  /** The node:crypto digest name, or null for EdDSA. */
  hash: string | null;
  /** RSASSA-PSS salt length, when the scheme is PSS. */
  pssSaltLength?: number;
}

const RSASSA_PSS = "1.2.840.113549.1.1.10";
// SHA-1 and MD5 signatures are not accepted on a certificate we verify (anchors are never
// verified, so old roots signed with SHA-1 still work).
const SIGNATURE_SCHEMES: Record<string, SignatureScheme> = {
  "1.2.840.113549.1.1.11": { hash: "sha256" },
  "1.2.840.113549.1.1.12": { hash: "sha384" },
  "1.2.840.113549.1.1.13": { hash: "sha512" },
  "1.2.840.10045.4.3.2": { hash: "sha256" },
  "1.2.840.10045.4.3.3": { hash: "sha384" },
  "1.2.840.10045.4.3.4": { hash: "sha512" },
  "1.3.101.112": { hash: null }, // Ed25519
  "1.3.101.113": { hash: null }, // Ed448
};
const PSS_HASHES: Record<string, string> = {
  "2.16.840.1.101.3.4.2.1": "sha256",
  "2.16.840.1.101.3.4.2.2": "sha384",
  "2.16.840.1.101.3.4.2.3": "sha512",
};

function signatureSchemeOf(certificate: ParsedCertificate): SignatureScheme | undefined {
  if (certificate.signatureAlgorithm !== RSASSA_PSS) {
    return SIGNATURE_SCHEMES[certificate.signatureAlgorithm];
  }
  // RSASSA-PSS-params: hashAlgorithm [0] (default SHA-1, not accepted), maskGenAlgorithm [1],
  // saltLength [2] (default 20).
  const der = certificate.signatureParameters;
  if (!der) return undefined;
  try {
    const parameters = readTlv(der, 0);
    let hash: string | undefined;
    let saltLength = 20;
    for (const field of readChildren(der, parameters)) {
      if (field.tag === 0xa0) {
        const algorithm = readTlv(der, field.start, field.end);
        const oid = readTlv(der, algorithm.start, algorithm.end);
        hash = PSS_HASHES[decodeOid(der.subarray(oid.start, oid.end))];
      } else if (field.tag === 0xa2) {
        saltLength = readInteger(der, readTlv(der, field.start, field.end));
      }
    }
    return hash ? { hash, pssSaltLength: saltLength } : undefined;
  } catch {
    return undefined;
  }
}

function signatureVerifies(
  child: ParsedCertificate,
  issuer: ParsedCertificate,
  scheme: SignatureScheme,
): boolean {
  if (issuer.publicKey === undefined) {
    try {
      issuer.publicKey = createPublicKey({
        key: Buffer.from(issuer.spki),
        format: "der",
        type: "spki",
      });
    } catch {
      issuer.publicKey = null;
    }
  }
  const key = issuer.publicKey;
  if (!key) return false;
  try {
    const verifyKey = scheme.pssSaltLength === undefined
      ? key
      : { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: scheme.pssSaltLength };
    return verifySignature(scheme.hash, child.tbs, verifyKey, child.signature);
  } catch {
    return false;
  }
}

// --- parsing ---

const OID_BASIC_CONSTRAINTS = "2.5.29.19";
const OID_KEY_USAGE = "2.5.29.15";
const OID_EXTENDED_KEY_USAGE = "2.5.29.37";
const OID_SUBJECT_ALT_NAME = "2.5.29.17";
const OID_XMPP_ADDR = "1.3.6.1.5.5.7.8.5";
const OID_SRV_NAME = "1.3.6.1.5.5.7.8.7";
const OID_COMMON_NAME = "2.5.4.3";

const ATTRIBUTE_NAMES: Record<string, string> = {
  [OID_COMMON_NAME]: "CN",
  "2.5.4.4": "SN",
  "2.5.4.5": "serialNumber",
  "2.5.4.6": "C",
  "2.5.4.7": "L",
  "2.5.4.8": "ST",
  "2.5.4.9": "street",
  "2.5.4.10": "O",
  "2.5.4.11": "OU",
  "2.5.4.12": "title",
  "2.5.4.42": "GN",
  "2.5.4.97": "organizationIdentifier",
  "0.9.2342.19200300.100.1.1": "UID",
  "0.9.2342.19200300.100.1.25": "DC",
  "1.2.840.113549.1.9.1": "emailAddress",
};

let rootsCache: ParsedCertificate[] | undefined;

function bundledRoots(): ParsedCertificate[] {
  if (!rootsCache) {
    rootsCache = [];
    for (const pem of rootCertificates) {
      for (const der of pemCertificates(pem)) {
        try {
          rootsCache.push(parseCertificate(der));
        } catch {
          // unusable as an anchor
        }
      }
    }
  }
  return rootsCache;
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g;

// The DER of each PEM CERTIFICATE block; a block that is not base64 is skipped, or with
// `strict` reported as an error.
function pemCertificates(text: string, strict = false): Uint8Array[] {
  const ders: Uint8Array[] = [];
  let index = 0;
  for (const match of text.matchAll(PEM_CERTIFICATE)) {
    index++;
    const base64 = match[1].replace(/\s+/g, "");
    try {
      if (base64 === "" || !/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) throw new Error("not base64");
      ders.push(Uint8Array.from(atob(base64), (c) => c.charCodeAt(0)));
    } catch {
      if (strict) throw new Error(`PEM block ${index} is not valid base64`);
    }
  }
  return ders;
}

function fingerprintOf(der: Uint8Array): string {
  const hex = createHash("sha256").update(der).digest("hex").toUpperCase();
  return hex.match(/../g)!.join(":");
}

function expect(element: Tlv | undefined, tag: number, what: string): Tlv {
  if (!element || element.tag !== tag) throw new Error(`Expected ${what}`);
  return element;
}

// RFC 5280 section 4.1: everything a path and identity check needs. Throws on malformed DER.
function parseCertificate(der: Uint8Array): ParsedCertificate {
  const outer = expect(readTlv(der, 0), 0x30, "a certificate SEQUENCE");
  if (outer.end !== der.length) throw new Error("Unexpected bytes after the certificate");
  const parts = readChildren(der, outer);
  if (parts.length !== 3) throw new Error("Expected three certificate fields");
  const tbs = expect(parts[0], 0x30, "a tbsCertificate SEQUENCE");
  const algorithm = expect(parts[1], 0x30, "a signatureAlgorithm SEQUENCE");
  const signature = expect(parts[2], 0x03, "a signature BIT STRING");
  if (der[signature.start] !== 0 || signature.end - signature.start < 2) {
    throw new Error("Expected a signature of whole bytes");
  }

  const fields = readChildren(der, tbs);
  let index = 0;
  let version = 1;
  if (fields[0]?.tag === 0xa0) {
    version = readInteger(der, readTlv(der, fields[0].start, fields[0].end)) + 1;
    index++;
  }
  expect(fields[index++], 0x02, "a serial number");
  const innerAlgorithm = expect(fields[index++], 0x30, "a signature algorithm");
  const issuer = expect(fields[index++], 0x30, "an issuer name");
  const validity = expect(fields[index++], 0x30, "a validity period");
  const subject = expect(fields[index++], 0x30, "a subject name");
  const spki = expect(fields[index++], 0x30, "a subject public key");
  if (
    !bytesEqual(der.subarray(innerAlgorithm.start, innerAlgorithm.end), bytesOf(der, algorithm))
  ) {
    throw new Error("Signature algorithms of the certificate and its contents differ");
  }
  const algorithmParts = readChildren(der, algorithm);
  const algorithmOid = expect(algorithmParts[0], 0x06, "a signature algorithm OID");
  const times = readChildren(der, validity);
  if (times.length !== 2) throw new Error("Expected notBefore and notAfter");

  const subjectName = parseName(der, subject);
  const issuerName = parseName(der, issuer);
  const parsed: ParsedCertificate = {
    fingerprint256: fingerprintOf(der),
    version,
    tbs: der.subarray(parts[0].offset, tbs.end),
    signatureAlgorithm: decodeOid(bytesOf(der, algorithmOid)),
    signatureParameters: algorithmParts[1]
      ? der.subarray(algorithmParts[1].offset, algorithmParts[1].end)
      : undefined,
    signature: der.subarray(signature.start + 1, signature.end),
    subject: subjectName.text,
    subjectKey: nameKey(subjectName.text),
    issuer: issuerName.text,
    issuerKey: nameKey(issuerName.text),
    notBefore: decodeTime(der, times[0]),
    notAfter: decodeTime(der, times[1]),
    spki: der.subarray(spki.offset, spki.end),
    ca: false,
    dnsNames: [],
    xmppAddrs: [],
    srvNames: [],
    commonNames: subjectName.commonNames,
  };

  for (; index < fields.length; index++) {
    if (fields[index].tag !== 0xa3) continue;
    const list = expect(readTlv(der, fields[index].start, fields[index].end), 0x30, "extensions");
    const seen = new Set<string>();
    for (const extension of readChildren(der, list)) {
      const [idElement, second, third] = readChildren(der, expect(extension, 0x30, "an extension"));
      const id = decodeOid(bytesOf(der, expect(idElement, 0x06, "an extension OID")));
      if (seen.has(id)) throw new Error(`Duplicate extension ${id}`);
      seen.add(id);
      const value = expect(second?.tag === 0x01 ? third : second, 0x04, "an extension value");
      parseExtension(der, id, value, parsed);
    }
  }
  return parsed;
}

function parseExtension(der: Uint8Array, id: string, value: Tlv, parsed: ParsedCertificate): void {
  switch (id) {
    case OID_BASIC_CONSTRAINTS: {
      const sequence = expect(readTlv(der, value.start, value.end), 0x30, "basicConstraints");
      for (const field of readChildren(der, sequence)) {
        if (field.tag === 0x01) parsed.ca = field.end > field.start && der[field.start] !== 0;
        else if (field.tag === 0x02) parsed.pathLength = readInteger(der, field);
      }
      break;
    }
    case OID_KEY_USAGE: {
      const bits = expect(readTlv(der, value.start, value.end), 0x03, "keyUsage");
      parsed.keyCertSign = bits.end - bits.start >= 2 && (der[bits.start + 1] & 0x04) !== 0;
      break;
    }
    case OID_EXTENDED_KEY_USAGE: {
      const sequence = expect(readTlv(der, value.start, value.end), 0x30, "extendedKeyUsage");
      parsed.extendedKeyUsage = readChildren(der, sequence).map((oid) =>
        decodeOid(bytesOf(der, expect(oid, 0x06, "a key purpose OID")))
      );
      break;
    }
    case OID_SUBJECT_ALT_NAME: {
      const names = expect(readTlv(der, value.start, value.end), 0x30, "subjectAltName");
      for (const name of readChildren(der, names)) parseGeneralName(der, name, parsed);
      break;
    }
  }
}

// GeneralName (RFC 5280 section 4.2.1.6): dNSName [2] and otherName [0] are what XMPP uses.
function parseGeneralName(der: Uint8Array, name: Tlv, parsed: ParsedCertificate): void {
  if (name.tag === 0x82) {
    const value = decodeString(der, name, 0x16);
    if (value === undefined) throw new Error("Expected an IA5String dNSName");
    parsed.dnsNames.push(value);
  } else if (name.tag === 0xa0) {
    const [typeId, wrapped] = readChildren(der, name);
    const type = decodeOid(bytesOf(der, expect(typeId, 0x06, "an otherName type")));
    if (type !== OID_XMPP_ADDR && type !== OID_SRV_NAME) return;
    const inner = readTlv(der, expect(wrapped, 0xa0, "an otherName value").start, wrapped.end);
    const value = decodeString(der, inner);
    if (value === undefined) throw new Error(`Expected a string in otherName ${type}`);
    (type === OID_XMPP_ADDR ? parsed.xmppAddrs : parsed.srvNames).push(value);
  }
}

interface ParsedName {
  text: string;
  commonNames: string[];
}

// Name ::= SEQUENCE OF RelativeDistinguishedName (SET OF AttributeTypeAndValue), shown as
// "CN=x, O=y" in certificate order with RFC 4514 escaping; multi-valued RDNs joined with "+".
function parseName(der: Uint8Array, name: Tlv): ParsedName {
  const rdns: string[] = [];
  const commonNames: string[] = [];
  for (const rdn of readChildren(der, name)) {
    const attributes: string[] = [];
    for (const attribute of readChildren(der, expect(rdn, 0x31, "a name SET"))) {
      const [typeId, valueElement] = readChildren(der, expect(attribute, 0x30, "an attribute"));
      const type = decodeOid(bytesOf(der, expect(typeId, 0x06, "an attribute type")));
      if (!valueElement) throw new Error("Expected an attribute value");
      const value = decodeString(der, valueElement);
      if (type === OID_COMMON_NAME && value !== undefined) commonNames.push(value);
      const shown = value === undefined
        ? "#" + Buffer.from(der.subarray(valueElement.offset, valueElement.end))
          .toString("hex")
        : escapeNameValue(value);
      attributes.push(`${ATTRIBUTE_NAMES[type] ?? type}=${shown}`);
    }
    rdns.push(attributes.join("+"));
  }
  return { text: rdns.join(", "), commonNames };
}

function escapeNameValue(value: string): string {
  return value
    .replace(/[\\,+"<>;=]/g, (c) => `\\${c}`)
    .replace(/^[#\s]/, (c) => `\\${c}`)
    .replace(/\s$/, (c) => `\\${c}`);
}

// Names match when they read the same, ignoring case and runs of white space (a cheap stand-in
// for RFC 5280 section 7.1); the signature check decides anyway.
function nameKey(text: string): string {
  return text.toLowerCase().replace(/\s+/g, " ");
}

function readInteger(der: Uint8Array, element: Tlv): number {
  expect(element, 0x02, "an INTEGER");
  const length = element.end - element.start;
  if (length === 0 || length > 4 || der[element.start] & 0x80) {
    throw new Error("Expected a small non-negative INTEGER");
  }
  let value = 0;
  for (let i = element.start; i < element.end; i++) value = value * 256 + der[i];
  return value;
}

function bytesOf(der: Uint8Array, element: Tlv): Uint8Array {
  return der.subarray(element.start, element.end);
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

function isoTime(date: Date): string {
  return date.toISOString().replace(".000Z", "Z");
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
