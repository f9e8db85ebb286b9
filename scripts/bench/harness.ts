// Process plumbing shared by the benchmark runners (compare.ts, ejabberd.ts): the workloads,
// starting a fresh server pinned to CPU0 per workload, running the load client on CPU1, SCRAM
// credentials and the load client's key cache.

import net from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { digest, hmac, saltPassword, utf8 } from "../../core/auth/scram.ts";
import { formatKeyRecord } from "./load_client.ts";

/** The repository root. */
export const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
/** scripts/bench. */
export const benchDir = join(root, "scripts/bench");
/** The one virtual host every server serves. */
export const domain = "localhost";
/** The multi-user chat service every server hosts for the muc workload. */
export const mucDomain = `conference.${domain}`;
/** The one room of the muc workload. */
export const mucRoom = `bench@${mucDomain}`;
/** The password of every benchmark account. */
export const password = "benchpass";
/** Accounts are `${prefix}0`, `${prefix}1`, … */
export const prefix = "bench";
/** SCRAM-SHA-1 iteration count of every stored credential. */
export const iterations = 4096;

/** Workload sizes; --quick shrinks them. */
export interface Sizes {
  /** Logins of the login workload. */
  logins: number;
  /** Pairs of accounts exchanging messages (messages and carbons workloads). */
  pairs: number;
  /** Idle sessions of the memory workload. */
  idle: number;
  /** Seconds of each measured message loop. */
  seconds: number;
  /** Messages stored for, then delivered to, one offline account. */
  offline: number;
  /** Roster items added one by one, then fetched at login. */
  rosterItems: number;
  /** Sequential logins with the big roster (and as many with an empty one). */
  rosterLogins: number;
  /** Size of the XML parser corpus in MB. */
  parserMb: number;
  /** Contacts a PEP publish fans out to (pep workload). */
  pepContacts: number;
  /** Items published in the pep workload's measured window. */
  pepItems: number;
  /** PEP publishes per second in that window. */
  pepRate: number;
  /** Occupants of the muc workload's one room (each account one resource). */
  mucOccupants: number;
  /** Occupants that send the room's groupchat messages, taking turns. */
  mucSenders: number;
  /** Groupchat messages sent in the muc workload's measured window. */
  mucMessages: number;
  /** Groupchat messages per second in that window (all senders together). */
  mucRate: number;
}

/**
 * The measured workloads in run order; each gets a freshly started server (the load client's
 * `--workload` values, see load_client.ts).
 */
export const workloads = [
  "login",
  "messages",
  "ws-login",
  "ws-messages",
  "wss-login",
  "wss-messages",
  "mam",
  "carbons",
  "offline",
  "roster",
  "memory",
  "pep",
  "muc",
] as const;

/**
 * Workloads only Lilt runs (the others would need their own archive set up to compare, or
 * their HTTPS listener set up for wss).
 */
export const liltOnlyWorkloads: readonly Workload[] = ["mam", "wss-login", "wss-messages"];

/**
 * Workloads Lilt and Prosody run but ejabberd does not (its generated config has no
 * mod_pubsub/mod_caps, and no HTTP listener for WebSocket).
 */
export const withoutEjabberdWorkloads: readonly Workload[] = ["pep", "ws-login", "ws-messages"];

/** How a WebSocket workload reaches the server: plain HTTP (ws://) or HTTPS (wss://). */
export type WebSocketScheme = "ws" | "wss";

/**
 * The WebSocket workloads (RFC 7395 on loopback: plain ws://, and wss:// through the server's
 * HTTPS listener) and the TCP workload each one is set beside in the report.
 */
export const websocketWorkloads: readonly {
  ws: Workload;
  tcp: Workload;
  scheme: WebSocketScheme;
}[] = [
  { ws: "ws-login", tcp: "login", scheme: "ws" },
  { ws: "ws-messages", tcp: "messages", scheme: "ws" },
  { ws: "wss-login", tcp: "login", scheme: "wss" },
  { ws: "wss-messages", tcp: "messages", scheme: "wss" },
];

/**
 * The scheme a workload's clients connect with when they use WebSocket (the server then needs
 * its HTTP or HTTPS listener), else undefined.
 */
export function webSocketScheme(workload: Workload): WebSocketScheme | undefined {
  return websocketWorkloads.find((w) => w.ws === workload)?.scheme;
}

/** One measured workload. */
export type Workload = (typeof workloads)[number];

/**
 * Workloads issue 11 asks for that cannot be measured yet because Lilt has no such feature:
 * each becomes a load-client workload (and a runner entry above) once the module exists.
 */
export const plannedWorkloads: readonly { id: string; what: string; waitsFor: string }[] = [];

/** Accounts the same warm-up uses on every server before a workload: the last ones. */
export const warmupAccounts = 64;

/** What every server runner gets: the run's directory, the shared certificate, the sizes. */
export interface BenchSetup {
  /** The run's temporary directory; each server makes its own subdirectory. */
  work: string;
  /** ECDSA P-256 certificate (PEM) for `localhost`, used by every server. */
  cert: string;
  /** Its private key (PEM). */
  key: string;
  sizes: Sizes;
  /** Accounts to create: `${prefix}0` … `${prefix}${accounts - 1}`. */
  accounts: number;
  /** Keep every directory (configs, data, logs) after the run. */
  keep: boolean;
}

/** A server started fresh for one workload. */
export interface RunningServer {
  /** Its c2s port (STARTTLS required). */
  port: number;
  /**
   * Its RFC 7395 endpoint (`ws://localhost:PORT/xmpp-websocket`, or `wss://…` for the wss-
   * workloads), for the WebSocket workloads.
   */
  wsUrl?: string;
  /** The PID whose CPU time and RSS are measured. */
  pid: number;
  /** Stops it (SIGTERM, SIGKILL after 10 s). */
  stop(): Promise<void>;
}

/**
 * A server whose accounts exist in a prepared data directory (made once per run), ready to be
 * started fresh from a copy of that directory for each workload.
 */
export interface PreparedServer {
  /** The load client's SCRAM key cache for the prepared accounts (see load_client.ts). */
  keys: string;
  /**
   * Copies the prepared data into `dir` and starts a server on it for `workload`; resolves once
   * it listens.
   */
  start(dir: string, workload: Workload): Promise<RunningServer>;
}

/**
 * A prepared server whose every start copies `template` to `<dir>/<dataName>` and starts the
 * server on that copy, so no workload sees what an earlier one left.
 */
export function startsFromCopy(
  keys: string,
  template: string,
  dataName: string,
  start: (dir: string, dataDir: string, workload: Workload) => Promise<RunningServer>,
): PreparedServer {
  return {
    keys,
    start: async (dir, workload) => {
      const dataDir = join(dir, dataName);
      await copyDir(template, dataDir);
      return await start(dir, dataDir, workload);
    },
  };
}

/** How the runner prepares one kind of server. */
export interface ServerKind {
  /** Makes the accounts and the key cache once per run. */
  prepare(setup: BenchSetup): Promise<PreparedServer>;
}

/** Parsed JSON figures: workload -> metric -> value for a server, or the parser's flat record. */
export type Figures = Record<string, unknown>;

/** Logs a progress line on stderr. */
export function log(text: string): void {
  console.error(`[bench] ${text}`);
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A free loopback TCP port (closed again before it is used). */
export function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const server = net.createServer();
    server.on("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => ok(port));
    });
  });
}

/** Resolves once something accepts connections on the port, or throws after `ms`. */
export async function waitForPort(
  port: number,
  options: { ms: number; child: Deno.ChildProcess },
): Promise<void> {
  const deadline = Date.now() + options.ms;
  let exited = false;
  options.child.status.then(() => exited = true);
  while (Date.now() < deadline) {
    if (exited) throw new Error(`Server exited before listening on port ${port}`);
    const up = await new Promise<boolean>((ok) => {
      const s = net.connect({ host: "127.0.0.1", port });
      s.once("connect", () => {
        s.destroy();
        ok(true);
      });
      s.once("error", () => ok(false));
    });
    if (up) return;
    await sleep(200);
  }
  throw new Error(`Nothing listened on port ${port} within ${options.ms} ms`);
}

/** Runs a command to completion and returns its stdout; throws with its stderr on failure. */
export async function run(
  cmd: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<string> {
  const out = await new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    cwd: options.cwd ?? root,
    env: options.env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(
      `Command '${cmd.join(" ")}' failed (${out.code}): ${new TextDecoder().decode(out.stderr)}`,
    );
  }
  return stdout;
}

/**
 * Writes a self-signed ECDSA P-256 certificate for `names` (the first is the CN) into `dir`,
 * valid for two days; returns the certificate and key paths.
 */
export async function makeBenchCertificate(
  dir: string,
  names: string[],
): Promise<{ cert: string; key: string }> {
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  await run([
    "openssl",
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    key,
    "-out",
    cert,
    "-days",
    "2",
    "-subj",
    `/CN=${names[0]}`,
    "-addext",
    `subjectAltName=${names.map((name) => `DNS:${name}`).join(",")}`,
  ]);
  return { cert, key };
}

/**
 * Starts a server pinned to CPU0 with its output in `logFile`. taskset execs the command, so
 * the child's PID is the server's own as long as the command execs its way to the server.
 */
export async function startServer(
  cmd: string[],
  options: { logFile: string; env?: Record<string, string> },
): Promise<Deno.ChildProcess> {
  const file = await Deno.open(options.logFile, { write: true, create: true, truncate: true });
  const child = new Deno.Command("taskset", {
    args: ["-c", "0", ...cmd],
    cwd: root,
    env: options.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  child.stdout.pipeTo(file.writable, { preventClose: true }).catch(() => {});
  child.stderr.pipeTo((await Deno.open(options.logFile, { append: true })).writable).catch(
    () => {},
  );
  return child;
}

/** Stops a server by PID with SIGTERM, and SIGKILL when it has not exited after 10 s. */
export async function stopServer(child: Deno.ChildProcess, name: string): Promise<void> {
  try {
    Deno.kill(child.pid, "SIGTERM");
  } catch { /* already gone */ }
  const done = await Promise.race([child.status.then(() => true), sleep(10000).then(() => false)]);
  if (!done) {
    log(`${name} did not stop within 10 s; killing PID ${child.pid}`);
    try {
      Deno.kill(child.pid, "SIGKILL");
    } catch { /* gone */ }
    await child.status;
  }
}

/** Copies directory `from` to `to` with `cp -a` (modes kept; `to` must not exist yet). */
export async function copyDir(from: string, to: string): Promise<void> {
  await run(["cp", "-a", from, to]);
}

/** Options of `runLoad`. */
export interface LoadRun {
  /** The server's PID, measured through /proc. */
  pid: number;
  sizes: Sizes;
  /** Accounts that exist on the server. */
  accounts: number;
  /** One load-client workload: a measured one, or "prime" to fill the key cache. */
  workload: Workload | "prime";
  /** The SCRAM key cache file (read; written back by "prime"). */
  keys: string;
  /** The server's RFC 7395 endpoint, for the WebSocket workloads. */
  wsUrl?: string;
  /** The open-loop rate of the messages workloads to match (see load_client.ts). */
  openRate?: number;
}

/** Runs load_client.ts pinned to CPU1 against `port` for one workload; returns its JSON. */
export async function runLoad(port: number, options: LoadRun): Promise<Figures> {
  const { pid, sizes } = options;
  // the certificate is self-signed, as the TCP clients' rejectUnauthorized: false accepts
  const denoFlags = options.wsUrl?.startsWith("wss:")
    ? [`--unsafely-ignore-certificate-errors=${domain}`]
    : [];
  return await runLoadClient([
    `--port=${port}`,
    ...(options.wsUrl ? [`--ws-url=${options.wsUrl}`] : []),
    ...(options.openRate ? [`--open-rate=${options.openRate}`] : []),
    `--pid=${pid}`,
    `--domain=${domain}`,
    `--prefix=${prefix}`,
    `--password=${password}`,
    `--logins=${sizes.logins}`,
    `--pairs=${sizes.pairs}`,
    `--idle=${sizes.idle}`,
    `--seconds=${sizes.seconds}`,
    `--offline=${sizes.offline}`,
    `--roster-items=${sizes.rosterItems}`,
    `--roster-logins=${sizes.rosterLogins}`,
    `--accounts=${options.accounts}`,
    `--warmup=${warmupAccounts}`,
    `--pep-contacts=${sizes.pepContacts}`,
    `--pep-items=${sizes.pepItems}`,
    `--pep-rate=${sizes.pepRate}`,
    `--muc-occupants=${sizes.mucOccupants}`,
    `--muc-senders=${sizes.mucSenders}`,
    `--muc-messages=${sizes.mucMessages}`,
    `--muc-rate=${sizes.mucRate}`,
    `--muc-room=${mucRoom}`,
    `--workload=${options.workload}`,
    `--keys=${options.keys}`,
  ], denoFlags);
}

/**
 * Runs load_client.ts pinned to CPU1 with `args` (its flags; `denoFlags` go to `deno run`),
 * killing it after 240 s; returns the JSON its last line of output holds.
 */
export async function runLoadClient(args: string[], denoFlags: string[] = []): Promise<Figures> {
  const child = new Deno.Command("taskset", {
    args: [
      "-c",
      "1",
      Deno.execPath(),
      "run",
      "-A",
      ...denoFlags,
      join(benchDir, "load_client.ts"),
      ...args,
    ],
    cwd: root,
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const timer = setTimeout(() => {
    log("load client ran over 240 s; killing it");
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, 240_000);
  const out = await child.output();
  clearTimeout(timer);
  const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
  const last = lines[lines.length - 1];
  if (!out.success || !last?.startsWith("{")) {
    throw new Error(`Load client failed (${out.code}): ${lines.slice(-3).join(" / ")}`);
  }
  return JSON.parse(last);
}

/**
 * SCRAM-SHA-1 keys of the benchmark password for one salt (RFC 5802): StoredKey and ServerKey
 * for the server's store, ClientKey for the load client's key cache.
 */
export async function scramSha1(salt: Uint8Array): Promise<{
  stored: Uint8Array;
  server: Uint8Array;
  client: Uint8Array;
}> {
  const salted = await saltPassword(password, { hash: "SHA-1", salt, iterations });
  const client = hmac("SHA-1", salted, utf8("Client Key"));
  return {
    stored: digest("SHA-1", client),
    server: hmac("SHA-1", salted, utf8("Server Key")),
    client,
  };
}

/**
 * Collects the load client's key cache lines for accounts whose salt the runner chose itself
 * (Prosody, ejabberd), so the client never runs PBKDF2 during a measurement.
 */
export class KeyCacheWriter {
  #lines: string[] = [];

  /** Records account `user`'s keys for `salt` (as the server will send it in its challenge). */
  add(user: string, salt: Uint8Array, keys: { client: Uint8Array; stored: Uint8Array }): void {
    this.#lines.push(formatKeyRecord({ user, salt, iterations, ...keys }));
  }

  /** Writes every recorded line to `file`. */
  async write(file: string): Promise<void> {
    await Deno.writeTextFile(file, this.#lines.join("\n") + "\n");
  }
}

/** Runs `make(i)` for i in 0..count-1, at most `batch` at a time. */
export async function inBatches(
  count: number,
  options: { batch: number; make: (i: number) => Promise<void> },
): Promise<void> {
  for (let i = 0; i < count; i += options.batch) {
    const jobs = [];
    for (let j = i; j < Math.min(count, i + options.batch); j++) jobs.push(options.make(j));
    await Promise.all(jobs);
  }
}
