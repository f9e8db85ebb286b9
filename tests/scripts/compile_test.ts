// The one file an operator installs: scripts/compile's argument handling (targets, outputs,
// DENORT_BIN) without the runtime download; main.ts run as the compiled binary runs it (the
// compile script's entry and permissions) from a copy of the repository in another directory,
// with a configuration elsewhere and the checkout and the copy both unreadable to it, which
// proves no code path reads files relative to the source tree; and, where a denort runtime is
// found on this machine, a real compile.

import assert from "node:assert/strict";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { type CommandOutput, finish, startLiltProcess } from "../helpers/lilt_process.ts";
import { RawClient, roundTrip } from "../helpers/raw_client.ts";
import { testConfigText } from "../helpers/test_server.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url)).replace(/\/$/, "");
const COMPILE = `${ROOT}/scripts/compile`;
const MODULES = ["disco", "roster", "presence", "offline"];
const HOST_TRIPLE = Deno.build.arch === "aarch64"
  ? "aarch64-unknown-linux-gnu"
  : "x86_64-unknown-linux-gnu";
const OTHER_TRIPLE = HOST_TRIPLE === "x86_64-unknown-linux-gnu"
  ? "aarch64-unknown-linux-gnu"
  : "x86_64-unknown-linux-gnu";

/** Runs a command to its end; `env` is added to this process's environment. */
async function run(
  command: string,
  args: string[],
  options: { cwd: string; env?: Record<string, string>; stdin?: string },
): Promise<CommandOutput> {
  const child = new Deno.Command(command, {
    args,
    cwd: options.cwd,
    env: options.env,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return await finish(child, options.stdin);
}

/** scripts/compile with `args`, run from `cwd`, with `env` instead of an inherited DENORT_BIN. */
async function compileScript(args: string[], cwd: string, env: Record<string, string> = {}) {
  const inherited = Deno.env.toObject();
  delete inherited.DENORT_BIN;
  const child = new Deno.Command("bash", {
    args: [COMPILE, ...args],
    cwd,
    env: { ...inherited, ...env },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return await finish(child);
}

/** The permissions scripts/lib.sh grants the server (LILT_DENO_PERMS), one per element. */
async function liltPermissions(): Promise<string[]> {
  const out = await run(
    "bash",
    ["-c", `source ${ROOT}/scripts/lib.sh && printf '%s\\n' "\${LILT_DENO_PERMS[@]}"`],
    { cwd: ROOT },
  );
  assert.equal(out.code, 0, out.stderr);
  return out.stdout.trim().split("\n");
}

/** One parsed `deno compile` command of `scripts/compile --dry-run`. */
interface CompileCommand {
  permissions: string[];
  target: string;
  output: string;
  entry: string;
}

function parseDryRun(stdout: string): CompileCommand[] {
  return stdout.trim().split("\n").map((line) => {
    const words = line.split(" ");
    assert.equal(words[1], "compile", line);
    return {
      permissions: words.filter((w) => w.startsWith("--allow-") || w.startsWith("--deny-")),
      target: words[words.indexOf("--target") + 1],
      output: words[words.indexOf("--output") + 1],
      entry: words[words.length - 1],
    };
  });
}

async function names(dir: string): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir(dir)) found.push(entry.name);
  return found.sort();
}

Deno.test("scripts/compile refuses targets other than Linux x86_64 and aarch64, and bad arguments", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lilt-compile-args-" });
  try {
    for (const target of ["riscv64", "x86_64-unknown-freebsd", "aarch64-apple-darwin"]) {
      const out = await compileScript(["--target", target], dir);
      assert.equal(out.code, 2, out.stderr);
      assert.match(
        out.stderr,
        new RegExp(
          `^lilt: unsupported target '${target}': Lilt builds for x86_64-unknown-linux-gnu ` +
            "and aarch64-unknown-linux-gnu \\(--target x86_64\\|aarch64\\); for FreeBSD run " +
            "scripts/bundle\n$",
        ),
      );
    }
    const noValue = await compileScript(["--target"], dir);
    assert.equal(noValue.code, 2);
    assert.match(noValue.stderr, /^lilt: --target needs a value \(x86_64 or aarch64\)\nUsage:/);
    const unknown = await compileScript(["--fast"], dir);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /^lilt: unknown option '--fast'\nUsage: scripts\/compile/);
    const twoOutputs = await compileScript(["a", "b"], dir);
    assert.equal(twoOutputs.code, 2);
    assert.match(twoOutputs.stderr, /^lilt: one OUTPUT only \(found 'a' and 'b'\)/);
    await Deno.writeTextFile(`${dir}/file`, "");
    const fileForMany = await compileScript(["--all", "--dry-run", `${dir}/file`], dir);
    assert.equal(fileForMany.code, 2);
    assert.equal(
      fileForMany.stderr,
      `lilt: with several targets OUTPUT is a directory, and '${dir}/file' is a file\n`,
    );
    // Nothing was built or created on the way.
    assert.deepEqual(await names(dir), ["file"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("scripts/compile --dry-run builds main.ts with the server's permissions for each target and output", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lilt-compile-dry-" });
  try {
    const permissions = await liltPermissions();
    assert.deepEqual(permissions, [
      "--allow-net",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--allow-sys",
      "--allow-ffi",
    ]);
    const cases: [string[], [string, string][]][] = [
      [[], [[HOST_TRIPLE, `${ROOT}/dist/lilt`]]],
      [["--target", "aarch64", "out/lilt-arm"], [[
        "aarch64-unknown-linux-gnu",
        `${dir}/out/lilt-arm`,
      ]]],
      [["--target=x86_64", "--output", dir], [["x86_64-unknown-linux-gnu", `${dir}/lilt`]]],
      [["-t", "arm64", "-o", "new/"], [["aarch64-unknown-linux-gnu", `${dir}/new/lilt`]]],
      [["--all", "bin"], [
        ["x86_64-unknown-linux-gnu", `${dir}/bin/lilt-x86_64-unknown-linux-gnu`],
        ["aarch64-unknown-linux-gnu", `${dir}/bin/lilt-aarch64-unknown-linux-gnu`],
      ]],
      [["--target", "aarch64", "--all", "--target", "x86_64"], [
        ["aarch64-unknown-linux-gnu", `${ROOT}/dist/lilt-aarch64-unknown-linux-gnu`],
        ["x86_64-unknown-linux-gnu", `${ROOT}/dist/lilt-x86_64-unknown-linux-gnu`],
      ]],
    ];
    for (const [args, expected] of cases) {
      const out = await compileScript(["--dry-run", ...args], dir);
      assert.equal(out.code, 0, `${args.join(" ")}: ${out.stderr}`);
      const commands = parseDryRun(out.stdout);
      assert.deepEqual(
        commands.map((c) => [c.target, c.output]),
        expected,
        args.join(" "),
      );
      for (const command of commands) {
        assert.deepEqual(command.permissions, permissions);
        assert.equal(command.entry, "main.ts");
      }
    }
    // A dry run writes nothing.
    assert.deepEqual(await names(dir), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("scripts/compile checks DENORT_BIN before building: present, executable, for the target, one target", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lilt-compile-denort-" });
  try {
    const missing = await compileScript(["--target", "x86_64", `${dir}/lilt`], dir, {
      DENORT_BIN: `${dir}/denort`,
    });
    assert.equal(missing.code, 1);
    assert.equal(
      missing.stderr,
      `lilt: DENORT_BIN=${dir}/denort does not exist: point it at the denort binary unzipped ` +
        "from denort-x86_64-unknown-linux-gnu.zip of Deno 2.9.6\n",
    );
    await Deno.writeTextFile(`${dir}/denort`, "not a program");
    const notExecutable = await compileScript([`${dir}/lilt`], dir, {
      DENORT_BIN: `${dir}/denort`,
    });
    assert.equal(notExecutable.code, 1);
    assert.equal(
      notExecutable.stderr,
      `lilt: DENORT_BIN=${dir}/denort is not an executable file\n`,
    );
    await Deno.chmod(`${dir}/denort`, 0o755);
    const notElf = await compileScript([`${dir}/lilt`], dir, { DENORT_BIN: `${dir}/denort` });
    assert.equal(notElf.code, 1);
    assert.equal(notElf.stderr, `lilt: DENORT_BIN=${dir}/denort is not a Linux (ELF) executable\n`);
    // Deno itself is an ELF for this machine's architecture: the wrong runtime for the other.
    const otherArch = await compileScript(["--target", OTHER_TRIPLE, `${dir}/lilt`], dir, {
      DENORT_BIN: Deno.execPath(),
    });
    assert.equal(otherArch.code, 1);
    assert.match(
      otherArch.stderr,
      new RegExp(`^lilt: DENORT_BIN=\\S+ is not built for ${OTHER_TRIPLE} \\(ELF machine `),
    );
    const many = await compileScript(["--all", dir], dir, { DENORT_BIN: Deno.execPath() });
    assert.equal(many.code, 2);
    assert.match(many.stderr, /^lilt: DENORT_BIN names one runtime but 2 targets were asked for/);
    assert.deepEqual(await names(dir), ["denort"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main.ts run as the compiled binary runs it, from a copy elsewhere with a config elsewhere, reads nothing of the source tree", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "lilt-copy-" });
  const copy = `${tmp}/copy`;
  const cwd = `${tmp}/cwd`;
  const etc = `${tmp}/etc`;
  try {
    await Deno.mkdir(copy);
    await Deno.mkdir(cwd);
    await Deno.mkdir(etc);
    // The tree without its history, builds and toolchain (node_modules comes along: the
    // binary embeds it the same way).
    const copied = await run("bash", [
      "-c",
      'tar -C "$1" --exclude=./.git --exclude=./.tools --exclude=./dist --exclude=./data ' +
      '--exclude=./scripts/toolchain/node_modules -cf - . | tar -C "$2" -xf -',
      "copy",
      ROOT,
      copy,
    ], { cwd: tmp });
    assert.equal(copied.code, 0, copied.stderr);

    // The copy's compile script says what the binary runs: its entry and its permissions.
    // This Deno goes first on the PATH so the copy does not install one of its own.
    const dryRun = await run("bash", [`${copy}/scripts/compile`, "--dry-run"], {
      cwd,
      env: { PATH: `${dirname(Deno.execPath())}:${Deno.env.get("PATH") ?? ""}` },
    });
    assert.equal(dryRun.code, 0, dryRun.stderr);
    const [compiled] = parseDryRun(dryRun.stdout);
    assert.equal(compiled.output, `${copy}/dist/lilt`);
    // The checkout and the copy are both out of reach: a file read relative to the source
    // (a schema, a default file, a library beside the code) fails with NotCapable. Loading the
    // modules themselves is not a read the permissions govern, as in the binary.
    const lilt = [
      "run",
      ...compiled.permissions,
      `--deny-read=${ROOT},${copy}`,
      `${copy}/${compiled.entry}`,
    ];
    const env = { LILT_SQLCIPHER_LIBRARY: `${tmp}/nowhere/libsqlcipher.so` };
    const liltCommand = (args: string[], stdin?: string) =>
      run(Deno.execPath(), [...lilt, ...args], { cwd, env, stdin });

    // The fence holds: the copy's own example configuration cannot be read.
    const fenced = await liltCommand(["check", "config", "-c", `${copy}/conf.example.toml`]);
    assert.equal(fenced.code, 1);
    assert.match(
      fenced.stderr,
      /conf\.example\.toml: error: cannot read the file: Requires read access/,
    );

    const config = `${etc}/lilt.toml`;
    await Deno.writeTextFile(config, testConfigText(`${tmp}/var/lib/lilt`, { modules: MODULES }));
    const version = await liltCommand(["version"]);
    assert.equal(version.code, 0, version.stderr);
    assert.match(version.stdout, /^lilt \d+\.\d+\.\d+ \(deno \d+\.\d+\.\d+\)\n$/);
    const checked = await liltCommand(["check", "config", "-c", config]);
    assert.equal(checked.code, 0, checked.stderr);
    assert.match(checked.stdout, new RegExp(`^${config}: OK \\(1 host\\(s\\)\\)\n$`));
    const added = await liltCommand(["user", "add", "alice@localhost", "-c", config], "pw-a\n");
    assert.equal(added.code, 0, added.stderr);

    const server = await startLiltProcess(config, 30_000, {
      command: Deno.execPath(),
      args: lilt,
      cwd,
      env,
    });
    try {
      // The self-signed certificate of the first start (an npm package loaded on demand).
      assert.ok((await names(`${tmp}/var/lib/lilt/certs`)).length > 0);
      const { client, jid } = await RawClient.login(server.port, "alice", "pw-a", "desk");
      assert.equal(jid, "alice@localhost/desk");
      await roundTrip(client);
      client.close();
      server.process.kill("SIGTERM");
      assert.equal((await server.process.status).code, 0, server.log);
      assert.doesNotMatch(server.log, /NotCapable|read access/);
    } finally {
      await server.stop();
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

/** A denort runtime on this machine: $DENORT_BIN, or the one Deno cached on an earlier compile. */
function localDenort(): { env: Record<string, string> } | undefined {
  const named = Deno.env.get("DENORT_BIN");
  if (named) return { env: { DENORT_BIN: named } };
  const denoDir = Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME") ?? "/root"}/.cache/deno`;
  const cached = `${denoDir}/dl/release/v2.9.6/denort-${HOST_TRIPLE}.zip`;
  try {
    Deno.statSync(cached);
    return { env: {} };
  } catch {
    return undefined;
  }
}

const denort = localDenort();
if (!denort) {
  console.log(
    "compile_test: no denort runtime here ($DENORT_BIN unset, none cached in DENO_DIR, and " +
      "Deno's release download is unreachable), so the real compile test is skipped",
  );
}

Deno.test({
  name: "the compiled binary runs from another directory: version, check config, start, login",
  ignore: denort === undefined,
  async fn() {
    const tmp = await Deno.makeTempDir({ prefix: "lilt-binary-" });
    try {
      const binary = `${tmp}/bin/lilt`;
      const built = await run("bash", [COMPILE, "--output", binary], {
        cwd: tmp,
        env: denort!.env,
      });
      assert.equal(built.code, 0, built.stderr);
      const config = `${tmp}/lilt.toml`;
      await Deno.writeTextFile(config, testConfigText(`${tmp}/data`, { modules: MODULES }));
      const version = await run(binary, ["version"], { cwd: "/" });
      assert.match(version.stdout, /^lilt \d+\.\d+\.\d+ /);
      const checked = await run(binary, ["check", "config", "-c", config], { cwd: "/" });
      assert.equal(checked.code, 0, checked.stderr);
      const added = await run(binary, ["user", "add", "alice@localhost", "-c", config], {
        cwd: "/",
        stdin: "pw-a\n",
      });
      assert.equal(added.code, 0, added.stderr);
      const server = await startLiltProcess(config, 30_000, {
        command: binary,
        args: [],
        cwd: "/",
      });
      try {
        const { client } = await RawClient.login(server.port, "alice", "pw-a");
        await roundTrip(client);
        client.close();
        server.process.kill("SIGTERM");
        assert.equal((await server.process.status).code, 0, server.log);
      } finally {
        await server.stop();
      }
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
