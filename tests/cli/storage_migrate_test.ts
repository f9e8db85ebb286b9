// `lilt storage migrate` as an operator runs it (issue 19): a store filled over real sockets
// moves into PostgreSQL, where a server gives its users what they had, and back into a file
// whose tables hold exactly the original rows; a running server, a target that holds data and
// a copy whose counts differ are refused with what to do. Needs PostgreSQL
// (tests/helpers/postgres.ts starts a throwaway cluster).

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { Database } from "../../core/storage/database.ts";
import { openPostgres } from "../../core/storage/postgresql.ts";
import { runLilt, startLiltProcess } from "../helpers/lilt_process.ts";
import { freshSchema, postgresUrl } from "../helpers/postgres.ts";
import { RawClient, roundTrip } from "../helpers/raw_client.ts";
import { iqResult } from "../helpers/iq.ts";
import { startTestServer, testConfigText, type TestServerOptions } from "../helpers/test_server.ts";

const MUC = "conference.localhost";
const PUBSUB = "pubsub.localhost";
const NS_ROSTER = "jabber:iq:roster";
const NS_MAM = "urn:xmpp:mam:2";
const NS_PUBSUB = "http://jabber.org/protocol/pubsub";
const NS_NICK = "http://jabber.org/protocol/nick";
const NS_MUC = "http://jabber.org/protocol/muc";
const NS_OWNER = "http://jabber.org/protocol/muc#owner";
const USERS = { alice: "alice's old secret", bob: "bob-pw-2024" };

const COMPONENTS = `[[component]]\ndomain = "${MUC}"\nmodules = ["disco", "muc"]\n\n` +
  `[[component]]\ndomain = "${PUBSUB}"\nmodules = ["disco", "pubsub"]\n`;

/** Server options for a store in `[storage]` (the embedded file when `storage` is omitted). */
function serverOptions(dataDir: string, storage = 'driver = "sqlite"\n'): TestServerOptions {
  return { dataDir, extraToml: `${COMPONENTS}\n[storage]\n${storage}` };
}

/** A data directory with lilt.toml written for `storage` (what `-c` points at). */
async function dataDirWithConfig(storage?: string) {
  const dir = await Deno.makeTempDir({ prefix: "lilt-storage-migrate-" });
  const configFile = `${dir}/lilt.toml`;
  const options = serverOptions(dir, storage);
  await Deno.writeTextFile(configFile, testConfigText(dir, options));
  return { dir, configFile, options };
}

function postgresStorage(url: string, schema: string): string {
  return `driver = "postgresql"\nurl = ${JSON.stringify(url)}\nschema = "${schema}"\n`;
}

/** Where `lilt storage migrate --to postgresql` copies to. */
interface PostgresTarget {
  url: string;
  schema: string;
  passwordFile?: string;
}

/** `lilt storage migrate --to postgresql` from the store `configFile` names. */
function migrateToPostgres(configFile: string, target: PostgresTarget) {
  const password = target.passwordFile === undefined
    ? []
    : ["--password-file", target.passwordFile];
  return runLilt([
    "storage",
    "migrate",
    "--to",
    "postgresql",
    "--url",
    target.url,
    ...password,
    "--schema",
    target.schema,
    "-c",
    configFile,
  ]);
}

/** `lilt storage migrate --to sqlite` from the store `configFile` names into a file at `path`. */
function migrateToSqlite(configFile: string, path: string) {
  return runLilt(["storage", "migrate", "--to", "sqlite", "--path", path, "-c", configFile]);
}

/** Logs in and sends initial presence. */
async function online(port: number, user: keyof typeof USERS): Promise<RawClient> {
  const { client } = await RawClient.login(port, user, USERS[user], "desk");
  client.send("<presence/>");
  await roundTrip(client);
  return client;
}

/**
 * What users keep on a server, written over real sockets: an approved roster subscription, chats
 * (archived for both), an offline message, a PEP item, a pubsub node with an item and a
 * persistent room.
 */
async function fill(port: number): Promise<void> {
  const alice = await online(port, "alice");
  const bob = await online(port, "bob");
  await iqResult(
    alice,
    "set",
    `<query xmlns='${NS_ROSTER}'><item jid='bob@localhost' name='Bobby'>` +
      "<group>Friends</group></item></query>",
  );
  alice.send("<presence to='bob@localhost' type='subscribe'/>");
  await bob.next((el) => el.name === "presence" && el.attrs.type === "subscribe");
  bob.send("<presence to='alice@localhost' type='subscribed'/>");
  await alice.next((el) => el.name === "presence" && el.attrs.type === "subscribed");
  for (let i = 1; i <= 3; i++) {
    alice.send(
      `<message to='bob@localhost' type='chat' id='c${i}'><body>chat ${i}</body></message>`,
    );
    await bob.next((el) => el.name === "message" && el.getChildText("body") === `chat ${i}`);
  }
  await iqResult(
    alice,
    "set",
    `<pubsub xmlns='${NS_PUBSUB}'><publish node='${NS_NICK}'><item id='current'>` +
      `<nick xmlns='${NS_NICK}'>Ally</nick></item></publish></pubsub>`,
  );
  await iqResult(
    alice,
    "set",
    `<pubsub xmlns='${NS_PUBSUB}'><create node='news'/></pubsub>`,
    PUBSUB,
  );
  await iqResult(
    alice,
    "set",
    `<pubsub xmlns='${NS_PUBSUB}'><publish node='news'><item id='first'>` +
      "<entry xmlns='http://www.w3.org/2005/Atom'><title>Moving day</title></entry>" +
      "</item></publish></pubsub>",
    PUBSUB,
  );
  alice.send(`<presence to='lounge@${MUC}/Al'><x xmlns='${NS_MUC}'/></presence>`);
  await alice.next((el) => el.name === "message" && el.getChild("subject") !== undefined);
  await iqResult(
    alice,
    "set",
    `<query xmlns='${NS_OWNER}'><x xmlns='jabber:x:data' type='submit'>` +
      "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>" +
      "<field var='muc#roomconfig_persistentroom'><value>1</value></field>" +
      "<field var='muc#roomconfig_roomname'><value>The Lounge</value></field></x></query>",
    `lounge@${MUC}`,
  );
  bob.close();
  await alice.waitUntil(
    () => alice.received.find((el) => el.name === "presence" && el.attrs.type === "unavailable"),
    5000,
    "bob's unavailable presence",
  );
  alice.send(
    "<message to='bob@localhost' type='chat' id='away'><body>while you were out</body></message>",
  );
  await roundTrip(alice);
  alice.close();
}

/** Every table of a SQLite file with its rows as sorted canonical strings (order-free). */
function tableRows(path: string): Map<string, string[]> {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const tables = db.prepare(
      "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' " +
        "ESCAPE '\\' ORDER BY name",
    ).all().map((row) => String(row.name));
    const result = new Map<string, string[]>();
    for (const table of tables) {
      const select = db.prepare(`SELECT * FROM "${table}"`);
      select.setReadBigInts(true);
      result.set(
        table,
        select.all().map((row) =>
          JSON.stringify(
            Object.entries(row),
            (_key, value) =>
              value instanceof Uint8Array
                ? { bytes: Array.from(value, (b) => b.toString(16).padStart(2, "0")).join("") }
                : typeof value === "bigint"
                ? { integer: value.toString() }
                : typeof value === "number"
                ? { real: value }
                : value,
          )
        ).sort(),
      );
    }
    result.set("(user_version)", [
      String((db.prepare("PRAGMA user_version").get() as { user_version: number }).user_version),
    ]);
    return result;
  } finally {
    db.close();
  }
}

/** The counts table's line for `table`: its source and target rows. */
function countsOf(stdout: string, table: string): [number, number] | undefined {
  const match = new RegExp(`^${table} +(\\d+) +(\\d+)$`, "m").exec(stdout);
  return match ? [Number(match[1]), Number(match[2])] : undefined;
}

Deno.test("a store moves into PostgreSQL, serves its users there, and comes back into a file row for row", async () => {
  const url = await postgresUrl();
  const schema = freshSchema(url);
  const source = await dataDirWithConfig();
  const onPostgres = await dataDirWithConfig(postgresStorage(url, schema.name));
  try {
    const first = await startTestServer({ ...source.options, users: USERS });
    try {
      await fill(first.port);
    } finally {
      await first.stop();
    }

    const there = await migrateToPostgres(source.configFile, { url, schema: schema.name });
    assert.equal(there.code, 0, there.stderr + there.stdout);
    assert.match(there.stdout, /^table +source rows +target rows$/m);
    assert.deepEqual(countsOf(there.stdout, "accounts"), [2, 2]);
    assert.deepEqual(countsOf(there.stdout, "muc_rooms"), [1, 1]);
    const items = countsOf(there.stdout, "archive_items")!;
    assert.ok(items[0] >= 8 && items[0] === items[1], `archive items: ${items}`);
    assert.ok(countsOf(there.stdout, "pubsub_items")![0] >= 2, "the PEP and the pubsub item");
    assert.doesNotMatch(there.stdout, /module_schema|lilt_schema_version/);
    assert.match(there.stdout, /the counts match/);
    assert.match(
      there.stdout,
      new RegExp(
        `\\[storage\\]\\ndriver = "postgresql"\\nurl = "${url.replaceAll(".", "\\.")}"\\n` +
          `schema = "${schema.name}"\\n`,
      ),
    );

    // Identity columns continue after the largest copied id.
    const copied = openPostgres({ url, schema: schema.name });
    try {
      for (const table of ["archive_owners", "archive_items", "pubsub_items"]) {
        const row = copied.prepare(
          `SELECT nextval(pg_get_serial_sequence('${table}', 'id')) AS next, ` +
            `(SELECT max(id) FROM ${table}) AS largest`,
        ).get()!;
        assert.ok(Number(row.largest) > 0, table);
        assert.equal(row.next, Number(row.largest) + 1, `the next id of ${table}`);
      }
    } finally {
      copied.close();
    }

    // The way back, before any server writes to PostgreSQL: a new file with the same rows.
    const back = `${source.dir}/back/lilt.sqlite`;
    const home = await migrateToSqlite(onPostgres.configFile, back);
    assert.equal(home.code, 0, home.stderr + home.stdout);
    assert.match(home.stdout, new RegExp(`path = "${back.replaceAll(".", "\\.")}"`));
    const original = tableRows(`${source.dir}/lilt.sqlite`);
    const copy = tableRows(back);
    assert.deepEqual([...copy.keys()], [...original.keys()]);
    for (const [table, rows] of original) {
      assert.deepEqual(copy.get(table), rows, `rows of ${table}`);
    }
    assert.equal(original.get("accounts")!.length, 2);
    assert.ok(original.get("account_credentials")!.length >= 2);
    assert.ok(original.get("module_schema")!.length >= 2, "the pubsub and muc schemas");
    assert.equal((await Deno.stat(back)).mode! & 0o777, 0o600, "the copy holds credentials");

    // A server on PostgreSQL: the old password, the roster, the offline message, the archive,
    // PEP, pubsub and the room; and a new archived message does not collide with copied ids.
    const server = await startTestServer(onPostgres.options);
    try {
      const scram = await RawClient.connect(server.port);
      await scram.open();
      await scram.starttls();
      const { outcome, verified } = await scram.scram("alice", USERS.alice, { hash: "SHA-256" });
      assert.equal(outcome.name, "success");
      assert.ok(verified, "the server signature proves the copied server key");
      scram.close();

      const alice = await online(server.port, "alice");
      const roster = await iqResult(alice, "get", `<query xmlns='${NS_ROSTER}'/>`);
      const bobItem = roster.getChild("query", NS_ROSTER)!.getChildren("item")
        .find((item) => item.attrs.jid === "bob@localhost")!;
      assert.equal(bobItem.attrs.subscription, "to", "bob approved alice's subscription");
      assert.equal(bobItem.attrs.name, "Bobby");

      const bob = await online(server.port, "bob");
      const offline = await bob.next((el) =>
        el.name === "message" && el.getChildText("body") === "while you were out"
      );
      assert.ok(offline.getChild("delay", "urn:xmpp:delay"));
      alice.send(
        "<message to='bob@localhost' type='chat' id='new'><body>after the move</body></message>",
      );
      await bob.next((el) => el.name === "message" && el.getChildText("body") === "after the move");
      bob.send(`<iq type='set' id='mam'><query xmlns='${NS_MAM}' queryid='q'/></iq>`);
      await bob.next((el) => el.name === "iq" && el.attrs.id === "mam");
      const archived = bob.received
        .map((el) => el.getChild("result", NS_MAM))
        .filter((result) => result?.attrs.queryid === "q")
        .map((result) => result!.getChild("forwarded")!.getChild("message")!.getChildText("body"));
      assert.deepEqual(archived, [
        "chat 1",
        "chat 2",
        "chat 3",
        "while you were out",
        "after the move",
      ]);

      const nick = await iqResult(
        alice,
        "get",
        `<pubsub xmlns='${NS_PUBSUB}'><items node='${NS_NICK}'/></pubsub>`,
        "alice@localhost",
      );
      assert.match(
        nick.getChild("pubsub", NS_PUBSUB)!.getChild("items")!.getChild("item")!
          .getChild("nick", NS_NICK)!.text(),
        /Ally/,
      );
      const news = await iqResult(
        bob,
        "get",
        `<pubsub xmlns='${NS_PUBSUB}'><items node='news'/></pubsub>`,
        PUBSUB,
      );
      assert.equal(
        news.getChild("pubsub", NS_PUBSUB)!.getChild("items")!.getChild("item")!.attrs.id,
        "first",
      );
      const room = await iqResult(
        bob,
        "get",
        `<query xmlns='http://jabber.org/protocol/disco#info'/>`,
        `lounge@${MUC}`,
      );
      assert.equal(room.getChild("query")!.getChild("identity")!.attrs.name, "The Lounge");
      alice.close();
      bob.close();
    } finally {
      await server.stop();
    }
  } finally {
    schema.drop();
    await Deno.remove(source.dir, { recursive: true }).catch(() => {});
    await Deno.remove(onPostgres.dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("storage migrate refuses a running server, a target that holds data and an unknown module's tables", async () => {
  const url = await postgresUrl();
  const schema = freshSchema(url);
  const source = await dataDirWithConfig();
  const migrate = () => migrateToPostgres(source.configFile, { url, schema: schema.name });
  try {
    const lilt = await startLiltProcess(source.configFile);
    try {
      const refused = await migrate();
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /cannot migrate the store while the server is running/);
    } finally {
      await lilt.stop();
    }
    const server = await startTestServer({ ...source.options, users: USERS });
    await server.stop();
    const first = await migrate();
    assert.equal(first.code, 0, first.stderr);
    const again = await migrate();
    assert.equal(again.code, 1);
    assert.match(
      again.stderr,
      new RegExp(
        `already holds data \\(rows in \\d+ tables?: .*accounts.*\\).*To start over, drop the ` +
          `schema \\(DROP SCHEMA ${schema.name} CASCADE\\) or give another --schema`,
      ),
    );

    // Tables of a module this Lilt does not have: refused before the target is touched.
    const other = freshSchema(url);
    try {
      const store = Database.open({ path: `${source.dir}/lilt.sqlite` });
      store.prepare("INSERT INTO module_schema (module, version) VALUES ('weather', 2)").run();
      store.close();
      const unknown = await migrateToPostgres(source.configFile, { url, schema: other.name });
      assert.equal(unknown.code, 1);
      assert.match(
        unknown.stderr,
        /tables of module 'weather' \(module_schema records version 2\)/,
      );
      const check = openPostgres({ url, schema: other.name });
      try {
        assert.equal(
          check.prepare(
            "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = ?",
          ).get(other.name)!.n,
          0,
        );
      } finally {
        check.close();
      }
    } finally {
      other.drop();
    }

    const onPostgres = await dataDirWithConfig(postgresStorage(url, schema.name));
    try {
      const file = `${onPostgres.dir}/taken.sqlite`;
      const taken = Database.open({ path: file });
      taken.prepare("INSERT INTO kv (host, user, store, value) VALUES ('x', '', 's', 'v')").run();
      taken.close();
      const back = await migrateToSqlite(onPostgres.configFile, file);
      assert.equal(back.code, 1);
      assert.match(back.stderr, new RegExp(`To start over, remove ${file}`));
    } finally {
      await Deno.remove(onPostgres.dir, { recursive: true }).catch(() => {});
    }
  } finally {
    schema.drop();
    await Deno.remove(source.dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("storage migrate exits non-zero naming the table whose row counts differ", async () => {
  const url = await postgresUrl();
  const schema = freshSchema(url);
  const source = await dataDirWithConfig();
  try {
    const server = await startTestServer({ ...source.options, users: USERS });
    await server.stop();
    // The target's tables exist, empty, with a trigger that silently drops one account's
    // credentials: the copy seems to succeed, and only the count shows the loss.
    const target = Database.open({
      path: "target",
      postgres: { url, password: "", schema: schema.name },
    });
    target.db.exec(`
      CREATE FUNCTION drop_row() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RETURN NULL; END $$;
      CREATE TRIGGER lose_bob BEFORE INSERT ON account_credentials FOR EACH ROW
        WHEN (NEW."user" = 'bob') EXECUTE FUNCTION drop_row();
    `);
    target.close();
    const result = await migrateToPostgres(source.configFile, { url, schema: schema.name });
    assert.equal(result.code, 1, result.stdout);
    assert.deepEqual(countsOf(result.stdout, "accounts"), [2, 2]);
    const [had, got] = countsOf(result.stdout, "account_credentials")!;
    assert.equal(got, had / 2, "bob's credentials are lost");
    assert.match(
      result.stderr,
      new RegExp(
        `the row counts differ for account_credentials \\(${had} against ${got}\\); keep ` +
          `using ${source.dir}/lilt\\.sqlite\\. To start over, drop the schema`,
      ),
    );
  } finally {
    schema.drop();
    await Deno.remove(source.dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("an encrypted store moves into PostgreSQL as a role that logs in with a password file", async () => {
  const url = await postgresUrl();
  const schema = freshSchema(url);
  const role = `mover_${crypto.randomUUID().slice(0, 8)}`;
  const password = "pg secret 'quoted' \u00e9";
  const admin = openPostgres({ url });
  admin.exec(
    `CREATE ROLE ${role} LOGIN PASSWORD '${password.replaceAll("'", "''")}' ` +
      `IN ROLE lilt_password_login; GRANT CREATE ON DATABASE lilt TO ${role}`,
  );
  const source = await dataDirWithConfig('key_file = "store.key"\n');
  try {
    await Deno.writeTextFile(`${source.dir}/store.key`, "a store key\n", { mode: 0o600 });
    await Deno.chmod(`${source.dir}/store.key`, 0o600);
    const server = await startTestServer({ ...source.options, users: USERS });
    await server.stop();
    const passwordFile = `${source.dir}/pg.password`;
    const roleUrl = url.replace("//lilt@", `//${role}@`);
    const migrate = () =>
      migrateToPostgres(source.configFile, { url: roleUrl, schema: schema.name, passwordFile });

    await Deno.writeTextFile(passwordFile, "not the password\n", { mode: 0o600 });
    await Deno.chmod(passwordFile, 0o600);
    const wrong = await migrate();
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /password authentication failed/);
    assert.doesNotMatch(wrong.stderr + wrong.stdout, /not the password/);

    await Deno.writeTextFile(passwordFile, `${password}\n`);
    const moved = await migrate();
    assert.equal(moved.code, 0, moved.stderr);
    assert.deepEqual(countsOf(moved.stdout, "accounts"), [2, 2]);
    assert.match(
      moved.stdout,
      new RegExp(`password_file = "${passwordFile.replaceAll(".", "\\.")}"`),
    );
    assert.doesNotMatch(moved.stdout + moved.stderr, /pg secret/);

    // The SCRAM keys arrive as the same bytes.
    const credentials = (db: Database) =>
      db.prepare(
        "SELECT host, user, hash, salt, iterations, stored_key, server_key, updated_ms " +
          "FROM account_credentials ORDER BY user, hash",
      ).all().map((row) => ({ ...row }));
    const plain = Database.open({ path: `${source.dir}/lilt.sqlite`, key: "a store key" });
    const copied = Database.open({
      path: "copy",
      postgres: { url: roleUrl, password, schema: schema.name },
    });
    try {
      const expected = credentials(plain);
      assert.equal(expected.length, 4);
      assert.ok(expected.every((row) => row.salt instanceof Uint8Array));
      assert.deepEqual(credentials(copied), expected);
    } finally {
      plain.close();
      copied.close();
    }
  } finally {
    schema.drop();
    admin.exec(`DROP OWNED BY ${role}; DROP ROLE ${role}`);
    admin.close();
    await Deno.remove(source.dir, { recursive: true }).catch(() => {});
  }
});
