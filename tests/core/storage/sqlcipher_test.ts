// The SQLCipher driver against node:sqlite: the same statements give the same values and errors,
// a key that does not open a file changes nothing in it, and only SQLCipher 4 is accepted. These
// tests need .tools/sqlcipher (scripts/sqlcipher/build; scripts/test builds it) and fail saying
// so when it is missing.

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { openConnection, type SqlConnection } from "../../../core/storage/connection.ts";
import { Database } from "../../../core/storage/database.ts";
import {
  inspectSqlCipherLibrary,
  loadSqlCipher,
  openSqlCipher,
  SqlCipherUnavailableError,
  StorageKeyError,
} from "../../../core/storage/sqlcipher.ts";
import { Storage } from "../../../core/storage/stores.ts";

/** Loads SQLCipher or fails the test with the loader's own instructions. */
function requireSqlCipher(): void {
  try {
    loadSqlCipher();
  } catch (error) {
    throw new Error(`These tests need SQLCipher 4: ${(error as Error).message}`);
  }
}

async function withDir(fn: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "lilt-sqlcipher-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function sha256(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** What a statement gives on a connection: its rows, or its error's message and codes. */
function outcome(db: SqlConnection, sql: string, params: unknown[]): unknown {
  try {
    const rows = db.prepare(sql).all(...(params as never[]));
    return { rows: rows.map((row) => ({ ...row })) };
  } catch (error) {
    const e = error as Error & { code?: string; errcode?: number; errstr?: string };
    return { error: e.message, code: e.code, errcode: e.errcode, errstr: e.errstr };
  }
}

const CASES: [string, unknown[]][] = [
  ["SELECT typeof(?) AS t, ? AS v", [1, 1]],
  ["SELECT typeof(?) AS t, ? AS v", [1.5, 1.5]],
  ["SELECT typeof(?) AS t, ? AS v", [-0, 2 ** 53]],
  ["SELECT typeof(?) AS t, ? AS v", [NaN, 1e300]],
  ["SELECT typeof(?) AS t, ? AS v", [5n, -(2n ** 62n)]],
  ["SELECT typeof(?) AS t, ? AS v", ["", "é ✓ 𝄞"]],
  ["SELECT typeof(?) AS t, ? AS v", [new Uint8Array(0), new Uint8Array([0, 1, 255])]],
  ["SELECT typeof(?) AS t", [new DataView(new ArrayBuffer(3))]],
  ["SELECT typeof(?) AS t, ? AS v", [null, null]],
  ["SELECT typeof(?) AS t", []],
  ["SELECT ? AS v", [2n ** 70n]],
  ["SELECT ? AS v", [true]],
  ["SELECT ? AS v", [undefined]],
  ["SELECT ? AS v", [Symbol("s")]],
  ["SELECT ? AS v", [1, 2]],
  ["SELECT 9007199254740991 AS big, -9007199254740991 AS small", []],
  ["SELECT 9007199254740993 AS v", []],
  ["SELECT 1.0 AS r, 2.5 AS f, x'00ff' AS b, NULL AS n, 'text' AS s", []],
  ["SELECT 1 AS a, 2 AS a", []],
  ["SELEC 1", []],
  ["SELECT * FROM nowhere", []],
  ["INSERT INTO t(y) VALUES ('taken')", []],
];

Deno.test("the SQLCipher driver converts values and reports errors as node:sqlite does", () => {
  requireSqlCipher();
  const plain = new DatabaseSync(":memory:");
  const cipher = openSqlCipher(":memory:", { key: "" });
  try {
    for (const db of [plain, cipher] as SqlConnection[]) {
      db.exec(
        "CREATE TABLE t(x INTEGER PRIMARY KEY, y TEXT UNIQUE); INSERT INTO t(y) VALUES ('taken')",
      );
    }
    for (const [sql, params] of CASES) {
      assert.deepEqual(
        outcome(cipher, sql, params),
        outcome(plain, sql, params),
        `${sql} with ${params.map(String).join(", ")}`,
      );
    }
    // Rows have no prototype, like node:sqlite's.
    assert.equal(Object.getPrototypeOf(cipher.prepare("SELECT 1 AS a").get()), null);
    // run() reports changes and the last rowid as numbers.
    for (const db of [plain, cipher] as SqlConnection[]) {
      const insert = db.prepare("INSERT INTO t(y) VALUES (?)");
      assert.deepEqual({ ...insert.run("a") }, { changes: 1, lastInsertRowid: 2 });
      assert.deepEqual({ ...db.prepare("DELETE FROM t").run() }, {
        changes: 2,
        lastInsertRowid: 2,
      });
      assert.equal(db.prepare("SELECT * FROM t WHERE y = ?").get("none"), undefined);
      assert.equal(db.isTransaction, false);
      db.exec("BEGIN");
      assert.equal(db.isTransaction, true);
      db.exec("ROLLBACK");
    }
    // A statement keeps working after an error, with fresh bindings each call.
    const lookup = cipher.prepare("SELECT ? AS v");
    assert.throws(() => lookup.get(1, 2), /column index out of range/);
    assert.deepEqual({ ...lookup.get("again") }, { v: "again" });
    assert.throws(() => cipher.exec("bogus"), /near "bogus": syntax error/);
  } finally {
    plain.close();
    cipher.close();
  }
  assert.equal(cipher.isOpen, false);
  assert.throws(() => cipher.prepare("SELECT 1"), { message: "database is not open" });
});

Deno.test("Lilt's stores work the same on an encrypted database", () =>
  withDir((dir) => {
    requireSqlCipher();
    const database = Database.open({ path: `${dir}/lilt.sqlite`, key: "correct horse" });
    try {
      const storage = new Storage(database);
      storage.keyval<{ n: number }>("example.com", "prefs").set("juliet", { n: 1 });
      storage.map<string>("example.com", "roster").set("juliet", "romeo@example.net", "Romeo");
      const archive = storage.archive("example.com", "offline");
      const id = archive.append("juliet", { payload: "<message/>", when: 1000, with: "romeo" });
      database.transaction(() => archive.append("juliet", { payload: "<m2/>", when: 2000 }));
      assert.deepEqual(storage.keyval("example.com", "prefs").get("juliet"), { n: 1 });
      assert.deepEqual([...storage.map("example.com", "roster").getAll("juliet")], [
        ["romeo@example.net", "Romeo"],
      ]);
      assert.deepEqual(archive.find("juliet").map((item) => item.payload), ["<message/>", "<m2/>"]);
      assert.equal(archive.find("juliet", { after: id }).length, 1);
      assert.equal(archive.delete("juliet", { ids: [id] }), 1);
    } finally {
      database.close();
    }
    // node:sqlite cannot read the file; SQLCipher with the key can.
    assert.throws(
      () => new DatabaseSync(`${dir}/lilt.sqlite`).prepare("SELECT * FROM kv").all(),
      /file is not a database/,
    );
    const reopened = Database.open({ path: `${dir}/lilt.sqlite`, key: "correct horse" });
    try {
      assert.equal(
        reopened.db.prepare("SELECT journal_mode FROM pragma_journal_mode").get()?.journal_mode,
        "wal",
      );
      const archive = new Storage(reopened).archive("example.com", "offline");
      assert.deepEqual(archive.find("juliet").map((item) => item.payload), ["<m2/>"]);
    } finally {
      reopened.close();
    }
  }));

Deno.test("a key that does not open the store fails with a message and leaves it byte-identical", () =>
  withDir(async (dir) => {
    requireSqlCipher();
    const encrypted = `${dir}/encrypted.sqlite`;
    Database.open({ path: encrypted, key: "right" }).close();
    const plain = `${dir}/plain.sqlite`;
    Database.open({ path: plain }).close();
    const before = { encrypted: await sha256(encrypted), plain: await sha256(plain) };

    assert.throws(
      () => Database.open({ path: encrypted, key: "wrong" }),
      (error) =>
        error instanceof StorageKeyError &&
        error.message === `The storage key does not open '${encrypted}': it is encrypted ` +
            "with another key, or not encrypted, or not a database",
    );
    assert.throws(
      () => Database.open({ path: plain, key: "right" }),
      /^Error: The storage key does not open '.*plain\.sqlite'/,
    );
    assert.throws(
      () => Database.open({ path: encrypted }),
      (error) =>
        error instanceof StorageKeyError &&
        error.message === `'${encrypted}' is not a plain SQLite database (it looks encrypted): ` +
            "set storage.key_file (or storage.key) to the key it was encrypted with",
    );
    assert.deepEqual(
      { encrypted: await sha256(encrypted), plain: await sha256(plain) },
      before,
    );
    const names = [];
    for await (const entry of Deno.readDir(dir)) names.push(entry.name);
    assert.deepEqual(names.sort(), ["encrypted.sqlite", "plain.sqlite"]);
    // The right key still opens it.
    Database.open({ path: encrypted, key: "right" }).close();
  }));

Deno.test("a passphrase with quotes and spaces is the same key the sqlcipher shell uses", () =>
  withDir(async (dir) => {
    requireSqlCipher();
    const key = `it's "quoted"; --not SQL`;
    const path = `${dir}/lilt.sqlite`;
    const db = openConnection(path, { key });
    db.exec("CREATE TABLE t(x); INSERT INTO t VALUES ('kept')");
    db.close();
    const shell = new URL("../../../.tools/sqlcipher/sqlcipher", import.meta.url).pathname;
    const out = await new Deno.Command(shell, {
      args: [path, `PRAGMA key = '${key.replaceAll("'", "''")}';`, "SELECT x FROM t;"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.equal(text, "ok\nkept\n");
  }));

Deno.test("a library that is not SQLCipher 4 is refused with its version", () => {
  requireSqlCipher();
  const built = loadSqlCipher();
  assert.match(inspectSqlCipherLibrary(built.path).version, /^4\./);
  // Debian's plain SQLite (installed with sqlite3) has no cipher at all.
  const plain = "/usr/lib/x86_64-linux-gnu/libsqlite3.so.0";
  assert.throws(
    () => inspectSqlCipherLibrary(plain),
    (error) =>
      error instanceof SqlCipherUnavailableError &&
      /^'.*libsqlite3\.so\.0' is SQLite 3\.\d+\.\d+ without SQLCipher/.test(error.message),
  );
  // Debian 12's libsqlcipher0 is SQLCipher 3.4.1 (installed by scripts/install-test-deps).
  const old = "/usr/lib/x86_64-linux-gnu/libsqlcipher.so.0";
  assert.throws(
    () => inspectSqlCipherLibrary(old),
    (error) =>
      error instanceof SqlCipherUnavailableError &&
      error.message === `'${old}' is SQLCipher 3.4.1; Lilt needs SQLCipher 4 (SQLCipher 3 ` +
          "cannot read or write SQLCipher 4's file format)",
  );
});
