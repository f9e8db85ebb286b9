// XMPP load generator for the side-by-side benchmark (scripts/bench/compare.ts): one workload per
// run against a freshly started server; raw sockets (or RFC 7395 WebSockets for the ws-
// workloads), string-scanning framing, STARTTLS + SCRAM-SHA-1, and the server's CPU/RSS read
// from /proc.

import net from "node:net";
import tls from "node:tls";
import { parseArgs } from "node:util";

/** How a client reaches the server: XMPP over TCP with STARTTLS, or RFC 7395 WebSocket. */
export type LoadTransport = "tcp" | "ws";

/** Options of one load-client run, from the command line. */
export interface LoadOptions {
  host: string;
  port: number;
  /** How every connection of this run is made (the ws- workloads: "ws"). */
  transport: LoadTransport;
  /** The server's RFC 7395 endpoint, e.g. `ws://localhost:5280/xmpp-websocket` (transport ws). */
  wsUrl: string;
  /**
   * The messages workloads' open-loop rate to match (msgs/s; 0: derive it from this run): the
   * ws-messages workload runs at the rate the TCP messages workload of the same run used.
   */
  openRate: number;
  domain: string;
  /** The server process; with `--pid=A,B` (several nodes) the first one. */
  pid: number;
  /** Every server process whose CPU is the "server CPU" (summed): `--pid=A,B`. */
  pids: number[];
  /**
   * The cluster benchmark's second node: when not 0, accounts with an odd index log in here
   * and each pair is one client on `port` and one on `peerPort`, so every message crosses.
   */
  peerPort: number;
  /**
   * Other processes measured beside the server in the messages workloads' loops (`--measure=
   * redis:PID,postgres:PID`), each with its descendants (see processTreeCpuSeconds).
   */
  measure: { name: string; pid: number }[];
  userPrefix: string;
  password: string;
  logins: number;
  pairs: number;
  idle: number;
  concurrency: number;
  window: number;
  seconds: number;
  /** Messages stored for one offline account, then delivered. */
  offline: number;
  /** Roster items added one by one. */
  rosterItems: number;
  /** Sequential logins with the big roster, and as many with an empty one. */
  rosterLogins: number;
  /** Accounts on the server: `${userPrefix}0` … `${userPrefix}${accounts - 1}`. */
  accounts: number;
  /** Accounts of the warm-up (the last ones); 0 skips it. */
  warmup: number;
  /** Contacts the PEP publisher's items fan out to (accounts 1 … pepContacts). */
  pepContacts: number;
  /** Items the PEP publisher publishes in the measured window. */
  pepItems: number;
  /** PEP publishes per second in the measured window. */
  pepRate: number;
  /** Occupants of the muc workload's room (accounts 1 … mucOccupants). */
  mucOccupants: number;
  /** Occupants that send the groupchat messages, taking turns. */
  mucSenders: number;
  /** Groupchat messages sent in the measured window. */
  mucMessages: number;
  /** Groupchat messages per second in the measured window. */
  mucRate: number;
  /** The room's bare JID. */
  mucRoom: string;
}

const encoder = new TextEncoder();
/** RFC 7395's framing namespace (`<open/>`, `<close/>`). */
const NS_FRAMING = "urn:ietf:params:xml:ns:xmpp-framing";
const clockTicks = 100; // CLK_TCK on Linux x86-64/arm64

/**
 * CPU seconds so far of process `pid` (the server or this client) in clock ticks: utime +
 * stime of /proc/PID/stat, which counts every thread, exited ones too, but moves in steps of
 * 10 ms, too coarse for operations that take a few ms in all.
 */
function tickCpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / clockTicks;
}

/**
 * CPU seconds so far of process `pid` to the nanosecond: the run time of each of its threads
 * (first field of /proc/PID/task/TID/schedstat), summed. A thread that exits takes its time
 * with it, so each workload also reports the tick count over its whole run (`cpu_check`) and
 * a note when the two disagree.
 */
export function cpuSeconds(pid: number): number {
  let nanoseconds = 0;
  for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      const schedstat = Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/schedstat`);
      nanoseconds += Number(schedstat.slice(0, schedstat.indexOf(" ")));
    } catch { /* the thread exited meanwhile */ }
  }
  return nanoseconds / 1e9;
}

/** CPU seconds so far of all the server processes (`--pid=A,B`), summed. */
function serverCpuSeconds(opts: LoadOptions): number {
  let sum = 0;
  for (const pid of opts.pids) sum += cpuSeconds(pid);
  return sum;
}

/**
 * CPU seconds so far of process `pid` and its descendants (PostgreSQL forks a backend per
 * connection): each live process's threads as in cpuSeconds, plus the ticks of children it
 * has already reaped (cutime + cstime of /proc/PID/stat), so a child that exits keeps counting.
 */
function processTreeCpuSeconds(pid: number): number {
  let sum = 0;
  try {
    sum += cpuSeconds(pid);
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    sum += (Number(fields[13]) + Number(fields[14])) / clockTicks;
    for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
      const children = Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/children`);
      for (const child of children.split(" ")) {
        if (child) sum += processTreeCpuSeconds(Number(child));
      }
    }
  } catch { /* the process exited meanwhile */ }
  return sum;
}

/** CPU seconds so far of each `--measure` process tree, by name. */
function measuredCpuSeconds(opts: LoadOptions): Record<string, number> {
  const result: Record<string, number> = {};
  for (const { name, pid } of opts.measure) result[name] = processTreeCpuSeconds(pid);
  return result;
}

/** `after - before` per name, as µs per message over `messages`. */
function usPerMessage(
  before: Record<string, number>,
  after: Record<string, number>,
  messages: number,
): Record<string, number> {
  const result: Record<string, number> = {};
  for (const name in after) {
    result[name] = messages ? ((after[name] - before[name]) * 1e6) / messages : NaN;
  }
  return result;
}

/** The server's resident set size in KiB. */
function serverRssKiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const match = /VmRSS:\s+(\d+)/.exec(status);
  return match ? Number(match[1]) : 0;
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function b64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

function unb64(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

async function hmac(key: Uint8Array, data: string): Promise<Uint8Array> {
  const k = await crypto.subtle.importKey(
    "raw",
    key as Uint8Array<ArrayBuffer>,
    { name: "HMAC", hash: "SHA-1" },
    false,
    ["sign"],
  );
  return new Uint8Array(await crypto.subtle.sign("HMAC", k, encoder.encode(data)));
}

/** One account's cached SCRAM-SHA-1 keys for the salt and iteration count its server sends. */
export interface KeyRecord {
  user: string;
  salt: Uint8Array;
  iterations: number;
  client: Uint8Array;
  stored: Uint8Array;
}

/**
 * One line of a key cache file: JSON `{"u", "s", "i", "c", "k"}` (user, base64 salt,
 * iterations, base64 ClientKey, base64 StoredKey). The runner writes these for servers whose
 * salts it chose; the "prime" workload writes them for the others (Lilt).
 */
export function formatKeyRecord(record: KeyRecord): string {
  return JSON.stringify({
    u: record.user,
    s: b64(record.salt),
    i: record.iterations,
    c: b64(record.client),
    k: b64(record.stored),
  });
}

/**
 * ClientKey and StoredKey by user, salt and iteration count, as real clients cache their
 * SaltedPassword: loaded from the key cache file, so no measured login pays PBKDF2 on the
 * client. A miss (a salt the cache does not hold) derives the keys and is counted.
 */
const keyCache = new Map<string, { clientKey: Uint8Array; storedKey: Uint8Array }>();
/** Keys derived during this run because the cache lacked them. */
let keyMisses = 0;

function keyCacheKey(user: string, salt: string, iterations: number): string {
  return `${user}\0${salt}\0${iterations}`;
}

/** Loads a key cache file written by `formatKeyRecord` lines; a missing file is an empty cache. */
function loadKeyCache(file: string): void {
  let text: string;
  try {
    text = Deno.readTextFileSync(file);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw error;
  }
  for (const line of text.split("\n")) {
    if (!line) continue;
    const r = JSON.parse(line) as { u: string; s: string; i: number; c: string; k: string };
    keyCache.set(keyCacheKey(r.u, r.s, r.i), { clientKey: unb64(r.c), storedKey: unb64(r.k) });
  }
}

/** Writes the whole key cache (user, salt, iterations and keys of every entry) to `file`. */
function saveKeyCache(file: string): void {
  const lines: string[] = [];
  for (const [key, keys] of keyCache) {
    const [user, salt, iterations] = key.split("\0");
    lines.push(formatKeyRecord({
      user,
      salt: unb64(salt),
      iterations: Number(iterations),
      client: keys.clientKey,
      stored: keys.storedKey,
    }));
  }
  Deno.writeTextFileSync(file, lines.join("\n") + "\n");
}

async function scramKeys(user: string, password: string, salt: Uint8Array, iterations: number) {
  const cacheKey = keyCacheKey(user, b64(salt), iterations);
  const cached = keyCache.get(cacheKey);
  if (cached) return cached;
  keyMisses++;
  const base = await crypto.subtle.importKey("raw", encoder.encode(password), "PBKDF2", false, [
    "deriveBits",
  ]);
  const salted = new Uint8Array(
    await crypto.subtle.deriveBits(
      { name: "PBKDF2", hash: "SHA-1", salt: salt as Uint8Array<ArrayBuffer>, iterations },
      base,
      160,
    ),
  );
  const clientKey = await hmac(salted, "Client Key");
  const storedKey = new Uint8Array(
    await crypto.subtle.digest("SHA-1", clientKey as Uint8Array<ArrayBuffer>),
  );
  const keys = { clientKey, storedKey };
  keyCache.set(cacheKey, keys);
  return keys;
}

/** Called for every complete <message/> a connection receives, with its body text. */
type MessageHandler = (body: string) => void;

/** Called with the text of every complete top-level stanza a connection receives. */
type StanzaHandler = (stanza: string) => void;

/** What `Client.login` measured. */
interface LoginTimes {
  /** ms from connect to the bind result. */
  bound: number;
  /** ms from connect to the whole roster result. */
  ready: number;
  /** `<item` elements in the roster result. */
  rosterItems: number;
}

/** Options of `Client.login`. */
interface LoginOptions {
  /** Stop after the SCRAM challenge, once the salted password is cached (no auth attempt). */
  primeOnly?: boolean;
  /** Send initial presence before the roster get (default true). */
  presence?: boolean;
}

/** The value of attribute `name` in the first tag of `stanza`, or undefined. */
function attribute(stanza: string, name: string): string | undefined {
  const tagEnd = stanza.indexOf(">");
  const tag = tagEnd < 0 ? stanza : stanza.slice(0, tagEnd);
  const match = new RegExp(`\\s${name}=(?:'([^']*)'|"([^"]*)")`).exec(tag);
  return match ? (match[1] ?? match[2]) : undefined;
}

/**
 * One client connection: login state machine, then either fast message scanning (`onMessage`)
 * or whole stanzas (`onStanza`, `iq`).
 */
class Client {
  readonly user: string;
  readonly resource: string;
  jid = "";
  onMessage: MessageHandler | undefined;
  /** When set, receives every stanza instead of `onMessage`. */
  onStanza: StanzaHandler | undefined;
  /** Resolves when the socket has closed. */
  readonly closed: Promise<void>;
  #opts: LoadOptions;
  #raw: net.Socket | undefined;
  #sock: net.Socket | tls.TLSSocket | undefined;
  /** The WebSocket of a ws client (instead of the sockets). */
  #ws: WebSocket | undefined;
  /**
   * ` xmlns='jabber:client'` on a WebSocket, where every top-level element names its namespace
   * (RFC 7395 §3.3.3); nothing on TCP, where the stream header declares it.
   */
  readonly #ns: string;
  #buffer = "";
  #waiter: { marker: string; resolve: (text: string) => void } | undefined;
  #stanzaWaiter: { id: string; resolve: (stanza: string) => void } | undefined;
  #failed: ((error: Error) => void) | undefined;
  #closed = false;
  #markClosed: () => void = () => {};
  /** The c2s port this client connects to. */
  readonly port: number;

  constructor(opts: LoadOptions, user: string, resource: string, port = opts.port) {
    this.#opts = opts;
    this.port = port;
    this.user = user;
    this.resource = resource;
    this.#ns = opts.transport === "ws" ? " xmlns='jabber:client'" : "";
    this.closed = new Promise((resolve) => this.#markClosed = resolve);
  }

  /**
   * Runs the whole login (STARTTLS, SCRAM-SHA-1, bind, presence unless told not to, roster
   * get) and resolves once the roster result has arrived whole. With `primeOnly` it stops after
   * the SCRAM challenge, once the salted password is cached (no auth attempt).
   */
  async login(options: LoginOptions = {}): Promise<LoginTimes> {
    const start = performance.now();
    const o = this.#opts;
    const failure = new Promise<never>((_, reject) => this.#failed = reject);
    const step = <T>(p: Promise<T>) => Promise.race([p, failure]);
    const timeout = setTimeout(
      () => this.#fail(new Error(`Login of ${this.user} timed out`)),
      30000,
    );
    try {
      if (o.transport === "ws") {
        // no STARTTLS on a WebSocket: ws:// on loopback counts as encrypted (a TLS proxy's place)
        await step(this.#connectWebSocket());
      } else {
        await step(this.#connectTls());
      }
      this.#send(this.#header());
      await step(this.#wait("</stream:features>"));
      const nonce = b64(crypto.getRandomValues(new Uint8Array(18)));
      const clientFirstBare = `n=${this.user},r=${nonce}`;
      this.#send(
        `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>${
          btoa("n,," + clientFirstBare)
        }</auth>`,
      );
      const challenge = await step(this.#wait("</challenge>"));
      const serverFirst = atob(
        challenge.slice(challenge.lastIndexOf(">", challenge.length - 13) + 1, -12),
      );
      const attrs = new Map(serverFirst.split(",").map((kv) => [kv[0], kv.slice(2)]));
      const keys = await scramKeys(
        this.user,
        o.password,
        unb64(attrs.get("s")!),
        Number(attrs.get("i")),
      );
      if (options.primeOnly) return { bound: NaN, ready: NaN, rosterItems: NaN };
      const finalNoProof = `c=biws,r=${attrs.get("r")}`;
      const signature = await hmac(
        keys.storedKey,
        `${clientFirstBare},${serverFirst},${finalNoProof}`,
      );
      const proof = keys.clientKey.map((b, i) => b ^ signature[i]);
      this.#send(
        `<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>${
          btoa(`${finalNoProof},p=${b64(proof)}`)
        }</response>`,
      );
      const outcome = await step(this.#waitAny(["</success>", "<success/>", "</failure>"]));
      if (outcome.includes("failure")) throw new Error(`Authentication failed for ${this.user}`);
      this.#send(this.#header());
      await step(this.#wait("</stream:features>"));
      this.#send(
        `<iq${this.#ns} type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${this.resource}</resource></bind></iq>`,
      );
      const bindResult = await step(this.#wait("</iq>"));
      const jid = /<jid>([^<]+)<\/jid>/.exec(bindResult);
      if (!jid) throw new Error(`Bind failed for ${this.user}: ${bindResult.slice(0, 200)}`);
      this.jid = jid[1];
      const bound = performance.now() - start;
      const rosterGet = `<iq${this.#ns} type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>`;
      const roster = await step(
        this.iq(
          options.presence === false ? rosterGet : [`<presence${this.#ns}/>`, rosterGet],
          "r1",
        ),
      );
      return {
        bound,
        ready: performance.now() - start,
        rosterItems: roster.split("<item").length - 1,
      };
    } finally {
      clearTimeout(timeout);
    }
  }

  /**
   * TCP: connects, sends the stream header, negotiates STARTTLS and reads and writes through
   * TLS from then on (the caller sends the next header).
   */
  async #connectTls(): Promise<void> {
    const o = this.#opts;
    const raw = net.connect({ host: o.host, port: this.port });
    raw.setNoDelay(true);
    this.#raw = raw;
    this.#attach(raw);
    await new Promise<void>((resolve) => raw.once("connect", () => resolve()));
    this.#send(this.#header());
    await this.#wait("</stream:features>");
    this.#send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    await this.#wait("<proceed");
    raw.removeAllListeners("data");
    this.#buffer = "";
    const secure = tls.connect({ socket: raw, servername: o.domain, rejectUnauthorized: false });
    this.#sock = secure;
    this.#attach(secure);
    await new Promise<void>((resolve) => secure.once("secureConnect", () => resolve()));
  }

  /**
   * WebSocket: opens the RFC 7395 endpoint with the `xmpp` subprotocol; each text message the
   * server sends is one element, appended to the same buffer the TCP framing scans.
   */
  async #connectWebSocket(): Promise<void> {
    const ws = new WebSocket(this.#opts.wsUrl, "xmpp");
    this.#ws = ws;
    ws.addEventListener("message", (event) => this.#data(event.data as string));
    ws.addEventListener("error", (event) => {
      const message = event instanceof ErrorEvent ? event.message : "WebSocket error";
      this.#fail(new Error(`WebSocket of ${this.user}: ${message}`));
    });
    ws.addEventListener("close", () => {
      this.#markClosed();
      if (!this.#closed) this.#fail(new Error(`WebSocket of ${this.user} closed by the server`));
    });
    await new Promise<void>((resolve) => ws.addEventListener("open", () => resolve()));
    if (ws.protocol !== "xmpp") {
      throw new Error(`The server chose subprotocol '${ws.protocol}', not 'xmpp'`);
    }
  }

  /** Sends one chat message to a JID. */
  sendMessage(to: string, body: string): void {
    this.#send(`<message${this.#ns} to='${to}' type='chat'><body>${body}</body></message>`);
  }

  /** Sends raw XML on the stream. */
  send(text: string): void {
    this.#send(text);
  }

  /**
   * Sends `text` (ending with an iq whose id is `id`; several elements as an array, written at
   * once on TCP and one message each on a WebSocket) and resolves with the stanza answering
   * that id; other stanzas meanwhile go to `onStanza` when set, else are dropped. Rejects when
   * no answer came within 60 s.
   */
  iq(text: string | string[], id: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.#stanzaWaiter?.id !== id) return;
        this.#stanzaWaiter = undefined;
        reject(new Error(`No answer to iq '${id}' of ${this.user} within 60 s`));
      }, 60000);
      this.#stanzaWaiter = {
        id,
        resolve: (stanza) => {
          clearTimeout(timer);
          resolve(stanza);
        },
      };
      if (typeof text === "string") this.#send(text);
      else if (this.#ws) { for (const part of text) this.#send(part); }
      else this.#send(text.join(""));
    });
  }

  /** Closes the stream and the socket. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#ws) {
      try {
        if (this.#ws.readyState === WebSocket.OPEN) this.#ws.send(`<close xmlns='${NS_FRAMING}'/>`);
        this.#ws.close(1000);
      } catch { /* already gone */ }
      return;
    }
    try {
      this.#sock?.write("</stream:stream>");
    } catch { /* already gone */ }
    (this.#sock ?? this.#raw)?.destroy();
    this.#raw?.destroy();
  }

  #header(): string {
    if (this.#ws) return `<open xmlns='${NS_FRAMING}' to='${this.#opts.domain}' version='1.0'/>`;
    return `<?xml version='1.0'?><stream:stream to='${this.#opts.domain}' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`;
  }

  #send(text: string): void {
    if (this.#ws) this.#ws.send(text);
    else (this.#sock ?? this.#raw)!.write(text);
  }

  #fail(error: Error): void {
    this.#failed?.(error);
  }

  #attach(sock: net.Socket): void {
    sock.setEncoding("utf8");
    sock.on("data", (chunk: string) => this.#data(chunk));
    sock.on("error", (error: Error) => this.#fail(error));
    sock.on("close", () => {
      this.#markClosed();
      if (!this.#closed) this.#fail(new Error(`Connection of ${this.user} closed by the server`));
    });
  }

  #data(chunk: string): void {
    this.#buffer += chunk;
    if (this.#buffer.includes("<stream:error")) {
      this.#fail(new Error(`Stream error for ${this.user}: ${this.#buffer.slice(0, 300)}`));
      return;
    }
    if (this.#waiter) {
      for (const marker of this.#waiter.marker.split("\n")) {
        const at = this.#buffer.indexOf(marker);
        if (at >= 0) {
          const end = at + marker.length;
          const text = this.#buffer.slice(0, end);
          this.#buffer = this.#buffer.slice(end);
          const { resolve } = this.#waiter;
          this.#waiter = undefined;
          resolve(text);
          return;
        }
      }
      return;
    }
    if (this.#stanzaWaiter || this.onStanza) {
      this.#splitStanzas();
      return;
    }
    if (!this.onMessage) {
      if (this.#buffer.length > 65536) this.#buffer = "";
      return;
    }
    let from = 0;
    for (;;) {
      const end = this.#buffer.indexOf("</message>", from);
      if (end < 0) break;
      const open = this.#buffer.indexOf("<body>", from);
      if (open >= 0 && open < end) {
        this.onMessage(this.#buffer.slice(open + 6, this.#buffer.indexOf("</body>", open)));
      }
      from = end + 10;
    }
    if (from > 0) this.#buffer = this.#buffer.slice(from);
  }

  /**
   * Hands every complete top-level stanza in the buffer to the iq waiter or `onStanza`, keeping
   * an incomplete one. A tag scanner, enough for what servers send after login (no comments,
   * CDATA or '>' inside attribute values).
   */
  #splitStanzas(): void {
    const buffer = this.#buffer;
    let depth = 0;
    let stanzaStart = 0;
    let consumed = 0;
    let at = 0;
    for (;;) {
      const open = buffer.indexOf("<", at);
      if (open < 0) break;
      const close = buffer.indexOf(">", open);
      if (close < 0) break;
      at = close + 1;
      if (buffer.charCodeAt(open + 1) === 47 /* / */) {
        if (depth === 0) { // </stream:stream>
          consumed = at;
          continue;
        }
        if (--depth > 0) continue;
      } else if (buffer.charCodeAt(close - 1) === 47 /* / */) {
        if (depth > 0) continue;
        stanzaStart = open;
      } else {
        if (depth++ === 0) stanzaStart = open;
        continue;
      }
      consumed = at;
      this.#stanza(buffer.slice(stanzaStart, at));
    }
    this.#buffer = consumed ? buffer.slice(consumed) : buffer;
  }

  #stanza(stanza: string): void {
    const waiter = this.#stanzaWaiter;
    if (waiter && stanza.startsWith("<iq") && attribute(stanza, "id") === waiter.id) {
      this.#stanzaWaiter = undefined;
      waiter.resolve(stanza);
      return;
    }
    this.onStanza?.(stanza);
  }

  #wait(...markers: string[]): Promise<string> {
    return this.#waitAny(markers);
  }

  #waitAny(markers: string[]): Promise<string> {
    return new Promise((resolve) => {
      this.#waiter = { marker: markers.join("\n"), resolve };
      this.#data("");
    });
  }
}

/**
 * Fills the key cache for users `first`..`first + count - 1`: each connects, does STARTTLS and
 * reads the SCRAM challenge (salt, iterations), then closes without answering it, so the server
 * records neither a login nor a failure. Runs against the server that prepared the accounts,
 * which is then stopped: never against a measured one.
 */
async function primeMany(opts: LoadOptions, first: number, count: number): Promise<number> {
  let next = 0;
  let failed = 0;
  async function worker() {
    while (next < count) {
      const client = new Client(opts, `${opts.userPrefix}${first + next++}`, "prime");
      try {
        await client.login({ primeOnly: true });
      } catch {
        failed++;
      } finally {
        client.close();
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(opts.concurrency, count) }, worker));
  return failed;
}

/** Which accounts `loginMany` logs in, and as which resource. */
interface LoginBatch {
  /** Index of the first account. */
  first: number;
  count: number;
  resource: string;
  /** Send initial presence at login (default true). */
  presence?: boolean;
}

/**
 * Logs in accounts `first`..`first + count - 1` with at most `concurrency` logins in flight;
 * `clients` are in completion order.
 */
async function loginMany(
  opts: LoadOptions,
  batch: LoginBatch,
): Promise<{ clients: Client[]; bound: number[]; ready: number[]; errors: string[] }> {
  const { first, count, resource, presence } = batch;
  const clients: Client[] = [];
  const bound: number[] = [];
  const ready: number[] = [];
  const errors: string[] = [];
  let next = 0;
  async function worker() {
    while (next < count) {
      const i = first + next++;
      const port = opts.peerPort && i % 2 === 1 ? opts.peerPort : opts.port;
      const client = new Client(opts, `${opts.userPrefix}${i}`, resource, port);
      try {
        const t = await client.login({ presence });
        bound.push(t.bound);
        ready.push(t.ready);
        clients.push(client);
      } catch (error) {
        client.close();
        if (errors.length < 5) errors.push((error as Error).message);
        else errors.push("");
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(opts.concurrency, count) }, worker));
  return { clients, bound, ready, errors };
}

function closeAll(clients: Client[]): void {
  for (const c of clients) c.close();
}

function summarizeErrors(errors: string[]) {
  return { count: errors.length, first: errors.filter((e) => e).slice(0, 3) };
}

/**
 * Consecutive clients as pairs: (0, 1), (2, 3), …; with two nodes (`peerPort`) each pair is one
 * client of each node.
 */
function pairUp(clients: Client[]): [Client, Client][] {
  const pairs: [Client, Client][] = [];
  if (clients.some((c) => c.port !== clients[0].port)) {
    const here = clients.filter((c) => c.port === clients[0].port);
    const there = clients.filter((c) => c.port !== clients[0].port);
    for (let i = 0; i < Math.min(here.length, there.length); i++) pairs.push([here[i], there[i]]);
    return pairs;
  }
  for (let i = 0; i + 1 < clients.length; i += 2) pairs.push([clients[i], clients[i + 1]]);
  return pairs;
}

/**
 * The server's CPU seconds once it has gone quiet: read every `quietMs` until a read shows
 * less than 5 ms of new CPU time (at most `maxMs`), so work a server defers (log dumps,
 * checkpoints, batched writes) is counted with the operation that caused it.
 */
async function settledCpu(pid: number, options = { quietMs: 300, maxMs: 5000 }): Promise<number> {
  const deadline = performance.now() + options.maxMs;
  let last = cpuSeconds(pid);
  for (;;) {
    await sleep(options.quietMs);
    const now = cpuSeconds(pid);
    if (now - last < 0.005 || performance.now() > deadline) return now;
    last = now;
  }
}

/** Messages each warm-up pair exchanges. */
const warmupMessagesPerPair = 400;

/**
 * Each pair exchanges `perPair` messages, `window` in flight, every delivery answered until the
 * pair has delivered `perPair`; resolves with the messages delivered (at most 30 s).
 */
async function exchangeMessages(
  opts: LoadOptions,
  pairs: [Client, Client][],
  perPair: number,
): Promise<number> {
  let delivered = 0;
  let pending = pairs.length;
  let finish = () => {};
  const done = new Promise<void>((resolve) => finish = resolve);
  for (const [a, b] of pairs) {
    let count = 0;
    let sent = 0;
    const onDelivery = (receiver: Client, peer: Client) => {
      delivered++;
      if (++count === perPair && --pending === 0) finish();
      if (sent < perPair) {
        sent++;
        receiver.sendMessage(peer.jid, filler);
      }
    };
    a.onMessage = () => onDelivery(a, b);
    b.onMessage = () => onDelivery(b, a);
    for (; sent < Math.min(opts.window, perPair); sent++) a.sendMessage(b.jid, filler);
  }
  if (pending > 0) await Promise.race([done, sleep(30000)]);
  for (const [a, b] of pairs) a.onMessage = b.onMessage = undefined;
  return delivered;
}

/**
 * The same warm-up on every server before every workload but memory: the last `warmup`
 * accounts log in fully, and each pair of them exchanges `warmupMessagesPerPair` messages
 * (the same work everywhere, however long it takes), then they log out; 1 s later the
 * workload starts. Not measured.
 */
async function warmUp(opts: LoadOptions) {
  const first = opts.accounts - opts.warmup;
  const { clients, errors } = await loginMany(opts, {
    first,
    count: opts.warmup,
    resource: "warmup",
  });
  const t0 = performance.now();
  const pairs = pairUp(clients);
  const messages = await exchangeMessages(opts, pairs, warmupMessagesPerPair);
  const seconds = (performance.now() - t0) / 1000;
  closeAll(clients);
  await sleep(1000);
  if (messages < pairs.length * warmupMessagesPerPair) {
    errors.push(`Warm-up delivered ${messages} of ${pairs.length * warmupMessagesPerPair}`);
  }
  return {
    sessions: clients.length,
    messages,
    message_seconds: seconds,
    errors: summarizeErrors(errors),
  };
}

/** Fills the key cache file for every account (see primeMany); nothing is measured. */
async function primeWorkload(opts: LoadOptions, keysFile: string) {
  const t0 = performance.now();
  const failed = await primeMany(opts, 0, opts.accounts);
  saveKeyCache(keysFile);
  return { accounts: opts.accounts, failed, seconds: (performance.now() - t0) / 1000 };
}

/** Login rate, time to bound, server CPU per login. */
async function loginWorkload(opts: LoadOptions) {
  const cpu0 = cpuSeconds(opts.pid);
  const own0 = cpuSeconds(Deno.pid);
  const t0 = performance.now();
  const result = await loginMany(opts, { first: 0, count: opts.logins, resource: "login" });
  const seconds = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds(opts.pid) - cpu0;
  const ownCpu = cpuSeconds(Deno.pid) - own0;
  closeAll(result.clients);
  const ok = result.clients.length;
  return {
    sessions: ok,
    seconds,
    sessions_per_s: ok / seconds,
    bound_p50_ms: percentile(result.bound, 0.5),
    bound_p99_ms: percentile(result.bound, 0.99),
    ready_p50_ms: percentile(result.ready, 0.5),
    ready_p99_ms: percentile(result.ready, 0.99),
    server_cpu_s: cpu,
    cpu_ms_per_login: ok ? (cpu * 1000) / ok : NaN,
    client_cpu_ms_per_login: ok ? (ownCpu * 1000) / ok : NaN,
    client_busy_pct: (ownCpu / seconds) * 100,
    errors: summarizeErrors(result.errors),
  };
}

const filler = "x".repeat(100);

/** A 100-byte body carrying its send time. */
function bodyAt(now: number): string {
  const stamp = `t=${now.toFixed(3)};`;
  return stamp + filler.slice(stamp.length);
}

/** Open-loop send interval in ms; the client's event-loop lag is measured against it. */
const tickMs = 2;
/** The open-loop rate is at most this share of the client's own measured capacity. */
const clientHeadroom = 0.4;
/** Open-loop tick lag (p99, ms) above which the client, not the server, is called the limit. */
const lagLimitMs = 10;

/** What one open-loop run measured. */
interface OpenLoopResult {
  sent: number;
  delivered: number;
  deliveredInWindow: number;
  openSeconds: number;
  latencies: number[];
  lags: number[];
  clientCpuS: number;
  serverCpuS: number;
  /** µs per delivered message of each `--measure` process tree. */
  measuredUsPerMsg: Record<string, number>;
}

/**
 * Sends at `rate` msgs/s for `seconds`, in `tickMs` ticks, round-robin over both directions of
 * every pair; each body carries its send time and each delivery is timed when this client reads
 * it. Waits 1.5 s for the last deliveries (counted in `delivered` and the server CPU).
 */
async function openLoop(
  opts: LoadOptions,
  clients: Client[],
  pairs: [Client, Client][],
  rate: number,
  seconds: number,
): Promise<OpenLoopResult> {
  const latencies: number[] = [];
  let delivered = 0;
  let measuring = true;
  for (const c of clients) {
    c.onMessage = (body) => {
      if (!measuring || !body.startsWith("t=")) return;
      const t = Number(body.slice(2, body.indexOf(";")));
      if (!t) return;
      delivered++;
      latencies.push(performance.now() - t);
    };
  }
  const senders: [Client, string][] = [];
  for (const [a, b] of pairs) senders.push([a, b.jid], [b, a.jid]);
  let cursor = 0;
  let sent = 0;
  const lags: number[] = [];
  const server0 = serverCpuSeconds(opts);
  const measured0 = measuredCpuSeconds(opts);
  const own0 = cpuSeconds(Deno.pid);
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  for (let now = t0; now < end;) {
    const due = Math.floor(((now - t0) / 1000) * rate);
    while (sent < due) {
      const [from, to] = senders[cursor++ % senders.length];
      from.sendMessage(to, bodyAt(performance.now()));
      sent++;
    }
    const before = performance.now();
    await sleep(tickMs);
    now = performance.now();
    lags.push(now - before - tickMs);
  }
  const openSeconds = (performance.now() - t0) / 1000;
  const clientCpuS = cpuSeconds(Deno.pid) - own0;
  const deliveredInWindow = delivered;
  await sleep(1500); // let the last ones arrive
  const serverCpuS = serverCpuSeconds(opts) - server0;
  const measuredUsPerMsg = usPerMessage(measured0, measuredCpuSeconds(opts), delivered);
  measuring = false;
  return {
    measuredUsPerMsg,
    sent,
    delivered,
    deliveredInWindow,
    openSeconds,
    latencies,
    lags,
    clientCpuS,
    serverCpuS,
  };
}

/** What one closed loop measured. */
interface ClosedLoopResult {
  /** Messages delivered in the measured window. */
  delivered: number;
  /** Messages delivered from the first send until drained (warm-up and drain included). */
  total: number;
  seconds: number;
  serverCpuS: number;
  clientCpuS: number;
  /** µs per delivered message of each `--measure` process tree. */
  measuredUsPerMsg: Record<string, number>;
}

/**
 * Closed loop: each pair keeps `window` messages in flight, every delivered message answered
 * by the receiver; `warmupMs` unmeasured, then `seconds` measured, then 1.5 s to drain.
 */
async function closedLoop(
  opts: LoadOptions,
  pairs: [Client, Client][],
  options: { warmupMs: number; seconds: number },
): Promise<ClosedLoopResult> {
  let delivered = 0;
  let running = true;
  for (const [a, b] of pairs) {
    a.onMessage = () => {
      delivered++;
      if (running) a.sendMessage(b.jid, filler);
    };
    b.onMessage = () => {
      delivered++;
      if (running) b.sendMessage(a.jid, filler);
    };
  }
  for (const [a, b] of pairs) {
    for (let w = 0; w < opts.window; w++) a.sendMessage(b.jid, filler);
  }
  await sleep(options.warmupMs);
  const cpu0 = serverCpuSeconds(opts);
  const measured0 = measuredCpuSeconds(opts);
  const own0 = cpuSeconds(Deno.pid);
  const count0 = delivered;
  const t0 = performance.now();
  await sleep(options.seconds * 1000);
  const seconds = (performance.now() - t0) / 1000;
  const count = delivered - count0;
  const serverCpuS = serverCpuSeconds(opts) - cpu0;
  const measuredUsPerMsg = usPerMessage(measured0, measuredCpuSeconds(opts), count);
  const clientCpuS = cpuSeconds(Deno.pid) - own0;
  running = false;
  await sleep(1500); // drain
  for (const [a, b] of pairs) a.onMessage = b.onMessage = undefined;
  return { delivered: count, total: delivered, seconds, serverCpuS, clientCpuS, measuredUsPerMsg };
}

/**
 * Closed-loop saturation, then an open loop for latency at half that rate (or at `openRate`,
 * another transport's, when that is lower), capped at `clientHeadroom` of what the client
 * itself can handle (its CPU time per message in a 1 s open-loop calibration), so that the
 * latency figures are the server's and not the client's.
 */
async function messageWorkload(opts: LoadOptions) {
  const { clients, errors } = await loginMany(opts, {
    first: 0,
    count: opts.pairs * 2,
    resource: "msg",
  });
  if (clients.length < 2) {
    closeAll(clients);
    return { error: "Too few clients logged in", errors: summarizeErrors(errors) };
  }
  const pairs = pairUp(clients);
  await sleep(500);
  const closed = await closedLoop(opts, pairs, { warmupMs: 1000, seconds: opts.seconds });
  const closedSeconds = closed.seconds;
  const closedCount = closed.delivered;
  const closedCpu = closed.serverCpuS;
  const closedOwn = closed.clientCpuS;
  const saturation = closedCount / closedSeconds;
  const half = saturation / 2;

  // calibration: 1 s of open loop at half saturation gives the client's own CPU cost per
  // message when sends are not batched by the closed loop (about twice the closed-loop cost)
  const calibration = await openLoop(opts, clients, pairs, half, 1);
  const clientUs = calibration.clientCpuS > 0
    ? (calibration.clientCpuS * 1e6) / calibration.sent
    : 0;
  const clientMax = clientUs > 0 ? 1e6 / clientUs : Infinity;
  // a rate to match (another transport's) is taken up to half this server's saturation
  const target = opts.openRate > 0 ? Math.min(opts.openRate, half) : half;
  const rate = Math.min(target, clientHeadroom * clientMax);
  await sleep(500);
  const open = await openLoop(opts, clients, pairs, rate, opts.seconds);
  closeAll(clients);
  const { lags, latencies, sent, openSeconds } = open;
  const openDelivered = open.delivered;
  const lagP99 = percentile(lags, 0.99);
  const sentRate = sent / openSeconds;
  const notes: string[] = [];
  if (rate < target) {
    notes.push(
      `open-loop rate capped at ${Math.round(rate)} msgs/s (${clientHeadroom * 100}% of the ` +
        `client's ${Math.round(clientMax)} msgs/s) instead of ${
          opts.openRate > 0 ? "the rate to match" : "half saturation"
        } ${Math.round(target)}`,
    );
  }
  if (opts.openRate > 0 && target < opts.openRate) {
    notes.push(
      `open loop at half saturation ${Math.round(half)} msgs/s, below the rate to match ` +
        `${Math.round(opts.openRate)} msgs/s`,
    );
  }
  if (closedOwn / closedSeconds > 0.9) {
    notes.push(
      `client busy ${Math.round((closedOwn / closedSeconds) * 100)}% in the closed loop: ` +
        `saturation may be the client's`,
    );
  }
  const clientLimited = lagP99 > lagLimitMs || sentRate < 0.97 * rate ||
    openDelivered < 0.99 * sent;
  if (clientLimited) {
    notes.push(
      `client was the limit in the open loop (tick lag p99 ${lagP99.toFixed(1)} ms, ` +
        `sent ${Math.round(sentRate)} of ${Math.round(rate)} msgs/s): latency is not the server's`,
    );
  }
  return {
    pairs: pairs.length,
    window_per_pair: opts.window,
    saturation_msgs_per_s: saturation,
    saturation_cpu_us_per_msg: closedCount ? (closedCpu * 1e6) / closedCount : NaN,
    ...(opts.measure.length ? { saturation_measured_us_per_msg: closed.measuredUsPerMsg } : {}),
    saturation_client_busy_pct: (closedOwn / closedSeconds) * 100,
    client_max_msgs_per_s: clientMax,
    open_offered_msgs_per_s: rate,
    open_rate_msgs_per_s: sentRate,
    open_achieved_msgs_per_s: open.deliveredInWindow / openSeconds,
    open_capped_by_client: rate < target,
    open_rate_to_match: opts.openRate > 0 ? opts.openRate : undefined,
    open_sent: sent,
    open_delivered: openDelivered,
    open_client_busy_pct: (open.clientCpuS / openSeconds) * 100,
    open_server_busy_pct: (open.serverCpuS / (openSeconds + 1.5)) * 100,
    client_us_per_msg_open: clientUs,
    open_tick_lag_p99_ms: lagP99,
    open_tick_lag_max_ms: Math.max(...lags),
    open_client_limited: clientLimited,
    latency_p50_ms: percentile(latencies, 0.5),
    latency_p90_ms: percentile(latencies, 0.9),
    latency_p99_ms: percentile(latencies, 0.99),
    open_cpu_us_per_msg: openDelivered ? (open.serverCpuS * 1e6) / openDelivered : NaN,
    ...(opts.measure.length ? { open_measured_us_per_msg: open.measuredUsPerMsg } : {}),
    notes,
    errors: summarizeErrors(errors),
  };
}

/** Sends `<enable xmlns='urn:xmpp:carbons:2'/>` (XEP-0280) and checks the result. */
async function enableCarbons(client: Client): Promise<void> {
  const answer = await client.iq(
    "<iq type='set' id='carbons1'><enable xmlns='urn:xmpp:carbons:2'/></iq>",
    "carbons1",
  );
  if (attribute(answer, "type") !== "result") {
    throw new Error(`Enabling carbons for ${client.user} failed: ${answer.slice(0, 200)}`);
  }
}

/**
 * Message relay with carbons: every account of the pairs logs in twice (resources "main" and
 * "other") and both enable carbons; the main resources run the closed loop of the messages
 * workload to each other's full JIDs, so each relayed message also goes to the receiver's
 * other resource (a received carbon) and the sender's (a sent carbon).
 */
async function carbonsWorkload(opts: LoadOptions) {
  const count = opts.pairs * 2;
  const main = await loginMany(opts, { first: 0, count, resource: "main" });
  const other = await loginMany(opts, { first: 0, count, resource: "other" });
  const all = [...main.clients, ...other.clients];
  const errors = [...main.errors, ...other.errors];
  try {
    await Promise.all(all.map(enableCarbons));
  } catch (error) {
    errors.push((error as Error).message);
  }
  const byUser = new Map(other.clients.map((c) => [c.user, c]));
  const index = (c: Client) => Number(c.user.slice(opts.userPrefix.length));
  const mains = main.clients.filter((c) => byUser.has(c.user)).sort((a, b) => index(a) - index(b));
  if (mains.length < 2 || errors.length) {
    closeAll(all);
    return { error: "Too few clients logged in with carbons", errors: summarizeErrors(errors) };
  }
  let carbons = 0;
  for (const c of other.clients) c.onMessage = () => carbons++;
  const pairs = pairUp(mains);
  await sleep(500);
  const loop = await closedLoop(opts, pairs, { warmupMs: 1000, seconds: opts.seconds });
  closeAll(all);
  const carbonsPerMessage = loop.total ? carbons / loop.total : NaN;
  const notes: string[] = [];
  if (!(carbonsPerMessage > 1.99 && carbonsPerMessage < 2.01)) {
    notes.push(`${carbonsPerMessage.toFixed(3)} carbons per relayed message instead of 2`);
  }
  if (loop.clientCpuS / loop.seconds > 0.9) {
    notes.push(
      `client busy ${Math.round((loop.clientCpuS / loop.seconds) * 100)}%: ` +
        `saturation may be the client's`,
    );
  }
  return {
    pairs: pairs.length,
    sessions: all.length,
    window_per_pair: opts.window,
    relayed_msgs_per_s: loop.delivered / loop.seconds,
    cpu_us_per_msg: loop.delivered ? (loop.serverCpuS * 1e6) / loop.delivered : NaN,
    carbons_per_msg: carbonsPerMessage,
    cpu_us_per_stanza_out: loop.delivered
      ? (loop.serverCpuS * 1e6) / (loop.delivered * (1 + carbonsPerMessage))
      : NaN,
    client_busy_pct: (loop.clientCpuS / loop.seconds) * 100,
    notes,
    errors: summarizeErrors(errors),
  };
}

/** An XEP-0199 ping to the server: once answered, the stanzas sent before it were processed. */
function sync(client: Client, domain: string, id: string): Promise<string> {
  return client.iq(
    `<iq type='get' id='${id}' to='${domain}'><ping xmlns='urn:xmpp:ping'/></iq>`,
    id,
  );
}

/**
 * Offline storage then delivery: one account sends `offline` chat messages to the bare JID of
 * an account that has not logged in (stored offline); then that account logs in without
 * presence and sends its initial presence, which makes the server deliver them all.
 */
async function offlineWorkload(opts: LoadOptions) {
  const n = opts.offline;
  const sender = new Client(opts, `${opts.userPrefix}0`, "sender");
  await sender.login();
  const bounced: string[] = [];
  sender.onStanza = (stanza) => {
    if (attribute(stanza, "type") === "error") bounced.push(stanza.slice(0, 300));
  };
  const recipientUser = `${opts.userPrefix}1`;
  const to = `${recipientUser}@${opts.domain}`;
  const storeCpu0 = cpuSeconds(opts.pid);
  const storeT0 = performance.now();
  for (let i = 0; i < n; i++) sender.sendMessage(to, filler);
  await sync(sender, opts.domain, "stored");
  const storeSeconds = (performance.now() - storeT0) / 1000;
  const storeCpu = (await settledCpu(opts.pid)) - storeCpu0;

  const recipient = new Client(opts, recipientUser, "recipient");
  await recipient.login({ presence: false });
  let delivered = 0;
  const all = new Promise<void>((resolve) => {
    recipient.onMessage = (body) => {
      if (body === filler && ++delivered === n) resolve();
    };
  });
  const deliverCpu0 = cpuSeconds(opts.pid);
  const deliverT0 = performance.now();
  recipient.send("<presence/>");
  await Promise.race([all, sleep(60000)]);
  const deliverSeconds = (performance.now() - deliverT0) / 1000;
  const deliverCpu = (await settledCpu(opts.pid)) - deliverCpu0;
  sender.close();
  recipient.close();
  const errors = bounced.slice();
  if (delivered !== n) errors.push(`Expected ${n} offline messages delivered, got ${delivered}`);
  return {
    messages: n,
    store_seconds: storeSeconds,
    store_cpu_us_per_msg: (storeCpu * 1e6) / n,
    delivered,
    deliver_seconds: deliverSeconds,
    deliver_cpu_us_per_msg: delivered ? (deliverCpu * 1e6) / delivered : NaN,
    errors: summarizeErrors(errors),
  };
}

/**
 * Logs in account `user` `times` times in a row (each session closed before the next) and
 * returns the server CPU per login, logout included, and the time to the whole roster.
 */
async function sequentialLogins(opts: LoadOptions, user: string, times: number) {
  const ready: number[] = [];
  let rosterItems = NaN;
  const cpu0 = cpuSeconds(opts.pid);
  for (let i = 0; i < times; i++) {
    const client = new Client(opts, user, `seq${i}`);
    const t = await client.login();
    ready.push(t.ready);
    rosterItems = t.rosterItems;
    client.close();
    await client.closed;
  }
  const cpu = (await settledCpu(opts.pid)) - cpu0;
  return { cpuMsPerLogin: (cpu * 1000) / times, readyP50: percentile(ready, 0.5), rosterItems };
}

/**
 * Roster: one account adds `rosterItems` contacts one roster set at a time (8 in flight),
 * answering each roster push as a client must; then that account and one with an empty roster
 * each log in `rosterLogins` times in a row, so the difference is the big roster's cost.
 */
async function rosterWorkload(opts: LoadOptions) {
  const owner = new Client(opts, `${opts.userPrefix}0`, "roster");
  await owner.login();
  const n = opts.rosterItems;
  const inFlightMax = 8;
  const errors: string[] = [];
  let sent = 0;
  let answered = 0;
  let failed = 0;
  let pushes = 0;
  let finish = () => {};
  const done = new Promise<void>((resolve) => finish = resolve);
  const pump = () => {
    while (sent < n && sent - answered < inFlightMax) {
      const id = `add${sent}`;
      owner.send(
        `<iq type='set' id='${id}'><query xmlns='jabber:iq:roster'><item jid='contact${sent}@${opts.domain}' name='Contact ${sent}'/></query></iq>`,
      );
      sent++;
    }
  };
  owner.onStanza = (stanza) => {
    if (!stanza.startsWith("<iq")) return;
    const type = attribute(stanza, "type");
    const id = attribute(stanza, "id") ?? "";
    if (type === "set" && stanza.includes("jabber:iq:roster")) {
      pushes++;
      owner.send(`<iq type='result' id='${id}'/>`);
    } else if (id.startsWith("add")) {
      if (type !== "result" && ++failed <= 3) errors.push(stanza.slice(0, 300));
      if (++answered === n) finish();
      else pump();
    }
  };
  const cpu0 = cpuSeconds(opts.pid);
  const t0 = performance.now();
  pump();
  await Promise.race([done, sleep(120000)]);
  const seconds = (performance.now() - t0) / 1000;
  for (let wait = 0; pushes < answered && wait < 50; wait++) await sleep(100);
  const addCpu = (await settledCpu(opts.pid)) - cpu0;
  owner.close();
  await owner.closed;
  await sleep(500);
  const empty = await sequentialLogins(opts, `${opts.userPrefix}2`, opts.rosterLogins);
  const big = await sequentialLogins(opts, owner.user, opts.rosterLogins);
  if (answered < n) errors.push(`Only ${answered} of ${n} roster sets were answered`);
  if (failed) errors.push(`${failed} of ${n} roster sets failed`);
  if (big.rosterItems !== n) {
    errors.push(`Expected ${n} items in the roster at login, found ${big.rosterItems}`);
  }
  return {
    items: n,
    added: answered - failed,
    pushes,
    add_seconds: seconds,
    add_cpu_ms_per_item: (addCpu * 1000) / n,
    logins: opts.rosterLogins,
    login_cpu_ms_big_roster: big.cpuMsPerLogin,
    login_cpu_ms_empty_roster: empty.cpuMsPerLogin,
    login_ready_p50_ms_big_roster: big.readyP50,
    login_ready_p50_ms_empty_roster: empty.readyP50,
    roster_items_at_login: big.rosterItems,
    errors: summarizeErrors(errors),
  };
}

/**
 * Idle authenticated sessions on a server nothing has touched yet: RSS of the idle server 3 s
 * after it listens, then with half and with all of the `idle` sessions (3 s after the last
 * login each time), then 5 s after they all closed.
 */
async function memoryWorkload(opts: LoadOptions) {
  await sleep(3000);
  const rssIdle = serverRssKiB(opts.pid);
  const half = Math.floor(opts.idle / 2);
  const cpu0 = cpuSeconds(opts.pid);
  const t0 = performance.now();
  const first = await loginMany(opts, { first: 0, count: half, resource: "idle" });
  await sleep(3000);
  const rssHalf = serverRssKiB(opts.pid);
  const second = await loginMany(opts, { first: half, count: opts.idle - half, resource: "idle" });
  const seconds = (performance.now() - t0) / 1000;
  await sleep(3000);
  const rssAll = serverRssKiB(opts.pid);
  const cpu = cpuSeconds(opts.pid) - cpu0;
  const n = first.clients.length + second.clients.length;
  const secondHalf = second.clients.length;
  closeAll([...first.clients, ...second.clients]);
  await sleep(5000);
  const rssClosed = serverRssKiB(opts.pid);
  return {
    sessions: n,
    login_seconds: seconds,
    rss_idle_kib: rssIdle,
    rss_half_kib: rssHalf,
    rss_all_kib: rssAll,
    rss_closed_kib: rssClosed,
    kib_per_session: n ? (rssAll - rssIdle) / n : NaN,
    kib_per_session_second_half: secondHalf ? (rssAll - rssHalf) / secondHalf : NaN,
    cpu_ms_per_login_cold: n ? (cpu * 1000) / n : NaN,
    errors: summarizeErrors([...first.errors, ...second.errors]),
  };
}

const NS_PUBSUB = "http://jabber.org/protocol/pubsub";
const NS_PUBSUB_EVENT = "http://jabber.org/protocol/pubsub#event";
const NS_DISCO_INFO = "http://jabber.org/protocol/disco#info";
const NS_CAPS = "http://jabber.org/protocol/caps";
/** The PEP node the publisher publishes to and the contacts ask for with `+notify`. */
const pepNode = "http://jabber.org/protocol/tune";
/** The XEP-0115 node (software) of the contacts' caps. */
const capsNode = "https://lilt.invalid/bench";
/** The contacts' disco#info: one identity and these features (sorted, as XEP-0115 §5.1 hashes). */
const capsIdentity = { category: "client", type: "pc", name: "LiltBench" };
const capsFeatures = [NS_CAPS, NS_DISCO_INFO, `${pepNode}+notify`].sort();

/** The XEP-0115 `ver` (SHA-1, base64) of the contacts' identity and features. */
export async function capsVer(): Promise<string> {
  const { category, type, name } = capsIdentity;
  const text = `${category}/${type}//${name}<${capsFeatures.map((f) => `${f}<`).join("")}`;
  return b64(new Uint8Array(await crypto.subtle.digest("SHA-1", encoder.encode(text))));
}

/** The answer to a server's disco#info query (an `<iq>` get) about the contacts' caps node. */
export function discoInfoResult(query: string): string {
  const id = attribute(query, "id") ?? "";
  const from = attribute(query, "from");
  const node = /<query[^>]*\snode=(?:'([^']*)'|"([^"]*)")/.exec(query);
  const nodeValue = node ? (node[1] ?? node[2]) : undefined;
  const { category, type, name } = capsIdentity;
  return `<iq type='result' id='${id}'${
    from ? ` to='${from}'` : ""
  }><query xmlns='${NS_DISCO_INFO}'${
    nodeValue ? ` node='${nodeValue}'` : ""
  }><identity category='${category}' type='${type}' name='${name}'/>${
    capsFeatures.map((f) => `<feature var='${f}'/>`).join("")
  }</query></iq>`;
}

/** A publish of item `id` (a ~150-byte XEP-0118 tune) to the PEP node. */
function publishIq(id: string): string {
  return `<iq type='set' id='pub-${id}'><pubsub xmlns='${NS_PUBSUB}'><publish node='${pepNode}'><item id='${id}'><tune xmlns='${pepNode}'><artist>Bench</artist><title>Track ${id}</title><source>Fan-out</source><length>180</length></tune></item></publish></pubsub></iq>`;
}

/** The item id of a PEP notification, or undefined when `stanza` is not one. */
export function notifiedItem(stanza: string): string | undefined {
  if (!stanza.startsWith("<message") || !stanza.includes(NS_PUBSUB_EVENT)) return undefined;
  const match = /<item\s[^>]*?\bid=(?:'([^']*)'|"([^"]*)")/.exec(stanza);
  return match ? (match[1] ?? match[2]) : undefined;
}

/**
 * PEP fan-out (XEP-0163): account 0 publishes to its tune node, and each of `pepContacts`
 * contacts (accounts 1 …), online with one resource whose caps include the node's `+notify`,
 * receives a notification per item. Setup (unmeasured): mutual presence subscriptions made over
 * the protocol, caps presence, the server's disco#info queries answered; items are published
 * one by one until one reaches every contact (the server knows their caps), then 20 warm-up
 * items. Measured: `pepItems` publishes at `pepRate` per second (at most 50 items not yet
 * delivered to every contact), until every notification has arrived (at most 60 s after the
 * schedule's end), then until the server is quiet.
 */
async function pepWorkload(opts: LoadOptions) {
  const errors: string[] = [];
  const publisherUser = `${opts.userPrefix}0`;
  const publisherBare = `${publisherUser}@${opts.domain}`;
  const publisher = new Client(opts, publisherUser, "publisher");
  await publisher.login({ presence: false });
  const logins = await loginMany(opts, {
    first: 1,
    count: opts.pepContacts,
    resource: "pep",
    presence: false,
  });
  const contacts = logins.clients;
  errors.push(...logins.errors);
  const all = [publisher, ...contacts];
  if (contacts.length < opts.pepContacts) {
    closeAll(all);
    return { error: "Too few contacts logged in", errors: summarizeErrors(errors) };
  }
  const ver = await capsVer();
  const capsPresence =
    `<presence><c xmlns='${NS_CAPS}' hash='sha-1' node='${capsNode}' ver='${ver}'/></presence>`;

  // who received what: item id -> contacts notified, and when each item was published
  const notified = new Map<string, number>();
  const publishedAt = new Map<string, number>();
  const latencies: number[] = [];
  let delivered = 0;
  let lastDelivery = 0;
  let publisherNotifications = 0;
  let discoQueries = 0;
  let publishResults = 0;
  let publishErrors = 0;
  let approvedByContacts = 0;
  let approvedByPublisher = 0;
  let onComplete: (id: string) => void = () => {};

  // answers every iq get/set a client must answer: disco#info about its caps, roster pushes
  const answerIq = (client: Client, stanza: string): boolean => {
    if (!stanza.startsWith("<iq")) return false;
    const type = attribute(stanza, "type");
    if (type === "get" && stanza.includes(NS_DISCO_INFO)) {
      discoQueries++;
      client.send(discoInfoResult(stanza));
    } else if (type === "get" || type === "set") {
      const from = attribute(stanza, "from");
      client.send(
        `<iq type='result' id='${attribute(stanza, "id") ?? ""}'${from ? ` to='${from}'` : ""}/>`,
      );
    }
    return true;
  };
  for (const contact of contacts) {
    contact.onStanza = (stanza) => {
      const item = notifiedItem(stanza);
      if (item !== undefined) {
        delivered++;
        lastDelivery = performance.now();
        const count = (notified.get(item) ?? 0) + 1;
        notified.set(item, count);
        if (count === contacts.length) {
          const t = publishedAt.get(item);
          if (t !== undefined && item.startsWith("m")) latencies.push(performance.now() - t);
          onComplete(item);
        }
        return;
      }
      if (answerIq(contact, stanza)) return;
      if (stanza.startsWith("<presence")) {
        const type = attribute(stanza, "type");
        if (type === "subscribe") {
          contact.send(`<presence type='subscribed' to='${publisherBare}'/>`);
        } else if (type === "subscribed") approvedByPublisher++;
      }
    };
  }
  publisher.onStanza = (stanza) => {
    if (notifiedItem(stanza) !== undefined) {
      publisherNotifications++;
      return;
    }
    if (stanza.startsWith("<iq") && (attribute(stanza, "id") ?? "").startsWith("pub-")) {
      const type = attribute(stanza, "type");
      if (type === "result") publishResults++;
      else if (type === "error" && ++publishErrors <= 3) errors.push(stanza.slice(0, 300));
      return;
    }
    if (answerIq(publisher, stanza)) return;
    if (stanza.startsWith("<presence")) {
      const type = attribute(stanza, "type");
      const from = (attribute(stanza, "from") ?? "").split("/")[0];
      if (type === "subscribe") {
        publisher.send(
          `<presence type='subscribed' to='${from}'/><presence type='subscribe' to='${from}'/>`,
        );
      } else if (type === "subscribed") approvedByContacts++;
    }
  };

  // setup: presence, then mutual subscriptions, then the caps presence again so the
  // publisher's server sees it from a contact with a subscription in place
  const setupT0 = performance.now();
  publisher.send("<presence/>");
  for (const contact of contacts) {
    contact.send(capsPresence);
    contact.send(`<presence type='subscribe' to='${publisherBare}'/>`);
  }
  for (
    let wait = 0;
    wait < 300 && (approvedByContacts < contacts.length || approvedByPublisher < contacts.length);
    wait++
  ) await sleep(100);
  if (approvedByContacts < contacts.length || approvedByPublisher < contacts.length) {
    errors.push(
      `Subscriptions incomplete after 30 s: ${approvedByPublisher} approved by the publisher, ` +
        `${approvedByContacts} by contacts`,
    );
  }
  for (const contact of contacts) contact.send(capsPresence);
  await sync(publisher, opts.domain, "setup-sync");

  // publishes one item at a time until one reaches every contact (at most 60 tries)
  const completed = new Set<string>();
  onComplete = (id) => completed.add(id);
  let ready = false;
  let attempts = 0;
  while (attempts < 60 && !ready) {
    const id = `r${attempts++}`;
    publishedAt.set(id, performance.now());
    publisher.send(publishIq(id));
    for (let wait = 0; wait < 20 && !completed.has(id); wait++) await sleep(50);
    ready = completed.has(id);
  }
  const setupSeconds = (performance.now() - setupT0) / 1000;
  if (!ready) {
    closeAll(all);
    errors.push(`No item reached all ${contacts.length} contacts within 60 tries`);
    return {
      error: "PEP notifications never reached every contact",
      errors: summarizeErrors(errors),
    };
  }

  // publishes `count` items with prefix `prefix` at `pepRate`, at most 50 not yet complete
  const inFlightMax = 50;
  const publishAll = (prefix: string, count: number) =>
    sendPaced({
      prefix,
      count,
      rate: opts.pepRate,
      inFlightMax,
      listen: (complete) => onComplete = complete,
      send: (id) => {
        publishedAt.set(id, performance.now());
        publisher.send(publishIq(id));
      },
    });

  await publishAll("w", 20);
  await sleep(1000);

  const delivered0 = delivered;
  const cpu0 = cpuSeconds(opts.pid);
  const own0 = cpuSeconds(Deno.pid);
  const t0 = performance.now();
  const run = await publishAll("m", opts.pepItems);
  const fanOutSeconds = (lastDelivery - t0) / 1000;
  const ownCpu = cpuSeconds(Deno.pid) - own0;
  const serverCpuS = (await settledCpu(opts.pid)) - cpu0;
  const count = delivered - delivered0;
  const expected = opts.pepItems * contacts.length;
  closeAll(all);
  if (count !== expected) {
    errors.push(`Expected ${expected} notifications, ${count} arrived`);
  }
  if (run.sent < opts.pepItems) {
    errors.push(`Only ${run.sent} of ${opts.pepItems} items were published before the deadline`);
  }
  const publishes = attempts + 20 + opts.pepItems;
  if (publishResults < publishes) {
    errors.push(`${publishResults} of ${publishes} publishes answered with a result`);
  }
  const notes: string[] = [];
  if (run.held) {
    notes.push(
      `publishing was held ${run.held} times because ${inFlightMax} items were not yet ` +
        `delivered to every contact: the server did not keep up with ${opts.pepRate} items/s`,
    );
  }
  if (percentile(run.lags, 0.99) > lagLimitMs) {
    notes.push(
      `the client's 2 ms publish timer lagged (p99 ${percentile(run.lags, 0.99).toFixed(1)} ms): ` +
        `latency may be the client's`,
    );
  }
  return {
    contacts: contacts.length,
    items: opts.pepItems,
    offered_items_per_s: opts.pepRate,
    publish_seconds: run.seconds,
    notifications: count,
    notifications_per_item: count / opts.pepItems,
    notifications_per_s: fanOutSeconds > 0 ? count / fanOutSeconds : NaN,
    fan_out_seconds: fanOutSeconds,
    server_cpu_s: serverCpuS,
    cpu_us_per_notification: count ? (serverCpuS * 1e6) / count : NaN,
    cpu_us_per_publish: (serverCpuS * 1e6) / opts.pepItems,
    server_busy_pct: fanOutSeconds > 0 ? (serverCpuS / fanOutSeconds) * 100 : NaN,
    fan_out_p50_ms: percentile(latencies, 0.5),
    fan_out_p99_ms: percentile(latencies, 0.99),
    client_busy_pct: fanOutSeconds > 0 ? (ownCpu / fanOutSeconds) * 100 : NaN,
    publisher_notifications: publisherNotifications,
    disco_queries: discoQueries,
    ready_after_items: attempts,
    setup_seconds: setupSeconds,
    notes,
    errors: summarizeErrors(errors),
  };
}

const NS_MUC = "http://jabber.org/protocol/muc";

/** What one stanza an occupant receives means to the muc workload. */
export type RoomStanza =
  | { kind: "delivery"; id: string }
  | { kind: "self"; created: boolean }
  | { kind: "presence" }
  | { kind: "error"; text: string }
  | { kind: "other" };

/**
 * Classifies a stanza an occupant of `room` receives: a groupchat message whose body starts
 * with a bench marker (`w12 …`, `m7 …`) is a delivery of that marker; the occupant's own join
 * presence (status 110; `created` with 201, a new locked room) is "self"; other presences from
 * the room count towards its occupant list; an error stanza is an error.
 */
export function roomStanza(stanza: string, room: string): RoomStanza {
  const isMessage = stanza.startsWith("<message");
  if (!isMessage && !stanza.startsWith("<presence")) return { kind: "other" };
  const type = attribute(stanza, "type");
  if (type === "error") return { kind: "error", text: stanza.slice(0, 300) };
  if (isMessage) {
    if (type !== "groupchat") return { kind: "other" };
    const match = /<body>([wm]\d+) /.exec(stanza);
    return match ? { kind: "delivery", id: match[1] } : { kind: "other" };
  }
  const from = attribute(stanza, "from") ?? "";
  if (!from.startsWith(`${room}/`) || type === "unavailable") return { kind: "other" };
  if (/\scode=['"]110['"]/.test(stanza)) {
    return { kind: "self", created: /\scode=['"]201['"]/.test(stanza) };
  }
  return { kind: "presence" };
}

/** A groupchat message to the room whose body starts with marker `id` (~120 bytes). */
function groupchat(room: string, id: string): string {
  return `<message to='${room}' type='groupchat'><body>${id} ${filler}</body></message>`;
}

/**
 * MUC fan-out (XEP-0045): `mucOccupants` accounts (1 …, one resource each) join one room, the
 * first creating it (an instant room when the server locks new rooms: status 201 and an empty
 * `muc#owner` form). Setup (unmeasured): the joins, 50 at a time, until every occupant has the
 * presence of every other, then 20 warm-up messages. Measured: `mucMessages` groupchat messages
 * at `mucRate` per second, the first `mucSenders` occupants taking turns (at most 50 messages
 * not yet delivered to every occupant, the sender's echo included), until every delivery has
 * arrived (at most 60 s after the schedule's end), then until the server is quiet.
 */
async function mucWorkload(opts: LoadOptions) {
  const errors: string[] = [];
  const room = opts.mucRoom;
  const logins = await loginMany(opts, {
    first: 1,
    count: opts.mucOccupants,
    resource: "muc",
    presence: false,
  });
  const occupants = logins.clients;
  errors.push(...logins.errors);
  if (occupants.length < opts.mucOccupants) {
    closeAll(occupants);
    return { error: "Too few occupants logged in", errors: summarizeErrors(errors) };
  }
  const n = occupants.length;
  const joined = new Set<Client>();
  const presences = new Map<Client, number>();
  const delivered = new Map<string, number>();
  const sentAt = new Map<string, number>();
  const latencies: number[] = [];
  let deliveries = 0;
  let lastDelivery = 0;
  let created = false;
  let stanzaErrors = 0;
  let onComplete: (id: string) => void = () => {};
  for (const occupant of occupants) {
    presences.set(occupant, 0);
    occupant.onStanza = (stanza) => {
      const what = roomStanza(stanza, room);
      if (what.kind === "delivery") {
        deliveries++;
        lastDelivery = performance.now();
        const count = (delivered.get(what.id) ?? 0) + 1;
        delivered.set(what.id, count);
        if (count === n) {
          const t = sentAt.get(what.id);
          if (t !== undefined && what.id.startsWith("m")) latencies.push(performance.now() - t);
          onComplete(what.id);
        }
      } else if (what.kind === "self") {
        joined.add(occupant);
        if (what.created) created = true;
        presences.set(occupant, presences.get(occupant)! + 1);
      } else if (what.kind === "presence") {
        presences.set(occupant, presences.get(occupant)! + 1);
      } else if (what.kind === "error") {
        if (++stanzaErrors <= 3) errors.push(what.text);
      } else if (stanza.startsWith("<iq")) {
        const type = attribute(stanza, "type");
        if (type === "get" || type === "set") {
          const from = attribute(stanza, "from");
          occupant.send(
            `<iq type='error' id='${attribute(stanza, "id") ?? ""}'${
              from ? ` to='${from}'` : ""
            }><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`,
          );
        }
      }
    };
  }
  const join = (occupant: Client, index: number) =>
    occupant.send(
      `<presence to='${room}/o${index}'><x xmlns='${NS_MUC}'><history maxstanzas='0'/></x></presence>`,
    );
  const waitFor = async (done: () => boolean, tenths: number) => {
    for (let wait = 0; wait < tenths && !done(); wait++) await sleep(100);
    return done();
  };

  // the first occupant creates the room; an instant room if the server locked it
  const setupT0 = performance.now();
  const creator = occupants[0];
  join(creator, 0);
  if (!await waitFor(() => joined.has(creator), 300)) {
    closeAll(occupants);
    errors.push(`The creator's join got no self-presence within 30 s`);
    return { error: "The room was not created", errors: summarizeErrors(errors) };
  }
  if (created) {
    const answer = await creator.iq(
      `<iq type='set' id='instant' to='${room}'><query xmlns='${NS_MUC}#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>`,
      "instant",
    );
    if (attribute(answer, "type") !== "result") {
      errors.push(`Instant room refused: ${answer.slice(0, 300)}`);
    }
  }
  for (let i = 1; i < n; i += 50) {
    const batch = occupants.slice(i, Math.min(n, i + 50));
    batch.forEach((occupant, j) => join(occupant, i + j));
    await waitFor(() => batch.every((o) => joined.has(o)), 300);
  }
  const everyone = () => occupants.every((o) => presences.get(o)! >= n);
  if (!await waitFor(everyone, 300)) {
    const short = occupants.filter((o) => presences.get(o)! < n).length;
    errors.push(
      `${joined.size} of ${n} occupants joined; ${short} lack some presence after 30 s`,
    );
  }
  if (joined.size < n) {
    closeAll(occupants);
    return { error: "Not every occupant joined the room", errors: summarizeErrors(errors) };
  }
  const setupSeconds = (performance.now() - setupT0) / 1000;

  // sends `count` messages with marker prefix `prefix` at `mucRate`, at most 50 not yet
  // complete, the senders taking turns
  const senders = occupants.slice(0, Math.max(1, Math.min(opts.mucSenders, n)));
  const inFlightMax = 50;
  const sendAll = (prefix: string, count: number) =>
    sendPaced({
      prefix,
      count,
      rate: opts.mucRate,
      inFlightMax,
      listen: (complete) => onComplete = complete,
      send: (id, index) => {
        sentAt.set(id, performance.now());
        senders[index % senders.length].send(groupchat(room, id));
      },
    });

  await sendAll("w", 20);
  await sleep(1000);

  const deliveries0 = deliveries;
  const cpu0 = cpuSeconds(opts.pid);
  const own0 = cpuSeconds(Deno.pid);
  const t0 = performance.now();
  const run = await sendAll("m", opts.mucMessages);
  const fanOutSeconds = (lastDelivery - t0) / 1000;
  const ownCpu = cpuSeconds(Deno.pid) - own0;
  const serverCpuS = (await settledCpu(opts.pid)) - cpu0;
  const count = deliveries - deliveries0;
  const expected = opts.mucMessages * n;
  closeAll(occupants);
  if (count !== expected) errors.push(`Expected ${expected} deliveries, ${count} arrived`);
  if (run.sent < opts.mucMessages) {
    errors.push(`Only ${run.sent} of ${opts.mucMessages} messages were sent before the deadline`);
  }
  const notes: string[] = [];
  if (run.held) {
    notes.push(
      `sending was held ${run.held} times because ${inFlightMax} messages were not yet ` +
        `delivered to every occupant: the server did not keep up with ${opts.mucRate} messages/s`,
    );
  }
  if (percentile(run.lags, 0.99) > lagLimitMs) {
    notes.push(
      `the client's 2 ms send timer lagged (p99 ${percentile(run.lags, 0.99).toFixed(1)} ms): ` +
        `latency may be the client's`,
    );
  }
  return {
    occupants: n,
    senders: senders.length,
    messages: opts.mucMessages,
    offered_messages_per_s: opts.mucRate,
    send_seconds: run.seconds,
    deliveries: count,
    deliveries_per_message: count / opts.mucMessages,
    deliveries_per_s: fanOutSeconds > 0 ? count / fanOutSeconds : NaN,
    fan_out_seconds: fanOutSeconds,
    server_cpu_s: serverCpuS,
    cpu_us_per_delivery: count ? (serverCpuS * 1e6) / count : NaN,
    cpu_us_per_message: (serverCpuS * 1e6) / opts.mucMessages,
    server_busy_pct: fanOutSeconds > 0 ? (serverCpuS / fanOutSeconds) * 100 : NaN,
    fan_out_p50_ms: percentile(latencies, 0.5),
    fan_out_p99_ms: percentile(latencies, 0.99),
    client_busy_pct: fanOutSeconds > 0 ? (ownCpu / fanOutSeconds) * 100 : NaN,
    room_created_locked: created,
    setup_seconds: setupSeconds,
    notes,
    errors: summarizeErrors(errors),
  };
}

/** What a paced fan-out run did (see {@link sendPaced}). */
interface PacedRun {
  /** Items sent. */
  sent: number;
  /** Items complete (delivered to every recipient). */
  done: number;
  /** Times sending waited because `inFlightMax` items were not complete. */
  held: number;
  /** Seconds from the first send to the last. */
  seconds: number;
  /** How late each `tickMs` timer fired, in ms. */
  lags: number[];
}

/**
 * Sends `count` items named `${prefix}${index}` at `rate` per second in `tickMs` ticks, with at
 * most `inFlightMax` not yet complete (the workload calls the function given to `listen` with
 * an item's id once it reached every recipient); resolves once all are complete, or 60 s after
 * the schedule's end, so that items that never complete do not keep it going.
 */
async function sendPaced(options: {
  prefix: string;
  count: number;
  rate: number;
  inFlightMax: number;
  listen: (complete: (id: string) => void) => void;
  send: (id: string, index: number) => void;
}): Promise<PacedRun> {
  const { prefix, count, rate, inFlightMax } = options;
  let sent = 0;
  let done = 0;
  let held = 0;
  let allDone = () => {};
  const finished = new Promise<void>((resolve) => allDone = resolve);
  options.listen((id) => {
    if (id.startsWith(prefix) && ++done === count) allDone();
  });
  const lags: number[] = [];
  const t0 = performance.now();
  const deadline = t0 + (count / rate) * 1000 + 60000;
  while (sent < count && performance.now() < deadline) {
    const due = Math.min(count, Math.floor(((performance.now() - t0) / 1000) * rate) + 1);
    while (sent < due) {
      if (sent - done >= inFlightMax) {
        held++;
        break;
      }
      options.send(`${prefix}${sent}`, sent);
      sent++;
    }
    const before = performance.now();
    await sleep(tickMs);
    lags.push(performance.now() - before - tickMs);
  }
  const seconds = (performance.now() - t0) / 1000;
  if (done < count) {
    await Promise.race([finished, sleep(Math.max(0, deadline - performance.now()))]);
  }
  return { sent, done, held, seconds, lags };
}

/** The measured workloads by `--workload` name. */
const measured: Record<string, (opts: LoadOptions) => Promise<Record<string, unknown>>> = {
  login: loginWorkload,
  messages: messageWorkload,
  // The same relay on a server that archives every message (XEP-0313), for the cost of it.
  mam: messageWorkload,
  carbons: carbonsWorkload,
  offline: offlineWorkload,
  roster: rosterWorkload,
  memory: memoryWorkload,
  pep: pepWorkload,
  muc: mucWorkload,
  // The login and messages workloads over RFC 7395 WebSocket (warm-up included), against the
  // server's --ws-url (ws:// or wss://): the same figures, to set beside the TCP ones.
  "ws-login": loginWorkload,
  "ws-messages": messageWorkload,
  "wss-login": loginWorkload,
  "wss-messages": messageWorkload,
};

/** One `--measure` entry, `name:PID`. */
function measureArg(entry: string): { name: string; pid: number } {
  const [name, pid] = entry.split(":");
  if (!name || !(Number(pid) > 0)) {
    throw new Error(`Expected --measure entries as name:PID, found '${entry}'`);
  }
  return { name, pid: Number(pid) };
}

/** The transport a workload's clients use: WebSocket for the ws-/wss- ones, TCP otherwise. */
export function transportOf(workload: string): LoadTransport {
  return workload.startsWith("ws-") || workload.startsWith("wss-") ? "ws" : "tcp";
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string" },
      "peer-port": { type: "string", default: "0" },
      measure: { type: "string", default: "" },
      "ws-url": { type: "string", default: "" },
      "open-rate": { type: "string", default: "0" },
      domain: { type: "string", default: "localhost" },
      pid: { type: "string" },
      prefix: { type: "string", default: "bench" },
      password: { type: "string", default: "benchpass" },
      logins: { type: "string", default: "2000" },
      pairs: { type: "string", default: "50" },
      idle: { type: "string", default: "5000" },
      concurrency: { type: "string", default: "64" },
      window: { type: "string", default: "5" },
      seconds: { type: "string", default: "8" },
      offline: { type: "string", default: "1000" },
      "roster-items": { type: "string", default: "1000" },
      "roster-logins": { type: "string", default: "20" },
      accounts: { type: "string", default: "5000" },
      warmup: { type: "string", default: "64" },
      "pep-contacts": { type: "string", default: "200" },
      "pep-items": { type: "string", default: "500" },
      "pep-rate": { type: "string", default: "25" },
      "muc-occupants": { type: "string", default: "200" },
      "muc-senders": { type: "string", default: "5" },
      "muc-messages": { type: "string", default: "500" },
      "muc-rate": { type: "string", default: "25" },
      "muc-room": { type: "string", default: "bench@conference.localhost" },
      workload: { type: "string" },
      keys: { type: "string" },
    },
  });
  if (!values.port || !values.pid || !values.workload || !values.keys) {
    throw new Error("Expected --port, --pid, --workload and --keys");
  }
  const workload = values.workload;
  if (workload !== "prime" && !measured[workload]) {
    throw new Error(
      `Unknown workload '${workload}' (expected prime, ${Object.keys(measured).join(", ")})`,
    );
  }
  const transport = transportOf(workload);
  if (transport === "ws" && !values["ws-url"]) {
    throw new Error(`Workload '${workload}' needs --ws-url (the server's RFC 7395 endpoint)`);
  }
  const opts: LoadOptions = {
    host: values.host!,
    port: Number(values.port),
    transport,
    wsUrl: values["ws-url"]!,
    openRate: Number(values["open-rate"]),
    domain: values.domain!,
    pid: Number(values.pid.split(",")[0]),
    pids: values.pid.split(",").map(Number),
    peerPort: Number(values["peer-port"]),
    measure: values.measure ? values.measure.split(",").map(measureArg) : [],
    userPrefix: values.prefix!,
    password: values.password!,
    logins: Number(values.logins),
    pairs: Number(values.pairs),
    idle: Number(values.idle),
    concurrency: Number(values.concurrency),
    window: Number(values.window),
    seconds: Number(values.seconds),
    offline: Number(values.offline),
    rosterItems: Number(values["roster-items"]),
    rosterLogins: Number(values["roster-logins"]),
    accounts: Number(values.accounts),
    warmup: Number(values.warmup),
    pepContacts: Number(values["pep-contacts"]),
    pepItems: Number(values["pep-items"]),
    pepRate: Number(values["pep-rate"]),
    mucOccupants: Number(values["muc-occupants"]),
    mucSenders: Number(values["muc-senders"]),
    mucMessages: Number(values["muc-messages"]),
    mucRate: Number(values["muc-rate"]),
    mucRoom: values["muc-room"]!,
  };
  loadKeyCache(values.keys);
  const log = (text: string) => console.error(`[load ${opts.port}] ${text}`);
  const result: Record<string, unknown> = {};
  if (workload === "prime") {
    log(`prime: key cache for ${opts.accounts} accounts`);
    result.prime = await primeWorkload(opts, values.keys);
  } else {
    let warmup: unknown;
    if (workload !== "memory" && opts.warmup > 0) {
      log(`warm-up: ${opts.warmup} logins, 1 s of messages`);
      warmup = await warmUp(opts);
    }
    log(`${workload}: measuring`);
    const ticks0 = opts.pids.reduce((sum, pid) => sum + tickCpuSeconds(pid), 0);
    const precise0 = serverCpuSeconds(opts);
    let figures: Record<string, unknown>;
    try {
      figures = await measured[workload](opts);
    } catch (error) {
      // reported in the runner's errors; the figures of this workload are missing
      const message = (error as Error).message;
      figures = { error: message, errors: summarizeErrors([message]) };
    }
    const ticks = opts.pids.reduce((sum, pid) => sum + tickCpuSeconds(pid), 0) - ticks0;
    const precise = serverCpuSeconds(opts) - precise0;
    const notes = (figures.notes ?? []) as string[];
    // tick counts are truncated to 10 ms for utime and stime each: 20 ms of slack, and 1%
    if (Math.abs(ticks - precise) > 0.02 + 0.01 * ticks) {
      notes.push(
        `server CPU over the workload: ${ticks.toFixed(3)} s in ticks, ${
          precise.toFixed(3)
        } s summed over its live threads (a thread exited?): CPU figures may be low`,
      );
    }
    result[workload] = {
      ...figures,
      notes,
      cpu_check: { tick_s: ticks, thread_sum_s: precise },
      warmup,
      key_misses: keyMisses,
    };
  }
  console.log(JSON.stringify(result));
  // sockets may linger in TLS close; exit explicitly
  Deno.exit(0);
}

if (import.meta.main) await main();
