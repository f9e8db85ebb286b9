// The parts of `lilt check` that look beyond the configuration file (certificates, DNS,
// connectivity), run one by one or all together, and their one-line report format.

import type { Config } from "../config.ts";
import type { Resolver } from "../net/dns.ts";
import { checkCertificates } from "./certs.ts";
import { checkConnectivity } from "./connectivity.ts";
import { checkDns } from "./dns.ts";
import type { Problem } from "./problem.ts";

/** The checks `lilt check` runs on a loaded configuration, in the order `all` runs them. */
export const CHECK_PARTS = ["certs", "dns", "connectivity"] as const;

/** One of {@link CHECK_PARTS}. */
export type CheckPart = typeof CHECK_PARTS[number];

/** Options for {@link runCheck}. */
export interface CheckOptions {
  /** Public addresses that count as this server's (NAT), for the DNS check. */
  addresses?: string[];
  /** The resolver for the DNS check; default one on `dns_nameservers`. */
  resolver?: Resolver;
}

/** True when `name` names a part of {@link CHECK_PARTS}. */
export function isCheckPart(name: string): name is CheckPart {
  return (CHECK_PARTS as readonly string[]).includes(name);
}

/** Runs one part on `config`; a check that throws is reported as an error, not a crash. */
export async function runCheck(
  part: CheckPart,
  config: Config,
  options: CheckOptions = {},
): Promise<Problem[]> {
  try {
    switch (part) {
      case "certs":
        return await checkCertificates(config);
      case "dns":
        return await checkDns(config, {
          addresses: options.addresses,
          resolver: options.resolver,
        });
      case "connectivity":
        return await checkConnectivity(config);
    }
  } catch (e) {
    return [{
      level: "error",
      message: `The ${part} check failed: ${e instanceof Error ? e.message : String(e)}`,
    }];
  }
}

/** The line printed for a problem of a part: `dns: error: ...`. */
export function formatCheckProblem(part: string, problem: Problem): string {
  return `${part}: ${problem.level}: ${problem.message}`;
}

/** The closing line of a part: `dns: OK`, or the count of errors and warnings. */
export function formatCheckSummary(part: string, problems: Problem[]): string {
  const errors = problems.filter((p) => p.level === "error").length;
  const warnings = problems.length - errors;
  if (problems.length === 0) return `${part}: OK`;
  const counts = [
    errors > 0 ? `${errors} error(s)` : "",
    warnings > 0 ? `${warnings} warning(s)` : "",
  ].filter((s) => s !== "").join(", ");
  return `${part}: ${errors > 0 ? "FAILED" : "OK"} (${counts})`;
}
