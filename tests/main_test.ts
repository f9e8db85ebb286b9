// The `lilt` command line as an operator uses it: check config, user management while the
// server runs, start/reload/stop with signals, version and help.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { type LiltProcess, runLilt, startLiltProcess } from "./helpers/lilt_process.ts";
import { RawClient } from "./helpers/raw_client.ts";
import { testConfigText, TESTING_ON_POSTGRESQL } from "./helpers/test_server.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));

function lilt(args: string[], stdin?: string, options: { cwd?: string } = {}) {
  return runLilt(args, { stdin, cwd: options.cwd });
}

Deno.test("check config accepts the example configuration", async () => {
  const result = await lilt(["check", "config", "-c", "conf.example.toml"]);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /OK/);
});

Deno.test("check config reports file:line problems and exits 1", async () => {
  const dir = await Deno.makeTempDir();
  const file = `${dir}/broken.toml`;
  await Deno.writeTextFile(
    file,
    [
      'data_dir = "./data"',
      "c2s_stanza_size_limit = 12", // out of bounds
      "c2s_require_encrypton = true", // typo
      "[[host]]",
      'domain = "localhost"',
      'scram_iterations = "many"', // wrong type
    ].join("\n"),
  );
  try {
    const result = await lilt(["check", "config", "-c", file]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, new RegExp(`${file}:2: error: .*c2s_stanza_size_limit`));
    assert.match(
      result.stderr,
      new RegExp(`${file}:3: warning: .*did you mean 'c2s_require_encryption'`),
    );
    assert.match(result.stderr, new RegExp(`${file}:6: error: .*scram_iterations`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("check config names unknown modules with the line that lists them", async () => {
  const dir = await Deno.makeTempDir();
  const file = `${dir}/modules.toml`;
  await Deno.writeTextFile(
    file,
    'modules = ["ping", "pong"]\n[[host]]\ndomain = "localhost"\n[[host]]\n' +
      'domain = "b.localhost"\nmodules = ["disco", "no_such_module"]\n',
  );
  try {
    const result = await lilt(["check", "config", "-c", file]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, new RegExp(`${file}:1: error: unknown module 'pong'`));
    assert.match(result.stderr, new RegExp(`${file}:6: error: unknown module 'no_such_module'`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("check config reads the s2s CA files and names a bad one with its line", async () => {
  const dir = await Deno.makeTempDir();
  const file = `${dir}/s2s.toml`;
  await Deno.writeTextFile(`${dir}/garbage.pem`, "not a certificate\n");
  await Deno.writeTextFile(
    file,
    'data_dir = "./data"\ns2s_interfaces = ["127.0.0.1:5269"]\n' +
      's2s_ca_files = ["garbage.pem"]\n[[host]]\ndomain = "localhost"\n',
  );
  try {
    const result = await lilt(["check", "config", "-c", file]);
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      new RegExp(`${file}:3: error: .*'${dir}/garbage.pem'.*PEM CERTIFICATE`),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("check config refuses s2s_ca_files_only without s2s_ca_files, naming its line", async () => {
  const dir = await Deno.makeTempDir();
  const file = `${dir}/closed.toml`;
  await Deno.writeTextFile(
    file,
    'data_dir = "./data"\ns2s_interfaces = ["127.0.0.1:5269"]\ns2s_ca_files_only = true\n' +
      '[[host]]\ndomain = "localhost"\n',
  );
  try {
    const result = await lilt(["check", "config", "-c", file]);
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      new RegExp(`${file}:3: error: s2s_ca_files_only is on but s2s_ca_files is empty`),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("check config reports a TOML syntax error with its line", async () => {
  const dir = await Deno.makeTempDir();
  const file = `${dir}/syntax.toml`;
  await Deno.writeTextFile(file, 'data_dir = "./data"\nmodules = [\n"ping",\n= oops\n');
  try {
    const result = await lilt(["check", "config", "-c", file]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, new RegExp(`${file}:\\d+: error: `));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("start, user add while running, login, SIGHUP reload, SIGTERM stop", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lilt-cli-" });
  const file = `${dir}/lilt.toml`;
  await Deno.writeTextFile(
    file,
    testConfigText(dir).replace('level = "warning"', 'level = "info"').replace(
      "console = false",
      "console = true",
    ),
  );
  let started: LiltProcess | undefined;
  try {
    started = await startLiltProcess(file);
    const { process: server, port } = started;
    const added = await lilt(["user", "add", "carol@localhost", "-c", file], "carol-pw\n");
    assert.equal(added.code, 0, added.stderr);
    const again = await lilt(["user", "add", "carol@localhost", "-c", file], "x\n");
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already exists/);
    const { client } = await RawClient.login(port, "carol", "carol-pw");
    client.send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    assert.equal((await client.next((el) => el.attrs.id === "p")).attrs.type, "result");

    const changed = await lilt(["user", "passwd", "carol@localhost", "-c", file], "new-pw\n");
    assert.equal(changed.code, 0, changed.stderr);
    const { client: second } = await RawClient.login(port, "carol", "new-pw", "second");
    second.close();

    server.kill("SIGHUP");
    await started.waitFor(/Configuration reloaded/);

    const closing = client.next((el) => el.name === "error");
    server.kill("SIGTERM");
    const error = await closing;
    assert.ok(error.getChild("system-shutdown"));
    const status = await server.status;
    assert.equal(status.code, 0);

    const deleted = await lilt(["user", "del", "carol@localhost", "-c", file]);
    assert.equal(deleted.code, 0, deleted.stderr);
  } finally {
    await started?.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

// lilt backup copies the embedded store's file; PostgreSQL is backed up with pg_dump.
Deno.test("lilt backup into a directory that does not exist fails with one line", {
  ignore: TESTING_ON_POSTGRESQL,
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "lilt-cli-" });
  try {
    const file = `${dir}/lilt.toml`;
    await Deno.writeTextFile(file, testConfigText(dir));
    const added = await lilt(["user", "add", "dora@localhost", "-c", file], "dora-pw\n");
    assert.equal(added.code, 0, added.stderr);
    const missing = await lilt(["backup", `${dir}/backups/tonight.sqlite`, "-c", file]);
    assert.equal(missing.code, 1);
    assert.equal(
      missing.stderr,
      `lilt: backup failed: The directory '${dir}/backups' does not exist\n`,
    );
    assert.equal(missing.stdout, "");
    await assert.rejects(Deno.stat(`${dir}/backups`), Deno.errors.NotFound);
    // A relative FILE is the caller's, and success is silent (cron mails only failures).
    const made = await lilt(["backup", "tonight.sqlite", "-c", file], undefined, { cwd: dir });
    assert.deepEqual([made.code, made.stdout, made.stderr], [0, "", ""]);
    assert.ok((await Deno.stat(`${dir}/tonight.sqlite`)).size > 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("without -c, a command run from / finds the configuration next to main.ts", async () => {
  // Jobs run from elsewhere (cron: the user's home; systemd: /) still reach Lilt's directory.
  const expected = await Deno.stat(`${ROOT}lilt.toml`).then(
    () => `${ROOT}lilt.toml`,
    () => `${ROOT}conf.example.toml`,
  );
  const checked = await lilt(["check", "config"], undefined, { cwd: "/" });
  assert.ok(
    `${checked.stdout}${checked.stderr}`.includes(expected),
    `expected ${expected} in:\n${checked.stdout}${checked.stderr}`,
  );
  assert.doesNotMatch(checked.stderr, /No configuration file found/);
});

Deno.test("version and help", async () => {
  const version = await lilt(["version"]);
  assert.equal(version.code, 0);
  assert.match(version.stdout, /^lilt \d+\.\d+\.\d+/);
  for (const command of [["start"], ["check"], ["user"], ["version"]]) {
    const help = await lilt([...command, "--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Usage: lilt/);
  }
  const unknown = await lilt(["frobnicate"]);
  assert.equal(unknown.code, 2);
});
