// The `lilt shell` REPL in a real terminal (tmux): tab completion of sections, commands and
// JIDs, command output, a password typed twice at the prompt never shown nor kept in history,
// watched stanzas as readable lines; and the one-shot commands' password prompts.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import type { CommandSpec } from "../../core/admin_commands.ts";
import { startAdminSocket } from "../../shell/admin_socket.ts";
import { watchCommands } from "../../shell/sections/watch.ts";
import { RawClient } from "../helpers/raw_client.ts";
import { startTestServer, testConfigText } from "../helpers/test_server.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

async function run(cmd: string, args: string[]) {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** Makes sure tmux is installed (installing it as root), or fails saying what is missing. */
async function ensureTmux(): Promise<void> {
  const found = await run("sh", ["-c", "command -v tmux"]);
  if (found.code === 0) return;
  if (Deno.uid() !== 0) {
    throw new Error(
      "This test needs tmux: run 'sudo apt-get install tmux' (or scripts/test as root)",
    );
  }
  const installed = await run("sh", [
    "-c",
    "DEBIAN_FRONTEND=noninteractive apt-get install -y tmux",
  ]);
  if (installed.code !== 0) {
    throw new Error(
      `This test needs tmux and 'apt-get install -y tmux' failed: ${installed.stderr}`,
    );
  }
}

/** A tmux session on a private tmux server, driven key by key. */
class Terminal {
  #socket = `lilt-test-${crypto.randomUUID().slice(0, 8)}`;

  async start(command: string[]): Promise<void> {
    const started = await this.#tmux([
      "new-session",
      "-d",
      "-s",
      "shell",
      "-x",
      "120",
      "-y",
      "40",
      "-c",
      ROOT,
      ...command,
    ]);
    assert.equal(started.code, 0, started.stderr);
  }

  /** Types text literally (one chunk: completion would not fire inside it). */
  async type(text: string): Promise<void> {
    assert.equal((await this.#tmux(["send-keys", "-t", "shell", "-l", text])).code, 0);
  }

  /** Presses a named key (Tab, Enter, C-d). */
  async press(key: string): Promise<void> {
    assert.equal((await this.#tmux(["send-keys", "-t", "shell", key])).code, 0);
  }

  async screen(): Promise<string> {
    return (await this.#tmux(["capture-pane", "-p", "-N", "-t", "shell", "-S", "-"])).stdout;
  }

  /** Waits until the screen matches `pattern` (10 s at most, then fails showing the screen). */
  async waitFor(pattern: RegExp): Promise<string> {
    const deadline = Date.now() + 10_000;
    while (true) {
      const screen = await this.screen();
      if (pattern.test(screen)) return screen;
      if (Date.now() > deadline) throw new Error(`Timed out waiting for ${pattern}:\n${screen}`);
      await new Promise((resolve) => setTimeout(resolve, 30));
    }
  }

  async alive(): Promise<boolean> {
    return (await this.#tmux(["has-session", "-t", "shell"])).code === 0;
  }

  async stop(): Promise<void> {
    await this.#tmux(["kill-server"]);
  }

  #tmux(args: string[]) {
    return run("tmux", ["-L", this.#socket, "-f", "/dev/null", ...args]);
  }
}

function userCommands(passwords: Map<string, string>): CommandSpec[] {
  return [
    {
      section: "user",
      name: "password",
      summary: "Changes an account's password",
      args: [{ name: "jid", kind: "jid" }, { name: "password", kind: "password" }],
      run: (_ctx, [jid, password]) => {
        passwords.set(jid, password);
        return { message: `Changed the password of ${jid}` };
      },
    },
    {
      section: "user",
      name: "list",
      summary: "Lists the accounts of a host",
      args: [{ name: "host", kind: "host" }],
      run: (ctx, [host]) => ({
        table: {
          columns: ["jid", "status"],
          rows: ctx.server.accounts.list(host).map((u) => [`${u}@${host}`, "enabled"]),
        },
      }),
    },
    {
      section: "server",
      name: "version",
      summary: "Shows the version",
      args: [],
      run: () => ({ message: "Lilt test" }),
    },
  ];
}

Deno.test("the REPL completes, runs commands and never shows or keeps a password", async () => {
  await ensureTmux();
  const t = await startTestServer({ modules: [], users: { alice: "old", bob: "old" } });
  const passwords = new Map<string, string>();
  t.server.commands.add([...userCommands(passwords), ...watchCommands()]);
  const admin = await startAdminSocket(t.server, `${t.dataDir}/lilt.sock`);
  const file = `${t.dataDir}/client.toml`;
  await Deno.writeTextFile(file, testConfigText(t.dataDir, { modules: [] }));
  const term = new Terminal();
  const secret = "Hunter2-not-on-screen";
  try {
    await term.start([Deno.execPath(), "run", "-A", "main.ts", "shell", "-c", file]);
    await term.waitFor(/lilt> $/m);

    // Section, command and JID completion, one key per chunk.
    await term.type("us");
    await term.press("Tab");
    await term.waitFor(/lilt> user $/m);
    await term.type("pa");
    await term.press("Tab");
    await term.waitFor(/lilt> user password $/m);
    await term.type("al");
    await term.press("Tab");
    await term.waitFor(/lilt> user password alice@localhost $/m);
    await term.press("Enter");
    await term.waitFor(/Password for alice@localhost: /);
    await term.type(secret);
    await term.press("Enter");
    await term.waitFor(/Repeat the password: /);
    await term.type(secret);
    await term.press("Enter");
    await term.waitFor(/Changed the password of alice@localhost/);
    assert.equal(passwords.get("alice@localhost"), secret);
    // A mismatch changes nothing (like prosodyctl adduser).
    await term.type("user password bob@localhost");
    await term.press("Enter");
    await term.waitFor(/Password for bob@localhost: /);
    await term.type(secret);
    await term.press("Enter");
    await term.waitFor(/(Repeat the password: [^]*){2}/);
    await term.type("Hunter3-typo");
    await term.press("Enter");
    await term.waitFor(/Error: The passwords differ; nothing was changed\n/);
    assert.equal(passwords.has("bob@localhost"), false);

    // A table, and help for a section.
    await term.type("user list localhost");
    await term.press("Enter");
    await term.waitFor(/jid\s+status\nalice@localhost\s+enabled\nbob@localhost\s+enabled/);
    await term.type("help user");
    await term.press("Enter");
    await term.waitFor(/user list <host>\s+Lists the accounts of a host/);
    // A single candidate completes with a trailing space; unknown commands are errors.
    await term.type("s");
    await term.press("Tab");
    await term.waitFor(/lilt> server $/m);
    await term.type("nosuch");
    await term.press("Enter");
    await term.waitFor(/Error: Unknown command 'server nosuch'/);

    // Watched stanzas print as readable lines, as JSON lines with --json; Ctrl-C stops.
    const { client } = await RawClient.login(t.port, "alice", "old", "desk");
    try {
      const cases = [
        ["", "watched", /\dZ out alice@localhost\/desk -> bob@localhost {2}<message /],
        [" --json", "json", /\{"time":"[^"]+","direction":"out","from":"alice@localhost\/desk"/],
      ] as const;
      for (const [flag, word, line] of cases) {
        await term.type(`watch stanzas alice@localhost${flag}`);
        await term.press("Enter");
        // The watch is in place once it shows one: until then, keep sending.
        for (let i = 0;; i++) {
          client.send(`<message to='bob@localhost'><body>${word} ${i}</body></message>`);
          const screen = await term.screen();
          if (line.test(screen)) break;
          if (i >= 200) throw new Error(`No watched line:\n${screen}`);
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        await term.press("C-c");
        await term.type(`server version${flag}`);
        await term.press("Enter");
        await term.waitFor(flag ? /"message": "Lilt test"/ : /^Lilt test$/m);
      }
    } finally {
      client.close();
    }

    const screen = await term.screen();
    assert.equal(screen.includes(secret), false, screen);

    await term.type("exit");
    await term.press("Enter");
    const deadline = Date.now() + 10_000;
    while (await term.alive()) {
      if (Date.now() > deadline) throw new Error(`The shell did not exit:\n${await term.screen()}`);
      await new Promise((resolve) => setTimeout(resolve, 30));
    }
    const historyPath = `${t.dataDir}/.shell_history`;
    assert.equal((await Deno.stat(historyPath)).mode! & 0o777, 0o600);
    const history = await Deno.readTextFile(historyPath);
    assert.match(
      history,
      /^user password alice@localhost\nuser password bob@localhost\nuser list localhost\n/,
    );
    assert.equal(history.includes(secret), false);
  } finally {
    await term.stop();
    await admin.close();
    await t.stop();
  }
});

Deno.test("one-shot password prompts on a terminal ask twice and refuse a mismatch", async () => {
  await ensureTmux();
  const t = await startTestServer({ modules: [], users: { alice: "old" } });
  const passwords = new Map<string, string>();
  t.server.commands.add(userCommands(passwords));
  const admin = await startAdminSocket(t.server, `${t.dataDir}/lilt.sock`);
  const file = `${t.dataDir}/client.toml`;
  await Deno.writeTextFile(file, testConfigText(t.dataDir, { modules: [] }));
  const term = new Terminal();
  try {
    // `lilt shell user password` and `lilt user passwd` (through the running server's shell).
    const lilt = `"${Deno.execPath()}" run -A main.ts`;
    await term.start([
      "sh",
      "-c",
      `${lilt} shell -c "${file}" user password alice@localhost; echo "first=$?"; ` +
      `${lilt} user passwd alice@localhost -c "${file}"; echo "second=$?"; sleep 60`,
    ]);
    await term.waitFor(/Password for alice@localhost: /);
    await term.type("typed-once");
    await term.press("Enter");
    await term.waitFor(/Repeat the password: /);
    await term.type("typed-otherwise");
    await term.press("Enter");
    await term.waitFor(/lilt: The passwords differ; nothing was changed\nfirst=1\n/);
    assert.equal(passwords.has("alice@localhost"), false);

    await term.waitFor(/first=1\n.*Password for alice@localhost: /);
    await term.type("typed-twice");
    await term.press("Enter");
    await term.waitFor(/(Repeat the password: [^]*){2}/);
    await term.type("typed-twice");
    await term.press("Enter");
    await term.waitFor(/Changed the password of alice@localhost\nsecond=0\n/);
    assert.equal(passwords.get("alice@localhost"), "typed-twice");
    assert.equal((await term.screen()).includes("typed-"), false);
  } finally {
    await term.stop();
    await admin.close();
    await t.stop();
  }
});
