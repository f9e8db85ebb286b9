// Soak test (issue 18), not part of the test suite: runs a real `lilt start` process under mixed
// load for a long time (30 minutes by default) and reports each interval the server's RSS and
// the latency of pings and of messages between clients, then the trend of RSS over the run (the
// slope of a least-squares line), so growth shows as a number rather than a feeling.
//
// The load: `--clients` accounts, each logged in over STARTTLS with PLAIN, sending messages to
// random other accounts (`--rate` per second each, below the default stanza rates), a ping every
// few seconds (its round trip is the ping latency), a presence change now and then, and a
// reconnect (close, log in again) about every `--reconnect-seconds`, so logins, roster and
// presence broadcasts, offline storage for the moments a peer is away and session teardown all
// run the whole time. Traffic goes to 127.0.0.1 only and stops at the deadline.
//
// Usage: scripts/deno run -A scripts/bench/soak.ts [--minutes=30] [--interval-seconds=60]
//          [--clients=40] [--rate=2] [--reconnect-seconds=60]

import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { parseArgs } from "node:util";
import { AccountStore } from "../../core/auth/accounts.ts";
import { Database } from "../../core/storage/database.ts";
import type { Element } from "../../core/xml/element.ts";
import { StreamParser } from "../../core/xml/parser.ts";
import { type LiltProcess, startLiltProcess } from "../../tests/helpers/lilt_process.ts";
import { testConfigText } from "../../tests/helpers/test_server.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    minutes: { type: "string", default: "30" },
    "interval-seconds": { type: "string", default: "60" },
    clients: { type: "string", default: "40" },
    rate: { type: "string", default: "2" },
    "reconnect-seconds": { type: "string", default: "60" },
  },
});

function positive(name: string, value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) {
    console.error(`soak: expected --${name} to be a positive number, found '${value}'`);
    Deno.exit(2);
  }
  return n;
}

const MINUTES = positive("minutes", values.minutes);
const INTERVAL_MS = positive("interval-seconds", values["interval-seconds"]) * 1000;
const CLIENTS = Math.max(2, Math.round(positive("clients", values.clients)));
const RATE = positive("rate", values.rate);
const RECONNECT_MS = positive("reconnect-seconds", values["reconnect-seconds"]) * 1000;
const PASSWORD = "soak-pw";
const MODULES = [
  "disco",
  "roster",
  "presence",
  "offline",
  "carbons",
  "smacks",
  "csi",
  "ping",
  "private",
  "vcard",
  "blocklist",
];

/** What happened during one reporting interval. */
class Interval {
  pings: number[] = [];
  messages: number[] = [];
  sent = 0;
  delivered = 0;
  logins = 0;
  reconnects = 0;
  presences = 0;
  errors = 0;
}

let current = new Interval();
let stopping = false;

function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** What awaited answers get when their connection closes (a reconnect is not an error). */
const CLOSED = new Error("closed");

/** A minimal client: STARTTLS, PLAIN, bind; elements go to `onElement`, nothing is kept. */
class SoakClient {
  #socket: Socket | TLSSocket;
  #parser: StreamParser;
  #waiters: {
    match: (el: Element) => boolean;
    resolve: (el: Element) => void;
    reject: (error: Error) => void;
    timer: ReturnType<typeof setTimeout>;
  }[] = [];
  #headers = 0;
  closed = false;
  onElement: (el: Element) => void = () => {};

  private constructor(socket: Socket) {
    this.#socket = socket;
    this.#parser = new StreamParser({
      streamOpen: () => this.#headers++,
      stanza: (el) => {
        const index = this.#waiters.findIndex((w) => w.match(el));
        if (index >= 0) this.#waiters.splice(index, 1)[0].resolve(el);
        else this.onElement(el);
      },
      streamClose: () => this.close(),
      error: () => this.close(),
    }, { maxStanzaBytes: 1 << 20 });
    this.#attach(socket);
  }

  #attach(socket: Socket | TLSSocket): void {
    socket.on("data", (chunk: Uint8Array) => this.#parser.feed(chunk));
    socket.on("error", () => {});
    socket.on("close", () => this.close());
  }

  static connect(port: number): Promise<SoakClient> {
    return new Promise((resolve, reject) => {
      const socket = netConnect({ host: "127.0.0.1", port }, () => resolve(new SoakClient(socket)));
      // Without it a ping written right after a message waits for the message's ACK (Nagle's
      // algorithm against delayed ACKs): 40 ms that are the client's, not the server's.
      socket.setNoDelay(true);
      socket.once("error", reject);
    });
  }

  send(text: string): void {
    if (!this.closed) this.#socket.write(text);
  }

  next(match: (el: Element) => boolean, timeoutMs = 20_000): Promise<Element> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error("timed out waiting for the server")),
        timeoutMs,
      );
      this.#waiters.push({
        match,
        resolve: (el) => {
          clearTimeout(timer);
          resolve(el);
        },
        reject,
        timer,
      });
    });
  }

  #open(): Promise<Element> {
    this.send(
      "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' xmlns='jabber:client' " +
        "xmlns:stream='http://etherx.jabber.org/streams'>",
    );
    return this.next((el) => el.name === "features");
  }

  async login(user: string): Promise<void> {
    await this.#open();
    this.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    await this.next((el) => el.name === "proceed");
    const raw = this.#socket as Socket;
    raw.removeAllListeners("data");
    raw.removeAllListeners("close");
    this.#socket = await new Promise<TLSSocket>((resolve, reject) => {
      const secure = tlsConnect(
        { socket: raw, servername: "localhost", rejectUnauthorized: false },
        () => resolve(secure),
      );
      secure.once("error", reject);
    });
    this.#parser.reset();
    this.#attach(this.#socket);
    await this.#open();
    this.send(
      `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${
        btoa(`\0${user}\0${PASSWORD}`)
      }</auth>`,
    );
    const outcome = await this.next((el) => el.name === "success" || el.name === "failure");
    if (outcome.name !== "success") throw new Error(`login of ${user} failed`);
    this.#parser.reset();
    await this.#open();
    this.send(
      "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>" +
        "<resource>soak</resource></bind></iq>",
    );
    await this.next((el) => el.attrs.id === "bind");
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.#socket.end("</stream:stream>");
    } catch {
      // already gone
    }
    this.#socket.destroy();
    for (const waiter of this.#waiters.splice(0)) {
      clearTimeout(waiter.timer);
      waiter.reject(CLOSED);
    }
  }
}

/** One simulated user: logs in, talks, pings, changes presence, reconnects, until the end. */
async function user(port: number, index: number, deadline: number): Promise<void> {
  const name = `user${index}`;
  let sequence = 0;
  while (!stopping && Date.now() < deadline) {
    let client: SoakClient;
    try {
      client = await SoakClient.connect(port);
      await client.login(name);
      current.logins++;
    } catch {
      current.errors++;
      await sleep(1000);
      continue;
    }
    client.onElement = (el) => {
      if (el.name === "message") {
        const sentAt = Number(el.getChildText("body")?.split(" ")[1]);
        if (Number.isFinite(sentAt) && !el.getChild("delay", "urn:xmpp:delay")) {
          current.messages.push(performance.timeOrigin + performance.now() - sentAt);
        }
        current.delivered++;
      }
    };
    client.send("<presence/>");
    const sessionEnd = Date.now() + RECONNECT_MS * (0.5 + Math.random());
    let nextPing = Date.now() + Math.random() * 5000;
    while (!stopping && !client.closed && Date.now() < Math.min(sessionEnd, deadline)) {
      await sleep((1000 / RATE) * (0.5 + Math.random()));
      const to = `user${
        (index + 1 + Math.floor(Math.random() * (CLIENTS - 1))) % CLIENTS
      }@localhost`;
      const now = performance.timeOrigin + performance.now();
      client.send(
        `<message to='${to}' type='chat' id='m${sequence++}'><body>soak ${now}</body></message>`,
      );
      current.sent++;
      if (Math.random() < 0.02) {
        client.send(`<presence><show>away</show><status>soak ${sequence}</status></presence>`);
        current.presences++;
      }
      if (Date.now() >= nextPing) {
        nextPing = Date.now() + 5000;
        const id = `p${sequence++}`;
        const started = performance.now();
        client.send(`<iq type='get' id='${id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
        client.next((el) => el.attrs.id === id).then(
          () => current.pings.push(performance.now() - started),
          (error) => {
            if (error !== CLOSED) current.errors++;
          },
        );
      }
    }
    client.close();
    if (Date.now() < deadline && !stopping) current.reconnects++;
  }
}

function rssMiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  return kb / 1024;
}

/** Least-squares slope of y over x. */
function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i] - mx) * (ys[i] - my);
    den += (xs[i] - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

function fmt(n: number, digits = 1): string {
  return Number.isFinite(n) ? n.toFixed(digits) : "-";
}

async function main(): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "lilt-soak-" });
  const config = `${dir}/lilt.toml`;
  await Deno.writeTextFile(config, testConfigText(dir, { modules: MODULES }));
  const database = Database.open({ path: `${dir}/lilt.sqlite` });
  const accounts = new AccountStore(database, { iterations: 4096 });
  for (let i = 0; i < CLIENTS; i++) await accounts.create("localhost", `user${i}`, PASSWORD);
  database.close();

  let server: LiltProcess | undefined;
  try {
    server = await startLiltProcess(config);
    const pid = server.process.pid;
    const started = Date.now();
    const deadline = started + MINUTES * 60_000;
    console.log(
      `soak: ${CLIENTS} clients, ${RATE} msg/s each, reconnect about every ` +
        `${RECONNECT_MS / 1000} s, ${MINUTES} min, server pid ${pid}, idle RSS ` +
        `${fmt(rssMiB(pid))} MiB`,
    );
    console.log(
      "minute  rss_MiB  logins  reconnects  sent  delivered  presence  ping_p50  ping_p99  " +
        "msg_p50  msg_p99  errors",
    );
    const users = Array.from({ length: CLIENTS }, (_, i) => user(server!.port, i, deadline));
    const minutes: number[] = [];
    const rss: number[] = [];
    while (Date.now() < deadline) {
      await sleep(Math.min(INTERVAL_MS, Math.max(0, deadline - Date.now())));
      const done = current;
      current = new Interval();
      const at = (Date.now() - started) / 60_000;
      const memory = rssMiB(pid);
      minutes.push(at);
      rss.push(memory);
      console.log(
        [
          fmt(at, 2).padStart(6),
          fmt(memory).padStart(7),
          String(done.logins).padStart(6),
          String(done.reconnects).padStart(10),
          String(done.sent).padStart(5),
          String(done.delivered).padStart(9),
          String(done.presences).padStart(8),
          fmt(percentile(done.pings, 0.5), 2).padStart(8),
          fmt(percentile(done.pings, 0.99), 2).padStart(8),
          fmt(percentile(done.messages, 0.5), 2).padStart(7),
          fmt(percentile(done.messages, 0.99), 2).padStart(7),
          String(done.errors).padStart(6),
        ].join("  "),
      );
    }
    stopping = true;
    await Promise.all(users);
    // The first interval holds the warm-up (caches, JIT, SQLite pages): the trend starts after it.
    const from = minutes.length > 2 ? 1 : 0;
    const perMinute = slope(minutes.slice(from), rss.slice(from));
    console.log(
      `soak: RSS trend ${perMinute >= 0 ? "+" : ""}${fmt(perMinute, 2)} MiB/min over ` +
        `${minutes.length - from} intervals (least squares, first interval left out when there ` +
        `are more than 2), RSS ${fmt(Math.min(...rss))}–${fmt(Math.max(...rss))} MiB`,
    );
  } finally {
    stopping = true;
    await server?.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

await main();
