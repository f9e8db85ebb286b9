// `lilt cert import DIR...`: finds certificates for the configured hosts and components in a
// certbot tree (live/DOMAIN/fullchain.pem, privkey.pem) or any directory of PEM files, and copies
// them to data_dir/certs, where the server reads a host's certificate when none is configured.

import { createPrivateKey, createPublicKey, X509Certificate } from "node:crypto";
import { dirname, join } from "node:path";
import type { Config } from "./config.ts";
import {
  certificateMatchesName,
  describeCertificate,
  storedCertificatePaths,
  writeFileAtomically,
} from "./net/certificates.ts";

/** Options for {@link importCertificates}. */
export interface CertImportOptions {
  /** The moment validity is judged at. Default now. */
  now?: Date;
}

/** What became of one host or component. */
export interface CertImportOutcome {
  /** The host or component. */
  domain: string;
  /** `host` or `component`. */
  kind: "host" | "component";
  /**
   * `imported` (files written), `unchanged` (the same pair was there already) or `missing`
   * (nothing found covers it with its key and is valid now).
   */
  status: "imported" | "unchanged" | "missing";
  /** The certificate file the pair came from. */
  source?: string;
  /** The key file it came from. */
  sourceKey?: string;
  /** The leaf's DNS names. */
  names?: string[];
  /** End of the leaf's validity. */
  notAfter?: Date;
  /** Where it was written: `<data_dir>/certs/<domain>.crt` (the key beside it, `.key`). */
  target?: string;
  /**
   * The `certificate` option configured for this domain, when there is one: the server uses
   * that file, not the imported copy.
   */
  configured?: string;
  /** Why nothing was imported (certificates that name the domain but were unusable). */
  reason?: string;
}

/** The outcome of {@link importCertificates}. */
export interface CertImportResult {
  /** One entry per host, then per component, in configuration order. */
  outcomes: CertImportOutcome[];
  /** Files that looked like PEM but could not be used, with why (for the operator). */
  skipped: string[];
}

interface Leaf {
  file: string;
  x509: X509Certificate;
  /** The chain as read (leaf first), PEM blocks. */
  chain: string[];
  names: string[];
  spki: string;
}

interface KeyFound {
  file: string;
  pem: string;
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]+?-----END \1-----/g;
const KEY_LABELS = new Set(["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"]);
const MAX_DEPTH = 6;
const MAX_FILE_BYTES = 1024 * 1024;
const MAX_CHAIN = 5;
const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * Looks through `directories` for certificates covering each configured host and component,
 * and copies the best one (valid now, its key found beside it or anywhere under the
 * directories, the latest expiry) to `<data_dir>/certs/<domain>.crt` and `.key` (mode 0600).
 * Certificates are matched by their subjectAltName DNS names, wildcards included, and keys to
 * certificates by their public key; a leaf without its intermediates gets them from the other
 * files when they are there (certbot's cert.pem and chain.pem). Under a certbot tree only
 * `live/` is read. When run as root, the files written are given to the owner of data_dir,
 * so a server running as its own user can read them. Throws when a directory cannot be read.
 *
 * @example
 * ```ts
 * const { outcomes } = await importCertificates(config, ["/etc/letsencrypt"]);
 * for (const o of outcomes) console.log(o.domain, o.status);
 * ```
 */
export async function importCertificates(
  config: Config,
  directories: string[],
  options: CertImportOptions = {},
): Promise<CertImportResult> {
  const now = options.now ?? new Date();
  await checkDataDir(config.dataDir);
  const skipped: string[] = [];
  const leaves: Leaf[] = [];
  const others: X509Certificate[] = [];
  const keys = new Map<string, KeyFound>();
  for (const directory of directories) {
    const root = await certbotLive(directory) ?? directory;
    for await (const file of pemFiles(root, 0)) {
      readPemFile(file.path, file.text, { leaves, others, keys, skipped });
    }
  }
  const outcomes: CertImportOutcome[] = [];
  const targets = [
    ...config.hosts.map((h) => ({ domain: h.domain, kind: "host" as const })),
    ...config.components.map((c) => ({ domain: c.domain, kind: "component" as const })),
  ];
  for (const { domain, kind } of targets) {
    const configured = config.hostOption<string>(domain, "certificate") || undefined;
    const naming = leaves.filter((leaf) => certificateMatchesName(leaf, domain));
    const usable = naming.filter((leaf) =>
      keys.has(leaf.spki) && new Date(leaf.x509.validFrom) <= now &&
      new Date(leaf.x509.validTo) > now
    );
    if (usable.length === 0) {
      outcomes.push({ domain, kind, status: "missing", configured, reason: whyNot(naming, keys) });
      continue;
    }
    // The latest expiry; among copies of one leaf, the file with the most of its chain.
    const best = usable.reduce((a, b) => {
      const later = new Date(b.x509.validTo).getTime() - new Date(a.x509.validTo).getTime();
      return later > 0 || (later === 0 && b.chain.length > a.chain.length) ? b : a;
    });
    const key = keys.get(best.spki)!;
    const certPem = completeChain(best, [...others, ...leaves.map((l) => l.x509)]);
    const keyPem = key.pem.endsWith("\n") ? key.pem : key.pem + "\n";
    // Parsed and matched exactly as the server will read it.
    const loaded = describeCertificate(domain, {
      certPem,
      keyPem,
      certificateFile: best.file,
      keyFile: key.file,
    });
    const paths = storedCertificatePaths(config.dataDir, domain);
    const unchanged = await sameText(paths.certificateFile, certPem) &&
      await sameText(paths.keyFile, keyPem);
    if (!unchanged) await writePair(config.dataDir, paths, certPem, keyPem);
    outcomes.push({
      domain,
      kind,
      status: unchanged ? "unchanged" : "imported",
      source: best.file,
      sourceKey: key.file,
      names: loaded.names,
      notAfter: loaded.notAfter,
      target: paths.certificateFile,
      configured,
    });
  }
  return { outcomes, skipped };
}

/** One line per outcome, as `lilt cert import` prints them. */
export function describeOutcome(outcome: CertImportOutcome, now = new Date()): string {
  const { domain } = outcome;
  if (outcome.status === "missing") {
    return `${domain}: not covered: ${outcome.reason}`;
  }
  const days = Math.floor((outcome.notAfter!.getTime() - now.getTime()) / DAY_MS);
  const verb = outcome.status === "imported" ? "imported" : "already up to date from";
  let line = `${domain}: ${verb} ${outcome.source} (names ${outcome.names!.join(", ")}; ` +
    `valid until ${outcome.notAfter!.toISOString().slice(0, 10)}, ${days} days left) ` +
    `as ${outcome.target}`;
  if (outcome.configured) {
    line += `; but '${outcome.configured}' is configured as its certificate and wins: remove ` +
      "certificate and key from the configuration to use the imported one";
  }
  return line;
}

// A certbot tree (or its live/ directory): read live/ only, since archive/ keeps every
// earlier certificate and keys/ every earlier key.
async function certbotLive(directory: string): Promise<string | undefined> {
  try {
    const info = await Deno.stat(join(directory, "live"));
    return info.isDirectory ? join(directory, "live") : undefined;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      await Deno.stat(directory).catch((cause) => {
        throw new Error(`Cannot read directory '${directory}': ${messageOf(cause)}`);
      });
      return undefined;
    }
    throw new Error(`Cannot read directory '${directory}': ${messageOf(error)}`);
  }
}

async function* pemFiles(
  directory: string,
  depth: number,
): AsyncGenerator<{ path: string; text: string }> {
  let entries: Deno.DirEntry[];
  try {
    entries = await Array.fromAsync(Deno.readDir(directory));
  } catch (error) {
    if (depth === 0) {
      throw new Error(`Cannot read directory '${directory}': ${messageOf(error)}`);
    }
    return; // a subdirectory we may not read holds nothing for us
  }
  entries.sort((a, b) => a.name.localeCompare(b.name));
  for (const entry of entries) {
    const path = join(directory, entry.name);
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(path); // follows certbot's symlinks into archive/
    } catch {
      continue;
    }
    if (info.isDirectory) {
      if (depth < MAX_DEPTH) yield* pemFiles(path, depth + 1);
    } else if (info.isFile && info.size <= MAX_FILE_BYTES) {
      let text: string;
      try {
        text = await Deno.readTextFile(path);
      } catch {
        continue;
      }
      if (text.includes("-----BEGIN ")) yield { path, text };
    }
  }
}

function readPemFile(
  path: string,
  text: string,
  found: {
    leaves: Leaf[];
    others: X509Certificate[];
    keys: Map<string, KeyFound>;
    skipped: string[];
  },
): void {
  const certificates: { pem: string; x509: X509Certificate }[] = [];
  for (const match of text.matchAll(PEM_BLOCK)) {
    const [pem, label] = match;
    if (label === "CERTIFICATE") {
      try {
        certificates.push({ pem: pem + "\n", x509: new X509Certificate(pem) });
      } catch (error) {
        found.skipped.push(`${path}: a certificate cannot be parsed (${messageOf(error)})`);
      }
    } else if (KEY_LABELS.has(label)) {
      try {
        const spki = spkiOf(createPublicKey(createPrivateKey(pem)));
        if (!found.keys.has(spki)) found.keys.set(spki, { file: path, pem });
      } catch (error) {
        found.skipped.push(`${path}: a private key cannot be parsed (${messageOf(error)})`);
      }
    } else if (label === "ENCRYPTED PRIVATE KEY") {
      found.skipped.push(`${path}: the private key is encrypted; Lilt needs it unencrypted`);
    }
  }
  if (certificates.length === 0) return;
  const [first, ...rest] = certificates;
  found.others.push(...rest.map((c) => c.x509));
  if (first.x509.ca) {
    found.others.push(first.x509); // chain.pem: intermediates only
    return;
  }
  const loaded = describeNames(first.x509);
  found.leaves.push({
    file: path,
    x509: first.x509,
    chain: certificates.map((c) => c.pem),
    names: loaded,
    spki: spkiOf(first.x509.publicKey),
  });
}

function describeNames(x509: X509Certificate): string[] {
  const names: string[] = [];
  for (const entry of (x509.subjectAltName ?? "").split(/,\s*/)) {
    if (entry.startsWith("DNS:")) names.push(entry.slice(4).toLowerCase().replace(/\.$/, ""));
  }
  return names;
}

function spkiOf(key: ReturnType<typeof createPublicKey>): string {
  return Array.from(
    new Uint8Array(key.export({ type: "spki", format: "der" })),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
}

// The leaf's chain as read, followed by issuers found elsewhere when the file stops short of
// a self-signed root (certbot's cert.pem; chain.pem holds the rest). Roots are not added.
function completeChain(leaf: Leaf, pool: X509Certificate[]): string {
  const chain = [...leaf.chain];
  let last = new X509Certificate(chain[chain.length - 1]);
  while (chain.length < MAX_CHAIN && last.subject !== last.issuer) {
    const issuer = pool.find((c) =>
      c.subject === last.issuer && c.subject !== c.issuer && verifies(last, c)
    );
    if (!issuer) break;
    const pem = issuer.toString();
    if (chain.includes(pem) || chain.includes(pem + "\n")) break;
    chain.push(pem.endsWith("\n") ? pem : pem + "\n");
    last = issuer;
  }
  return chain.join("");
}

function verifies(certificate: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return certificate.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

function whyNot(naming: Leaf[], keys: Map<string, KeyFound>): string {
  if (naming.length === 0) return "no certificate found names it";
  const files = [...new Set(naming.map((l) => l.file))].join(", ");
  if (naming.every((l) => !keys.has(l.spki))) {
    return `no private key found for the certificate(s) that name it (${files})`;
  }
  return `the certificate(s) that name it are expired or not yet valid (${files})`;
}

async function sameText(path: string, text: string): Promise<boolean> {
  try {
    return await Deno.readTextFile(path) === text;
  } catch {
    return false;
  }
}

// Root would create data_dir as its own, which the server's user then could not use.
async function checkDataDir(dataDir: string): Promise<void> {
  if (Deno.uid() !== 0) return;
  try {
    await Deno.stat(dataDir);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    throw new Error(
      `The data directory '${dataDir}' does not exist: create it owned by the server's user ` +
        "(or start Lilt once) before importing as root",
    );
  }
}

// Written as the server's user would have: when root runs the import (a certbot deploy hook),
// the files go to data_dir's owner, or the server could not read its own key.
async function writePair(
  dataDir: string,
  paths: { certificateFile: string; keyFile: string },
  certPem: string,
  keyPem: string,
): Promise<void> {
  const directory = dirname(paths.certificateFile);
  await Deno.mkdir(directory, { recursive: true, mode: 0o700 });
  await writeFileAtomically(paths.keyFile, keyPem, 0o600);
  await writeFileAtomically(paths.certificateFile, certPem, 0o644);
  if (Deno.uid() !== 0) return;
  const owner = await Deno.stat(dataDir);
  if (owner.uid === null || owner.uid === 0) return;
  for (const path of [directory, paths.keyFile, paths.certificateFile]) {
    await Deno.chown(path, owner.uid, owner.gid);
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
