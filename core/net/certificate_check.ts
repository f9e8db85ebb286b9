// `lilt check config` looks at each configured certificate the way a start would, and further:
// a pair that loads but does not cover its host, or expires soon, is found before clients do.

import { certificateMatchesName, loadOrCreateCertificate } from "./certificates.ts";

/** How long before expiry a certificate is reported (a warning; expired is an error). */
export const EXPIRY_WARNING_DAYS = 30;

const DAY_MS = 24 * 60 * 60 * 1000;

/** One thing found about a host's configured certificate. */
export interface CertificateFinding {
  /** Errors would stop a start or break clients; warnings need attention soon. */
  severity: "error" | "warning";
  /** Starts in lower case, names the file and the host. */
  message: string;
}

/** The files a host is configured with (empty strings when none). */
export interface ConfiguredCertificate {
  /** PEM certificate chain file. */
  certificate: string;
  /** PEM private key file. */
  key: string;
}

/** Options for {@link checkHostCertificate}. */
export interface CheckCertificateOptions {
  /** The moment to judge validity at. Default now. */
  now?: Date;
}

/**
 * Checks the certificate configured for `host`: both files exist and are readable, parse, the
 * key matches the leaf, the leaf covers the host and is valid now; expiry within
 * {@link EXPIRY_WARNING_DAYS} days and a self-signed leaf are warnings. A host with no files
 * configured gives nothing (a self-signed certificate is generated at start).
 *
 * @example
 * ```ts
 * for (const f of await checkHostCertificate("example.com", files)) console.error(f.message);
 * ```
 */
export async function checkHostCertificate(
  host: string,
  files: ConfiguredCertificate,
  options: CheckCertificateOptions = {},
): Promise<CertificateFinding[]> {
  if (files.certificate === "" && files.key === "") return [];
  let loaded;
  try {
    // Reads, parses and matches the pair exactly as the server does at start.
    loaded = await loadOrCreateCertificate(host, { ...files, dataDir: "" });
  } catch (error) {
    return [{ severity: "error", message: lowerFirst((error as Error).message) }];
  }
  const findings: CertificateFinding[] = [];
  const file = files.certificate;
  if (!certificateMatchesName(loaded, host)) {
    const names = loaded.names.length > 0 ? loaded.names.join(", ") : "no DNS names";
    findings.push({
      severity: "error",
      message: `certificate file '${file}' does not cover host '${host}': expected it among ` +
        `its names, found ${names}`,
    });
  }
  const now = options.now ?? new Date();
  const left = loaded.notAfter.getTime() - now.getTime();
  const until = loaded.notAfter.toISOString();
  if (left <= 0) {
    findings.push({
      severity: "error",
      message: `certificate file '${file}' for '${host}' expired on ${until}`,
    });
  } else if (left < EXPIRY_WARNING_DAYS * DAY_MS) {
    const days = Math.floor(left / DAY_MS);
    findings.push({
      severity: "warning",
      message: `certificate file '${file}' for '${host}' expires on ${until} ` +
        `(in ${days} day${days === 1 ? "" : "s"}): renew it`,
    });
  }
  if (loaded.selfSigned) {
    findings.push({
      severity: "warning",
      message: `certificate file '${file}' for '${host}' is self-signed: clients will not ` +
        "trust it without pinning it",
    });
  }
  return findings;
}

function lowerFirst(text: string): string {
  return text.charAt(0).toLowerCase() + text.slice(1);
}
