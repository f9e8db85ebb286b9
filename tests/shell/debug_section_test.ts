// The `debug` admin shell section over a real admin socket: `loop` shows a blocked event loop
// (and /metrics reports the same sampler), `handles` counts the connections each listener holds
// and client sessions by transport as real sockets open and close, plus file descriptors;
// `memory` reports the heap; and `lilt shell debug ...` one-shot, as text and --json.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import type { CommandResult } from "../../core/admin_commands.ts";
import { ARCHIVE_FLUSH_DELAY_MS } from "../../core/storage/archive_store.ts";
import { startAdminSocket } from "../../shell/admin_socket.ts";
import { AdminClient, jsonOf } from "../../shell/client.ts";
import { debugCommands } from "../../shell/sections/debug.ts";
import { statsCommands } from "../../shell/sections/stats.ts";
import { rawRequest } from "../helpers/http_request.ts";
import { RawClient, roundTrip } from "../helpers/raw_client.ts";
import { startTestServer, testConfigText, type TestServer } from "../helpers/test_server.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

type Call = (cmd: string, ...args: string[]) => Promise<CommandResult>;

/** Starts a server with the debug section on its admin socket and runs `fn` with a client. */
async function withShell(
  options: Parameters<typeof startTestServer>[0],
  fn: (t: TestServer, call: Call) => Promise<void>,
): Promise<void> {
  const t = await startTestServer(options);
  t.server.commands.add([...debugCommands(), ...statsCommands()]);
  const admin = await startAdminSocket(t.server, `${t.dataDir}/lilt.sock`);
  const client = await AdminClient.connect(`${t.dataDir}/lilt.sock`);
  const call: Call = async (cmd, ...args) => {
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

/** Polls until `check` holds (counts change as the server's event loop handles closes). */
async function eventually(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

interface Handles {
  listeners: { kind: string; host: string; port: number; connections: number | null }[];
  c2s: Record<string, number>;
  s2s: { in: number; out: number };
  components: number;
  file_descriptors: {
    total: number;
    sockets: number;
    files: number;
    pipes: number;
    other: number;
    limit: number | null;
  } | null;
  timers: number;
  note: string;
}

Deno.test("debug loop shows a blocked event loop; /metrics reads the same sampler", async () => {
  await withShell({
    globalToml: 'http_interfaces = ["127.0.0.1:0"]',
    modules: ["http_metrics"],
  }, async (t, call) => {
    const first = jsonOf(await call("debug loop")) as Record<string, number | boolean>;
    assert.equal(first.interval_ms, 500);
    assert.equal(first.window_seconds, 60);
    assert.equal(first.sampling, true);
    // The server runs in this process: busy for 1.2 s, its 500 ms timer fires at least 0.7 s
    // late (it was due at most 0.5 s after the wait began).
    const samples = t.server.loopLag.samples;
    const end = performance.now() + 1200;
    while (performance.now() < end) { /* keep the event loop busy */ }
    await eventually(
      async () => await Promise.resolve(t.server.loopLag.samples > samples),
      "a sample",
    );
    // Stop the sampler so /metrics and the shell read the same last value.
    t.server.loopLag.stop();
    const loop = await call("debug loop");
    const data = jsonOf(loop) as Record<string, number | boolean>;
    assert.ok((data.max_ms_last_minute as number) >= 500, JSON.stringify(data));
    assert.equal(data.sampling, false);
    assert.deepEqual(loop.table!.columns, ["measure", "value", "meaning"]);
    assert.deepEqual(loop.table!.rows.map((row) => row[0]), ["last", "max", "interval", "samples"]);
    assert.equal(loop.table!.rows[1][1], `${data.max_ms_last_minute} ms`);

    const url = `http://127.0.0.1:${t.server.port("http")}/metrics`;
    const text = (await rawRequest(url, "localhost")).body;
    const lag = Number(/^lilt_event_loop_lag_seconds (\S+)$/m.exec(text)![1]);
    assert.equal(Math.round(lag * 1_000_000) / 1000, data.last_ms);
    const shown = jsonOf(await call("stats show", "lilt_event_loop_lag_seconds")) as {
      value: number;
    }[];
    assert.equal(shown[0].value, lag);
  });
});

Deno.test("debug handles counts connections per listener and client sessions by transport", async () => {
  await withShell({
    users: { alice: "pw", bob: "pw" },
    modules: ["roster"],
    globalToml: 'http_interfaces = ["127.0.0.1:0"]\nhttps_interfaces = ["127.0.0.1:0"]',
  }, async (t, call) => {
    const handles = async () => jsonOf(await call("debug handles")) as Handles;
    const listener = (h: Handles, kind: string) => h.listeners.find((l) => l.kind === kind)!;
    const idle = await handles();
    assert.deepEqual(idle.listeners.map((l) => l.kind), [
      "c2s",
      "c2s_direct_tls",
      "http",
      "https",
    ]);
    assert.equal(listener(idle, "c2s").connections, 0);
    assert.equal(listener(idle, "c2s").port, t.port);
    assert.equal(listener(idle, "http").connections, null, "loopback HTTP: Deno.serve directly");
    assert.equal(listener(idle, "https").connections, 0, "HTTPS comes through the front");
    assert.deepEqual(idle.c2s, { tcp: 0, "direct-tls": 0, websocket: 0, bosh: 0, detached: 0 });
    assert.deepEqual(idle.s2s, { in: 0, out: 0 });
    assert.equal(idle.components, 0);
    assert.ok(idle.timers >= 2, "the idle sweep and account maintenance at least");
    assert.match(idle.note, /Deno\.resources\(\) was removed/);

    const { client: alice } = await RawClient.login(t.port, "alice", "pw");
    const bob = await RawClient.connect(t.tlsPort, { tls: true });
    await bob.open("localhost");
    await bob.loginPlain("bob", "pw", "test", "localhost");
    await roundTrip(alice);
    await roundTrip(bob);
    const https = await Deno.connect({ hostname: "127.0.0.1", port: t.server.port("https") });
    await eventually(async () => listener(await handles(), "https").connections === 1, "https");
    const busy = await handles();
    assert.equal(listener(busy, "c2s").connections, 1);
    assert.equal(listener(busy, "c2s_direct_tls").connections, 1);
    assert.equal(busy.c2s.tcp, 1);
    assert.equal(busy.c2s["direct-tls"], 1);
    if (busy.file_descriptors) {
      const fd = busy.file_descriptors;
      // This process is the server: its listeners and the connections both ends of which
      // are here (client and server side) are all sockets.
      assert.ok(fd.sockets >= 4 + 2 * 3, JSON.stringify(fd));
      assert.equal(fd.total, fd.sockets + fd.files + fd.pipes + fd.other);
      assert.ok(fd.limit === null || fd.limit > 0);
    }
    const table = await call("debug handles");
    assert.deepEqual(table.table!.columns, ["kind", "detail", "open"]);
    const row = (kind: string, detail: string) =>
      table.table!.rows.find((r) => r[0] === kind && String(r[1]).startsWith(detail));
    assert.deepEqual(row("listener", "c2s 127.0.0.1:"), [
      "listener",
      `c2s 127.0.0.1:${t.port}`,
      1,
    ]);
    assert.equal(
      row("listener", "http 127.0.0.1:")![2],
      "not counted (served by Deno.serve directly)",
    );
    assert.deepEqual(row("c2s", "tcp"), ["c2s", "tcp", 1]);
    assert.deepEqual(row("timers", ""), ["timers", "set through the server", busy.timers]);

    alice.close();
    bob.close();
    https.close();
    await eventually(async () => {
      const h = await handles();
      return listener(h, "c2s").connections === 0 &&
        listener(h, "c2s_direct_tls").connections === 0 &&
        listener(h, "https").connections === 0 && h.c2s.tcp === 0 && h.c2s["direct-tls"] === 0;
    }, "the connections to close").catch(async (error) => {
      throw new Error(`${error.message}: ${JSON.stringify(await handles())}`);
    });
  });
});

Deno.test("debug timers lists the core's and the modules' timers and the archive queue", async () => {
  await withShell({ users: { alice: "pw" }, modules: ["mam", "ping"] }, async (t, call) => {
    const result = await call("debug timers");
    assert.deepEqual(result.table!.columns, [
      "owner",
      "host",
      "what",
      "every",
      "pending",
      "next due",
    ]);
    const rows = result.table!.rows;
    const row = (what: string) => rows.find((r) => r[2] === what);
    assert.deepEqual(row("event-loop lag sampler"), [
      "core",
      "",
      "event-loop lag sampler",
      "500 ms",
      1,
      "-",
    ]);
    assert.deepEqual(row("archive write-behind (0 items queued)")!.slice(3), [
      "when queued",
      0,
      "-",
    ]);
    assert.deepEqual(
      row("account maintenance (purges accounts past their deletion grace period)")!.slice(0, 5),
      [
        "core",
        "",
        "account maintenance (purges accounts past their deletion grace period)",
        "1d 0h 0m 0s",
        1,
      ],
    );
    assert.equal(row("authentication and idle timeouts")![0], "core");
    assert.deepEqual(row("archive expiry")!.slice(0, 5), [
      "mam",
      "localhost",
      "archive expiry",
      "1d 0h 0m 0s",
      1,
    ]);
    assert.deepEqual(row("archive expiry (after start)")!.slice(0, 5), [
      "mam",
      "localhost",
      "archive expiry (after start)",
      "once",
      1,
    ]);
    assert.match(String(row("archive expiry (after start)")![5]), /^(0m )?[0-9]+s$|^1m 0s$/);
    assert.equal(row("keepalive pings to silent clients")![1], "localhost");
    assert.deepEqual(
      rows.slice(0, 4).map((r) => r[0]),
      ["core", "core", "core", "core"],
      "core first",
    );
    const data = jsonOf(result) as {
      timers: { owner: string; label: string; every_ms: number | null; pending: number }[];
      archive_write_behind: { queued: number; flush_due_in_ms: number | null };
    };
    assert.ok(data.timers.some((g) => g.owner === "mam" && g.every_ms === 86_400_000));
    assert.deepEqual(data.archive_write_behind, { queued: 0, flush_due_in_ms: null });

    // An unloaded module's timers are gone.
    t.server.modules.unload(t.server.hosts.get("localhost")!, "ping");
    const after = await call("debug timers");
    assert.equal(after.table!.rows.some((r) => r[0] === "ping"), false);

    // Archive items waiting to be written, read in the same task as they were queued.
    const archive = t.server.storage.archive("localhost", "archive", {
      writeBehindMs: ARCHIVE_FLUSH_DELAY_MS,
    });
    archive.append("alice", { with: "bob@localhost", type: "chat", payload: "<message/>" });
    archive.append("alice", { with: "bob@localhost", type: "chat", payload: "<message/>" });
    const timers = debugCommands().find((c) => c.name === "timers")!;
    const queued = jsonOf(
      await timers.run(
        { server: t.server, emit: () => {}, signal: new AbortController().signal },
        [],
      ),
    ) as typeof data;
    assert.equal(queued.archive_write_behind.queued, 2);
    assert.ok(queued.archive_write_behind.flush_due_in_ms! <= ARCHIVE_FLUSH_DELAY_MS);
    t.server.database.flush();
    assert.deepEqual((jsonOf(await call("debug timers")) as typeof data).archive_write_behind, {
      queued: 0,
      flush_due_in_ms: null,
    });
    assert.equal(archive.count("alice"), 2);
  });
});

Deno.test("debug memory reports the process's memory with the heap limit", async () => {
  await withShell({ modules: [] }, async (_t, call) => {
    const result = await call("debug memory");
    const data = jsonOf(result) as Record<string, number | null>;
    assert.deepEqual(Object.keys(data), [
      "rss",
      "heap_used",
      "heap_total",
      "heap_limit",
      "external",
      "malloced",
      "array_buffers",
    ]);
    for (const kind of ["rss", "heap_used", "heap_total", "heap_limit", "external"]) {
      assert.ok((data[kind] as number) > 0, kind);
    }
    assert.ok(data.heap_used! <= data.heap_total! && data.heap_total! < data.heap_limit!);
    assert.equal(data.array_buffers, null, "Deno does not report them apart");
    assert.deepEqual(result.table!.rows.at(-1), [
      "array_buffers",
      "not reported apart by Deno 2.9.6 (counted in external)",
      "-",
    ]);
    assert.match(String(result.table!.rows[0][2]), /^\d+\.\d MiB$/);
  });
});

Deno.test("lilt shell debug: one-shot text and --json", async () => {
  await withShell({ users: { alice: "pw" }, modules: [] }, async (t) => {
    const file = `${t.dataDir}/lilt.toml`;
    await Deno.writeTextFile(file, testConfigText(t.dataDir, { modules: [] }));
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
    const [handlesText, handlesJson, loopText, memoryJson, help] = await Promise.all([
      run("debug", "handles"),
      run("debug", "handles", "--json"),
      run("debug", "loop"),
      run("debug", "memory", "--json"),
      run("help", "debug"),
    ]);
    for (const out of [handlesText, handlesJson, loopText, memoryJson, help]) {
      assert.equal(out.code, 0, out.stderr);
    }
    assert.match(
      handlesText.stdout,
      new RegExp(`^listener +c2s 127\\.0\\.0\\.1:${t.port} +1$`, "m"),
    );
    assert.match(handlesText.stdout, /^c2s +tcp +1$/m);
    const handles = JSON.parse(handlesJson.stdout) as Handles;
    assert.equal(handles.c2s.tcp, 1);
    assert.match(loopText.stdout, /^max +[\d.]+ ms +largest lag over the last 60 s$/m);
    assert.ok(JSON.parse(memoryJson.stdout).rss > 0);
    for (const name of ["loop", "handles", "memory", "timers"]) {
      assert.match(help.stdout, new RegExp(`debug ${name}`));
    }
    client.close();
  });
});
