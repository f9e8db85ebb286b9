// The admin socket as `lilt shell` and scripts see it: file mode, stale and live sockets,
// request/reply lines, error replies for bad input, streaming commands with cancel, and the
// standard input a client forwards.

import assert from "node:assert/strict";
import { CommandError, type CommandSpec } from "../../core/admin_commands.ts";
import { startAdminSocket } from "../../shell/admin_socket.ts";
import { INPUT_PIECE_CHARS, MAX_LINE_BYTES } from "../../shell/protocol.ts";
import { startTestServer, type TestServer } from "../helpers/test_server.ts";

/** A raw admin connection: writes lines, reads parsed reply lines. */
class LineConn {
  #conn: Deno.UnixConn;
  #text = "";
  #decoder = new TextDecoder();
  #buffer = new Uint8Array(64 * 1024);

  private constructor(conn: Deno.UnixConn) {
    this.#conn = conn;
  }

  static async open(path: string): Promise<LineConn> {
    return new LineConn(await Deno.connect({ transport: "unix", path }));
  }

  async sendRaw(text: string): Promise<void> {
    const bytes = new TextEncoder().encode(text);
    let written = 0;
    while (written < bytes.length) written += await this.#conn.write(bytes.subarray(written));
  }

  send(request: unknown): Promise<void> {
    return this.sendRaw(JSON.stringify(request) + "\n");
  }

  /** The next line as JSON; null when the server closed the connection. */
  async next(): Promise<Record<string, unknown> | null> {
    while (!this.#text.includes("\n")) {
      const n = await this.#conn.read(this.#buffer);
      if (n === null) return null;
      this.#text += this.#decoder.decode(this.#buffer.subarray(0, n), { stream: true });
    }
    const index = this.#text.indexOf("\n");
    const line = this.#text.slice(0, index);
    this.#text = this.#text.slice(index + 1);
    return JSON.parse(line);
  }

  /** Sends a request and returns its final reply (skipping events). */
  async call(id: number, cmd: string, args: string[] = []): Promise<Record<string, unknown>> {
    await this.send({ id, cmd, args });
    while (true) {
      const line = await this.next();
      if (line === null) throw new Error("Connection closed");
      if (line.id === id && "ok" in line) return line;
    }
  }

  close(): void {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }
}

/** What the test commands saw. */
interface TestState {
  aborted: boolean;
  ticks: number;
  /** The error `test input` got while reading its input. */
  inputError?: string;
}

function testCommands(state: TestState): CommandSpec[] {
  return [
    {
      section: "test",
      name: "input",
      summary: "Counts the lines of FILE, or of the forwarded standard input for '-'",
      args: [{ name: "file", kind: "file", stdin: true }],
      run: async (ctx, [file]) => {
        let text: string;
        if (file !== "-") text = await Deno.readTextFile(file);
        else if (!ctx.readInput) throw new CommandError("No input was forwarded");
        else {
          try {
            text = await ctx.readInput();
          } catch (error) {
            state.inputError = (error as Error).message;
            throw error;
          }
        }
        return { data: { lines: text.split("\n").length - 1, chars: text.length, text } };
      },
    },
    {
      section: "test",
      name: "echo",
      summary: "Echoes its arguments",
      args: [{ name: "first", kind: "string" }, {
        name: "text",
        kind: "text",
        optional: true,
        rest: true,
      }],
      run: (_ctx, args) => ({ message: args.join("|"), data: args }),
    },
    {
      section: "test",
      name: "fail",
      summary: "Fails as expected",
      args: [],
      run: () => {
        throw new CommandError("This failed as expected");
      },
    },
    {
      section: "test",
      name: "crash",
      summary: "Fails unexpectedly",
      args: [],
      run: () => {
        throw new TypeError("boom");
      },
    },
    {
      section: "test",
      name: "ticks",
      summary: "Emits a counter every 10 ms until cancelled",
      args: [],
      stream: true,
      run: (ctx) =>
        new Promise((resolve) => {
          let n = 0;
          const timer = setInterval(() => ctx.emit({ tick: ++n }), 10);
          ctx.signal.addEventListener("abort", () => {
            clearInterval(timer);
            state.aborted = true;
            state.ticks = n;
            resolve({ message: `Stopped after ${n} ticks` });
          });
        }),
    },
  ];
}

async function withSocket(
  fn: (t: TestServer, path: string, state: TestState) => Promise<void>,
): Promise<void> {
  const t = await startTestServer({ modules: [], users: { alice: "pw", bob: "pw" } });
  const state: TestState = { aborted: false, ticks: 0 };
  t.server.commands.add(testCommands(state));
  const path = `${t.dataDir}/run/lilt.sock`;
  const admin = await startAdminSocket(t.server, path);
  try {
    await fn(t, path, state);
  } finally {
    await admin.close();
    await t.stop();
  }
}

Deno.test("the socket is created 0600 in a 0700 directory and removed on close", async () => {
  const t = await startTestServer({ modules: [] });
  try {
    const path = `${t.dataDir}/run/lilt.sock`;
    const admin = await startAdminSocket(t.server, path);
    const info = await Deno.stat(path);
    assert.ok(info.isSocket);
    assert.equal(info.mode! & 0o777, 0o600);
    assert.equal(info.uid, Deno.uid());
    assert.equal((await Deno.stat(`${t.dataDir}/run`)).mode! & 0o777, 0o700);
    await admin.close();
    await assert.rejects(Deno.stat(path), Deno.errors.NotFound);
  } finally {
    await t.stop();
  }
});

Deno.test("a stale socket file is replaced, a live one refuses the start", async () => {
  const t = await startTestServer({ modules: [] });
  try {
    const path = `${t.dataDir}/lilt.sock`;
    // A crashed server leaves its socket file behind: nothing answers on it. (Deno removes
    // the file when a listener closes, so a process that binds and exits plays the crash.)
    const bound = await new Deno.Command("/usr/bin/python3", {
      args: ["-c", "import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])", path],
    }).output();
    assert.equal(bound.code, 0, new TextDecoder().decode(bound.stderr));
    assert.ok((await Deno.lstat(path)).isSocket, "precondition: the stale file stays");
    const admin = await startAdminSocket(t.server, path);
    const conn = await LineConn.open(path);
    assert.equal((await conn.call(1, "help")).ok, true);
    await assert.rejects(
      startAdminSocket(t.server, path),
      new Error(`Another Lilt server is running (admin socket ${path} answers)`),
    );
    // The refused start left the live socket alone.
    assert.equal((await conn.call(2, "help")).ok, true);
    conn.close();
    await admin.close();
  } finally {
    await t.stop();
  }
});

Deno.test("malformed requests get error replies and the connection stays usable", async () => {
  await withSocket(async (_t, path) => {
    const conn = await LineConn.open(path);
    await conn.sendRaw("{not json\n");
    assert.deepEqual(await conn.next(), {
      id: null,
      ok: false,
      error: "Malformed request: not valid JSON",
    });
    await conn.send({ id: 5, cmd: "test echo", args: [1] });
    assert.deepEqual(await conn.next(), {
      id: 5,
      ok: false,
      error: "Malformed request: 'args' must be an array of strings",
    });
    await conn.send([1, 2]);
    assert.equal((await conn.next())?.ok, false);
    const reply = await conn.call(6, "test echo", ["a", "b c", "d"]);
    assert.deepEqual(reply, {
      id: 6,
      ok: true,
      result: { message: "a|b c d", data: ["a", "b c d"] },
    });
    conn.close();
  });
});

Deno.test("unknown commands, missing arguments and failures are error replies", async () => {
  await withSocket(async (_t, path) => {
    const conn = await LineConn.open(path);
    assert.deepEqual(await conn.call(1, "nosuch thing"), {
      id: 1,
      ok: false,
      error: "Unknown command 'nosuch thing' (try 'help')",
    });
    assert.deepEqual(await conn.call(2, "test echo"), {
      id: 2,
      ok: false,
      error: "Missing argument 'first' (usage: test echo <first> [text...])",
    });
    assert.deepEqual(await conn.call(3, "test fail"), {
      id: 3,
      ok: false,
      error: "This failed as expected",
    });
    assert.deepEqual(await conn.call(4, "test crash"), {
      id: 4,
      ok: false,
      error: "Internal error: boom",
    });
    assert.equal((await conn.call(5, "help")).ok, true);
    conn.close();
  });
});

Deno.test("commands, help and complete serve the shell's help and tab completion", async () => {
  await withSocket(async (_t, path) => {
    const conn = await LineConn.open(path);
    const commands = (await conn.call(1, "commands")).result as { data: { name: string }[] };
    assert.deepEqual(commands.data.map((c) => c.name), [
      "crash",
      "echo",
      "fail",
      "input",
      "ticks",
    ]);
    assert.equal(JSON.stringify(commands.data).includes("run"), false);
    const help = (await conn.call(2, "help", ["test"])).result as { message: string };
    assert.match(help.message, /test echo <first> \[text\.\.\.\]\s+Echoes its arguments/);
    const complete = async (id: number, kind: string, prefix: string) =>
      ((await conn.call(id, "complete", [kind, prefix])).result as { data: string[] }).data;
    assert.deepEqual(await complete(3, "jid", ""), ["alice@localhost", "bob@localhost"]);
    assert.deepEqual(await complete(4, "jid", "al"), ["alice@localhost"]);
    assert.deepEqual(await complete(5, "host", "lo"), ["localhost"]);
    assert.deepEqual(await complete(6, "role", "ad"), ["admin"]);
    conn.close();
  });
});

Deno.test("a streaming command streams events and stops on cancel", async () => {
  await withSocket(async (_t, path, state) => {
    const conn = await LineConn.open(path);
    await conn.send({ id: 1, cmd: "test ticks", args: [] });
    for (let expected = 1; expected <= 3; expected++) {
      assert.deepEqual(await conn.next(), { id: 1, event: { tick: expected } });
    }
    await conn.send({ id: 2, cmd: "cancel", args: ["1"] });
    const seen = new Set<unknown>();
    let final: Record<string, unknown> | undefined;
    while (!final) {
      const line = await conn.next();
      assert.ok(line, "connection stays open");
      if (line.id === 1 && "ok" in line) final = line;
      else if (line.id === 2) seen.add(line.ok);
      else assert.ok("event" in line);
    }
    assert.deepEqual(seen, new Set([true]));
    assert.equal(state.aborted, true);
    assert.deepEqual(final, {
      id: 1,
      ok: true,
      result: { message: `Stopped after ${state.ticks} ticks` },
    });
    // Nothing more arrives for the cancelled command: the next line answers a new request.
    assert.deepEqual(await conn.call(3, "test echo", ["x"]), {
      id: 3,
      ok: true,
      result: { message: "x", data: ["x"] },
    });
    conn.close();
  });
});

Deno.test("standard input forwarded in pieces reaches the command whole", async () => {
  await withSocket(async (_t, path) => {
    const conn = await LineConn.open(path);
    // More than one request line can hold, as the client sends it: pieces, then null.
    const line = "someone@localhost a-password member\n";
    const text = line.repeat(Math.ceil((2 * MAX_LINE_BYTES) / line.length));
    await conn.send({ id: 1, cmd: "test input", args: ["-"], input: true });
    for (let start = 0; start < text.length; start += INPUT_PIECE_CHARS) {
      await conn.send({ id: 1, input: text.slice(start, start + INPUT_PIECE_CHARS) });
    }
    await conn.send({ id: 1, input: null });
    const reply = await conn.next();
    assert.equal(reply?.ok, true, JSON.stringify(reply).slice(0, 300));
    const data = (reply!.result as { data: { lines: number; chars: number; text: string } }).data;
    assert.equal(data.lines, text.length / line.length);
    assert.equal(data.text, text);

    // Pieces arriving before the request's own line was handled are not lost either.
    await conn.sendRaw(
      [
        { id: 2, cmd: "test input", args: ["-"], input: true },
        { id: 2, input: "a\n" },
        { id: 2, input: "b\n" },
        { id: 2, input: null },
      ].map((m) => JSON.stringify(m) + "\n").join(""),
    );
    const second = await conn.next();
    assert.deepEqual((second?.result as { data: unknown }).data, {
      lines: 2,
      chars: 4,
      text: "a\nb\n",
    });
    conn.close();
  });
});

Deno.test("input for no request, bad input lines and relative paths are error replies", async () => {
  await withSocket(async (t, path) => {
    const conn = await LineConn.open(path);
    await conn.send({ id: 9, input: "stray" });
    assert.deepEqual(await conn.next(), {
      id: 9,
      ok: false,
      error: "No request with id '9' takes standard input",
    });
    await conn.send({ id: 10, input: 5 });
    assert.deepEqual(await conn.next(), {
      id: 10,
      ok: false,
      error: "Malformed input: 'input' must be a string or null",
    });
    assert.deepEqual(await conn.call(11, "test input", ["-"]), {
      id: 11,
      ok: false,
      error: "No input was forwarded",
    });
    // The server's working directory means nothing to the caller: relative paths are refused.
    assert.deepEqual(await conn.call(12, "test input", ["accounts.txt"]), {
      id: 12,
      ok: false,
      error: "Expected an absolute path for 'file', found 'accounts.txt' " +
        "(lilt shell makes relative paths absolute against the caller's directory)",
    });
    await Deno.writeTextFile(`${t.dataDir}/accounts.txt`, "x\ny\n");
    const absolute = await conn.call(13, "test input", [`${t.dataDir}/accounts.txt`]);
    assert.equal((absolute.result as { data: { lines: number } }).data.lines, 2);
    conn.close();
  });
});

Deno.test("a client going away before the end of its input fails the command's read", async () => {
  await withSocket(async (_t, path, state) => {
    const conn = await LineConn.open(path);
    await conn.send({ id: 1, cmd: "test input", args: ["-"], input: true });
    await conn.send({ id: 1, input: "half of it\n" });
    conn.close();
    const probe = await LineConn.open(path);
    while (state.inputError === undefined) {
      assert.equal((await probe.call(1, "help")).ok, true);
    }
    assert.equal(state.inputError, "The client went away before the end of its standard input");
    probe.close();
  });
});

Deno.test("a client going away cancels its streaming command", async () => {
  await withSocket(async (_t, path, state) => {
    const conn = await LineConn.open(path);
    await conn.send({ id: 1, cmd: "test ticks", args: [] });
    assert.deepEqual(await conn.next(), { id: 1, event: { tick: 1 } });
    conn.close();
    const probe = await LineConn.open(path);
    // Once the server noticed, the command has been aborted; poll through the socket.
    while (!state.aborted) assert.equal((await probe.call(1, "help")).ok, true);
    probe.close();
  });
});

Deno.test("an oversized request line gets an error and the connection is closed", async () => {
  await withSocket(async (_t, path) => {
    const conn = await LineConn.open(path);
    const writing = conn.sendRaw(
      JSON.stringify({ id: 1, cmd: "test echo", args: ["x".repeat(MAX_LINE_BYTES + 10)] }) + "\n",
    ).catch(() => {});
    const reply = await conn.next();
    assert.equal(reply?.ok, false);
    assert.match(String(reply?.error), /longer than 1048576 bytes/);
    assert.equal(await conn.next(), null);
    await writing;
    conn.close();
    // The server still serves others.
    const other = await LineConn.open(path);
    assert.equal((await other.call(1, "help")).ok, true);
    other.close();
  });
});

Deno.test("another unprivileged user cannot connect to the socket", async () => {
  if (Deno.uid() !== 0) {
    throw new Error(
      "This test needs root: it creates the system user lilt-test-other and connects as it",
    );
  }
  const add = await new Deno.Command("useradd", {
    args: ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "lilt-test-other"],
    stdout: "null",
    stderr: "piped",
  }).output();
  const addError = new TextDecoder().decode(add.stderr);
  assert.ok(add.code === 0 || /exists/.test(addError), addError);
  // A world-traversable directory: only the socket's own mode stands in the way.
  const dir = await Deno.makeTempDir({ prefix: "lilt-perm-" });
  await Deno.chmod(dir, 0o755);
  const t = await startTestServer({ modules: [] });
  const path = `${dir}/lilt.sock`;
  const admin = await startAdminSocket(t.server, path);
  try {
    const script = "import socket,sys\ns=socket.socket(socket.AF_UNIX)\n" +
      "try:\n s.connect(sys.argv[1]); print('connected')\n" +
      "except PermissionError: print('denied')\n" +
      "except Exception as e: print('other', e)\n";
    const run = await new Deno.Command("setpriv", {
      args: [
        "--reuid=lilt-test-other",
        "--regid=lilt-test-other",
        "--clear-groups",
        "/usr/bin/python3",
        "-c",
        script,
        path,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const out = new TextDecoder().decode(run.stdout).trim();
    assert.equal(out, "denied", new TextDecoder().decode(run.stderr));
    // The owner still can.
    const conn = await LineConn.open(path);
    assert.equal((await conn.call(1, "help")).ok, true);
    conn.close();
  } finally {
    await admin.close();
    await t.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
