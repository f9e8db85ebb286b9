// XMPP load generator for the side-by-side benchmark (scripts/bench/compare.ts): raw sockets,
// string-scanning framing, STARTTLS + SCRAM-SHA-1, and the server's CPU/RSS read from /proc.

import net from "node:net";
import tls from "node:tls";
import { parseArgs } from "node:util";

/** Options of one load-client run, from the command line. */
export interface LoadOptions {
  host: string;
  port: number;
  domain: string;
  pid: number;
  userPrefix: string;
  password: string;
  logins: number;
  pairs: number;
  idle: number;
  concurrency: number;
  window: number;
  seconds: number;
}

const encoder = new TextEncoder();
const clockTicks = 100; // CLK_TCK on Linux x86-64/arm64

/** CPU seconds so far of process `pid` (utime + stime of every thread): the server or this client. */
function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / clockTicks;
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

/**
 * ClientKey and StoredKey by user, salt and iteration count, as real clients cache their
 * SaltedPassword: PBKDF2 runs once per user (in the unmeasured priming pass, see `primeMany`).
 */
const keyCache = new Map<string, { clientKey: Uint8Array; storedKey: Uint8Array }>();

async function scramKeys(user: string, password: string, salt: Uint8Array, iterations: number) {
  const cacheKey = `${user}\0${password}\0${b64(salt)}\0${iterations}`;
  const cached = keyCache.get(cacheKey);
  if (cached) return cached;
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

/** One client connection: login state machine, then message scanning. */
class Client {
  readonly user: string;
  readonly resource: string;
  jid = "";
  onMessage: MessageHandler | undefined;
  #opts: LoadOptions;
  #raw: net.Socket | undefined;
  #sock: net.Socket | tls.TLSSocket | undefined;
  #buffer = "";
  #waiter: { marker: string; resolve: (text: string) => void } | undefined;
  #failed: ((error: Error) => void) | undefined;
  #closed = false;

  constructor(opts: LoadOptions, user: string, resource: string) {
    this.#opts = opts;
    this.user = user;
    this.resource = resource;
  }

  /**
   * Runs the whole login; resolves with ms to bound and ms to roster result. With `primeOnly`
   * it stops after the SCRAM challenge, once the salted password is cached (no auth attempt).
   */
  async login(primeOnly = false): Promise<{ bound: number; ready: number }> {
    const start = performance.now();
    const o = this.#opts;
    const failure = new Promise<never>((_, reject) => this.#failed = reject);
    const step = <T>(p: Promise<T>) => Promise.race([p, failure]);
    const timeout = setTimeout(
      () => this.#fail(new Error(`Login of ${this.user} timed out`)),
      30000,
    );
    try {
      const raw = net.connect({ host: o.host, port: o.port });
      raw.setNoDelay(true);
      this.#raw = raw;
      this.#attach(raw);
      await step(new Promise<void>((resolve) => raw.once("connect", () => resolve())));
      this.#send(this.#header());
      await step(this.#wait("</stream:features>"));
      this.#send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
      await step(this.#wait("<proceed"));
      raw.removeAllListeners("data");
      this.#buffer = "";
      const secure = tls.connect({ socket: raw, servername: o.domain, rejectUnauthorized: false });
      this.#sock = secure;
      this.#attach(secure);
      await step(new Promise<void>((resolve) => secure.once("secureConnect", () => resolve())));
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
      if (primeOnly) return { bound: NaN, ready: NaN };
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
        `<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${this.resource}</resource></bind></iq>`,
      );
      const bindResult = await step(this.#wait("</iq>"));
      const jid = /<jid>([^<]+)<\/jid>/.exec(bindResult);
      if (!jid) throw new Error(`Bind failed for ${this.user}: ${bindResult.slice(0, 200)}`);
      this.jid = jid[1];
      const bound = performance.now() - start;
      this.#send("<presence/><iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>");
      await step(this.#wait("id='r1'", 'id="r1"'));
      // the rest of that iq may still be in the buffer: messages are scanned from here on
      this.#waiter = undefined;
      this.#buffer = "";
      return { bound, ready: performance.now() - start };
    } finally {
      clearTimeout(timeout);
    }
  }

  /** Sends one chat message to a full JID. */
  sendMessage(to: string, body: string): void {
    this.#send(`<message to='${to}' type='chat'><body>${body}</body></message>`);
  }

  /** Closes the stream and the socket. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#sock?.write("</stream:stream>");
    } catch { /* already gone */ }
    (this.#sock ?? this.#raw)?.destroy();
    this.#raw?.destroy();
  }

  #header(): string {
    return `<?xml version='1.0'?><stream:stream to='${this.#opts.domain}' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`;
  }

  #send(text: string): void {
    (this.#sock ?? this.#raw)!.write(text);
  }

  #fail(error: Error): void {
    this.#failed?.(error);
  }

  #attach(sock: net.Socket): void {
    sock.setEncoding("utf8");
    sock.on("data", (chunk: string) => this.#data(chunk));
    sock.on("error", (error: Error) => this.#fail(error));
    sock.on("close", () => {
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
 * Caches the SCRAM keys of users `first`..`first + count - 1`: each connects, does STARTTLS and
 * reads the SCRAM challenge (salt, iterations), then closes without answering it, so the server
 * records neither a login nor a failure. Not measured.
 */
async function primeMany(opts: LoadOptions, first: number, count: number): Promise<number> {
  let next = 0;
  let failed = 0;
  async function worker() {
    while (next < count) {
      const client = new Client(opts, `${opts.userPrefix}${first + next++}`, "prime");
      try {
        await client.login(true);
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

/** Logs in `count` clients with at most `concurrency` logins in flight. */
async function loginMany(
  opts: LoadOptions,
  first: number,
  count: number,
  resource: string,
): Promise<{ clients: Client[]; bound: number[]; ready: number[]; errors: string[] }> {
  const clients: Client[] = [];
  const bound: number[] = [];
  const ready: number[] = [];
  const errors: string[] = [];
  let next = 0;
  async function worker() {
    while (next < count) {
      const i = first + next++;
      const client = new Client(opts, `${opts.userPrefix}${i}`, resource);
      try {
        const t = await client.login();
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

/** Workload 1: login rate, time to bound, server CPU per login. */
async function loginWorkload(opts: LoadOptions) {
  const primeT0 = performance.now();
  const primeFailed = await primeMany(opts, 0, opts.logins);
  const primeSeconds = (performance.now() - primeT0) / 1000;
  await sleep(1000); // let the priming connections close
  const cpu0 = cpuSeconds(opts.pid);
  const own0 = cpuSeconds(Deno.pid);
  const t0 = performance.now();
  const result = await loginMany(opts, 0, opts.logins, "login");
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
    prime_seconds: primeSeconds,
    prime_failed: primeFailed,
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
  const server0 = cpuSeconds(opts.pid);
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
  const serverCpuS = cpuSeconds(opts.pid) - server0;
  measuring = false;
  return {
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

/**
 * Workload 2: closed-loop saturation, then an open loop for latency at half that rate, capped
 * at `clientHeadroom` of what the client itself can handle (its CPU time per message in a 1 s
 * open-loop calibration), so that the latency figures are the server's and not the client's.
 */
async function messageWorkload(opts: LoadOptions) {
  const { clients, errors } = await loginMany(opts, 0, opts.pairs * 2, "msg");
  if (clients.length < 2) {
    closeAll(clients);
    return { error: "Too few clients logged in", errors: summarizeErrors(errors) };
  }
  const pairs: [Client, Client][] = [];
  for (let i = 0; i + 1 < clients.length; i += 2) pairs.push([clients[i], clients[i + 1]]);
  await sleep(500);

  // closed loop: every delivery triggers the next message back the other way
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
  await sleep(1000); // warm-up
  const closedCpu0 = cpuSeconds(opts.pid);
  const closedOwn0 = cpuSeconds(Deno.pid);
  const closedCount0 = delivered;
  const closedT0 = performance.now();
  await sleep(opts.seconds * 1000);
  const closedSeconds = (performance.now() - closedT0) / 1000;
  const closedCount = delivered - closedCount0;
  const closedCpu = cpuSeconds(opts.pid) - closedCpu0;
  const closedOwn = cpuSeconds(Deno.pid) - closedOwn0;
  running = false;
  await sleep(1500); // drain
  const saturation = closedCount / closedSeconds;
  const half = saturation / 2;

  // calibration: 1 s of open loop at half saturation gives the client's own CPU cost per
  // message when sends are not batched by the closed loop (about twice the closed-loop cost)
  const calibration = await openLoop(opts, clients, pairs, half, 1);
  const clientUs = calibration.clientCpuS > 0
    ? (calibration.clientCpuS * 1e6) / calibration.sent
    : 0;
  const clientMax = clientUs > 0 ? 1e6 / clientUs : Infinity;
  const rate = Math.min(half, clientHeadroom * clientMax);
  await sleep(500);
  const open = await openLoop(opts, clients, pairs, rate, opts.seconds);
  closeAll(clients);
  const { lags, latencies, sent, openSeconds } = open;
  const openDelivered = open.delivered;
  const lagP99 = percentile(lags, 0.99);
  const sentRate = sent / openSeconds;
  const notes: string[] = [];
  if (rate < half) {
    notes.push(
      `open-loop rate capped at ${Math.round(rate)} msgs/s (${clientHeadroom * 100}% of the ` +
        `client's ${Math.round(clientMax)} msgs/s) instead of half saturation ${Math.round(half)}`,
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
    saturation_client_busy_pct: (closedOwn / closedSeconds) * 100,
    client_max_msgs_per_s: clientMax,
    open_offered_msgs_per_s: rate,
    open_rate_msgs_per_s: sentRate,
    open_achieved_msgs_per_s: open.deliveredInWindow / openSeconds,
    open_capped_by_client: rate < half,
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
    notes,
    errors: summarizeErrors(errors),
  };
}

/** Workload 3: idle authenticated sessions, server RSS per session. */
async function memoryWorkload(opts: LoadOptions) {
  // Let the previous workload's sessions close and the server return their freed heap
  // (it trims the C heap about 2 s after many connections closed).
  await sleep(5000);
  const rss0 = serverRssKiB(opts.pid);
  const cpu0 = cpuSeconds(opts.pid);
  const t0 = performance.now();
  const { clients, errors } = await loginMany(opts, 0, opts.idle, "idle");
  const seconds = (performance.now() - t0) / 1000;
  await sleep(3000); // settle
  const rss1 = serverRssKiB(opts.pid);
  const cpu = cpuSeconds(opts.pid) - cpu0;
  const n = clients.length;
  closeAll(clients);
  return {
    sessions: n,
    login_seconds: seconds,
    rss_before_kib: rss0,
    rss_after_kib: rss1,
    kib_per_session: n ? (rss1 - rss0) / n : NaN,
    cpu_ms_per_login: n ? (cpu * 1000) / n : NaN,
    errors: summarizeErrors(errors),
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string" },
      domain: { type: "string", default: "localhost" },
      pid: { type: "string" },
      prefix: { type: "string", default: "bench" },
      password: { type: "string", default: "benchpass" },
      logins: { type: "string", default: "2000" },
      pairs: { type: "string", default: "200" },
      idle: { type: "string", default: "5000" },
      concurrency: { type: "string", default: "64" },
      window: { type: "string", default: "5" },
      seconds: { type: "string", default: "8" },
      workloads: { type: "string", default: "login,messages,memory" },
    },
  });
  if (!values.port || !values.pid) throw new Error("Expected --port and --pid");
  const opts: LoadOptions = {
    host: values.host!,
    port: Number(values.port),
    domain: values.domain!,
    pid: Number(values.pid),
    userPrefix: values.prefix!,
    password: values.password!,
    logins: Number(values.logins),
    pairs: Number(values.pairs),
    idle: Number(values.idle),
    concurrency: Number(values.concurrency),
    window: Number(values.window),
    seconds: Number(values.seconds),
  };
  const wanted = new Set(values.workloads!.split(","));
  const result: Record<string, unknown> = {};
  const log = (text: string) => console.error(`[load ${opts.port}] ${text}`);
  if (wanted.has("login")) {
    log(`login: ${opts.logins} clients, ${opts.concurrency} in flight`);
    result.login = await loginWorkload(opts);
    await sleep(1500);
  }
  if (wanted.has("messages")) {
    log(
      `messages: ${opts.pairs} pairs, ${opts.seconds} s closed loop + ${opts.seconds} s open loop`,
    );
    result.messages = await messageWorkload(opts);
  }
  if (wanted.has("memory")) {
    log(`memory: ${opts.idle} idle sessions`);
    result.memory = await memoryWorkload(opts);
  }
  console.log(JSON.stringify(result));
  // sockets may linger in TLS close; exit explicitly
  Deno.exit(0);
}

if (import.meta.main) await main();
