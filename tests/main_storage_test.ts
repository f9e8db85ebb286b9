// Encryption at rest as an operator meets it: a store written by `lilt` with a key file is
// readable by the stock sqlcipher shell with that key and by nothing else; a wrong key stops
// `lilt start` and leaves the file as it was; `lilt storage encrypt|decrypt|rekey`, backups and
// restores keep the data and the key. Needs .tools/sqlcipher (scripts/sqlcipher/build, run by
// scripts/test) and Debian's sqlite3; fails saying so when either is missing.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { backupDatabase, verifyStore } from "../core/storage/backup.ts";
import { finish, startLiltProcess } from "./helpers/lilt_process.ts";
import { RawClient, roundTrip } from "./helpers/raw_client.ts";
import { startTestServer, testConfigText, TESTING_ON_POSTGRESQL } from "./helpers/test_server.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const SQLCIPHER_SHELL = `${ROOT}.tools/sqlcipher/sqlcipher`;
const MODULES = ["disco", "roster", "presence", "offline"];
const KEY = "correct horse battery staple";

async function run(command: string, args: string[], stdin?: string) {
  let child;
  try {
    child = new Deno.Command(command, {
      args,
      cwd: ROOT,
      stdin: stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error(
        `${command} is missing: run scripts/sqlcipher/build (the sqlcipher shell) and ` +
          "scripts/install-test-deps (sqlite3)",
      );
    }
    throw error;
  }
  return await finish(child, stdin);
}

function lilt(args: string[], stdin?: string) {
  return run(Deno.execPath(), ["run", "-A", `${ROOT}main.ts`, ...args], stdin);
}

/** The sqlcipher shell's output for `sql` run after `PRAGMA key` (which prints "ok"). */
async function sqlcipher(path: string, key: string, sql: string) {
  return await run(SQLCIPHER_SHELL, [path, `PRAGMA key = '${key.replaceAll("'", "''")}';`, sql]);
}

async function sha256(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function names(dir: string): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir(dir)) found.push(entry.name);
  return found.sort();
}

async function writeKey(path: string, key: string): Promise<void> {
  await Deno.writeTextFile(path, `${key}\n`, { mode: 0o600 });
  await Deno.chmod(path, 0o600);
}

/** A data dir with lilt.toml; `keyFile` (relative to it) goes into [storage] when given. */
async function setUp(keyFile?: string) {
  const dir = await Deno.makeTempDir({ prefix: "lilt-test-encrypted-" });
  const config = `${dir}/lilt.toml`;
  const storage = keyFile === undefined ? "" : `\n[storage]\nkey_file = "${keyFile}"\n`;
  await Deno.writeTextFile(config, testConfigText(dir, { modules: MODULES }) + storage);
  return { dir, config, store: `${dir}/lilt.sqlite` };
}

async function addUser(config: string, jid: string, password: string): Promise<void> {
  const added = await lilt(["user", "add", jid, "-c", config], `${password}\n`);
  assert.equal(added.code, 0, added.stderr);
}

// A key encrypts the embedded store's file (SQLCipher); a PostgreSQL store has no such key.
Deno.test(
  "accounts and messages written with a key are readable by the sqlcipher shell only, and a wrong key changes nothing",
  { ignore: TESTING_ON_POSTGRESQL },
  async () => {
    const { dir, config, store } = await setUp("store.key");
    try {
      await writeKey(`${dir}/store.key`, KEY);
      await addUser(config, "alice@localhost", "alice-pw");
      await addUser(config, "bob@localhost", "bob-pw");
      const server = await startLiltProcess(config);
      try {
        const { client } = await RawClient.login(server.port, "alice", "alice-pw", "desk");
        client.send(
          "<message to='bob@localhost' type='chat' id='m1'><body>meet at the orchard</body></message>",
        );
        await roundTrip(client);
        // An account created through the running server is committed to the WAL (not yet
        // checkpointed): encrypted there too.
        await addUser(config, "carol@localhost", "carol-pw");
        const wal = await Deno.readFile(`${store}-wal`);
        assert.ok(wal.length > 0);
        const walText = new TextDecoder("latin1").decode(wal);
        assert.ok(!walText.includes("carol") && !walText.includes("alice"));
        client.close();
        server.process.kill("SIGTERM");
        assert.equal((await server.process.status).code, 0);
      } finally {
        await server.stop();
      }

      const accounts = await sqlcipher(
        store,
        KEY,
        "SELECT host, user FROM accounts ORDER BY user;",
      );
      assert.equal(accounts.code, 0, accounts.stderr);
      assert.equal(accounts.stdout, "ok\nlocalhost|alice\nlocalhost|bob\nlocalhost|carol\n");
      // Every table, whatever the archive's layout: the offline message for bob is there.
      const dump = await run(SQLCIPHER_SHELL, [store, `PRAGMA key = '${KEY}';`, ".dump"]);
      assert.equal(dump.code, 0, dump.stderr);
      assert.match(dump.stdout, /INSERT INTO .*bob@localhost.*meet at the orchard/);
      const version = await sqlcipher(store, KEY, "PRAGMA cipher_version;");
      assert.match(version.stdout, /^ok\n4\.\d+\.\d+/);
      // Nothing readable on disk: not the header, not the message, not the names.
      const bytes = new TextDecoder("latin1").decode(await Deno.readFile(store));
      assert.ok(!bytes.startsWith("SQLite format 3"));
      assert.ok(!bytes.includes("orchard") && !bytes.includes("alice"));

      const plain = await run("sqlite3", [store, "SELECT count(*) FROM accounts;"]);
      assert.notEqual(plain.code, 0);
      assert.match(plain.stderr, /file is not a database/);
      const wrong = await sqlcipher(store, "not the key", "SELECT count(*) FROM accounts;");
      assert.match(wrong.stderr, /file is not a database/);

      // A wrong key stops the start and leaves the file byte-identical, with no -wal or -shm.
      const before = await sha256(store);
      const filesBefore = await names(dir);
      await writeKey(`${dir}/store.key`, "correct horse battery stapler");
      const started = await lilt(["start", "-c", config]);
      assert.equal(started.code, 1);
      assert.equal(
        started.stderr,
        `lilt: cannot start: The storage key does not open '${store}': it is encrypted with ` +
          "another key, or not encrypted, or not a database\n",
      );
      assert.equal(await sha256(store), before);
      assert.deepEqual(await names(dir), filesBefore);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

// A key encrypts the embedded store's file (SQLCipher); a PostgreSQL store has no such key.
Deno.test("storage encrypt, rekey and decrypt keep the data and change who can read it", {
  ignore: TESTING_ON_POSTGRESQL,
}, async () => {
  const { dir, config: plainConfig, store } = await setUp();
  try {
    await addUser(plainConfig, "alice@localhost", "alice-pw");
    const config = `${dir}/keyed.toml`;
    await Deno.writeTextFile(
      config,
      (await Deno.readTextFile(plainConfig)) + '\n[storage]\nkey_file = "store.key"\n',
    );
    await writeKey(`${dir}/store.key`, KEY);

    const encrypted = await lilt(["storage", "encrypt", "-c", config]);
    assert.equal(encrypted.code, 0, encrypted.stderr);
    assert.equal(
      encrypted.stdout,
      `Encrypted ${store} with the key of storage.key_file (${dir}/store.key)\n`,
    );
    assert.match(
      (await run("sqlite3", [store, "SELECT 1 FROM accounts;"])).stderr,
      /not a database/,
    );
    assert.equal((await sqlcipher(store, KEY, "SELECT user FROM accounts;")).stdout, "ok\nalice\n");
    // The old file is not kept next to it (a plain copy would undo the encryption).
    assert.deepEqual(await names(dir), ["keyed.toml", "lilt.sqlite", "lilt.toml", "store.key"]);
    const again = await lilt(["storage", "encrypt", "-c", config]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /is not a plain SQLite database \(is it encrypted already\?\)/);

    // rekey: the new key comes from a file, never from the command line.
    const noFile = await lilt(["storage", "rekey", "-c", config]);
    assert.equal(noFile.code, 2);
    assert.match(noFile.stderr, /storage rekey needs --new-key-file FILE/);
    await writeKey(`${dir}/new.key`, "a new key");
    await Deno.chmod(`${dir}/new.key`, 0o644);
    const exposed = await lilt([
      "storage",
      "rekey",
      "--new-key-file",
      `${dir}/new.key`,
      "-c",
      config,
    ]);
    assert.equal(exposed.code, 1);
    assert.match(exposed.stderr, /--new-key-file '.*new\.key' can be accessed by group or others/);
    await Deno.chmod(`${dir}/new.key`, 0o600);
    const rekeyed = await lilt([
      "storage",
      "rekey",
      "--new-key-file",
      `${dir}/new.key`,
      "-c",
      config,
    ]);
    assert.equal(rekeyed.code, 0, rekeyed.stderr);
    assert.match(rekeyed.stdout, /^Changed the key of .*; set storage\.key_file = ".*new\.key"/);
    assert.match(
      (await sqlcipher(store, KEY, "SELECT user FROM accounts;")).stderr,
      /not a database/,
    );
    assert.equal(
      (await sqlcipher(store, "a new key", "SELECT user FROM accounts;")).stdout,
      "ok\nalice\n",
    );
    // With the old key still configured, start refuses and says why.
    const stale = await lilt(["start", "-c", config]);
    assert.equal(stale.code, 1);
    assert.match(stale.stderr, /The storage key does not open/);

    await writeKey(`${dir}/store.key`, "a new key");
    const decrypted = await lilt(["storage", "decrypt", "-c", config]);
    assert.equal(decrypted.code, 0, decrypted.stderr);
    assert.match(
      decrypted.stdout,
      /^Decrypted .*; remove storage\.key_file .* before starting Lilt/,
    );
    const plain = await run("sqlite3", [store, "SELECT user FROM accounts; PRAGMA user_version;"]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stdout, /^alice\n\d+\n$/);
    // The plain store serves again without a key: alice still logs in.
    const server = await startLiltProcess(plainConfig);
    try {
      const { client } = await RawClient.login(server.port, "alice", "alice-pw");
      client.close();
    } finally {
      await server.stop();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// A key encrypts the embedded store's file (SQLCipher); a PostgreSQL store has no such key.
Deno.test(
  "an encrypted store's backups are encrypted with its key, restore with it, and storage commands wait for the server to stop",
  { ignore: TESTING_ON_POSTGRESQL },
  async () => {
    const { dir, config, store } = await setUp("store.key");
    try {
      await writeKey(`${dir}/store.key`, KEY);
      await addUser(config, "alice@localhost", "alice-pw");
      const backup = `${dir}/backup.sqlite`;
      const server = await startLiltProcess(config);
      try {
        const refused = await lilt(["storage", "decrypt", "-c", config]);
        assert.equal(refused.code, 1);
        assert.match(refused.stderr, /cannot decrypt the store while the server is running/);
        const backedUp = await lilt(["backup", backup, "-c", config]);
        assert.equal(backedUp.code, 0, backedUp.stderr);
      } finally {
        await server.stop();
      }
      assert.match(
        (await run("sqlite3", [backup, "SELECT 1 FROM accounts;"])).stderr,
        /not a database/,
      );
      assert.equal(
        (await sqlcipher(backup, KEY, "SELECT user FROM accounts; PRAGMA journal_mode;")).stdout,
        "ok\nalice\ndelete\n",
      );

      // Restore it over a store that lost the account; alice logs in again afterwards.
      const deleted = await lilt(["user", "del", "alice@localhost", "-c", config]);
      assert.equal(deleted.code, 0, deleted.stderr);
      const restored = await lilt(["restore", backup, "-c", config]);
      assert.equal(restored.code, 0, restored.stderr);
      assert.equal(
        (await sqlcipher(store, KEY, "SELECT user FROM accounts;")).stdout,
        "ok\nalice\n",
      );
      const again = await startLiltProcess(config);
      try {
        const { client } = await RawClient.login(again.port, "alice", "alice-pw");
        client.close();
      } finally {
        await again.stop();
      }

      // A plain backup cannot be restored under a key: it would not open at start.
      const plainCopy = `${dir}/plain.sqlite`;
      const decryptedConfig = `${dir}/plain.toml`;
      await Deno.writeTextFile(
        decryptedConfig,
        testConfigText(`${dir}/other`, { modules: MODULES }),
      );
      await addUser(decryptedConfig, "carol@localhost", "carol-pw");
      await Deno.copyFile(`${dir}/other/lilt.sqlite`, plainCopy);
      const mismatch = await lilt(["restore", plainCopy, "-c", config]);
      assert.equal(mismatch.code, 1);
      assert.match(
        mismatch.stderr,
        /restore failed: Cannot open '.*plain\.sqlite': The storage key/,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test("the running server's own backup of an encrypted store is encrypted with the same key", async () => {
  const t = await startTestServer({
    users: { alice: "alice-pw" },
    modules: MODULES,
    extraToml: `[storage]\nkey = "${KEY}"\n`,
  });
  const backupDir = await Deno.makeTempDir({ prefix: "lilt-test-backups-" });
  try {
    const file = `${backupDir}/online.sqlite`;
    await backupDatabase(t.server.database, file);
    verifyStore(file, { key: KEY });
    assert.throws(
      () => verifyStore(file),
      /is not a usable SQLite database: file is not a database \(if it is encrypted, set storage\.key_file to its key\)/,
    );
    assert.throws(() => verifyStore(file, { key: "other" }), /The storage key does not open/);
    assert.equal((await sqlcipher(file, KEY, "SELECT user FROM accounts;")).stdout, "ok\nalice\n");
  } finally {
    await t.stop();
    await Deno.remove(backupDir, { recursive: true });
  }
});
