// The `lilt` command line: start the server, check the configuration, manage accounts,
// print the version. Each command has --help.

import { resolve } from "node:path";
import { isIP } from "node:net";
import { parseArgs, type ParseArgsOptionDescriptor } from "node:util";
import { AccountStore } from "./core/auth/accounts.ts";
import { checkRoleConfig } from "./core/auth/roles.ts";
import { describeOutcome, importCertificates } from "./core/cert_import.ts";
import {
  CHECK_PARTS,
  type CheckPart,
  formatCheckProblem,
  formatCheckSummary,
  isCheckPart,
  runCheck,
} from "./core/check/all.ts";
import { type Config, formatProblem, loadConfig, readKeyFile } from "./core/config.ts";
import type { OptionSpec } from "./core/config_schema.ts";
import { findConfigFile } from "./core/config_search.ts";
import { sourceTreeRoot } from "./core/source_tree.ts";
import { JidError, parseJid } from "./core/jid.ts";
import { loadTrustStore } from "./core/net/peer_certificate.ts";
import { checkHostCertificate } from "./core/net/certificate_check.ts";
import type { OptionChange } from "./core/config_changes.ts";
import { federationConfigured, s2sTrustOptions } from "./core/s2s/policy.ts";
import { configureLogging, configureSilentLogging, getLogger, reopenLogFiles } from "./core/log.ts";
import { Server } from "./core/server.ts";
import { notifySystemd } from "./core/systemd_notify.ts";
import { LILT_VERSION } from "./core/version.ts";
import { Database, storageOptions } from "./core/storage/database.ts";
import { Storage } from "./core/storage/stores.ts";
import { backupDatabase, isServerRunning, restoreDatabase } from "./core/storage/backup.ts";
import { convertStore } from "./core/storage/encryption.ts";
import { builtinModules } from "./mod/builtin.ts";
import {
  MIGRATE_OPTION_NAMES,
  MIGRATE_OPTIONS,
  parseMigrateArgs,
  runStorageMigrate,
} from "./cli/storage_migrate.ts";
import { exportXep227 } from "./cli/migrate/xep227_export.ts";
import { importXep227 } from "./cli/migrate/xep227_import.ts";
import { importProsody } from "./cli/migrate/prosody_import.ts";
import { MAX_HISTORY as MUC_MAX_HISTORY } from "./mod/muc.ts";
import { type AdminSocket, startAdminSocket } from "./shell/admin_socket.ts";
import { AdminClient, runShell } from "./shell/client.ts";
import { promptNewSecret } from "./shell/prompt.ts";
import { type PendingChanges, reloadConfiguration } from "./shell/reload.ts";
import { builtinSections } from "./shell/sections/all.ts";
import { setShutdownHandler } from "./shell/sections/server.ts";

const VERSION = LILT_VERSION;

const HELP: Record<string, string> = {
  main: `Lilt ${VERSION}: an XMPP server

Usage: lilt COMMAND [OPTIONS]

Commands:
  start [-c FILE]                 run the server
  shell [SECTION COMMAND ARGS...] [--json] [-c FILE]
                                  admin shell of the running server (REPL without a command)
  check config|certs|dns|connectivity|all [--address IP]... [-c FILE]
                                  validate the configuration, certificates, DNS, listeners
  user add|passwd|del JID [-c FILE]
                                  manage accounts (works while the server runs)
  cert import DIR... [--no-reload] [-c FILE]
                                  copy certificates for the hosts from certbot's tree or PEM
                                  files into data_dir/certs and reload the running server
  backup FILE [-c FILE]           write a verified snapshot of the store (works while it runs)
  restore FILE [-c FILE]          replace the store with a backup (server stopped)
  export xep227 FILE [-c FILE]    write every account and its data as a XEP-0227 file
  import xep227 FILE [--overwrite] [-c FILE]
                                  read accounts from a XEP-0227 file (server stopped)
  import prosody DATA_DIR [--storage internal|sql] [--overwrite] [-c FILE]
                                  read accounts from Prosody 0.12's data (server stopped)
  storage encrypt|decrypt|rekey [--new-key-file FILE] [-c FILE]
                                  encrypt the store, decrypt it, change its key (server stopped)
  storage migrate --to postgresql|sqlite [--url URL|--path FILE] [-c FILE]
                                  copy the store into PostgreSQL or back into a file (stopped)
  version                         print the version

Every command accepts --help. Without -c, every command reads the first that exists of
$LILT_CONFIG, ./lilt.toml, <lilt>/lilt.toml, /etc/lilt/lilt.toml, ./conf.example.toml and
<lilt>/conf.example.toml, where <lilt> is the directory of main.ts (so a cron job, run from
another directory, finds what 'lilt start' found there; a compiled binary or the bundle skips
the <lilt> paths); when none exists it says which were tried.`,
  start: `Usage: lilt start [-c FILE]

Runs the server in the foreground. SIGHUP reloads the configuration (as 'lilt shell config
reload' does: changed options apply at once, except those that need a restart, which keep
their running values and are logged); SIGTERM and SIGINT close every stream with
<system-shutdown/> and exit.`,
  shell: `Usage: lilt shell [-c FILE]
       lilt shell SECTION COMMAND [ARGS...] [--json] [-c FILE]

Talks to the running server over its admin socket (option admin_socket, default
<data_dir>/lilt.sock; only the server's user and root may connect).

Without a command: an interactive shell with history (<data_dir>/.shell_history), tab
completion of sections, commands, JIDs and hosts, 'help', 'help SECTION' and 'exit'.
With a command: runs it, prints the message or table (or JSON with --json) and exits 0 on
success, 1 on failure (the error goes to stderr). New passwords are prompted for twice
without echo, or read from the first line of standard input when it is not a terminal.
Relative paths (server backup FILE, user import FILE) are taken from your directory;
'user import -' reads the accounts from standard input. Streaming commands (watch ...)
print one line per event (JSON lines with --json) and do not read standard input: they
stop on Ctrl-C or SIGTERM (exit 0) or when the server goes away (exit 1).

Quote arguments with spaces: lilt shell announce online localhost "Back in 5 minutes"`,
  check: `Usage: lilt check config [-c FILE]
       lilt check certs [-c FILE]
       lilt check dns [--address IP]... [-c FILE]
       lilt check connectivity [-c FILE]
       lilt check all [--address IP]... [-c FILE]

config validates the configuration. Prints one 'file:line: severity: message' line per problem and
exits 1 when there are errors (warnings alone exit 0).

Besides the options, it loads each configured certificate and key as a start would: a file
that is missing, unreadable or unparsable, a key that does not match, a certificate that does
not cover its host or has expired is an error; expiry within 30 days and a self-signed
certificate are warnings. Hosts without certificate files get a self-signed one at start.
With storage.key_file set, the key file must exist, be readable by its owner only (0600 or
0400) and not be empty; storage.key and storage.key_file cannot both be set.
When the server runs on this file, options that differ from its running values but need a
restart (listeners, data_dir, admin_socket, storage, s2s_dialback_secret) are warnings:
'config reload' keeps their running values.

dns asks the resolver the server uses (dns_nameservers, else the system's) whether each
host has A/AAAA records and _xmpp-client._tcp/_xmpps-client._tcp SRV records that point at
this server's addresses and the configured c2s ports; with federation also
_xmpp-server._tcp/_xmpps-server._tcp, and that remote servers can find every component (SRV
or A/AAAA). This server's addresses are the listeners' own, or the machine's for "*"; behind
NAT name the public address with --address IP (repeatable).
connectivity connects to every configured listener (c2s, direct TLS, s2s, components, HTTP,
HTTPS; loopback for "*") of the server running on this configuration.
certs checks the certificate each host and component would present: readable, key matching,
chain to a trusted root ($SSL_CERT_FILE adds one), names covering the domain, expiry.
all runs config, then certs, dns and connectivity.
Each problem is one 'PART: error|warning: message' line with the fix (for DNS the zone
record to add); each part ends with 'PART: OK' or its counts. Exit status 1 on errors,
0 with warnings only.`,
  user: `Usage: lilt user add JID [-c FILE]
       lilt user passwd JID [-c FILE]
       lilt user del JID [-c FILE]

add creates an account, passwd changes its password, del deletes it.
The password is prompted for without echo on a terminal, or read from the first line of
standard input otherwise (for scripts). While the server runs these go through its admin
shell (user create / password / delete: deletion then honours deletion_grace_period);
otherwise they change the database directly and del removes the account and its data.`,
  cert: `Usage: lilt cert import DIR... [--no-reload] [-c FILE]

Finds a certificate for each configured host and component in the directories: a certbot
tree (/etc/letsencrypt: its live/DOMAIN/fullchain.pem and privkey.pem) or any directory of
PEM files. A certificate counts for a domain when its subjectAltName DNS names cover it
(wildcards included); its key is found by its public key, in any file; the one valid now with
the latest expiry wins. Each is copied to <data_dir>/certs/DOMAIN.crt and DOMAIN.key (mode
0600; when run as root, owned by data_dir's owner), where the server reads a domain's
certificate when the configuration sets no certificate/key for it (set ones win: remove them
to use the imported files).

Prints one line per host and component, imported or not covered, and exits 1 when no domain
is covered. When something changed and the server runs (its admin socket answers), it is told
to reload its certificates (as 'lilt shell cert reload'; open sessions stay); --no-reload
leaves that to you ('lilt shell cert reload', or SIGHUP: systemctl reload lilt).

As a certbot deploy hook:
  certbot renew --deploy-hook "lilt cert import /etc/letsencrypt"`,
  backup: `Usage: lilt backup FILE [-c FILE]

Writes a consistent snapshot of the store to FILE while the server keeps serving (it reads
the database file directly). The copy is written under a temporary name, checked with
PRAGMA integrity_check and renamed into place. Prints nothing on success; on failure one
line on stderr and exit status 1, so a cron job mails only problems.`,
  restore: `Usage: lilt restore FILE [-c FILE]

Replaces the store with the backup FILE. Refuses while the server runs (its admin socket
answers). FILE is verified first (integrity check and Lilt schema); the current store and
its -wal/-shm files are kept aside as <store>.replaced-<timestamp>.`,
  storage: `Usage: lilt storage encrypt [-c FILE]
       lilt storage decrypt [-c FILE]
       lilt storage rekey --new-key-file FILE [-c FILE]
       lilt storage migrate --to postgresql --url URL [--password-file F] [--schema S] [-c FILE]
       lilt storage migrate --to sqlite --path FILE [-c FILE]

encrypt, decrypt and rekey rewrite the store (storage.path) with SQLCipher 4; refused while
the server runs (its admin socket answers). The key is the configured one (storage.key_file,
or storage.key); it never goes on the command line.
  encrypt  a plain store becomes encrypted with the configured key (set key_file first)
  decrypt  the encrypted store becomes plain; then remove storage.key_file/key from the config
  rekey    the store, encrypted with the configured key, is encrypted with the key read from
           --new-key-file FILE (same rules as key_file: mode 0600, not empty); then point
           storage.key_file at FILE
The new file is written next to the store, verified (integrity check, Lilt schema) and synced,
then renamed over it: a crash midway leaves the old store whole. The old file is not kept (a
plain or old-key copy would undo the change): take 'lilt backup' first to keep one. Existing
backups keep the key (or plaintext) they were written with. Needs SQLCipher 4: run
scripts/sqlcipher/build.

migrate copies the whole store into another database; refused while the server runs.
--to postgresql copies the embedded store (storage.path, decrypted with the configured key)
into the PostgreSQL database at URL (no password in it: --password-file F holds it), in the
schema S when given; --to sqlite copies the configured PostgreSQL store into the new file
FILE. The target must hold no rows (an empty schema, a new file). It gets Lilt's schema and
every module schema the source has through the migrations, then every table's rows, in
batches of one transaction each. Then both sides are counted, table by table: a difference
is an error (exit status 1). The source keeps its data; the output says what to change in
the [storage] table to use the copy.`,
  export: `Usage: lilt export xep227 FILE [-c FILE]

Writes every account of the configured hosts to FILE in the XEP-0227 format (urn:xmpp:pie:0):
SCRAM-SHA-1 and SCRAM-SHA-256 credentials (never passwords), rosters with groups and pending
subscriptions, vCards, private XML, offline messages, blocklists, PEP nodes with their
configuration, affiliations and items, and the message archive. FILE gets mode 0600 (it holds
credential hashes) and is written under a temporary name, then renamed; its directory must
exist. Works while the server runs (one read transaction: a consistent snapshot). Accounts
whose deletion is pending are left out, with a warning.`,
  import: `Usage: lilt import xep227 FILE [--overwrite] [-c FILE]
       lilt import prosody DATA_DIR [--storage internal|sql] [--overwrite] [-c FILE]

Reads accounts from a XEP-0227 file (urn:xmpp:pie:0, or the older namespace; XIncludes with
relative paths are followed) into the store: credentials (SCRAM-SHA-1/-256 keys carried over,
so users keep their passwords; a plaintext password attribute is hashed), rosters, pending
subscription requests, vCards, private XML, offline messages, blocklists, PEP nodes and items,
and the message archive. Refused while the server runs (its admin socket answers): stop it
first. Every <host/> must be a configured host.

All or nothing: a malformed file (the error names file:line and what is wrong) or a failure
while writing leaves the store as it was. An account that exists already is skipped with a
warning and keeps its data; --overwrite replaces it (its stored data is deleted first). Data
Lilt has no place for is reported as a warning (file:line) and left out.

import prosody reads a Prosody 0.12 data directory (its data_path): internal file storage
(HOST/accounts/USER.dat, roster/, vcard/, private/, offline/, pep/, pep_NODE/, blocklist/) or SQL
storage in DATA_DIR/prosody.sqlite (DATA_DIR may also name the SQLite file); --storage says which
when both are there. Carried over: SCRAM-SHA-1 keys (users keep their passwords; Prosody keeps no
SCRAM-SHA-256 keys unless password_hash was SHA-256, so those users log in with SCRAM-SHA-1 or
PLAIN until they change their password), rosters with groups and pending subscriptions, vCards
(vcard-temp), private XML (XEP-0048 bookmarks move to PEP on first use), offline messages, PEP
nodes with their configuration and items (XEP-0402 bookmarks, nicknames, avatars...) and
blocklists; and the persistent rooms of a Prosody MUC component whose domain is a [[component]]
with the muc module here (configuration, affiliations, subject). Accounts of a Prosody host that
is not configured here, and rooms of other MUC hosts, are skipped with a warning; message archives
are not read. Same rules as above: refused while the server runs, all or nothing, existing
accounts and rooms skipped unless --overwrite.`,
  version: `Usage: lilt version

Prints the version of Lilt and of the Deno runtime.`,
};

/** Option declarations of every built-in module, so the checker knows their keys. */
function moduleOptions(): Record<string, OptionSpec> {
  const all: Record<string, OptionSpec> = {};
  for (const file of Object.values(builtinModules)) Object.assign(all, file.options ?? {});
  return all;
}

/**
 * Lilt's own directory (where main.ts is) when it runs from source; a compiled binary or the
 * bundle has none to look in.
 */
const INSTALL_DIR = sourceTreeRoot();

/** Picks the configuration file when -c was not given; throws naming the paths tried. */
async function defaultConfigPath(): Promise<string> {
  const result = await findConfigFile({
    env: Deno.env.get("LILT_CONFIG"),
    cwd: Deno.cwd(),
    installDir: INSTALL_DIR,
  });
  if (result.found) return result.path;
  throw new Error(
    `No configuration file found (tried ${result.tried.join(", ")}): ` +
      "give one with -c FILE or $LILT_CONFIG",
  );
}

/** Loads and validates the configuration, printing problems; undefined on errors. */
async function readConfig(path: string | undefined): Promise<Config | undefined> {
  const file = path ?? await defaultConfigPath();
  const { config, problems } = loadConfig(file, { moduleOptions: moduleOptions() });
  const roleProblems = config ? checkRoleConfig(config) : [];
  for (const problem of [...problems, ...roleProblems]) console.error(formatProblem(problem));
  return roleProblems.some((p) => p.severity === "error") ? undefined : config;
}

/**
 * Parses a command's arguments: -c/--config, -h/--help and the command's own `extra` options.
 * A malformed or unknown option prints the reason and the command's usage, and the exit status
 * is returned instead.
 */
function parseCommand<const T extends Record<string, ParseArgsOptionDescriptor>>(
  topic: string,
  args: string[],
  extra: T,
) {
  try {
    return parseArgs({
      args,
      allowPositionals: true,
      options: {
        config: { type: "string", short: "c" },
        help: { type: "boolean", short: "h" },
        ...extra,
      } as const,
    });
  } catch (error) {
    console.error(`lilt: ${(error as Error).message}\n`);
    return help(topic, true);
  }
}

function parse(args: string[]) {
  return parseArgs({
    args,
    allowPositionals: true,
    options: {
      config: { type: "string", short: "c" },
      help: { type: "boolean", short: "h" },
    },
  });
}

async function cmdStart(args: string[]): Promise<number> {
  const { values } = parse(args);
  if (values.help) return help("start");
  const config = await readConfig(values.config);
  if (!config) return 1;
  // SIGHUP is taken from here on: one that comes while the server starts (after its listeners
  // are logged, before the admin socket is up) is applied once it runs, instead of ending the
  // process (the signal's default action). The same path as the shell's `config reload`:
  // problems and failures are logged there; the log file is opened again first, even when the
  // new file has errors (logrotate).
  const hup: { server?: Server; pending: boolean } = { pending: false };
  Deno.addSignalListener("SIGHUP", () => {
    reopenLogFiles();
    if (hup.server) void reloadConfiguration(hup.server);
    else hup.pending = true;
  });
  let server: Server;
  try {
    server = await Server.start(config, { modules: builtinModules });
  } catch (error) {
    console.error(`lilt: cannot start: ${(error as Error).message}`);
    return 1;
  }
  server.commands.add(builtinSections());
  let admin: AdminSocket;
  try {
    admin = await startAdminSocket(server, adminSocketPath(config));
  } catch (error) {
    await server.shutdown();
    console.error(`lilt: cannot start: ${(error as Error).message}`);
    return 1;
  }
  const log = getLogger("main");
  // Last line of defence: a bug in one code path is logged, it does not stop the server.
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    log.error("Unhandled promise rejection: {error}", { error: event.reason });
  });
  globalThis.addEventListener("error", (event) => {
    event.preventDefault();
    log.error("Uncaught exception: {error}", { error: event.error });
  });
  hup.server = server;
  if (hup.pending) void reloadConfiguration(server);
  const stop = async (reason?: string) => {
    notifySystemd("STOPPING=1");
    log.info("Shutting down");
    await admin.close();
    await server.shutdown(reason);
    Deno.exit(0);
  };
  // `server shutdown` in the admin shell ends the process the same way a signal does.
  setShutdownHandler((_server, reason) => stop(reason));
  Deno.addSignalListener("SIGTERM", () => void stop());
  Deno.addSignalListener("SIGINT", () => void stop());
  const ports = server.listeners.map((l) => `${l.kind} ${l.host}:${l.port}`).join(", ");
  console.error(`lilt: serving ${config.hosts.map((h) => h.domain).join(", ")} (${ports})`);
  // Under systemd (Type=notify) the unit becomes active now that the listeners are open.
  const notifyProblem = notifySystemd("READY=1\nSTATUS=Serving " + ports);
  if (notifyProblem) log.warn("{problem}", { problem: notifyProblem });
  // Keep running until a signal arrives.
  await new Promise(() => {});
  return 0;
}

/** The admin socket's absolute path: option admin_socket, relative to data_dir. */
function adminSocketPath(config: Config): string {
  return resolve(config.dataDir, config.get<string>("admin_socket") ?? "lilt.sock");
}

/**
 * Splits `lilt shell` arguments: -c/--config, --json and --help are ours; everything else
 * (including options such as `--with` meant for a command) is the command line. `--` ends
 * our options.
 */
function parseShellArgs(args: string[]) {
  const result = { config: undefined as string | undefined, json: false, help: false };
  const command: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      command.push(...args.slice(i + 1));
      break;
    } else if (arg === "-c" || arg === "--config") result.config = args[++i];
    else if (arg.startsWith("--config=")) result.config = arg.slice("--config=".length);
    else if (arg === "--json") result.json = true;
    else if (arg === "-h" || arg === "--help") result.help = true;
    else command.push(arg);
  }
  return { ...result, command };
}

async function cmdShell(args: string[]): Promise<number> {
  const { config: file, json, help: wantsHelp, command } = parseShellArgs(args);
  if (wantsHelp) return help("shell");
  const config = await readConfig(file);
  if (!config) return 1;
  return await runShell({
    socketPath: adminSocketPath(config),
    historyPath: resolve(config.dataDir, ".shell_history"),
    command,
    json,
  });
}

async function cmdCheck(args: string[]): Promise<number> {
  const parsed = parseCommand("check", args, { address: { type: "string", multiple: true } });
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  const part = positionals[0] ?? "";
  if (values.help) return help("check");
  if (positionals.length !== 1 || !(part === "config" || part === "all" || isCheckPart(part))) {
    return help("check", true);
  }
  const addresses = values.address ?? [];
  const badAddress = addresses.find((a) => isIP(a) === 0);
  if (badAddress !== undefined) {
    console.error(`lilt: --address expects an IP address, found '${badAddress}'`);
    return 2;
  }
  const file = values.config ?? await defaultConfigPath();
  let config: Config | undefined;
  let failed = false;
  if (part === "config" || part === "all") {
    const checked = await checkConfigFile(file);
    config = checked.config;
    failed = !checked.ok;
    if (part === "config" || !config) return failed ? 1 : 0;
  } else {
    config = await readConfig(file);
    if (!config) return 1;
  }
  for (const each of part === "all" ? CHECK_PARTS : [part as CheckPart]) {
    const problems = await runCheck(each, config, { addresses });
    for (const problem of problems) console.error(formatCheckProblem(each, problem));
    console.log(formatCheckSummary(each, problems));
    if (problems.some((p) => p.level === "error")) failed = true;
  }
  return failed ? 1 : 0;
}

/**
 * `lilt check config`: the options, modules, trust anchors, certificates and pending restarts,
 * printed as file:line problems. `ok` is false on errors; `config` is absent when the file
 * could not be loaded at all.
 */
async function checkConfigFile(file: string): Promise<{ config?: Config; ok: boolean }> {
  const { config, problems } = loadConfig(file, { moduleOptions: moduleOptions() });
  for (const problem of problems) console.error(formatProblem(problem));
  if (!config) return { ok: false };
  const roleProblems = checkRoleConfig(config);
  for (const problem of roleProblems) console.error(formatProblem(problem));
  if (roleProblems.some((p) => p.severity === "error")) return { config, ok: false };
  const available = Object.keys(builtinModules).sort().join(", ");
  let errors = 0;
  const report = (line: number | undefined, message: string) => {
    errors++;
    console.error(
      formatProblem({ file: config.file, line: line ?? 0, severity: "error", message }),
    );
  };
  for (const host of config.hosts) {
    for (const name of host.modules) {
      if (name in builtinModules) continue;
      const line = config.lineOf(host.domain, "modules") ?? config.lineOf(undefined, "modules");
      report(line, `unknown module '${name}' for host '${host.domain}' (available: ${available})`);
    }
  }
  for (const c of config.components) {
    for (const name of c.modules) {
      if (name in builtinModules) continue;
      report(
        config.lineOf(c.domain, "modules") ?? config.lineOf(c.domain, "module") ?? c.line,
        `unknown module '${name}' for component '${c.domain}' (available: ${available})`,
      );
    }
  }
  // Trust anchors for remote servers are read at start; a bad file would stop the server.
  if (federationConfigured(config)) {
    try {
      s2sTrustOptions(config);
    } catch (error) {
      report(config.lineOf(undefined, "s2s_ca_files_only"), (error as Error).message);
    }
  }
  for (const caFile of config.get<string[]>("s2s_ca_files")) {
    try {
      await loadTrustStore({ caFiles: [caFile], system: false });
    } catch (error) {
      report(config.lineOf(undefined, "s2s_ca_files"), (error as Error).message);
    }
  }
  const warn = (line: number | undefined, message: string) =>
    console.error(
      formatProblem({ file: config.file, line: line ?? 0, severity: "warning", message }),
    );
  // The certificates a start would load, and whether they cover their hosts for long enough.
  for (const host of config.hosts) {
    const files = {
      certificate: config.hostOption(host.domain, "certificate"),
      key: config.hostOption(host.domain, "key"),
    };
    const line = config.lineOf(host.domain, "certificate") ?? host.line;
    for (const finding of await checkHostCertificate(host.domain, files)) {
      (finding.severity === "error" ? report : warn)(line, finding.message);
    }
  }
  // A running server keeps the options that need a restart: say which ones would wait.
  for (const change of await pendingRestarts(config)) {
    warn(
      change.line,
      `'${change.option}' differs from the running server's value and takes effect only ` +
        "when it restarts (config reload keeps the running value)",
    );
  }
  if (errors > 0) return { config, ok: false };
  console.log(`${config.file}: OK (${config.hosts.length} host(s))`);
  return { config, ok: true };
}

/**
 * The changes a reload of the running server would not apply, when a server runs on this very
 * file (its admin socket answers): asked with `config pending`. Empty otherwise.
 */
async function pendingRestarts(config: Config): Promise<OptionChange[]> {
  const socket = adminSocketPath(config);
  if (!await isServerRunning(socket)) return [];
  let client: AdminClient;
  try {
    client = await AdminClient.connect(socket);
  } catch {
    return [];
  }
  try {
    const reply = await client.request("config pending");
    if (!reply.ok) return [];
    const pending = reply.result.data as PendingChanges;
    if (pending.file !== config.file) return [];
    return pending.changes.filter((c) => c.reload === "restart");
  } finally {
    client.close();
  }
}

async function cmdUser(args: string[]): Promise<number> {
  const { values, positionals } = parse(args);
  const [action, jidText] = positionals;
  if (values.help) return help("user");
  if (!["add", "passwd", "del"].includes(action ?? "") || !jidText) return help("user", true);
  let jid;
  try {
    jid = parseJid(jidText);
  } catch (error) {
    console.error(`lilt: ${error instanceof JidError ? error.message : String(error)}`);
    return 1;
  }
  if (!jid.local || jid.resource !== undefined) {
    console.error(`lilt: '${jidText}' is not an account address (expected user@host)`);
    return 1;
  }
  const config = await readConfig(values.config);
  if (!config) return 1;
  if (!config.hosts.some((h) => h.domain === jid.domain)) {
    console.error(`lilt: '${jid.domain}' is not a host in ${config.file}`);
    return 1;
  }
  // While the server runs, go through its admin shell: the same commands operators use
  // (role defaults, deletion grace period, live sessions closed on delete).
  const socketPath = adminSocketPath(config);
  if (await isServerRunning(socketPath)) {
    const shellAction = { add: "create", passwd: "password", del: "delete" }[action]!;
    return await runShell({
      socketPath,
      historyPath: resolve(config.dataDir, ".shell_history"),
      command: ["user", shellAction, jid.bareString()],
    });
  }
  await configureSilentLogging(config.log);
  await Deno.mkdir(config.dataDir, { recursive: true, mode: 0o700 });
  const database = Database.open(storageOptions(config.storage));
  try {
    const accounts = new AccountStore(database, {
      hostIterations: (host) => config.hostOption(host, "scram_iterations"),
    });
    const user = jid.local;
    const exists = accounts.exists(jid.domain, user);
    if (action === "del") {
      if (!exists) {
        console.error(`lilt: no account ${jid.bareString()}`);
        return 1;
      }
      new Storage(database).deleteUser(jid.domain, user);
      accounts.delete(jid.domain, user);
      console.log(`Deleted ${jid.bareString()} and its data`);
      return 0;
    }
    if (action === "add" && exists) {
      console.error(`lilt: the account ${jid.bareString()} already exists`);
      return 1;
    }
    if (action === "passwd" && !exists) {
      console.error(`lilt: no account ${jid.bareString()}`);
      return 1;
    }
    const password = await promptNewSecret(`Password for ${jid.bareString()}: `);
    if (password === "") {
      console.error("lilt: the password is empty");
      return 1;
    }
    if (action === "add") await accounts.create(jid.domain, user, password);
    else await accounts.setPassword(jid.domain, user, password);
    console.log(`${action === "add" ? "Created" : "Changed the password of"} ${jid.bareString()}`);
    return 0;
  } catch (error) {
    console.error(`lilt: ${(error as Error).message}`);
    return 1;
  } finally {
    database.close();
  }
}

async function cmdCert(args: string[]): Promise<number> {
  const parsed = parseCommand("cert", args, { "no-reload": { type: "boolean" } });
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  if (values.help) return help("cert");
  const [action, ...directories] = positionals;
  if (action !== "import" || directories.length === 0) return help("cert", true);
  const config = await readConfig(values.config);
  if (!config) return 1;
  let result;
  try {
    result = await importCertificates(config, directories.map((d) => resolve(d)));
  } catch (error) {
    console.error(`lilt: cert import failed: ${(error as Error).message}`);
    return 1;
  }
  for (const line of result.skipped) console.error(`lilt: skipped ${line}`);
  for (const outcome of result.outcomes) console.log(describeOutcome(outcome));
  const covered = result.outcomes.filter((o) => o.status !== "missing");
  if (covered.length === 0) {
    console.error(
      `lilt: no certificate in ${directories.join(", ")} covers any host or component ` +
        `of ${config.file}: nothing imported`,
    );
    return 1;
  }
  if (!covered.some((o) => o.status === "imported")) return 0;
  const socket = adminSocketPath(config);
  const reloadHint = "'lilt shell cert reload' or 'systemctl reload lilt' (SIGHUP)";
  if (values["no-reload"]) {
    console.log(`Not reloading (--no-reload): the server takes them on ${reloadHint}`);
    return 0;
  }
  if (!await isServerRunning(socket)) {
    console.log(
      `No server answers on ${socket}: it uses them when it starts (if it runs elsewhere or ` +
        `as another user, run ${reloadHint})`,
    );
    return 0;
  }
  let client: AdminClient;
  try {
    client = await AdminClient.connect(socket);
  } catch (error) {
    console.error(
      `lilt: cannot reach the server to reload (${(error as Error).message}): run ${reloadHint}`,
    );
    return 1;
  }
  try {
    const reply = await client.request("cert reload");
    if (!reply.ok) {
      console.error(`lilt: the server did not reload its certificates: ${reply.error}`);
      return 1;
    }
    console.log(`Reloaded the running server's certificates:\n${reply.result.message ?? ""}`);
    return 0;
  } finally {
    client.close();
  }
}

async function cmdBackup(args: string[]): Promise<number> {
  const { values, positionals } = parse(args);
  if (values.help) return help("backup");
  if (positionals.length !== 1) return help("backup", true);
  const config = await readConfig(values.config);
  if (!config) return 1;
  if (embeddedStoreOnly(config, "backup", "pg_dump")) return 1;
  try {
    await backupDatabase(config.storage.path, positionals[0], { key: config.storage.key });
  } catch (error) {
    console.error(`lilt: backup failed: ${(error as Error).message}`);
    return 1;
  }
  return 0;
}

async function cmdRestore(args: string[]): Promise<number> {
  const { values, positionals } = parse(args);
  if (values.help) return help("restore");
  if (positionals.length !== 1) return help("restore", true);
  const config = await readConfig(values.config);
  if (!config) return 1;
  if (embeddedStoreOnly(config, "restore", "pg_restore")) return 1;
  if (await refusedWhileRunning(config, "restore")) return 1;
  try {
    const { replacedPath } = await restoreDatabase(positionals[0], config.storage.path, {
      key: config.storage.key,
    });
    const kept = replacedPath ? `; the previous store is at ${replacedPath}` : "";
    console.log(`Restored ${positionals[0]} into ${config.storage.path}${kept}`);
  } catch (error) {
    console.error(`lilt: restore failed: ${(error as Error).message}`);
    return 1;
  }
  return 0;
}

/**
 * Opens the configured store for a command that reads or writes accounts in bulk (export,
 * import), with the log kept off the console and out of the server's file; undefined, after
 * saying why on stderr ("lilt: <what> failed: …"), when it cannot be opened.
 */
async function openStoreFor(config: Config, what: string): Promise<Database | undefined> {
  await configureLogging({ ...config.log, console: false, file: "" });
  try {
    return Database.open(storageOptions(config.storage));
  } catch (error) {
    console.error(`lilt: ${what} failed: ${(error as Error).message}`);
    return undefined;
  }
}

/**
 * True, after saying so on stderr, when `config` stores its data in PostgreSQL: `command`
 * works on the embedded store's file, and PostgreSQL has its own `tool` for it.
 */
function embeddedStoreOnly(config: Config, command: string, tool: string): boolean {
  if (config.storage.driver !== "postgresql") return false;
  console.error(
    `lilt: ${command} works on the embedded store (storage.driver = "sqlite"); this server ` +
      `stores its data in PostgreSQL (${config.storage.url}): use ${tool} there`,
  );
  return true;
}

/**
 * True, after saying so on stderr, when the server of `config` runs (its admin socket answers):
 * `what` (a command working on the store offline) must wait until it is stopped.
 */
async function refusedWhileRunning(config: Config, what: string, why = ""): Promise<boolean> {
  const socket = adminSocketPath(config);
  if (!await isServerRunning(socket)) return false;
  console.error(
    `lilt: cannot ${what} while the server is running (its admin socket ${socket} answers)` +
      `${why ? `: ${why}` : ""}; stop it first`,
  );
  return true;
}

async function cmdStorage(args: string[]): Promise<number> {
  const parsed = parseCommand("storage", args, {
    "new-key-file": { type: "string" },
    ...MIGRATE_OPTIONS,
  });
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  if (values.help) return help("storage");
  const [action] = positionals;
  if (positionals.length !== 1 || !["encrypt", "decrypt", "rekey", "migrate"].includes(action)) {
    return help("storage", true);
  }
  if (action === "migrate") return await cmdStorageMigrate(values);
  const migrateOption = MIGRATE_OPTION_NAMES.find((name) => values[name] !== undefined);
  if (migrateOption !== undefined) {
    console.error(`lilt: --${migrateOption} is for storage migrate, not storage ${action}`);
    return 2;
  }
  const newKeyFile = values["new-key-file"];
  if ((action === "rekey") !== (newKeyFile !== undefined)) {
    console.error(
      action === "rekey"
        ? "lilt: storage rekey needs --new-key-file FILE (the new key is never an argument)"
        : `lilt: --new-key-file is for storage rekey, not storage ${action}`,
    );
    return 2;
  }
  const config = await readConfig(values.config);
  if (!config) return 1;
  if (embeddedStoreOnly(config, `storage ${action}`, "the database server's disk encryption")) {
    return 1;
  }
  if (await refusedWhileRunning(config, `${action} the store`)) return 1;
  const { path, key } = config.storage;
  const keySetting = config.storage.key_file
    ? `storage.key_file (${config.storage.key_file})`
    : "storage.key";
  if (key === "") {
    console.error(
      `lilt: storage ${action} needs the store's key in ${config.file}: set storage.key_file ` +
        "(a file with mode 0600 holding the passphrase)",
    );
    return 1;
  }
  let fromKey = key;
  let toKey = "";
  if (action === "encrypt") {
    fromKey = "";
    toKey = key;
  } else if (action === "rekey") {
    const read = readKeyFile(resolve(newKeyFile!));
    if (!("key" in read)) {
      console.error(`lilt: ${read.error.replace("storage.key_file", "--new-key-file")}`);
      return 1;
    }
    toKey = read.key;
  }
  try {
    await convertStore(path, { fromKey, toKey });
  } catch (error) {
    console.error(`lilt: storage ${action} failed: ${(error as Error).message}`);
    return 1;
  }
  if (action === "encrypt") {
    console.log(`Encrypted ${path} with the key of ${keySetting}`);
  } else if (action === "decrypt") {
    console.log(
      `Decrypted ${path}; remove ${keySetting} from ${config.file} before starting Lilt`,
    );
  } else {
    console.log(
      `Changed the key of ${path}; set storage.key_file = "${resolve(newKeyFile!)}" in ` +
        `${config.file} (or put the new key in the current key file) before starting Lilt`,
    );
  }
  return 0;
}

/** `lilt storage migrate`: the store copied into PostgreSQL or back into a file. */
async function cmdStorageMigrate(
  values: Parameters<typeof parseMigrateArgs>[0] & { config?: string; "new-key-file"?: string },
): Promise<number> {
  if (values["new-key-file"] !== undefined) {
    console.error("lilt: --new-key-file is for storage rekey, not storage migrate");
    return 2;
  }
  const request = parseMigrateArgs(values);
  if ("error" in request) {
    console.error(`lilt: ${request.error}`);
    return 2;
  }
  const config = await readConfig(values.config);
  if (!config) return 1;
  if (await refusedWhileRunning(config, "migrate the store")) return 1;
  return await runStorageMigrate(config, request, builtinModules);
}

async function cmdExport(args: string[]): Promise<number> {
  const { values, positionals } = parse(args);
  if (values.help) return help("export");
  if (positionals.length !== 2 || positionals[0] !== "xep227") return help("export", true);
  const config = await readConfig(values.config);
  if (!config) return 1;
  const path = config.storage.path;
  const embedded = config.storage.driver === "sqlite";
  if (embedded && !(await Deno.stat(path).then((s) => s.isFile, () => false))) {
    console.error(`lilt: export failed: there is no store at ${path}`);
    return 1;
  }
  const database = await openStoreFor(config, "export");
  if (!database) return 1;
  try {
    const result = await exportXep227(database, positionals[1], {
      hosts: config.hosts.map((host) => host.domain),
    });
    for (const warning of result.warnings) console.error(`lilt: warning: ${warning}`);
    const total = [...result.accounts.values()].reduce((a, b) => a + b, 0);
    const perHost = [...result.accounts].map(([host, n]) => `${n} of ${host}`).join(", ");
    console.log(`Exported ${total} accounts (${perHost}) to ${positionals[1]}`);
    return 0;
  } catch (error) {
    console.error(`lilt: export failed: ${(error as Error).message}`);
    return 1;
  } finally {
    database.close();
  }
}

async function cmdImport(args: string[]): Promise<number> {
  const parsed = parseCommand("import", args, {
    overwrite: { type: "boolean" },
    storage: { type: "string" },
  });
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  if (values.help) return help("import");
  const format = positionals[0];
  if (positionals.length !== 2 || (format !== "xep227" && format !== "prosody")) {
    return help("import", true);
  }
  const storageKind = values.storage ?? "auto";
  if (format !== "prosody" && values.storage !== undefined) {
    console.error("lilt: --storage is an option of 'import prosody' only");
    return 2;
  }
  if (storageKind !== "auto" && storageKind !== "internal" && storageKind !== "sql") {
    console.error(
      `lilt: --storage takes internal or sql (Prosody's backends), found '${storageKind}'`,
    );
    return 2;
  }
  const config = await readConfig(values.config);
  if (!config) return 1;
  const why = "it keeps rosters, blocklists and PEP services in memory";
  if (await refusedWhileRunning(config, "import", why)) return 1;
  const database = await openStoreFor(config, "import");
  if (!database) return 1;
  try {
    const importOptions = {
      hosts: config.hosts.map((host) => host.domain),
      iterations: (host: string) => config.hostOption(host, "scram_iterations"),
      overwrite: values.overwrite === true,
    };
    let source = positionals[1];
    let result;
    if (format === "prosody") {
      const mucServices = new Map(
        config.components.filter((c) => c.modules.includes("muc")).map((c) => {
          const occupants = config.valueOf("muc_max_occupants", c.domain);
          const archive = config.valueOf("muc_log_by_default", c.domain);
          return [c.domain, {
            maxOccupants: typeof occupants === "number" ? occupants : 200,
            maxHistory: MUC_MAX_HISTORY,
            archiveByDefault: typeof archive === "boolean" ? archive : true,
          }];
        }),
      );
      const prosody = await importProsody(database, positionals[1], {
        ...importOptions,
        storage: storageKind as "auto" | "internal" | "sql",
        mucServices,
      });
      for (const { service, room, outcome } of prosody.rooms) {
        if (outcome !== "imported" && outcome !== "replaced") {
          console.error(`lilt: skipped room ${room}@${service}: ${outcome}`);
        }
      }
      const roomCount = prosody.rooms.filter((r) =>
        r.outcome === "imported" ||
        r.outcome === "replaced"
      ).length;
      source = `Prosody's ${prosody.storage.kind} storage at ${prosody.storage.location}` +
        (prosody.rooms.length > 0 ? ` and ${roomCount} MUC rooms` : "");
      result = prosody;
    } else {
      result = await importXep227(database, positionals[1], importOptions);
    }
    for (const warning of result.warnings) console.error(`lilt: warning: ${warning}`);
    let imported = 0;
    let replaced = 0;
    let skipped = 0;
    for (const { host, username, outcome } of result.results) {
      if (outcome.status === "skipped") {
        skipped++;
        console.error(`lilt: skipped ${username}@${host}: ${outcome.reason}`);
      } else {
        imported++;
        if (outcome.replaced) replaced++;
      }
    }
    console.log(
      `Imported ${imported} accounts from ${source}` +
        (replaced > 0 ? ` (${replaced} replaced)` : "") +
        (skipped > 0 ? `; skipped ${skipped} (see above)` : ""),
    );
    return 0;
  } catch (error) {
    console.error(`lilt: import failed: ${(error as Error).message}\nNothing was imported.`);
    return 1;
  } finally {
    database.close();
  }
}

function cmdVersion(args: string[]): number {
  if (parse(args).values.help) return help("version");
  console.log(`lilt ${VERSION} (deno ${Deno.version.deno})`);
  return 0;
}

function help(topic: string, asError = false): number {
  (asError ? console.error : console.log)(HELP[topic] ?? HELP.main);
  return asError ? 2 : 0;
}

/** Runs the command line and returns the exit status. */
export async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  switch (command) {
    case "start":
      return await cmdStart(rest);
    case "shell":
      return await cmdShell(rest);
    case "check":
      return await cmdCheck(rest);
    case "user":
      return await cmdUser(rest);
    case "cert":
      return await cmdCert(rest);
    case "backup":
      return await cmdBackup(rest);
    case "restore":
      return await cmdRestore(rest);
    case "export":
      return await cmdExport(rest);
    case "import":
      return await cmdImport(rest);
    case "storage":
      return await cmdStorage(rest);
    case "version":
    case "--version":
      return cmdVersion(rest);
    case undefined:
    case "help":
    case "--help":
    case "-h":
      return help("main", command === undefined);
    default:
      console.error(`lilt: unknown command '${command}'\n`);
      return help("main", true);
  }
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (error) {
    console.error(`lilt: ${(error as Error).message}`);
    Deno.exit(1);
  }
}
