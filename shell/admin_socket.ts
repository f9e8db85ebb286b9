// The server side of the admin channel: a Unix socket (mode 0600 from creation) speaking
// newline-delimited JSON, which runs the commands of `server.commands` for `lilt shell`.

import { dirname, isAbsolute } from "node:path";
import {
  type CommandContext,
  CommandError,
  type CommandResult,
  type CommandSpec,
} from "../core/admin_commands.ts";
import { LOG_LEVELS } from "../core/config_schema.ts";
import { getLogger } from "../core/log.ts";
import type { Server } from "../core/server.ts";
import {
  type AdminInput,
  type AdminMessage,
  type AdminRequest,
  type CommandInfo,
  MAX_INPUT_CHARS,
  MAX_LINE_BYTES,
  type RequestId,
  usage,
} from "./protocol.ts";

const log = getLogger("shell");

/** The built-in roles, offered by tab completion of `role` arguments. */
const BUILTIN_ROLES = ["operator", "admin", "member", "registered", "guest"];

/** A listening admin socket. */
export interface AdminSocket {
  /** Absolute path of the socket file. */
  readonly path: string;
  /** Stops listening, cancels running commands, closes connections and removes the file. */
  close(): Promise<void>;
}

/** Whether something answers on a Unix socket path. */
async function socketAnswers(path: string): Promise<boolean> {
  try {
    const conn = await Deno.connect({ transport: "unix", path });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

/** Removes a stale socket file, or fails when a live server answers on it. */
async function clearSocketPath(path: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw error;
  }
  if (!info.isSocket) {
    throw new Error(`Cannot create the admin socket: ${path} exists and is not a socket`);
  }
  if (await socketAnswers(path)) {
    throw new Error(`Another Lilt server is running (admin socket ${path} answers)`);
  }
  await Deno.remove(path);
}

/**
 * Listens on the admin socket at `path` and serves `server.commands` on it.
 *
 * @example
 * ```ts
 * const admin = await startAdminSocket(server, "/var/lib/lilt/lilt.sock");
 * // ... later, on shutdown:
 * await admin.close();
 * ```
 */
export async function startAdminSocket(server: Server, path: string): Promise<AdminSocket> {
  const parent = dirname(path);
  try {
    await Deno.stat(parent);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    await Deno.mkdir(parent, { recursive: true, mode: 0o700 });
  }
  await clearSocketPath(path);
  // Created with mode 0600 (no window where another user could connect): the file mode is
  // the channel's only authentication.
  const oldMask = Deno.umask(0o177);
  let listener: Deno.UnixListener;
  try {
    listener = Deno.listen({ transport: "unix", path });
  } finally {
    Deno.umask(oldMask);
  }
  const connections = new Set<AdminConnection>();
  let closed = false;
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        const connection = new AdminConnection(server, conn);
        connections.add(connection);
        connection.serve().finally(() => connections.delete(connection));
      }
    } catch (error) {
      if (!closed) log.error("Admin socket stopped accepting: {error}", { error });
    }
  })();
  return {
    path,
    async close() {
      if (closed) return;
      closed = true;
      listener.close();
      await accepting;
      for (const connection of connections) connection.close();
      await Deno.remove(path).catch(() => {});
    },
  };
}

/** The reply to special commands and the lookup of regular ones, shared by connections. */
function describe(spec: CommandSpec): CommandInfo {
  const info: CommandInfo = {
    section: spec.section,
    name: spec.name,
    summary: spec.summary,
    args: spec.args,
  };
  if (spec.stream) info.stream = true;
  return info;
}

/** Text of `help` and `help SECTION`. */
function helpText(server: Server, section: string | undefined): string {
  const specs = server.commands.list();
  if (section === undefined) {
    const lines = ["Sections (type 'help SECTION' for its commands):"];
    for (const name of server.commands.sections()) {
      const names = specs.filter((s) => s.section === name).map((s) => s.name);
      lines.push(`  ${name.padEnd(10)} ${names.join(", ")}`);
    }
    lines.push("Other: help [SECTION], exit");
    return lines.join("\n");
  }
  const own = specs.filter((s) => s.section === section);
  if (own.length === 0) {
    throw new CommandError(
      `Unknown section '${section}' (available: ${server.commands.sections().join(", ")})`,
    );
  }
  const usages = own.map((s) => usage(describe(s)));
  const width = Math.max(...usages.map((u) => u.length));
  return own.map((s, i) => `  ${usages[i].padEnd(width)}  ${s.summary}`).join("\n");
}

/** Candidates for tab completion of an argument of `kind` starting with `prefix`. */
function complete(server: Server, kind: string, prefix: string): string[] {
  let all: string[];
  switch (kind) {
    case "jid":
      all = [];
      for (const domain of server.hosts.keys()) {
        for (const user of server.accounts.list(domain)) all.push(`${user}@${domain}`);
      }
      break;
    case "host":
      all = [...server.hosts.keys()];
      break;
    case "role":
      all = BUILTIN_ROLES;
      break;
    case "module":
      all = server.modules.available();
      break;
    case "level":
      all = [...LOG_LEVELS];
      break;
    case "section":
      all = server.commands.sections();
      break;
    default:
      all = [];
  }
  return [...new Set(all.filter((c) => c.startsWith(prefix)))].sort();
}

/**
 * Checks the argument count against the spec and that file paths are absolute (the server's
 * working directory means nothing to the caller); joins the words of a trailing `rest` arg.
 */
function fitArgs(spec: CommandSpec, args: string[]): string[] {
  const required = spec.args.filter((a) => !a.optional).length;
  if (args.length < required) {
    const missing = spec.args[args.length];
    throw new CommandError(
      `Missing argument '${missing.name}' (usage: ${usage(describe(spec))})`,
    );
  }
  spec.args.forEach((arg, i) => {
    const value = args[i];
    if (arg.kind !== "file" || value === undefined || (arg.stdin && value === "-")) return;
    if (!isAbsolute(value)) {
      throw new CommandError(
        `Expected an absolute path for '${arg.name}', found '${value}' ` +
          "(lilt shell makes relative paths absolute against the caller's directory)",
      );
    }
  });
  const last = spec.args[spec.args.length - 1];
  if (last?.rest && args.length > spec.args.length) {
    const head = args.slice(0, spec.args.length - 1);
    return [...head, args.slice(spec.args.length - 1).join(" ")];
  }
  return args;
}

/**
 * The standard input a client forwards for one request, gathered until its end (or until the
 * command no longer wants it, after which further pieces are dropped).
 */
class ForwardedInput {
  #pieces: string[] = [];
  #chars = 0;
  #result = Promise.withResolvers<string>();
  #open = true;

  constructor() {
    // A command that never reads its input must not leave a rejection unhandled.
    this.#result.promise.catch(() => {});
  }

  /** Adds a piece, or ends the input on `null`. */
  add(piece: string | null): void {
    if (!this.#open) return;
    if (piece === null) {
      this.#open = false;
      this.#result.resolve(this.#pieces.join(""));
      this.#pieces = [];
      return;
    }
    this.#chars += piece.length;
    if (this.#chars > MAX_INPUT_CHARS) {
      this.fail(`The standard input is longer than ${MAX_INPUT_CHARS} characters`);
      return;
    }
    this.#pieces.push(piece);
  }

  /** Ends the input with an error (unless it already ended); drops what was gathered. */
  fail(reason: string): void {
    if (!this.#open) return;
    this.#open = false;
    this.#pieces = [];
    this.#result.reject(new CommandError(reason));
  }

  /** The whole input, once its end arrived. */
  read(): Promise<string> {
    return this.#result.promise;
  }
}

/** One client of the admin socket. */
class AdminConnection {
  #server: Server;
  #conn: Deno.UnixConn;
  #running = new Map<RequestId, AbortController>();
  /** Input being forwarded, by request id, until its end marker arrives. */
  #inputs = new Map<RequestId, ForwardedInput>();
  #writing: Promise<void> = Promise.resolve();
  #closed = false;
  #encoder = new TextEncoder();

  constructor(server: Server, conn: Deno.UnixConn) {
    this.#server = server;
    this.#conn = conn;
  }

  /** Reads request lines until the client goes away or the connection is closed. */
  async serve(): Promise<void> {
    const buffer = new Uint8Array(16 * 1024);
    let pending: Uint8Array[] = [];
    let pendingBytes = 0;
    const decoder = new TextDecoder();
    try {
      while (!this.#closed) {
        const n = await this.#conn.read(buffer);
        if (n === null) break;
        let start = 0;
        let oversized = false;
        for (let i = 0; i < n; i++) {
          if (buffer[i] !== 0x0a) continue;
          const length = pendingBytes + i - start;
          if (length > MAX_LINE_BYTES) {
            oversized = true;
            break;
          }
          pending.push(buffer.slice(start, i));
          const line = decoder.decode(concat(pending, length));
          pending = [];
          pendingBytes = 0;
          start = i + 1;
          if (line.trim() !== "") this.#handleLine(line);
        }
        if (!oversized && start < n) {
          pending.push(buffer.slice(start, n));
          pendingBytes += n - start;
        }
        if (oversized || pendingBytes > MAX_LINE_BYTES) {
          this.#send({ id: null, ok: false, error: tooLong() });
          await this.#writing;
          break;
        }
      }
    } catch (error) {
      if (!this.#closed) log.debug("Admin connection failed: {error}", { error });
    } finally {
      this.close();
    }
  }

  /** Cancels this connection's running commands and closes it. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const controller of this.#running.values()) controller.abort();
    this.#running.clear();
    for (const input of this.#inputs.values()) {
      input.fail("The client went away before the end of its standard input");
    }
    this.#inputs.clear();
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }

  #send(message: AdminMessage): void {
    if (this.#closed) return;
    const bytes = this.#encoder.encode(JSON.stringify(message) + "\n");
    this.#writing = this.#writing.then(async () => {
      if (this.#closed) return;
      try {
        let written = 0;
        while (written < bytes.length) written += await this.#conn.write(bytes.subarray(written));
      } catch {
        this.close();
      }
    });
  }

  #handleLine(line: string): void {
    let request: AdminRequest;
    try {
      const message = parseRequest(line);
      if (!("cmd" in message)) {
        this.#handleInput(message);
        return;
      }
      request = message;
    } catch (error) {
      const id = (error as RequestLineError).id ?? null;
      this.#send({ id, ok: false, error: (error as Error).message });
      return;
    }
    let input: ForwardedInput | undefined;
    if (request.input) {
      if (this.#inputs.has(request.id) || this.#running.has(request.id)) {
        this.#send({
          id: request.id,
          ok: false,
          error: `The id '${request.id}' is already in use`,
        });
        return;
      }
      input = new ForwardedInput();
      this.#inputs.set(request.id, input);
    }
    this.#run(request, input).finally(() => input?.fail("The command has finished")).then(
      (result) => this.#send({ id: request.id, ok: true, result }),
      (error) => {
        if (error instanceof CommandError) {
          this.#send({ id: request.id, ok: false, error: error.message });
        } else {
          log.error("Admin command '{cmd}' failed: {error}", { cmd: request.cmd, error });
          const message = error instanceof Error ? error.message : String(error);
          this.#send({ id: request.id, ok: false, error: `Internal error: ${message}` });
        }
      },
    );
  }

  /** Adds a piece of forwarded input to the request it belongs to. */
  #handleInput(piece: AdminInput): void {
    const input = this.#inputs.get(piece.id);
    if (!input) {
      this.#send({
        id: piece.id,
        ok: false,
        error: `No request with id '${piece.id}' takes standard input`,
      });
      return;
    }
    if (piece.input === null) this.#inputs.delete(piece.id);
    input.add(piece.input);
  }

  async #run(request: AdminRequest, input?: ForwardedInput): Promise<CommandResult> {
    const server = this.#server;
    const { id, args } = request;
    const words = request.cmd.trim().split(/\s+/);
    if (words.length === 1) {
      switch (words[0]) {
        case "commands":
          return { data: server.commands.list().map(describe) };
        case "complete":
          return { data: complete(server, args[0] ?? "", args[1] ?? "") };
        case "help":
          return { message: helpText(server, args[0]) };
        case "cancel": {
          const target = this.#running.get(args[0]) ??
            this.#running.get(Number(args[0]));
          if (!target) throw new CommandError(`No running command with id '${args[0]}'`);
          target.abort();
          return { message: "Cancelled" };
        }
      }
    }
    const [section, name] = words;
    const spec = words.length === 2 ? server.commands.get(section, name) : undefined;
    if (!spec) {
      if (words.length === 1 && server.commands.sections().includes(section)) {
        throw new CommandError(`Missing command name after '${section}' (try 'help ${section}')`);
      }
      throw new CommandError(`Unknown command '${request.cmd}' (try 'help')`);
    }
    if (this.#running.has(id)) throw new CommandError(`The id '${id}' is already in use`);
    const controller = new AbortController();
    this.#running.set(id, controller);
    const context: CommandContext = {
      server,
      signal: controller.signal,
      emit: (event) => {
        if (!controller.signal.aborted) this.#send({ id, event });
      },
    };
    if (input) context.readInput = () => input.read();
    try {
      return await spec.run(context, fitArgs(spec, args));
    } finally {
      if (this.#running.get(id) === controller) this.#running.delete(id);
    }
  }
}

/** A request line that could not be used; carries the id when one could be read. */
class RequestLineError extends CommandError {
  constructor(message: string, readonly id?: RequestId) {
    super(message);
  }
}

function tooLong(): string {
  return `Request line longer than ${MAX_LINE_BYTES} bytes: closing the connection`;
}

/** Parses and checks one request line, or one line of forwarded input. */
function parseRequest(line: string): AdminRequest | AdminInput {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new RequestLineError("Malformed request: not valid JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new RequestLineError("Malformed request: expected an object {id, cmd, args}");
  }
  const { id, cmd, args, input } = value as Record<string, unknown>;
  const okId = typeof id === "number" || typeof id === "string" ? id : undefined;
  if (okId === undefined) {
    throw new RequestLineError("Malformed request: 'id' must be a number or a string");
  }
  if (cmd === undefined && "input" in (value as object)) {
    if (input !== null && typeof input !== "string") {
      throw new RequestLineError("Malformed input: 'input' must be a string or null", okId);
    }
    return { id: okId, input };
  }
  if (typeof cmd !== "string" || cmd.trim() === "") {
    throw new RequestLineError("Malformed request: 'cmd' must be a non-empty string", okId);
  }
  const list = args ?? [];
  if (!Array.isArray(list) || !list.every((a) => typeof a === "string")) {
    throw new RequestLineError("Malformed request: 'args' must be an array of strings", okId);
  }
  if (input !== undefined && typeof input !== "boolean") {
    throw new RequestLineError("Malformed request: 'input' must be true or false", okId);
  }
  return { id: okId, cmd, args: list, input: input === true };
}

function concat(chunks: Uint8Array[], total: number): Uint8Array {
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(total);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}
