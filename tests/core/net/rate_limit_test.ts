// Rate limits over real sockets: a flooding client is slowed by TCP backpressure to about the
// configured byte rate (over TLS too, without the server buffering what it does not read),
// other sessions stay responsive, per-account stanza rates delay then refuse, and XEP-0478
// limits are announced to clients and servers. Figures are printed, never asserted tightly.

import assert from "node:assert/strict";
import { parseConfigText } from "../../../core/config.ts";
import {
  AccountStanzaLimits,
  parseBurst,
  parseByteRate,
  TokenBucket,
} from "../../../core/net/rate_limit.ts";
import type { FloodReport } from "../../helpers/flood_client.ts";
import { conditionName } from "../../../core/xml/stanza.ts";
import { conditionOf, NS_STREAM, RawClient } from "../../helpers/raw_client.ts";
import { startTestServer, type TestServer } from "../../helpers/test_server.ts";

const USERS = { alice: "alice-pw", bob: "bob-pw", carol: "carol-pw" };
const NS_LIMITS = "urn:xmpp:stream-limits:0";
const NS_STREAMS_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams";

// ---------- units ----------

Deno.test("rates and bursts read as Prosody's mod_limits writes them", () => {
  assert.equal(parseByteRate("10kb/s"), 10_000);
  assert.equal(parseByteRate("1.5MB/s"), 1_500_000);
  assert.equal(parseByteRate("512 b / s"), 512);
  assert.equal(parseByteRate("2KiB/s"), 2048);
  assert.equal(parseByteRate("unlimited"), undefined);
  assert.throws(() => parseByteRate("10kb"), /Cannot read the rate '10kb'/);
  assert.throws(() => parseByteRate("fast"), /bytes per second/);
  assert.equal(parseBurst("2s", 10_000), 20_000);
  assert.equal(parseBurst("64kb", 10_000), 64_000);
  assert.throws(() => parseBurst("2 minutes", 1), /Cannot read the burst/);
});

Deno.test("a bad limits_ option is refused when the config loads", () => {
  const { config, problems } = parseConfigText(
    'limits_c2s_rate = "lots"\nlimits_s2s_burst = "soon"\n',
    "/tmp/x.toml",
  );
  assert.equal(config, undefined);
  const text = JSON.stringify(problems);
  assert.match(text, /limits_c2s_rate.*Cannot read the rate 'lots'/);
  assert.match(text, /limits_s2s_burst.*Cannot read the burst 'soon'/);
});

Deno.test("a token bucket lends its burst, then says how long the debt takes", () => {
  const bucket = new TokenBucket(1000, 2000, 0); // 1 kB/s, 2 kB burst
  assert.equal(bucket.take(1500, 0), 0);
  assert.equal(bucket.take(1000, 0), 500); // 500 bytes of debt: 0.5 s
  assert.equal(bucket.take(0, 500), 0); // paid
  assert.equal(bucket.take(100, 600), 0); // 100 refilled meanwhile
  assert.ok(bucket.isFull(10_000));
  bucket.reconfigure(10, 5, 10_000);
  assert.equal(bucket.level(10_000), 5);
});

Deno.test("stanza buckets are per account, shared by its sessions, gone with the last", () => {
  const limits = new AccountStanzaLimits({
    message: 2,
    presence: 0,
    iq: 1,
    burstSeconds: 1,
    maxDelaySeconds: 1,
  });
  limits.attach("a@x");
  limits.attach("a@x");
  assert.equal(limits.reserve("a@x", "message", 0), 0);
  assert.equal(limits.reserve("a@x", "message", 0), 0);
  assert.equal(limits.reserve("a@x", "message", 0), 500); // waits half a second
  assert.equal(limits.reserve("a@x", "message", 0), 1000);
  assert.equal(limits.reserve("a@x", "message", 0), -1); // would wait 1.5 s: refused
  assert.equal(limits.reserve("a@x", "presence", 0), 0); // unlimited
  assert.equal(limits.reserve("b@x", "message", 0), 0); // no session: not limited
  limits.detach("a@x");
  assert.equal(limits.size, 1);
  limits.detach("a@x");
  assert.equal(limits.size, 0);
});

// ---------- over sockets ----------

/** The flood client process: its last progress line. */
interface Flood {
  /** Resolves once the flooder is logged in (it starts writing at once). */
  ready: Promise<void>;
  /** The last progress line (bytes written, backlog), once flooding. */
  latest(): FloodReport | undefined;
  stop(): Promise<void>;
}

function startFlood(
  port: number,
  count: number,
  bodyBytes: number,
  mode: "starttls" | "direct-tls" | "plain" = "starttls",
): Flood {
  const args = ["run", "-A", new URL("../../helpers/flood_client.ts", import.meta.url).pathname];
  args.push(String(port), String(count), String(bodyBytes));
  if (mode !== "starttls") args.push(`--${mode}`);
  const child = new Deno.Command(Deno.execPath(), {
    args,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  let latest: FloodReport | undefined;
  const { promise: ready, resolve: markReady } = Promise.withResolvers<void>();
  const reading = (async () => {
    let buffer = "";
    for await (const text of child.stdout.pipeThrough(new TextDecoderStream())) {
      buffer += text;
      let end;
      while ((end = buffer.indexOf("\n")) >= 0) {
        const report = JSON.parse(buffer.slice(0, end)) as FloodReport;
        buffer = buffer.slice(end + 1);
        if (report.phase === "ready") markReady();
        else latest = report;
      }
    }
  })();
  return {
    ready: Promise.race([
      ready,
      child.status.then((status) => {
        throw new Error(`The flood client ended before logging in (${status.code})`);
      }),
    ]),
    latest: () => latest,
    async stop() {
      await child.stdin.close().catch(() => {});
      await child.status;
      await reading;
    },
  };
}

/** Pings the server from `client` until `stop()`, one at a time; the round trips in ms. */
function pinger(client: RawClient): { stop(): Promise<number[]> } {
  const rtts: number[] = [];
  let running = true;
  const loop = (async () => {
    for (let i = 0; running; i++) {
      const started = performance.now();
      client.send(`<iq type='get' id='p${i}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
      await client.next((el) => el.attrs.id === `p${i}`, 30_000);
      rtts.push(performance.now() - started);
      await sleep(20);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return rtts;
    },
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? NaN;
}

/**
 * Runs a whole flood (until the server routed every message); its duration, the third client's
 * ping round trips, the server's RSS growth and the flooder's unsent backlog.
 */
async function measureFlood(t: TestServer, count: number, bodyBytes: number) {
  const { client: carol } = await RawClient.login(t.port, "carol", "carol-pw", "ping");
  const routed = t.server.metrics.counter("stanzas.message");
  const flood = startFlood(t.port, count, bodyBytes);
  try {
    const before = routed.value;
    await flood.ready;
    const started = performance.now();
    const rssBefore = Deno.memoryUsage().rss;
    let rssPeak = rssBefore;
    let backlogPeak = 0;
    const pings = pinger(carol);
    while (routed.value - before < count) {
      await sleep(50);
      rssPeak = Math.max(rssPeak, Deno.memoryUsage().rss);
      backlogPeak = Math.max(backlogPeak, flood.latest()?.backlog ?? 0);
    }
    const seconds = (performance.now() - started) / 1000;
    const rtts = await pings.stop();
    while (flood.latest() === undefined) await sleep(20);
    return {
      seconds,
      bytes: flood.latest()!.written,
      rtts,
      rssGrowthMb: (rssPeak - rssBefore) / 2 ** 20,
      backlogPeakMb: backlogPeak / 2 ** 20,
    };
  } finally {
    await flood.stop();
    carol.close();
  }
}

const UNLIMITED_STANZAS = "limits_message_rate = 0\nlimits_iq_rate = 0\nlimits_presence_rate = 0";

Deno.test({
  name: "a flood of 20,000 messages is slowed to the c2s rate; other sessions stay responsive",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const count = 20_000;
    const bodyBytes = 40;
    const free = await startTestServer({
      users: USERS,
      globalToml: `limits_c2s_rate = "unlimited"\n${UNLIMITED_STANZAS}`,
    });
    let unlimited;
    try {
      unlimited = await measureFlood(free, count, bodyBytes);
    } finally {
      await free.stop();
    }
    const rate = 500_000;
    const burst = 200_000;
    const t = await startTestServer({
      users: USERS,
      globalToml: `limits_c2s_rate = "500kb/s"\nlimits_c2s_burst = "200kb"\n${UNLIMITED_STANZAS}`,
    });
    let limited;
    try {
      limited = await measureFlood(t, count, bodyBytes);
    } finally {
      await t.stop();
    }
    const floor = (limited.bytes - burst) / rate;
    console.log(
      `flood of ${count} messages (${(limited.bytes / 1e6).toFixed(2)} MB): ` +
        `unlimited ${unlimited.seconds.toFixed(2)} s ` +
        `(${(unlimited.bytes / unlimited.seconds / 1000).toFixed(0)} kB/s); ` +
        `limited to 500 kB/s with a 200 kB burst: ${limited.seconds.toFixed(2)} s ` +
        `(${(limited.bytes / limited.seconds / 1000).toFixed(0)} kB/s accepted, ` +
        `${(limited.seconds / unlimited.seconds).toFixed(1)}x longer; the rate allows no less ` +
        `than ${floor.toFixed(2)} s)`,
    );
    console.log(
      `third client's pings during the limited flood: ${limited.rtts.length} round trips, ` +
        `p50 ${percentile(limited.rtts, 0.5).toFixed(1)} ms, ` +
        `p99 ${percentile(limited.rtts, 0.99).toFixed(1)} ms ` +
        `(during the unlimited flood: ${unlimited.rtts.length}, ` +
        `p99 ${percentile(unlimited.rtts, 0.99).toFixed(1)} ms); ` +
        `server RSS growth ${limited.rssGrowthMb.toFixed(1)} MiB ` +
        `(unlimited ${unlimited.rssGrowthMb.toFixed(1)} MiB); ` +
        `flooder's unsent backlog peak ${limited.backlogPeakMb.toFixed(1)} MiB`,
    );
    // The bucket cannot let more through than burst + rate x time (a lower bound on time,
    // whatever the machine's load); the 0.8 leaves room for the clock's granularity.
    assert.ok(
      limited.seconds >= 0.8 * floor,
      `the flood took ${limited.seconds} s; 500 kB/s allows no less than ${floor} s`,
    );
    assert.ok(limited.rtts.length > 0, "the third client's pings were answered during the flood");
  },
});

/**
 * Floods 20 MB (2,000 messages of 10 kB) at a server reading 200 kB/s for about 3 s, and checks
 * that what left the flooder was read at the rate, not taken into the server's memory.
 */
async function floodFor3s(mode: "direct-tls" | "plain"): Promise<void> {
  const t = await startTestServer({
    users: USERS,
    globalToml: `limits_c2s_rate = "200kb/s"\nlimits_c2s_burst = "100kb"\n${UNLIMITED_STANZAS}\n` +
      (mode === "plain"
        ? "c2s_require_encryption = false\nallow_unencrypted_plain_auth = true"
        : ""),
  });
  const routed = t.server.metrics.counter("stanzas.message");
  const flood = startFlood(mode === "plain" ? t.port : t.tlsPort, 2_000, 10_000, mode);
  try {
    const before = routed.value;
    await flood.ready;
    const started = performance.now();
    const rssBefore = Deno.memoryUsage().rss;
    let rssPeak = rssBefore;
    while (performance.now() - started < 3000) {
      await sleep(50);
      rssPeak = Math.max(rssPeak, Deno.memoryUsage().rss);
    }
    const seconds = (performance.now() - started) / 1000;
    const report = flood.latest()!;
    const messages = routed.value - before;
    const acceptedBytes = messages * report.written / 2_000;
    console.log(
      `${mode} flood: ${(report.written / 1e6).toFixed(1)} MB written; after ` +
        `${seconds.toFixed(1)} s ${messages} messages (${(acceptedBytes / 1e6).toFixed(2)} MB) ` +
        `accepted = ${(acceptedBytes / seconds / 1000).toFixed(0)} kB/s at 200 kB/s + 100 kB ` +
        `burst; ${(report.backlog / 1e6).toFixed(1)} MB still unsent in the flooder's socket; ` +
        `server RSS growth ${((rssPeak - rssBefore) / 2 ** 20).toFixed(1)} MiB`,
    );
    // What left the flooder but was not accepted sits in kernel buffers (a few MB on
    // loopback) or, if reads did not really stop, in the server's memory.
    const inFlight = report.written - report.backlog - acceptedBytes;
    assert.ok(
      inFlight < 12e6,
      `${(inFlight / 1e6).toFixed(1)} MB left the flooder but were not accepted`,
    );
    assert.ok(
      acceptedBytes <= 100_000 + 200_000 * seconds * 1.5 + 70_000,
      `accepted ${acceptedBytes} bytes in ${seconds} s`,
    );
  } finally {
    await flood.stop();
    await t.stop();
  }
}

Deno.test({
  name: "a TLS flood is read at the rate: the bytes wait in the flooder's socket, not the server",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () => floodFor3s("direct-tls"),
});

Deno.test({
  name: "a flood in the clear is read at the rate too",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () => floodFor3s("plain"),
});

/** Logs in alice and bob; alice's messages to bob. */
async function pair(t: TestServer) {
  const { client: bob } = await RawClient.login(t.port, "bob", "bob-pw", "bob");
  const { client: alice } = await RawClient.login(t.port, "alice", "alice-pw", "alice");
  const messages = (from: number, n: number) =>
    Array.from(
      { length: n },
      (_, i) =>
        `<message to='bob@localhost/bob' id='m${from + i}' type='chat'><body>hi</body></message>`,
    ).join("");
  return { alice, bob, messages };
}

Deno.test("messages over the account's rate wait their turn and arrive in order", async () => {
  const t = await startTestServer({
    users: USERS,
    globalToml: "limits_message_rate = 5\nlimits_stanza_burst = 1\nlimits_stanza_max_delay = 3",
  });
  try {
    const { alice, bob, messages } = await pair(t);
    const started = performance.now();
    alice.send(messages(0, 12)); // 5 at once, 7 more at 5 per second
    const ids: string[] = [];
    const arrival: number[] = [];
    while (ids.length < 12) {
      const el = await bob.next((el) => el.name === "message", 10_000);
      ids.push(el.attrs.id);
      arrival.push(performance.now() - started);
    }
    assert.deepEqual(ids, Array.from({ length: 12 }, (_, i) => `m${i}`));
    assert.equal(alice.received.filter((el) => el.attrs.type === "error").length, 0);
    console.log(
      `12 messages at 5/s (burst 5): first at ${arrival[0].toFixed(0)} ms, ` +
        `fifth ${arrival[4].toFixed(0)} ms, last ${arrival[11].toFixed(0)} ms`,
    );
    // Seven messages past the burst at 5 per second cannot all be through in less than 1.4 s.
    assert.ok(arrival[11] >= 1000, `the last message arrived after ${arrival[11]} ms`);
    // Other stanza kinds are not held back by the message rate once the queue is through.
    alice.send("<iq type='get' id='ping' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    assert.equal((await alice.next((el) => el.attrs.id === "ping")).attrs.type, "result");
    alice.close();
    bob.close();
  } finally {
    await t.stop();
  }
});

Deno.test("stanzas refused for the rate wait behind held ones: stream management never counts past a held stanza", async () => {
  const t = await startTestServer({
    users: USERS,
    globalToml: "limits_message_rate = 1\nlimits_stanza_burst = 1\nlimits_stanza_max_delay = 1",
  });
  try {
    const { alice, bob, messages } = await pair(t);
    alice.send("<enable xmlns='urn:xmpp:sm:3'/>");
    await alice.next((el) => el.name === "enabled");
    alice.send("<r xmlns='urn:xmpp:sm:3'/>");
    const before = Number((await alice.next((el) => el.name === "a")).attrs.h);
    // In one read: the first passes, the second waits a second for the rate, the rest would
    // wait too long; the request comes while the second waits.
    alice.send(messages(0, 12) + "<r xmlns='urn:xmpp:sm:3'/>");
    const during = await alice.next((el) => el.name === "a" && el.attrs.h !== String(before));
    // Only what was handled is acknowledged: the first message, not the refusals queued
    // behind the held ones (a crash now would lose the held ones).
    assert.equal(Number(during.attrs.h), before + 1);
    const errors: string[] = [];
    while (errors.length + bob.received.filter((el) => el.name === "message").length < 12) {
      const el = await alice.next((el) => el.name === "message" && el.attrs.type === "error", 5000);
      errors.push(el.attrs.id);
      // Each refusal comes after every held message was delivered.
      const delivered = bob.received.filter((el) => el.name === "message").map((el) => el.attrs.id);
      const first = Number(el.attrs.id.slice(1));
      for (let i = 0; i < first && !errors.includes(`m${i}`); i++) {
        assert.ok(
          delivered.includes(`m${i}`),
          `m${i} not delivered before the refusal of m${first}`,
        );
      }
    }
    assert.ok(errors.length > 0, "nothing was refused");
    alice.send("<r xmlns='urn:xmpp:sm:3'/>");
    const after = await alice.next((el) => el.name === "a" && Number(el.attrs.h) === before + 12);
    assert.ok(after);
    alice.close();
    bob.close();
  } finally {
    await t.stop();
  }
});

Deno.test("a flood past the delay is refused with policy-violation, then the stream closes", async () => {
  const t = await startTestServer({
    users: USERS,
    globalToml: "limits_message_rate = 5\nlimits_stanza_burst = 1\nlimits_stanza_max_delay = 1",
  });
  try {
    const { alice, bob, messages } = await pair(t);
    const floodStart = Date.now();
    alice.send(messages(0, 40));
    // The refusals come in their turn, after the stanzas held before them.
    const refused = await alice.next((el) => el.name === "message" && el.attrs.type === "error");
    assert.equal(conditionOf(refused), "policy-violation");
    assert.equal(refused.getChild("error")?.attrs.type, "wait");
    assert.match(
      refused.getChild("error")?.getChildText("text") ?? "",
      /Too many message stanzas: an account may send 5 per second/,
    );
    // Still flooding more than the delay after the flood began: the stream is closed.
    await new Promise((resolve) =>
      setTimeout(resolve, Math.max(0, floodStart + 1200 - Date.now()))
    );
    alice.send(messages(40, 40));
    const error = await alice.next((el) => el.name === "error" && el.ns === NS_STREAM, 10_000);
    assert.equal(conditionName(error), "policy-violation");
    assert.match(error.getChildText("text", NS_STREAMS_ERRORS) ?? "", /Too many message stanzas/);
    await alice.waitClosed(10_000);
    // What was not refused was delivered, in order.
    const got = bob.received.filter((el) => el.name === "message").map((el) => el.attrs.id);
    assert.ok(got.length >= 5, `bob got ${got.length}`);
    assert.deepEqual(got, [...got].sort((a, b) => Number(a.slice(1)) - Number(b.slice(1))));
    assert.ok(t.server.metrics.counter("c2s.rate_refused").value > 0);
    assert.equal(t.server.metrics.counter("c2s.rate_closed").value, 1);
    bob.close();
  } finally {
    await t.stop();
  }
});

Deno.test("XEP-0478: client streams announce max-bytes, and idle-seconds once authenticated", async () => {
  const t = await startTestServer({
    users: USERS,
    globalToml: "c2s_stanza_size_limit = 70000\nc2s_idle_timeout = 321",
  });
  try {
    const c = await RawClient.connect(t.port);
    const first = (await c.open()).getChild("limits", NS_LIMITS);
    // Before authentication the smaller c2s_preauth_stanza_size_limit is in force.
    assert.equal(first?.getChildText("max-bytes"), "16384");
    assert.equal(first?.getChild("idle-seconds"), undefined);
    await c.starttls();
    await c.loginPlain("alice", "alice-pw");
    const after = c.received.filter((el) => el.name === "features").at(-1)!;
    assert.equal(after.getChild("limits", NS_LIMITS)?.getChildText("idle-seconds"), "321");
    assert.equal(after.getChild("limits", NS_LIMITS)?.getChildText("max-bytes"), "70000");
    c.close();
  } finally {
    await t.stop();
  }
});
