// `lilt check certs`: the certificate each host and component would present, judged the way a
// client or remote server will: present and readable, key matching, chain to a trusted root,
// names covering the domain, time left. Each problem says what is wrong and how to fix it.

import { X509Certificate } from "node:crypto";
import type { Config } from "../config.ts";
import {
  certificateMatchesName,
  describeCertificate,
  type LoadedCertificate,
  storedCertificatePaths,
} from "../net/certificates.ts";
import { loadTrustStore, type TrustStore, verifyPeerCertificate } from "../net/peer_certificate.ts";
import { federationConfigured } from "../s2s/policy.ts";
import type { Problem } from "./problem.ts";

/** Below this many days left, a certificate is a warning (expired is an error). */
export const CERT_EXPIRY_WARNING_DAYS = 14;

const DAY_MS = 24 * 60 * 60 * 1000;
const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;
const RENEW = "renew it (e.g. certbot renew) and run 'lilt cert import DIR'";

/** Options for {@link checkCertificates}. */
export interface CheckCertificatesOptions {
  /** The moment validity is judged at. Default now. */
  now?: Date;
  /**
   * The roots a chain must lead to. Default: the Mozilla roots bundled with Deno, the system
   * bundle, and the PEM file named by `$SSL_CERT_FILE` when set.
   */
  trust?: TrustStore;
}

interface Judged {
  domain: string;
  cert: LoadedCertificate;
}

/**
 * Checks the certificate of every host and component of `config` as the server would load it
 * (the `certificate`/`key` options, else `data_dir/certs/DOMAIN.crt` and `.key`; a component
 * without its own gets its parent host's). Never throws: what cannot be read is a problem.
 *
 * @example
 * ```ts
 * for (const p of await checkCertificates(config)) console.error(`certs: ${p.level}: ${p.message}`);
 * ```
 */
export async function checkCertificates(
  config: Config,
  options: CheckCertificatesOptions = {},
): Promise<Problem[]> {
  const now = options.now ?? new Date();
  const trust = options.trust ?? await defaultTrust();
  const problems: Problem[] = [];
  const hostCerts: Judged[] = [];
  // Hosts that get a generated certificate at start (already warned about): it names the host
  // and its wildcard, so it covers their direct subdomains.
  const generated: string[] = [];
  for (const host of config.hosts) {
    const cert = await checkOne(config, host.domain, "host", { now, trust, problems });
    if (cert) hostCerts.push({ domain: host.domain, cert });
    else if (!hasOwnFiles(config, host.domain) && !await storedExists(config, host.domain)) {
      generated.push(host.domain);
    }
  }
  // A component's name matters to remote servers (s2s) and to HTTPS clients (upload URLs).
  const needed = federationConfigured(config) ||
    config.get<string[]>("https_interfaces").length > 0;
  for (const component of config.components) {
    const domain = component.domain;
    const own = await checkOne(config, domain, "component", { now, trust, problems });
    if (own !== undefined) continue;
    if (hasOwnFiles(config, domain)) continue; // its files are broken: reported above
    const covering = hostCerts.find((h) => certificateMatchesName(h.cert, domain));
    if (covering) continue;
    if (generated.some((h) => certificateMatchesName({ names: [h, `*.${h}`] }, domain))) continue;
    const parent = hostCerts.find((h) => domain.endsWith(`.${h.domain}`)) ?? hostCerts[0];
    const what = parent
      ? `the component gets ${parent.domain}'s certificate, which names ${
        namesOf(parent.cert)
      }, not ${domain}`
      : "no certificate covers the component";
    problems.push({
      level: needed ? "error" : "warning",
      message: `${domain}: ${what}: add ${domain} (or a wildcard for it) to a certificate ` +
        "and run 'lilt cert import DIR'" +
        (needed ? "" : " (it matters once federation or HTTPS is on)"),
    });
  }
  return problems;
}

interface CheckContext {
  now: Date;
  trust: TrustStore;
  problems: Problem[];
}

/**
 * Checks the files one domain would use; returns the certificate when it loads (problems
 * with it are still reported), undefined when there are no files (a component) or they fail.
 */
async function checkOne(
  config: Config,
  domain: string,
  kind: "host" | "component",
  { now, trust, problems }: CheckContext,
): Promise<LoadedCertificate | undefined> {
  const report = (level: Problem["level"], text: string) =>
    problems.push({ level, message: `${domain}: ${text}` });
  const configured = hasOwnFiles(config, domain);
  let certificateFile: string;
  let keyFile: string;
  if (configured) {
    certificateFile = config.hostOption<string>(domain, "certificate") ?? "";
    keyFile = config.hostOption<string>(domain, "key") ?? "";
    if (certificateFile === "" || keyFile === "") {
      report(
        "error",
        `only ${certificateFile === "" ? "key" : "certificate"} is set: set both certificate ` +
          "and key, or neither to use data_dir/certs",
      );
      return undefined;
    }
  } else {
    ({ certificateFile, keyFile } = storedCertificatePaths(config.dataDir, domain));
    const present = [await exists(certificateFile), await exists(keyFile)];
    if (!present[0] && !present[1]) {
      if (kind === "host") {
        report(
          "warning",
          "no certificate: Lilt generates a self-signed one at start, which clients do not " +
            "trust: run 'lilt cert import DIR' (e.g. /etc/letsencrypt) or set certificate and key",
        );
      }
      return undefined;
    }
    if (!present[0] || !present[1]) {
      const missing = present[0] ? keyFile : certificateFile;
      report(
        "error",
        `'${missing}' is missing beside '${present[0] ? certificateFile : keyFile}': ` +
          "run 'lilt cert import DIR' again (at start Lilt would replace the pair with a " +
          "self-signed one)",
      );
      return undefined;
    }
  }
  const setting = configured ? "fix the certificate/key options" : "run 'lilt cert import DIR'";
  const certPem = await readText(certificateFile, "certificate", report, setting);
  const keyPem = await readText(keyFile, "key", report, setting);
  if (certPem === undefined || keyPem === undefined) return undefined;
  let cert: LoadedCertificate;
  try {
    cert = describeCertificate(domain, { certPem, keyPem, certificateFile, keyFile });
  } catch (error) {
    report("error", `${lowerFirst((error as Error).message)}: ${setting}`);
    return undefined;
  }
  await checkKeyMode(keyFile, report);
  if (!certificateMatchesName(cert, domain)) {
    report(
      "error",
      `certificate '${certificateFile}' names ${namesOf(cert)}, not ${domain}: get one that ` +
        `includes ${domain} (certbot -d ${domain}) and run 'lilt cert import DIR'`,
    );
  }
  const leaf = new X509Certificate(cert.der);
  const left = cert.notAfter.getTime() - now.getTime();
  const until = cert.notAfter.toISOString().slice(0, 10);
  if (new Date(leaf.validFrom) > now) {
    report(
      "error",
      `certificate '${certificateFile}' is not valid before ${leaf.validFrom}: check the ` +
        "clock, or import the previous certificate",
    );
  } else if (left <= 0) {
    report("error", `certificate '${certificateFile}' expired on ${until}: ${RENEW}`);
  } else if (left < CERT_EXPIRY_WARNING_DAYS * DAY_MS) {
    const days = Math.ceil(left / DAY_MS);
    report(
      "warning",
      `certificate '${certificateFile}' expires on ${until} (in ${days} day${
        days === 1 ? "" : "s"
      }): ${RENEW}`,
    );
  }
  checkChain(cert, domain, { now, trust, report });
  return cert;
}

function checkChain(
  cert: LoadedCertificate,
  domain: string,
  { now, trust, report }: {
    now: Date;
    trust: TrustStore;
    report: (level: Problem["level"], text: string) => void;
  },
): void {
  const chain = (cert.certPem.match(PEM_CERTIFICATE) ?? []).map((pem) =>
    new Uint8Array(new X509Certificate(pem).raw)
  );
  const file = cert.certificateFile;
  // Judged at a moment the leaf is valid, so only trust and usage are reported here.
  const verdict = verifyPeerCertificate(chain, domain, trust, validMoment(cert, now));
  if (verdict.status === "self-signed") {
    report(
      "warning",
      `certificate '${file}' is self-signed: clients and remote servers do not trust it; get ` +
        "one from a CA (e.g. Let's Encrypt with certbot) and run 'lilt cert import DIR'",
    );
  } else if (verdict.status === "untrusted") {
    report(
      "warning",
      `certificate '${file}' does not chain to a trusted root (${verdict.reason}): use the ` +
        "full chain (certbot's fullchain.pem, not cert.pem), or the CA is private",
    );
  } else if (verdict.status === "wrong-usage") {
    report(
      "warning",
      `certificate '${file}' is not meant for servers (${verdict.reason}): get a TLS server ` +
        "certificate",
    );
  }
}

// Now when the leaf is valid now, else a moment inside its validity, so an expired certificate
// is reported once (as expired) rather than again as untrusted.
function validMoment(cert: LoadedCertificate, now: Date): Date {
  if (cert.notAfter.getTime() > now.getTime()) {
    const from = new Date(new X509Certificate(cert.der).validFrom);
    if (from <= now) return now;
    return new Date(from.getTime() + 1000);
  }
  return new Date(cert.notAfter.getTime() - 1000);
}

function hasOwnFiles(config: Config, domain: string): boolean {
  return (config.hostOption<string>(domain, "certificate") ?? "") !== "" ||
    (config.hostOption<string>(domain, "key") ?? "") !== "";
}

async function storedExists(config: Config, domain: string): Promise<boolean> {
  const { certificateFile, keyFile } = storedCertificatePaths(config.dataDir, domain);
  return await exists(certificateFile) || await exists(keyFile);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

async function readText(
  path: string,
  what: "certificate" | "key",
  report: (level: Problem["level"], text: string) => void,
  setting: string,
): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      report("error", `${what} file '${path}' does not exist: ${setting}`);
    } else if (error instanceof Deno.errors.PermissionDenied) {
      report(
        "error",
        `${what} file '${path}' cannot be read (permission denied): run the check as the ` +
          "server's user, and make the file readable by that user",
      );
    } else {
      report("error", `${what} file '${path}' cannot be read: ${(error as Error).message}`);
    }
    return undefined;
  }
}

async function checkKeyMode(
  keyFile: string,
  report: (level: Problem["level"], text: string) => void,
): Promise<void> {
  try {
    const mode = (await Deno.stat(keyFile)).mode;
    if (mode !== null && (mode & 0o077) !== 0) {
      const octal = (mode & 0o777).toString(8).padStart(4, "0");
      report(
        "warning",
        `key file '${keyFile}' can be read by other users (mode ${octal}): chmod 600 ${keyFile}`,
      );
    }
  } catch {
    // it was just read; a race with a rename is not worth a line
  }
}

async function defaultTrust(): Promise<TrustStore> {
  const extra = Deno.env.get("SSL_CERT_FILE");
  try {
    return await loadTrustStore({ caFiles: extra ? [extra] : [], system: true });
  } catch {
    return await loadTrustStore({ caFiles: [], system: true });
  }
}

function namesOf(cert: LoadedCertificate): string {
  return cert.names.length > 0 ? cert.names.join(", ") : "no DNS names";
}

function lowerFirst(text: string): string {
  return text.charAt(0).toLowerCase() + text.slice(1);
}
