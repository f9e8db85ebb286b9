// Starts a throwaway Debian Prosody for s2s interop tests: its own config, data dir and log on
// loopback, resolving every name through our test DNS responder, with no system file touched.

import { join } from "node:path";
import { deriveCredentials, type ScramCredentials, utf8 } from "../../core/auth/scram.ts";
import {
  freePorts,
  type PeerServer,
  supervise,
  waitForListeners,
  waitForLogLine,
} from "./supervised_process.ts";

/** Where Debian installs Prosody. */
export const PROSODY_BIN = "/usr/bin/prosody";
/** The Lua interpreter Debian's Prosody 0.12 runs on (its `#!` line). */
const PROSODY_LUA = "lua5.4";
const INSTALL_HINT = "run scripts/install-test-deps as root (or: sudo apt-get install prosody " +
  "lua-unbound)";
/** SCRAM iteration count of accounts the harness writes (Prosody's default is 10000). */
const ACCOUNT_ITERATIONS = 4096;

/** Options for `startProsody`. */
export interface ProsodyOptions {
  /** The one VirtualHost Prosody serves. */
  domain: string;
  /**
   * Our DNS responder (tests/helpers/dns_responder.ts): Prosody's libunbound forwards every
   * question there and nowhere else (no /etc/resolv.conf, no /etc/hosts).
   */
  dns: { address?: string; port: number };
  /**
   * The DNS zone libunbound must not answer itself. Unbound serves `test.` (and `invalid.`,
   * `onion.`, `localhost.`) as empty local zones, so without this every `*.test` name is
   * NXDOMAIN before the responder is asked. Default "test"; only one zone can be set.
   */
  forwardedZone?: string;
  /** PEM certificate for `domain` (served on c2s and s2s). */
  certFile: string;
  /** PEM private key of `certFile`. */
  keyFile: string;
  /** Extra trust anchor (PEM) for verifying peers' certificates on s2s (`ssl.cafile`). */
  caFile?: string;
  /** Accounts to create before start: local part -> password. */
  users?: Record<string, string>;
  /** `s2s_secure_auth`: refuse peers whose certificate does not verify (default false). */
  s2sSecureAuth?: boolean;
  /** `s2s_insecure_domains`: peers exempt from `s2sSecureAuth`. */
  s2sInsecureDomains?: string[];
  /** `s2s_secure_domains`: peers that must present a valid certificate anyway. */
  s2sSecureDomains?: string[];
  /** `s2s_require_encryption` (default true, as in Prosody). */
  s2sRequireEncryption?: boolean;
  /** Modules to enable besides the harness's set (see `PROSODY_MODULES`). */
  modules?: string[];
  /** Lua placed in the global section, before the VirtualHost. */
  globalConfig?: string;
  /** Lua appended after the VirtualHost line, so it applies to that host. */
  extraConfig?: string;
  /** Listen address for c2s and s2s (default 127.0.0.1). */
  interface?: string;
  /** How long to wait for Prosody to listen, in ms (default 10000). */
  startTimeoutMs?: number;
  /** Keep the temporary directory after `stop()` (for debugging a failing test). */
  keepDir?: boolean;
}

/** A running Prosody started by `startProsody` (accounts are files it reads on demand). */
export interface ProsodyInstance extends PeerServer {
  /** Prosody's data_path. */
  readonly dataDir: string;
}

/** Modules the harness enables: IM over c2s plus federation (s2s itself is auto-loaded). */
export const PROSODY_MODULES: readonly string[] = [
  "roster",
  "saslauth",
  "tls",
  "dialback",
  "disco",
  "ping",
];

/**
 * Throws when Prosody or lua-unbound is missing: without lua-unbound Prosody falls back to its
 * own resolver, which reads /etc/resolv.conf and would never ask our responder.
 */
export async function assertProsodyInstalled(): Promise<void> {
  try {
    await Deno.stat(PROSODY_BIN);
  } catch {
    throw new Error(`Debian's prosody is missing (${PROSODY_BIN}): ${INSTALL_HINT}`);
  }
  let ok = false;
  try {
    const probe = await new Deno.Command(PROSODY_LUA, {
      args: ["-e", 'require "lunbound"'],
      stdout: "null",
      stderr: "null",
    }).output();
    ok = probe.success;
  } catch {
    ok = false;
  }
  if (!ok) {
    throw new Error(
      `Debian's lua-unbound is missing (${PROSODY_LUA} cannot load lunbound): ${INSTALL_HINT}`,
    );
  }
}

/**
 * Starts Prosody in the foreground with a generated config in a fresh temporary directory and
 * resolves once its c2s and s2s ports accept connections.
 *
 * @example
 * ```ts
 * const dns = await startDnsResponder({});
 * const ca = await makeTestCa(dir, ["prosody.test"]);
 * await using prosody = await startProsody({
 *   domain: "prosody.test",
 *   dns: { port: dns.port },
 *   certFile: ca.certFile,
 *   keyFile: ca.keyFile,
 *   caFile: ca.caFile,
 *   users: { alice: "secret" },
 * });
 * dns.set("_xmpp-server._tcp.prosody.test", {
 *   srv: [{ priority: 0, weight: 0, port: prosody.s2sPort, target: "prosody.test" }],
 * });
 * ```
 */
export async function startProsody(options: ProsodyOptions): Promise<ProsodyInstance> {
  await assertProsodyInstalled();
  const dir = await Deno.makeTempDir({ prefix: "lilt-prosody-" });
  try {
    return await launch(dir, options);
  } catch (error) {
    if (!options.keepDir) await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
}

async function launch(dir: string, options: ProsodyOptions): Promise<ProsodyInstance> {
  const dataDir = join(dir, "data");
  const configFile = join(dir, "prosody.cfg.lua");
  const logFile = join(dir, "prosody.log");
  await Deno.mkdir(dataDir, { recursive: true });
  // An empty certificate directory: certificates are named explicitly, and a missing one
  // would put a spurious error line in the log.
  await Deno.mkdir(join(dir, "certs"));
  const listen = options.interface ?? "127.0.0.1";
  const [c2sPort, s2sPort] = freePorts(2, listen);
  for (const [user, password] of Object.entries(options.users ?? {})) {
    await writeAccount(dataDir, options.domain, user, password);
  }
  await Deno.writeTextFile(
    configFile,
    prosodyConfig(options, { dir, dataDir, logFile, c2sPort, s2sPort, listen }),
  );

  const child = new Deno.Command(PROSODY_BIN, {
    args: ["-F", "--config", configFile],
    cwd: dir,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const proc = supervise(child);
  let stopping: Promise<void> | undefined;
  const readLog = () => Deno.readTextFile(logFile).catch(() => "");
  const stop = () =>
    stopping ??= (async () => {
      await proc.stop();
      if (!options.keepDir) await Deno.remove(dir, { recursive: true }).catch(() => {});
    })();

  try {
    const deadline = Date.now() + (options.startTimeoutMs ?? 10_000);
    await waitForListeners(
      { name: "Prosody", process: proc },
      listen,
      [c2sPort, s2sPort],
      deadline,
    );
  } catch (error) {
    const tail = (await readLog()).slice(-3000);
    await stop();
    throw new Error(
      `${(error as Error).message}\n--- prosody output ---\n${proc.output().slice(-3000)}` +
        `\n--- prosody log ---\n${tail}`,
    );
  }

  return {
    domain: options.domain,
    pid: child.pid,
    c2sPort,
    s2sPort,
    dir,
    dataDir,
    configFile,
    logFile,
    log: readLog,
    waitForLog: (pattern: RegExp, timeoutMs?: number, from?: number) =>
      waitForLogLine({ name: "Prosody", read: readLog, process: proc }, pattern, timeoutMs, from),
    register: (user, password) => writeAccount(dataDir, options.domain, user, password),
    output: proc.output,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

interface ConfigPaths {
  dir: string;
  dataDir: string;
  logFile: string;
  c2sPort: number;
  s2sPort: number;
  listen: string;
}

/** Renders the config: every listener pinned, logging to a file at debug level. */
function prosodyConfig(o: ProsodyOptions, p: ConfigPaths): string {
  const ssl = luaTable({ certificate: o.certFile, key: o.keyFile, cafile: o.caFile });
  const modules = [...new Set([...PROSODY_MODULES, ...(o.modules ?? [])])];
  const zone = (o.forwardedZone ?? "test").replace(/\.$/, "") + ". transparent";
  const unbound = `{ resolvconf = false; hoststxt = false; forward = ${
    lua(`${o.dns.address ?? "127.0.0.1"}@${o.dns.port}`)
  }; options = { ["local-zone"] = ${lua(zone)} } }`;
  return `-- generated by tests/helpers/prosody.ts
run_as_root = true
daemonize = false
pidfile = ${lua(join(p.dir, "prosody.pid"))}
data_path = ${lua(p.dataDir)}
certificates = ${lua(join(p.dir, "certs"))}
network_backend = "epoll"
interfaces = { ${lua(p.listen)} }
c2s_ports = { ${p.c2sPort} }
s2s_ports = { ${p.s2sPort} }
c2s_direct_tls_ports = { }
s2s_direct_tls_ports = { }
legacy_ssl_ports = { }
component_ports = { }
http_ports = { }
https_ports = { }
log = { { levels = { min = "debug" }, to = "file", filename = ${lua(p.logFile)} } }
-- libunbound asks only our responder; its empty default zone for the test TLD is lifted
unbound = ${unbound}
use_dane = false
authentication = "internal_hashed"
storage = "internal"
allow_registration = false
c2s_require_encryption = true
s2s_require_encryption = ${o.s2sRequireEncryption ?? true}
s2s_secure_auth = ${o.s2sSecureAuth ?? false}
s2s_insecure_domains = ${luaList(o.s2sInsecureDomains ?? [])}
s2s_secure_domains = ${luaList(o.s2sSecureDomains ?? [])}
modules_enabled = ${luaList(modules)}
ssl = ${ssl}
${o.globalConfig ?? ""}
VirtualHost ${lua(o.domain)}
  ssl = ${ssl}
${o.extraConfig ?? ""}
`;
}

/** A Lua string literal (JSON escapes are valid Lua escapes for the text we write). */
function lua(text: string): string {
  return JSON.stringify(text);
}

function luaList(items: string[]): string {
  return `{ ${items.map(lua).join(", ")} }`;
}

function luaTable(fields: Record<string, string | undefined>): string {
  const entries = Object.entries(fields).filter(([, v]) => v !== undefined);
  return `{ ${entries.map(([k, v]) => `${k} = ${lua(v!)}`).join("; ")} }`;
}

/** Prosody's datamanager file-name escaping: every non-alphanumeric byte becomes %xx. */
function prosodyEscape(name: string): string {
  return Array.from(
    utf8(name),
    (b) =>
      /[A-Za-z0-9]/.test(String.fromCharCode(b)) && b < 0x80
        ? String.fromCharCode(b)
        : `%${b.toString(16).padStart(2, "0")}`,
  ).join("");
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Writes an account file as Prosody 0.12's mod_auth_internal_hashed keeps it: SCRAM-SHA-1
 * StoredKey/ServerKey in hex with the salt and iteration count (much faster than prosodyctl;
 * the benchmark writes thousands this way).
 */
export async function writeProsodyAccount(
  dataDir: string,
  domain: string,
  user: string,
  credentials: Pick<ScramCredentials, "storedKey" | "serverKey" | "iterations"> & {
    salt: string;
  },
): Promise<void> {
  const dir = join(dataDir, prosodyEscape(domain), "accounts");
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(
    join(dir, `${prosodyEscape(user)}.dat`),
    `return {\n\t["iteration_count"] = ${credentials.iterations};\n\t["salt"] = ${
      lua(credentials.salt)
    };\n\t["server_key"] = "${hex(credentials.serverKey)}";\n\t["stored_key"] = "${
      hex(credentials.storedKey)
    }";\n};\n`,
  );
}

/** Derives SCRAM-SHA-1 keys for `password` and writes the account (see writeProsodyAccount). */
async function writeAccount(
  dataDir: string,
  domain: string,
  user: string,
  password: string,
): Promise<void> {
  const salt = crypto.randomUUID();
  const credentials = await deriveCredentials(password, {
    hash: "SHA-1",
    salt: utf8(salt),
    iterations: ACCOUNT_ITERATIONS,
  });
  await writeProsodyAccount(dataDir, domain, user, { ...credentials, salt });
}
