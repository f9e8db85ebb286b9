// The `stats` admin shell section over a real admin socket: `stats show` lists the samples
// /metrics serves, by the same names and labels and with the same values, also when the
// http_metrics module is not loaded; filters by name, labels or glob; `stats counters` keeps the
// internal dotted counters; and `lilt shell stats show` one-shot, as text and --json.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import type { CommandResult } from "../../core/admin_commands.ts";
import { sampleKey } from "../../core/metrics_snapshot.ts";
import { startAdminSocket } from "../../shell/admin_socket.ts";
import { AdminClient, jsonOf } from "../../shell/client.ts";
import { statsCommands } from "../../shell/sections/stats.ts";
import { rawRequest } from "../helpers/http_request.ts";
import { RawClient, roundTrip } from "../helpers/raw_client.ts";
import { startTestServer, testConfigText, type TestServer } from "../helpers/test_server.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** One sample of `stats show --json`. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
  type: string;
  help: string;
}

/** Starts a server with the stats section on its admin socket and runs `fn` with a client. */
async function withShell(
  options: Parameters<typeof startTestServer>[0],
  fn: (t: TestServer, call: (cmd: string, ...args: string[]) => Promise<CommandResult>) => Promise<
    void
  >,
): Promise<void> {
  const t = await startTestServer(options);
  t.server.commands.add(statsCommands());
  const admin = await startAdminSocket(t.server, `${t.dataDir}/lilt.sock`);
  const client = await AdminClient.connect(`${t.dataDir}/lilt.sock`);
  const call = async (cmd: string, ...args: string[]): Promise<CommandResult> => {
    const reply = await client.request(cmd, args);
    if (!reply.ok) throw new Error(reply.error);
    return reply.result;
  };
  try {
    await fn(t, call);
  } finally {
    client.close();
    await admin.close();
    await t.stop();
  }
}

/** The samples of an OpenMetrics text, by `name{labels}` as written. */
function scraped(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    samples.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return samples;
}

/** `stats show`'s samples by `name{labels}`. */
function shown(result: CommandResult): Map<string, number> {
  return new Map(
    (jsonOf(result) as Sample[]).map((s) => [sampleKey(s.name, s.labels), s.value]),
  );
}

Deno.test("stats show lists what /metrics serves, by the same names, labels and values", async () => {
  await withShell({
    globalToml: 'http_interfaces = ["127.0.0.1:0"]',
    users: { alice: "pw", bob: "pw" },
    modules: ["http_metrics", "roster", "presence"],
  }, async (t, call) => {
    const { client: alice } = await RawClient.login(t.port, "alice", "pw");
    const { client: bob } = await RawClient.login(t.port, "bob", "pw");
    alice.send("<message to='bob@localhost/test' type='chat'><body>hi</body></message>");
    await bob.next((el) => el.name === "message");
    await roundTrip(alice);
    await roundTrip(bob);

    const url = `http://127.0.0.1:${t.server.port("http")}/metrics`;
    const metrics = scraped((await rawRequest(url, "localhost")).body);
    const stats = shown(await call("stats show"));
    assert.deepEqual([...stats.keys()], [...metrics.keys()], "the same samples, in order");
    // Values that only stanzas and logins move are equal (none happened between the reads);
    // memory, uptime, lag and transaction time are read at each call.
    const stable = [...stats.keys()].filter((key) =>
      /^lilt_(sessions|s2s_links|stanzas_total|auth_)/.test(key)
    );
    assert.ok(stable.length >= 12, stable.join(" "));
    for (const key of stable) assert.equal(stats.get(key), metrics.get(key), key);
    assert.equal(stats.get('lilt_sessions{kind="c2s"}'), 2);
    assert.ok(stats.get('lilt_stanzas_total{direction="out",kind="message"}')! >= 1);
    assert.ok(stats.get("lilt_process_resident_memory_bytes")! > 0);
    for (const key of ["lilt_event_loop_lag_seconds", "lilt_uptime_seconds"]) {
      assert.ok(stats.has(key), key);
    }
    alice.close();
    bob.close();
  });
});

Deno.test("stats show needs no http_metrics module and filters by name, labels or glob", async () => {
  await withShell({ users: { alice: "pw" }, modules: ["roster"] }, async (t, call) => {
    const before = shown(await call("stats show", "lilt_auth_successes"));
    assert.deepEqual([...before.keys()], ["lilt_auth_successes_total"]);
    const { client } = await RawClient.login(t.port, "alice", "pw");
    await roundTrip(client);

    const sessions = await call("stats show", "lilt_sessions");
    assert.deepEqual(sessions.table!.columns, ["name", "labels", "value", "type"]);
    assert.deepEqual(sessions.table!.rows, [
      ["lilt_sessions", 'kind="c2s"', 1, "gauge"],
      ["lilt_sessions", 'kind="s2sin"', 0, "gauge"],
      ["lilt_sessions", 'kind="s2sout"', 0, "gauge"],
      ["lilt_sessions", 'kind="component"', 0, "gauge"],
    ]);
    assert.deepEqual((jsonOf(sessions) as Sample[])[0], {
      name: "lilt_sessions",
      labels: { kind: "c2s" },
      value: 1,
      type: "gauge",
      help: "Connected sessions by kind",
    });
    assert.equal(
      shown(await call("stats show", "lilt_auth_successes")).get("lilt_auth_successes_total"),
      before.get("lilt_auth_successes_total")! + 1,
    );
    // A label filter, and a glob over name{labels}.
    assert.deepEqual([...shown(await call("stats show", 'kind="c2s"')).keys()], [
      'lilt_sessions{kind="c2s"}',
      'lilt_auth_failures_total{kind="c2s"}',
    ]);
    assert.deepEqual([...shown(await call("stats show", 'lilt_stanzas_total*"out"*')).keys()], [
      'lilt_stanzas_total{direction="out",kind="message"}',
      'lilt_stanzas_total{direction="out",kind="presence"}',
      'lilt_stanzas_total{direction="out",kind="iq"}',
    ]);
    assert.deepEqual(
      [...shown(await call("stats show", "lilt_storage_transaction_seconds")).keys()],
      ["lilt_storage_transaction_seconds_count", "lilt_storage_transaction_seconds_sum"],
    );
    const none = await call("stats show", "nosuch");
    assert.equal(none.message, "No metric matches 'nosuch'");
    assert.deepEqual(jsonOf(none), []);

    // The internal counters stay under `stats counters`, by their dotted names.
    const counters = jsonOf(await call("stats counters", "c2s.")) as Record<string, number>;
    assert.ok(counters["c2s.logins"] >= 1, JSON.stringify(counters));
    assert.ok(Object.keys(counters).every((name) => name.includes("c2s.")));
    client.close();
  });
});

Deno.test("lilt shell stats show: one-shot text and --json", async () => {
  await withShell({ users: { alice: "pw" }, modules: ["roster"] }, async (t) => {
    const file = `${t.dataDir}/lilt.toml`;
    await Deno.writeTextFile(file, testConfigText(t.dataDir, { modules: ["roster"] }));
    const { client } = await RawClient.login(t.port, "alice", "pw");
    await roundTrip(client);
    const run = async (...args: string[]) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", `${ROOT}main.ts`, "shell", "-c", file, ...args],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const decoder = new TextDecoder();
      return {
        code: out.code,
        stdout: decoder.decode(out.stdout),
        stderr: decoder.decode(out.stderr),
      };
    };
    const [text, json, empty] = await Promise.all([
      run("stats", "show", "lilt_sessions"),
      run("stats", "show", "lilt_sessions", "--json"),
      run("stats", "show", "nosuch", "--json"),
    ]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^name +labels +value +type$/m);
    assert.match(text.stdout, /^lilt_sessions +kind="c2s" +1 +gauge$/m);
    assert.match(text.stdout, /^lilt_sessions +kind="component" +0 +gauge$/m);
    assert.equal(json.code, 0, json.stderr);
    const samples = JSON.parse(json.stdout) as Sample[];
    assert.deepEqual(samples.map((s) => [s.labels.kind, s.value]), [
      ["c2s", 1],
      ["s2sin", 0],
      ["s2sout", 0],
      ["component", 0],
    ]);
    assert.equal(empty.code, 0, empty.stderr);
    assert.deepEqual(JSON.parse(empty.stdout), []);
    client.close();
  });
});
