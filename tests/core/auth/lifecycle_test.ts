// Account lifecycle: disabled accounts refused at SASL, deletion with a grace period, the
// purge task and tombstones, bulk creation, and last-activity timestamps from real logins.

import assert from "node:assert/strict";
import {
  deleteAccount,
  purgeExpiredAccounts,
  restoreAccount,
  startAccountMaintenance,
} from "../../../core/auth/account_lifecycle.ts";
import {
  AccountExistsError,
  AccountNotFoundError,
  AccountStore,
  AccountTombstonedError,
} from "../../../core/auth/accounts.ts";
import { Database } from "../../../core/storage/database.ts";
import { RawClient } from "../../helpers/raw_client.ts";
import { startTestServer, type TestServer } from "../../helpers/test_server.ts";

const NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl";

function store(): { accounts: AccountStore; database: Database } {
  const database = Database.open({ path: ":memory:" });
  return { accounts: new AccountStore(database, { iterations: 4096 }), database };
}

async function withServer(
  fn: (t: TestServer) => Promise<void>,
  hostToml = "",
): Promise<void> {
  const t = await startTestServer({
    users: { alice: "alice-pw", bob: "bob-pw" },
    modules: ["roster", "presence", "offline"],
    hostToml,
  });
  try {
    await fn(t);
  } finally {
    await t.stop();
  }
}

async function plainOutcome(t: TestServer, user: string, password: string) {
  const c = await RawClient.connect(t.port);
  await c.open();
  await c.starttls();
  c.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${btoa(`\0${user}\0${password}`)}</auth>`);
  const outcome = await c.next((el) => el.name === "success" || el.name === "failure");
  c.close();
  return outcome;
}

Deno.test("disable, enable and isDisabled keep a flag per account", async () => {
  const { accounts, database } = store();
  await accounts.create("example.com", "juliet", "pw");
  assert.equal(accounts.isDisabled("example.com", "juliet"), false);
  accounts.disable("example.com", "juliet");
  assert.equal(accounts.isDisabled("example.com", "juliet"), true);
  assert.equal(await accounts.verifyPassword("example.com", "juliet", "pw"), true);
  accounts.enable("example.com", "juliet");
  assert.equal(accounts.isDisabled("example.com", "juliet"), false);
  assert.throws(() => accounts.disable("example.com", "nobody"), AccountNotFoundError);
  assert.equal(accounts.isDisabled("example.com", "nobody"), false);
  database.close();
});

Deno.test("a purged name is held by a tombstone until it expires", async () => {
  const { accounts, database } = store();
  await accounts.create("example.com", "juliet", "pw");
  const until = Date.now() + 60_000;
  assert.equal(accounts.purge("example.com", "juliet", until), true);
  assert.equal(accounts.exists("example.com", "juliet"), false);
  await assert.rejects(
    () => accounts.create("example.com", "juliet", "pw2"),
    (error: Error) =>
      error instanceof AccountTombstonedError && /reserved until/.test(error.message),
  );
  // Other hosts and names are unaffected; once expired the name is free again.
  await accounts.create("other.example", "juliet", "pw");
  assert.equal(accounts.dropExpiredTombstones(until + 1), 1);
  await accounts.create("example.com", "juliet", "pw2");
  database.close();
});

Deno.test("createMany hashes in batches and skips existing, duplicate and invalid entries", async () => {
  const { accounts, database } = store();
  await accounts.create("example.com", "taken", "pw");
  const result = await accounts.createMany("example.com", [
    { username: "a", password: "pa" },
    { username: "b", password: "pb" },
    { username: "a", password: "again" },
    { username: "taken", password: "x" },
    { username: "c", password: "" },
  ], { batchSize: 2 });
  assert.deepEqual(result.created, ["a", "b"]);
  assert.deepEqual(result.failed.map((f) => f.username), ["a", "taken", "c"]);
  assert.equal(await accounts.verifyPassword("example.com", "b", "pb"), true);
  await assert.rejects(() => accounts.create("example.com", "a", "x"), AccountExistsError);
  database.close();
});

Deno.test("a disabled account fails SASL with account-disabled after a correct password", () =>
  withServer(async (t) => {
    t.server.accounts.disable("localhost", "alice");
    const refused = await plainOutcome(t, "alice", "alice-pw");
    assert.equal(refused.name, "failure");
    assert.ok(refused.getChild("account-disabled"));
    // A wrong password still says not-authorized (nothing is revealed about the state).
    const wrong = await plainOutcome(t, "alice", "nope");
    assert.ok(wrong.getChild("not-authorized"));
    t.server.accounts.enable("localhost", "alice");
    const { client } = await RawClient.login(t.port, "alice", "alice-pw");
    client.close();
  }));

Deno.test("logins and session ends are recorded as last activity", () =>
  withServer(async (t) => {
    const before = Date.now();
    const { client } = await RawClient.login(t.port, "alice", "alice-pw");
    const info = t.server.accounts.info("localhost", "alice")!;
    assert.ok(info.lastLogin! >= before);
    assert.equal(info.lastLogout, undefined);
    client.close();
    let logout: number | undefined;
    while ((logout = t.server.accounts.info("localhost", "alice")!.lastLogout) === undefined) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.ok(logout >= info.lastLogin!);
  }));

Deno.test("deletion disables and closes sessions; restore brings the account back", () =>
  withServer(async (t) => {
    const { client } = await RawClient.login(t.port, "alice", "alice-pw");
    const outcome = deleteAccount(t.server, "localhost", "alice");
    assert.equal(outcome.state, "pending");
    assert.equal(outcome.closedSessions, 1);
    assert.ok(outcome.purgeAt! > Date.now() + 604_000_000);
    const error = await client.next((el) => el.name === "error");
    assert.ok(error.getChild("not-authorized"));
    await client.waitClosed();
    assert.ok((await plainOutcome(t, "alice", "alice-pw")).getChild("account-disabled"));
    restoreAccount(t.server, "localhost", "alice");
    assert.equal(t.server.accounts.isDisabled("localhost", "alice"), false);
    assert.equal((await plainOutcome(t, "alice", "alice-pw")).name, "success");
    assert.throws(() => restoreAccount(t.server, "localhost", "alice"), /not pending deletion/);
  }));

Deno.test("the purge removes expired deletions with their data and leaves a tombstone", () =>
  withServer(async (t) => {
    const roster = t.server.storage.map("localhost", "roster");
    roster.set("alice", "bob@localhost", { subscription: "both" });
    deleteAccount(t.server, "localhost", "alice");
    deleteAccount(t.server, "localhost", "bob");
    // Alice's deletion is older than the grace period; bob's is not.
    t.server.accounts.markDeleted("localhost", "alice", Date.now() - 604_801_000);
    assert.throws(() => restoreAccount(t.server, "localhost", "alice"), /grace period is over/);
    assert.deepEqual(purgeExpiredAccounts(t.server), ["alice@localhost"]);
    assert.equal(t.server.accounts.exists("localhost", "alice"), false);
    assert.equal(roster.getAll("alice").size, 0);
    assert.equal(t.server.accounts.exists("localhost", "bob"), true);
    await assert.rejects(
      () => t.server.accounts.create("localhost", "alice", "new"),
      AccountTombstonedError,
    );
    const until = t.server.accounts.tombstoneUntil("localhost", "alice")!;
    assert.ok(Math.abs(until - (Date.now() + 2_592_000_000)) < 60_000);
  }));

Deno.test("a zero grace period deletes at once; the maintenance task purges at start", () =>
  withServer(async (t) => {
    const outcome = deleteAccount(t.server, "localhost", "alice");
    assert.equal(outcome.state, "purged");
    assert.equal(t.server.accounts.exists("localhost", "alice"), false);
    assert.equal(t.server.accounts.tombstoneUntil("localhost", "alice"), undefined);
    await t.server.accounts.create("localhost", "alice", "again");
    t.server.accounts.markDeleted("localhost", "bob", Date.now() - 1000);
    const stop = startAccountMaintenance(t.server);
    stop();
    assert.equal(t.server.accounts.exists("localhost", "bob"), false);
  }, "deletion_grace_period = 0\ntombstone_period = 0"));
