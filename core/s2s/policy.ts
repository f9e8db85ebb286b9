// Who a local host federates with and how remote servers must prove who they are: the
// operator's s2s_* options turned into yes/no answers with the exact reason for every "no".

import type { Config } from "../config.ts";
import type { HostOptionName } from "../config_schema.ts";

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

  /**
   * What `remote` needs to be trusted by `local`: a valid certificate when s2s_secure_auth is
   * on (unless `remote` is in s2s_insecure_domains) or when `remote` is in s2s_secure_domains;
   * otherwise dialback is enough when the certificate is missing or invalid.
   */
  authRequirement(local: string, remote: string): S2SAuthRequirement {
    if (this.#option<string[]>(local, "s2s_secure_domains").includes(remote)) return "certificate";
    if (!this.#option<boolean>(local, "s2s_secure_auth")) return "certificate-or-dialback";
    return this.#option<string[]>(local, "s2s_insecure_domains").includes(remote)
      ? "certificate-or-dialback"
      : "certificate";
  }
}
