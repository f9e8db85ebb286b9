// The single-file bundle for FreeBSD's deno package (scripts/bundle): built here and run under
// Deno from other directories, away from the checkout (which it may not read), as the rc.d
// script runs /usr/local/libexec/lilt/lilt.js; it starts without any native library when the
// store has no key, and with a key it names the SQLCipher library it needs and leaves the store
// as it was when that library is missing. The keyed parts need .tools/sqlcipher
// (scripts/sqlcipher/build, run by scripts/test) and fail saying so when it is missing.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { type CommandOutput, finish, startLiltProcess } from "../helpers/lilt_process.ts";
import { RawClient, roundTrip } from "../helpers/raw_client.ts";
import { testConfigText, TESTING_ON_POSTGRESQL } from "../helpers/test_server.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url)).replace(/\/$/, "");
const SQLCIPHER_LIBRARY = `${ROOT}/.tools/sqlcipher/libsqlcipher.so`;
const MODULES = ["disco", "roster", "presence", "offline"];
const PERMISSIONS = [
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-sys",
  "--allow-ffi",
];

/** Runs a command to its end; `env` replaces the given variables, `unset` removes others. */
async function run(
  command: string,
  args: string[],
  options: { cwd: string; env?: Record<string, string>; unset?: string[]; stdin?: string },
): Promise<CommandOutput> {
  const env = { ...Deno.env.toObject(), ...options.env };
  for (const name of options.unset ?? []) delete env[name];
  const child = new Deno.Command(command, {
    args,
    cwd: options.cwd,
    env,
    clearEnv: true,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return await finish(child, options.stdin);
}

async function names(dir: string): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir(dir)) found.push(entry.name);
  return found.sort();
}

async function sha256(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Builds the bundle into `dir/libexec/lilt/lilt.js` (the rc.d script's layout, two levels
 * below `dir`) with scripts/bundle run from `dir`, and gives the `deno run` arguments that run
 * it: the server's permissions, and the checkout out of reach.
 */
async function buildBundle(dir: string): Promise<{ bundle: string; lilt: string[] }> {
  const built = await run("bash", [`${ROOT}/scripts/bundle`, "libexec/lilt/lilt.js"], {
    cwd: dir,
  });
  assert.equal(built.code, 0, built.stderr);
  const bundle = `${dir}/libexec/lilt/lilt.js`;
  assert.equal(built.stderr, `lilt: wrote ${bundle}\n`);
  return { bundle, lilt: ["run", ...PERMISSIONS, `--deny-read=${ROOT}`, bundle] };
}

Deno.test("scripts/bundle writes one file that runs under Deno from elsewhere: version, check config, start, login, stop", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "lilt-bundle-" });
  try {
    await Deno.mkdir(`${tmp}/cwd`);
    await Deno.mkdir(`${tmp}/etc`);
    const { bundle, lilt } = await buildBundle(tmp);
    assert.deepEqual(await names(`${tmp}/libexec/lilt`), ["lilt.js"]);
    const text = await Deno.readTextFile(bundle);
    // It says how to run it, and imports nothing but Deno's node: built-ins.
    assert.match(
      text,
      /^\/\/ Lilt \d+\.\d+\.\d+, bundled by scripts\/bundle with Deno 2\.9\.6\. Run it with\n\/\/ deno 2\.9\.6: deno run --allow-net --allow-read --allow-write --allow-env --allow-sys --allow-ffi lilt\.js start -c FILE\n/,
    );
    const imports = [...text.matchAll(/^import [^;]*? from "([^"]+)";$/gm)].map((m) => m[1]);
    assert.ok(imports.length > 0);
    assert.deepEqual(imports.filter((specifier) => !specifier.startsWith("node:")), []);
    // One optional import stays: @redis/client's digest helper (which Lilt's cluster never
    // calls) loads @node-rs/xxhash on demand and throws a clear error inside it when missing.
    assert.doesNotMatch(text, /\bimport\("(?!node:|@node-rs\/xxhash")/);

    // A lilt.toml beside the bundle is not a configuration it looks for (the source tree's
    // directory is, when Lilt runs from source); a packaged Lilt takes -c, $LILT_CONFIG,
    // ./lilt.toml or /etc/lilt/lilt.toml.
    await Deno.writeTextFile(`${tmp}/libexec/lilt/lilt.toml`, "not = [toml");
    const noConfig = await run(Deno.execPath(), [...lilt, "check", "config"], {
      cwd: `${tmp}/cwd`,
      unset: ["LILT_CONFIG"],
    });
    assert.ok(!noConfig.stderr.includes(`${tmp}/libexec`), noConfig.stderr);
    assert.ok(!noConfig.stdout.includes(`${tmp}/libexec`), noConfig.stdout);

    // No key: no native library is needed, even with LILT_SQLCIPHER_LIBRARY pointing nowhere.
    const env = { LILT_SQLCIPHER_LIBRARY: `${tmp}/nowhere/libsqlcipher.so` };
    const config = `${tmp}/etc/lilt.toml`;
    await Deno.writeTextFile(config, testConfigText(`${tmp}/data`, { modules: MODULES }));
    const lines = (args: string[], stdin?: string) =>
      run(Deno.execPath(), [...lilt, ...args], { cwd: `${tmp}/cwd`, env, stdin });
    const version = await lines(["version"]);
    assert.equal(version.code, 0, version.stderr);
    assert.match(version.stdout, /^lilt \d+\.\d+\.\d+ \(deno 2\.9\.6\)\n$/);
    const checked = await lines(["check", "config", "-c", config]);
    assert.equal(checked.code, 0, checked.stderr);
    assert.equal(checked.stdout, `${config}: OK (1 host(s))\n`);
    const added = await lines(["user", "add", "alice@localhost", "-c", config], "pw-a\n");
    assert.equal(added.code, 0, added.stderr);

    const server = await startLiltProcess(config, 30_000, {
      command: Deno.execPath(),
      args: lilt,
      cwd: `${tmp}/cwd`,
      env,
    });
    try {
      const { client, jid } = await RawClient.login(server.port, "alice", "pw-a", "desk");
      assert.equal(jid, "alice@localhost/desk");
      client.send("<message to='bob@localhost' type='chat' id='m1'><body>hi</body></message>");
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
});

// A storage key encrypts the embedded store's file; a PostgreSQL store has no such key.
Deno.test(
  "the bundle with a storage key names the SQLCipher library it needs and leaves the store as it was",
  { ignore: TESTING_ON_POSTGRESQL },
  async () => {
    try {
      await Deno.stat(SQLCIPHER_LIBRARY);
    } catch {
      throw new Error(`${SQLCIPHER_LIBRARY} is missing: run scripts/sqlcipher/build`);
    }
    const tmp = await Deno.makeTempDir({ prefix: "lilt-bundle-key-" });
    try {
      await Deno.mkdir(`${tmp}/cwd`);
      const { lilt } = await buildBundle(tmp);
      const data = `${tmp}/data`;
      await Deno.mkdir(data);
      const config = `${data}/lilt.toml`;
      await Deno.writeTextFile(
        config,
        testConfigText(data, { modules: MODULES }) + '\n[storage]\nkey_file = "store.key"\n',
      );
      await Deno.writeTextFile(`${data}/store.key`, "correct horse battery staple\n", {
        mode: 0o600,
      });
      await Deno.chmod(`${data}/store.key`, 0o600);
      const nowhere = `${tmp}/nowhere/libsqlcipher.so`;
      const lines = (args: string[], env: Record<string, string>, unset: string[] = []) =>
        run(Deno.execPath(), [...lilt, ...args], { cwd: `${tmp}/cwd`, env, unset, stdin: "pw\n" });

      // No store yet, the library missing: a clear error, and no store is created.
      const before = await names(data);
      const first = await lines(["start", "-c", config], { LILT_SQLCIPHER_LIBRARY: nowhere });
      assert.equal(first.code, 1, first.stderr);
      const message = new RegExp(
        `^lilt: cannot start: Cannot open database '${data}/lilt.sqlite': ` +
          "An encrypted store needs the SQLCipher 4 library, and none was " +
          `found \\('${nowhere}' cannot be loaded: [^\\n]+\\): install SQLCipher 4's shared ` +
          "library \\(libsqlcipher\\.so, version 4\\.x\\) and set LILT_SQLCIPHER_LIBRARY to its " +
          "path, or put it where the dynamic linker finds libsqlcipher\\.so\n$",
      );
      assert.match(first.stderr, message);
      assert.deepEqual(await names(data), before);

      // With the library: an encrypted store, an account in it, a login.
      const withLibrary = { LILT_SQLCIPHER_LIBRARY: SQLCIPHER_LIBRARY };
      const added = await lines(["user", "add", "alice@localhost", "-c", config], withLibrary);
      assert.equal(added.code, 0, added.stderr);
      const server = await startLiltProcess(config, 30_000, {
        command: Deno.execPath(),
        args: lilt,
        cwd: `${tmp}/cwd`,
        env: withLibrary,
      });
      try {
        const { client } = await RawClient.login(server.port, "alice", "pw");
        await roundTrip(client);
        client.close();
        server.process.kill("SIGTERM");
        assert.equal((await server.process.status).code, 0, server.log);
      } finally {
        await server.stop();
      }
      const store = `${data}/lilt.sqlite`;
      const header = new TextDecoder("latin1").decode((await Deno.readFile(store)).slice(0, 16));
      assert.notEqual(header, "SQLite format 3\0");

      // The library gone again: the same error, the store byte for byte as it was.
      const digest = await sha256(store);
      const files = await names(data);
      const again = await lines(["start", "-c", config], { LILT_SQLCIPHER_LIBRARY: nowhere });
      assert.equal(again.code, 1);
      assert.match(again.stderr, message);
      assert.equal(await sha256(store), digest);
      assert.deepEqual(await names(data), files);

      // A packaged Lilt does not look for the library beside itself, as a source checkout looks
      // in .tools/: a SQLCipher build where ../../.tools/sqlcipher/ of the bundle would be is not
      // used (this machine's own libsqlcipher, if any, is Debian's SQLCipher 3, refused).
      await Deno.mkdir(`${tmp}/.tools/sqlcipher`, { recursive: true });
      await Deno.copyFile(SQLCIPHER_LIBRARY, `${tmp}/.tools/sqlcipher/libsqlcipher.so`);
      const beside = await lines(["start", "-c", config], {}, ["LILT_SQLCIPHER_LIBRARY"]);
      assert.equal(beside.code, 1, beside.stderr);
      assert.match(
        beside.stderr,
        /^lilt: cannot start: Cannot open database '[^']+': An encrypted store needs the SQLCipher 4 /,
      );
      assert.match(beside.stderr, /set LILT_SQLCIPHER_LIBRARY to its path/);
      assert.doesNotMatch(beside.stderr, /\.tools/);
      assert.equal(await sha256(store), digest);
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
);
