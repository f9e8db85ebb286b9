// The typed schema of every core configuration option (type, default, bounds, scope), so a bad
// value fails at load time with a clear message instead of surprising the server later.

import { isIPv4, isIPv6 } from "node:net";
import { parseJid } from "./jid.ts";
import { checkAddressRange } from "./net/address_ranges.ts";
import { checkBurst, checkByteRate } from "./net/rate_limit.ts";

/** The value types an option can have ("table[]": a list of tables its reader checks). */
export type OptionType =
  | "string"
  | "integer"
  | "number"
  | "boolean"
  | "string[]"
  | "enum"
  | "table"
  | "table[]";

/** Whether a changed value is applied by a reload ("live") or only by a restart. */
export type OptionReload = "live" | "restart";

/** Describes one option: its type, default, bounds and where it may be set. */
export interface OptionSpec {
  /** The TOML value type expected. */
  type: OptionType;
  /** The value used when the option is not set. */
  default: unknown;
  /** Smallest allowed value (integer and number options). */
  min?: number;
  /** Largest allowed value (integer and number options). */
  max?: number;
  /** The allowed values of an enum option. */
  values?: readonly string[];
  /** "global": top level only; "host": top level (as a default) and in [[host]]/[[component]]. */
  scope: "global" | "host";
  /**
   * What `config reload` (and SIGHUP) does with a changed value: "live" applies it from the
   * reload on; "restart" keeps the running value and reports that a restart is needed.
   * Required for core options ({@link CoreOptionSpec}); module options are always live (a
   * module that read one while loading is told through `config-reloaded`, or loaded again).
   */
  reload?: OptionReload;
  /** One line for documentation and error messages. */
  description: string;
  /**
   * A string (or string[]) option that names files: a relative value resolves against the
   * config's folder.
   */
  path?: boolean;
  /** Extra check of a string (or of each string of a string[]); returns a message or undefined. */
  check?: (item: string, name: string) => string | undefined;
  /** Rewrites a checked string (or each string of a string[]) to its canonical form. */
  normalize?: (item: string) => string;
  /**
   * Extra check of a "table" option, or of each table of a "table[]" option: the problems
   * found, each reported at the line of the key it names (or of the table without a key).
   */
  checkTable?: (table: Record<string, unknown>) => TableProblem[];
}

/** A problem `OptionSpec.checkTable` found in one table of an option. */
export interface TableProblem {
  /** The key of the table the problem is about, for its line; absent: the whole table. */
  key?: string;
  /** What is wrong, e.g. "'port' must be an integer from 1 to 65535, found string \"x\"". */
  message: string;
}

/** A core option's spec: core options must say how a reload treats them. */
export interface CoreOptionSpec extends OptionSpec {
  /** Required for core options (see {@link OptionSpec.reload}). */
  reload: OptionReload;
}

/** The TypeScript type of a value of an option type. */
export interface OptionValueTypes {
  string: string;
  integer: number;
  number: number;
  boolean: boolean;
  "string[]": string[];
  enum: string;
  table: Record<string, unknown>;
  "table[]": unknown;
}

/** The value type of an option spec (from its `type`). */
export type ValueOf<S extends { type: OptionType }> = OptionValueTypes[S["type"]];

/** Log levels accepted in the configuration, lowest first. */
export const LOG_LEVELS = ["trace", "debug", "info", "warning", "error", "fatal"] as const;

/** One log level name. */
export type LogLevelName = typeof LOG_LEVELS[number];

/** A listen address split into host and port. */
export interface ListenAddress {
  /** IPv4 address, IPv6 address (without brackets), host name, or "*" for every address. */
  host: string;
  /** TCP port, 0 for "any free port". */
  port: number;
}

/**
 * Parses "host:port", "[ipv6]:port" or "*:port"; returns undefined when the text is neither.
 *
 * @example
 * ```ts
 * parseListenAddress("[::1]:5222"); // { host: "::1", port: 5222 }
 * ```
 */
export function parseListenAddress(text: string): ListenAddress | undefined {
  const match = /^(?:\[([^\]]+)\]|([^:\[\]\s]+)):(\d{1,5})$/.exec(text);
  if (!match) return undefined;
  const port = Number(match[3]);
  if (port > 65535) return undefined;
  if (match[1] !== undefined) return isIPv6(match[1]) ? { host: match[1], port } : undefined;
  const host = match[2];
  if (host === "*" || isIPv4(host)) return { host, port };
  const hostName =
    /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/i;
  if (/^[\d.]+$/.test(host) || !hostName.test(host)) return undefined;
  return { host, port };
}

function checkListenAddress(item: string, name: string): string | undefined {
  if (parseListenAddress(item)) return undefined;
  return `option '${name}' has an invalid address '${item}': expected "host:port" or ` +
    `"[ipv6]:port" with a port from 0 to 65535`;
}

function checkExternalUrl(item: string, name: string): string | undefined {
  if (item === "") return undefined;
  let url: URL | undefined;
  try {
    url = new URL(item);
  } catch {
    url = undefined;
  }
  if (url && (url.protocol === "http:" || url.protocol === "https:") && !url.search) {
    return undefined;
  }
  return `option '${name}' has an invalid URL '${item}': expected an http:// or https:// ` +
    `URL such as "https://chat.example.org"`;
}

function checkNameserver(item: string, name: string): string | undefined {
  const address = parseListenAddress(item);
  if (address && address.port > 0 && (isIPv4(address.host) || isIPv6(address.host))) {
    return undefined;
  }
  return `option '${name}' has an invalid nameserver '${item}': expected an IP address and ` +
    `port such as "127.0.0.1:53" or "[::1]:53"`;
}

function checkAdminJid(item: string, name: string): string | undefined {
  try {
    const jid = parseJid(item);
    if (jid.local === undefined || jid.resource !== undefined) {
      return `option '${name}' has '${item}', expected a bare JID such as "admin@example.com"`;
    }
    return undefined;
  } catch (error) {
    const reason = (error as { reason?: string }).reason ?? String(error);
    return `option '${name}' has an invalid JID '${item}': ${reason}`;
  }
}

function checkDomain(item: string, name: string): string | undefined {
  try {
    const jid = parseJid(item);
    if (jid.local === undefined && jid.resource === undefined) return undefined;
  } catch {
    // reported below
  }
  return `option '${name}' has an invalid domain '${item}': expected a bare domain such as ` +
    `"example.org"`;
}

function checkModuleName(item: string, name: string): string | undefined {
  return item.trim() === "" ? `option '${name}' has an empty module name` : undefined;
}

/** Top-level options that apply to the whole server (the log/storage/host/component tables too). */
export const GLOBAL_OPTIONS = {
  data_dir: {
    type: "string",
    default: "./data",
    scope: "global",
    reload: "restart",
    path: true,
    description: "Folder for the database, admin socket and generated certificates",
  },
  admin_socket: {
    type: "string",
    default: "lilt.sock",
    scope: "global",
    reload: "restart",
    description: "Path of the admin shell's Unix socket (mode 0600), relative to data_dir",
  },
  c2s_interfaces: {
    type: "string[]",
    default: ["127.0.0.1:5222"],
    scope: "global",
    reload: "restart",
    check: checkListenAddress,
    description: "Addresses for client connections (STARTTLS), as host:port or [ipv6]:port",
  },
  c2s_direct_tls_interfaces: {
    type: "string[]",
    default: ["127.0.0.1:5223"],
    scope: "global",
    reload: "restart",
    check: checkListenAddress,
    description: "Addresses for client connections with direct TLS (XEP-0368)",
  },
  http_interfaces: {
    type: "string[]",
    default: [],
    scope: "global",
    reload: "restart",
    check: checkListenAddress,
    description: "Addresses for the HTTP server (module routes), e.g. 127.0.0.1:5280; " +
      "empty = no HTTP",
  },
  https_interfaces: {
    type: "string[]",
    default: [],
    scope: "global",
    reload: "restart",
    check: checkListenAddress,
    description: "Addresses for the HTTPS server (the same routes; each host's certificate " +
      "chosen by SNI), e.g. 127.0.0.1:5281; empty = no HTTPS",
  },
  http_default_host: {
    type: "string",
    default: "",
    scope: "global",
    reload: "live",
    description: "The host whose HTTP routes answer requests whose Host header names none of " +
      "the served hosts (e.g. an IP address); empty = the first [[host]]",
  },
  http_trusted_proxies: {
    type: "string[]",
    default: ["127.0.0.1", "::1"],
    scope: "global",
    reload: "live",
    check: checkAddressRange,
    description: "Reverse proxies (IP addresses or CIDR ranges) whose X-Forwarded-For and " +
      "X-Forwarded-Proto headers are believed; from anyone else they are ignored",
  },
  http_header_timeout: {
    type: "integer",
    default: 20,
    min: 1,
    max: 3600,
    scope: "global",
    reload: "live",
    description: "Seconds a client may take to send a request's headers on an HTTPS or " +
      "non-loopback HTTP listener before the connection is closed",
  },
  http_idle_timeout: {
    type: "integer",
    default: 60,
    min: 1,
    max: 86400,
    scope: "global",
    reload: "live",
    description: "Seconds a kept-alive HTTPS or non-loopback HTTP connection may stay without " +
      "a request before it is closed (WebSocket connections have their own pings)",
  },
  http_max_body_size: {
    type: "integer",
    default: 1048576,
    min: 1024,
    max: 1073741824,
    scope: "global",
    reload: "live",
    description: "Largest HTTP request body in bytes (larger ones get 413)",
  },
  http_external_url: {
    type: "string",
    default: "",
    scope: "global",
    reload: "live",
    check: checkExternalUrl,
    description: "The public base URL of the HTTP server (behind a proxy), e.g. " +
      '"https://chat.example.org"; XEP-0156 host-meta advertises its WebSocket URL from it. ' +
      "Empty = the address the request came to",
  },
  websocket_origins: {
    type: "string[]",
    default: [],
    scope: "global",
    reload: "live",
    description: "Origins (e.g. https://chat.example.org) whose web pages may open XMPP " +
      "WebSockets; empty = any. Requests without an Origin header are always accepted",
  },
  bosh_max_wait: {
    type: "integer",
    default: 60,
    min: 1,
    max: 3600,
    scope: "global",
    reload: "live",
    description: "Longest time in seconds a BOSH (XEP-0124) request is held open waiting for " +
      "output; a client's larger 'wait' is capped to it",
  },
  bosh_max_inactivity: {
    type: "integer",
    default: 60,
    min: 5,
    max: 3600,
    scope: "global",
    reload: "live",
    description: "Seconds a BOSH session may go without any request held before it is gone " +
      "(its stream ends as if the connection dropped)",
  },
  bosh_max_polling: {
    type: "integer",
    default: 5,
    min: 0,
    max: 300,
    scope: "global",
    reload: "live",
    description: "Shortest interval in seconds between empty BOSH requests (the 'polling' " +
      "attribute); faster ones end the session with policy-violation. 0 = no limit",
  },
  bosh_origins: {
    type: "string[]",
    default: [],
    scope: "global",
    reload: "live",
    description: "Origins (e.g. https://chat.example.org) whose web pages may use the BOSH " +
      "endpoint (CORS); empty = any. Requests without an Origin header are always accepted",
  },
  component_interfaces: {
    type: "string[]",
    default: [],
    scope: "global",
    reload: "restart",
    check: checkListenAddress,
    description: "Addresses for external component connections (XEP-0114), e.g. 127.0.0.1:5347",
  },
  s2s_interfaces: {
    type: "string[]",
    default: [],
    scope: "global",
    reload: "restart",
    check: checkListenAddress,
    description: 'Addresses for server-to-server connections (STARTTLS), e.g. "*:5269"; ' +
      "empty = no federation",
  },
  s2s_direct_tls_interfaces: {
    type: "string[]",
    default: [],
    scope: "global",
    reload: "restart",
    check: checkListenAddress,
    description: "Addresses for server-to-server connections with direct TLS (XEP-0368)",
  },
  s2s_ca_files: {
    type: "string[]",
    default: [],
    scope: "global",
    reload: "live",
    path: true,
    description: "PEM files of extra authorities (or pinned certificates) trusted for remote " +
      "servers, on top of the system store",
  },
  s2s_ca_files_only: {
    type: "boolean",
    default: false,
    scope: "global",
    reload: "live",
    description: "Trust only s2s_ca_files for remote servers' certificates, not the public " +
      "roots (a closed federation)",
  },
  s2s_dialback_secret: {
    type: "string",
    default: "",
    scope: "global",
    reload: "restart",
    description: "Secret for dialback keys (XEP-0185); empty = a random one at each start (on " +
      "cluster nodes: one shared through their store)",
  },
  s2s_connect_timeout: {
    type: "integer",
    default: 10,
    min: 1,
    max: 600,
    scope: "global",
    reload: "live",
    description: "Seconds to resolve and connect to a remote server (all addresses together)",
  },
  s2s_auth_timeout: {
    type: "integer",
    default: 30,
    min: 1,
    max: 600,
    scope: "global",
    reload: "live",
    description: "Seconds a server-to-server stream has to finish TLS and authentication",
  },
  s2s_idle_timeout: {
    type: "integer",
    default: 300,
    min: 1,
    max: 86400,
    scope: "global",
    reload: "live",
    description: "Seconds without traffic before a server-to-server link is closed",
  },
  s2s_queue_limit: {
    type: "integer",
    default: 500,
    min: 1,
    max: 100000,
    scope: "global",
    reload: "live",
    description: "Stanzas held per remote domain while its link is being set up; more bounce",
  },
  s2s_stanza_size_limit: {
    type: "integer",
    default: 524288,
    min: 10000,
    max: 16777216,
    scope: "global",
    reload: "live",
    description: "Largest stanza in bytes a remote server may send",
  },
  c2s_max_send_buffer: {
    type: "integer",
    default: 1048576,
    min: 16384,
    max: 268435456,
    scope: "global",
    reload: "live",
    description: "Bytes of output that may wait for a client that stops reading; past it the " +
      "stream closes with resource-constraint and its messages go to offline storage",
  },
  c2s_preauth_stanza_size_limit: {
    type: "integer",
    default: 16384,
    min: 4096,
    max: 16777216,
    scope: "global",
    reload: "live",
    description: "Largest stanza in bytes a client may send before it has authenticated " +
      "(c2s_stanza_size_limit applies after)",
  },
  s2s_max_send_buffer: {
    type: "integer",
    default: 4194304,
    min: 16384,
    max: 268435456,
    scope: "global",
    reload: "live",
    description: "Bytes of output that may wait for a remote server that stops reading; past " +
      "it the link closes with resource-constraint",
  },
  c2s_auth_timeout: {
    type: "integer",
    default: 60,
    min: 1,
    max: 3600,
    scope: "global",
    reload: "live",
    description: "Seconds a client has to finish authentication",
  },
  auth_throttle_max_failures: {
    type: "integer",
    default: 5,
    min: 1,
    max: 1000000,
    scope: "global",
    reload: "live",
    description: "Failed logins of one account from one address before its further attempts " +
      "wait (auth_throttle_delay, doubling up to auth_throttle_max_delay)",
  },
  auth_throttle_address_failures: {
    type: "integer",
    default: 20,
    min: 1,
    max: 1000000,
    scope: "global",
    reload: "live",
    description: "Failed logins from one address (IPv6: its /64), any account, before its " +
      "further attempts wait",
  },
  auth_throttle_account_failures: {
    type: "integer",
    default: 20,
    min: 1,
    max: 1000000,
    scope: "global",
    reload: "live",
    description: "Failed logins of one account from any address before the attempts of " +
      "addresses that failed for it wait; an address that has not failed for it never waits",
  },
  auth_throttle_delay: {
    type: "number",
    default: 1,
    min: 0,
    max: 60,
    scope: "global",
    reload: "live",
    description: "Seconds a throttled login waits at first; each further failure doubles it",
  },
  auth_throttle_max_delay: {
    type: "number",
    default: 3,
    min: 0,
    max: 600,
    scope: "global",
    reload: "live",
    description: "Longest wait of a throttled login in seconds: the real user behind a " +
      "guessing address gets in this long after the guessing stops",
  },
  auth_throttle_window: {
    type: "integer",
    default: 60,
    min: 1,
    max: 86400,
    scope: "global",
    reload: "live",
    description: "Seconds after its last failure that a failed-login count is forgotten",
  },
  limits_c2s_unauthed_rate: {
    type: "string",
    default: "10kb/s",
    scope: "global",
    reload: "live",
    check: checkByteRate,
    description: 'Bytes per second a client may send before it authenticates ("10kb/s", ' +
      'kb = 1000 bytes, or "unlimited"); faster input is read later (TCP backpressure), never dropped',
  },
  limits_c2s_unauthed_burst: {
    type: "string",
    default: "10s",
    scope: "global",
    reload: "live",
    check: checkBurst,
    description:
      'What a client may send at once before it authenticates: seconds of the rate ("10s") or a size ("64kb")',
  },
  limits_c2s_rate: {
    type: "string",
    default: "100kb/s",
    scope: "global",
    reload: "live",
    check: checkByteRate,
    description: 'Bytes per second an authenticated client may send ("100kb/s", or "unlimited")',
  },
  limits_c2s_burst: {
    type: "string",
    default: "5s",
    scope: "global",
    reload: "live",
    check: checkBurst,
    description:
      'What an authenticated client may send at once: seconds of the rate ("5s") or a size ("512kb")',
  },
  limits_s2s_rate: {
    type: "string",
    default: "500kb/s",
    scope: "global",
    reload: "live",
    check: checkByteRate,
    description:
      'Bytes per second a remote server may send on one stream, inbound or outbound ("500kb/s", or "unlimited")',
  },
  limits_s2s_burst: {
    type: "string",
    default: "5s",
    scope: "global",
    reload: "live",
    check: checkBurst,
    description:
      'What a remote server may send at once on one stream: seconds of the rate ("5s") or a size',
  },
  limits_component_rate: {
    type: "string",
    default: "unlimited",
    scope: "global",
    reload: "live",
    check: checkByteRate,
    description:
      'Bytes per second an external component (XEP-0114) may send ("1mb/s", or "unlimited")',
  },
  limits_component_burst: {
    type: "string",
    default: "5s",
    scope: "global",
    reload: "live",
    check: checkBurst,
    description: 'What a component may send at once: seconds of the rate ("5s") or a size',
  },
  limits_message_rate: {
    type: "number",
    default: 50,
    min: 0,
    max: 1000000,
    scope: "global",
    reload: "live",
    description:
      "Messages per second one account may send, all its sessions together; 0 = unlimited",
  },
  limits_presence_rate: {
    type: "number",
    default: 50,
    min: 0,
    max: 1000000,
    scope: "global",
    reload: "live",
    description: "Presence stanzas per second one account may send; 0 = unlimited",
  },
  limits_iq_rate: {
    type: "number",
    default: 50,
    min: 0,
    max: 1000000,
    scope: "global",
    reload: "live",
    description: "Iq requests (get/set) per second one account may send; 0 = unlimited",
  },
  limits_stanza_burst: {
    type: "number",
    default: 10,
    min: 0.1,
    max: 3600,
    scope: "global",
    reload: "live",
    description: "Seconds of each stanza rate an account may send at once after a quiet time",
  },
  limits_stanza_max_delay: {
    type: "number",
    default: 5,
    min: 0,
    max: 600,
    scope: "global",
    reload: "live",
    description:
      "Seconds a stanza over its account's rate may wait; one that would wait longer is " +
      "refused with policy-violation, and a session still over the rate that long after a " +
      "refusal is closed with a policy-violation stream error",
  },
  dns_nameservers: {
    type: "string[]",
    default: [],
    scope: "global",
    reload: "live",
    check: checkNameserver,
    description:
      "DNS servers for federation lookups, `lilt check dns` and the shell's dns section, as " +
      '"ip:port" or "[ipv6]:port"; empty = the system\'s',
  },
  dns: {
    type: "table",
    default: {},
    scope: "global",
    reload: "live",
    description: "DNS for federation: nameservers (same as dns_nameservers)",
  },
  log: {
    type: "table",
    default: {},
    scope: "global",
    reload: "live",
    description: "Logging: level, console, file, categories",
  },
  storage: {
    type: "table",
    default: {},
    scope: "global",
    reload: "restart",
    description: "Storage: driver (sqlite or postgresql); path (relative to data_dir) and " +
      "key_file or key for the embedded store; url, password_file and schema for PostgreSQL",
  },
  host: {
    type: "table",
    default: [],
    scope: "global",
    reload: "live",
    description: "Virtual hosts, one [[host]] section each",
  },
  component: {
    type: "table",
    default: [],
    scope: "global",
    reload: "live",
    description: "Components, one [[component]] section each",
  },
} satisfies Record<string, CoreOptionSpec>;

/** Options allowed in [[host]] and [[component]] sections, and at the top level as defaults. */
export const HOST_OPTIONS = {
  admins: {
    type: "string[]",
    default: [],
    scope: "host",
    reload: "live",
    check: checkAdminJid,
    normalize: (item) => parseJid(item).toString(),
    description: "Bare JIDs of administrators; a host's list adds to the global one",
  },
  modules: {
    type: "string[]",
    default: [
      "disco",
      "ping",
      "roster",
      "presence",
      "caps",
      "pep",
      "offline",
      "carbons",
      "blocklist",
      "vcard",
      "vcard_pep",
      "private",
      "bookmarks",
      "last",
      "time",
      "version",
      "contact_info",
      "register",
      "announce",
      "external_services",
      "push",
    ],
    scope: "host",
    reload: "live",
    check: checkModuleName,
    description: "Modules loaded on each host; a host's list replaces the global one",
  },
  modules_disabled: {
    type: "string[]",
    default: [],
    scope: "host",
    reload: "live",
    check: checkModuleName,
    description: "Modules not loaded; the global and host lists both apply",
  },
  s2s: {
    type: "boolean",
    default: true,
    scope: "host",
    reload: "live",
    description: "Federate this host with remote servers (needs s2s_interfaces)",
  },
  s2s_require_encryption: {
    type: "boolean",
    default: true,
    scope: "host",
    reload: "live",
    description: "Refuse server-to-server streams without TLS",
  },
  s2s_secure_auth: {
    type: "boolean",
    default: true,
    scope: "host",
    reload: "live",
    description: "Require a valid certificate from remote servers (no dialback-only peers)",
  },
  s2s_dialback: {
    type: "boolean",
    default: true,
    scope: "host",
    reload: "live",
    description: "Server Dialback (XEP-0220) both ways; false = certificates only, " +
      "s2s_insecure_domains included",
  },
  s2s_insecure_domains: {
    type: "string[]",
    default: [],
    scope: "host",
    reload: "live",
    check: checkDomain,
    normalize: (item) => parseJid(item).toString(),
    description: "Remote domains allowed to authenticate with dialback when s2s_secure_auth is on",
  },
  s2s_secure_domains: {
    type: "string[]",
    default: [],
    scope: "host",
    reload: "live",
    check: checkDomain,
    normalize: (item) => parseJid(item).toString(),
    description: "Remote domains that must present a valid certificate even when " +
      "s2s_secure_auth is off",
  },
  s2s_allow_domains: {
    type: "string[]",
    default: [],
    scope: "host",
    reload: "live",
    check: checkDomain,
    normalize: (item) => parseJid(item).toString(),
    description: "When not empty, the only remote domains this host federates with",
  },
  s2s_deny_domains: {
    type: "string[]",
    default: [],
    scope: "host",
    reload: "live",
    check: checkDomain,
    normalize: (item) => parseJid(item).toString(),
    description: "Remote domains this host never federates with",
  },
  c2s_require_encryption: {
    type: "boolean",
    default: true,
    scope: "host",
    reload: "live",
    description: "Refuse to authenticate clients before TLS",
  },
  c2s_stanza_size_limit: {
    type: "integer",
    default: 262144,
    min: 10000,
    max: 16777216,
    scope: "host",
    reload: "live",
    description: "Largest stanza in bytes a client may send",
  },
  c2s_idle_timeout: {
    type: "integer",
    default: 900,
    min: 0,
    max: 604800,
    scope: "host",
    reload: "live",
    description: "Seconds an authenticated session may be silent before it is closed; 0 = never",
  },
  allow_unencrypted_plain_auth: {
    type: "boolean",
    default: false,
    scope: "host",
    reload: "live",
    description: "Allow SASL PLAIN without TLS (never do this outside tests)",
  },
  sasl_offer_channel_binding: {
    type: "boolean",
    default: false,
    scope: "host",
    reload: "live",
    description:
      "Offer SCRAM-*-PLUS with tls-server-end-point channel binding (announced per XEP-0440); only when every client reads XEP-0440, since others try tls-unique and fail",
  },
  sasl_reject_channel_binding_downgrade: {
    type: "boolean",
    default: false,
    scope: "host",
    reload: "live",
    description:
      "Fail SCRAM logins whose client says it supports channel binding but saw none (RFC 5802 'y' flag) while -PLUS is offered (sasl_offer_channel_binding)",
  },
  sasl_fast_token_lifetime: {
    type: "integer",
    default: 1814400,
    min: 0,
    max: 31536000,
    scope: "host",
    reload: "live",
    description:
      "Seconds a XEP-0484 FAST login token is valid (0 turns FAST off); a password change or disabling the account ends every token",
  },
  scram_iterations: {
    type: "integer",
    default: 10000,
    min: 4096,
    max: 1000000,
    scope: "host",
    reload: "live",
    description: "PBKDF2 iterations for new SCRAM credentials",
  },
  deletion_grace_period: {
    type: "integer",
    default: 604800,
    min: 0,
    max: 31536000,
    scope: "host",
    reload: "live",
    description:
      "Seconds a deleted account stays restorable (disabled, data kept) before it is purged; 0 = at once",
  },
  tombstone_period: {
    type: "integer",
    default: 2592000,
    min: 0,
    max: 315360000,
    scope: "host",
    reload: "live",
    description: "Seconds a purged account's name cannot be registered or created again",
  },
  auth_failure_delay: {
    type: "number",
    default: 1,
    min: 0,
    max: 10,
    scope: "host",
    reload: "live",
    description: "Seconds to wait before answering a failed authentication",
  },
  default_user_role: {
    type: "string",
    default: "registered",
    scope: "host",
    reload: "live",
    description:
      "Role of accounts with no role of their own (guest, registered, member, admin, operator or a custom role)",
  },
  custom_roles: {
    type: "table[]",
    default: [],
    scope: "host",
    reload: "live",
    description:
      "Extra roles: a list of { name, inherits, permissions = [...] } tables; a host's list replaces the global one",
  },
  add_permissions: {
    type: "table",
    default: {},
    scope: "host",
    reload: "live",
    description:
      'Actions granted to roles on top of their defaults, e.g. { member = ["lilt:announce"] }',
  },
  remove_permissions: {
    type: "table",
    default: {},
    scope: "host",
    reload: "live",
    description:
      'Actions taken away from roles (and the roles inheriting them), e.g. { member = ["lilt:upload-file"] }',
  },
  certificate: {
    type: "string",
    default: "",
    scope: "host",
    reload: "live",
    path: true,
    description: "PEM certificate (chain) file; empty = a self-signed one made on first start",
  },
  key: {
    type: "string",
    default: "",
    scope: "host",
    reload: "live",
    path: true,
    description: "PEM private key file for the certificate",
  },
} satisfies Record<string, CoreOptionSpec>;

/** A Unix socket path must fit sockaddr_un (103 bytes on FreeBSD, 107 on Linux). */
function checkUnixSocketPath(path: string, name: string): string | undefined {
  const bytes = new TextEncoder().encode(path).length;
  return bytes > 103
    ? `option '${name}' must be a socket path of at most 103 bytes, found ${bytes} bytes`
    : undefined;
}

/** Keys of the [log] table. */
export const LOG_OPTIONS: Record<string, CoreOptionSpec> = {
  level: {
    type: "enum",
    default: "info",
    values: LOG_LEVELS,
    scope: "global",
    reload: "live",
    description: "Lowest level logged",
  },
  console: {
    type: "boolean",
    default: true,
    scope: "global",
    reload: "live",
    description: "Log to standard error",
  },
  file: {
    type: "string",
    default: "",
    scope: "global",
    reload: "live",
    path: true,
    description: "File to append log lines to; empty = none",
  },
  syslog: {
    type: "boolean",
    default: false,
    scope: "global",
    reload: "live",
    description: "Also send log records to the local syslog socket (RFC 3164, as syslog(3) does)",
  },
  syslog_socket: {
    type: "string",
    default: "",
    scope: "global",
    reload: "live",
    path: true,
    check: checkUnixSocketPath,
    description: "The syslog socket; empty = /dev/log (/var/run/log on FreeBSD)",
  },
  syslog_facility: {
    type: "enum",
    default: "daemon",
    values: [
      "daemon",
      "user",
      "local0",
      "local1",
      "local2",
      "local3",
      "local4",
      "local5",
      "local6",
      "local7",
    ],
    scope: "global",
    reload: "live",
    description: "The syslog facility of Lilt's records",
  },
  journald: {
    type: "boolean",
    default: false,
    scope: "global",
    reload: "live",
    description:
      "Also send log records to systemd-journald (native protocol: PRIORITY, MESSAGE, SYSLOG_IDENTIFIER=lilt)",
  },
  journald_socket: {
    type: "string",
    default: "",
    scope: "global",
    reload: "live",
    path: true,
    check: checkUnixSocketPath,
    description: "The journald socket; empty = /run/systemd/journal/socket",
  },
  categories: {
    type: "table",
    default: {},
    scope: "global",
    reload: "live",
    description: 'Per-category levels, e.g. { "lilt.c2s" = "debug" }',
  },
};

/** Keys of the [storage] table. */
export const STORAGE_OPTIONS: Record<string, CoreOptionSpec> = {
  driver: {
    type: "string",
    default: "sqlite",
    scope: "global",
    reload: "restart",
    description: 'Where data lives: "sqlite" (the embedded store, a file under data_dir) or ' +
      '"postgresql" (a shared PostgreSQL database, for several nodes)',
  },
  url: {
    type: "string",
    default: "",
    scope: "global",
    reload: "restart",
    description: "PostgreSQL connection URL (postgresql://user@host:port/database); keep the " +
      "password in password_file",
  },
  password_file: {
    type: "string",
    default: "",
    scope: "global",
    reload: "restart",
    path: true,
    description: "File holding the PostgreSQL password (mode 0600), relative to the " +
      "configuration file's directory",
  },
  schema: {
    type: "string",
    default: "",
    scope: "global",
    reload: "restart",
    description: "PostgreSQL schema for Lilt's tables (created when missing); empty: the " +
      "database's default search_path",
  },
  path: {
    type: "string",
    default: "lilt.sqlite",
    scope: "global",
    reload: "restart",
    description: "Database file, relative to data_dir",
  },
  key: {
    type: "string",
    default: "",
    scope: "global",
    reload: "restart",
    description: "Database encryption passphrase (SQLCipher 4); prefer key_file",
  },
  key_file: {
    type: "string",
    default: "",
    scope: "global",
    reload: "restart",
    path: true,
    description: "File holding the database encryption passphrase (mode 0600), relative to " +
      "the configuration file's directory",
  },
};

/**
 * Keys of the [cluster] table: several nodes serving the same domains, sharing the PostgreSQL
 * store and routing through Redis (core/cluster/). No [cluster] table: one node, no broker.
 */
export const CLUSTER_OPTIONS: Record<string, CoreOptionSpec> = {
  node: {
    type: "string",
    default: "",
    scope: "global",
    reload: "restart",
    description: "This node's name, unique in the cluster (default: the host name)",
  },
  redis_url: {
    type: "string",
    default: "",
    scope: "global",
    reload: "restart",
    description: "The Redis server the nodes share (redis://host:port/db); keep the password " +
      "in redis_password_file",
  },
  redis_password_file: {
    type: "string",
    default: "",
    scope: "global",
    reload: "restart",
    path: true,
    description: "File holding the Redis password (mode 0600), relative to the configuration " +
      "file's directory",
  },
  heartbeat_interval: {
    type: "number",
    default: 2,
    min: 0.05,
    max: 60,
    scope: "global",
    reload: "restart",
    description: "Seconds between a node's heartbeats",
  },
  node_timeout: {
    type: "number",
    default: 10,
    min: 0.2,
    max: 600,
    scope: "global",
    reload: "restart",
    description: "Seconds without a heartbeat after which a node counts as dead (its sessions " +
      "are dropped and its registry entries expire)",
  },
};

/** Keys specific to [[component]] sections (host options and module options are allowed too). */
export const COMPONENT_OPTIONS: Record<string, CoreOptionSpec> = {
  domain: {
    type: "string",
    default: "",
    scope: "host",
    reload: "live",
    description: "The component's domain",
  },
  module: {
    type: "string",
    default: "",
    scope: "host",
    reload: "live",
    description: 'Internal component with one module, e.g. muc (short for modules = ["muc"])',
  },
  modules: {
    type: "string[]",
    default: [],
    scope: "host",
    reload: "live",
    description: "Modules of an internal component (a service hosted by Lilt under its own domain)",
  },
  secret: {
    type: "string",
    default: "",
    scope: "host",
    reload: "live",
    description: "Shared secret of an external component (XEP-0114)",
  },
};

/** Names of the options read for the whole server (`Config.get`). */
export type GlobalOptionName = keyof typeof GLOBAL_OPTIONS;

/** Names of the options read per host (`Config.hostOption`); set globally they are defaults. */
export type HostOptionName = keyof typeof HOST_OPTIONS;

/** The value type of each global option. */
export type GlobalOptionValues = {
  [K in GlobalOptionName]: ValueOf<typeof GLOBAL_OPTIONS[K]>;
};

/** The value type of each host option. */
export type HostOptionValues = {
  [K in HostOptionName]: ValueOf<typeof HOST_OPTIONS[K]>;
};
