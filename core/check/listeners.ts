// The listeners a configuration asks for, read from the *_interfaces options: what the DNS
// check compares SRV records with and what the connectivity check connects to.

import type { Config } from "../config.ts";
import { type GlobalOptionName, type ListenAddress, parseListenAddress } from "../config_schema.ts";

/** The listening services of Lilt, named as in `port list` and `lilt start`'s log line. */
export type ListenerKind =
  | "c2s"
  | "c2s_direct_tls"
  | "s2s"
  | "s2s_direct_tls"
  | "component"
  | "http"
  | "https";

/** The option that configures each kind of listener. */
export const LISTENER_OPTIONS = {
  c2s: "c2s_interfaces",
  c2s_direct_tls: "c2s_direct_tls_interfaces",
  s2s: "s2s_interfaces",
  s2s_direct_tls: "s2s_direct_tls_interfaces",
  component: "component_interfaces",
  http: "http_interfaces",
  https: "https_interfaces",
} as const satisfies Record<ListenerKind, GlobalOptionName>;

/** One configured listening address. */
export interface ConfiguredListener extends ListenAddress {
  /** Which service listens there. */
  kind: ListenerKind;
  /** The option it comes from, e.g. "c2s_interfaces". */
  option: string;
  /** The address as written in the configuration, e.g. "*:5222". */
  text: string;
  /** True for "*", "0.0.0.0" and "::" (every address of the machine). */
  wildcard: boolean;
}

/** True when a listen host means every address of the machine. */
export function isWildcardHost(host: string): boolean {
  return host === "*" || host === "0.0.0.0" || host === "::";
}

/** Every listener the configuration asks for, in option order. */
export function configuredListeners(config: Config): ConfiguredListener[] {
  const listeners: ConfiguredListener[] = [];
  const entries = Object.entries(LISTENER_OPTIONS) as [ListenerKind, GlobalOptionName][];
  for (const [kind, option] of entries) {
    for (const text of config.get<string[]>(option)) {
      const address = parseListenAddress(text);
      if (!address) continue; // the configuration check reports it
      listeners.push({ ...address, kind, option, text, wildcard: isWildcardHost(address.host) });
    }
  }
  return listeners;
}
