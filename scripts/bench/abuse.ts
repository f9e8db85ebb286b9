// The abuse run (issue 18): Lilt as a child process, its idle RSS once the normal clients are
// logged in, then one client flooding another with messages while hundreds of hostile
// connections (half-open, slowloris headers, junk before auth, stalled TLS handshakes, oversized
// stanzas, deep nesting, many small stanzas before auth) hold on or churn; the server's VmRSS
// and VmHWM are sampled from /proc every 100 ms. Prints idle, peak and their ratio (the target
// is below 1.5), and whether the server still answers a ping afterwards. Loopback only, bounded
// in connections and time.
//
//   scripts/deno run --allow-all scripts/bench/abuse.ts [--messages=20000] [--hostile=550]
//     [--max-seconds=180] [--attack-seconds=20] [--kinds=a,b] [--no-reconnect] [--default-limits]
//     [--debug] [--keep]

import net from "node:net";
import tls from "node:tls";
import { parseArgs } from "node:util";
import { join } from "node:path";
import { GLOBAL_OPTIONS } from "../../core/config_schema.ts";
import {
  freePort,
  makeBenchCertificate,
  root,
  run,
  sleep,
  stopServer,
  waitForPort,
} from "./harness.ts";

const DOMAIN = "localhost";
const PASSWORD = "abusepass";

/** What one run measured. */
export interface AbuseReport {
  date: string;
  messages: number;
  hostile: number;
  delivered: number;
  flood_seconds: number;
  idle_rss_kib: number;
  peak_rss_kib: number;
  /** VmHWM after it was reset at the end of the idle phase (the attack's true peak). */
  peak_hwm_kib: number;
  ratio: number;
  /** Hostile connections opened in all (churning kinds reconnect when closed). */
  hostile_connections: number;
  /** Hostile connections the server closed. */
  hostile_closed_by_server: number;
  ping_after: boolean;
  errors: string[];
  /** What limits the figures (no VmHWM reset when not root). */
  notes: string[];
}

function log(text: string): void {
  console.error(`[abuse] ${text}`);
}

/** VmRSS and VmHWM of a process, in KiB. */
async function memoryOf(pid: number): Promise<{ rss: number; hwm: number }> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const field = (name: string) => Number(status.match(new RegExp(`${name}:\\s+(\\d+)`))?.[1] ?? 0);
  return { rss: field("VmRSS"), hwm: field("VmHWM") };
}

/** The process's mappings with the most resident memory, for finding what grew. */
async function largestMappings(pid: number): Promise<string> {
  const text = await Deno.readTextFile(`/proc/${pid}/smaps`);
  const rows: { name: string; rss: number }[] = [];
  let name = "";
  for (const line of text.split("\n")) {
    const header = line.match(/^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/);
    if (header) name = header[1] || "[anon]";
    const rss = line.match(/^Rss:\s+(\d+) kB/);
    if (rss) rows.push({ name, rss: Number(rss[1]) });
  }
  const byName = new Map<string, { total: number; count: number; largest: number }>();
  for (const row of rows) {
    const entry = byName.get(row.name) ?? { total: 0, count: 0, largest: 0 };
    entry.total += row.rss;
    entry.count++;
    entry.largest = Math.max(entry.largest, row.rss);
    byName.set(row.name, entry);
  }
  return [...byName.entries()].sort((a, b) => b[1].total - a[1].total).slice(0, 6)
    .map(([n, e]) => `  ${e.total} KiB in ${e.count} mappings (largest ${e.largest}) ${n}`)
    .join("\n");
}

/** Samples a process's memory every 100 ms until stopped. */
class Sampler {
  peakRss = 0;
  peakHwm = 0;
  samples = 0;
  /** The largest RSS of each second since the start (KiB). */
  perSecond: number[] = [];
  #started = performance.now();
  #timer: ReturnType<typeof setInterval>;
  #pid: number;

  constructor(pid: number) {
    this.#pid = pid;
    this.#timer = setInterval(() => this.sample(), 100);
  }

  async sample(): Promise<void> {
    try {
      const { rss, hwm } = await memoryOf(this.#pid);
      this.samples++;
      this.peakRss = Math.max(this.peakRss, rss);
      const second = Math.floor((performance.now() - this.#started) / 1000);
      this.perSecond[second] = Math.max(this.perSecond[second] ?? 0, rss);
      this.peakHwm = Math.max(this.peakHwm, hwm);
    } catch { /* the process is gone */ }
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

/** A minimal client: STARTTLS, SASL PLAIN, bind, presence; counts the messages it receives. */
class Client {
  socket: net.Socket | tls.TLSSocket;
  text = "";
  messages = 0;
  #tail = "";
  #waiters: (() => void)[] = [];

  constructor(socket: net.Socket) {
    this.socket = socket;
    this.#listen(socket);
  }

  #listen(socket: net.Socket | tls.TLSSocket): void {
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      // Messages are counted by their closing tag, across chunk boundaries; text is kept only
      // while negotiating (until the flood starts it is small).
      const scan = this.#tail + chunk;
      let at = scan.indexOf("</message>");
      while (at !== -1) {
        this.messages++;
        at = scan.indexOf("</message>", at + 10);
      }
      this.#tail = scan.slice(-9);
      if (this.text.length < 1_000_000) this.text += chunk;
      for (const wake of this.#waiters.splice(0)) wake();
    });
    socket.on("error", () => {});
  }

  send(text: string): boolean {
    return this.socket.write(text);
  }

  /** Waits until the received text matches, then forgets the text up to the match. */
  async expect(pattern: RegExp, ms = 30000): Promise<string> {
    const deadline = Date.now() + ms;
    while (true) {
      const match = pattern.exec(this.text);
      if (match) {
        this.text = this.text.slice(match.index + match[0].length);
        return match[0];
      }
      if (Date.now() > deadline) throw new Error(`Timed out waiting for ${pattern}: ${this.text}`);
      await new Promise<void>((wake) => {
        this.#waiters.push(wake);
        setTimeout(wake, 500);
      });
    }
  }

  #open(): void {
    this.send(
      `<?xml version='1.0'?><stream:stream xmlns='jabber:client' ` +
        `xmlns:stream='http://etherx.jabber.org/streams' to='${DOMAIN}' version='1.0'>`,
    );
  }

  static async login(port: number, user: string, resource: string): Promise<Client> {
    const raw = await connectTcp(port);
    const client = new Client(raw);
    client.#open();
    await client.expect(/<\/stream:features>/);
    client.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    await client.expect(/<proceed[^>]*\/>/);
    raw.removeAllListeners("data");
    const secure = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect(
        { socket: raw, servername: DOMAIN, rejectUnauthorized: false },
        () => resolve(s),
      );
      s.once("error", reject);
    });
    client.socket = secure;
    client.text = "";
    client.#listen(secure);
    client.#open();
    await client.expect(/<\/stream:features>/);
    const token = btoa(`\0${user}\0${PASSWORD}`);
    client.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${token}</auth>`);
    await client.expect(/<success[^>]*(\/>|<\/success>)/);
    client.#open();
    await client.expect(/<\/stream:features>/);
    client.send(
      `<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>` +
        `<resource>${resource}</resource></bind></iq>`,
    );
    await client.expect(/<\/iq>/);
    client.send("<presence/>");
    return client;
  }

  /** A ping round trip to the server (false when it does not answer within `ms`). */
  async ping(id: string, ms = 30000): Promise<boolean> {
    this.send(`<iq type='get' id='${id}' to='${DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>`);
    try {
      await this.expect(
        new RegExp(
          `<iq[^>]*id=['"]${id}['"][^>]*type=['"]result|` +
            `<iq[^>]*type=['"]result['"][^>]*id=['"]${id}['"]`,
        ),
        ms,
      );
      return true;
    } catch {
      return false;
    }
  }
}

function connectTcp(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: "127.0.0.1", port }, () => resolve(socket));
    socket.once("error", reject);
  });
}

const STREAM_HEADER = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' " +
  `xmlns:stream='http://etherx.jabber.org/streams' to='${DOMAIN}' version='1.0'>`;

/** How long a hostile connection the server closed waits before it comes back. */
const RECONNECT_MS = 1000;

/** The hostile kinds, each a share of the hostile connections. */
export const HOSTILE_KINDS = [
  "half-open",
  "slowloris",
  "junk-before-auth",
  "stalled-tls",
  "oversized",
  "deep-nesting",
  "small-stanzas",
] as const;
/** One kind of hostile connection. */
export type HostileKind = (typeof HOSTILE_KINDS)[number];

/** Runs the hostile connections until `stop` resolves. */
class Hostiles {
  opened = 0;
  closedByServer = 0;
  #sockets = new Set<net.Socket>();
  #stopped = false;
  #timers = new Set<ReturnType<typeof setTimeout>>();
  #ports: { plain: number; tls: number };
  #stanzaLimit: number;
  #reconnect: boolean;

  constructor(ports: { plain: number; tls: number }, stanzaLimit: number, reconnect: boolean) {
    this.#ports = ports;
    this.#stanzaLimit = stanzaLimit;
    this.#reconnect = reconnect;
  }

  /** Starts `count` connections spread over `kinds`, a few at a time. */
  async start(count: number, kinds: readonly HostileKind[] = HOSTILE_KINDS): Promise<void> {
    for (let i = 0; i < count; i++) {
      this.#one(kinds[i % kinds.length]);
      if (i % 50 === 49) await sleep(20); // no SYN flood beyond the listen backlog
    }
  }

  #later(ms: number, fn: () => void): void {
    if (this.#stopped) return;
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      if (!this.#stopped) fn();
    }, ms);
    this.#timers.add(timer);
  }

  #one(kind: HostileKind): void {
    if (this.#stopped) return;
    const port = kind === "stalled-tls" ? this.#ports.tls : this.#ports.plain;
    const socket = net.connect({ host: "127.0.0.1", port });
    this.opened++;
    this.#sockets.add(socket);
    let closedByUs = false;
    socket.on("error", () => {});
    socket.on("data", () => {}); // read what the server says, or it would back up
    socket.on("close", () => {
      this.#sockets.delete(socket);
      if (!closedByUs && !this.#stopped) {
        this.closedByServer++;
        // Churning kinds come back a second later, like a bot would.
        if (this.#reconnect && kind !== "half-open" && kind !== "stalled-tls") {
          this.#later(RECONNECT_MS, () => this.#one(kind));
        }
      }
    });
    const close = () => {
      closedByUs = true;
      socket.destroy();
    };
    socket.once("connect", () => this.#behave(kind, socket, close));
  }

  #behave(kind: HostileKind, socket: net.Socket, close: () => void): void {
    switch (kind) {
      case "half-open":
        return; // connected, never a byte
      case "slowloris": {
        // The stream header one byte every half second.
        let at = 0;
        const drip = () => {
          if (socket.destroyed) return;
          socket.write(STREAM_HEADER[at % STREAM_HEADER.length]);
          at++;
          this.#later(500, drip);
        };
        return drip();
      }
      case "junk-before-auth": {
        // Stanzas before authentication, within the size limits, again and again.
        socket.write(STREAM_HEADER);
        const junk = () => {
          if (socket.destroyed) return;
          socket.write(
            `<iq type='get' id='j${Math.random()}'><query xmlns='jabber:iq:roster'/>` +
              "</iq>" + `<message to='victim@${DOMAIN}'><body>${"j".repeat(200)}</body></message>`,
          );
          this.#later(200, junk);
        };
        return junk();
      }
      case "stalled-tls": {
        // A TLS record header announcing a ClientHello, a few bytes of it, then nothing.
        const hello = new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03]);
        socket.write(hello);
        return;
      }
      case "oversized": {
        // One stanza growing past the limit, 16 KiB at a time.
        socket.write(STREAM_HEADER + `<message to='victim@${DOMAIN}'><body>`);
        const chunk = "A".repeat(16384);
        let sent = 0;
        const grow = () => {
          if (socket.destroyed) return;
          if (sent > this.#stanzaLimit * 2) return close();
          sent += chunk.length;
          socket.write(chunk);
          this.#later(50, grow);
        };
        return grow();
      }
      case "deep-nesting":
        socket.write(STREAM_HEADER + "<a>".repeat(5000));
        return;
      case "small-stanzas":
        socket.write(STREAM_HEADER + "<presence/>".repeat(2000));
        return;
    }
  }

  /** Ends every hostile connection. */
  stop(): void {
    this.#stopped = true;
    for (const timer of this.#timers) clearTimeout(timer);
    for (const socket of this.#sockets) socket.destroy();
  }
}

function makeCertificate(dir: string): Promise<{ cert: string; key: string }> {
  return makeBenchCertificate(dir, [DOMAIN]);
}

async function addUser(config: string, user: string): Promise<void> {
  const child = new Deno.Command(join(root, "scripts/lilt"), {
    args: ["user", "add", `${user}@${DOMAIN}`, "-c", config],
    stdin: "piped",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(`${PASSWORD}\n`));
  await writer.close();
  const out = await child.output();
  if (!out.success) {
    throw new Error(`lilt user add ${user}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** The median of some numbers. */
function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Runs the abuse scenario once and returns its figures. */
export async function runAbuse(options: {
  messages: number;
  hostile: number;
  maxSeconds: number;
  /** The hostile kinds to run (default: all, in equal shares). */
  kinds?: readonly HostileKind[];
  /** Hostile connections the server closed come back a second later (default true). */
  reconnect?: boolean;
  /** Log the server's `debug memory` and `debug handles` after the attack. */
  debug?: boolean;
  /** Shortest attack: the hostile connections stay this long even when the flood is done. */
  attackSeconds: number;
  keep?: boolean;
  /** Leave the per-account stanza rates at their defaults (the flood is then slowed). */
  defaultLimits?: boolean;
}): Promise<AbuseReport> {
  const date = new Date().toISOString();
  const dir = await Deno.makeTempDir({ prefix: "lilt-abuse-" });
  const errors: string[] = [];
  const notes: string[] = [];
  const { cert, key } = await makeCertificate(dir);
  const port = await freePort();
  const tlsPort = await freePort();
  const config = join(dir, "lilt.toml");
  const stanzaLimit = 262144;
  // The per-account message rate (when this Lilt has one) would spread the flood over minutes;
  // lifted, the flood reaches the server as fast as one client can send, the worst case for
  // memory. The read rate limits keep their defaults.
  const flowingFlood = !options.defaultLimits && "limits_message_rate" in GLOBAL_OPTIONS
    ? "limits_message_rate = 1000000"
    : "";
  await Deno.writeTextFile(
    config,
    `# generated by scripts/bench/abuse.ts
data_dir = ${JSON.stringify(join(dir, "data"))}
modules = ["disco", "ping", "roster", "presence", "offline", "carbons", "blocklist", "private",
  "last", "time", "version", "smacks", "csi"]
c2s_interfaces = ["127.0.0.1:${port}"]
c2s_direct_tls_interfaces = ["127.0.0.1:${tlsPort}"]
c2s_require_encryption = true
scram_iterations = 4096
certificate = ${JSON.stringify(cert)}
key = ${JSON.stringify(key)}
${flowingFlood}
[log]
level = "warning"
console = true
[[host]]
domain = "${DOMAIN}"
c2s_stanza_size_limit = ${stanzaLimit}
`,
  );
  for (const user of ["flooder", "receiver", "pinger"]) await addUser(config, user);
  const logFile = await Deno.open(join(dir, "server.log"), { write: true, create: true });
  const child = new Deno.Command(join(root, "scripts/lilt"), {
    args: ["start", "-c", config],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  child.stdout.pipeTo(logFile.writable, { preventClose: true }).catch(() => {});
  child.stderr.pipeTo((await Deno.open(join(dir, "server.log"), { append: true })).writable)
    .catch(() => {});
  const clients: Client[] = [];
  let hostiles: Hostiles | undefined;
  try {
    await waitForPort(port, { ms: 60000, child });
    await waitForPort(tlsPort, { ms: 60000, child });
    // scripts/lilt execs Deno, so the child's PID is the server's.
    const pid = child.pid;
    const flooder = await Client.login(port, "flooder", "flood");
    const receiver = await Client.login(port, "receiver", "sink");
    const pinger = await Client.login(port, "pinger", "probe");
    clients.push(flooder, receiver, pinger);
    if (!await pinger.ping("settle")) errors.push("no ping answer before the attack");

    // Idle: settled after the logins (the heap has had time for a collection).
    await sleep(3000);
    const idleSamples: number[] = [];
    for (let i = 0; i < 20; i++) {
      idleSamples.push((await memoryOf(pid)).rss);
      await sleep(100);
    }
    const idle = median(idleSamples);
    log(`idle RSS ${idle} KiB (median of ${idleSamples.length} samples)`);
    if (options.debug) log(`largest mappings at idle:\n${await largestMappings(pid)}`);
    // Resets VmHWM to the current RSS, so that it records the attack's peak alone.
    try {
      await Deno.writeTextFile(`/proc/${pid}/clear_refs`, "5");
    } catch (error) {
      // Not root: VmHWM then also holds the start-up peak; the sampled peak still counts.
      notes.push(`VmHWM not reset (${(error as Error).message}): the sampled peak counts`);
    }
    const sampler = new Sampler(pid);

    // The attack: hostile connections first, the flood among them.
    hostiles = new Hostiles({ plain: port, tls: tlsPort }, stanzaLimit, options.reconnect ?? true);
    await hostiles.start(options.hostile, options.kinds);
    log(`${options.hostile} hostile connections opened; flooding ${options.messages} messages`);
    const started = performance.now();
    const deadline = Date.now() + options.maxSeconds * 1000;
    const body = "flood ".repeat(16);
    for (let i = 0; i < options.messages; i++) {
      const ok = flooder.send(
        `<message to='receiver@${DOMAIN}' type='chat' id='f${i}'><body>${body}${i}</body></message>`,
      );
      if (!ok) {
        await new Promise<void>((resolve) => {
          flooder.socket.once("drain", () => resolve());
          setTimeout(resolve, 1000);
        });
      }
      if (Date.now() > deadline) break;
    }
    while (receiver.messages < options.messages && Date.now() < deadline) await sleep(100);
    const floodSeconds = (performance.now() - started) / 1000;
    // The hostile connections hold on (and churn) for the whole attack, however fast the flood.
    const attackEnd = started + options.attackSeconds * 1000;
    while (performance.now() < attackEnd) await sleep(100);
    log(`${receiver.messages} of ${options.messages} delivered in ${floodSeconds.toFixed(1)} s`);
    if (receiver.messages < options.messages) {
      errors.push(`only ${receiver.messages} of ${options.messages} messages arrived in time`);
    }
    await sampler.sample();
    sampler.stop();
    hostiles.stop();
    const pingAfter = await pinger.ping("after");
    if (options.debug) {
      log(
        `RSS per second of the attack (MiB): ${
          sampler.perSecond.map((kib) => Math.round(kib / 1024)).join(" ")
        }`,
      );
      for (const command of ["debug memory", "debug handles"]) {
        log(
          `${command} at the end of the attack:\n` +
            await run([join(root, "scripts/lilt"), "shell", "-c", config, ...command.split(" ")])
              .catch((error) => String(error)),
        );
      }
      await sleep(5000);
      log(`RSS 5 s after the attack: ${(await memoryOf(pid)).rss} KiB`);
      log(`largest mappings now:\n${await largestMappings(pid)}`);
    }
    const peakHwm = sampler.peakHwm;
    const peak = notes.length ? sampler.peakRss : Math.max(sampler.peakRss, peakHwm);
    return {
      date,
      messages: options.messages,
      hostile: options.hostile,
      delivered: receiver.messages,
      flood_seconds: Number(floodSeconds.toFixed(2)),
      idle_rss_kib: idle,
      peak_rss_kib: sampler.peakRss,
      peak_hwm_kib: peakHwm,
      ratio: Number((peak / idle).toFixed(3)),
      hostile_connections: hostiles.opened,
      hostile_closed_by_server: hostiles.closedByServer,
      ping_after: pingAfter,
      errors,
      notes,
    };
  } finally {
    hostiles?.stop();
    for (const client of clients) client.socket.destroy();
    await stopServer(child, "lilt");
    logFile.close();
    if (options.keep) log(`kept ${dir}`);
    else await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      messages: { type: "string", default: "20000" },
      hostile: { type: "string", default: "550" },
      "max-seconds": { type: "string", default: "180" },
      "attack-seconds": { type: "string", default: "20" },
      keep: { type: "boolean", default: false },
      "default-limits": { type: "boolean", default: false },
      debug: { type: "boolean", default: false },
      "no-reconnect": { type: "boolean", default: false },
      kinds: { type: "string", default: HOSTILE_KINDS.join(",") },
    },
  });
  const report = await runAbuse({
    messages: Number(values.messages),
    hostile: Number(values.hostile),
    maxSeconds: Number(values["max-seconds"]),
    attackSeconds: Number(values["attack-seconds"]),
    keep: values.keep,
    defaultLimits: values["default-limits"],
    debug: values.debug,
    reconnect: !values["no-reconnect"],
    kinds: values.kinds.split(",").map((kind) => {
      if (!(HOSTILE_KINDS as readonly string[]).includes(kind)) {
        throw new Error(`Unknown hostile kind '${kind}' (known: ${HOSTILE_KINDS.join(", ")})`);
      }
      return kind as HostileKind;
    }),
  });
  console.log(
    `abuse run ${report.date}: ${report.messages} messages, ${report.hostile} hostile ` +
      `connections (${report.hostile_connections} opened, ${report.hostile_closed_by_server} ` +
      `closed by the server)`,
  );
  console.log(`idle RSS: ${report.idle_rss_kib} KiB`);
  console.log(`peak RSS: ${report.peak_rss_kib} KiB sampled, ${report.peak_hwm_kib} KiB VmHWM`);
  console.log(`ratio: ${report.ratio} (target below 1.5)`);
  console.log(`delivered: ${report.delivered} in ${report.flood_seconds} s`);
  console.log(`ping after the attack: ${report.ping_after ? "ok" : "NO ANSWER"}`);
  for (const error of report.errors) console.log(`error: ${error}`);
  for (const note of report.notes) console.log(`note: ${note}`);
  console.log(JSON.stringify(report));
  Deno.exit(report.ping_after ? 0 : 1);
}
