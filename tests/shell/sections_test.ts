// The built-in admin shell sections run against a real server with real clients: every
// command's run() is called as the admin socket would, and effects are checked on the wire.

import assert from "node:assert/strict";
import type { CommandContext, CommandResult, CommandSpec } from "../../core/admin_commands.ts";
import { getLogger } from "../../core/log.ts";
import type { Server } from "../../core/server.ts";
import type { Element } from "../../core/xml/element.ts";
import { c2sCommands } from "../../shell/sections/c2s.ts";
import { configCommands } from "../../shell/sections/config.ts";
import { hostCommands } from "../../shell/sections/host.ts";
import { moduleCommands } from "../../shell/sections/module.ts";
import { portCommands } from "../../shell/sections/port.ts";
import { rosterCommands } from "../../shell/sections/roster.ts";
import { s2sCommands } from "../../shell/sections/s2s.ts";
import { serverCommands, setShutdownHandler } from "../../shell/sections/server.ts";
import { statsCommands } from "../../shell/sections/stats.ts";
import { watchCommands } from "../../shell/sections/watch.ts";
import { NS_STREAM, RawClient, roundTrip } from "../helpers/raw_client.ts";
import { startTestServer, testConfigText, type TestServer } from "../helpers/test_server.ts";

const ALL: CommandSpec[] = [
  ...serverCommands(),
  ...configCommands(),
  ...moduleCommands(),
  ...hostCommands(),
  ...portCommands(),
  ...c2sCommands(),
  ...s2sCommands(),
  ...rosterCommands(),
  ...watchCommands(),
  ...statsCommands(),
];
const MODULES = ["disco", "ping", "roster", "presence"];
const USERS = { alice: "pw", bob: "pw" };
const NS_INFO = "http://jabber.org/protocol/disco#info";

function spec(section: string, name: string): CommandSpec {
  const found = ALL.find((c) => c.section === section && c.name === name);
  if (!found) throw new Error(`No command ${section} ${name}`);
  return found;
}

function context(server: Server, events: unknown[] = [], signal = new AbortController().signal) {
  const ctx: CommandContext = { server, emit: (e) => events.push(e), signal };
  return ctx;
}

/** Runs a one-shot command the way the admin socket does. */
async function run(t: TestServer, command: string, ...args: string[]): Promise<CommandResult> {
  const [section, name] = command.split(" ");
  return await spec(section, name).run(context(t.server), args);
}

/** Starts a streaming command; `stop()` cancels it and waits for it to finish. */
function stream(t: TestServer, command: string, ...args: string[]) {
  const [section, name] = command.split(" ");
  const events: unknown[] = [];
  const controller = new AbortController();
  const done =
    (async () =>
      await spec(section, name).run(context(t.server, events, controller.signal), args))();
  return {
    events,
    async stop() {
      controller.abort();
      await done;
    },
  };
}

/** Polls until `check` is true (events arrive from the server's own event loop turns). */
async function eventually(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function streamError(client: RawClient): Promise<Element> {
  return client.next((el) => el.name === "error" && el.ns === NS_STREAM);
}

async function features(client: RawClient): Promise<string[]> {
  const id = `info-${crypto.randomUUID()}`;
  client.send(`<iq type='get' id='${id}' to='localhost'><query xmlns='${NS_INFO}'/></iq>`);
  const result = await client.next((el) => el.attrs.id === id);
  return result.getChild("query")!.getChildren("feature").map((f) => f.attrs.var);
}

async function withServer(fn: (t: TestServer) => Promise<void>): Promise<void> {
  const t = await startTestServer({ users: USERS, modules: MODULES });
  try {
    await fn(t);
  } finally {
    await t.stop();
  }
}

Deno.test("c2s show lists a connected client and c2s close closes it with the reason", () =>
  withServer(async (t) => {
    const { client, jid } = await RawClient.login(t.port, "alice", "pw", "phone");
    const count = await run(t, "c2s count");
    assert.deepEqual(count.data, { total: 1, bound: 1 });
    const shown = await run(t, "c2s show", "alice@localhost");
    assert.deepEqual(shown.table!.columns, [
      "jid",
      "ip",
      "transport",
      "secure",
      "sm",
      "csi",
      "idle",
      "memory",
    ]);
    assert.equal(shown.table!.rows.length, 1);
    const [row] = shown.table!.rows;
    assert.equal(row[0], jid);
    assert.equal(row[1], "127.0.0.1");
    assert.equal(row[2], "tcp");
    assert.match(String(row[3]), /^TLSv1\.[23]$/);
    assert.deepEqual(row.slice(4, 6), ["-", "-"]);
    assert.equal(typeof row[6], "number");
    assert.ok((row[7] as number) > 25 * 1024);
    assert.equal((await run(t, "c2s show", "bob@localhost")).table!.rows.length, 0);

    const closed = await run(t, "c2s close", "alice@localhost", "Maintenance", "window");
    assert.equal(closed.message, "Closed 1 session(s)");
    const error = await streamError(client);
    assert.ok(error.getChild("policy-violation"));
    assert.equal(error.getChildText("text"), "Maintenance window");
    await client.waitClosed();
    await assert.rejects(run(t, "c2s close", "bob@localhost"), /No client sessions/);
    client.close();
  }));

Deno.test("c2s closeall closes every client session", () =>
  withServer(async (t) => {
    const { client: a } = await RawClient.login(t.port, "alice", "pw");
    const { client: b } = await RawClient.login(t.port, "bob", "pw");
    assert.equal((await run(t, "c2s closeall")).message, "Closed 2 session(s)");
    for (const c of [a, b]) {
      assert.equal(
        (await streamError(c)).getChildText("text"),
        "Closed by the server administrator",
      );
      c.close();
    }
  }));

Deno.test("watch stanzas sees a message a client sends, with its direction", () =>
  withServer(async (t) => {
    const { client: alice } = await RawClient.login(t.port, "alice", "pw", "a");
    const { client: bob } = await RawClient.login(t.port, "bob", "pw", "b");
    bob.send("<presence/>");
    const watch = stream(t, "watch stanzas", "bob@localhost", "--with", "alice@localhost");
    const other = stream(t, "watch stanzas", "localhost", "--with=carol@localhost");
    alice.send("<message to='bob@localhost' type='chat' id='m1'><body>hi</body></message>");
    await bob.next((el) => el.name === "message");
    bob.send("<message to='alice@localhost/a' type='chat' id='m2'><body>yo</body></message>");
    await alice.next((el) => el.name === "message");
    await eventually(() => watch.events.length >= 2, "two watched stanzas");
    await watch.stop();
    await other.stop();
    const events = watch.events as Record<string, string>[];
    assert.deepEqual(events.map((e) => [e.direction, e.from, e.to]), [
      ["in", "alice@localhost/a", "bob@localhost"],
      ["out", "bob@localhost/b", "alice@localhost/a"],
    ]);
    assert.match(events[0].xml, /^<message [^>]*id='m1'.*<body>hi<\/body><\/message>$/);
    assert.deepEqual(other.events, []);
    alice.close();
    bob.close();
  }));

Deno.test("watch log streams records at the level asked, filtered by category", () =>
  withServer(async (t) => {
    const watch = stream(t, "watch log", "info", "shelltest");
    getLogger("shelltest").debug("Too quiet to see");
    getLogger("other").warn("Another category");
    getLogger(["shelltest", "sub"]).info("Hello {who}", { who: "operator" });
    await eventually(() => watch.events.length >= 1, "a log event");
    await watch.stop();
    getLogger("shelltest").info("After the end");
    const events = watch.events as Record<string, string>[];
    assert.equal(events.length, 1);
    assert.equal(events[0].level, "info");
    assert.equal(events[0].category, "lilt.shelltest.sub");
    assert.match(events[0].line, /INFO +lilt\.shelltest\.sub: Hello operator$/);
    await assert.rejects(run(t, "watch log", "loud"), /Unknown log level 'loud'/);
  }));

Deno.test("module unload and load change the features disco advertises", () =>
  withServer(async (t) => {
    const { client } = await RawClient.login(t.port, "alice", "pw");
    assert.ok((await features(client)).includes("urn:xmpp:ping"));
    const listed = await run(t, "module list", "localhost");
    assert.deepEqual(listed.table!.rows.map((r) => r[1]), MODULES);

    assert.equal((await run(t, "module unload", "ping")).message, "localhost: unloaded");
    assert.ok(!(await features(client)).includes("urn:xmpp:ping"));
    const info = await run(t, "module info", "ping");
    assert.deepEqual((info.data as { loadedOn: string[] }).loadedOn, []);

    assert.equal((await run(t, "module load", "ping", "localhost")).message, "localhost: loaded");
    assert.ok((await features(client)).includes("urn:xmpp:ping"));
    assert.equal((await run(t, "module reload", "ping")).message, "localhost: reloaded");
    assert.ok((await features(client)).includes("urn:xmpp:ping"));

    await assert.rejects(run(t, "module load", "ping", "localhost"), /already loaded/);
    await assert.rejects(run(t, "module load", "nosuch"), /Unknown module 'nosuch'/);
    await assert.rejects(run(t, "module list", "nowhere"), /No host 'nowhere'/);
    client.close();
  }));

Deno.test("config get returns global and host options; config reload applies the file", () =>
  withServer(async (t) => {
    assert.equal((await run(t, "config get", "scram_iterations")).message, "4096");
    const host = await run(t, "config get", "localhost", "modules");
    assert.deepEqual((host.data as { value: unknown }).value, MODULES);
    await assert.rejects(run(t, "config get", "no_such_option"), /is not set/);
    await assert.rejects(run(t, "config get", "elsewhere", "modules"), /No host 'elsewhere'/);

    // The test server's configuration was never written: write it without ping, then reload.
    await Deno.writeTextFile(
      t.config.file,
      testConfigText(t.dataDir, { modules: MODULES.filter((m) => m !== "ping") }),
    );
    const reloaded = await run(t, "config reload");
    assert.equal(
      reloaded.message,
      `Reloaded ${t.config.file}\nApplied: modules on localhost (${t.config.file}:2)`,
    );
    assert.ok(!t.server.modules.isLoaded("localhost", "ping"));

    await Deno.writeTextFile(t.config.file, "modules = 3\n");
    await assert.rejects(run(t, "config reload"), /keeping the running configuration/);
    assert.ok(t.server.modules.isLoaded("localhost", "roster"));
  }));

Deno.test("config reload names what needs a restart and keeps its running value", () =>
  withServer(async (t) => {
    const before = t.server.port("c2s");
    const text = testConfigText(t.dataDir, { modules: MODULES })
      .replace('c2s_interfaces = ["127.0.0.1:0"]', 'c2s_interfaces = ["127.0.0.1:0", "[::1]:0"]')
      .replace("auth_failure_delay = 0", "auth_failure_delay = 0\noffline_max_messages = 7");
    await Deno.writeTextFile(t.config.file, text);
    const reloaded = await run(t, "config reload");
    const file = t.config.file;
    assert.equal(
      reloaded.message,
      [
        `Reloaded ${file}`,
        `Applied: offline_max_messages on localhost (${file}:7)`,
        "Not applied, restart the server for these (the running values stay): " +
        `c2s_interfaces (${file}:3)`,
      ].join("\n"),
    );
    const data = reloaded.data as { needRestart: string[]; applied: string[] };
    assert.deepEqual(data.needRestart, [`c2s_interfaces (${file}:3)`]);
    // What `config get` shows is what the server uses: the listeners did not change.
    assert.deepEqual((await run(t, "config get", "c2s_interfaces")).data, {
      host: null,
      option: "c2s_interfaces",
      value: ["127.0.0.1:0"],
    });
    assert.equal(t.server.port("c2s"), before);
    assert.equal((await run(t, "config get", "localhost", "offline_max_messages")).message, "7");
  }));

Deno.test("port list shows the bound ports; host list the hosts", () =>
  withServer(async (t) => {
    const ports = await run(t, "port list");
    assert.deepEqual(ports.table!.rows, [
      ["c2s", "127.0.0.1", t.port],
      ["c2s_direct_tls", "127.0.0.1", t.tlsPort],
    ]);
    const hosts = await run(t, "host list");
    assert.deepEqual(hosts.table!.rows, [["localhost", "local", MODULES.length, 0]]);
  }));

Deno.test("stats counters has stanza counters that increase and storage latency", () =>
  withServer(async (t) => {
    const stats = async (pattern?: string) =>
      (await run(t, "stats counters", ...(pattern ? [pattern] : []))).data as Record<
        string,
        number
      >;
    const { client } = await RawClient.login(t.port, "alice", "pw");
    const before = (await stats("stanzas."))["stanzas.message"] ?? 0;
    client.send("<message to='bob@localhost' type='chat'><body>1</body></message>");
    client.send("<message to='bob@localhost' type='chat'><body>2</body></message>");
    await roundTrip(client);
    assert.equal((await stats("stanzas."))["stanzas.message"], before + 2);
    const all = await stats();
    assert.equal(all["sessions.c2s"], 1);
    assert.equal(typeof all["storage.latency_ms"], "number");
    assert.deepEqual(Object.keys(await stats("sessions.*d")), ["sessions.authenticated"]);
    client.close();
  }));

Deno.test("roster subscribe acts as the user's presence subscription; roster show lists it", () =>
  withServer(async (t) => {
    const { client: bob } = await RawClient.login(t.port, "bob", "pw");
    bob.send("<presence/>");
    await bob.next((el) => el.name === "presence");
    const result = await run(t, "roster subscribe", "alice@localhost", "bob@localhost");
    assert.equal(
      result.message,
      "Sent subscribe from alice@localhost to bob@localhost; now none (pending out)",
    );
    const request = await bob.next((el) => el.name === "presence" && el.attrs.type === "subscribe");
    assert.equal(request.attrs.from, "alice@localhost");
    const shown = await run(t, "roster show", "alice@localhost");
    assert.deepEqual(shown.table!.rows, [["bob@localhost", "", "none", "out", ""]]);
    assert.deepEqual((await run(t, "roster show", "bob@localhost")).table!.rows, [
      ["alice@localhost", "", "-", "in", ""],
    ]);

    bob.send("<presence to='alice@localhost' type='subscribed'/>");
    await roundTrip(bob);
    assert.equal((await run(t, "roster show", "alice@localhost")).table!.rows[0][2], "to");
    await run(t, "roster unsubscribe", "alice@localhost", "bob@localhost");
    await bob.next((el) => el.name === "presence" && el.attrs.type === "unsubscribe");
    assert.equal((await run(t, "roster show", "alice@localhost")).table!.rows[0][2], "none");
    await assert.rejects(run(t, "roster show", "nobody@localhost"), /No account/);
    bob.close();
  }));

Deno.test("c2s throttle lists failed-login counts and c2s unthrottle forgets them", () =>
  withServer(async (t) => {
    assert.equal((await run(t, "c2s throttle")).message, "No failed logins counted");
    const c = await RawClient.connect(t.port);
    await c.open();
    await c.starttls();
    const NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl";
    c.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${btoa("\0alice\0nope")}</auth>`);
    assert.ok((await c.next((el) => el.name === "failure")).getChild("not-authorized"));
    const listed = await run(t, "c2s throttle");
    assert.deepEqual(listed.table!.columns, [
      "scope",
      "key",
      "failures",
      "running",
      "wait",
      "last failure",
    ]);
    assert.deepEqual(
      listed.table!.rows.map((r) => [r[0], r[1], r[2], r[3], r[4]]).sort(),
      [
        ["account", "alice@localhost", 1, 0, "-"],
        ["address+account", "127.0.0.1 alice@localhost", 1, 0, "-"],
        ["address", "127.0.0.1", 1, 0, "-"],
      ],
    );
    assert.equal(
      (await run(t, "c2s unthrottle", "alice@localhost")).message,
      "Forgot 2 failed-login count(s) of 'alice@localhost'",
    );
    assert.equal(
      (await run(t, "c2s unthrottle", "127.0.0.1")).message,
      "Forgot 1 failed-login count(s) of '127.0.0.1'",
    );
    assert.equal((await run(t, "c2s throttle")).message, "No failed logins counted");
    await assert.rejects(run(t, "c2s unthrottle", "alice@localhost/phone"), /bare JID/);
    c.close();
  }));

Deno.test("s2s show is empty and s2s close finds no link while federation is off", () =>
  withServer(async (t) => {
    assert.deepEqual((await run(t, "s2s show")).table!.rows, []);
    await assert.rejects(run(t, "s2s close", "localhost", "example.org"), /No such link/);
  }));

Deno.test("server version, uptime and memory answer; shutdown replies then broadcasts the reason", async () => {
  const t = await startTestServer({ users: USERS, modules: MODULES });
  const previous = setShutdownHandler((server, reason) => server.shutdown(reason));
  try {
    assert.match((await run(t, "server version")).message!, /^Lilt \d+\.\d+\.\d+ \(deno /);
    assert.match((await run(t, "server uptime")).message!, /^Up \d+s \(since /);
    assert.deepEqual(
      (await run(t, "server memory")).table!.rows.map((r) => r[0]),
      ["rss", "heap_total", "heap_used", "external"],
    );
    const { client } = await RawClient.login(t.port, "alice", "pw");
    const reply = await run(t, "server shutdown", "Upgrading", "to", "0.2");
    assert.equal(reply.message, "Shutting down: Upgrading to 0.2");
    const error = await streamError(client);
    assert.ok(error.getChild("system-shutdown"));
    assert.equal(error.getChildText("text"), "Upgrading to 0.2");
    await client.waitClosed();
    client.close();
  } finally {
    setShutdownHandler(previous);
    await t.stop();
  }
});
