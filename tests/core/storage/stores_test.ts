// Tests for the SQLite database wrapper, its migrations and the key-value, map and archive
// stores built on it.

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { Database } from "../../../core/storage/database.ts";
import {
  type Migration,
  MIGRATIONS,
  readVersion,
  SCHEMA_VERSION,
  SchemaTooNewError,
} from "../../../core/storage/migrations.ts";
import { ArchiveItemNotFoundError, Storage } from "../../../core/storage/stores.ts";
import { ARCHIVE_FLUSH_DELAY_MS } from "../../../core/storage/archive_store.ts";

function memoryStorage(): { database: Database; storage: Storage } {
  const database = Database.open({ path: ":memory:" });
  return { database, storage: new Storage(database) };
}

async function withTempDir(fn: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("opening a new database migrates it to the current schema version", async () => {
  await withTempDir((dir) => {
    const path = `${dir}/sub/dir/lilt.sqlite`;
    const database = Database.open({ path });
    assert.equal(readVersion(database.db), SCHEMA_VERSION);
    const tables = database.db
      .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
      .all()
      .map((row) => row.name);
    for (const name of ["account_credentials", "accounts", "archive_items", "kv", "map"]) {
      assert.ok(tables.includes(name), `table ${name} exists`);
    }
    const pragma = (name: string) => Object.values(database.db.prepare(`PRAGMA ${name}`).get()!)[0];
    assert.equal(pragma("journal_mode"), "wal");
    assert.equal(pragma("foreign_keys"), 1);
    assert.equal(pragma("busy_timeout"), 5000);
    assert.equal(pragma("synchronous"), 1); // NORMAL
    assert.equal(Deno.statSync(path).mode! & 0o777, 0o600);
    database.close();
    database.close(); // harmless twice
    // Reopening an up-to-date database applies nothing and keeps the data.
    const again = Database.open({ path });
    assert.equal(readVersion(again.db), SCHEMA_VERSION);
    again.close();
  });
});

Deno.test("opening a database written by a newer version fails with a clear error", async () => {
  await withTempDir((dir) => {
    const path = `${dir}/future.sqlite`;
    const raw = new DatabaseSync(path);
    raw.exec(`PRAGMA user_version = ${SCHEMA_VERSION + 5}`);
    raw.close();
    assert.throws(
      () => Database.open({ path }),
      (error: unknown) => {
        assert.ok(error instanceof SchemaTooNewError);
        assert.match(error.message, new RegExp(`schema version is ${SCHEMA_VERSION + 5}`));
        assert.match(error.message, new RegExp(`knows up to ${SCHEMA_VERSION}`));
        assert.match(error.message, /future\.sqlite/);
        return true;
      },
    );
    // The refused file is left untouched.
    const check = new DatabaseSync(path);
    assert.equal(readVersion(check), SCHEMA_VERSION + 5);
    check.close();
  });
});

Deno.test("migrations apply in order and a failing step rolls back and names itself", () => {
  const steps: Migration[] = [
    { version: 1, description: "one", up: (db) => db.exec("CREATE TABLE a (x)") },
    { version: 2, description: "two", up: (db) => db.exec("CREATE TABLE b (x)") },
  ];
  const database = Database.open({ path: ":memory:", migrations: steps });
  assert.equal(readVersion(database.db), 2);
  database.close();

  const broken: Migration[] = [
    ...steps,
    {
      version: 3,
      description: "broken step",
      up: (db) => {
        db.exec("CREATE TABLE c (x)");
        db.exec("THIS IS NOT SQL");
      },
    },
  ];
  assert.throws(
    () => Database.open({ path: ":memory:", migrations: broken }),
    /Migration 3 \(broken step\) failed/,
  );
  const gap: Migration[] = [{ version: 2, description: "gap", up: () => {} }];
  assert.throws(() => Database.open({ path: ":memory:", migrations: gap }), /Expected migration 1/);
});

Deno.test("a failed migration leaves the schema at the last good version", async () => {
  await withTempDir((dir) => {
    const path = `${dir}/partial.sqlite`;
    const steps: Migration[] = [
      { version: 1, description: "one", up: (db) => db.exec("CREATE TABLE a (x)") },
      {
        version: 2,
        description: "two",
        up: (db) => {
          db.exec("CREATE TABLE c (x)");
          throw new Error("boom");
        },
      },
    ];
    assert.throws(() => Database.open({ path, migrations: steps }), /boom/);
    const raw = new DatabaseSync(path);
    assert.equal(readVersion(raw), 1);
    assert.equal(
      raw.prepare("SELECT count(*) AS n FROM sqlite_schema WHERE name = 'c'").get()!.n,
      0,
    );
    raw.close();
  });
});

Deno.test("transactions commit, roll back on throw, and nest with savepoints", () => {
  const { database, storage } = memoryStorage();
  const kv = storage.keyval<number>("example.com", "counter");
  database.transaction(() => kv.set("a", 1));
  assert.equal(kv.get("a"), 1);

  assert.throws(() =>
    database.transaction(() => {
      kv.set("a", 2);
      throw new Error("abort");
    }), /abort/);
  assert.equal(kv.get("a"), 1);

  database.transaction(() => {
    kv.set("a", 3);
    try {
      database.transaction(() => {
        kv.set("b", 1);
        throw new Error("inner");
      });
    } catch {
      // The inner failure undoes only the inner work.
    }
    assert.equal(kv.get("b"), undefined);
    database.transaction(() => kv.set("c", 1));
  });
  assert.equal(kv.get("a"), 3);
  assert.equal(kv.get("c"), 1);
  assert.equal(database.db.isTransaction, false);

  const result = database.transaction(() => 42);
  assert.equal(result, 42);

  assert.throws(
    () => database.transaction(() => Promise.resolve(kv.set("d", 1))),
    /Expected a synchronous transaction function/,
  );
  assert.equal(kv.get("d"), undefined);
  assert.equal(database.db.isTransaction, false);
  database.close();
});

Deno.test("prepared statements are cached by text", () => {
  const { database } = memoryStorage();
  assert.equal(database.prepare("SELECT 1"), database.prepare("SELECT 1"));
  assert.notEqual(database.prepare("SELECT 1"), database.prepare("SELECT 2"));
  database.close();
});

Deno.test("online backup copies the live database", async () => {
  await withTempDir(async (dir) => {
    const database = Database.open({ path: `${dir}/live.sqlite` });
    const storage = new Storage(database);
    storage.keyval<string>("example.com", "vcard").set("juliet", "<vCard/>");
    storage.archive("example.com", "archive").append("juliet", { payload: "<message/>" });
    await database.backup(`${dir}/backups/copy.sqlite`);
    database.close();

    assert.equal(Deno.statSync(`${dir}/backups/copy.sqlite`).mode! & 0o777, 0o600);
    const copy = Database.open({ path: `${dir}/backups/copy.sqlite` });
    const restored = new Storage(copy);
    assert.equal(restored.keyval<string>("example.com", "vcard").get("juliet"), "<vCard/>");
    assert.equal(restored.archive("example.com", "archive").count("juliet"), 1);
    copy.close();
  });
});

Deno.test("key-value store sets, replaces and deletes JSON values per user", () => {
  const { database, storage } = memoryStorage();
  const kv = storage.keyval<{ n: number; tags: string[] }>("example.com", "prefs");
  assert.equal(kv.get("juliet"), undefined);
  kv.set("juliet", { n: 1, tags: ["a"] });
  assert.deepEqual(kv.get("juliet"), { n: 1, tags: ["a"] });
  kv.set("juliet", { n: 2, tags: [] });
  assert.deepEqual(kv.get("juliet"), { n: 2, tags: [] });
  // Stores are separate per user, per store and per host; "" holds host-level data.
  kv.set("", { n: 9, tags: [] });
  assert.equal(kv.get("romeo"), undefined);
  assert.equal(storage.keyval("example.com", "other").get("juliet"), undefined);
  assert.equal(storage.keyval("example.net", "prefs").get("juliet"), undefined);
  assert.deepEqual(kv.get(""), { n: 9, tags: [] });
  kv.set("juliet", undefined);
  assert.equal(kv.get("juliet"), undefined);
  kv.set("juliet", undefined); // deleting nothing is fine
  const nulls = storage.keyval<null | string>("example.com", "nullable");
  nulls.set("juliet", null);
  assert.equal(nulls.get("juliet"), null);
  assert.throws(
    () => storage.keyval<unknown>("example.com", "bad").set("juliet", () => 1),
    /Expected a JSON-serialisable value/,
  );
  database.close();
});

Deno.test("map store keeps one value per key and lists or clears a user's keys", () => {
  const { database, storage } = memoryStorage();
  const roster = storage.map<{ name: string }>("example.com", "roster");
  roster.set("juliet", "romeo@example.net", { name: "Romeo" });
  roster.set("juliet", "nurse@example.com", { name: "Nurse" });
  roster.set("romeo", "juliet@example.com", { name: "Juliet" });
  assert.deepEqual(roster.get("juliet", "romeo@example.net"), { name: "Romeo" });
  assert.equal(roster.get("juliet", "tybalt@example.com"), undefined);
  roster.set("juliet", "romeo@example.net", { name: "Romeo M." });
  assert.deepEqual(
    [...roster.getAll("juliet")],
    [["nurse@example.com", { name: "Nurse" }], ["romeo@example.net", { name: "Romeo M." }]],
  );
  roster.set("juliet", "nurse@example.com", undefined);
  assert.deepEqual([...roster.getAll("juliet").keys()], ["romeo@example.net"]);
  roster.deleteAll("juliet");
  assert.equal(roster.getAll("juliet").size, 0);
  assert.equal(roster.getAll("romeo").size, 1);
  database.close();
});

function fillArchive(storage: Storage) {
  const archive = storage.archive("example.com", "archive");
  const ids: string[] = [];
  for (let i = 0; i < 10; i++) {
    ids.push(archive.append("juliet", {
      when: 1000 + i * 10,
      with: i % 2 === 0 ? "romeo@example.net" : "nurse@example.com",
      type: "chat",
      payload: `<message id='m${i}'/>`,
    }));
  }
  return { archive, ids };
}

Deno.test("archive append generates unique URL-safe ids and finds items in time order", () => {
  const { database, storage } = memoryStorage();
  const { archive, ids } = fillArchive(storage);
  assert.equal(new Set(ids).size, 10);
  for (const id of ids) assert.match(id, /^[0-9]+-[1-9][0-9]*\.[A-Za-z0-9_-]{8}$/);
  const all = archive.find("juliet");
  assert.deepEqual(all.map((item) => item.id), ids);
  assert.deepEqual(all[0], {
    id: ids[0],
    when: 1000,
    with: "romeo@example.net",
    type: "chat",
    payload: "<message id='m0'/>",
  });
  assert.equal(archive.count("juliet"), 10);
  assert.deepEqual(archive.find("romeo"), []);
  assert.deepEqual(storage.archive("example.com", "muc").find("juliet"), []);

  // Defaults: now, "" with and type; items with equal times keep insertion order.
  const before = Date.now();
  const a = archive.append("tybalt", { payload: "a" });
  const b = archive.append("tybalt", { payload: "b", when: archive.find("tybalt")[0].when });
  const items = archive.find("tybalt");
  assert.deepEqual(items.map((item) => item.id), [a, b]);
  assert.ok(items[0].when >= before && items[0].when <= Date.now());
  assert.equal(items[0].with, "");
  assert.equal(items[0].type, "");
  database.close();
});

Deno.test("archive queries filter by time, with and ids", () => {
  const { database, storage } = memoryStorage();
  const { archive, ids } = fillArchive(storage);
  const idsOf = (query: Parameters<typeof archive.find>[1]) =>
    archive.find("juliet", query).map((item) => ids.indexOf(item.id));
  assert.deepEqual(idsOf({ with: "romeo@example.net" }), [0, 2, 4, 6, 8]);
  assert.deepEqual(idsOf({ with: "romeo@example.net/balcony" }), []);
  assert.deepEqual(idsOf({ start: 1020, end: 1050 }), [2, 3, 4, 5]);
  assert.deepEqual(idsOf({ start: 1020, end: 1050, with: "nurse@example.com" }), [3, 5]);
  assert.deepEqual(idsOf({ ids: [ids[7], ids[1], "missing"] }), [1, 7]);
  assert.deepEqual(idsOf({ ids: [] }), []);
  assert.equal(archive.count("juliet", { with: "nurse@example.com" }), 5);
  assert.equal(archive.count("juliet", { start: 1090 }), 1);
  // A quota check stops counting at its limit.
  assert.equal(archive.countUpTo("juliet", 3), 3);
  assert.equal(archive.countUpTo("juliet", 100), 10);
  assert.equal(archive.countUpTo("juliet", 3, { with: "nurse@example.com" }), 3);
  assert.equal(archive.countUpTo("juliet", 0), 0);
  database.close();
});

Deno.test("archive pages with before, after, limit and reverse", () => {
  const { database, storage } = memoryStorage();
  const { archive, ids } = fillArchive(storage);
  const idsOf = (query: Parameters<typeof archive.find>[1]) =>
    archive.find("juliet", query).map((item) => ids.indexOf(item.id));
  assert.deepEqual(idsOf({ limit: 3 }), [0, 1, 2]);
  assert.deepEqual(idsOf({ after: ids[2], limit: 3 }), [3, 4, 5]);
  assert.deepEqual(idsOf({ after: ids[8], limit: 3 }), [9]);
  assert.deepEqual(idsOf({ after: ids[9] }), []);
  // The last page: newest first, as MAM's <before/> needs before reversing.
  assert.deepEqual(idsOf({ reverse: true, limit: 3 }), [9, 8, 7]);
  assert.deepEqual(idsOf({ before: ids[7], reverse: true, limit: 3 }), [6, 5, 4]);
  assert.deepEqual(idsOf({ before: ids[2] }), [0, 1]);
  assert.deepEqual(idsOf({ after: ids[2], before: ids[6] }), [3, 4, 5]);
  assert.deepEqual(idsOf({ after: ids[1], with: "romeo@example.net", limit: 2 }), [2, 4]);
  assert.deepEqual(
    idsOf({ before: ids[9], with: "nurse@example.com", reverse: true, limit: 2 }),
    [7, 5],
  );
  assert.deepEqual(idsOf({ limit: 0 }), []);
  // Count ignores limit and reverse but honours the other fields.
  assert.equal(archive.count("juliet", { after: ids[2], limit: 3, reverse: true }), 7);
  assert.throws(() => archive.find("juliet", { before: "nope" }), (error: unknown) => {
    assert.ok(error instanceof ArchiveItemNotFoundError);
    assert.equal(error.id, "nope");
    return true;
  });
  // An id of another user is not found either.
  assert.throws(() => archive.find("romeo", { after: ids[0] }), ArchiveItemNotFoundError);
  assert.throws(() => archive.find("juliet", { limit: -1 }), /non-negative integer/);
  database.close();
});

Deno.test("archive paging is exact when items share a timestamp", () => {
  const { database, storage } = memoryStorage();
  const archive = storage.archive("example.com", "archive");
  const ids = [5, 7, 7, 7, 7, 9].map((when, i) =>
    archive.append("juliet", { when, with: "romeo@example.net", payload: `${i}` })
  );
  for (const withJid of [undefined, "romeo@example.net"]) {
    const idsOf = (query: Parameters<typeof archive.find>[1]) =>
      archive.find("juliet", { ...query, with: withJid }).map((item) => ids.indexOf(item.id));
    assert.deepEqual(idsOf({ after: ids[2] }), [3, 4, 5]);
    assert.deepEqual(idsOf({ after: ids[1], limit: 2 }), [2, 3]);
    assert.deepEqual(idsOf({ before: ids[3] }), [0, 1, 2]);
    assert.deepEqual(idsOf({ before: ids[4], reverse: true, limit: 2 }), [3, 2]);
  }
  database.close();
});

Deno.test("archive ids are never reused, and a wrong or malformed id finds nothing", () => {
  const { database, storage } = memoryStorage();
  const archive = storage.archive("example.com", "archive");
  const first = archive.append("juliet", { when: 5, payload: "old" });
  assert.equal(archive.delete("juliet"), 1);
  const second = archive.append("juliet", { when: 7, payload: "new" });
  assert.notEqual(first, second);
  assert.equal(first.split(/[-.]/)[1], "1");
  assert.equal(second.split(/[-.]/)[1], "2", "the sequence goes on after a delete");
  assert.deepEqual(archive.find("juliet", { ids: [first] }), []);
  const [when, seq, tag] = second.split(/[-.]/);
  for (
    const wrong of [
      `${when}-${seq}.AAAAAAAA`,
      `${when}-${seq}`,
      `${Number(when) + 1}-${seq}.${tag}`,
      `${when}-0.${tag}`,
      `${when}-3.${tag}`,
      "x.y",
      "",
      `-${when}-${seq}.${tag}`,
    ]
  ) {
    assert.deepEqual(archive.find("juliet", { ids: [wrong] }), [], wrong);
    assert.throws(() => archive.find("juliet", { after: wrong }), ArchiveItemNotFoundError);
  }
  assert.equal(archive.find("juliet", { ids: [second, "bogus"] }).length, 1);
  // Another user's archive has its own sequence.
  assert.match(archive.append("romeo", { payload: "romeo's" }), /^[0-9]+-1\./);
  assert.equal(archive.count("juliet"), 1);
  assert.throws(() => archive.append("juliet", { when: 1.5, payload: "x" }), /integer ms/);
  assert.throws(() => archive.append("juliet", { when: -1, payload: "x" }), /since 1970/);
  database.close();
});

Deno.test("archive replace swaps an item's payload and type in place (a tombstone), keeping its id and time", () => {
  const { database, storage } = memoryStorage();
  const archive = storage.archive("example.com", "archive");
  const id = archive.append("juliet", { when: 5, type: "groupchat", payload: "said" });
  const other = archive.append("juliet", { when: 6, type: "groupchat", payload: "kept" });
  // Still queued: replace writes it first.
  assert.equal(archive.replace("juliet", id, "gone", "retracted"), true);
  assert.deepEqual(archive.find("juliet").map((i) => [i.id, i.when, i.type, i.payload]), [
    [id, 5, "retracted", "gone"],
    [other, 6, "groupchat", "kept"],
  ]);
  assert.equal(archive.replace("juliet", other, "again"), true);
  assert.equal(archive.find("juliet", { ids: [other] })[0].type, "groupchat");
  assert.equal(archive.replace("juliet", "1-1.nosuchitem", "x"), false);
  assert.equal(archive.replace("juliet", "malformed", "x"), false);
  assert.equal(archive.replace("romeo", id, "x"), false, "another owner's id");
  database.close();
});

Deno.test("archive 'with' as a bare JID matches every resource, as a full JID only that one", () => {
  const { database, storage } = memoryStorage();
  const archive = storage.archive("example.com", "archive");
  archive.append("juliet", { when: 1, with: "romeo@example.net/balcony", payload: "a" });
  archive.append("juliet", { when: 2, with: "romeo@example.net/orchard", payload: "b" });
  archive.append("juliet", { when: 3, with: "romeo@example.net", payload: "c" });
  archive.append("juliet", { when: 4, with: "nurse@example.com/kitchen", payload: "d" });
  const payloads = (query: { with: string }) =>
    archive.find("juliet", query).map((item) => item.payload).join("");
  assert.equal(payloads({ with: "romeo@example.net" }), "abc");
  assert.equal(payloads({ with: "romeo@example.net/orchard" }), "b");
  assert.equal(payloads({ with: "nurse@example.com" }), "d");
  assert.equal(archive.count("juliet", { with: "romeo@example.net/balcony" }), 1);
  assert.equal(archive.find("juliet")[0].with, "romeo@example.net/balcony");
  database.close();
});

Deno.test("archive appends wait in memory and reach the file in one batch", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/batched.sqlite`;
    const server = Database.open({ path });
    const reader = Database.open({ path });
    const rows = () =>
      (reader.prepare("SELECT count(*) AS n FROM archive_items").get() as { n: number }).n;
    const archive = new Storage(server).archive("example.com", "mam", {
      writeBehindMs: ARCHIVE_FLUSH_DELAY_MS,
    });
    const ids = [1, 2, 3].map((i) => archive.append("juliet", { payload: `<m${i}/>` }));
    await Promise.resolve();
    assert.equal(rows(), 0, "not written at the end of the task");
    // The writer's own reads see the items (they write the batch first).
    assert.deepEqual(archive.find("juliet").map((item) => item.id), ids);
    await Promise.resolve();
    assert.equal(rows(), 3);
    archive.append("juliet", { payload: "<m4/>" });
    await new Promise((resolve) => setTimeout(resolve, ARCHIVE_FLUSH_DELAY_MS * 3));
    assert.equal(rows(), 4, "written by the timer");
    archive.append("juliet", { payload: "<m5/>" });
    server.close();
    assert.equal(rows(), 5, "written when the database closes");
    reader.close();
  });
});

Deno.test("a batch that cannot be written is tried once more, then dropped; the server goes on", async () => {
  const { database, storage } = memoryStorage();
  const archive = storage.archive("example.com", "mam", { writeBehindMs: ARCHIVE_FLUSH_DELAY_MS });
  const first = archive.append("juliet", { payload: "<m1/>" });
  const second = archive.append("juliet", { payload: "<m2/>" });
  // The table is away (as good as a full disk): the batch fails and stays queued.
  database.db.exec("ALTER TABLE archive_items RENAME TO archive_items_away");
  database.flush();
  assert.equal(archive.count("juliet"), 2, "still counted while queued");
  database.db.exec("ALTER TABLE archive_items_away RENAME TO archive_items");
  // Another archive's owner row takes the id the rolled-back one had.
  database.prepare(
    "INSERT INTO archive_owners (host, user, store, items, next_seq) " +
      "VALUES ('example.com', 'romeo', 'mam', 0, 1)",
  ).run();
  // The retry (a timer) writes both, under an owner row created by the successful try.
  await new Promise((resolve) => setTimeout(resolve, ARCHIVE_FLUSH_DELAY_MS * 3));
  assert.deepEqual(archive.find("juliet").map((item) => item.id), [first, second]);
  assert.equal(archive.count("juliet"), 2);
  assert.deepEqual(archive.find("romeo"), []);
  // A batch that fails twice is dropped, and the archive's count stays right.
  archive.append("juliet", { payload: "<m3/>" });
  database.db.exec("ALTER TABLE archive_items RENAME TO archive_items_away");
  database.flush();
  database.flush();
  database.db.exec("ALTER TABLE archive_items_away RENAME TO archive_items");
  assert.equal(archive.count("juliet"), 2);
  assert.equal(archive.find("juliet").length, 2);
  assert.match(archive.append("juliet", { payload: "<m4/>" }), /^[0-9]+-4\./, "ids go on");
  assert.equal(archive.find("juliet").length, 3);
  database.close();
});

Deno.test("an archive first written in a transaction that rolls back is written again later", () => {
  const { database, storage } = memoryStorage();
  const archive = storage.archive("example.com", "offline");
  assert.throws(() =>
    database.transaction(() => {
      archive.append("juliet", { payload: "<undone/>" });
      throw new Error("undo");
    }), /undo/);
  archive.append("juliet", { payload: "<kept/>" });
  assert.deepEqual(archive.find("juliet").map((item) => item.payload), ["<kept/>"]);
  assert.equal(archive.count("juliet"), 1);
  database.close();
});

Deno.test("archive delete removes matching items and reports how many", () => {
  const { database, storage } = memoryStorage();
  const { archive, ids } = fillArchive(storage);
  assert.equal(archive.delete("juliet", { end: 1015 }), 2);
  assert.equal(archive.delete("juliet", { with: "nurse@example.com", limit: 2 }), 2);
  assert.deepEqual(archive.find("juliet").map((item) => ids.indexOf(item.id)), [2, 4, 6, 7, 8, 9]);
  assert.equal(archive.delete("juliet", { reverse: true, limit: 1 }), 1);
  assert.equal(archive.delete("juliet", { ids: [ids[4]] }), 1);
  assert.deepEqual(archive.find("juliet").map((item) => ids.indexOf(item.id)), [2, 6, 7, 8]);
  assert.equal(archive.delete("juliet"), 4);
  assert.equal(archive.count("juliet"), 0);
  database.close();
});

Deno.test("deleteUser removes a user's data from every store and nothing else", () => {
  const { database, storage } = memoryStorage();
  storage.keyval("example.com", "vcard").set("juliet", "v");
  storage.keyval("example.com", "vcard").set("romeo", "v");
  storage.keyval("example.net", "vcard").set("juliet", "v");
  storage.map("example.com", "roster").set("juliet", "k", 1);
  storage.archive("example.com", "archive").append("juliet", { payload: "p" });
  storage.archive("example.com", "archive").append("romeo", { payload: "p" });
  storage.deleteUser("example.com", "juliet");
  assert.equal(storage.keyval("example.com", "vcard").get("juliet"), undefined);
  assert.equal(storage.map("example.com", "roster").getAll("juliet").size, 0);
  assert.equal(storage.archive("example.com", "archive").count("juliet"), 0);
  assert.equal(storage.keyval("example.com", "vcard").get("romeo"), "v");
  assert.equal(storage.keyval("example.net", "vcard").get("juliet"), "v");
  assert.equal(storage.archive("example.com", "archive").count("romeo"), 1);
  database.close();
});

Deno.test("a second connection to the same file sees writes once the writer's task ends", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/shared.sqlite`;
    const server = Database.open({ path });
    const tool = Database.open({ path });
    new Storage(tool).keyval<number>("example.com", "x").set("", 1);
    // The writer's own connection sees it at once; the commit follows as a microtask.
    assert.equal(new Storage(tool).keyval<number>("example.com", "x").get(""), 1);
    await Promise.resolve();
    assert.equal(new Storage(server).keyval<number>("example.com", "x").get(""), 1);
    tool.close();
    server.close();
  });
});

Deno.test("one task's writes commit together, and explicit transactions nest inside them", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/batch.sqlite`;
    const server = Database.open({ path });
    const reader = Database.open({ path });
    const written = new Storage(server).keyval<number>("example.com", "n");
    const seen = new Storage(reader).keyval<number>("example.com", "n");
    written.set("a", 1);
    written.set("b", 2);
    // An explicit transaction inside the batch that fails undoes only its own work.
    assert.throws(() =>
      server.transaction(() => {
        written.set("c", 3);
        throw new Error("undo c");
      }), /undo c/);
    server.transaction(() => written.set("d", 4));
    assert.equal(server.db.isTransaction, true);
    assert.equal(seen.get("a"), undefined, "not committed before the task ends");
    await Promise.resolve();
    assert.equal(server.db.isTransaction, false);
    assert.deepEqual(["a", "b", "c", "d"].map((k) => seen.get(k)), [1, 2, undefined, 4]);
    // Closing commits what the current task wrote.
    written.set("e", 5);
    server.close();
    assert.equal(seen.get("e"), 5);
    reader.close();
  });
});

Deno.test("archive counts follow appends, deletes and account removal, and old files get them", async () => {
  await withTempDir((dir) => {
    const path = `${dir}/counts.sqlite`;
    // A file from before the counts existed, with items in it.
    const old = Database.open({ path, migrations: MIGRATIONS.filter((m) => m.version <= 2) });
    const insert = old.prepare(
      "INSERT INTO archive (host, user, store, key, when_ms, with_jid, type, payload) " +
        "VALUES ('example.com', 'juliet', 'offline', ?, ?, 'romeo@example.net/x', '', ?)",
    );
    for (let i = 0; i < 5; i++) insert.run(`old-key-${4 - i}`, 100 + i, `<m${i}/>`);
    old.close();

    const database = Database.open({ path });
    const storage = new Storage(database);
    const archive = storage.archive("example.com", "offline");
    assert.equal(archive.count("juliet"), 5, "counted when the file was migrated");
    const migrated = archive.find("juliet");
    assert.deepEqual(migrated.map((item) => item.payload), [0, 1, 2, 3, 4].map((i) => `<m${i}/>`));
    assert.deepEqual(
      migrated.map((item) => item.id),
      [4, 3, 2, 1, 0].map((k, i) => `${100 + i}-${i + 1}.old-key-${k}`),
    );
    assert.equal(migrated[0].with, "romeo@example.net/x");
    assert.deepEqual(archive.find("juliet", { after: migrated[3].id }), [migrated[4]]);
    assert.match(archive.append("juliet", { payload: "<m5/>" }), /^[0-9]+-6\./);
    archive.append("romeo", { payload: "<r/>" });
    assert.equal(archive.count("juliet"), 6);
    assert.equal(archive.countUpTo("juliet", 4), 4);
    assert.equal(storage.archive("example.com", "other").count("juliet"), 0);
    archive.delete("juliet", { limit: 2 });
    assert.equal(archive.count("juliet"), 4);
    assert.equal(archive.count("juliet"), archive.find("juliet").length);
    storage.deleteUser("example.com", "juliet");
    assert.equal(archive.count("juliet"), 0);
    assert.equal(archive.count("romeo"), 1);
    database.close();
  });
});
