// Tests for the account store: SCRAM credentials for both hashes, password checks, password
// preparation, and that no password ever reaches the database file.

import assert from "node:assert/strict";
import {
  AccountExistsError,
  AccountNotFoundError,
  AccountStore,
  ACTIVITY_FLUSH_MS,
  DEFAULT_ITERATIONS,
} from "../../../core/auth/accounts.ts";
import { PasswordPrepError, preparePassword } from "../../../core/auth/saslprep.ts";
import { deriveCredentials } from "../../../core/auth/scram.ts";
import { Database } from "../../../core/storage/database.ts";

const HOST = "example.com";

function memoryAccounts(): { database: Database; accounts: AccountStore } {
  const database = Database.open({ path: ":memory:" });
  return { database, accounts: new AccountStore(database, { iterations: 4096 }) };
}

Deno.test("accounts are created, listed, verified, changed and deleted", async () => {
  const { database, accounts } = memoryAccounts();
  assert.equal(accounts.exists(HOST, "juliet"), false);
  await accounts.create(HOST, "juliet", "r0m30");
  await accounts.create(HOST, "nurse", "secret");
  await accounts.create("example.net", "juliet", "other");
  assert.equal(accounts.exists(HOST, "juliet"), true);
  assert.deepEqual(accounts.list(HOST), ["juliet", "nurse"]);
  assert.equal(await accounts.verifyPassword(HOST, "juliet", "r0m30"), true);
  assert.equal(await accounts.verifyPassword(HOST, "juliet", "R0m30"), false);
  assert.equal(await accounts.verifyPassword(HOST, "juliet", "other"), false);
  assert.equal(await accounts.verifyPassword(HOST, "tybalt", "r0m30"), false);

  await accounts.setPassword(HOST, "juliet", "n3w");
  assert.equal(await accounts.verifyPassword(HOST, "juliet", "r0m30"), false);
  assert.equal(await accounts.verifyPassword(HOST, "juliet", "n3w"), true);

  assert.equal(accounts.delete(HOST, "juliet"), true);
  assert.equal(accounts.delete(HOST, "juliet"), false);
  assert.equal(accounts.exists(HOST, "juliet"), false);
  assert.equal(accounts.credentials(HOST, "juliet", "SHA-256"), undefined);
  assert.equal(await accounts.verifyPassword(HOST, "juliet", "n3w"), false);
  assert.equal(accounts.exists("example.net", "juliet"), true);
  database.close();
});

Deno.test("creating an existing account or changing a missing one throws", async () => {
  const { database, accounts } = memoryAccounts();
  await accounts.create(HOST, "juliet", "r0m30");
  await assert.rejects(() => accounts.create(HOST, "juliet", "x"), AccountExistsError);
  await assert.rejects(() => accounts.setPassword(HOST, "romeo", "x"), AccountNotFoundError);
  await assert.rejects(() => accounts.create(HOST, "", "x"), /non-empty username/);
  await assert.rejects(() => accounts.create(HOST, "romeo", ""), PasswordPrepError);
  assert.equal(await accounts.verifyPassword(HOST, "juliet", "r0m30"), true);
  database.close();
});

Deno.test("credentials exist for SHA-1 and SHA-256 with the configured iterations", async () => {
  const { database, accounts } = memoryAccounts();
  accounts.setIterations(5000);
  await accounts.create(HOST, "juliet", "r0m30");
  const sha1 = accounts.credentials(HOST, "juliet", "SHA-1")!;
  const sha256 = accounts.credentials(HOST, "juliet", "SHA-256")!;
  assert.equal(sha1.iterations, 5000);
  assert.equal(sha256.iterations, 5000);
  assert.equal(sha1.storedKey.length, 20);
  assert.equal(sha1.serverKey.length, 20);
  assert.equal(sha256.storedKey.length, 32);
  assert.equal(sha256.serverKey.length, 32);
  assert.equal(sha1.salt.length, 16);
  assert.notDeepEqual(sha1.salt, sha256.salt);
  // The stored keys are what RFC 5802 derives from the password and the stored salt.
  const again = await deriveCredentials("r0m30", {
    hash: "SHA-256",
    salt: sha256.salt,
    iterations: 5000,
  });
  assert.deepEqual(again.storedKey, sha256.storedKey);
  assert.deepEqual(again.serverKey, sha256.serverKey);

  // Existing credentials keep their iteration count; new passwords use the new one.
  accounts.setIterations(6000);
  assert.equal(accounts.credentials(HOST, "juliet", "SHA-1")!.iterations, 5000);
  assert.equal(await accounts.verifyPassword(HOST, "juliet", "r0m30"), true);
  await accounts.setPassword(HOST, "juliet", "r0m30");
  assert.equal(accounts.credentials(HOST, "juliet", "SHA-1")!.iterations, 6000);
  assert.notDeepEqual(accounts.credentials(HOST, "juliet", "SHA-1")!.salt, sha1.salt);
  database.close();
});

Deno.test("iteration counts are validated", () => {
  const { database, accounts } = memoryAccounts();
  assert.equal(new AccountStore(database).iterations, DEFAULT_ITERATIONS);
  assert.throws(() => accounts.setIterations(100), /from 4096 to/);
  assert.throws(() => accounts.setIterations(5000.5), /integer/);
  assert.throws(() => new AccountStore(database, { iterations: 0 }), RangeError);
  database.close();
});

Deno.test("imported credentials replace the old ones and create the account", async () => {
  const { database, accounts } = memoryAccounts();
  const salt = new Uint8Array(16).fill(7);
  const sha1 = await deriveCredentials("pencil", { hash: "SHA-1", salt, iterations: 4096 });
  accounts.setCredentials(HOST, "user", { "SHA-1": sha1 });
  assert.equal(accounts.exists(HOST, "user"), true);
  assert.deepEqual(accounts.credentials(HOST, "user", "SHA-1"), sha1);
  assert.equal(accounts.credentials(HOST, "user", "SHA-256"), undefined);
  assert.equal(await accounts.verifyPassword(HOST, "user", "pencil"), true);
  assert.throws(
    () => accounts.setCredentials(HOST, "user", { "SHA-256": sha1 }),
    /Expected 32-byte SHA-256 keys/,
  );
  database.close();
});

Deno.test("passwords are prepared with OpaqueString before hashing", async () => {
  assert.equal(preparePassword("pass\u00A0word"), "pass word");
  assert.equal(preparePassword("cafe\u0301"), "caf\u00E9");
  assert.equal(preparePassword("ΣΑΣ correct horse"), "ΣΑΣ correct horse");
  assert.equal(preparePassword("Ⅸ"), "Ⅸ"); // compatibility characters are kept (no NFKC)
  assert.throws(() => preparePassword("tab\there"), /U\+0009/);
  assert.throws(() => preparePassword("nul\0"), PasswordPrepError);
  assert.throws(() => preparePassword("zero\u200Bwidth"), /U\+200B/);
  assert.throws(() => preparePassword("private\uE000"), PasswordPrepError);
  assert.throws(() => preparePassword("lone\uD800"), PasswordPrepError);
  assert.throws(() => preparePassword(""), /non-empty/);

  const { database, accounts } = memoryAccounts();
  await accounts.create(HOST, "juliet", "caf\u00E9\u3000au lait");
  assert.equal(await accounts.verifyPassword(HOST, "juliet", "cafe\u0301 au lait"), true);
  assert.equal(await accounts.verifyPassword(HOST, "juliet", "cafe au lait"), false);
  assert.equal(await accounts.verifyPassword(HOST, "juliet", "caf\u00E9\tau lait"), false);
  await assert.rejects(() => accounts.create(HOST, "romeo", "bell\u0007"), PasswordPrepError);
  database.close();
});

Deno.test("the database file never contains the password", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const password = "Unmistakable-Pa55word-\u00E9t\u00E9";
    const database = Database.open({ path: `${dir}/lilt.sqlite` });
    const accounts = new AccountStore(database, { iterations: 4096 });
    await accounts.create(HOST, "juliet", password);
    await accounts.setPassword(HOST, "juliet", password + "2");
    assert.equal(await accounts.verifyPassword(HOST, "juliet", password + "2"), true);
    // Look while the WAL still holds the pages, and again after the checkpoint at close.
    const needles = [
      new TextEncoder().encode("Unmistakable"),
      new Uint8Array([..."Unmistakable"].flatMap((c) => [c.charCodeAt(0), 0])), // UTF-16LE
    ];
    const scan = () => {
      let files = 0;
      for (const entry of Deno.readDirSync(dir)) {
        const bytes = Deno.readFileSync(`${dir}/${entry.name}`);
        files++;
        for (const needle of needles) {
          assert.equal(indexOf(bytes, needle), -1, `password found in ${entry.name}`);
        }
      }
      return files;
    };
    assert.ok(scan() >= 2); // the database and its -wal file
    // The scan is able to find things: the username is there.
    assert.notEqual(
      indexOf(Deno.readFileSync(`${dir}/lilt.sqlite-wal`), new TextEncoder().encode("juliet")),
      -1,
    );
    database.close();
    scan();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an account added by another process is usable without a restart", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/lilt.sqlite`;
    const server = Database.open({ path });
    const serverAccounts = new AccountStore(server, { iterations: 4096 });
    assert.equal(serverAccounts.exists(HOST, "romeo"), false);

    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `import { Database } from ${
          JSON.stringify(import.meta.resolve("../../../core/storage/database.ts"))
        };
         import { AccountStore } from ${
          JSON.stringify(import.meta.resolve("../../../core/auth/accounts.ts"))
        };
         const db = Database.open({ path: ${JSON.stringify(path)} });
         await new AccountStore(db, { iterations: 4096 }).create("${HOST}", "romeo", "from-the-cli");
         db.close();`,
      ],
      stdout: "piped",
      stderr: "piped",
    });
    const result = await child.output();
    assert.equal(result.code, 0, new TextDecoder().decode(result.stderr));
    assert.equal(serverAccounts.exists(HOST, "romeo"), true);
    assert.equal(await serverAccounts.verifyPassword(HOST, "romeo", "from-the-cli"), true);
    server.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) {
      if (haystack[i + j] !== needle[j]) continue outer;
    }
    return i;
  }
  return -1;
}

Deno.test("login and logout times are written together later, and read back at once", async () => {
  const { database, accounts } = memoryAccounts();
  await accounts.create("a.example", "alice", "pw");
  await accounts.create("a.example", "bob", "pw");
  const stored = (user: string) => {
    const row = database.prepare(
      "SELECT last_login_ms, last_logout_ms FROM accounts WHERE user = ?",
    ).get(user) as { last_login_ms: number | null; last_logout_ms: number | null };
    return { last_login_ms: row.last_login_ms, last_logout_ms: row.last_logout_ms };
  };

  accounts.touchLogin("a.example", "alice", 1000);
  accounts.touchLogin("a.example", "bob", 2000);
  accounts.touchLogout("a.example", "alice", 3000);
  // Nothing written yet: a login costs no write of its own.
  assert.deepEqual(stored("alice"), { last_login_ms: null, last_logout_ms: null });
  // A read of the times sees them (it writes what is pending first).
  assert.equal(accounts.info("a.example", "alice")!.lastLogout, 3000);
  assert.deepEqual(stored("alice"), { last_login_ms: 1000, last_logout_ms: 3000 });
  assert.deepEqual(stored("bob"), { last_login_ms: 2000, last_logout_ms: null });

  // A later login keeps the logout written before; the timer writes it without a read.
  accounts.touchLogin("a.example", "alice", 4000);
  await new Promise((resolve) => setTimeout(resolve, ACTIVITY_FLUSH_MS + 200));
  assert.deepEqual(stored("alice"), { last_login_ms: 4000, last_logout_ms: 3000 });
  database.close();
});
