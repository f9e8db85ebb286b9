// Acceptance of the admin shell (issue 4, point 1): a real `lilt start` process driven only
// through `lilt shell SECTION COMMAND ... --json` processes, with real XMPP clients watching;
// and as scripts and cron drive it (issue 10): stdin, background watches, the caller's paths.

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { fileURLToPath } from "node:url";
import type { Element } from "../../core/xml/element.ts";
import { builtinModules } from "../../mod/builtin.ts";
import { NS_STREAM, RawClient, roundTrip } from "../helpers/raw_client.ts";
import { testConfigText, TESTING_ON_POSTGRESQL } from "../helpers/test_server.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const NS_INFO = "http://jabber.org/protocol/disco#info";
const MODULES = Object.keys(builtinModules);

/** Reads a byte stream line by line; a read can time out without losing what comes later. */
class Lines {
  #reader: ReadableStreamDefaultReader<string>;
  #buffer = "";
  #pending: Promise<ReadableStreamReadResult<string>> | undefined;
  /** Everything read so far (for failure messages). */
  text = "";
  done = false;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  }

  /** The next line; throws when none is complete within `timeoutMs` or the stream ended. */
  async next(timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const newline = this.#buffer.indexOf("\n");
      if (newline >= 0) {
        const line = this.#buffer.slice(0, newline);
        this.#buffer = this.#buffer.slice(newline + 1);
        return line;
      }
      if (this.done) throw new Error(`The stream ended; read so far:\n${this.text}`);
      this.#pending ??= this.#reader.read();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), Math.max(0, deadline - Date.now()));
      });
      const result = await Promise.race([this.#pending, timeout]);
      clearTimeout(timer);
      if (result === "timeout") {
        throw new Error(`No complete line within ${timeoutMs} ms; read so far:\n${this.text}`);
      }
      this.#pending = undefined;
      if (result.done) this.done = true;
      else {
        this.#buffer += result.value;
        this.text += result.value;
      }
    }
  }

  /** Reads to the end in the background (a full pipe would block the writer). */
  drain(): Promise<void> {
    return (async () => {
      while (!this.done) {
        const result = await (this.#pending ?? this.#reader.read());
        this.#pending = undefined;
        if (result.done) this.done = true;
        else this.text += result.value;
      }
    })().catch(() => {});
  }

  /** Stops reading. */
  async cancel(): Promise<void> {
    await this.#reader.cancel().catch(() => {});
  }
}

function spawnLilt(
  args: string[],
  stdin: "null" | "piped" = "null",
  cwd = ROOT,
): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}main.ts`, ...args],
    cwd,
    stdin,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** What one `lilt shell` run printed. */
interface ShellRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** A started `lilt start` process and its files. */
interface Lilt {
  dir: string;
  config: string;
  port: number;
  /** `lilt shell ARGS... --json -c CONFIG`, with `input` on stdin when given, run in `cwd`. */
  run(args: string[], input?: string, cwd?: string): Promise<ShellRun>;
  /** Like `run`, but asserts exit 0 and returns the parsed JSON. */
  // deno-lint-ignore no-explicit-any
  json(args: string[], input?: string): Promise<any>;
  /** Starts a streaming `lilt shell` (stdin /dev/null; SIGINT or SIGTERM stops it). */
  stream(args: string[]): Deno.ChildProcess;
}

function shellArgs(config: string, args: string[]): string[] {
  return ["shell", ...args, "--json", "-c", config];
}

async function startLilt(dir: string): Promise<{ lilt: Lilt; process: Deno.ChildProcess }> {
  const config = `${dir}/lilt.toml`;
  await Deno.writeTextFile(config, testConfigText(dir, { modules: MODULES }));
  const process = spawnLilt(["start", "-c", config]);
  const log = new Lines(process.stderr);
  let serving: RegExpExecArray | null = null;
  while (!serving) {
    serving = /serving localhost \(c2s 127\.0\.0\.1:(\d+)/.exec(await log.next(30_000));
  }
  log.drain();
  new Lines(process.stdout).drain();
  const run = async (args: string[], input?: string, cwd?: string): Promise<ShellRun> => {
    const child = spawnLilt(shellArgs(config, args), input === undefined ? "null" : "piped", cwd);
    if (input !== undefined) {
      const writer = child.stdin.getWriter();
      await writer.write(new TextEncoder().encode(input));
      await writer.close();
    }
    const out = await child.output();
    const decoder = new TextDecoder();
    return {
      code: out.code,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr),
    };
  };
  const lilt: Lilt = {
    dir,
    config,
    port: Number(serving[1]),
    run,
    async json(args, input) {
      const result = await run(args, input);
      assert.equal(result.code, 0, `lilt shell ${args.join(" ")}: ${result.stderr}`);
      assert.equal(result.stderr, "", `lilt shell ${args.join(" ")} wrote to stderr`);
      return JSON.parse(result.stdout);
    },
    stream: (args) => spawnLilt(shellArgs(config, args)),
  };
  return { lilt, process };
}

/**
 * Ends a test's `lilt start`: closes the clients it kept, kills the process unless it has
 * already exited (a step may have stopped it), waits for it and removes its directory.
 */
async function stopLilt(
  server: Deno.ChildProcess,
  dir: string,
  clients: RawClient[],
): Promise<void> {
  for (const client of clients) client.close();
  try {
    server.kill("SIGKILL");
  } catch {
    // already exited
  }
  await server.status;
  await Deno.remove(dir, { recursive: true });
}

/** The stream error a client received: its condition and text. */
async function streamError(client: RawClient): Promise<{ condition?: string; text?: string }> {
  const error = await client.next((el) => el.name === "error" && el.ns === NS_STREAM);
  await client.waitClosed();
  return {
    condition: error.elements().find((el) => el.name !== "text")?.name,
    text: error.getChildText("text"),
  };
}

/** Logs in and sends initial presence, so the session is available. */
async function online(port: number, user: string, password: string, resource = "e2e") {
  const { client, jid } = await RawClient.login(port, `${user}`, password, resource);
  client.send("<presence/>");
  await roundTrip(client);
  return { client, jid };
}

/** Asserts that a login with this password is refused; returns the SASL failure condition. */
async function assertLoginRefused(
  port: number,
  user: string,
  password: string,
): Promise<string | undefined> {
  const client = await RawClient.connect(port);
  try {
    await client.open();
    await client.starttls();
    await assert.rejects(client.loginPlain(user, password), /PLAIN login failed/);
    return client.received.findLast((el) => el.name === "failure")?.firstElement()?.name;
  } finally {
    client.close();
  }
}

/** Logs in, then logs out again. */
async function assertLoginWorks(port: number, user: string, password: string): Promise<void> {
  const { client, jid } = await RawClient.login(port, user, password, "check");
  assert.equal(jid, `${user}@localhost/check`);
  client.close();
}

async function serverFeatures(client: RawClient): Promise<string[]> {
  const id = `disco-${crypto.randomUUID()}`;
  client.send(`<iq type='get' id='${id}' to='localhost'><query xmlns='${NS_INFO}'/></iq>`);
  const result = await client.next((el) => el.attrs.id === id);
  assert.equal(result.attrs.type, "result");
  return result.getChild("query", NS_INFO)!.getChildren("feature").map((f) => f.attrs.var!);
}

/** Waits for a streaming shell to exit (its stdout read by `lines`); returns code and stderr. */
async function finish(
  child: Deno.ChildProcess,
  lines: Lines,
): Promise<{ code: number; stderr: string }> {
  const stderr = new Lines(child.stderr);
  await Promise.all([lines.drain(), stderr.drain()]);
  return { code: (await child.status).code, stderr: stderr.text };
}

function isStreamError(el: Element): boolean {
  return el.name === "error" && el.ns === NS_STREAM;
}

Deno.test("every admin shell command works end to end through lilt shell --json", async (t) => {
  assert.ok(MODULES.includes("announce"), "the test server loads the announce module");
  const dir = await Deno.makeTempDir({ prefix: "lilt-shell-e2e-" });
  const { lilt, process: server } = await startLilt(dir);
  const clients: RawClient[] = [];
  const keep = <T extends { client: RawClient }>(session: T): T => {
    clients.push(session.client);
    return session;
  };
  try {
    await t.step("read-only commands and errors", async () => {
      const [
        version,
        uptime,
        memory,
        hosts,
        ports,
        roles,
        admin,
        s2s,
        hostRoles,
        s2sClose,
        encryption,
        modules,
        pingInfo,
        stats,
        unknown,
        badJid,
      ] = await Promise.all([
        lilt.json(["server", "version"]),
        lilt.json(["server", "uptime"]),
        lilt.json(["server", "memory"]),
        lilt.json(["host", "list"]),
        lilt.json(["port", "list"]),
        lilt.json(["role", "list"]),
        lilt.json(["role", "show", "localhost", "admin"]),
        lilt.json(["s2s", "show"]),
        lilt.json(["role", "list", "localhost"]),
        lilt.run(["s2s", "close", "localhost", "example.org"]),
        lilt.json(["config", "get", "c2s_require_encryption"]),
        lilt.json(["module", "list", "localhost"]),
        lilt.json(["module", "info", "ping"]),
        lilt.json(["stats", "counters"]),
        lilt.run(["nosuch", "cmd"]),
        lilt.run(["user", "activity", "a@@b"]),
      ]);
      assert.equal(version.name, "Lilt");
      assert.match(version.version, /^\d+\.\d+/);
      assert.equal(version.deno, Deno.version.deno);
      assert.ok(uptime.seconds >= 0 && !Number.isNaN(Date.parse(uptime.since)));
      for (const kind of ["rss", "heap_total", "heap_used", "external"]) {
        assert.ok(memory[kind] > 0, `memory ${kind}`);
      }
      assert.deepEqual(hosts, [{
        host: "localhost",
        kind: "local",
        modules: MODULES.length,
        sessions: 0,
      }]);
      assert.deepEqual(ports.map((p: { service: string }) => p.service).sort(), [
        "c2s",
        "c2s_direct_tls",
      ]);
      assert.ok(ports.some((p: { port: number }) => p.port === lilt.port));
      assert.deepEqual(
        roles.map((r: { name: string }) => r.name).sort(),
        ["admin", "guest", "member", "operator", "registered"],
      );
      assert.equal(admin.name, "admin");
      assert.deepEqual(admin.inherits.slice(0, 1), ["member"]);
      const actions = admin.permissions.map((p: { action: string }) => p.action);
      assert.ok(actions.includes("lilt:user-create") && actions.includes("lilt:view-public-info"));
      assert.deepEqual(s2s, { links: [], refusals: [] });
      assert.deepEqual(hostRoles, roles);
      assert.equal(
        roles.find((r: { default: boolean }) => r.default).name,
        "registered",
      );
      assert.equal(s2sClose.code, 1);
      assert.match(s2sClose.stderr, /^lilt: No such link from 'localhost' to 'example.org'/);
      assert.deepEqual(encryption, { host: null, option: "c2s_require_encryption", value: true });
      assert.deepEqual(
        modules.map((m: { module: string }) => m.module).sort(),
        [...MODULES].sort(),
      );
      assert.equal(pingInfo.module, "ping");
      assert.deepEqual(pingInfo.loadedOn, ["localhost"]);
      for (const name of ["sessions.c2s", "sessions.authenticated", "storage.latency_ms"]) {
        assert.equal(typeof stats[name], "number", `stats ${name}`);
      }
      assert.equal(unknown.code, 1);
      assert.equal(unknown.stdout, "");
      assert.match(unknown.stderr, /^lilt: Unknown command 'nosuch cmd'/);
      assert.equal(badJid.code, 1);
      assert.equal(badJid.stdout, "");
      assert.match(badJid.stderr, /^lilt: \S/);
    });

    const imported = Array.from({ length: 20 }, (_, i) => `imp${String(i).padStart(2, "0")}`);
    let importedAt = 0;
    await t.step("user create, password, import, list and roles", async () => {
      const file = `${dir}/accounts.txt`;
      await Deno.writeTextFile(
        file,
        "# provisioning\n" +
          imported.map((u, i) => `${u}@localhost pw-${u}${i === 0 ? " admin" : ""}`).join("\n") +
          "\n",
      );
      const [alice, bob, carol, result] = await Promise.all([
        lilt.json(["user", "create", "alice@localhost"], "alice pw\n"),
        lilt.json(["user", "create", "bob@localhost"], "bob-pw\n"),
        lilt.json(["user", "create", "carol@localhost"], "carol-pw\n"),
        lilt.json(["user", "import", file]),
      ]);
      importedAt = Date.now();
      assert.deepEqual(alice, { jid: "alice@localhost", role: null });
      assert.deepEqual(bob, { jid: "bob@localhost", role: null });
      assert.deepEqual(carol, { jid: "carol@localhost", role: null });
      assert.deepEqual(result, { created: 20, failed: [] });

      await assertLoginWorks(lilt.port, "alice", "alice pw");
      await assertLoginWorks(lilt.port, "imp07", "pw-imp07");
      const [changed, duplicate] = await Promise.all([
        lilt.json(["user", "password", "alice@localhost"], "new alice pw\n"),
        lilt.run(["user", "create", "bob@localhost"], "x\n"),
      ]);
      assert.deepEqual(changed, { jid: "alice@localhost" });
      assert.equal(duplicate.code, 1);
      assert.match(duplicate.stderr, /^lilt: .*bob/);
      assert.equal(await assertLoginRefused(lilt.port, "alice", "alice pw"), "not-authorized");
      await assertLoginWorks(lilt.port, "alice", "new alice pw");

      const [all, some, roleBefore, importedRole] = await Promise.all([
        lilt.json(["user", "list", "localhost"]),
        lilt.json(["user", "list", "localhost", "imp1*"]),
        lilt.json(["user", "role", "carol@localhost"]),
        lilt.json(["user", "role", "imp00@localhost"]),
      ]);
      const setRole = await lilt.json(["user", "set_role", "carol@localhost", "admin"]);
      assert.equal(all.length, 23);
      const aliceRow = all.find((r: { jid: string }) => r.jid === "alice@localhost");
      assert.equal(aliceRow.disabled, false);
      assert.equal(aliceRow.deleted, false);
      assert.ok(!Number.isNaN(Date.parse(aliceRow.last_login)));
      assert.deepEqual(
        some.map((r: { jid: string }) => r.jid).sort(),
        imported.slice(10).map((u) => `${u}@localhost`),
      );
      assert.equal(roleBefore.jid, "carol@localhost");
      assert.equal(roleBefore.source, "default");
      assert.deepEqual(setRole, { jid: "carol@localhost", role: "admin", effective: "admin" });
      assert.equal(importedRole.role, "admin");
      const roleAfter = await lilt.json(["user", "role", "carol@localhost"]);
      assert.equal(roleAfter.role, "admin");
      assert.notEqual(roleAfter.source, "default");
    });

    await t.step(
      "watch stanzas sees a client's message within 1 s; watch log streams",
      async () => {
        const alice = keep(await online(lilt.port, "alice", "new alice pw"));
        const bob = keep(await online(lilt.port, "bob", "bob-pw"));
        const stanzas = lilt.stream([
          "watch",
          "stanzas",
          "alice@localhost",
          "--with",
          "bob@localhost",
        ]);
        const logs = lilt.stream(["watch", "log"]);
        const stanzaLines = new Lines(stanzas.stdout);
        const logLines = new Lines(logs.stdout);
        try {
          // The watch is in place once it reports anything: until then, keep sending.
          for (let i = 0;; i++) {
            bob.client.send(
              `<message to='alice@localhost' type='chat'><body>warm-up ${i}</body></message>`,
            );
            try {
              await stanzaLines.next(200);
              break;
            } catch (error) {
              if (i >= 100) throw error;
            }
          }
          const sentAt = Date.now();
          bob.client.send(
            `<message to='alice@localhost' type='chat' id='watched'><body>watch me</body></message>`,
          );
          let event;
          do {
            event = JSON.parse(await stanzaLines.next(Math.max(0, sentAt + 1000 - Date.now())));
          } while (!event.xml.includes("watch me"));
          assert.equal(event.direction, "in");
          assert.equal(event.from, bob.jid);
          assert.equal(event.to, "alice@localhost");
          assert.match(event.xml, /^<message /);
          await alice.client.next((el) => el.getChildText("body") === "watch me");

          // Logins log at info: the log watch streams them (the file level is "warning").
          let record;
          for (let i = 0; record === undefined; i++) {
            await assertLoginWorks(lilt.port, "imp01", "pw-imp01");
            try {
              record = JSON.parse(await logLines.next(500));
            } catch (error) {
              if (i >= 20) throw error;
            }
          }
          assert.ok(typeof record.line === "string" && record.line.length > 0);
          assert.ok(typeof record.level === "string" && typeof record.category === "string");
          assert.ok(!Number.isNaN(Date.parse(record.time)));
          await assertLoginWorks(lilt.port, "imp02", "pw-imp02");
          let line;
          do line = JSON.parse(await logLines.next(5000)); while (
            !/imp02@localhost/.test(line.line)
          );
          assert.match(line.line, /imp02@localhost authenticated/);
        } finally {
          // Their stdin is /dev/null: only a signal stops them, and that is a clean exit.
          stanzas.kill("SIGTERM");
          logs.kill("SIGINT");
          const [stanzaOut, logOut] = await Promise.all([
            finish(stanzas, stanzaLines),
            finish(logs, logLines),
          ]);
          assert.equal(stanzaOut.code, 0, stanzaOut.stderr);
          assert.equal(logOut.code, 0, logOut.stderr);
        }
      },
    );

    await t.step("announce, roster subscribe and c2s commands reach clients", async () => {
      const [alice, bob] = [clients[0], clients[1]];
      const [announced, subscribed] = await Promise.all([
        lilt.json(["announce", "online", "localhost", "Back in 5 minutes"]),
        lilt.json(["roster", "subscribe", "alice@localhost", "bob@localhost"]),
      ]);
      assert.deepEqual(announced, { sent: 2 });
      for (const client of [alice, bob]) {
        const message = await client.next((el) =>
          el.name === "message" && el.attrs.type === "headline"
        );
        assert.equal(message.attrs.from, "localhost");
        assert.equal(message.getChildText("body"), "Back in 5 minutes");
      }
      assert.deepEqual(subscribed, { subscription: "none", ask: "subscribe" });
      const request = await bob.next((el) =>
        el.name === "presence" && el.attrs.type === "subscribe"
      );
      assert.equal(request.attrs.from, "alice@localhost");
      const [roster, count, shown] = await Promise.all([
        lilt.json(["roster", "show", "alice@localhost"]),
        lilt.json(["c2s", "count"]),
        lilt.json(["c2s", "show", "alice@localhost"]),
      ]);
      assert.deepEqual(roster, [{
        contact: "bob@localhost",
        name: "",
        subscription: "none",
        pending: "out",
        groups: "",
      }]);
      assert.deepEqual(count, { total: 2, bound: 2 });
      assert.equal(shown.length, 1);
      assert.equal(shown[0].jid, "alice@localhost/e2e");
      assert.equal(shown[0].ip, "127.0.0.1");
      assert.match(shown[0].secure, /^(yes|TLSv1\.[23])$/);
      assert.ok(shown[0].memory > 0);

      const closed = await lilt.json([
        "c2s",
        "close",
        "alice@localhost",
        "Time",
        "for",
        "a",
        "break",
      ]);
      assert.deepEqual(closed, { closed: 1 });
      assert.deepEqual(await streamError(alice), {
        condition: "policy-violation",
        text: "Time for a break",
      });
      const all = await lilt.json(["c2s", "closeall"]);
      assert.deepEqual(all, { closed: 1 });
      assert.equal((await streamError(bob)).condition, "policy-violation");
      const noMore = await lilt.run(["c2s", "close", "alice@localhost"]);
      assert.equal(noMore.code, 1);
      assert.match(noMore.stderr, /^lilt: No client sessions/);
    });

    await t.step("announce all and role, roster unsubscribe", async () => {
      const alice = keep(await online(lilt.port, "alice", "new alice pw"));
      const bob = keep(await online(lilt.port, "bob", "bob-pw"));
      const carol = keep(await online(lilt.port, "carol", "carol-pw"));
      const [toAdmins, toAll, unsubscribed] = await Promise.all([
        lilt.json(["announce", "role", "localhost", "admin", "Admins", "only"]),
        lilt.json(["announce", "all", "localhost", "Stored for later"]),
        lilt.json(["roster", "unsubscribe", "alice@localhost", "bob@localhost"]),
      ]);
      assert.deepEqual(toAdmins, { sent: 1 });
      const adminsOnly = (el: Element) => el.getChildText("body") === "Admins only";
      await carol.client.next(adminsOnly);
      await roundTrip(alice.client);
      assert.ok(!alice.client.received.some(adminsOnly), "alice is not an admin");
      // 23 accounts: alice, bob, carol and the 20 imported ones.
      assert.deepEqual(toAll, { sent: 3, stored: 20 });
      for (const { client } of [alice, bob, carol]) {
        await client.next((el) => el.getChildText("body") === "Stored for later");
      }
      const later = keep(await online(lilt.port, "imp05", "pw-imp05"));
      const stored = await later.client.next((el) =>
        el.getChildText("body") === "Stored for later"
      );
      assert.equal(stored.attrs.type, "headline");
      assert.ok(stored.getChild("delay", "urn:xmpp:delay"), "delivered with a delay stamp");

      assert.deepEqual(unsubscribed, { subscription: "none", ask: null });
      const cancel = await bob.client.next((el) =>
        el.name === "presence" && el.attrs.type === "unsubscribe"
      );
      assert.equal(cancel.attrs.from, "alice@localhost");
      // RFC 6121 §3.3: the contact stays in the roster, with nothing pending any more.
      assert.deepEqual(await lilt.json(["roster", "show", "alice@localhost"]), [{
        contact: "bob@localhost",
        name: "",
        subscription: "none",
        pending: "",
        groups: "",
      }]);
      for (const { client } of [alice, bob, carol, later]) client.close();
    });

    await t.step(
      "disable, enable, delete and restore act on live sessions and logins",
      async () => {
        const bob = keep(await online(lilt.port, "bob", "bob-pw"));
        const disabled = await lilt.json(["user", "disable", "bob@localhost"]);
        assert.deepEqual(disabled, { jid: "bob@localhost", closed_sessions: 1 });
        assert.deepEqual(await streamError(bob.client), {
          condition: "not-authorized",
          text: "Account disabled",
        });
        assert.equal(await assertLoginRefused(lilt.port, "bob", "bob-pw"), "account-disabled");
        assert.deepEqual(await lilt.json(["user", "enable", "bob@localhost"]), {
          jid: "bob@localhost",
        });
        const again = keep(await online(lilt.port, "bob", "bob-pw"));

        const deleted = await lilt.json(["user", "delete", "bob@localhost"]);
        assert.equal(deleted.jid, "bob@localhost");
        assert.equal(deleted.state, "pending");
        assert.equal(deleted.closed_sessions, 1);
        assert.ok(Date.parse(deleted.purge_at) > Date.now());
        assert.equal((await streamError(again.client)).condition, "not-authorized");
        assert.equal(await assertLoginRefused(lilt.port, "bob", "bob-pw"), "account-disabled");
        const [listed, enable] = await Promise.all([
          lilt.json(["user", "list", "localhost", "bob"]),
          lilt.run(["user", "enable", "bob@localhost"]),
        ]);
        assert.deepEqual(listed.map((r: { deleted: boolean }) => r.deleted), [true]);
        assert.equal(enable.code, 1);
        assert.match(enable.stderr, /pending deletion/);
        assert.deepEqual(await lilt.json(["user", "restore", "bob@localhost"]), {
          jid: "bob@localhost",
        });
        await assertLoginWorks(lilt.port, "bob", "bob-pw");
      },
    );

    await t.step("user activity and list_inactive follow logins and logouts", async () => {
      // The password is prompted (here: stdin) even when a role follows the JID.
      const dave = await lilt.json(["user", "create", "dave@localhost", "member"], "dave-pw\n");
      assert.equal(dave.jid, "dave@localhost");
      const daveRole = await lilt.json(["user", "role", "dave@localhost"]);
      assert.equal(daveRole.role, "member");
      const session = await RawClient.login(lilt.port, "dave", "dave-pw");
      const during = await lilt.json(["user", "activity", "dave@localhost"]);
      assert.equal(during.online_sessions, 1);
      assert.ok(!Number.isNaN(Date.parse(during.last_login)));
      session.client.close();
      let after;
      for (let i = 0; i < 50; i++) {
        after = await lilt.json(["user", "activity", "dave@localhost"]);
        if (after.online_sessions === 0 && after.last_logout !== null) break;
      }
      assert.equal(after.online_sessions, 0);
      const loggedOutAt = Date.parse(after.last_logout);
      assert.ok(loggedOutAt >= Date.parse(during.last_login));

      const recent = await lilt.json(["user", "list_inactive", "localhost", "1h"]);
      assert.deepEqual(recent, []);
      // Wait until the logout and the import are more than a second old.
      const wait = Math.max(loggedOutAt, importedAt) + 1100 - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      const [inactive, badDuration] = await Promise.all([
        lilt.json(["user", "list_inactive", "localhost", "1s"]),
        lilt.run(["user", "list_inactive", "localhost", "soon"]),
      ]);
      const jids = inactive.map((r: { jid: string }) => r.jid);
      assert.ok(jids.includes("dave@localhost"), JSON.stringify(jids));
      assert.ok(jids.includes("imp19@localhost"), "never logged in since the import");
      const row = inactive.find((r: { jid: string }) => r.jid === "dave@localhost");
      assert.equal(Date.parse(row.last_active), loggedOutAt);
      assert.equal(badDuration.code, 1);
      assert.match(badDuration.stderr, /Expected a duration/);
    });

    await t.step("module unload, load and reload change disco#info", async () => {
      const { client } = keep(await online(lilt.port, "carol", "carol-pw"));
      assert.ok((await serverFeatures(client)).includes("urn:xmpp:ping"));
      const unloaded = await lilt.json(["module", "unload", "ping", "localhost"]);
      assert.deepEqual(unloaded, { module: "ping", hosts: ["localhost"] });
      assert.ok(!(await serverFeatures(client)).includes("urn:xmpp:ping"));
      const [info, list] = await Promise.all([
        lilt.json(["module", "info", "ping"]),
        lilt.json(["module", "list"]),
      ]);
      assert.deepEqual(info.loadedOn, []);
      assert.ok(!list.some((m: { module: string }) => m.module === "ping"));
      const loaded = await lilt.json(["module", "load", "ping", "localhost"]);
      assert.deepEqual(loaded, { module: "ping", hosts: ["localhost"] });
      assert.ok((await serverFeatures(client)).includes("urn:xmpp:ping"));
      const reloaded = await lilt.json(["module", "reload", "ping"]);
      assert.deepEqual(reloaded, { module: "ping", hosts: ["localhost"] });
      assert.ok((await serverFeatures(client)).includes("urn:xmpp:ping"));
      const unknown = await lilt.run(["module", "load", "nosuch"]);
      assert.equal(unknown.code, 1);
      assert.match(unknown.stderr, /^lilt: Unknown module 'nosuch'/);
    });

    await t.step("config reload applies the edited file", async () => {
      const text = await Deno.readTextFile(lilt.config);
      await Deno.writeTextFile(
        lilt.config,
        text.replace(
          "auth_failure_delay = 0",
          "auth_failure_delay = 0\nc2s_require_encryption = false",
        ),
      );
      const reloaded = await lilt.json(["config", "reload"]);
      assert.equal(reloaded.ok, true);
      assert.deepEqual(reloaded.problems, []);
      assert.deepEqual(await lilt.json(["config", "get", "c2s_require_encryption"]), {
        host: null,
        option: "c2s_require_encryption",
        value: false,
      });
      assert.equal(
        (await lilt.json(["config", "get", "localhost", "c2s_require_encryption"])).value,
        false,
      );
    });

    await t.step("server backup and stats", async () => {
      const file = `${dir}/backup.sqlite`;
      const [backed, stats] = await Promise.all([
        lilt.run(["server", "backup", file]),
        lilt.json(["stats", "counters", "c2s.*"]),
      ]);
      if (TESTING_ON_POSTGRESQL) {
        // A snapshot file is the embedded store's: PostgreSQL's database is dumped by its tools.
        assert.equal(backed.code, 1);
        assert.match(backed.stderr, /^lilt: server backup works on the embedded store .*pg_dump/);
        await assert.rejects(Deno.stat(file), Deno.errors.NotFound);
      } else {
        assert.equal(backed.code, 0, backed.stderr);
        const backup = JSON.parse(backed.stdout);
        assert.equal(backup.file, file);
        assert.equal(backup.size, (await Deno.stat(file)).size);
        const db = new DatabaseSync(file, { readOnly: true });
        try {
          assert.deepEqual(
            db.prepare("PRAGMA integrity_check").all().map((r) => Object.values(r)[0]),
            ["ok"],
          );
          const users = db.prepare("SELECT user FROM accounts WHERE host = ?").all("localhost")
            .map((r) => r.user);
          assert.ok(users.includes("alice") && users.includes("imp19"));
        } finally {
          db.close();
        }
      }
      assert.ok(stats["c2s.logins"] >= 10, JSON.stringify(stats));
      // A wrong password counts; a disabled account's refusal (account-disabled) does not.
      assert.equal(stats["c2s.auth_failures"], 1, JSON.stringify(stats));
      assert.ok(Object.keys(stats).every((name) => name.startsWith("c2s.")));
    });

    await t.step("server shutdown tells clients why and the process exits 0", async () => {
      const alice = keep(await online(lilt.port, "alice", "new alice pw"));
      const reply = await lilt.json(["server", "shutdown", "maintenance"]);
      assert.deepEqual(reply, { reason: "maintenance" });
      const error = await alice.client.next(isStreamError);
      assert.equal(error.getChild("system-shutdown")?.name, "system-shutdown");
      assert.equal(error.getChildText("text"), "maintenance");
      assert.equal((await server.status).code, 0);
      await assert.rejects(Deno.stat(`${dir}/lilt.sock`), Deno.errors.NotFound);
    });
  } finally {
    await stopLilt(server, dir, clients);
  }
});

/** Runs a /bin/sh command line in ROOT, as a crontab or a script would. */
async function sh(script: string): Promise<ShellRun> {
  const out = await new Deno.Command("sh", { args: ["-c", script], cwd: ROOT, stdin: "null" })
    .output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** Waits until the file's text matches `pattern`; fails after 20 s showing the text. */
async function fileMatches(path: string, pattern: RegExp, timeoutMs = 20_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const text = await Deno.readTextFile(path).catch(() => "");
    if (pattern.test(text)) return text;
    if (Date.now() > deadline) throw new Error(`${path} never matched ${pattern}:\n${text}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

Deno.test("scripts and cron: import from stdin, a background watch, the caller's paths", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "lilt-shell-scripts-" });
  const callerDir = await Deno.makeTempDir({ prefix: "lilt-shell-caller-" });
  const { lilt, process: server } = await startLilt(dir);
  const lilt_ = `"${Deno.execPath()}" run -A "${ROOT}main.ts"`;
  const clients: RawClient[] = [];
  try {
    await t.step("user import - reads the accounts from the shell's standard input", async () => {
      const piped = await sh(
        `printf 'a@localhost pw\\n' | ${lilt_} shell user import - -c "${lilt.config}"`,
      );
      assert.equal(piped.code, 0, piped.stderr);
      assert.equal(piped.stdout, "Created 1 account(s)\n");
      await assertLoginWorks(lilt.port, "a", "pw");

      const lines = Array.from(
        { length: 3000 },
        (_, i) => `bulk${i}@localhost pw-${i}${i === 1000 ? " member" : ""}`,
      );
      const bulk = await lilt.json(["user", "import", "-"], [...lines, "broken", ""].join("\n"));
      assert.equal(bulk.created, 3000);
      assert.deepEqual(bulk.failed.map((f: { line: number }) => f.line), [3001]);
      await assertLoginWorks(lilt.port, "bulk2999", "pw-2999");
      assert.equal((await lilt.json(["user", "role", "bulk1000@localhost"])).role, "member");
    });

    await t.step("a background watch with stdin /dev/null records what comes later", async () => {
      const a = await online(lilt.port, "a", "pw");
      const sender = await online(lilt.port, "bulk0", "pw-0");
      clients.push(a.client, sender.client);
      const record = `${dir}/watch.txt`;
      const job = new Deno.Command("sh", {
        args: [
          "-c",
          `${lilt_} shell watch stanzas a@localhost -c "${lilt.config}" > "${record}" 2>&1 ` +
          `< /dev/null & echo $!; wait $!`,
        ],
        cwd: ROOT,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const jobOut = new Lines(job.stdout);
      const pid = Number(await jobOut.next(10_000));
      jobOut.drain();
      new Lines(job.stderr).drain();
      const say = (body: string) =>
        sender.client.send(`<message to='a@localhost' type='chat'><body>${body}</body></message>`);
      // The watch is in place once it records anything: until then, keep sending.
      for (let i = 0;; i++) {
        say(`warm-up ${i}`);
        try {
          await fileMatches(record, /warm-up/, 250);
          break;
        } catch (error) {
          if (i >= 80) throw error;
        }
      }
      // A second later, standard input long gone, the watch still records.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      say("a second later");
      const text = await fileMatches(record, /a second later/);
      const line = text.split("\n").find((l) => l.includes("a second later"))!;
      assert.match(
        line,
        /^\d{4}-\d\d-\d\dT[\d:.]+Z in {2}bulk0@localhost\/e2e -> a@localhost {2}<message /,
      );
      Deno.kill(pid, "SIGTERM");
      assert.equal((await job.status).code, 0, await Deno.readTextFile(record));
      assert.ok(!(await Deno.readTextFile(record)).includes("lilt:"), "nothing on stderr");
    });

    await t.step("paths are the caller's; a missing directory is an error", async () => {
      // (server backup writes the embedded store's snapshot file; PostgreSQL has none.)
      if (!TESTING_ON_POSTGRESQL) {
        const made = await lilt.run(["server", "backup", "nightly.sqlite"], undefined, callerDir);
        assert.equal(made.code, 0, made.stderr);
        assert.equal(JSON.parse(made.stdout).file, `${callerDir}/nightly.sqlite`);
        assert.ok((await Deno.stat(`${callerDir}/nightly.sqlite`)).size > 0);
        const missing = await lilt.run(["server", "backup", "gone/x.sqlite"], undefined, callerDir);
        assert.equal(missing.code, 1);
        assert.equal(missing.stderr, `lilt: The directory '${callerDir}/gone' does not exist\n`);
        await assert.rejects(Deno.stat(`${callerDir}/gone`), Deno.errors.NotFound);
      }

      await Deno.writeTextFile(`${callerDir}/more.txt`, "fromfile@localhost pw\n");
      const fromFile = await lilt.run(["user", "import", "more.txt"], undefined, callerDir);
      assert.equal(fromFile.code, 0, fromFile.stderr);
      assert.deepEqual(JSON.parse(fromFile.stdout), { created: 1, failed: [] });
    });

    await t.step("a watch ends with status 1 when the server goes away", async () => {
      const watch = lilt.stream(["watch", "log", "info"]);
      const lines = new Lines(watch.stdout);
      // The watch is in place once it reports a login.
      for (let i = 0;; i++) {
        await assertLoginWorks(lilt.port, "a", "pw");
        try {
          await lines.next(500);
          break;
        } catch (error) {
          if (i >= 40) throw error;
        }
      }
      server.kill("SIGTERM");
      assert.equal((await server.status).code, 0);
      const out = await finish(watch, lines);
      assert.equal(out.code, 1);
      assert.equal(out.stderr, "lilt: The server closed the admin connection\n");
    });
  } finally {
    await stopLilt(server, dir, clients);
    await Deno.remove(callerDir, { recursive: true });
  }
});
