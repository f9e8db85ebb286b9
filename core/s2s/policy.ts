// Who a local host federates with and how remote servers must prove who they are: the
// operator's s2s_* options turned into yes/no answers with the exact reason for every "no".

import type { Config } from "../config.ts";
import type { HostOptionName } from "../config_schema.ts";
import type { TrustStoreOptions } from "../net/peer_certificate.ts";

/** How a remote server must authenticate to (or be authenticated by) a local host. */
export type S2SAuthRequirement = "certificate" | "certificate-or-dialback";

/** True when the configuration has an s2s listener: federation is off without one. */
export function federationConfigured(config: Config): boolean {
  return config.get<string[]>("s2s_interfaces").length > 0 ||
    config.get<string[]>("s2s_direct_tls_interfaces").length > 0;
}

/** Reads federation policy for local hosts from the configuration in force. */
export class S2SPolicy {
  #config: () => Config;

  /** `config` returns the configuration in force (it changes on reload). */
  constructor(config: () => Config) {
    this.#config = config;
  }

  #option<T>(local: string, name: HostOptionName): T {
    return this.#config().hostOption<T>(local, name) as T;
  }

  /** True when the server has an s2s listener at all (federation is off without one). */
  get enabled(): boolean {
    return federationConfigured(this.#config());
  }

  /**
   * Why `local` may not federate with `remote`, or undefined when it may: federation off,
   * the host's `s2s = false`, the deny list, or an allow list that does not name `remote`.
   */
  refusal(local: string, remote: string): string | undefined {
    if (!this.enabled) return "Federation is off on this server (no s2s_interfaces)";
    if (!this.#option<boolean>(local, "s2s")) return `Federation is off for '${local}'`;
    if (this.#option<string[]>(local, "s2s_deny_domains").includes(remote)) {
      return `'${remote}' is in s2s_deny_domains of '${local}'`;
    }
    const allow = this.#option<string[]>(local, "s2s_allow_domains");
    if (allow.length > 0 && !allow.includes(remote)) {
      return `'${remote}' is not in s2s_allow_domains of '${local}'`;
    }
    return undefined;
  }

  /** Whether streams between `local` and remote servers must be encrypted. */
  requireEncryption(local: string): boolean {
    return this.#option<boolean>(local, "s2s_require_encryption");
  }

  /** Whether `local` authenticates and accepts remote servers by dialback (`s2s_dialback`). */
  dialbackEnabled(local: string): boolean {
    return this.#option<boolean>(local, "s2s_dialback");
  }

  /**
   * What `remote` needs to be trusted by `local`: a valid certificate when s2s_secure_auth is
   * on (unless `remote` is in s2s_insecure_domains), when `remote` is in s2s_secure_domains, or
   * when dialback is off; otherwise dialback is enough when the certificate is missing or invalid.
   */
  authRequirement(local: string, remote: string): S2SAuthRequirement {
    return this.certificateRequiredBy(local, remote) === undefined
      ? "certificate-or-dialback"
      : "certificate";
  }

  /**
   * The setting that makes `local` require a valid certificate from `remote`, as an operator
   * writes it (for refusal reasons), or undefined when dialback is enough.
   */
  certificateRequiredBy(local: string, remote: string): string | undefined {
    if (!this.dialbackEnabled(local)) return "s2s_dialback = false";
    if (this.#option<string[]>(local, "s2s_secure_domains").includes(remote)) {
      return "s2s_secure_domains";
    }
    if (!this.#option<boolean>(local, "s2s_secure_auth")) return undefined;
    return this.#option<string[]>(local, "s2s_insecure_domains").includes(remote)
      ? undefined
      : "s2s_secure_auth";
  }
}

/**
 * The trust anchors for remote servers' certificates: `s2s_ca_files`, on top of the public
 * roots (Deno's bundled Mozilla roots and the system bundle) unless `s2s_ca_files_only` is on.
 * Throws when `s2s_ca_files_only` is on and `s2s_ca_files` is empty: no remote certificate could
 * ever be valid.
 */
export function s2sTrustOptions(config: Config): TrustStoreOptions {
  const caFiles = config.get<string[]>("s2s_ca_files");
  const only = config.get<boolean>("s2s_ca_files_only");
  if (only && caFiles.length === 0) {
    throw new Error(
      "s2s_ca_files_only is on but s2s_ca_files is empty: no remote server's certificate " +
        "could be trusted",
    );
  }
  return { caFiles, system: !only, bundled: !only };
}
