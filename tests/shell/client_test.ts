// `lilt shell` as scripts and cron use it: one command per run, exit status, --json output,
// human tables, password prompts read from stdin, standard input forwarded, relative paths,
// streaming that outlives stdin, and no server running.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { CommandError, type CommandSpec } from "../../core/admin_commands.ts";
import { startAdminSocket } from "../../shell/admin_socket.ts";
import { splitLine } from "../../shell/client.ts";
import { startTestServer, testConfigText } from "../helpers/test_server.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

function spawnLilt(args: string[], stdin: "null" | "piped" = "null", cwd = ROOT) {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}main.ts`, ...args],
    cwd,
    stdin,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

async function lilt(args: string[], input?: string, cwd = ROOT) {
  const child = spawnLilt(args, input === undefined ? "null" : "piped", cwd);
  if (input !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(input));
    await writer.close();
  }
  const out = await child.output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

function testCommands(passwords: Map<string, string>): CommandSpec[] {
  return [
    {
      section: "test",
      name: "hosts",
      summary: "A table",
      args: [],
      run: () => ({
        table: {
          columns: ["host", "users", "tls"],
          rows: [["localhost", 2, true], ["a.b", 10, null]],
        },
      }),
    },
    {
      section: "test",
      name: "say",
      summary: "A message",
      args: [{ name: "text", kind: "text", rest: true }],
      run: (_ctx, args) => ({ message: `You said: ${args[0]}` }),
    },
    {
      section: "test",
      name: "fail",
      summary: "Fails",
      args: [],
      run: () => {
        throw new CommandError("No such thing");
      },
    },
    {
      section: "test",
      name: "password",
      summary: "Takes a password",
      args: [{ name: "jid", kind: "jid" }, { name: "password", kind: "password" }],
      run: (_ctx, [jid, password]) => {
        passwords.set(jid, password);
        return { message: `Changed the password of ${jid}`, data: { jid } };
      },
    },
    {
      section: "test",
      name: "lines",
      summary: "Counts the lines of FILE, or of standard input for '-'",
      args: [{ name: "file", kind: "file", stdin: true }],
      run: async (ctx, [file]) => {
        const text = file === "-" ? await ctx.readInput!() : await Deno.readTextFile(file);
        return { data: { file, lines: text.split("\n").length - 1, last: text.slice(-20) } };
      },
    },
    {
      section: "test",
      name: "ticks",
      summary: "Streams",
      args: [],
      stream: true,
      run: (ctx) =>
        new Promise((resolve) => {
          let n = 0;
          const timer = setInterval(() => ctx.emit({ tick: ++n }), 10);
          ctx.signal.addEventListener("abort", () => {
            clearInterval(timer);
            resolve({});
          });
        }),
    },
  ];
}

Deno.test("one-shot commands print JSON, tables and messages with exit codes", async () => {
  const t = await startTestServer({ modules: [] });
  const passwords = new Map<string, string>();
  t.server.commands.add(testCommands(passwords));
  const admin = await startAdminSocket(t.server, `${t.dataDir}/lilt.sock`);
  const file = `${t.dataDir}/client.toml`;
  await Deno.writeTextFile(file, testConfigText(t.dataDir, { modules: [] }));
  try {
    const json = await lilt(["shell", "test", "hosts", "--json", "-c", file]);
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout), [
      { host: "localhost", users: 2, tls: true },
      { host: "a.b", users: 10, tls: null },
    ]);

    const table = await lilt(["shell", "-c", file, "test", "hosts"]);
    assert.equal(table.code, 0, table.stderr);
    assert.equal(table.stdout, "host       users  tls\nlocalhost  2      true\na.b        10\n");

    const said = await lilt(["shell", "-c", file, "test", "say", "hello", "world"]);
    assert.equal(said.stdout, "You said: hello world\n");
    const saidJson = await lilt(["shell", "-c", file, "--json", "test", "say", "hi"]);
    assert.deepEqual(JSON.parse(saidJson.stdout), { message: "You said: hi" });

    const failed = await lilt(["shell", "-c", file, "test", "fail", "--json"]);
    assert.equal(failed.code, 1);
    assert.equal(failed.stdout, "");
    assert.equal(failed.stderr, "lilt: No such thing\n");

    const unknown = await lilt(["shell", "-c", file, "nosuch", "cmd"]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /Unknown command 'nosuch cmd'/);

    // The password is not on the command line: it is read from stdin (no terminal).
    const changed = await lilt(
      ["shell", "-c", file, "test", "password", "alice@localhost", "--json"],
      "s3cret pass\n",
    );
    assert.equal(changed.code, 0, changed.stderr);
    assert.deepEqual(JSON.parse(changed.stdout), { jid: "alice@localhost" });
    assert.equal(passwords.get("alice@localhost"), "s3cret pass");
    assert.equal(changed.stdout.includes("s3cret"), false);

    // '-' sends the caller's standard input over the socket, however long (many lines).
    const many = Array.from({ length: 60_000 }, (_, i) => `user${i}@localhost pw${i}\n`).join("");
    const counted = await lilt(["shell", "-c", file, "test", "lines", "-", "--json"], many);
    assert.equal(counted.code, 0, counted.stderr);
    assert.deepEqual(JSON.parse(counted.stdout), {
      file: "-",
      lines: 60_000,
      last: many.slice(-20),
    });
    // A relative path is the caller's, wherever the server runs.
    const callerDir = await Deno.makeTempDir({ prefix: "lilt-caller-" });
    try {
      await Deno.writeTextFile(`${callerDir}/accounts.txt`, "a\nb\nc\n");
      const relative = await lilt(
        ["shell", "-c", file, "test", "lines", "accounts.txt", "--json"],
        undefined,
        callerDir,
      );
      assert.equal(relative.code, 0, relative.stderr);
      assert.deepEqual(JSON.parse(relative.stdout), {
        file: `${callerDir}/accounts.txt`,
        lines: 3,
        last: "a\nb\nc\n",
      });
    } finally {
      await Deno.remove(callerDir, { recursive: true });
    }
  } finally {
    await admin.close();
    await t.stop();
  }
});

/** Reads a child's stdout line by line. */
function lineReader(child: Deno.ChildProcess) {
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  return {
    /** The next line; throws when stdout ends first. */
    async next(): Promise<string> {
      while (!buffer.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`stdout ended; left: ${buffer}`);
        buffer += value;
      }
      const line = buffer.slice(0, buffer.indexOf("\n"));
      buffer = buffer.slice(line.length + 1);
      return line;
    },
    async drain(): Promise<void> {
      while (!(await reader.read()).done) { /* drain */ }
    },
  };
}

Deno.test("a streaming command outlives stdin; a signal stops it with 0, a lost server with 1", async () => {
  const t = await startTestServer({ modules: [] });
  t.server.commands.add(testCommands(new Map()));
  let admin = await startAdminSocket(t.server, `${t.dataDir}/lilt.sock`);
  const file = `${t.dataDir}/client.toml`;
  await Deno.writeTextFile(file, testConfigText(t.dataDir, { modules: [] }));
  const args = ["shell", "-c", file, "test", "ticks", "--json"];
  try {
    // stdin is /dev/null (nohup, a systemd unit), closed at once (a finished pipe), or closed
    // outright (`<&-`): the stream goes on well past the end of input, until a signal.
    const cases: [string, Deno.ChildProcess, Deno.Signal][] = [
      ["/dev/null", spawnLilt(args, "null"), "SIGTERM"],
      ["a closed pipe", spawnLilt(args, "piped"), "SIGINT"],
      [
        "a closed descriptor",
        new Deno.Command("sh", {
          args: ["-c", `exec "$0" run -A main.ts "$@" <&-`, Deno.execPath(), ...args],
          cwd: ROOT,
          stdout: "piped",
          stderr: "piped",
        }).spawn(),
        "SIGTERM",
      ],
    ];
    for (const [stdin, child, signal] of cases) {
      if (stdin === "a closed pipe") await child.stdin.close();
      const lines = lineReader(child);
      for (let n = 1; n <= 30; n++) {
        assert.deepEqual(JSON.parse(await lines.next()), { tick: n }, `stdin ${stdin}`);
      }
      child.kill(signal);
      await lines.drain();
      const { code } = await child.status;
      const stderr = await new Response(child.stderr).text();
      assert.equal(code, 0, `stdin ${stdin}, ${signal}: ${stderr}`);
      assert.equal(stderr, "");
    }

    // Readable lines without --json; the server going away ends the command with status 1.
    const child = spawnLilt(["shell", "-c", file, "test", "ticks"]);
    const lines = lineReader(child);
    assert.equal(await lines.next(), JSON.stringify({ tick: 1 }));
    await admin.close();
    await lines.drain();
    assert.equal((await child.status).code, 1);
    assert.equal(
      await new Response(child.stderr).text(),
      "lilt: The server closed the admin connection\n",
    );
    admin = await startAdminSocket(t.server, `${t.dataDir}/lilt.sock`);
  } finally {
    await admin.close();
    await t.stop();
  }
});

Deno.test("lilt start serves the shell; without a server the shell says so", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lilt-shell-" });
  const file = `${dir}/lilt.toml`;
  await Deno.writeTextFile(
    file,
    testConfigText(dir, { modules: [] }).replace("console = false", "console = true")
      .replace('level = "warning"', 'level = "info"'),
  );
  const server = spawnLilt(["start", "-c", file]);
  const reader = server.stderr.pipeThrough(new TextDecoderStream()).getReader();
  try {
    let log = "";
    while (!/serving localhost/.test(log)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`Server exited early:\n${log}`);
      log += value;
    }
    const info = await Deno.stat(`${dir}/lilt.sock`);
    assert.equal(info.mode! & 0o777, 0o600);

    const help = await lilt(["shell", "help", "-c", file]);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /Sections/);
    const helpJson = await lilt(["shell", "help", "--json", "-c", file]);
    assert.equal(typeof JSON.parse(helpJson.stdout).message, "string");
    const unknown = await lilt(["shell", "nosuch", "thing", "--json", "-c", file]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /^lilt: Unknown command 'nosuch thing'/);

    const second = await lilt(["start", "-c", file]);
    assert.equal(second.code, 1);
    assert.match(second.stderr, /Another Lilt server is running/);

    server.kill("SIGTERM");
    assert.equal((await server.status).code, 0);
    await assert.rejects(Deno.stat(`${dir}/lilt.sock`), Deno.errors.NotFound);

    const down = await lilt(["shell", "help", "-c", file]);
    assert.equal(down.code, 1);
    assert.equal(
      down.stderr,
      `lilt: Cannot connect to the Lilt admin socket at ${dir}/lilt.sock: ` +
        "is the server running?\n",
    );
    const usage = await lilt(["shell", "--help"]);
    assert.equal(usage.code, 0);
    assert.match(usage.stdout, /Usage: lilt shell/);
  } finally {
    try {
      server.kill("SIGKILL");
    } catch {
      // already exited
    }
    await reader.cancel().catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("command lines split like a shell", () => {
  assert.deepEqual(splitLine(`announce online localhost "Back in 5" 'it''s' a\\ b`), [
    "announce",
    "online",
    "localhost",
    "Back in 5",
    "its",
    "a b",
  ]);
  assert.deepEqual(splitLine(`x ""`), ["x", ""]);
  assert.throws(() => splitLine(`say "open`), /Unterminated " quote/);
  assert.deepEqual(splitLine(`say "open`, true), ["say", "open"]);
});
