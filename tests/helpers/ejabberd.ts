// Starts a throwaway Debian ejabberd for s2s interop tests: its own config, Mnesia spool, log,
// HOME, node name and cookie in a temporary directory, no epmd, and our test DNS responder.

import { join } from "node:path";
import {
  freePorts,
  type PeerServer,
  supervise,
  waitForListeners,
  waitForLogLine,
} from "./supervised_process.ts";

/** Where Debian installs ejabberd's control script (its ERL_LIBS is read from it). */
export const EJABBERDCTL = "/usr/sbin/ejabberdctl";
const ERL = "erl";
const INSTALL_HINT = "run scripts/install-test-deps as root (or: sudo apt-get install ejabberd)";
/** Printed by the boot expression once accounts exist; the harness waits for it. */
const READY_MARKER = "lilt-harness: ejabberd ready";
const FAILED_MARKER = "lilt-harness: ejabberd failed";

/** ejabberd's `loglevel` values. */
export type EjabberdLogLevel =
  | "none"
  | "emergency"
  | "alert"
  | "critical"
  | "error"
  | "warning"
  | "notice"
  | "info"
  | "debug";

/** Options for `startEjabberd`. */
export interface EjabberdOptions {
  /** The one host ejabberd serves. */
  domain: string;
  /**
   * Our DNS responder (tests/helpers/dns_responder.ts), given to Erlang's resolver by an
   * inetrc file (ERL_INETRC) that reads no /etc/resolv.conf and no /etc/hosts.
   *
   * ejabberd 23.01 looks up SRV records with `inet_res` (honours the inetrc) but resolves SRV
   * targets and fallback hosts with `net:getaddrinfo`, i.e. the C library, which never asks
   * the responder: publish SRV records whose target is an IP literal such as "127.0.0.1".
   */
  dns: { address?: string; port: number };
  /** PEM certificate for `domain` (served on c2s and s2s, `certfiles`). */
  certFile: string;
  /** PEM private key of `certFile`. */
  keyFile: string;
  /** Trust anchors (PEM) for peers' certificates on s2s (`ca_file`). */
  caFile?: string;
  /** Accounts created at boot: local part -> password. */
  users?: Record<string, string>;
  /** `s2s_use_starttls` (default "required"). */
  s2sUseStarttls?: "false" | "optional" | "required";
  /**
   * Load mod_s2s_dialback (default true). With it, ejabberd does not reject a peer whose
   * certificate does not verify but falls back to dialback; without it, it only trusts
   * certificates.
   */
  dialback?: boolean;
  /** `loglevel` (default "debug": every stanza sent and received is logged). */
  logLevel?: EjabberdLogLevel;
  /** More modules, as YAML lines under `modules:` (e.g. `"mod_vcard: {}"`). */
  modules?: string[];
  /** YAML appended at the top level (options not covered above). */
  extraConfig?: string;
  /** How long to wait for ejabberd to listen, in ms (default 30000). */
  startTimeoutMs?: number;
  /** Keep the temporary directory after `stop()` (for debugging a failing test). */
  keepDir?: boolean;
}

/** A running ejabberd started by `startEjabberd` (`pid` is the node's beam.smp). */
export interface EjabberdInstance extends PeerServer {
  /** The Erlang node name, unique per instance (e.g. `lilt_ejabberd_1a2b3c4d@localhost`). */
  readonly node: string;
}

/** Modules the harness loads: IM over c2s (presence is ejabberd's core) plus federation. */
export const EJABBERD_MODULES: readonly string[] = [
  "mod_roster",
  "mod_disco",
  "mod_ping",
  "mod_offline",
];

/**
 * The directory holding ejabberd's Erlang applications: the ERL_LIBS Debian's ejabberdctl
 * sets. Throws, saying how to install it, when ejabberd is missing.
 */
export async function ejabberdLibs(): Promise<string> {
  let ctl: string;
  try {
    ctl = await Deno.readTextFile(EJABBERDCTL);
  } catch {
    throw new Error(`Debian's ejabberd is missing (${EJABBERDCTL}): ${INSTALL_HINT}`);
  }
  const libs = /^ERL_LIBS=['"]?([^'"\s]+)/m.exec(ctl)?.[1];
  if (!libs) throw new Error(`Cannot find ERL_LIBS in ${EJABBERDCTL}: ${INSTALL_HINT}`);
  try {
    for await (const entry of Deno.readDir(libs)) {
      if (entry.name.startsWith("ejabberd-")) return libs;
    }
  } catch { /* reported below */ }
  throw new Error(
    `Expected ejabberd's Erlang applications in ${libs}, found none: ${INSTALL_HINT}`,
  );
}

/**
 * Starts ejabberd as its own Erlang node with a generated config in a fresh temporary directory,
 * creates `users`, and resolves once its c2s and s2s ports accept connections.
 *
 * @example
 * ```ts
 * const dns = await startDnsResponder();
 * await using ejabberd = await startEjabberd({
 *   domain: "ejabberd.test",
 *   dns: { port: dns.port },
 *   certFile, keyFile, caFile,
 *   users: { eve: "secret" },
 * });
 * dns.set("_xmpp-server._tcp.ejabberd.test", {
 *   srv: [{ priority: 0, weight: 0, port: ejabberd.s2sPort, target: "ejabberd.test" }],
 * });
 * ```
 */
export async function startEjabberd(options: EjabberdOptions): Promise<EjabberdInstance> {
  const libs = await ejabberdLibs();
  const dir = await Deno.makeTempDir({ prefix: "lilt-ejabberd-" });
  try {
    return await launch(dir, libs, options);
  } catch (error) {
    if (!options.keepDir) await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
}

/** Erlang distribution of one instance: a fixed port instead of epmd, a random cookie. */
interface Distribution {
  node: string;
  cookie: string;
  port: number;
  env: Record<string, string>;
}

/** Arguments that keep a node off epmd: it neither starts nor asks one (OTP 23+). */
function distributionArgs(dist: Distribution, name: string): string[] {
  return [
    "-sname",
    name,
    "-setcookie",
    dist.cookie,
    "-start_epmd",
    "false",
    "-erl_epmd_port",
    String(dist.port),
    "-kernel",
    "inet_dist_use_interface",
    "{127,0,0,1}",
  ];
}

async function launch(
  dir: string,
  libs: string,
  options: EjabberdOptions,
): Promise<EjabberdInstance> {
  const spool = join(dir, "spool");
  const home = join(dir, "home");
  const logDir = join(dir, "log");
  await Deno.mkdir(spool, { recursive: true });
  await Deno.mkdir(home, { recursive: true });
  await Deno.mkdir(logDir, { recursive: true });
  const logFile = join(logDir, "ejabberd.log");
  const configFile = join(dir, "ejabberd.yml");
  const inetrc = join(dir, "inetrc");
  const ports = freePorts(3);
  const [c2sPort, s2sPort] = ports;
  await Deno.writeTextFile(configFile, ejabberdConfig(options, { c2sPort, s2sPort }));
  await Deno.writeTextFile(inetrc, inetrcTerms(options.dns));
  const suffix = hex(crypto.getRandomValues(new Uint8Array(4)));
  const dist: Distribution = {
    node: `lilt_ejabberd_${suffix}@localhost`,
    cookie: hex(crypto.getRandomValues(new Uint8Array(16))),
    port: ports[2],
    env: {
      HOME: home,
      ERL_LIBS: libs,
      ERL_CRASH_DUMP: join(dir, "erl_crash.dump"),
      ERL_CRASH_DUMP_BYTES: "0",
      EJABBERD_LOG_PATH: logFile,
      // ejabberdctl's values
      ERL_MAX_PORTS: "32000",
      ERL_MAX_ETS_TABLES: "1400",
    },
  };

  const command = new Deno.Command(ERL, {
    args: [
      ...distributionArgs(dist, dist.node),
      "-noinput",
      "-mnesia",
      "dir",
      JSON.stringify(spool),
      "-ejabberd",
      "config",
      JSON.stringify(configFile),
      "log_path",
      JSON.stringify(logFile),
      "-s",
      "ejabberd",
      "-eval",
      bootExpression(options.domain, options.users ?? {}),
    ],
    cwd: dir,
    env: { ...dist.env, ERL_INETRC: inetrc },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
  let child: Deno.ChildProcess;
  try {
    child = command.spawn();
  } catch (error) {
    throw new Error(`Cannot run Erlang's ${ERL} (${(error as Error).message}): ${INSTALL_HINT}`);
  }
  const proc = supervise(child);
  let stopping: Promise<void> | undefined;
  const readLog = () => Deno.readTextFile(logFile).catch(() => "");
  const stop = () =>
    stopping ??= (async () => {
      await proc.stop();
      if (!options.keepDir) await Deno.remove(dir, { recursive: true }).catch(() => {});
    })();

  try {
    const deadline = Date.now() + (options.startTimeoutMs ?? 30_000);
    for (;;) {
      if (proc.output().includes(FAILED_MARKER)) {
        throw new Error("ejabberd could not create accounts");
      }
      if (proc.output().includes(READY_MARKER)) break;
      if (proc.exitStatus() !== undefined) {
        throw new Error(`ejabberd exited with code ${proc.exitStatus()!.code}`);
      }
      if (Date.now() >= deadline) throw new Error("ejabberd did not start in time");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await waitForListeners(
      { name: "ejabberd", process: proc },
      "127.0.0.1",
      [c2sPort, s2sPort],
      deadline,
    );
  } catch (error) {
    const tail = (await readLog()).slice(-3000);
    await stop();
    throw new Error(
      `${(error as Error).message}\n--- ejabberd output ---\n${proc.output().slice(-3000)}` +
        `\n--- ejabberd log ---\n${tail}`,
    );
  }

  return {
    domain: options.domain,
    pid: child.pid,
    node: dist.node,
    c2sPort,
    s2sPort,
    dir,
    configFile,
    logFile,
    log: readLog,
    waitForLog: (pattern: RegExp, timeoutMs?: number, from?: number) =>
      waitForLogLine({ name: "ejabberd", read: readLog, process: proc }, pattern, timeoutMs, from),
    register: (user, password) => registerOverDistribution(dist, options.domain, user, password),
    output: proc.output,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

/**
 * Erlang run once ejabberd has started (`-s ejabberd` returns after the application and its
 * listeners are up): registers the accounts, then prints the marker the harness waits for.
 */
function bootExpression(domain: string, users: Record<string, string>): string {
  const accounts = Object.entries(users)
    .map(([user, password]) => `{${erlBinary(user)}, ${erlBinary(password)}}`)
    .join(", ");
  return `Failed = [{U, R} || {U, P} <- [${accounts}],
    R <- [ejabberd_auth:try_register(U, ${erlBinary(domain)}, P)], R =/= ok],
case Failed of
  [] -> io:format("~s~n", [${erlString(READY_MARKER)}]);
  _ -> io:format("~s: ~p~n", [${erlString(FAILED_MARKER)}, Failed])
end.`;
}

/** Registers one account from a hidden node that connects on the server's fixed port. */
async function registerOverDistribution(
  dist: Distribution,
  domain: string,
  user: string,
  password: string,
): Promise<void> {
  const name = `lilt_ejabberd_ctl_${hex(crypto.getRandomValues(new Uint8Array(4)))}@localhost`;
  const expression = `R = rpc:call('${dist.node}', ejabberd_auth, try_register,
    [${erlBinary(user)}, ${erlBinary(domain)}, ${erlBinary(password)}], 30000),
io:format("~p~n", [R]), halt(case R of ok -> 0; _ -> 1 end).`;
  const out = await new Deno.Command(ERL, {
    args: [
      ...distributionArgs(dist, name),
      "-dist_listen",
      "false",
      "-hidden",
      "-noinput",
      "-eval",
      expression,
    ],
    env: dist.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    throw new Error(`Cannot register ${user}@${domain} on ejabberd: ${text.trim()}`);
  }
}

/**
 * Erlang resolver configuration: only our responder, no resolv.conf or hosts file (both
 * would be re-read and could override it), `localhost` for the node name.
 */
function inetrcTerms(dns: EjabberdOptions["dns"]): string {
  const ip = (dns.address ?? "127.0.0.1").split(".").join(",");
  // The machine's own name too: ejabberd looks it up at boot, which would only ask the responder.
  const names = ["localhost", ...(hostname() ? [hostname()] : [])];
  return `{resolv_conf, ""}.
{hosts_file, ""}.
{host, {127,0,0,1}, [${names.map(erlString).join(", ")}]}.
{nameserver, {${ip}}, ${dns.port}}.
{lookup, [file, dns]}.
{timeout, 2000}.
{retry, 1}.
`;
}

/** ejabberd.yml: one host, c2s with STARTTLS required, s2s in and out, debug log. */
function ejabberdConfig(o: EjabberdOptions, p: { c2sPort: number; s2sPort: number }): string {
  const q = JSON.stringify;
  const modules = [
    ...EJABBERD_MODULES.map((name) => `${name}: {}`),
    ...(o.dialback ?? true ? ["mod_s2s_dialback: {}"] : []),
    ...(o.modules ?? []),
  ];
  return `# generated by tests/helpers/ejabberd.ts
hosts: [${q(o.domain)}]
loglevel: ${o.logLevel ?? "debug"}
log_rotate_count: 0
hide_sensitive_log_data: false
certfiles: [${q(o.certFile)}, ${q(o.keyFile)}]
${o.caFile ? `ca_file: ${q(o.caFile)}` : ""}
acme:
  auto: false
default_db: mnesia
auth_method: [internal]
auth_password_format: scram
auth_scram_hash: sha
s2s_access: all
s2s_use_starttls: ${o.s2sUseStarttls ?? "required"}
s2s_dns_timeout: 2
s2s_dns_retries: 1
outgoing_s2s_families: [ipv4]
listen:
  - port: ${p.c2sPort}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls: true
    starttls_required: true
    access: all
  - port: ${p.s2sPort}
    ip: "127.0.0.1"
    module: ejabberd_s2s_in
modules:
${modules.map((line) => `  ${line}`).join("\n")}
${o.extraConfig ?? ""}
`;
}

function hostname(): string {
  try {
    return Deno.hostname();
  } catch {
    return "";
  }
}

function erlString(text: string): string {
  return JSON.stringify(text);
}

/** An Erlang UTF-8 binary literal. */
function erlBinary(text: string): string {
  return `<<${erlString(text)}/utf8>>`;
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
