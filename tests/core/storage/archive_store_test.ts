// The archive store's statements on both engines (issue 19): id lists of any length up to the
// limit, byte sizes of payloads with backslashes and multi-byte text, bounded counts, and
// sequence numbers that go on after a restart, on SQLite and on a PostgreSQL schema.

import assert from "node:assert/strict";
import { Database, type OpenDatabaseOptions } from "../../../core/storage/database.ts";
import { MAX_ARCHIVE_IDS, Storage } from "../../../core/storage/stores.ts";
import { freshSchema, postgresUrl } from "../../helpers/postgres.ts";

/** Runs `fn` with options that open one store again and again, on each engine. */
function onBothEngines(
  name: string,
  fn: (open: () => Database) => void | Promise<void>,
): void {
  Deno.test(`${name} (SQLite)`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "lilt-test-archive-" });
    try {
      await fn(() => Database.open({ path: `${dir}/lilt.sqlite` }));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
  Deno.test(`${name} (PostgreSQL)`, async () => {
    const url = await postgresUrl();
    using schema = freshSchema(url);
    const options: OpenDatabaseOptions = {
      path: `${url} schema ${schema.name}`,
      postgres: { url, password: "", schema: schema.name },
    };
    await fn(() => Database.open(options));
  });
}

onBothEngines(
  "an id list longer than one statement's padding selects exactly its items",
  (open) => {
    const database = open();
    try {
      const archive = new Storage(database).archive("example.com", "mam");
      const ids: string[] = [];
      for (let i = 0; i < 1500; i++) {
        ids.push(
          archive.append("juliet", { when: i, payload: `m${i}` }),
        );
      }
      const wanted = ids.filter((_, i) => i % 3 !== 1);
      assert.equal(wanted.length, 1000);
      assert.deepEqual(archive.find("juliet", { ids: wanted }).map((item) => item.id), wanted);
      assert.equal(archive.count("juliet", { ids: [...ids.slice(0, 1100), "0-1.nope"] }), 1100);
      // A repeated id counts once; an empty list or one of malformed ids matches nothing.
      assert.equal(archive.count("juliet", { ids: [ids[5], ids[5], ids[7]] }), 2);
      assert.deepEqual(archive.find("juliet", { ids: [] }), []);
      assert.deepEqual(archive.find("juliet", { ids: ["not an id"] }), []);
      assert.equal(archive.delete("juliet", { ids: ids.slice(0, 1025) }), 1025);
      assert.equal(archive.count("juliet"), 475);
      assert.throws(
        () => archive.find("juliet", { ids: new Array(MAX_ARCHIVE_IDS + 1).fill(ids[0]) }),
        RangeError,
      );
    } finally {
      database.close();
    }
  },
);

onBothEngines("bytes counts the UTF-8 bytes of payloads, backslashes included", (open) => {
  const database = open();
  try {
    const archive = new Storage(database).archive("example.com", "mam");
    assert.equal(archive.bytes("juliet"), 0);
    archive.append("juliet", { payload: "a\\x00\\\\b" }); // 8 bytes
    archive.append("juliet", { payload: "héllo ☃", with: "romeo@example.net" }); // 10 bytes
    assert.equal(archive.bytes("juliet"), 18);
    assert.equal(archive.bytes("juliet", { with: "romeo@example.net" }), 10);
  } finally {
    database.close();
  }
});

onBothEngines("countUpTo stops at its bound, with a query or without", (open) => {
  const database = open();
  try {
    const archive = new Storage(database).archive("example.com", "offline");
    for (let i = 0; i < 10; i++) {
      archive.append("juliet", { when: 1000 + i, with: "romeo@example.net", payload: `${i}` });
    }
    assert.equal(archive.countUpTo("juliet", 4), 4);
    assert.equal(archive.countUpTo("juliet", 4, { start: 1002 }), 4);
    assert.equal(archive.countUpTo("juliet", 40, { start: 1002 }), 8);
    assert.equal(archive.countUpTo("juliet", 40, { with: "nurse@example.net" }), 0);
  } finally {
    database.close();
  }
});

onBothEngines("sequence numbers go on after the store is opened again", (open) => {
  const first = open();
  const before: string[] = [];
  try {
    const archive = new Storage(first).archive("example.com", "mam");
    for (let i = 0; i < 3; i++) before.push(archive.append("juliet", { when: 5, payload: `${i}` }));
  } finally {
    first.close();
  }
  const second = open();
  try {
    const archive = new Storage(second).archive("example.com", "mam");
    const next = archive.append("juliet", { when: 5, payload: "3" });
    assert.match(next, /^5-4\./);
    assert.deepEqual(archive.find("juliet").map((item) => item.id), [...before, next]);
    assert.equal(archive.count("juliet"), 4);
  } finally {
    second.close();
  }
});
