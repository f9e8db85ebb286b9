// Backups taken while clients keep sending restore into a fresh data directory with every
// account, roster item and offline message; bad files and a running server are refused.

import assert from "node:assert/strict";
import {
  backupDatabase,
  BackupError,
  restoreDatabase,
  verifyStore,
} from "../../../core/storage/backup.ts";
import { main } from "../../../main.ts";
import { serverBackupCommands } from "../../../shell/sections/server_backup.ts";
import { RawClient, roundTrip } from "../../helpers/raw_client.ts";
import {
  startTestServer,
  testConfigText,
  TESTING_ON_POSTGRESQL,
} from "../../helpers/test_server.ts";

const MODULES = ["disco", "roster", "presence", "offline"];
const USERS = { alice: "alice-pw", bob: "bob-pw", carol: "carol-pw" };

async function files(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  return names.sort();
}

/** Writes a config file for `dataDir` (what an operator's `-c FILE` points to). */
async function configFile(dataDir: string): Promise<string> {
  const path = `${dataDir}/lilt.toml`;
  await Deno.writeTextFile(path, testConfigText(dataDir, { modules: MODULES }));
  return path;
}

/** Logs in, sends initial presence and returns the messages that arrive. */
async function offlineMessages(port: number, user: string, password: string, count: number) {
  const { client } = await RawClient.login(port, user, password, "restored");
  client.send("<presence/>");
  const got = [];
  for (let i = 0; i < count; i++) got.push(await client.next((el) => el.name === "message"));
  client.close();
  return got;
}

// Backup and restore copy the embedded store's file; PostgreSQL is backed up with its own tools.
Deno.test("a backup taken under traffic restores with accounts, roster and offline messages", {
  ignore: TESTING_ON_POSTGRESQL,
}, async () => {
  const t = await startTestServer({ users: USERS, modules: MODULES });
  const fresh = await Deno.makeTempDir({ prefix: "lilt-test-restore-" });
  const backupDir = await Deno.makeTempDir({ prefix: "lilt-test-backups-" });
  try {
    const { client: alice } = await RawClient.login(t.port, "alice", "alice-pw", "a");
    const { client: bob } = await RawClient.login(t.port, "bob", "bob-pw", "b");
    alice.send(
      "<iq type='set' id='r1'><query xmlns='jabber:iq:roster'>" +
        "<item jid='bob@localhost' name='Bob'><group>Friends</group></item></query></iq>",
    );
    await alice.next((el) => el.attrs.id === "r1");
    alice.send("<message to='carol@localhost' type='chat' id='before'><body>kept</body></message>");
    await roundTrip(alice);

    // Keep both clients sending (to online bob and offline carol) while backups run.
    let sending = true;
    let sent = 0;
    const traffic = (async () => {
      while (sending) {
        sent++;
        alice.send(
          `<message to='bob@localhost' type='chat' id='live${sent}'><body>x</body></message>`,
        );
        bob.send(
          `<message to='carol@localhost' type='chat' id='during${sent}'><body>y</body></message>`,
        );
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    })();
    const direct = `${backupDir}/direct.sqlite`;
    const viaShell = `${backupDir}/shell.sqlite`;
    // `lilt backup`: a second process-style connection opened read-only on the live file.
    const status = await main(["backup", direct, "-c", await configFile(t.dataDir)]);
    assert.equal(status, 0);
    const result = await serverBackupCommands()[0].run(
      { server: t.server, emit: () => {}, signal: new AbortController().signal },
      [viaShell],
    );
    assert.match(result.message!, /^Backed up the store to /);
    sending = false;
    await traffic;
    assert.ok(sent > 0);
    await roundTrip(bob);
    assert.deepEqual(await files(backupDir), ["direct.sqlite", "shell.sqlite"], "no temp files");
    verifyStore(direct);
    verifyStore(viaShell);
    alice.close();
    bob.close();

    for (const backup of [direct, viaShell]) {
      const dataDir = `${fresh}/${backup === direct ? "a" : "b"}`;
      await Deno.mkdir(dataDir);
      const config = await configFile(dataDir);
      assert.equal(await main(["restore", backup, "-c", config]), 0);
      const restored = await startTestServer({ dataDir, modules: MODULES });
      try {
        for (const [user, password] of Object.entries(USERS)) {
          const { client } = await RawClient.login(restored.port, user, password, "check");
          client.close();
        }
        const { client } = await RawClient.login(restored.port, "alice", "alice-pw", "roster");
        client.send("<iq type='get' id='g1'><query xmlns='jabber:iq:roster'/></iq>");
        const roster = await client.next((el) => el.attrs.id === "g1");
        const item = roster.getChild("query")!.getChild("item")!;
        assert.equal(item.attrs.jid, "bob@localhost");
        assert.equal(item.attrs.name, "Bob");
        assert.equal(item.getChildText("group"), "Friends");
        client.close();
        const [first] = await offlineMessages(restored.port, "carol", "carol-pw", 1);
        assert.equal(first.attrs.id, "before");
        assert.equal(first.getChildText("body"), "kept");
      } finally {
        await restored.stop();
      }
    }
  } finally {
    await t.stop();
    await Deno.remove(fresh, { recursive: true });
    await Deno.remove(backupDir, { recursive: true });
  }
});

// Backup and restore copy the embedded store's file; PostgreSQL is backed up with its own tools.
Deno.test("restore keeps the replaced store aside and refuses while the server answers", {
  ignore: TESTING_ON_POSTGRESQL,
}, async () => {
  const source = await startTestServer({ users: USERS, modules: MODULES });
  const dataDir = await Deno.makeTempDir({ prefix: "lilt-test-restore-" });
  try {
    const backup = `${dataDir}/backup.sqlite`;
    await backupDatabase(source.server.database, backup);
    const target = await startTestServer({ dataDir, users: { dave: "dave-pw" }, modules: MODULES });
    const config = await configFile(dataDir);
    // The real server's admin socket; a listener on the same path stands in for it.
    const socket = Deno.listen({ transport: "unix", path: `${dataDir}/lilt.sock` });
    const errors: string[] = [];
    const originalError = console.error;
    console.error = (...args: unknown[]) => errors.push(args.join(" "));
    try {
      assert.equal(await main(["restore", backup, "-c", config]), 1);
    } finally {
      console.error = originalError;
      socket.close();
    }
    assert.match(errors.join("\n"), /cannot restore while the server is running/);
    await target.stop();
    const storePath = `${dataDir}/lilt.sqlite`;
    const { replacedPath } = await restoreDatabase(backup, storePath);
    assert.ok(replacedPath?.startsWith(`${storePath}.replaced-`));
    const names = await files(dataDir);
    assert.ok(names.includes(replacedPath!.slice(dataDir.length + 1)), names.join(", "));
    assert.ok(!names.includes("lilt.sqlite-wal"), names.join(", "));
    assert.equal((await Deno.stat(storePath)).mode! & 0o777, 0o600);
    const restarted = await startTestServer({ dataDir, modules: MODULES });
    try {
      assert.equal(restarted.server.accounts.exists("localhost", "alice"), true);
      assert.equal(restarted.server.accounts.exists("localhost", "dave"), false);
    } finally {
      await restarted.stop();
    }
  } finally {
    await source.stop();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("bad backups are refused and failed backups leave no files", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lilt-test-backup-" });
  const t = await startTestServer({ modules: MODULES });
  try {
    const garbage = `${dir}/garbage.sqlite`;
    await Deno.writeTextFile(garbage, "not a database ".repeat(500));
    assert.throws(() => verifyStore(garbage), BackupError);
    const store = `${dir}/lilt.sqlite`;
    await Deno.writeTextFile(store, "current");
    await assert.rejects(() => restoreDatabase(garbage, store), /not a usable SQLite database/);
    assert.equal(await Deno.readTextFile(store), "current", "the store is untouched");
    // A SQLite file without Lilt's schema is refused too.
    const other = `${dir}/other.sqlite`;
    const { DatabaseSync } = await import("node:sqlite");
    const db = new DatabaseSync(other);
    db.exec("CREATE TABLE t (x)");
    db.close();
    assert.throws(() => verifyStore(other), /schema version/);

    const blocker = `${dir}/file`;
    await Deno.writeTextFile(blocker, "");
    await assert.rejects(
      () => backupDatabase(t.server.database, `${blocker}/sub/backup.sqlite`),
      BackupError,
    );
    // A directory that does not exist is an error (a typo, an unmounted disk), not created.
    await assert.rejects(
      () => backupDatabase(t.server.database, `${dir}/nightly/backup.sqlite`),
      new BackupError(`The directory '${dir}/nightly' does not exist`),
    );
    await assert.rejects(
      () => backupDatabase(`${dir}/missing.sqlite`, `${dir}/b.sqlite`),
      /Cannot open/,
    );
    assert.deepEqual(await files(dir), ["file", "garbage.sqlite", "lilt.sqlite", "other.sqlite"]);
    assert.equal(await main(["backup", "--help"]), 0);
  } finally {
    await t.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
