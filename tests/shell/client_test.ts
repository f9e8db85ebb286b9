// `lilt shell` as scripts and cron use it: one command per run, exit status, --json output,
// human tables, password prompts read from stdin, streaming, and no server running.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { CommandError, type CommandSpec } from "../../core/admin_commands.ts";
import { startAdminSocket } from "../../shell/admin_socket.ts";
import { splitLine } from "../../shell/client.ts";
import { startTestServer, testConfigText } from "../helpers/test_server.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

function spawnLilt(args: string[], stdin: "null" | "piped" = "null") {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts", ...args],
    cwd: ROOT,
    stdin,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

async function lilt(args: string[], input?: string) {
  const child = spawnLilt(args, input === undefined ? "null" : "piped");
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
  } finally {
    await admin.close();
    await t.stop();
  }
});

Deno.test("a streaming command prints JSON lines until stdin ends", async () => {
  const t = await startTestServer({ modules: [] });
  t.server.commands.add(testCommands(new Map()));
  const admin = await startAdminSocket(t.server, `${t.dataDir}/lilt.sock`);
  const file = `${t.dataDir}/client.toml`;
  await Deno.writeTextFile(file, testConfigText(t.dataDir, { modules: [] }));
  try {
    const child = spawnLilt(["shell", "-c", file, "test", "ticks", "--json"], "piped");
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (text.split("\n").length < 3) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    const lines = text.split("\n");
    assert.deepEqual(JSON.parse(lines[0]), { tick: 1 });
    assert.deepEqual(JSON.parse(lines[1]), { tick: 2 });
    await child.stdin.close();
    while (!(await reader.read()).done) { /* drain */ }
    const status = await child.status;
    assert.equal(status.code, 0);
    await child.stderr.cancel();
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
