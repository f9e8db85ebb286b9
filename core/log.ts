// Logging for the whole server on top of LogTape: loggers under the "lilt" category, a console
// sink, an optional file sink, per-category levels, and watchers for the admin shell.

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
 * Sets up logging from the [log] configuration: console (stderr), optional file (appended),
 * per-category levels. Call it again to apply a new configuration (on reload).
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
  return `${time} ${level} ${record.category.join(".")}: ${escapeControls(message)}${stack}\n`;
}

function apply(): void {
  if (!current && watchers.size === 0) {
    resetSync();
    return;
  }
  const config = current ?? { level: "fatal", console: false, file: "", categories: {} };
  const levels = new CategoryLevels(config);
  const sinks: Record<string, Sink> = {};
  if (config.console) sinks.console = filtered(levels, consoleSink);
  if (config.file) sinks.file = filtered(levels, fileSink(config.file));
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
