// Tests for the PostgreSQL driver (libpq over FFI) against a real server: a throwaway cluster
// (tests/helpers/postgres.ts) or the one LILT_TEST_POSTGRES_URL names. Values, placeholders,
// transactions, errors, connection failures, and the core schema with the stores on it.

import assert from "node:assert/strict";
import { addLogWatcher } from "../../../core/log.ts";
import { Database } from "../../../core/storage/database.ts";
import {
  migrate,
  migrateModule,
  type Migration,
  readVersion,
  SCHEMA_VERSION,
} from "../../../core/storage/migrations.ts";
import {
  loadLibpq,
  openPostgres,
  type OpenPostgresOptions,
  PostgresConnection,
  PostgresError,
  quoteIdentifier,
  redactConnectionString,
} from "../../../core/storage/postgresql.ts";
import { Storage } from "../../../core/storage/stores.ts";
import { freshSchema, postgresUrl } from "../../helpers/postgres.ts";

/**
 * Opens a connection whose rows come back as plain objects, to compare with literals: the
 * driver's rows have a null prototype, as node:sqlite's do (checked on its own below).
 */
function open(options: OpenPostgresOptions): PostgresConnection {
  const db = openPostgres(options);
  const prepare = db.prepare.bind(db);
  db.prepare = (sql: string) => {
    const statement = prepare(sql);
    return {
      run: (...params) => statement.run(...params),
      get: (...params) => {
        const row = statement.get(...params);
        return row === undefined ? undefined : { ...row };
      },
      all: (...params) => statement.all(...params).map((row) => ({ ...row })),
    };
  };
  return db;
}

/** A connection in a schema of its own, closed and dropped when the test ends. */
async function connect(): Promise<{ db: PostgresConnection; url: string } & Disposable> {
  const url = await postgresUrl();
  const schema = freshSchema(url);
  const db = open({ url, schema: schema.name });
  return {
    db,
    url,
    [Symbol.dispose]() {
      if (db.isOpen) db.close();
      schema.drop();
    },
  };
}

function codeOf(error: unknown): string | undefined {
  return (error as { code?: string }).code;
}

Deno.test("rows have a null prototype, as node:sqlite's", async () => {
  const url = await postgresUrl();
  const db = openPostgres({ url });
  try {
    const row = db.prepare("SELECT 1 AS constructor, 'x' AS \"__proto__\"").get()!;
    assert.equal(Object.getPrototypeOf(row), null);
    assert.equal(row.constructor, 1);
    assert.equal(row["__proto__"], "x");
    assert.equal(Object.getPrototypeOf(db.prepare("SELECT 1 AS a").all()[0]), null);
  } finally {
    db.close();
  }
});

Deno.test("libpq is found and reports its version", () => {
  const { path, version } = loadLibpq();
  assert.match(path, /libpq/);
  assert.ok(version >= 100000, `libpq version ${version}`);
});

Deno.test("values round-trip with their types", async () => {
  using c = await connect();
  const { db } = c;
  db.exec(
    `CREATE TABLE v (id INTEGER PRIMARY KEY, i INTEGER, r REAL, t TEXT, b BLOB, big INTEGER)`,
  );
  const insert = db.prepare("INSERT INTO v (i, r, t, b, big) VALUES (?, ?, ?, ?, ?) RETURNING id");
  const cases = [
    { i: null, r: null, t: null, b: null, big: null },
    { i: 0, r: 0.1, t: "", b: new Uint8Array(0), big: 2 ** 53 - 1 },
    {
      i: -42,
      r: -1.5e-300,
      t: 'juliet\'s "quote" \\ back',
      b: new Uint8Array([0, 1, 127, 128, 255]),
      big: -(2 ** 53 - 1),
    },
    {
      i: 1_700_000_000_000,
      r: 1 / 3,
      t: "émoji 🎉 and 中文",
      b: new Uint8Array(256).map((_, k) => k),
      big: 2n ** 53n + 1n,
    },
    {
      i: 7,
      r: Number.MAX_VALUE,
      t: "it's ? a placeholder?",
      b: new Uint8Array([92, 120]),
      big: -(2n ** 63n),
    },
  ];
  const ids: number[] = [];
  for (const row of cases) {
    const { id } = insert.get(row.i, row.r, row.t, row.b, row.big) as { id: number };
    assert.equal(typeof id, "number");
    ids.push(id);
  }
  const read = db.prepare("SELECT i, r, t, b, big FROM v WHERE id = ?");
  cases.forEach((row, k) => {
    const got = read.get(ids[k])!;
    assert.deepEqual(got, {
      ...row,
      // int8 within ±(2^53 − 1) reads as number, beyond it as bigint.
      big: typeof row.big === "bigint" ? row.big : row.big,
    });
  });
  // A bigint inside the safe range reads back as a number.
  db.prepare("UPDATE v SET big = ? WHERE id = ?").run(5n, ids[0]);
  assert.deepEqual(db.prepare("SELECT big FROM v WHERE id = ?").get(ids[0]), { big: 5 });
  // Booleans read as 1/0, numeric as number, other types as text.
  assert.deepEqual(
    db.prepare(
      "SELECT true AS yes, false AS no, 2.50::numeric AS money, 3::int2 AS small, " +
        "'2024-01-02'::date AS day, 'x'::varchar AS name",
    ).get(),
    { yes: 1, no: 0, money: 2.5, small: 3, day: "2024-01-02", name: "x" },
  );
  // A Uint8Array view into a larger buffer sends only its own bytes.
  const backing = new Uint8Array([9, 9, 1, 2, 3, 9]);
  assert.deepEqual(
    db.prepare("SELECT ? AS b").get(backing.subarray(2, 5)),
    { b: new Uint8Array([1, 2, 3]) },
  );
  // Large values: a megabyte of bytes and of text.
  const bytes = new Uint8Array(1 << 20);
  for (let k = 0; k < bytes.length; k += 65536) {
    crypto.getRandomValues(bytes.subarray(k, k + 65536));
  }
  const text = "é🎉x".repeat(1 << 18);
  const { id: large } = insert.get(null, null, text, bytes, null) as { id: number };
  const back = db.prepare("SELECT t, b FROM v WHERE id = ?").get(large)!;
  assert.equal(back.t, text);
  assert.deepEqual(back.b, bytes);
  assert.deepEqual(db.prepare("SELECT * FROM v WHERE id = -1").get(), undefined);
  assert.deepEqual(db.prepare("SELECT * FROM v WHERE id = -1").all(), []);
});

Deno.test("floats round-trip exactly and non-finite ones survive", async () => {
  using c = await connect();
  const { db } = c;
  db.exec("CREATE TABLE f (x REAL)");
  const values = [0.1 + 0.2, Math.PI, 5e-324, -0, 1e21, Infinity, -Infinity];
  for (const x of values) db.prepare("INSERT INTO f (x) VALUES (?)").run(x);
  const got = db.prepare("SELECT x FROM f").all().map((row) => row.x);
  assert.deepEqual(got, values.map((x) => Object.is(x, -0) ? 0 : x));
  db.prepare("INSERT INTO f (x) VALUES (?)").run(NaN);
  assert.ok(Number.isNaN(db.prepare("SELECT x FROM f WHERE x = 'NaN'").get()!.x));
});

Deno.test("placeholders: repeated statements, numbered ones, user, and untyped parameters", async () => {
  using c = await connect();
  const { db } = c;
  db.exec("CREATE TABLE kv2 (host TEXT, user TEXT, store TEXT, value TEXT)");
  const insert = db.prepare("INSERT INTO kv2 (host, user, store, value) VALUES (?, ?, ?, ?)");
  for (let k = 0; k < 5; k++) insert.run("example.com", `u${k}`, "s", `v${k}`);
  assert.deepEqual(
    db.prepare("SELECT kv2.user AS who FROM kv2 WHERE user = ?2 AND host = ?1").get(
      "example.com",
      "u3",
    ),
    { who: "u3" },
  );
  // The server cannot infer these parameters' types alone (42725, 42P18): the values' types
  // are used.
  assert.deepEqual(db.prepare("SELECT ? + ? AS sum").get(1, 2), { sum: 3 });
  assert.deepEqual(db.prepare("SELECT ? + ? AS sum").get(0.5, 2), { sum: 2.5 });
  assert.deepEqual(db.prepare("SELECT ? IS NULL AS missing").get(null), { missing: 1 });
  assert.deepEqual(db.prepare("SELECT ? IS NULL AS missing").get("x"), { missing: 0 });
  // A parameter alone in the select list is text to PostgreSQL (SQLite would echo the value).
  assert.deepEqual(db.prepare("SELECT ? AS a, ? AS b").get(1, "two"), { a: "1", b: "two" });
  // Inside a transaction the failed first prepare must not abort the transaction.
  db.exec("BEGIN");
  assert.deepEqual(db.prepare("SELECT ? || ? AS x, ? * 2 AS y").get("a", "b", 3), {
    x: "ab",
    y: 6,
  });
  insert.run("example.com", "in-tx", "s", "v");
  db.exec("COMMIT");
  assert.equal(db.prepare("SELECT count(*) AS n FROM kv2").get()!.n, 6);
  // A statement prepared again runs as the same server-side statement.
  const serverStatements = () =>
    db.prepare("SELECT count(*) AS n FROM pg_prepared_statements").get()!.n as number;
  const before = serverStatements();
  for (let k = 0; k < 3; k++) {
    assert.equal(
      db.prepare("SELECT count(*) AS n FROM kv2 WHERE host = ?").get("example.com")!.n,
      6,
    );
  }
  // One more: the first of the loop (the count's own statement was made before).
  assert.equal(serverStatements(), before + 1);
});

Deno.test("run reports the rows changed and no rowid", async () => {
  using c = await connect();
  const { db } = c;
  db.exec("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER NOT NULL)");
  const insert = db.prepare("INSERT OR IGNORE INTO t (k, n) VALUES (?, ?)");
  assert.deepEqual(insert.run("a", 1), { changes: 1, lastInsertRowid: 0 });
  assert.deepEqual(insert.run("a", 2), { changes: 0, lastInsertRowid: 0 });
  insert.run("b", 1);
  insert.run("c", 1);
  assert.equal(db.prepare("UPDATE t SET n = n + ? WHERE n = ?").run(10, 1).changes, 3);
  assert.equal(db.prepare("DELETE FROM t WHERE k <> ?").run("a").changes, 2);
  assert.equal(db.prepare("SELECT n FROM t").all().length, 1);
  assert.equal(db.prepare("CREATE INDEX t_n ON t (n)").run().changes, 0);
});

Deno.test("transactions, savepoints and isTransaction", async () => {
  using c = await connect();
  const { db } = c;
  db.exec("CREATE TABLE t (k TEXT PRIMARY KEY)");
  const insert = db.prepare("INSERT INTO t (k) VALUES (?)");
  const keys = () => db.prepare("SELECT k FROM t ORDER BY k").all().map((row) => row.k);
  assert.equal(db.isTransaction, false);
  db.exec("BEGIN IMMEDIATE");
  assert.equal(db.isTransaction, true);
  insert.run("a");
  db.exec("SAVEPOINT one");
  insert.run("b");
  db.exec("ROLLBACK TO one");
  db.exec("RELEASE one");
  db.exec("SAVEPOINT two");
  insert.run("c");
  db.exec("RELEASE two");
  db.exec("COMMIT");
  assert.equal(db.isTransaction, false);
  assert.deepEqual(keys(), ["a", "c"]);
  db.exec("BEGIN");
  insert.run("d");
  db.exec("ROLLBACK");
  assert.equal(db.isTransaction, false);
  assert.deepEqual(keys(), ["a", "c"]);
});

Deno.test("errors carry the server's message and SQLSTATE", async () => {
  using c = await connect();
  const { db } = c;
  db.exec("CREATE TABLE t (k TEXT PRIMARY KEY)");
  const insert = db.prepare("INSERT INTO t (k) VALUES (?)");
  insert.run("a");
  assert.throws(() => insert.run("a"), (error: unknown) => {
    assert.ok(error instanceof PostgresError);
    assert.equal(error.code, "23505");
    assert.match(
      error.message,
      /^duplicate key value violates unique constraint "t_pkey" \(SQLSTATE 23505\)$/,
    );
    assert.match(error.detail ?? "", /Key \(k\)=\(a\) already exists/);
    return true;
  });
  assert.throws(
    () => db.prepare("SELECT * FROM missing").get(),
    (error: unknown) => codeOf(error) === "42P01",
  );
  assert.throws(() => db.exec("SELEKT 1"), (error: unknown) => codeOf(error) === "42601");
  // After an error inside a transaction PostgreSQL refuses everything until a rollback, and a
  // COMMIT then would silently roll back: it throws instead.
  db.exec("BEGIN");
  insert.run("b");
  assert.throws(() => insert.run("a"), (error: unknown) => codeOf(error) === "23505");
  assert.throws(() => insert.run("c"), (error: unknown) => codeOf(error) === "25P02");
  assert.equal(db.isTransaction, true);
  assert.throws(() => db.exec("COMMIT"), /rolled back instead of committed.*25P02/);
  assert.equal(db.isTransaction, false);
  assert.deepEqual(db.prepare("SELECT k FROM t").all(), [{ k: "a" }]);
  // A savepoint recovers from the error, as Database.transaction's nested calls do.
  db.exec("BEGIN; SAVEPOINT s");
  assert.throws(() => insert.run("a"), /23505/);
  db.exec("ROLLBACK TO s; RELEASE s");
  insert.run("d");
  db.exec("COMMIT");
  assert.deepEqual(db.prepare("SELECT k FROM t ORDER BY k").all(), [{ k: "a" }, { k: "d" }]);
  // PRAGMA is named as the SQLite-only construct it is.
  assert.throws(() => db.exec("PRAGMA foreign_keys = ON"), /PRAGMA is SQLite-only/);
  // Text with NUL cannot be sent.
  assert.throws(() => db.prepare("SELECT ? AS x").get("a\0b"), /NUL/);
});

Deno.test("the server's warnings go to Lilt's log", async () => {
  const url = await postgresUrl();
  const db = openPostgres({ url });
  const seen: string[] = [];
  const stop = addLogWatcher((record) => {
    if (record.category.at(-1) === "storage") seen.push(String(record.properties.notice));
  }, "warning");
  try {
    // COMMIT without a transaction is a warning, not an error.
    db.exec("COMMIT");
    assert.deepEqual(seen, ["WARNING:  there is no transaction in progress"]);
    // Notices below the warning level are not sent at all.
    db.exec("CREATE TABLE IF NOT EXISTS pg_temp.t (x INTEGER)");
    db.exec("CREATE TABLE IF NOT EXISTS pg_temp.t (x INTEGER)");
    assert.equal(seen.length, 1);
  } finally {
    stop();
    db.close();
  }
});

Deno.test("a lost connection fails one statement, then reconnects with the session restored", async () => {
  using c = await connect();
  const { db, url } = c;
  db.exec("CREATE TABLE t (k TEXT PRIMARY KEY)");
  const insert = db.prepare("INSERT INTO t (k) VALUES (?)");
  const keys = () => db.prepare("SELECT k FROM t ORDER BY k").all().map((row) => row.k);
  insert.run("before");
  const admin = openPostgres({ url });
  const kill = () => {
    const pid = db.prepare("SELECT pg_backend_pid() AS pid").get()!.pid;
    admin.prepare("SELECT pg_terminate_backend(?) AS done").get(pid);
  };
  try {
    // Outside a transaction: the statement that finds the loss fails, the next one reconnects
    // (in the test's schema again, with statements prepared anew).
    kill();
    assert.throws(() => insert.run("lost"), (error: unknown) => {
      assert.ok(error instanceof PostgresError);
      assert.ok(["57P01", "08006"].includes(error.code), error.message);
      return true;
    });
    assert.equal(db.isTransaction, false);
    insert.run("after");
    assert.deepEqual(keys(), ["after", "before"]);

    // Inside a transaction: its writes are gone, and nothing runs until the ROLLBACK.
    db.exec("BEGIN");
    insert.run("in-lost-transaction");
    kill();
    assert.throws(() => insert.run("x"), PostgresError);
    assert.equal(db.isTransaction, true);
    assert.throws(() => insert.run("y"), /lost inside a transaction.*08006/);
    assert.throws(() => db.exec("COMMIT"), /lost inside a transaction/);
    db.exec("ROLLBACK");
    assert.equal(db.isTransaction, false);
    insert.run("later");
    assert.deepEqual(keys(), ["after", "before", "later"]);
  } finally {
    admin.close();
  }
});

Deno.test("while the server is down, reconnection is tried at most once a second", async () => {
  // A cluster of this test's own, since it is stopped.
  const script = new URL("../../../scripts/postgres/cluster", import.meta.url).pathname;
  const dir = await Deno.makeTempDir({ prefix: "lilt-postgres-down-" });
  const started = await new Deno.Command(script, { args: ["start", dir], stdout: "piped" })
    .output();
  assert.ok(started.success);
  const url = new TextDecoder().decode(started.stdout).trim();
  const db = open({ url });
  try {
    assert.deepEqual(db.prepare("SELECT 1 AS one").get(), { one: 1 });
    assert.ok((await new Deno.Command(script, { args: ["stop", dir] }).output()).success);
    assert.throws(() => db.prepare("SELECT 1 AS one").get(), (error: unknown) => {
      assert.ok(error instanceof PostgresError);
      return ["57P01", "08006"].includes(error.code);
    });
    assert.throws(
      () => db.prepare("SELECT 1 AS one").get(),
      /^Error: Lost the connection to PostgreSQL and could not reconnect: .*\(SQLSTATE 08001\)$/,
    );
    assert.throws(() => db.prepare("SELECT 1 AS one").get(), /next attempt within a second/);
  } finally {
    db.close();
    await new Deno.Command(script, { args: ["stop", dir] }).output();
  }
});

Deno.test("use after close throws", async () => {
  const url = await postgresUrl();
  const db = open({ url });
  const statement = db.prepare("SELECT 1 AS one");
  assert.deepEqual(statement.get(), { one: 1 });
  db.close();
  assert.equal(db.isOpen, false);
  assert.equal(db.isTransaction, false);
  assert.throws(() => statement.get(), /closed/);
  assert.throws(() => db.exec("SELECT 1"), /closed/);
  assert.throws(() => db.prepare("SELECT 1"), /closed/);
  assert.throws(() => db.close(), /closed/);
});

Deno.test("a wrong password and an unreachable server give clear errors without the password", async () => {
  const url = await postgresUrl();
  const admin = open({ url });
  const role = `lilt_pw_${Deno.pid}_${crypto.getRandomValues(new Uint32Array(1))[0].toString(36)}`;
  const password = "correct horse battery staple";
  // scripts/postgres/cluster makes members of lilt_password_login give a password.
  admin.exec(
    `DO $$ BEGIN CREATE ROLE lilt_password_login NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$`,
  );
  admin.exec(
    `CREATE ROLE ${quoteIdentifier(role)} LOGIN PASSWORD '${password}' IN ROLE lilt_password_login`,
  );
  try {
    const target = new URL(url);
    target.username = role;
    const roleUrl = target.toString();
    const good = open({ url: roleUrl, password });
    assert.deepEqual(good.prepare("SELECT current_user AS me").get(), { me: role });
    good.close();
    for (const wrong of ["wrong password", ""]) {
      assert.throws(() => open({ url: roleUrl, password: wrong }), (error: unknown) => {
        assert.ok(error instanceof PostgresError);
        assert.match(error.message, /^Cannot connect to PostgreSQL at postgresql:\/\/lilt_pw_/);
        assert.match(error.message, /password authentication failed|no password supplied/);
        assert.ok(!error.message.includes(password));
        if (wrong !== "") assert.ok(!error.message.includes(wrong));
        return true;
      });
    }
    // A password inside the URL is redacted from the message.
    target.password = "secret-in-url";
    assert.throws(() => open({ url: target.toString() }), (error: unknown) => {
      assert.match((error as Error).message, /:\*\*\*@/);
      assert.ok(!(error as Error).message.includes("secret-in-url"));
      return true;
    });
  } finally {
    admin.exec(`DROP ROLE ${quoteIdentifier(role)}`);
    admin.close();
  }
  // Nothing listens on port 1.
  assert.throws(
    () => open({ url: "postgresql://lilt@127.0.0.1:1/lilt" }),
    /^Error: Cannot connect to PostgreSQL at postgresql:\/\/lilt@127\.0\.0\.1:1\/lilt: .*(refused|failed)/,
  );
  assert.equal(
    redactConnectionString("host=db password='a b' user=x"),
    "host=db password=*** user=x",
  );
  assert.equal(
    redactConnectionString("postgresql://u@h/db?password=p&sslmode=require"),
    "postgresql://u@h/db?password=***&sslmode=require",
  );
});

Deno.test("a schema option creates the schema and keeps the tables in it", async () => {
  const url = await postgresUrl();
  using schema = freshSchema(url);
  const db = open({ url, schema: schema.name });
  db.exec("CREATE TABLE here (x INTEGER)");
  assert.deepEqual(
    db.prepare("SELECT table_schema FROM information_schema.tables WHERE table_name = 'here'")
      .all(),
    [{ table_schema: schema.name }],
  );
  db.close();
  // A second connection to the same schema sees the table.
  const again = open({ url, schema: schema.name });
  assert.deepEqual(again.prepare("SELECT count(*) AS n FROM here").get(), { n: 0 });
  again.close();
});

Deno.test("the core migrations run on an empty schema, once", async () => {
  using c = await connect();
  const { db } = c;
  assert.equal(readVersion(db), 0);
  migrate(db);
  assert.equal(readVersion(db), SCHEMA_VERSION);
  assert.equal(db.isTransaction, false);
  const tables = db.prepare(
    "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() " +
      "ORDER BY table_name",
  ).all().map((row) => row.name);
  assert.deepEqual(tables, [
    "account_credentials",
    "account_tombstones",
    "accounts",
    "archive_items",
    "archive_owners",
    "fast_tokens",
    "kv",
    "lilt_schema_version",
    "map",
    "module_schema",
  ]);
  // A second run finds the schema current and changes nothing.
  migrate(db);
  assert.equal(readVersion(db), SCHEMA_VERSION);
  assert.deepEqual(db.prepare("SELECT version FROM lilt_schema_version").all(), [
    { version: SCHEMA_VERSION },
  ]);
});

Deno.test("every module's own migrations run on PostgreSQL", async () => {
  using c = await connect();
  migrate(c.db);
  const modules = ["invites", "muc", "pep", "pubsub", "push", "spam_reports", "upload"];
  for (const name of modules) {
    const file = await import(`../../../mod/${name}.ts`) as {
      schema: string;
      migrations: readonly Migration[];
    };
    // pep and pubsub share the pubsub schema: the second finds it current.
    migrateModule(c.db, file.schema, file.migrations);
  }
  assert.deepEqual(
    c.db.prepare("SELECT module, version FROM module_schema ORDER BY module").all(),
    [
      { module: "invites", version: 1 },
      { module: "muc", version: 1 },
      { module: "pubsub", version: 2 },
      { module: "push", version: 1 },
      { module: "spam_reports", version: 1 },
      { module: "upload", version: 1 },
    ],
  );
  // A column that is "user" in SQLite is "user" in PostgreSQL too.
  c.db.prepare(
    "INSERT INTO push_registrations (host, user, service, node, resource, created_ms) " +
      "VALUES (?, ?, ?, ?, ?, ?)",
  ).run("example.com", "juliet", "push.example.net", "n", "phone", 1);
  assert.deepEqual(
    c.db.prepare("SELECT user FROM push_registrations WHERE host = ?").all("example.com"),
    [{ user: "juliet" }],
  );
});

Deno.test("the key-value and map stores work on PostgreSQL", async () => {
  const url = await postgresUrl();
  using schema = freshSchema(url);
  const database = Database.open({
    path: "postgresql",
    postgres: { url, password: "", schema: schema.name },
  });
  const storage = new Storage(database);
  const vcards = storage.keyval<{ fn: string }>("example.com", "vcard");
  assert.equal(vcards.get("juliet"), undefined);
  vcards.set("juliet", { fn: "Juliet Capulet" });
  vcards.set("romeo", { fn: "Romeo" });
  vcards.set("juliet", { fn: "Juliet" });
  assert.deepEqual(vcards.get("juliet"), { fn: "Juliet" });
  vcards.set("", { fn: "host-level" });
  assert.deepEqual(vcards.get(""), { fn: "host-level" });
  vcards.set("romeo", undefined);
  assert.equal(vcards.get("romeo"), undefined);

  const bookmarks = storage.map<string>("example.com", "bookmarks");
  bookmarks.set("juliet", "b", "second");
  bookmarks.set("juliet", "a", "first");
  bookmarks.set("juliet", "a", "first again");
  bookmarks.set("romeo", "a", "his");
  assert.equal(bookmarks.get("juliet", "a"), "first again");
  assert.deepEqual([...bookmarks.getAll("juliet")], [["a", "first again"], ["b", "second"]]);
  assert.equal(bookmarks.count("juliet"), 2);
  bookmarks.set("juliet", "b", undefined);
  assert.equal(bookmarks.count("juliet"), 1);
  bookmarks.deleteAll("juliet");
  assert.equal(bookmarks.count("juliet"), 0);

  // Writes of one task are batched in one transaction, committed in a microtask.
  vcards.set("tybalt", { fn: "Tybalt" });
  assert.equal(database.db.isTransaction, true);
  await Promise.resolve();
  assert.equal(database.db.isTransaction, false);

  storage.deleteUser("example.com", "romeo");
  assert.equal(bookmarks.count("romeo"), 0);
  assert.deepEqual(vcards.get("tybalt"), { fn: "Tybalt" });
  database.close();
});

Deno.test("the accounts and archive tables take the statements Lilt writes to them", async () => {
  using c = await connect();
  const { db } = c;
  migrate(db);
  const now = Date.now();
  assert.equal(
    db.prepare(
      "INSERT INTO accounts (host, user, created_ms) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
    ).run("example.com", "juliet", now).changes,
    1,
  );
  const credentials = db.prepare(
    "INSERT OR IGNORE INTO account_credentials " +
      "(host, user, hash, salt, iterations, stored_key, server_key, updated_ms) " +
      "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
  );
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const stored = crypto.getRandomValues(new Uint8Array(32));
  const server = crypto.getRandomValues(new Uint8Array(32));
  assert.equal(
    credentials.run("example.com", "juliet", "SHA-256", salt, 4096, stored, server, now).changes,
    1,
  );
  assert.equal(
    credentials.run("example.com", "juliet", "SHA-256", salt, 1, stored, server, now).changes,
    0,
  );
  assert.deepEqual(
    db.prepare(
      "SELECT salt, iterations, stored_key, server_key FROM account_credentials " +
        "WHERE host = ? AND user = ? AND hash = ?",
    ).get("example.com", "juliet", "SHA-256"),
    { salt, iterations: 4096, stored_key: stored, server_key: server },
  );
  db.prepare("UPDATE accounts SET disabled = 1, deleted_ms = ? WHERE host = ? AND user = ?")
    .run(now, "example.com", "juliet");
  db.prepare(
    "UPDATE accounts SET last_login_ms = COALESCE(?, last_login_ms), " +
      "last_logout_ms = COALESCE(?, last_logout_ms) WHERE host = ? AND user = ?",
  ).run(now, null, "example.com", "juliet");
  assert.deepEqual(
    db.prepare(
      "SELECT user, created_ms, disabled, deleted_ms, last_login_ms, last_logout_ms " +
        "FROM accounts WHERE host = ? AND user = ?",
    ).get("example.com", "juliet"),
    {
      user: "juliet",
      created_ms: now,
      disabled: 1,
      deleted_ms: now,
      last_login_ms: now,
      last_logout_ms: null,
    },
  );
  // The foreign key cascades.
  db.prepare("DELETE FROM accounts WHERE host = ? AND user = ?").run("example.com", "juliet");
  assert.deepEqual(db.prepare("SELECT count(*) AS n FROM account_credentials").get(), { n: 0 });

  // The archive: an owner row made or found with RETURNING, items numbered under it.
  const owner = db.prepare(
    "INSERT INTO archive_owners (host, user, store, items, next_seq) VALUES (?, ?, ?, 0, 1) " +
      "ON CONFLICT (host, user, store) DO UPDATE SET host = excluded.host RETURNING id",
  );
  const { id } = owner.get("example.com", "juliet", "archive") as { id: number };
  assert.deepEqual(owner.get("example.com", "juliet", "archive"), { id });
  const item = db.prepare(
    "INSERT INTO archive_items " +
      "(owner, seq, tag, when_ms, with_jid, with_resource, type, payload) " +
      "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
  );
  for (let seq = 1; seq <= 3; seq++) {
    item.run(
      id,
      seq,
      `t${seq}`,
      now + seq,
      "romeo@example.net",
      "phone",
      "chat",
      `<m n='${seq}'/>`,
    );
  }
  db.prepare("UPDATE archive_owners SET items = items + ? WHERE id = ?").run(3, id);
  assert.deepEqual(
    db.prepare(
      "SELECT seq, tag FROM archive_items WHERE owner = ? AND (when_ms, id) > (?, ?) " +
        "ORDER BY when_ms, id LIMIT ?",
    ).all(id, now + 1, Number.MAX_SAFE_INTEGER, 5),
    [{ seq: 2, tag: "t2" }, { seq: 3, tag: "t3" }],
  );
  assert.deepEqual(db.prepare("SELECT items FROM archive_owners WHERE id = ?").get(id), {
    items: 3,
  });
});

Deno.test("two servers migrating one new schema at once both succeed, one applying each step", async () => {
  const url = await postgresUrl();
  using schema = freshSchema(url);
  const module = (path: string) => new URL(path, import.meta.url).href;
  // Each child loads the code first, then both start at the same moment.
  const code = `
    import { openPostgres } from "${module("../../../core/storage/postgresql.ts")}";
    import { migrate, readVersion } from "${module("../../../core/storage/migrations.ts")}";
    const startAt = Number(Deno.env.get("START_AT"));
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, startAt - Date.now())));
    const db = openPostgres({ url: Deno.env.get("PG_URL"), schema: Deno.env.get("PG_SCHEMA") });
    migrate(db);
    console.log(readVersion(db));
    db.close();
  `;
  const env = { PG_URL: url, PG_SCHEMA: schema.name, START_AT: String(Date.now() + 2000) };
  const children = [0, 1].map(() =>
    new Deno.Command(Deno.execPath(), {
      args: ["eval", code],
      env,
      stdout: "piped",
      stderr: "piped",
    })
      .output()
  );
  for (const output of await Promise.all(children)) {
    const stderr = new TextDecoder().decode(output.stderr);
    assert.ok(output.success, `a child failed: ${stderr}`);
    assert.equal(new TextDecoder().decode(output.stdout).trim(), String(SCHEMA_VERSION));
  }
  const db = open({ url, schema: schema.name });
  try {
    assert.equal(readVersion(db), SCHEMA_VERSION);
    assert.deepEqual(db.prepare("SELECT count(*) AS n FROM lilt_schema_version").get(), { n: 1 });
  } finally {
    db.close();
  }
});
