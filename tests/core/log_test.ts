// Tests for logging setup: the file sink's lines, per-category levels, watchers that see
// records below the configured level, reconfiguration, reopening after logrotate, and the
// syslog and journald sinks (read from a Unix datagram socket the test listens on).

import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { formatProblem, type LogConfig, parseConfigText } from "../../core/config.ts";
import {
  addLogWatcher,
  configureLogging,
  formatLogRecord,
  getLogger,
  type LogRecord,
  reopenLogFiles,
  resetLogging,
} from "../../core/log.ts";
import { testConfigText } from "../helpers/test_server.ts";
import {
  listenUnixDatagrams,
  parseJournalFields,
  type UnixDatagramListener,
} from "../helpers/unix_datagram_listener.ts";

async function withLogFile(
  config: Partial<LogConfig>,
  body: (read: () => Promise<string[]>, path: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "logs", "lilt.log");
  try {
    await configureLogging({
      level: "info",
      console: false,
      file: path,
      categories: {},
      ...config,
    });
    await body(async () => {
      const text = await Deno.readTextFile(path).catch(() => "");
      return text.split("\n").filter((line) => line !== "");
    }, path);
  } finally {
    await resetLogging();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("the file sink appends one formatted line per record", async () => {
  await withLogFile({}, async (read) => {
    getLogger("c2s").info("Client {ip} connected", { ip: "127.0.0.1" });
    getLogger(["storage", "sqlite"]).error("Disk full");
    const lines = await read();
    assert.equal(lines.length, 2);
    assert.match(
      lines[0],
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO {4}lilt\.c2s: Client 127\.0\.0\.1 connected$/,
    );
    assert.match(lines[1], / ERROR {3}lilt\.storage\.sqlite: Disk full$/);
  });
});

Deno.test("a new log file and the folders made for it are private (0600, 0700)", async () => {
  await withLogFile({}, async (_read, path) => {
    getLogger("c2s").info("Login of alice@localhost from 127.0.0.1");
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
    assert.equal((await Deno.stat(dirname(path))).mode! & 0o777, 0o700);
  });
});

Deno.test("records below the configured level are dropped", async () => {
  await withLogFile({ level: "warning" }, async (read) => {
    const log = getLogger("router");
    log.debug("hidden debug");
    log.info("hidden info");
    log.warn("shown warning");
    const lines = await read();
    assert.equal(lines.length, 1);
    assert.match(lines[0], /WARNING lilt\.router: shown warning$/);
  });
});

Deno.test("category levels apply to a category and its children", async () => {
  await withLogFile(
    { level: "warning", categories: { "lilt.c2s": "debug", storage: "error" } },
    async (read) => {
      getLogger("c2s").debug("c2s debug");
      getLogger("c2s.tls").debug("c2s child debug");
      getLogger("c2s").trace("c2s trace");
      getLogger("router").info("router info");
      getLogger("storage").warn("storage warning");
      getLogger("storage").error("storage error");
      const lines = await read();
      assert.deepEqual(lines.map((line) => line.replace(/^\S+ /, "")), [
        "DEBUG   lilt.c2s: c2s debug",
        "DEBUG   lilt.c2s.tls: c2s child debug",
        "ERROR   lilt.storage: storage error",
      ]);
    },
  );
});

Deno.test("watchers see records below the file's level and can unsubscribe", async () => {
  await withLogFile({ level: "error" }, async (read) => {
    const seen: LogRecord[] = [];
    const stop = addLogWatcher((record) => seen.push(record), "debug");
    getLogger("c2s").debug("for the watcher only");
    getLogger("c2s").trace("below the watcher too");
    getLogger("c2s").error("for both");
    stop();
    getLogger("c2s").debug("after unsubscribing");
    assert.deepEqual(seen.map((r) => [r.level, r.category.join("."), r.message.join("")]), [
      ["debug", "lilt.c2s", "for the watcher only"],
      ["error", "lilt.c2s", "for both"],
    ]);
    const lines = await read();
    assert.equal(lines.length, 1);
    assert.match(lines[0], /lilt\.c2s: for both$/);
  });
});

Deno.test("watchers work before logging is configured", async () => {
  const seen: string[] = [];
  const stop = addLogWatcher((record) => seen.push(record.message.join("")), "info");
  try {
    getLogger("shell").info("hello");
    getLogger("shell").debug("too low");
    assert.deepEqual(seen, ["hello"]);
  } finally {
    stop();
    await resetLogging();
  }
});

Deno.test("a failing watcher does not break logging", async () => {
  await withLogFile({}, async (read) => {
    const stop = addLogWatcher(() => {
      throw new Error("closed");
    });
    getLogger("x").info("still logged");
    stop();
    assert.equal((await read()).length, 1);
  });
});

Deno.test("configuring again switches files and levels", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const first = join(dir, "first.log");
    const second = join(dir, "second.log");
    await configureLogging({ level: "info", console: false, file: first, categories: {} });
    getLogger("a").info("one");
    await configureLogging({ level: "debug", console: false, file: second, categories: {} });
    getLogger("a").debug("two");
    await resetLogging();
    getLogger("a").error("after reset");
    assert.match(await Deno.readTextFile(first), /lilt\.a: one\n$/);
    assert.match(await Deno.readTextFile(second), /lilt\.a: two\n$/);
  } finally {
    await resetLogging();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an existing log file is appended to", async () => {
  await withLogFile({}, async (read, path) => {
    getLogger("a").info("first run");
    await configureLogging({ level: "info", console: false, file: path, categories: {} });
    getLogger("a").info("second run");
    assert.equal((await read()).length, 2);
  });
});

Deno.test("formatted records stay on one line and show errors and objects", () => {
  const record: LogRecord = {
    category: ["lilt", "c2s"],
    level: "warning",
    message: ["Bad input ", "a\nb", " from ", { toString: () => "juliet@example.com" }, ""],
    rawMessage: "Bad input {input} from {jid}",
    timestamp: Date.UTC(2025, 0, 2, 3, 4, 5, 6),
    properties: {},
  };
  assert.equal(
    formatLogRecord(record),
    "2025-01-02T03:04:05.006Z WARNING lilt.c2s: Bad input a\\nb from juliet@example.com\n",
  );
  const error = formatLogRecord({
    ...record,
    level: "error",
    message: ["Failed: ", new TypeError("boom"), " with ", { n: 1 }, ""],
  });
  assert.match(error, /^\S+ ERROR {3}lilt\.c2s: Failed: TypeError: boom with \{ n: 1 \}\n {4}at /);
});

Deno.test("after logrotate moves the file away, reopening starts a new one", async () => {
  await withLogFile({}, async (read, path) => {
    getLogger("a").info("before rotation");
    await Deno.rename(path, `${path}.1`);
    getLogger("a").info("still into the moved file");
    reopenLogFiles();
    getLogger("a").info("after reopening");
    assert.deepEqual((await read()).map((line) => line.replace(/^\S+ /, "")), [
      "INFO    lilt.a: after reopening",
    ]);
    const rotated = await Deno.readTextFile(`${path}.1`);
    assert.match(rotated, /before rotation\n.*still into the moved file\n$/);
  });
});

async function withDatagramSocket(
  body: (listener: UnixDatagramListener, dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "lilt-log-" });
  const listener = await listenUnixDatagrams(join(dir, "log.sock"));
  try {
    await body(listener, dir);
  } finally {
    await resetLogging();
    await listener.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("the journald sink sends PRIORITY, MESSAGE and SYSLOG_IDENTIFIER", async () => {
  await withDatagramSocket(async (journal) => {
    await configureLogging({
      level: "info",
      console: false,
      file: "",
      categories: {},
      journald: true,
      journaldSocket: journal.path,
    });
    getLogger("c2s").debug("below the level");
    getLogger("c2s").info("Client {ip} connected", { ip: "192.0.2.1" });
    getLogger("s2s").warning("Link to {domain} slow", { domain: "example.net" });
    getLogger("storage").error("Write failed: {error}", { error: new Error("disk full") });
    getLogger("main").fatal("Cannot go on");

    const info = parseJournalFields(await journal.next());
    assert.equal(info.get("PRIORITY"), "6");
    assert.equal(info.get("MESSAGE"), "lilt.c2s: Client 192.0.2.1 connected");
    assert.equal(info.get("SYSLOG_IDENTIFIER"), "lilt");
    assert.equal(info.get("SYSLOG_PID"), String(Deno.pid));
    assert.equal(info.get("LILT_CATEGORY"), "lilt.c2s");
    const warning = parseJournalFields(await journal.next());
    assert.equal(warning.get("PRIORITY"), "4");
    assert.equal(warning.get("MESSAGE"), "lilt.s2s: Link to example.net slow");
    // An error's stack spans lines: the field goes in the protocol's length-prefixed form.
    const error = parseJournalFields(await journal.next());
    assert.equal(error.get("PRIORITY"), "3");
    assert.match(error.get("MESSAGE")!, /^lilt\.storage: Write failed: Error: disk full\n {4}at /);
    const fatal = parseJournalFields(await journal.next());
    assert.deepEqual([fatal.get("PRIORITY"), fatal.get("MESSAGE")], [
      "2",
      "lilt.main: Cannot go on",
    ]);
  });
});

Deno.test("the syslog sink sends syslog(3) lines with the facility and severity", async () => {
  await withDatagramSocket(async (syslog) => {
    await configureLogging({
      level: "info",
      console: false,
      file: "",
      categories: { "lilt.c2s": "debug" },
      syslog: true,
      syslogSocket: syslog.path,
    });
    getLogger("c2s").debug("Stanza\nwith a newline");
    const decode = async () => new TextDecoder().decode(await syslog.next());
    // daemon (3) * 8 + debug (7)
    assert.match(
      await decode(),
      new RegExp(
        `^<31>[A-Z][a-z]{2} [ \\d]\\d \\d\\d:\\d\\d:\\d\\d lilt\\[${Deno.pid}\\]: ` +
          "lilt\\.c2s: Stanza\\\\nwith a newline$",
      ),
    );
    await configureLogging({
      level: "info",
      console: false,
      file: "",
      categories: {},
      syslog: true,
      syslogSocket: syslog.path,
      syslogFacility: "local3",
    });
    getLogger("c2s").debug("no longer logged");
    getLogger("s2s").warning("careful");
    // local3 (19) * 8 + warning (4)
    assert.match(await decode(), /^<156>.* lilt\[\d+\]: lilt\.s2s: careful$/);
  });
});

Deno.test("a journald socket that is not there drops records until it appears", async () => {
  await withDatagramSocket(async (_listener, dir) => {
    const path = join(dir, "later.sock");
    await configureLogging({
      level: "info",
      console: false,
      file: join(dir, "lilt.log"),
      categories: {},
      journald: true,
      journaldSocket: path,
    });
    getLogger("a").info("nobody listens");
    const later = await listenUnixDatagrams(path);
    try {
      getLogger("a").info("now somebody does");
      const fields = parseJournalFields(await later.next());
      assert.equal(fields.get("MESSAGE"), "lilt.a: now somebody does");
    } finally {
      await later.close();
    }
    // The other sinks went on all along.
    const lines = await Deno.readTextFile(join(dir, "lilt.log"));
    assert.match(lines, /nobody listens\n.*now somebody does\n$/);
  });
});

Deno.test("under systemd, console lines carry the sd-daemon priority prefix", async () => {
  const logModule = new URL("../../core/log.ts", import.meta.url).href;
  // The child says its standard error is the journal's stream, as systemd would.
  const code = `
    const { dev, ino } = Deno.statSync("/proc/self/fd/2");
    Deno.env.set("JOURNAL_STREAM", dev + ":" + ino);
    const { configureLogging, getLogger } = await import(${JSON.stringify(logModule)});
    await configureLogging({ level: "info", console: true, file: "", categories: {} });
    getLogger("s2s").warning("careful");
    getLogger("c2s").info("hello");
  `;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.equal(
    new TextDecoder().decode(output.stderr),
    "<4>lilt.s2s: careful\n<6>lilt.c2s: hello\n",
  );
  // Without JOURNAL_STREAM, lines keep their time and level.
  const plain = await new Deno.Command(Deno.execPath(), {
    args: ["eval", code.replace(/Deno.env.set[^;]*;/, "")],
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.match(new TextDecoder().decode(plain.stderr), /^\S+Z WARNING lilt\.s2s: careful\n/);
});

Deno.test("bad syslog and journald options are errors at their line", () => {
  const long = "/run/" + "x".repeat(120) + ".sock";
  const { config, problems } = parseConfigText(
    `[log]\nsyslog = "yes"\nsyslog_facility = "mail"\njournald_socket = "${long}"\n` +
      `[[host]]\ndomain = "localhost"\n`,
    "/etc/lilt/lilt.toml",
  );
  assert.equal(config, undefined);
  assert.deepEqual(problems.map(formatProblem), [
    `/etc/lilt/lilt.toml:2: error: option 'log.syslog' must be true or false, found string "yes"`,
    "/etc/lilt/lilt.toml:3: error: option 'log.syslog_facility' must be one of daemon, user, " +
    `local0, local1, local2, local3, local4, local5, local6, local7, found string "mail"`,
    "/etc/lilt/lilt.toml:4: error: option 'log.journald_socket' must be a socket path of at " +
    "most 103 bytes, found 130 bytes",
  ]);
  const good = parseConfigText(
    `[log]\nsyslog = true\njournald = true\njournald_socket = "journal.sock"\n` +
      `[[host]]\ndomain = "localhost"\n`,
    "/etc/lilt/lilt.toml",
  );
  assert.deepEqual(good.problems, []);
  assert.equal(good.config!.log.syslog, true);
  assert.equal(good.config!.log.journaldSocket, "/etc/lilt/journal.sock");
});

/** Waits until `path` holds text matching `pattern` (or the process ends); returns the text. */
async function waitForFile(
  path: string,
  pattern: RegExp,
  process: Deno.ChildProcess,
): Promise<string> {
  let ended = false;
  process.status.then(() => ended = true);
  for (let tries = 0; tries < 400; tries++) {
    const text = await Deno.readTextFile(path).catch(() => "");
    if (pattern.test(text)) return text;
    if (ended) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${path} never matched ${pattern}`);
}

Deno.test("SIGHUP reopens the log file moved by logrotate, even with a broken config", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lilt-log-" });
  const config = join(dir, "lilt.toml");
  const logFile = join(dir, "log", "lilt.log");
  const text = testConfigText(dir).replace(
    'level = "warning"\nconsole = false',
    `level = "info"\nconsole = false\nfile = ${JSON.stringify(logFile)}`,
  );
  await Deno.writeTextFile(config, text);
  const server = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("../../main.ts", import.meta.url).pathname, "start", "-c", config],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    await waitForFile(logFile, /Listening/i, server);
    await Deno.rename(logFile, `${logFile}.1`);
    // What an operator may have half-edited when logrotate's postrotate sends SIGHUP.
    await Deno.writeTextFile(config, text + "\nc2s_interfaces = 5\n");
    server.kill("SIGHUP");
    const reopened = await waitForFile(logFile, /keeping the running configuration/, server);
    assert.match(reopened, /lilt\.toml:\d+: error: option 'c2s_interfaces'/);
    assert.doesNotMatch(await Deno.readTextFile(`${logFile}.1`), /running configuration/);
    server.kill("SIGTERM");
    assert.equal((await server.status).code, 0);
  } finally {
    try {
      server.kill("SIGKILL");
    } catch {
      // already exited
    }
    await server.status;
    await Deno.remove(dir, { recursive: true });
  }
});
