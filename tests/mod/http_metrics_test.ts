// /metrics over real sockets: OpenMetrics text whose values move after a login and a message,
// checked against the exposition format rules; the Prometheus text format read by an npm
// parser and by Debian's prometheus_client (its strict OpenMetrics parser too); 403 for addresses
// outside metrics_allow.

import assert from "node:assert/strict";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { OPENMETRICS_TYPE, PROMETHEUS_TYPE, wantsPrometheusText } from "../../mod/http_metrics.ts";
import { startDnsResponder } from "../helpers/dns_responder.ts";
import { online, startFederatingServer } from "../helpers/federation.ts";
import { rawRequest } from "../helpers/http_request.ts";
import { RawClient, roundTrip } from "../helpers/raw_client.ts";
import { createTestCa } from "../helpers/test_ca.ts";
import { startTestServer } from "../helpers/test_server.ts";

/** Checks the OpenMetrics text rules strictly and returns sample name+labels -> value. */
function parseOpenMetrics(text: string): Map<string, number> {
  const lines = text.split("\n");
  assert.equal(lines.pop(), "", "ends with a newline");
  assert.equal(lines.pop(), "# EOF", "# EOF is last");
  const types = new Map<string, string>();
  const samples = new Map<string, number>();
  for (const line of lines) {
    const meta = /^# (TYPE|HELP|UNIT) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line);
    if (meta) {
      if (meta[1] === "TYPE") {
        assert.ok(!types.has(meta[2]), `one TYPE for ${meta[2]}`);
        assert.match(meta[3], /^(counter|gauge|histogram|summary|info|stateset|unknown)$/);
        types.set(meta[2], meta[3]);
      } else if (meta[1] === "UNIT") {
        assert.ok(meta[2].endsWith(`_${meta[3]}`), `${meta[2]} ends with its unit`);
      }
      continue;
    }
    const sample =
      /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-z_]+="[^"\\\n]*"(,[a-z_]+="[^"\\\n]*")*\})? (\S+)$/
        .exec(line);
    assert.ok(sample, `valid sample line: ${line}`);
    const name = sample[1];
    const family = types.has(name) ? name : name.replace(/_(total|count|sum)$/, "");
    const type = types.get(family);
    assert.ok(type, `${name} has a TYPE`);
    if (type === "counter") assert.equal(name, `${family}_total`, "counters end in _total");
    assert.ok(name.startsWith("lilt_"));
    const value = Number(sample[4]);
    assert.ok(Number.isFinite(value), `numeric value in ${line}`);
    samples.set(name + (sample[2] ?? ""), value);
  }
  return samples;
}

Deno.test("/metrics serves OpenMetrics text whose values move with logins and messages", async () => {
  const t = await startTestServer({
    globalToml: 'http_interfaces = ["127.0.0.1:0"]',
    users: { alice: "pw", bob: "pw" },
    modules: ["http_metrics", "roster"],
  });
  try {
    const url = `http://127.0.0.1:${t.server.port("http")}/metrics`;
    const before = await rawRequest(url, "localhost");
    assert.equal(before.status, 200);
    assert.match(before.headers, /content-type: application\/openmetrics-text; version=1\.0\.0/);
    const first = parseOpenMetrics(before.body);
    assert.equal(first.get('lilt_sessions{kind="c2s"}'), 0);
    assert.equal(first.get("lilt_s2s_links"), 0);
    const { client: alice } = await RawClient.login(t.port, "alice", "pw");
    const { client: bob } = await RawClient.login(t.port, "bob", "pw");
    alice.send("<message to='bob@localhost/test' type='chat'><body>hi</body></message>");
    await bob.next((el) => el.name === "message");
    alice.send(
      "<iq type='set' id='r1'><query xmlns='jabber:iq:roster'><item jid='bob@localhost'/></query></iq>",
    );
    await alice.next((el) => el.name === "iq" && el.attrs.id === "r1");
    await roundTrip(alice);
    const after = parseOpenMetrics((await rawRequest(url, "localhost")).body);
    assert.equal(after.get('lilt_sessions{kind="c2s"}'), 2);
    assert.equal(
      after.get("lilt_auth_successes_total"),
      (first.get("lilt_auth_successes_total") ?? 0) + 2,
    );
    for (const direction of ["in", "out"]) {
      for (const kind of ["message", "iq"]) {
        const key = `lilt_stanzas_total{direction="${direction}",kind="${kind}"}`;
        assert.ok(after.get(key)! > first.get(key)!, `${key} grew`);
      }
    }
    // Bob received the message: one more message written out than before.
    assert.ok(
      after.get('lilt_stanzas_total{direction="out",kind="message"}')! >=
        first.get('lilt_stanzas_total{direction="out",kind="message"}')! + 1,
    );
    assert.ok(after.get("lilt_process_resident_memory_bytes")! > 0);
    assert.ok(after.has("lilt_event_loop_lag_seconds"));
    assert.ok(after.has("lilt_uptime_seconds"));
    // The roster change was written to the database.
    assert.ok(
      after.get("lilt_storage_transaction_seconds_count")! >
        first.get("lilt_storage_transaction_seconds_count")!,
    );
    alice.close();
    bob.close();
  } finally {
    await t.stop();
  }
});

Deno.test("/metrics counts s2s streams and linked remote domains", async () => {
  const dns = await startDnsResponder();
  const ca = await createTestCa();
  const common = {
    dns,
    ca,
    users: { alice: "pw" },
    modules: ["roster", "presence", "http_metrics"],
  };
  const a = await startFederatingServer({
    ...common,
    domain: "a.test",
    globalToml: 'http_interfaces = ["127.0.0.1:0"]',
  });
  const b = await startFederatingServer({ ...common, domain: "b.test" });
  try {
    const alice = await online(a.port, "alice", "a.test");
    const bob = await online(b.port, "alice", "b.test");
    alice.send("<message to='alice@b.test/r' type='chat' id='m1'><body>hi</body></message>");
    await bob.next((el) => el.name === "message" && el.attrs.id === "m1", 10_000);
    const url = `http://127.0.0.1:${a.server.port("http")}/metrics`;
    const metrics = parseOpenMetrics((await rawRequest(url, "a.test")).body);
    assert.equal(metrics.get("lilt_s2s_links"), 1);
    assert.equal(metrics.get('lilt_sessions{kind="s2sout"}'), 1);
    // The message left over the s2s stream: counted as written out.
    assert.ok(metrics.get('lilt_stanzas_total{direction="out",kind="message"}')! >= 1);
    alice.close();
    bob.close();
  } finally {
    await a.stop();
    await b.stop();
    await dns.close();
  }
});

Deno.test("/metrics answers 403 to addresses outside metrics_allow", async () => {
  const t = await startTestServer({
    globalToml: 'http_interfaces = ["127.0.0.1:0"]',
    hostToml: 'metrics_allow = ["10.0.0.0/8"]',
    modules: ["http_metrics"],
  });
  try {
    const url = `http://127.0.0.1:${t.server.port("http")}/metrics`;
    const answer = await rawRequest(url, "localhost");
    assert.equal(answer.status, 403);
    assert.ok(!answer.body.includes("lilt_"));
  } finally {
    await t.stop();
  }
});

Deno.test("a metrics_allow entry that is not an address is a config error", async () => {
  await assert.rejects(
    startTestServer({ hostToml: 'metrics_allow = ["nope"]', modules: ["http_metrics"] }),
    /invalid entry 'nope'/,
  );
});

Deno.test("curl reads /metrics when curl is installed", async () => {
  let curl: Deno.Command;
  try {
    curl = new Deno.Command("curl", { args: ["--version"], stdout: "null", stderr: "null" });
    await curl.output();
  } catch {
    return; // curl is not installed
  }
  const t = await startTestServer({
    globalToml: 'http_interfaces = ["127.0.0.1:0"]',
    modules: ["http_metrics"],
  });
  try {
    const port = t.server.port("http");
    const out = await new Deno.Command("curl", {
      args: ["-s", "-i", "-H", "Host: localhost", `http://127.0.0.1:${port}/metrics`],
      stdout: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assert.match(text, /^HTTP\/1\.1 200/);
    assert.ok(text.toLowerCase().includes(`content-type: ${OPENMETRICS_TYPE}`));
    assert.ok(text.endsWith("# EOF\n"));
  } finally {
    await t.stop();
  }
});

Deno.test("/metrics in the Prometheus text format reads with a Prometheus parser", async () => {
  const t = await startTestServer({
    globalToml: 'http_interfaces = ["127.0.0.1:0"]',
    users: { alice: "pw", bob: "pw" },
    modules: ["http_metrics"],
  });
  try {
    const { client: alice } = await RawClient.login(t.port, "alice", "pw");
    const { client: bob } = await RawClient.login(t.port, "bob", "pw");
    alice.send("<message to='bob@localhost/test' type='chat'><body>hi</body></message>");
    await bob.next((el) => el.name === "message");
    const url = `http://127.0.0.1:${t.server.port("http")}/metrics`;
    const answer = await rawRequest(url, "localhost", {
      headers: { accept: "text/plain;version=0.0.4;q=0.9,*/*;q=0.1" },
    });
    assert.equal(answer.status, 200);
    assert.ok(answer.headers.includes(`content-type: ${PROMETHEUS_TYPE}`));
    assert.ok(!answer.body.includes("# EOF"));
    type Parsed = {
      name: string;
      type: string;
      metrics: { value?: string; count?: string; sum?: string; labels?: Record<string, string> }[];
    };
    const families = new Map(
      (parsePrometheusTextFormat(answer.body) as Parsed[]).map((f) => [f.name, f]),
    );
    // Every family is typed (none fell back to untyped), counters under their _total name.
    for (const family of families.values()) assert.notEqual(family.type, "UNTYPED", family.name);
    const stanzas = families.get("lilt_stanzas_total");
    assert.equal(stanzas?.type, "COUNTER");
    const value = (direction: string, kind: string) =>
      Number(
        stanzas!.metrics.find((s) => s.labels?.direction === direction && s.labels?.kind === kind)
          ?.value,
      );
    assert.ok(value("in", "message") >= 1);
    assert.ok(value("out", "message") >= 1);
    assert.ok(value("out", "iq") >= 2, "bind results were written");
    assert.equal(families.get("lilt_auth_successes_total")?.type, "COUNTER");
    assert.equal(Number(families.get("lilt_auth_successes_total")?.metrics[0].value), 2);
    const sessions = families.get("lilt_sessions");
    assert.equal(sessions?.type, "GAUGE");
    assert.equal(Number(sessions?.metrics.find((s) => s.labels?.kind === "c2s")?.value), 2);
    const storage = families.get("lilt_storage_transaction_seconds");
    assert.equal(storage?.type, "SUMMARY");
    assert.ok(Number.isFinite(Number(storage?.metrics[0].count)));
    alice.close();
    bob.close();
  } finally {
    await t.stop();
  }
});

Deno.test("a scraper asking for text/plain only gets the Prometheus text format", () => {
  assert.equal(wantsPrometheusText(null), false);
  assert.equal(wantsPrometheusText("*/*"), false);
  assert.equal(wantsPrometheusText("text/plain; version=0.0.4"), true);
  assert.equal(
    wantsPrometheusText(
      "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
    ),
    false,
  );
});

/** Debian's python3-prometheus-client: the reference parsers of both text formats. */
const PYTHON = "/usr/bin/python3";
const PYTHON_PARSE = `
import sys, json
fmt = sys.argv[1]
text = sys.stdin.read()
if fmt == "openmetrics":
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
else:
    from prometheus_client.parser import text_string_to_metric_families
print(json.dumps({f.name: [f.type, len(f.samples)] for f in text_string_to_metric_families(text)}))
`;

/** Parses `text` with prometheus_client's parser for `format`; its families by name. */
async function pythonParse(
  text: string,
  format: "openmetrics" | "prometheus",
): Promise<Record<string, [string, number]>> {
  const child = new Deno.Command(PYTHON, {
    args: ["-c", PYTHON_PARSE, format],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const { code, stdout, stderr } = await child.output();
  const err = new TextDecoder().decode(stderr);
  if (err.includes("No module named 'prometheus_client'")) {
    throw new Error(
      "Debian's python3-prometheus-client is missing: run scripts/install-test-deps as root",
    );
  }
  assert.equal(code, 0, `prometheus_client refused the ${format} text:\n${err}`);
  return JSON.parse(new TextDecoder().decode(stdout));
}

Deno.test("prometheus_client's strict OpenMetrics parser and its text-format parser read /metrics", async () => {
  const t = await startTestServer({
    globalToml: 'http_interfaces = ["127.0.0.1:0"]',
    users: { alice: "pw" },
    modules: ["http_metrics"],
  });
  try {
    const { client: alice } = await RawClient.login(t.port, "alice", "pw");
    const url = `http://127.0.0.1:${t.server.port("http")}/metrics`;
    // What curl and Prometheus get: OpenMetrics, read by the strict parser.
    const open = await pythonParse((await rawRequest(url, "localhost")).body, "openmetrics");
    assert.deepEqual(open.lilt_stanzas?.[0], "counter");
    assert.deepEqual(open.lilt_sessions?.[0], "gauge");
    assert.deepEqual(open.lilt_storage_transaction_seconds?.[0], "summary");
    assert.ok(open.lilt_stanzas[1] >= 6, "in and out for three kinds");
    // A text/plain scraper: the older format, every family typed.
    const plain = await rawRequest(url, "localhost", { headers: { accept: "text/plain" } });
    const classic = await pythonParse(plain.body, "prometheus");
    assert.deepEqual(classic.lilt_stanzas?.[0], "counter");
    for (const [name, [type]] of Object.entries(classic)) assert.notEqual(type, "unknown", name);
    alice.close();
  } finally {
    await t.stop();
  }
});
