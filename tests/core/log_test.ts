// Tests for logging setup: the file sink's lines, per-category levels, watchers that see
// records below the configured level, and reconfiguration.

import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import type { LogConfig } from "../../core/config.ts";
import {
  addLogWatcher,
  configureLogging,
  formatLogRecord,
  getLogger,
  type LogRecord,
  resetLogging,
} from "../../core/log.ts";

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
