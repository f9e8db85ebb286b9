// Measures NATS against Redis pub/sub as the bus between Lilt nodes (issue 19), on this machine:
// one-way throughput with CPU per message on each side and in the broker, request-reply latency
// at a modest rate, and session-registry operations (register, lookup, expiry of a dead node's
// entries). Each side of a link is its own process so its CPU is its own. Prints one table and
// one JSON line (also saved as results/<date>-broker.json).
//
// Usage: scripts/deno run -A scripts/bench/broker.ts [--messages=200000] [--rate=2000]
//   [--seconds=5] [--jids=10000] [--ttl=3] [--only=nats,redis]
// The same file runs the child processes (`--role=...`); those options are internal.

import { cpuUsage } from "node:process";
import { parseArgs } from "node:util";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { StorageType } from "@nats-io/jetstream";
import { Kvm, KvWatchInclude } from "@nats-io/kv";
import { createClient } from "@redis/client";
import { type Broker, startNats, startRedis } from "../../tests/helpers/brokers.ts";
import { sleep } from "./harness.ts";
import { cpuSeconds } from "./load_client.ts";

const { values: opts } = parseArgs({
  args: Deno.args,
  options: {
    role: { type: "string" },
    broker: { type: "string" },
    url: { type: "string" },
    "broker-pid": { type: "string" },
    messages: { type: "string", default: "200000" },
    warmup: { type: "string", default: "20000" },
    batch: { type: "string", default: "100" },
    window: { type: "string", default: "8" },
    rate: { type: "string", default: "2000" },
    seconds: { type: "string", default: "5" },
    jids: { type: "string", default: "10000" },
    ttl: { type: "string", default: "3" },
    only: { type: "string", default: "nats,redis" },
  },
});
const MESSAGES = positive("messages");
const WARMUP = positive("warmup", true);
/** Messages one event-loop turn of a node hands the bus (one read from a few busy clients). */
const BATCH = positive("batch");
/** Turns whose output may be unconfirmed by the broker before the publisher waits. */
const WINDOW = positive("window");
const RATE = positive("rate");
const SECONDS = positive("seconds");
const JIDS = positive("jids");
const TTL_S = positive("ttl");

type BrokerKind = "nats" | "redis";

function positive(name: keyof typeof opts, zeroOk = false): number {
  const value = Number(opts[name]);
  if (!Number.isInteger(value) || value < (zeroOk ? 0 : 1)) {
    throw new Error(`Option --${name} must be a whole number, found '${opts[name]}'`);
  }
  return value;
}

/** Wall-clock milliseconds with sub-millisecond precision, comparable across processes. */
function wallMs(): number {
  return performance.timeOrigin + performance.now();
}

/** This process's CPU microseconds (user + system). */
function ownCpuUs(): number {
  const usage = cpuUsage();
  return usage.user + usage.system;
}

/** Lets the event loop run (I/O, timers), as between two turns of a node. */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** A serialized chat <message/> of about 400 bytes, as a node would forward it. */
function stanza(seq: number): string {
  const head = `<message xmlns='jabber:client' from='alice@example.org/phone-4f2a9c' ` +
    `to='bob@example.org/laptop-81be0d' type='chat' id='m${seq}'>` +
    `<origin-id xmlns='urn:xmpp:sid:0' id='o${seq}'/><active ` +
    `xmlns='http://jabber.org/protocol/chatstates'/><body>`;
  const tail = `</body><request xmlns='urn:xmpp:receipts'/></message>`;
  return head + "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor."
    .repeat(2).slice(0, 400 - head.length - tail.length) +
    tail;
}

// ---------------------------------------------------------------------------------------------
// The bus as a node sees it: publish to a node's channel, subscribe to its own.

interface Bus {
  publish(channel: string, payload: string): void;
  /** Resolves once the broker has taken everything published before. */
  sync(): Promise<void>;
  subscribe(channel: string, onMessage: (payload: string) => void): Promise<void>;
  close(): Promise<void>;
}

async function openBus(kind: BrokerKind, url: string): Promise<Bus> {
  if (kind === "nats") {
    const nc = await connect({ servers: url, maxReconnectAttempts: -1 });
    return {
      publish: (channel, payload) => nc.publish(channel, payload),
      sync: () => nc.flush(),
      async subscribe(channel, onMessage) {
        nc.subscribe(channel, { callback: (_error, msg) => onMessage(msg.string()) });
        await nc.flush();
      },
      close: () => nc.close(),
    };
  }
  const client = createClient({ url });
  client.on("error", (error: Error) => console.error(`redis: ${error.message}`));
  await client.connect();
  let subscriber: typeof client | undefined;
  let last: Promise<unknown> = Promise.resolve();
  return {
    publish(channel, payload) {
      last = client.publish(channel, payload);
      last.catch(() => {});
    },
    sync: () => last.then(() => {}),
    async subscribe(channel, onMessage) {
      subscriber = client.duplicate();
      subscriber.on("error", (error: Error) => console.error(`redis: ${error.message}`));
      await subscriber.connect();
      await subscriber.subscribe(channel, (message: string) => onMessage(message));
    },
    async close() {
      await subscriber?.close();
      await client.close();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Child processes: one line of JSON out per event, commands in on stdin.

function tell(value: Record<string, unknown>): void {
  console.log(JSON.stringify(value));
}

async function* commands(): AsyncGenerator<string> {
  let pending = "";
  for await (const chunk of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
    pending += chunk;
    let newline;
    while ((newline = pending.indexOf("\n")) !== -1) {
      yield pending.slice(0, newline);
      pending = pending.slice(newline + 1);
    }
  }
}

/** Node B of the throughput test: counts what arrives on lilt.node.B. */
async function sink(bus: Bus): Promise<void> {
  const expected = WARMUP + MESSAGES;
  let received = 0;
  let start = { at: 0, cpu: 0 };
  let lastAt = 0;
  let bytes = 0;
  const finished = Promise.withResolvers<void>();
  await bus.subscribe("lilt.node.B", (payload) => {
    received++;
    bytes += payload.length;
    lastAt = wallMs();
    if (received === WARMUP) start = { at: lastAt, cpu: ownCpuUs() };
    if (received === expected) finished.resolve();
  });
  tell({ ready: true });
  // A stall (messages dropped by the broker) ends the wait too, and shows in `received`.
  let seen = -1;
  const watchdog = setInterval(() => {
    if (received === seen && received > 0) finished.resolve();
    seen = received;
  }, 5000);
  await finished.promise;
  clearInterval(watchdog);
  tell({
    done: true,
    received: received - WARMUP,
    bytes,
    first_ms: start.at,
    last_ms: lastAt,
    cpu_us: ownCpuUs() - start.cpu,
  });
}

/** Node A of the throughput test: publishes BATCH messages per turn, WINDOW turns in flight. */
async function source(bus: Bus): Promise<void> {
  const payloads = Array.from({ length: 1000 }, (_, i) => stanza(i));
  async function publishAll(count: number): Promise<void> {
    const inFlight: Promise<void>[] = [];
    for (let sent = 0; sent < count;) {
      const end = Math.min(count, sent + BATCH);
      for (; sent < end; sent++) bus.publish("lilt.node.B", payloads[sent % payloads.length]);
      inFlight.push(bus.sync());
      if (inFlight.length >= WINDOW) await inFlight.shift();
      else await nextTurn();
    }
    await Promise.all(inFlight);
  }
  tell({ ready: true });
  const input = commands();
  await input.next();
  await publishAll(WARMUP);
  tell({ warm: true });
  await input.next();
  const start = { at: wallMs(), cpu: ownCpuUs() };
  await publishAll(MESSAGES);
  tell({ done: true, start_ms: start.at, end_ms: wallMs(), cpu_us: ownCpuUs() - start.cpu });
}

/** Node B of the latency test: answers every request on lilt.node.B to lilt.node.A. */
async function echo(bus: Bus): Promise<void> {
  let answered = 0;
  await bus.subscribe("lilt.node.B", (payload) => {
    answered++;
    bus.publish("lilt.node.A", payload);
  });
  tell({ ready: true });
  const input = commands();
  await input.next();
  const cpu = ownCpuUs();
  const before = answered;
  await input.next();
  tell({ done: true, answered: answered - before, cpu_us: ownCpuUs() - cpu });
}

/** Node A of the latency test: requests at RATE per second, each carrying its id. */
async function requester(bus: Bus): Promise<void> {
  const warmupCount = RATE; // one second
  const total = warmupCount + RATE * SECONDS;
  const sentAt = new Float64Array(total);
  const latency = new Float64Array(total).fill(NaN);
  let replies = 0;
  const allReplies = Promise.withResolvers<void>();
  const body = stanza(0).slice(20);
  await bus.subscribe("lilt.node.A", (payload) => {
    const id = Number(payload.slice(0, payload.indexOf(" ")));
    latency[id] = performance.now() - sentAt[id];
    if (++replies === total) allReplies.resolve();
  });
  // The pacing loop alone (a 1 ms timer, nothing sent) for one second: its CPU is in every
  // figure below and is the same for both brokers.
  const idleCpu = ownCpuUs();
  for (const idleEnd = performance.now() + 1000; performance.now() < idleEnd;) await sleep(1);
  const pacingUsPerRequest = round((ownCpuUs() - idleCpu) / RATE, 2);
  tell({ ready: true });
  const input = commands();
  await input.next();
  let cpu = 0;
  let lagMax = 0;
  const begin = performance.now();
  for (let sent = 0; sent < total;) {
    if (sent === warmupCount && cpu === 0) cpu = ownCpuUs();
    const now = performance.now();
    const due = Math.min(total, Math.floor((now - begin) * RATE / 1000) + 1);
    lagMax = Math.max(lagMax, now - (begin + sent * 1000 / RATE));
    for (; sent < due; sent++) {
      sentAt[sent] = performance.now();
      bus.publish("lilt.node.B", `${sent} ${body}`);
    }
    await sleep(1);
  }
  await Promise.race([allReplies.promise, sleep(5000)]);
  const measured = Array.from(latency.subarray(warmupCount)).filter((v) => !Number.isNaN(v))
    .sort((a, b) => a - b);
  const pct = (p: number) =>
    measured[Math.min(measured.length - 1, Math.floor(p * measured.length))];
  tell({
    done: true,
    requests: total - warmupCount,
    answered: measured.length,
    p50_ms: round(pct(0.5), 3),
    p90_ms: round(pct(0.9), 3),
    p99_ms: round(pct(0.99), 3),
    max_ms: round(measured[measured.length - 1], 3),
    send_lag_max_ms: round(lagMax, 1),
    cpu_us: ownCpuUs() - cpu,
    pacing_us_per_request: pacingUsPerRequest,
  });
}

function round(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

// ---------------------------------------------------------------------------------------------
// Session registry: 10,000 full JIDs held by node A, looked up, then A dies.

interface Registry {
  /** Human description of the schema, for the report. */
  schema: string;
  register(jid: string): Promise<unknown>;
  lookup(jid: string): Promise<string | null>;
  /** After registering: makes a per-node structure expire with the node (a heartbeat). */
  afterRegister?(): Promise<void>;
  /** Entries the broker still holds. */
  size(): Promise<number>;
  /** What a surviving node does when it notices the death (undefined: expiry does it all). */
  reap?(): Promise<void>;
  /** Expiry events a surviving node could subscribe to: how many arrived, the first when. */
  expiryEvents?(): { count: number; firstAt?: number };
  close(): Promise<void>;
}

function jidOf(i: number): string {
  return `user${i}@example.org/res-${(i * 2654435761 >>> 0).toString(36)}`;
}

/** KV keys allow [-/_=.a-zA-Z0-9]: base64url of the JID's UTF-8. */
function kvKey(jid: string): string {
  let binary = "";
  for (const byte of new TextEncoder().encode(jid)) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replaceAll("=", "");
}

async function registries(kind: BrokerKind, url: string): Promise<Registry[]> {
  const ttl = TTL_S;
  if (kind === "redis") {
    const client = createClient({ url });
    client.on("error", (error: Error) => console.error(`redis: ${error.message}`));
    await client.connect();
    await client.flushAll();
    // Keyspace notifications: a survivor hears each expiry on __keyevent@0__:expired.
    await client.configSet("notify-keyspace-events", "Ex");
    const listener = client.duplicate();
    await listener.connect();
    const perJid = { count: 0, firstAt: undefined as number | undefined };
    const perNode = { count: 0, firstAt: undefined as number | undefined };
    await listener.subscribe("__keyevent@0__:expired", (key: string) => {
      const seen = key.startsWith("lilt:s:") ? perJid : perNode;
      seen.count++;
      seen.firstAt ??= performance.now();
    });
    return [
      {
        schema: `SET lilt:s:<jid> A EX ${ttl} / GET`,
        register: (jid) => client.set(`lilt:s:${jid}`, "A", { EX: ttl }),
        lookup: (jid) => client.get(`lilt:s:${jid}`),
        size: () => client.dbSize(),
        expiryEvents: () => perJid,
        close: async () => await client.flushAll().then(() => {}),
      },
      {
        schema: `HSET lilt:node:A <jid> A + EXPIRE lilt:node:A ${ttl} (heartbeat) / HGET`,
        register: (jid) => client.hSet("lilt:node:A", jid, "A"),
        afterRegister: async () => {
          await client.expire("lilt:node:A", ttl);
        },
        lookup: (jid) => client.hGet("lilt:node:A", jid).then((v) => v ?? null),
        size: () => client.hLen("lilt:node:A"),
        expiryEvents: () => perNode,
        close: async () => {
          await listener.close();
          await client.close();
        },
      },
    ];
  }
  const nc: NatsConnection = await connect({ servers: url });
  const kvm = new Kvm(nc);
  const shared = await kvm.create("lilt-sessions", {
    ttl: ttl * 1000,
    history: 1,
    storage: StorageType.Memory,
  });
  const perNode = await kvm.create("lilt-node-A", { history: 1, storage: StorageType.Memory });
  // A watcher sees deletes and purges; whether the server tells it of expiries is measured.
  const watched = { count: 0, firstAt: undefined as number | undefined };
  const watcher = await shared.watch({ include: KvWatchInclude.UpdatesOnly });
  (async () => {
    for await (const entry of watcher) {
      if (entry.operation !== "PUT") {
        watched.count++;
        watched.firstAt ??= performance.now();
      }
    }
  })();
  return [
    {
      schema: `KV bucket lilt-sessions (memory, bucket TTL ${ttl} s): put / get`,
      register: (jid) => shared.put(kvKey(jid), "A"),
      lookup: async (jid) => (await shared.get(kvKey(jid)))?.string() ?? null,
      size: async () => (await shared.status()).values,
      expiryEvents: () => watched,
      close: async () => {
        watcher.stop();
        await shared.destroy();
      },
    },
    {
      schema: "KV bucket lilt-node-A (memory, no TTL): put / get; a survivor destroys it",
      register: (jid) => perNode.put(kvKey(jid), "A"),
      lookup: async (jid) => (await perNode.get(kvKey(jid)))?.string() ?? null,
      size: async () => {
        try {
          return (await perNode.status()).values;
        } catch {
          return 0; // the bucket is gone
        }
      },
      reap: async () => await perNode.destroy().then(() => {}),
      close: () => nc.close(),
    },
  ];
}

/** Runs `count` operations, BATCH issued per turn, at most WINDOW batches unanswered. */
async function pipelined(
  count: number,
  operation: (i: number) => Promise<unknown>,
): Promise<unknown[]> {
  const results: unknown[] = new Array(count);
  const inFlight: Promise<unknown>[] = [];
  for (let issued = 0; issued < count;) {
    const batch: Promise<unknown>[] = [];
    const end = Math.min(count, issued + BATCH);
    for (; issued < end; issued++) {
      const i = issued;
      batch.push(operation(i).then((value) => (results[i] = value)));
    }
    inFlight.push(Promise.all(batch));
    if (inFlight.length >= WINDOW) await inFlight.shift();
    else await nextTurn();
  }
  await Promise.all(inFlight);
  return results;
}

async function registryRole(kind: BrokerKind, url: string, brokerPid: number): Promise<void> {
  const jids = Array.from({ length: JIDS }, (_, i) => jidOf(i));
  const rows = [];
  for (const registry of await registries(kind, url)) {
    const phase = async (operation: (i: number) => Promise<unknown>) => {
      const start = { at: performance.now(), cpu: ownCpuUs(), broker: cpuSeconds(brokerPid) };
      const results = await pipelined(JIDS, operation);
      const seconds = (performance.now() - start.at) / 1000;
      return {
        results,
        ops_per_s: Math.round(JIDS / seconds),
        client_us_per_op: round((ownCpuUs() - start.cpu) / JIDS, 2),
        broker_us_per_op: round((cpuSeconds(brokerPid) - start.broker) * 1e6 / JIDS, 2),
      };
    };
    // A first pass warms the JIT and the connection; the measured one overwrites the same keys.
    await pipelined(JIDS, (i) => registry.register(jids[i]));
    const register = await phase((i) => registry.register(jids[i]));
    await registry.afterRegister?.();
    const lastWrite = performance.now();
    const lookup = await phase((i) => registry.lookup(jids[i]));
    const found = lookup.results.filter((value) => value === "A").length;
    // Node A dies now: nothing refreshes its entries any more.
    let missAfter: number | undefined;
    let goneAfter: number | undefined;
    let reapMs: number | undefined;
    if (registry.reap) {
      const start = performance.now();
      await registry.reap();
      reapMs = round(performance.now() - start, 1);
    }
    const sample = Array.from({ length: 100 }, (_, i) => jids[Math.floor(i * JIDS / 100)]);
    // A reaped structure is gone when reap() returns; the others are polled until they expire.
    while (!registry.reap && performance.now() - lastWrite < (TTL_S + 30) * 1000) {
      const elapsed = (performance.now() - lastWrite) / 1000;
      if (missAfter === undefined) {
        const hits = (await Promise.all(sample.map((jid) => registry.lookup(jid))))
          .filter((value) => value !== null).length;
        if (hits === 0) missAfter = round(elapsed, 2);
      }
      if (goneAfter === undefined && await registry.size() === 0) goneAfter = round(elapsed, 2);
      if (missAfter !== undefined && goneAfter !== undefined) break;
      await sleep(50);
    }
    // Expiry events may trail the removal a little.
    if (registry.expiryEvents) await sleep(500);
    const events = registry.expiryEvents?.();
    rows.push({
      schema: registry.schema,
      register_ops_per_s: register.ops_per_s,
      register_client_us_per_op: register.client_us_per_op,
      register_broker_us_per_op: register.broker_us_per_op,
      lookup_ops_per_s: lookup.ops_per_s,
      lookup_client_us_per_op: lookup.client_us_per_op,
      lookup_broker_us_per_op: lookup.broker_us_per_op,
      lookups_found: found,
      reap_ms: reapMs,
      lookups_miss_after_s: missAfter,
      entries_gone_after_s: goneAfter,
      expiry_events: events?.count,
      first_expiry_event_after_s: events?.firstAt === undefined
        ? undefined
        : round((events.firstAt - lastWrite) / 1000, 2),
    });
    await registry.close();
  }
  tell({ done: true, rows });
}

// ---------------------------------------------------------------------------------------------
// The coordinator: starts each broker, runs the children, reads CPU, reports.

interface Child {
  pid: number;
  /** Resolves with the next JSON line that has `key`. */
  next(key: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  send(line: string): Promise<void>;
  stop(): Promise<void>;
}

function spawnRole(role: string, kind: BrokerKind, broker: Broker): Child {
  const args = [
    "run",
    "-A",
    new URL(import.meta.url).pathname,
    `--role=${role}`,
    `--broker=${kind}`,
    `--url=${broker.url}`,
    `--broker-pid=${broker.pid}`,
  ];
  for (const name of ["messages", "warmup", "batch", "window", "rate", "seconds", "jids", "ttl"]) {
    args.push(`--${name}=${opts[name as keyof typeof opts]}`);
  }
  const child = new Deno.Command(Deno.execPath(), {
    args,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines: Record<string, unknown>[] = [];
  let wake = () => {};
  let ended = false;
  (async () => {
    let pending = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      pending += chunk;
      let newline;
      while ((newline = pending.indexOf("\n")) !== -1) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        try {
          lines.push(JSON.parse(line));
        } catch {
          console.error(`${role}: ${line}`);
        }
        wake();
      }
    }
    ended = true;
    wake();
  })();
  const writer = child.stdin.getWriter();
  return {
    pid: child.pid,
    async next(key, timeoutMs = 180_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const index = lines.findIndex((line) => key in line);
        if (index !== -1) return lines.splice(index, 1)[0];
        if (ended) throw new Error(`The ${role} process ended before reporting '${key}'`);
        if (Date.now() > deadline) throw new Error(`The ${role} process did not report '${key}'`);
        await Promise.race([new Promise<void>((resolve) => (wake = resolve)), sleep(100)]);
      }
    },
    send: (line) => writer.write(new TextEncoder().encode(line + "\n")),
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* exited */ }
      await child.status;
    },
  };
}

async function throughput(kind: BrokerKind, broker: Broker) {
  const receiver = spawnRole("sink", kind, broker);
  const sender = spawnRole("source", kind, broker);
  try {
    await receiver.next("ready");
    await sender.next("ready");
    await sender.send("go");
    await sender.next("warm");
    await sleep(200);
    const brokerCpu = cpuSeconds(broker.pid);
    await sender.send("go");
    const sent = await sender.next("done");
    const got = await receiver.next("done");
    const brokerCpuS = cpuSeconds(broker.pid) - brokerCpu;
    const seconds = ((got.last_ms as number) - (sent.start_ms as number)) / 1000;
    const received = got.received as number;
    return {
      messages: MESSAGES,
      received,
      payload_bytes: stanza(0).length,
      msgs_per_s: Math.round(received / seconds),
      publish_seconds: round(((sent.end_ms as number) - (sent.start_ms as number)) / 1000, 3),
      publisher_us_per_msg: round((sent.cpu_us as number) / MESSAGES, 2),
      subscriber_us_per_msg: round((got.cpu_us as number) / received, 2),
      broker_us_per_msg: round(brokerCpuS * 1e6 / MESSAGES, 2),
      total_us_per_msg: 0,
    };
  } finally {
    await sender.stop();
    await receiver.stop();
  }
}

async function latency(kind: BrokerKind, broker: Broker) {
  const answerer = spawnRole("echo", kind, broker);
  const asker = spawnRole("requester", kind, broker);
  try {
    await answerer.next("ready");
    await asker.next("ready");
    await answerer.send("go");
    await asker.send("go");
    await sleep(1000); // the requester's warm-up second
    const brokerCpu = cpuSeconds(broker.pid);
    const result = await asker.next("done");
    const brokerCpuS = cpuSeconds(broker.pid) - brokerCpu;
    await answerer.send("stop");
    const answered = await answerer.next("done");
    const requests = result.requests as number;
    return {
      rate_per_s: RATE,
      seconds: SECONDS,
      requests,
      answered: result.answered,
      p50_ms: result.p50_ms,
      p90_ms: result.p90_ms,
      p99_ms: result.p99_ms,
      max_ms: result.max_ms,
      send_lag_max_ms: result.send_lag_max_ms,
      requester_us_per_rtt: round((result.cpu_us as number) / requests, 2),
      requester_pacing_loop_us_per_rtt: result.pacing_us_per_request,
      responder_us_per_rtt: round((answered.cpu_us as number) / requests, 2),
      broker_us_per_rtt: round(brokerCpuS * 1e6 / requests, 2),
    };
  } finally {
    await asker.stop();
    await answerer.stop();
  }
}

async function registry(kind: BrokerKind, broker: Broker) {
  const child = spawnRole("registry", kind, broker);
  try {
    return (await child.next("done")).rows as Record<string, unknown>[];
  } finally {
    await child.stop();
  }
}

function rssKiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/status`))?.[1]);
}

/**
 * Restarts the broker on the same port under two connected nodes (A publishes a numbered probe
 * every 20 ms to B's channel) and measures, with each client's default reconnect policy, how
 * long after the new broker listens B receives again, and how many probes sent meanwhile
 * were lost. Resolves with the figures and the new broker process, still running.
 */
async function reconnect(kind: BrokerKind, broker: Broker) {
  const a = await openBus(kind, broker.url);
  const b = await openBus(kind, broker.url);
  const received = new Set<number>();
  let firstAfterRestart: number | undefined;
  let listeningAt = Infinity;
  await b.subscribe("lilt.node.B", (payload) => {
    received.add(Number(payload));
    if (performance.now() > listeningAt) firstAfterRestart ??= performance.now();
  });
  let sent = 0;
  const sender = setInterval(() => a.publish("lilt.node.B", String(sent++)), 20);
  await sleep(300);
  const beforeOutage = sent;
  await broker.stop({ keepDir: true });
  const stoppedAt = performance.now();
  await sleep(500);
  const restarted = kind === "nats"
    ? await startNats({ port: broker.port, dir: broker.dir })
    : await startRedis({ port: broker.port, dir: broker.dir });
  listeningAt = performance.now();
  while (firstAfterRestart === undefined && performance.now() - listeningAt < 30_000) {
    await sleep(10);
  }
  await sleep(300);
  clearInterval(sender);
  const duringOutage = [...Array(sent).keys()].filter((i) => i >= beforeOutage);
  const lost = duringOutage.filter((i) => !received.has(i)).length;
  await Promise.race([Promise.all([a.close(), b.close()]), sleep(3000)]);
  return {
    restarted,
    down_ms: Math.round(listeningAt - stoppedAt),
    delivering_again_after_ms: firstAfterRestart === undefined
      ? null
      : Math.round(firstAfterRestart - listeningAt),
    probes_sent_after_stop: duringOutage.length,
    probes_lost: lost,
  };
}

/**
 * Kills a node (SIGKILL: the kernel closes its sockets) and measures how soon another node can
 * tell from the broker that nobody listens on its channel any more: NATS answers a request to
 * lilt.node.B with "no responders", Redis's PUBSUB NUMSUB lilt.node.B drops to 0.
 */
async function nodeDeath(kind: BrokerKind, broker: Broker) {
  const victim = spawnRole("echo", kind, broker);
  await victim.next("ready");
  let listening: () => Promise<boolean>;
  let close: () => Promise<void>;
  if (kind === "nats") {
    const nc = await connect({ servers: broker.url });
    listening = async () => {
      try {
        // The echo node answers on lilt.node.A, not to the reply subject: a live listener
        // shows as a timeout, a dead one as "no responders" at once.
        await nc.request("lilt.node.B", "", { timeout: 20 });
        return true;
      } catch (error) {
        return !/no responders/i.test(`${error} ${(error as Error).cause ?? ""}`);
      }
    };
    close = () => nc.close();
  } else {
    const client = createClient({ url: broker.url });
    await client.connect();
    listening = async () => {
      const reply = await client.sendCommand(["PUBSUB", "NUMSUB", "lilt.node.B"]) as unknown[];
      return Number(reply[1]) > 0;
    };
    close = () => client.close();
  }
  const aliveBefore = await listening();
  const killedAt = performance.now();
  Deno.kill(victim.pid, "SIGKILL");
  let detectedAfter: number | null = null;
  while (performance.now() - killedAt < 10_000) {
    if (!await listening()) {
      detectedAfter = round(performance.now() - killedAt, 1);
      break;
    }
  }
  await victim.stop();
  await close();
  return { listener_seen_before_kill: aliveBefore, gone_after_ms: detectedAfter };
}

async function brokerVersion(kind: BrokerKind): Promise<string> {
  const [bin, flag] = kind === "nats"
    ? ["/usr/sbin/nats-server", "--version"]
    : ["/usr/bin/redis-server", "--version"];
  const out = await new Deno.Command(bin, { args: [flag], stdout: "piped" }).output();
  return new TextDecoder().decode(out.stdout).trim();
}

async function coordinate(): Promise<void> {
  const kinds = opts.only.split(",").map((s) => s.trim()) as BrokerKind[];
  for (const kind of kinds) {
    if (kind !== "nats" && kind !== "redis") {
      throw new Error(`Option --only takes nats and redis, found '${kind}'`);
    }
  }
  const began = performance.now();
  const load = (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
  const results: Record<string, Record<string, unknown>> = {};
  for (const kind of kinds) {
    const entry: Record<string, unknown> = { version: await brokerVersion(kind) };
    // The bus figures come from a plain broker (NATS without JetStream); the registry gets a
    // fresh one (NATS with JetStream for its key-value buckets).
    console.error(`${kind}: starting`);
    const broker = kind === "nats" ? await startNats() : await startRedis();
    try {
      console.error(`${kind}: throughput (${MESSAGES} messages after ${WARMUP} warm-up)`);
      const t = await throughput(kind, broker);
      t.total_us_per_msg = round(
        t.publisher_us_per_msg + t.subscriber_us_per_msg + t.broker_us_per_msg,
        2,
      );
      entry.throughput = t;
      console.error(`${kind}: latency (${RATE}/s for ${SECONDS} s)`);
      entry.latency = await latency(kind, broker);
      entry.broker_rss_kib = rssKiB(broker.pid);
      console.error(`${kind}: a node killed`);
      entry.node_death = await nodeDeath(kind, broker);
      console.error(`${kind}: reconnect after a broker restart`);
      const { restarted, ...figures } = await reconnect(kind, broker);
      entry.reconnect = figures;
      await restarted.stop();
    } finally {
      await broker.stop();
      await Deno.remove(broker.dir, { recursive: true }).catch(() => {});
    }
    const store = kind === "nats" ? await startNats({ jetstream: true }) : await startRedis();
    try {
      console.error(`${kind}: registry (${JIDS} JIDs, TTL ${TTL_S} s)`);
      entry.registry = await registry(kind, store);
      entry.registry_broker_rss_kib = rssKiB(store.pid);
    } finally {
      await store.stop();
    }
    results[kind] = entry;
  }
  printTable(results);
  const date = new Date().toISOString();
  const line = JSON.stringify({
    bench: "broker",
    date,
    loadavg_at_start: load,
    cpus: navigator.hardwareConcurrency,
    options: {
      messages: MESSAGES,
      warmup: WARMUP,
      batch: BATCH,
      window: WINDOW,
      rate: RATE,
      seconds: SECONDS,
      jids: JIDS,
      ttl_s: TTL_S,
    },
    ...results,
    seconds: round((performance.now() - began) / 1000, 1),
  });
  console.log(line);
  const saved = new URL(
    `results/${date.replaceAll(":", "-").replace(".", "-")}-broker.json`,
    import.meta.url,
  );
  await Deno.writeTextFile(saved, JSON.stringify(JSON.parse(line), null, 2) + "\n");
  console.error(`saved ${saved.pathname}`);
}

function printTable(results: Record<string, Record<string, unknown>>): void {
  const kinds = Object.keys(results);
  const get = (kind: string, path: string) =>
    path.split(".").reduce<unknown>(
      (value, key) => (value as Record<string, unknown> | undefined)?.[key],
      results[kind],
    );
  const rows: [string, string][] = [
    ["throughput msgs/s", "throughput.msgs_per_s"],
    ["received of sent", "throughput.received"],
    ["publisher µs CPU/msg", "throughput.publisher_us_per_msg"],
    ["subscriber µs CPU/msg", "throughput.subscriber_us_per_msg"],
    ["broker µs CPU/msg", "throughput.broker_us_per_msg"],
    ["all three µs CPU/msg", "throughput.total_us_per_msg"],
    [`round trip p50 ms (${RATE}/s)`, "latency.p50_ms"],
    ["round trip p99 ms", "latency.p99_ms"],
    ["round trip max ms", "latency.max_ms"],
    ["requester µs CPU/rtt", "latency.requester_us_per_rtt"],
    ["… of which its 1 ms pacing loop", "latency.requester_pacing_loop_us_per_rtt"],
    ["responder µs CPU/rtt", "latency.responder_us_per_rtt"],
    ["broker µs CPU/rtt", "latency.broker_us_per_rtt"],
  ];
  for (const index of [0, 1]) {
    const prefix = `registry.${index}.`;
    const label = index === 0 ? "registry (per-JID TTL)" : "registry (per-node)";
    rows.push(
      [`${label} register ops/s`, prefix + "register_ops_per_s"],
      [`${label} lookup ops/s`, prefix + "lookup_ops_per_s"],
      [`${label} broker µs/register`, prefix + "register_broker_us_per_op"],
      [`${label} broker µs/lookup`, prefix + "lookup_broker_us_per_op"],
      [`${label} reap ms`, prefix + "reap_ms"],
      [`${label} lookups miss after s`, prefix + "lookups_miss_after_s"],
      [`${label} entries gone after s`, prefix + "entries_gone_after_s"],
      [`${label} expiry events heard`, prefix + "expiry_events"],
      [`${label} first expiry event after s`, prefix + "first_expiry_event_after_s"],
    );
  }
  rows.push(
    ["broker RSS KiB after bus tests", "broker_rss_kib"],
    ["broker RSS KiB after registry", "registry_broker_rss_kib"],
    ["node killed: broker shows no listener after ms", "node_death.gone_after_ms"],
    ["restart: delivering again after ms", "reconnect.delivering_again_after_ms"],
    ["restart: probes lost of sent", "reconnect.probes_lost"],
  );
  console.log(`| figure | ${kinds.join(" | ")} |`);
  console.log(`|---|${kinds.map(() => "---:").join("|")}|`);
  for (const [label, path] of rows) {
    console.log(`| ${label} | ${kinds.map((kind) => get(kind, path) ?? "-").join(" | ")} |`);
  }
  for (const kind of kinds) {
    const schemas = (results[kind].registry as { schema: string }[]).map((r) => r.schema);
    console.log(`${kind} registry schemas: ${schemas.join("; ")}`);
  }
}

if (opts.role) {
  const kind = opts.broker as BrokerKind;
  const url = opts.url!;
  if (opts.role === "registry") {
    await registryRole(kind, url, Number(opts["broker-pid"]));
  } else {
    const bus = await openBus(kind, url);
    const roles: Record<string, (bus: Bus) => Promise<void>> = { sink, source, echo, requester };
    const role = roles[opts.role];
    if (!role) throw new Error(`Unknown role '${opts.role}'`);
    await role(bus);
    await bus.close();
  }
  Deno.exit(0);
} else {
  await coordinate();
}
