// Logging for the whole server on top of LogTape: loggers under the "lilt" category, a console
// sink, optional file, syslog and journald sinks, per-category levels, and watchers for the
// admin shell.

import {
  compareLogLevel,
  configureSync,
  getLogger as getLogTapeLogger,
  type Logger,
  type LoggerConfig,
  type LogLevel,
  type LogRecord,
  resetSync,
  type Sink,
} from "@logtape/logtape";
import { dirname } from "node:path";
import type { LogConfig } from "./config.ts";
import { UnixDatagramSender } from "./unix_datagram.ts";

export type { Logger, LogRecord };

/** The root category of every logger the server creates. */
const ROOT = "lilt";
const LEVELS: readonly LogLevel[] = ["trace", "debug", "info", "warning", "error", "fatal"];

/**
 * A logger under the "lilt" category: `getLogger("c2s")` and `getLogger("lilt.c2s")` both log
 * as `lilt.c2s`.
 *
 * @example
 * ```ts
 * const log = getLogger("c2s");
 * log.info("Client {ip} connected", { ip: "127.0.0.1" });
 * ```
 */
export function getLogger(category: string | string[]): Logger {
  return getLogTapeLogger(categoryPath(category));
}

interface Watcher {
  fn: (record: LogRecord) => void;
  level: LogLevel;
}

let current: LogConfig | undefined;
const watchers = new Set<Watcher>();

/**
 * Logging for a command that works on the store while no server runs (`lilt user`, `lilt
 * storage migrate`): the configured levels, but no output anywhere, so the command's own
 * messages are all the operator sees and the server's log files are left alone.
 */
export function configureSilentLogging(config: LogConfig): Promise<void> {
  return configureLogging({ ...config, console: false, file: "", syslog: false, journald: false });
}

/**
 * Sets up logging from the [log] configuration: console (stderr), optional file (appended),
 * syslog and journald, per-category levels. Call it again to apply a new configuration (on
 * reload). A syslog or journald socket that cannot be used is reported on stderr; the other
 * sinks keep working.
 */
export function configureLogging(config: LogConfig): Promise<void> {
  current = config;
  apply();
  return Promise.resolve();
}

/**
 * Calls `fn` with every record at `level` or above (default "debug"), whatever the console and
 * file levels are. Returns a function that removes the watcher.
 */
export function addLogWatcher(fn: (record: LogRecord) => void, level = "debug"): () => void {
  const watcher: Watcher = { fn, level: toLevel(level) };
  watchers.add(watcher);
  apply();
  return () => {
    if (watchers.delete(watcher)) apply();
  };
}

/**
 * Opens the log file again (after logrotate moved it away) and the syslog and journald sockets,
 * with the configuration in force. SIGHUP does this even when the new configuration file has
 * errors and is not applied.
 */
export function reopenLogFiles(): void {
  if (current) apply();
}

/** Removes all logging configuration and watchers and closes the log file. */
export function resetLogging(): Promise<void> {
  current = undefined;
  watchers.clear();
  resetSync();
  return Promise.resolve();
}

/** Formats a record as the one-line text written to the console and the file. */
export function formatLogRecord(record: LogRecord): string {
  const time = new Date(record.timestamp).toISOString();
  const level = record.level.toUpperCase().padEnd(7);
  return `${time} ${level} ${recordText(record)}\n`;
}

/** "category: message" on one line, then an error's stack lines (error and fatal only). */
function recordText(record: LogRecord): string {
  let message = "";
  let stack = "";
  for (let i = 0; i < record.message.length; i++) {
    const part = record.message[i];
    if (i % 2 === 0) {
      message += part as string;
      continue;
    }
    message += renderValue(part);
    if (part instanceof Error && part.stack && compareLogLevel(record.level, "error") >= 0) {
      stack += "\n" + part.stack.split("\n").slice(1).map((l) => `    ${l.trim()}`).join("\n");
    }
  }
  return `${record.category.join(".")}: ${escapeControls(message)}${stack}`;
}

function apply(): void {
  if (!current && watchers.size === 0) {
    resetSync();
    return;
  }
  const config: LogConfig = current ??
    { level: "fatal", console: false, file: "", categories: {} };
  const levels = new CategoryLevels(config);
  const sinks: Record<string, Sink> = {};
  if (config.console) {
    sinks.console = filtered(levels, stderrIsJournal() ? journalStderrSink : consoleSink);
  }
  if (config.file) sinks.file = filtered(levels, fileSink(config.file));
  if (config.syslog) {
    const path = config.syslogSocket || defaultSyslogSocket();
    const facility = SYSLOG_FACILITIES[config.syslogFacility ?? "daemon"] ?? 3;
    const sink = datagramSink("syslog", path, (record) => syslogDatagram(record, facility));
    if (sink) sinks.syslog = filtered(levels, sink);
  }
  if (config.journald) {
    const path = config.journaldSocket || JOURNALD_SOCKET;
    const sink = datagramSink("journald", path, journalDatagram);
    if (sink) sinks.journald = filtered(levels, sink);
  }
  const outputs = Object.keys(sinks);
  if (watchers.size > 0) sinks.watchers = watcherSink;
  const all = Object.keys(sinks);

  // LogTape drops records below a logger's lowestLevel before building them, so each logger
  // gets the lowest level anyone (a sink or a watcher) wants; sinks then filter exactly.
  const watcherLevel = lowest([...watchers].map((w) => w.level));
  const loggers: LoggerConfig<string, string>[] = [
    { category: ["logtape", "meta"], sinks: outputs, lowestLevel: "warning" },
    { category: [ROOT], sinks: all, lowestLevel: lowest([levels.root, watcherLevel]) },
  ];
  for (const [path, level] of levels.entries()) {
    if (path.length === 1) continue; // the root is configured above
    loggers.push({
      category: path,
      sinks: all,
      // "override": a child logger must not depend on its parent's lowestLevel.
      parentSinks: "override",
      lowestLevel: lowest([level, watcherLevel]),
    });
  }
  configureSync({ reset: true, sinks, loggers });
}

/** Resolves the configured level of a category by its longest configured prefix. */
class CategoryLevels {
  readonly root: LogLevel;
  #byPath = new Map<string, { path: string[]; level: LogLevel }>();
  #cache = new Map<string, LogLevel>();

  constructor(config: LogConfig) {
    this.root = toLevel(config.level);
    for (const [name, level] of Object.entries(config.categories)) {
      const path = categoryPath(name);
      this.#byPath.set(path.join("."), { path, level: toLevel(level) });
    }
    const rootOverride = this.#byPath.get(ROOT);
    if (rootOverride) this.root = rootOverride.level;
  }

  entries(): [string[], LogLevel][] {
    return [...this.#byPath.values()].map(({ path, level }) => [path, level]);
  }

  levelOf(category: readonly string[]): LogLevel {
    const key = category.join(".");
    const cached = this.#cache.get(key);
    if (cached) return cached;
    let level = this.root;
    for (let n = category.length; n > 0; n--) {
      const found = this.#byPath.get(category.slice(0, n).join("."));
      if (found) {
        level = found.level;
        break;
      }
    }
    this.#cache.set(key, level);
    return level;
  }
}

function filtered(levels: CategoryLevels, sink: Sink): Sink {
  const wrapped: Sink = (record) => {
    if (compareLogLevel(record.level, levels.levelOf(record.category)) >= 0) sink(record);
  };
  if (Symbol.dispose in sink) {
    Object.assign(wrapped, { [Symbol.dispose]: (sink as Sink & Disposable)[Symbol.dispose] });
  }
  return wrapped;
}

const encoder = new TextEncoder();

function consoleSink(record: LogRecord): void {
  Deno.stderr.writeSync(encoder.encode(formatLogRecord(record)));
}

/** syslog(3) severities of LogTape's levels (LOG_CRIT ... LOG_DEBUG). */
const SEVERITY: Record<LogLevel, number> = {
  fatal: 2,
  error: 3,
  warning: 4,
  info: 6,
  debug: 7,
  trace: 7,
};

/** The facilities `[log] syslog_facility` accepts, with their syslog(3) codes. */
export const SYSLOG_FACILITIES: Readonly<Record<string, number>> = {
  user: 1,
  daemon: 3,
  local0: 16,
  local1: 17,
  local2: 18,
  local3: 19,
  local4: 20,
  local5: 21,
  local6: 22,
  local7: 23,
};

/** Where systemd-journald reads its native protocol. */
const JOURNALD_SOCKET = "/run/systemd/journal/socket";

/** The local syslog socket: FreeBSD's syslogd listens on /var/run/log, Linux's on /dev/log. */
function defaultSyslogSocket(): string {
  return Deno.build.os === "freebsd" ? "/var/run/log" : "/dev/log";
}

/**
 * True when standard error is a stream to journald (systemd sets JOURNAL_STREAM to its
 * device:inode): console lines then carry sd-daemon `<N>` priority prefixes instead of a time,
 * which the journal adds itself.
 */
function stderrIsJournal(): boolean {
  try {
    const stream = Deno.env.get("JOURNAL_STREAM");
    if (!stream || Deno.build.os !== "linux") return false;
    const { dev, ino } = Deno.statSync("/proc/self/fd/2");
    return stream === `${dev}:${ino}`;
  } catch {
    return false;
  }
}

function journalStderrSink(record: LogRecord): void {
  const prefix = `<${SEVERITY[record.level]}>`;
  const text = recordText(record).split("\n").map((line) => prefix + line).join("\n");
  Deno.stderr.writeSync(encoder.encode(text + "\n"));
}

/** Largest datagram sent to syslog: FreeBSD's net.local.dgram.maxdgram is 2048 by default. */
const SYSLOG_MAX_BYTES = Deno.build.os === "freebsd" ? 2048 : 8192;
/** Largest MESSAGE sent to journald (bigger ones would need a memfd, see systemd.journal-fields). */
const JOURNAL_MAX_MESSAGE_BYTES = 48 * 1024;

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/**
 * One record as the local syslog socket expects it from syslog(3): the RFC 3164 form
 * `<PRI>Mmm dd hh:mm:ss lilt[PID]: category: message`, on one line.
 */
export function syslogDatagram(record: LogRecord, facility: number): Uint8Array<ArrayBuffer> {
  const at = new Date(record.timestamp);
  const two = (n: number) => String(n).padStart(2, "0");
  const stamp = `${MONTHS[at.getMonth()]} ${String(at.getDate()).padStart(2, " ")} ` +
    `${two(at.getHours())}:${two(at.getMinutes())}:${two(at.getSeconds())}`;
  const priority = facility * 8 + SEVERITY[record.level];
  const text = recordText(record).replaceAll("\n", " ");
  return truncated(`<${priority}>${stamp} lilt[${Deno.pid}]: ${text}`, SYSLOG_MAX_BYTES);
}

/**
 * One record in journald's native protocol: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER=lilt,
 * SYSLOG_PID and LILT_CATEGORY fields (a value with a newline, such as a stack trace, in the
 * protocol's length-prefixed binary form).
 */
export function journalDatagram(record: LogRecord): Uint8Array<ArrayBuffer> {
  const message = truncated(recordText(record), JOURNAL_MAX_MESSAGE_BYTES);
  const fields: [string, Uint8Array][] = [
    ["MESSAGE", message],
    ["PRIORITY", encoder.encode(String(SEVERITY[record.level]))],
    ["SYSLOG_IDENTIFIER", encoder.encode("lilt")],
    ["SYSLOG_PID", encoder.encode(String(Deno.pid))],
    ["LILT_CATEGORY", encoder.encode(record.category.join("."))],
  ];
  const parts: Uint8Array[] = [];
  for (const [name, value] of fields) {
    if (!value.includes(0x0a)) {
      parts.push(encoder.encode(`${name}=`), value, encoder.encode("\n"));
      continue;
    }
    const length = new Uint8Array(8);
    new DataView(length.buffer).setBigUint64(0, BigInt(value.length), true);
    parts.push(encoder.encode(`${name}\n`), length, value, encoder.encode("\n"));
  }
  const datagram = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    datagram.set(part, offset);
    offset += part.length;
  }
  return datagram;
}

/** UTF-8 of `text`, cut to at most `max` bytes on a character boundary. */
function truncated(text: string, max: number): Uint8Array<ArrayBuffer> {
  const bytes = encoder.encode(text);
  if (bytes.length <= max) return bytes;
  let end = max;
  while (end > 0 && (bytes[end] & 0xc0) === 0x80) end--;
  return bytes.slice(0, end);
}

/**
 * A sink sending each record as one datagram to a local socket. When the socket cannot be
 * opened, or sending starts or stops failing, one line on stderr says so: records sent while
 * it fails are dropped (counted), the server goes on.
 */
function datagramSink(
  name: string,
  path: string,
  encode: (record: LogRecord) => Uint8Array<ArrayBuffer>,
): (Sink & Disposable) | undefined {
  let socket: UnixDatagramSender;
  try {
    socket = new UnixDatagramSender(path);
  } catch (error) {
    stderrNotice(`cannot log to ${name} at ${path}: ${(error as Error).message}`);
    return undefined;
  }
  let dropped = 0;
  const sink = (record: LogRecord) => {
    const problem = socket.send(encode(record));
    if (problem === undefined) {
      if (dropped > 0) {
        stderrNotice(`logging to ${name} at ${path} works again (${dropped} records dropped)`);
      }
      dropped = 0;
      return;
    }
    if (dropped++ === 0) {
      stderrNotice(
        `cannot send log records to ${name} at ${path}: ${problem}; ` +
          "they are dropped until it accepts them again",
      );
    }
  };
  return Object.assign(sink, { [Symbol.dispose]: () => socket.close() });
}

function stderrNotice(text: string): void {
  Deno.stderr.writeSync(encoder.encode(`lilt: ${text}\n`));
}

/**
 * Appends to the log file. What Lilt creates for it is private (logs name users and their
 * addresses): missing directories 0700 and a new file 0600; existing ones keep their modes.
 */
function fileSink(path: string): Sink & Disposable {
  Deno.mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const file = Deno.openSync(path, { append: true, create: true, mode: 0o600 });
  let open = true;
  const sink = (record: LogRecord) => {
    if (!open) return;
    const bytes = encoder.encode(formatLogRecord(record));
    let written = 0;
    while (written < bytes.length) written += file.writeSync(bytes.subarray(written));
  };
  return Object.assign(sink, {
    [Symbol.dispose]() {
      if (open) file.close();
      open = false;
    },
  });
}

function watcherSink(record: LogRecord): void {
  for (const watcher of watchers) {
    if (compareLogLevel(record.level, watcher.level) < 0) continue;
    try {
      watcher.fn(record);
    } catch {
      // A failing watcher (a closed admin connection) must not break logging.
    }
  }
}

function categoryPath(category: string | string[]): string[] {
  const parts = typeof category === "string" ? category.split(".") : [...category];
  return parts[0] === ROOT ? parts : [ROOT, ...parts];
}

function toLevel(level: string): LogLevel {
  const found = LEVELS.find((l) => l === level);
  if (!found) {
    throw new RangeError(`Unknown log level '${level}': expected one of ${LEVELS.join(", ")}`);
  }
  return found;
}

function lowest(levels: (LogLevel | undefined)[]): LogLevel {
  let result: LogLevel = "fatal";
  for (const level of levels) {
    if (level !== undefined && compareLogLevel(level, result) < 0) result = level;
  }
  return result;
}

function renderValue(value: unknown): string {
  if (typeof value === "string") return value;
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  if (value === undefined) return "undefined";
  if (
    typeof value === "object" && value !== null && !Array.isArray(value) &&
    value.toString !== Object.prototype.toString
  ) {
    return String(value);
  }
  return Deno.inspect(value, { colors: false, compact: true, breakLength: Infinity, depth: 4 });
}

// deno-lint-ignore no-control-regex
const CONTROL_CHARS = /[\x00-\x08\x0a-\x1f\x7f]/g;

/** Keeps one record on one line and stops log injection through newlines in values. */
function escapeControls(text: string): string {
  return text.replace(CONTROL_CHARS, (c) => {
    if (c === "\n") return "\\n";
    if (c === "\r") return "\\r";
    return `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`;
  });
}
