// `lilt shell`: the operator's client of the admin socket. Runs one command and exits (for
// scripts and cron), or opens a REPL with history, tab completion and password prompts. It
// does for the server what only the caller can: read its stdin, resolve its relative paths.

import { resolve } from "node:path";
import process from "node:process";
import * as readline from "node:readline";
import type { CommandResult, TableResult } from "../core/admin_commands.ts";
import {
  type AdminMessage,
  type AdminReply,
  type CommandInfo,
  COMPLETABLE_KINDS,
  INPUT_PIECE_CHARS,
  isEvent,
  type RequestId,
} from "./protocol.ts";
import { MISMATCH_MESSAGE, promptNewSecret, REPEAT_PROMPT } from "./prompt.ts";

/** How `runShell` connects and what it runs. */
export interface ShellOptions {
  /** Path of the admin socket. */
  socketPath: string;
  /** File keeping the REPL history (created 0600). */
  historyPath: string;
  /** `SECTION COMMAND ARGS...`; empty for the REPL. */
  command: string[];
  /** Print machine-readable JSON instead of text. */
  json?: boolean;
}

/** The admin socket cannot be reached (no server, or no permission). */
export class ConnectError extends Error {}

/** What `AdminClient.stream` does besides sending the request. */
export interface StreamOptions {
  /** Receives each event of a streaming command. */
  onEvent?: (event: unknown) => void;
  /** Text forwarded to the command as its standard input (the request's `-` argument). */
  input?: AsyncIterable<string>;
}

/** A connection to the admin socket: requests with ids, replies and streamed events. */
export class AdminClient {
  #conn: Deno.UnixConn;
  #nextId = 1;
  #waiting = new Map<RequestId, {
    resolve: (reply: AdminReply) => void;
    onEvent?: (event: unknown) => void;
  }>();
  #encoder = new TextEncoder();
  /** Writes go out one after the other: a large input piece must not interleave a cancel. */
  #writing: Promise<void> = Promise.resolve();
  #closedResolve!: () => void;
  /** Resolves when the server closes the connection (or `close` is called). */
  readonly closed: Promise<void> = new Promise((resolve) => this.#closedResolve = resolve);

  private constructor(conn: Deno.UnixConn) {
    this.#conn = conn;
    this.#readLoop();
  }

  /** Connects to the socket at `path`; throws ConnectError with an operator-friendly message. */
  static async connect(path: string): Promise<AdminClient> {
    try {
      return new AdminClient(await Deno.connect({ transport: "unix", path }));
    } catch (error) {
      const reason = error instanceof Deno.errors.PermissionDenied
        ? " (permission denied: run as the server's user)"
        : "";
      throw new ConnectError(
        `Cannot connect to the Lilt admin socket at ${path}: is the server running?${reason}`,
      );
    }
  }

  /** Sends a request and resolves with its final reply. */
  request(cmd: string, args: string[] = []): Promise<AdminReply> {
    return this.stream(cmd, args).done;
  }

  /**
   * Sends a request whose events go to `options.onEvent`, followed by `options.input` when
   * given; `done` resolves with the final reply.
   */
  stream(
    cmd: string,
    args: string[],
    options: StreamOptions = {},
  ): { id: RequestId; done: Promise<AdminReply> } {
    const id = this.#nextId++;
    const done = new Promise<AdminReply>((resolve) => {
      this.#waiting.set(id, { resolve, onEvent: options.onEvent });
    });
    const request = options.input ? { id, cmd, args, input: true } : { id, cmd, args };
    this.#write(JSON.stringify(request) + "\n").catch(() => this.#finish());
    if (options.input) this.#forward(id, options.input).catch(() => this.#finish());
    return { id, done };
  }

  /** Sends `input` as pieces for request `id`, then its end; stops once the reply is in. */
  async #forward(id: RequestId, input: AsyncIterable<string>): Promise<void> {
    for await (const text of input) {
      for (let start = 0; start < text.length; start += INPUT_PIECE_CHARS) {
        if (!this.#waiting.has(id)) return;
        const piece = text.slice(start, start + INPUT_PIECE_CHARS);
        await this.#write(JSON.stringify({ id, input: piece }) + "\n");
      }
    }
    if (this.#waiting.has(id)) await this.#write(JSON.stringify({ id, input: null }) + "\n");
  }

  /** Asks the server to stop the streaming request `id`. */
  async cancel(id: RequestId): Promise<void> {
    await this.request("cancel", [String(id)]);
  }

  /** The server's command list. */
  async commands(): Promise<CommandInfo[]> {
    const reply = await this.request("commands");
    return reply.ok ? (reply.result.data as CommandInfo[]) : [];
  }

  /** Closes the connection. */
  close(): void {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
    this.#finish();
  }

  #write(text: string): Promise<void> {
    const bytes = this.#encoder.encode(text);
    const write = async () => {
      let written = 0;
      while (written < bytes.length) written += await this.#conn.write(bytes.subarray(written));
    };
    const next = this.#writing.then(write);
    this.#writing = next.catch(() => {});
    return next;
  }

  async #readLoop(): Promise<void> {
    const decoder = new TextDecoder();
    const buffer = new Uint8Array(16 * 1024);
    let text = "";
    try {
      while (true) {
        const n = await this.#conn.read(buffer);
        if (n === null) break;
        text += decoder.decode(buffer.subarray(0, n), { stream: true });
        let newline;
        while ((newline = text.indexOf("\n")) >= 0) {
          const line = text.slice(0, newline);
          text = text.slice(newline + 1);
          if (line.trim() !== "") this.#dispatch(JSON.parse(line) as AdminMessage);
        }
      }
    } catch {
      // connection reset: handled below like a close
    }
    this.#finish();
  }

  #dispatch(message: AdminMessage): void {
    if (isEvent(message)) {
      this.#waiting.get(message.id)?.onEvent?.(message.event);
      return;
    }
    if (message.id === null) {
      // A reply to a line the server could not read at all: fail everything pending.
      for (const waiter of this.#waiting.values()) waiter.resolve(message);
      this.#waiting.clear();
      return;
    }
    const waiter = this.#waiting.get(message.id);
    this.#waiting.delete(message.id);
    waiter?.resolve(message);
  }

  #finish(): void {
    for (const [id, waiter] of this.#waiting) {
      waiter.resolve({ id, ok: false, error: "The server closed the admin connection" });
    }
    this.#waiting.clear();
    this.#closedResolve();
  }
}

/**
 * Splits a command line into words like a shell: spaces separate, single and double quotes
 * group, a backslash escapes the next character. Throws on an unterminated quote unless
 * `lenient` (used for tab completion of a half-typed line).
 */
export function splitLine(line: string, lenient = false): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  let quote: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote) {
      if (c === quote) quote = undefined;
      else if (c === "\\" && quote === '"' && i + 1 < line.length) word += line[++i];
      else word += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      inWord = true;
    } else if (c === "\\" && i + 1 < line.length) {
      word += line[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (quote && !lenient) throw new Error(`Unterminated ${quote} quote`);
  if (inWord) words.push(word);
  return words;
}

/** Formats a table as aligned columns with a header line, each row's detail line under it. */
export function formatTable(table: TableResult): string {
  const cells = [
    table.columns,
    ...table.rows.map((r) => r.map((v) => v === null ? "" : String(v))),
  ];
  const widths = table.columns.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  return cells.map((row, index) => {
    const line = row.map((cell, i) => i === row.length - 1 ? cell : cell.padEnd(widths[i]))
      .join("  ").trimEnd();
    const detail = index > 0 ? table.details?.[index - 1] : undefined;
    return detail ? `${line}\n    ${detail}` : line;
  }).join("\n");
}

/** What `--json` prints for a result: `data`, else the table as row objects, else {message}. */
export function jsonOf(result: CommandResult): unknown {
  if (result.data !== undefined) return result.data;
  if (result.table) {
    const { columns, rows } = result.table;
    return rows.map((row) => Object.fromEntries(columns.map((c, i) => [c, row[i] ?? null])));
  }
  return { message: result.message ?? "" };
}

/** The human text of a result: its message line and/or its table. */
export function formatResult(result: CommandResult): string {
  const parts: string[] = [];
  if (result.message) parts.push(result.message);
  if (result.table) parts.push(formatTable(result.table));
  if (parts.length === 0 && result.data !== undefined) {
    parts.push(JSON.stringify(result.data, null, 2));
  }
  return parts.join("\n");
}

/**
 * One streamed event as a line: JSON with `json`, else readable text. A watched stanza reads
 * `TIME DIRECTION FROM -> TO XML`, a log record is its log line.
 */
export function formatEvent(event: unknown, json: boolean): string {
  if (json) return JSON.stringify(event);
  if (typeof event === "string") return event;
  if (typeof event === "object" && event !== null) {
    const { time, direction, from, to, xml, line } = event as Record<string, unknown>;
    if (typeof xml === "string" && typeof direction === "string") {
      return `${time ?? ""} ${direction.padEnd(3)} ${from ?? "-"} -> ${to ?? "-"}  ${xml}`
        .trimStart();
    }
    if (typeof line === "string") return line;
  }
  return JSON.stringify(event);
}

/**
 * Makes `file` arguments absolute against the caller's directory `cwd` (the server's own
 * working directory means nothing to the caller); `~/` is the caller's home. `-` stays for
 * arguments that take standard input.
 */
export function absolutePaths(
  info: CommandInfo | undefined,
  args: string[],
  cwd: string,
): string[] {
  if (!info) return args;
  const home = Deno.env.get("HOME");
  return args.map((arg, i) => {
    const spec = info.args[i];
    if (spec?.kind !== "file" || arg === "" || (spec.stdin && arg === "-")) return arg;
    if (home && arg.startsWith("~/")) return resolve(home, arg.slice(2));
    return resolve(cwd, arg);
  });
}

/** True when the command takes an argument `-` meaning standard input, and got one. */
function readsStdin(info: CommandInfo | undefined, args: string[]): boolean {
  return info?.args.some((spec, i) => spec.stdin && args[i] === "-") ?? false;
}

/** The process's standard input as text pieces, until its end. */
async function* stdinText(): AsyncIterable<string> {
  const decoder = new TextDecoder();
  const buffer = new Uint8Array(64 * 1024);
  while (true) {
    const n = await Deno.stdin.read(buffer);
    if (n === null) break;
    yield decoder.decode(buffer.subarray(0, n), { stream: true });
  }
  const rest = decoder.decode();
  if (rest) yield rest;
}

/**
 * Takes `--json` out of a REPL line's words (`--` ends the options and is dropped, words
 * after it are kept as typed).
 */
function takeJsonFlag(words: string[]): { words: string[]; json: boolean } {
  const end = words.indexOf("--");
  const head = end < 0 ? words : words.slice(0, end);
  const tail = end < 0 ? [] : words.slice(end + 1);
  const kept = head.filter((w) => w !== "--json");
  return { words: [...kept, ...tail], json: kept.length !== head.length };
}

/**
 * Inserts the command's `password` arguments by asking `ask` (a hidden prompt asked twice, or
 * stdin when it is not a terminal). Passwords are never taken from the command line, where they would
 * end up in `ps`, shell history and the REPL history: the words typed fill the other
 * arguments in order, so `user create JID ROLE` prompts for the password and keeps ROLE.
 */
async function fillPasswords(
  info: CommandInfo | undefined,
  args: string[],
  ask: (prompt: string) => Promise<string>,
): Promise<{ args: string[]; prompted: boolean }> {
  if (!info || !info.args.some((spec) => spec.kind === "password")) {
    return { args, prompted: false };
  }
  const filled: string[] = [];
  let next = 0;
  let prompted = false;
  for (const spec of info.args) {
    if (spec.kind === "password") {
      const subject = filled.find((a, j) => info.args[j]?.kind === "jid" && a) ?? "";
      filled.push(await ask(`Password${subject ? ` for ${subject}` : ""}: `));
      prompted = true;
    } else if (next < args.length) {
      filled.push(args[next++]);
    } else {
      break; // an optional argument left out
    }
  }
  filled.push(...args.slice(next));
  return { args: filled, prompted };
}

/** Runs `lilt shell`: one command, or the REPL when `options.command` is empty. */
export async function runShell(options: ShellOptions): Promise<number> {
  let client: AdminClient;
  try {
    client = await AdminClient.connect(options.socketPath);
  } catch (error) {
    console.error(`lilt: ${(error as Error).message}`);
    return 1;
  }
  try {
    if (options.command.length === 0) return await repl(client, options);
    return await oneShot(client, options.command, options.json ?? false);
  } finally {
    client.close();
  }
}

async function oneShot(client: AdminClient, words: string[], json: boolean): Promise<number> {
  const [section, name, ...rest] = words;
  if (section === "help") {
    const reply = await client.request("help", name === undefined ? [] : [name]);
    return printReply(reply, json);
  }
  const cmd = name === undefined ? section : `${section} ${name}`;
  const info = (await client.commands()).find((c) => c.section === section && c.name === name);
  let args = rest;
  try {
    args = (await fillPasswords(info, rest, promptNewSecret)).args;
  } catch (error) {
    console.error(`lilt: ${(error as Error).message}`);
    return 1;
  }
  args = absolutePaths(info, args, Deno.cwd());
  if (!info?.stream) {
    const input = readsStdin(info, args) ? stdinText() : undefined;
    return printReply(await client.stream(cmd, args, { input }).done, json);
  }
  return await follow(client, cmd, args, json);
}

/**
 * Runs a streaming command until SIGINT or SIGTERM (exit 0) or until the server goes away
 * (exit 1). Standard input is not read: under nohup, cron or systemd it is /dev/null or closed.
 */
async function follow(
  client: AdminClient,
  cmd: string,
  args: string[],
  json: boolean,
): Promise<number> {
  const encoder = new TextEncoder();
  let stopRequested = false;
  let outputError: Error | undefined;
  const running = client.stream(cmd, args, {
    onEvent: (event) => {
      if (outputError) return;
      try {
        Deno.stdout.writeSync(encoder.encode(formatEvent(event, json) + "\n"));
      } catch (error) {
        // Nobody reads the output any more (`| head`), or the disk is full: stop.
        outputError = error as Error;
        client.cancel(running.id).catch(() => {});
      }
    },
  });
  const stop = () => {
    // A second signal does not wait for the server's answer to the first.
    if (stopRequested) client.close();
    stopRequested = true;
    client.cancel(running.id).catch(() => {});
  };
  const signals = ["SIGINT", "SIGTERM"] as const;
  for (const signal of signals) Deno.addSignalListener(signal, stop);
  const reply = await running.done;
  for (const signal of signals) Deno.removeSignalListener(signal, stop);
  if (outputError && !(outputError instanceof Deno.errors.BrokenPipe)) {
    console.error(`lilt: cannot write the output: ${outputError.message}`);
    return 1;
  }
  if (stopRequested || outputError) return 0;
  if (!reply.ok) {
    console.error(`lilt: ${reply.error}`);
    return 1;
  }
  return 0;
}

function printReply(reply: AdminReply, json: boolean): number {
  if (!reply.ok) {
    console.error(`lilt: ${reply.error}`);
    return 1;
  }
  if (json) console.log(JSON.stringify(jsonOf(reply.result), null, 2));
  else {
    const text = formatResult(reply.result);
    if (text) console.log(text);
  }
  return 0;
}

/** Reads the saved history, newest first as readline wants it. */
async function loadHistory(path: string): Promise<string[]> {
  try {
    const lines = (await Deno.readTextFile(path)).split("\n").filter((l) => l.trim() !== "");
    return lines.reverse().slice(0, HISTORY_SIZE);
  } catch {
    return [];
  }
}

const HISTORY_SIZE = 1000;

/** Saves the history (oldest first) with mode 0600. */
async function saveHistory(path: string, newestFirst: string[]): Promise<void> {
  const text = [...newestFirst].slice(0, HISTORY_SIZE).reverse().join("\n") + "\n";
  try {
    await Deno.writeTextFile(path, text, { mode: 0o600 });
    await Deno.chmod(path, 0o600);
  } catch {
    // history is a convenience: a read-only data dir must not break the shell
  }
}

async function repl(client: AdminClient, options: ShellOptions): Promise<number> {
  let commands = await client.commands();
  const history = await loadHistory(options.historyPath);
  const rl = readline.createInterface({
    input: process.stdin,
    output: process.stdout,
    terminal: process.stdin.isTTY === true,
    prompt: "lilt> ",
    history: [...history],
    historySize: HISTORY_SIZE,
    removeHistoryDuplicates: true,
    completer: (
      line: string,
      callback: (err: Error | null, result: [string[], string]) => void,
    ) => {
      completeLine(client, commands, line).then(
        (result) => callback(null, result),
        () => callback(null, [[], line]),
      );
    },
  });
  // Typing at a password prompt is not echoed: everything readline writes then (typed
  // characters, line refreshes) is dropped except the prompt itself.
  let secretPrompt: string | undefined;
  const internal = rl as unknown as { _writeToOutput(text: string): void; history: string[] };
  const write = internal._writeToOutput.bind(rl);
  internal._writeToOutput = (text: string) => {
    if (secretPrompt === undefined) write(text);
    else if (text.startsWith(secretPrompt)) write(secretPrompt);
  };
  const askSecret = (prompt: string) =>
    new Promise<string>((resolve) => {
      secretPrompt = prompt;
      rl.question(prompt, (answer) => {
        secretPrompt = undefined;
        process.stdout.write("\n");
        // rl.question's answer goes through readline's history: take the secret out again.
        const index = internal.history.indexOf(answer);
        if (index >= 0) internal.history.splice(index, 1);
        rl.setPrompt("lilt> ");
        resolve(answer);
      });
    });
  // A new password typed on a terminal is asked twice; lines piped into the REPL are used once.
  const askNewSecret = async (prompt: string) => {
    const secret = await askSecret(prompt);
    if (process.stdin.isTTY !== true) return secret;
    if (await askSecret(REPEAT_PROMPT) !== secret) throw new Error(MISMATCH_MESSAGE);
    return secret;
  };
  let streaming: RequestId | undefined;
  rl.on("SIGINT", () => {
    if (streaming !== undefined) {
      client.cancel(streaming).catch(() => {});
      return;
    }
    if (rl.line) {
      rl.write(null, { ctrl: true, name: "u" });
      process.stdout.write("\n");
    } else {
      process.stdout.write("\n(type 'exit' or press Ctrl-D to leave)\n");
    }
    rl.prompt();
  });
  const saved: string[] = [...history];
  let exitCode = 0;
  let lost = false;
  client.closed.then(() => {
    lost = true;
    console.error("\nlilt: the server closed the admin connection");
    exitCode = 1;
    rl.close();
  });
  rl.prompt();
  for await (const line of rl) {
    const text = line.trim();
    if (text === "") {
      rl.prompt();
      continue;
    }
    if (saved[0] !== text) saved.unshift(text);
    await saveHistory(options.historyPath, saved);
    let words: string[];
    let json: boolean;
    try {
      ({ words, json } = takeJsonFlag(splitLine(text)));
    } catch (error) {
      console.error(`Error: ${(error as Error).message}`);
      rl.prompt();
      continue;
    }
    if (words.length === 0) {
      rl.prompt();
      continue;
    }
    if (words[0] === "exit" || words[0] === "quit") break;
    const [section, name, ...rest] = words;
    let reply: AdminReply;
    if (section === "help") {
      reply = await client.request("help", name === undefined ? [] : [name]);
    } else {
      let info = commands.find((c) => c.section === section && c.name === name);
      if (!info) {
        commands = await client.commands();
        info = commands.find((c) => c.section === section && c.name === name);
      }
      const cmd = name === undefined ? section : `${section} ${name}`;
      let args: string[];
      try {
        args = absolutePaths(
          info,
          (await fillPasswords(info, rest, askNewSecret)).args,
          Deno.cwd(),
        );
      } catch (error) {
        console.error(`Error: ${(error as Error).message}`);
        rl.prompt();
        continue;
      }
      if (info?.stream) {
        const running = client.stream(cmd, args, {
          onEvent: (event) => process.stdout.write(formatEvent(event, json) + "\n"),
        });
        streaming = running.id;
        process.stdout.write("(streaming: press Ctrl-C to stop)\n");
        reply = await running.done;
        streaming = undefined;
      } else {
        reply = await client.request(cmd, args);
      }
    }
    if (lost) break;
    if (reply.ok && json) console.log(JSON.stringify(jsonOf(reply.result), null, 2));
    else if (reply.ok) {
      const out = formatResult(reply.result);
      if (out) console.log(out);
    } else {
      console.error(`Error: ${reply.error}`);
    }
    rl.prompt();
  }
  rl.close();
  if (!lost) process.stdout.write("\n");
  return exitCode;
}

/** Tab completion: sections, then command names, then typed arguments (asked the server). */
async function completeLine(
  client: AdminClient,
  commands: CommandInfo[],
  line: string,
): Promise<[string[], string]> {
  const words = splitLine(line, true);
  const current = /\s$/.test(line) || line === "" ? "" : words.pop() ?? "";
  const sections = [...new Set(commands.map((c) => c.section))];
  let candidates: string[] = [];
  if (words.length === 0) {
    candidates = [...sections, "help", "exit", "quit"];
  } else if (words.length === 1) {
    candidates = words[0] === "help"
      ? sections
      : commands.filter((c) => c.section === words[0]).map((c) => c.name);
  } else if (words[0] !== "help") {
    const info = commands.find((c) => c.section === words[0] && c.name === words[1]);
    const index = words.length - 2;
    const last = info?.args[info.args.length - 1];
    const arg = info?.args[index] ?? (last?.rest ? last : undefined);
    if (arg && (COMPLETABLE_KINDS as readonly string[]).includes(arg.kind)) {
      const reply = await client.request("complete", [arg.kind, current]);
      if (reply.ok) candidates = reply.result.data as string[];
    }
  }
  const hits = candidates.filter((c) => c.startsWith(current)).sort();
  // A single match gets a trailing space, like a shell, so the next Tab goes on.
  return [hits.length === 1 ? [`${hits[0]} `] : hits, current];
}
