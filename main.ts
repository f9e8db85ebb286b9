// The `lilt` command line: start the server, check the configuration, manage accounts,
// print the version. Each command has --help.

import { parseArgs } from "node:util";
import { AccountStore } from "./core/auth/accounts.ts";
import { type Config, formatProblem, loadConfig } from "./core/config.ts";
import type { OptionSpec } from "./core/config_schema.ts";
import { JidError, parseJid } from "./core/jid.ts";
import { configureLogging, getLogger } from "./core/log.ts";
import { Server } from "./core/server.ts";
import { LILT_VERSION } from "./core/version.ts";
import { Database } from "./core/storage/database.ts";
import { Storage } from "./core/storage/stores.ts";
import { builtinModules } from "./mod/builtin.ts";
import { promptSecret } from "./shell/prompt.ts";

const VERSION = LILT_VERSION;

const HELP: Record<string, string> = {
  main: `Lilt ${VERSION}: an XMPP server

Usage: lilt COMMAND [OPTIONS]

Commands:
  start [-c FILE]                 run the server
  check config [-c FILE]          validate the configuration file
  user add|passwd|del JID [-c FILE]
                                  manage accounts (works while the server runs)
  version                         print the version

Every command accepts --help. Without -c, the configuration is read from $LILT_CONFIG,
./lilt.toml, /etc/lilt/lilt.toml or ./conf.example.toml, the first that exists.`,
  start: `Usage: lilt start [-c FILE]

Runs the server in the foreground. SIGHUP reloads the configuration; SIGTERM and SIGINT
close every stream with <system-shutdown/> and exit.`,
  check: `Usage: lilt check config [-c FILE]

Validates the configuration. Prints one 'file:line: severity: message' line per problem and
exits 1 when there are errors (warnings alone exit 0).`,
  user: `Usage: lilt user add JID [-c FILE]
       lilt user passwd JID [-c FILE]
       lilt user del JID [-c FILE]

add creates an account, passwd changes its password, del deletes it and its data.
The password is prompted for without echo on a terminal, or read from the first line of
standard input otherwise (for scripts). Works while the server runs.`,
  version: `Usage: lilt version

Prints the version of Lilt and of the Deno runtime.`,
};

/** Option declarations of every built-in module, so the checker knows their keys. */
function moduleOptions(): Record<string, OptionSpec> {
  const all: Record<string, OptionSpec> = {};
  for (const file of Object.values(builtinModules)) Object.assign(all, file.options ?? {});
  return all;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Picks the configuration file when -c was not given. */
async function defaultConfigPath(): Promise<string> {
  const fromEnv = Deno.env.get("LILT_CONFIG");
  if (fromEnv) return fromEnv;
  for (const candidate of ["lilt.toml", "/etc/lilt/lilt.toml", "conf.example.toml"]) {
    if (await exists(candidate)) return candidate;
  }
  return "lilt.toml";
}

/** Loads and validates the configuration, printing problems; undefined on errors. */
async function readConfig(path: string | undefined): Promise<Config | undefined> {
  const file = path ?? await defaultConfigPath();
  const { config, problems } = loadConfig(file, { moduleOptions: moduleOptions() });
  for (const problem of problems) console.error(formatProblem(problem));
  return config;
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
  let server: Server;
  try {
    server = await Server.start(config, { modules: builtinModules });
  } catch (error) {
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
  const configPath = config.file;
  let reloading = false;
  Deno.addSignalListener("SIGHUP", async () => {
    if (reloading) return;
    reloading = true;
    try {
      const { config: next, problems } = loadConfig(configPath, { moduleOptions: moduleOptions() });
      for (const problem of problems) log.warn("{problem}", { problem: formatProblem(problem) });
      if (next) await server.reload(next);
      else log.error("Configuration has errors; keeping the running configuration");
    } catch (error) {
      log.error("Reload failed: {error}", { error });
    } finally {
      reloading = false;
    }
  });
  const stop = async () => {
    log.info("Shutting down");
    await server.shutdown();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  const ports = server.listeners.map((l) => `${l.kind} ${l.host}:${l.port}`).join(", ");
  console.error(`lilt: serving ${config.hosts.map((h) => h.domain).join(", ")} (${ports})`);
  // Keep running until a signal arrives.
  await new Promise(() => {});
  return 0;
}

async function cmdCheck(args: string[]): Promise<number> {
  const { values, positionals } = parse(args);
  if (values.help || positionals[0] !== "config") return help("check", !values.help);
  const file = values.config ?? await defaultConfigPath();
  const { config, problems } = loadConfig(file, { moduleOptions: moduleOptions() });
  for (const problem of problems) console.error(formatProblem(problem));
  if (!config) return 1;
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
    if (c.module && !(c.module in builtinModules)) {
      report(
        c.line,
        `unknown module '${c.module}' for component '${c.domain}' (available: ${available})`,
      );
    }
  }
  if (errors > 0) return 1;
  console.log(`${config.file}: OK (${config.hosts.length} host(s))`);
  return 0;
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
  await configureLogging({ ...config.log, console: false, file: "" });
  await Deno.mkdir(config.dataDir, { recursive: true, mode: 0o700 });
  const database = Database.open({ path: config.storage.path });
  try {
    const accounts = new AccountStore(database, {
      iterations: config.get<number>("scram_iterations"),
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
    const password = await promptSecret(`Password for ${jid.bareString()}: `);
    if (password === "") {
      console.error("lilt: the password is empty");
      return 1;
    }
    if (Deno.stdin.isTerminal()) {
      const again = await promptSecret("Repeat the password: ");
      if (again !== password) {
        console.error("lilt: the passwords differ");
        return 1;
      }
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
    case "check":
      return await cmdCheck(rest);
    case "user":
      return await cmdUser(rest);
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
