// The `cert` section of the admin shell: which certificate each host and component presents
// (file, names, issuer, expiry) and a reload that picks up renewed files without a restart.

import { X509Certificate } from "node:crypto";
import { join } from "node:path";
import { type AdminServer, CommandError, type CommandSpec } from "../../core/admin_commands.ts";
import { certificateMatchesName, type LoadedCertificate } from "../../core/net/certificates.ts";
import type { CertificateChange } from "../../core/net/tls.ts";

const DAY_MS = 24 * 60 * 60 * 1000;

/** One row of `cert list`, as `--json` gives it. */
export interface CertificateRow {
  /** The host or component. */
  domain: string;
  /** `host` or `component`. */
  kind: "host" | "component";
  /** The certificate file, or null when the certificate lives only in memory. */
  file: string | null;
  /** When a component has no certificate of its own: the host whose certificate it gets. */
  via: string | null;
  /** The leaf's DNS names. */
  names: string[];
  /** The leaf's issuer, e.g. `CN=R13, O=Let's Encrypt, C=US`. */
  issuer: string;
  /** End of validity (ISO 8601). */
  notAfter: string;
  /** Whole days until then (negative once expired). */
  daysLeft: number;
  /** `generated` (made by Lilt in data_dir/certs), `self-signed`, or `ca-issued`. */
  origin: "generated" | "self-signed" | "ca-issued";
  /** True when the names cover the domain. */
  covers: boolean;
  /** SHA-256 fingerprint of the leaf (colon-separated hex). */
  fingerprint: string;
}

/** The commands of the `cert` section. */
export function certCommands(): CommandSpec[] {
  return [
    {
      section: "cert",
      name: "list",
      summary: "Each host's and component's certificate: file, names, issuer, expiry, coverage",
      args: [],
      run: ({ server }) => {
        const rows = certificateRows(server);
        return {
          table: {
            columns: ["domain", "file", "names", "issuer", "not after", "days", "origin", "covers"],
            rows: rows.map((r) => [
              r.domain,
              r.via === null ? r.file ?? "(memory)" : `(${r.via}'s)`,
              r.names.join(" "),
              r.issuer,
              r.notAfter.slice(0, 10),
              r.daysLeft,
              r.origin,
              r.covers ? "yes" : "NO",
            ]),
          },
          data: rows,
        };
      },
    },
    {
      section: "cert",
      name: "reload",
      summary: "Reads the certificates again; new connections get them, open ones stay",
      args: [],
      run: async ({ server }) => {
        let changes: CertificateChange[];
        try {
          changes = await server.reloadCertificates();
        } catch (error) {
          throw new CommandError(
            `Certificates not reloaded, the previous ones stay in force: ${
              (error as Error).message
            }`,
          );
        }
        const lines = changes.map(describeChange);
        const changed = changes.filter((c) => c.changed).length;
        lines.push(
          changed === 0
            ? "No certificate changed"
            : `${changed} certificate(s) changed: new connections get them, open ones keep theirs`,
        );
        return {
          message: lines.join("\n"),
          data: changes.map((c) => ({
            domain: c.domain,
            changed: c.changed,
            before: c.before ? summary(c.before) : null,
            after: c.after ? summary(c.after) : null,
          })),
        };
      },
    },
  ];
}

/** The rows of `cert list`: every host, then every component, in configuration order. */
export function certificateRows(server: AdminServer, now = new Date()): CertificateRow[] {
  const own = new Map(server.certificates.map((e) => [e.domain, e.cert]));
  const domains: { domain: string; kind: "host" | "component" }[] = [
    ...server.config.hosts.map((h) => ({ domain: h.domain, kind: "host" as const })),
    ...server.config.components.map((c) => ({ domain: c.domain, kind: "component" as const })),
  ];
  return domains.map(({ domain, kind }) => {
    const mine = own.get(domain);
    const cert = mine ?? server.certificateForName(domain);
    const via = mine ? null : server.certificates.find((e) => e.cert === cert)?.domain ?? "default";
    const leaf = leafOf(cert);
    const generatedDir = join(server.config.dataDir, "certs") + "/";
    const origin = !cert.selfSigned
      ? "ca-issued"
      : cert.certificateFile?.startsWith(generatedDir)
      ? "generated"
      : "self-signed";
    return {
      domain,
      kind,
      file: cert.certificateFile ?? null,
      via,
      names: cert.names,
      issuer: leaf ? oneLine(leaf.issuer) : "",
      notAfter: cert.notAfter.toISOString(),
      daysLeft: Math.floor((cert.notAfter.getTime() - now.getTime()) / DAY_MS),
      origin,
      covers: certificateMatchesName(cert, domain),
      fingerprint: leaf?.fingerprint256 ?? "",
    };
  });
}

function describeChange(change: CertificateChange): string {
  const { domain, before, after } = change;
  if (!after) return `${domain}: no certificate of its own any more (its parent host's is used)`;
  const what = `${after.certificateFile ?? "(memory)"} (${after.names.join(", ")}; valid until ${
    after.notAfter.toISOString().slice(0, 10)
  })`;
  if (!change.changed) return `${domain}: unchanged, ${what}`;
  if (!before) return `${domain}: now ${what}`;
  return `${domain}: new certificate ${what}, was valid until ${
    before.notAfter.toISOString().slice(0, 10)
  }`;
}

function summary(cert: LoadedCertificate) {
  return {
    file: cert.certificateFile ?? null,
    names: cert.names,
    notAfter: cert.notAfter.toISOString(),
    fingerprint: leafOf(cert)?.fingerprint256 ?? "",
  };
}

function leafOf(cert: LoadedCertificate): X509Certificate | undefined {
  try {
    return new X509Certificate(cert.der);
  } catch {
    return undefined;
  }
}

function oneLine(name: string): string {
  return name.split("\n").filter((part) => part !== "").join(", ");
}
