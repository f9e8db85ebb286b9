// The `user` admin shell section, run directly against a real server: account creation with
// roles, disabling (live session closed, login refused), deletion/restore, listings, bulk
// import and activity.

import assert from "node:assert/strict";
import {
  type CommandContext,
  CommandError,
  type CommandResult,
} from "../../core/admin_commands.ts";
import { RoleModel } from "../../core/auth/roles.ts";
import { NS_STREAM, RawClient } from "../helpers/raw_client.ts";
import { startTestServer, type TestServer } from "../helpers/test_server.ts";
import { globToRegExp, parseDuration, userCommands } from "../../shell/sections/user.ts";

const NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl";

async function run(t: TestServer, name: string, ...args: string[]): Promise<CommandResult> {
  const spec = userCommands().find((c) => c.name === name);
  if (!spec) throw new Error(`No command user ${name}`);
  const ctx: CommandContext = {
    server: t.server,
    emit: () => {},
    signal: new AbortController().signal,
  };
  return await spec.run(ctx, args);
}

async function withServer(fn: (t: TestServer) => Promise<void>): Promise<void> {
  const t = await startTestServer({
    users: { alice: "alice-pw", bob: "bob-pw" },
    modules: ["roster", "presence"],
  });
  try {
    await fn(t);
  } finally {
    await t.stop();
  }
}

async function saslOutcome(t: TestServer, user: string, password: string): Promise<string> {
  const c = await RawClient.connect(t.port);
  await c.open();
  await c.starttls();
  c.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${btoa(`\0${user}\0${password}`)}</auth>`);
  const outcome = await c.next((el) => el.name === "success" || el.name === "failure");
  c.close();
  return outcome.name === "success" ? "success" : outcome.elements()[0].name;
}

Deno.test("the section has every lifecycle command, without role and set_role", () => {
  const names = userCommands().map((c) => c.name).sort();
  assert.deepEqual(names, [
    "activity",
    "create",
    "delete",
    "disable",
    "enable",
    "import",
    "list",
    "list_inactive",
    "password",
    "restore",
  ]);
  const create = userCommands().find((c) => c.name === "create")!;
  assert.deepEqual(create.args.map((a) => a.kind), ["jid", "password", "role"]);
});

Deno.test("durations and glob patterns parse as documented", () => {
  assert.equal(parseDuration("30d"), 30 * 86400_000);
  assert.equal(parseDuration("12h"), 12 * 3600_000);
  assert.equal(parseDuration("90m"), 90 * 60_000);
  assert.equal(parseDuration("45s"), 45_000);
  assert.equal(parseDuration("soon"), undefined);
  assert.ok(globToRegExp("a*").test("alice"));
  assert.ok(!globToRegExp("a?").test("alice"));
  assert.ok(globToRegExp("*.x").test("a.x") && !globToRegExp("*.x").test("abx"));
});

Deno.test("user create stores the account and its role; mistakes are CommandErrors", () =>
  withServer(async (t) => {
    const result = await run(t, "create", "carol@localhost", "carol-pw", "admin");
    assert.deepEqual(result.data, { jid: "carol@localhost", role: "admin" });
    const roles = new RoleModel({ config: t.config, storage: t.server.storage, host: "localhost" });
    assert.equal(roles.storedRole("carol"), "admin");
    assert.equal(await saslOutcome(t, "carol", "carol-pw"), "success");
    await assert.rejects(() => run(t, "create", "carol@localhost", "x"), CommandError);
    await assert.rejects(() => run(t, "create", "dave@localhost", "x", "emperor"), /Unknown role/);
    assert.equal(t.server.accounts.exists("localhost", "dave"), false);
    await assert.rejects(() => run(t, "create", "dave@elsewhere", "x"), /not a local host/);
    await assert.rejects(() => run(t, "create", "localhost", "x"), /account address/);
    await run(t, "password", "carol@localhost", "new-pw");
    assert.equal(await saslOutcome(t, "carol", "new-pw"), "success");
    await assert.rejects(() => run(t, "password", "nobody@localhost", "x"), CommandError);
  }));

Deno.test("user disable closes live sessions with 'Account disabled' and refuses login", () =>
  withServer(async (t) => {
    const { client } = await RawClient.login(t.port, "alice", "alice-pw");
    const result = await run(t, "disable", "alice@localhost");
    assert.deepEqual(result.data, { jid: "alice@localhost", closed_sessions: 1 });
    const error = await client.next((el) => el.name === "error" && el.ns === NS_STREAM);
    assert.ok(error.getChild("not-authorized"));
    assert.equal(error.getChildText("text"), "Account disabled");
    await client.waitClosed();
    assert.equal(await saslOutcome(t, "alice", "alice-pw"), "account-disabled");
    const listed = await run(t, "list", "localhost", "a*");
    assert.deepEqual(listed.table!.columns, ["jid", "disabled", "deleted", "last_login"]);
    assert.equal(listed.table!.rows.length, 1);
    assert.deepEqual(listed.table!.rows[0].slice(0, 3), ["alice@localhost", true, false]);
    await run(t, "enable", "alice@localhost");
    assert.equal(await saslOutcome(t, "alice", "alice-pw"), "success");
  }));

Deno.test("user delete keeps the account restorable; enable points to restore", () =>
  withServer(async (t) => {
    const deleted = await run(t, "delete", "bob@localhost");
    assert.equal((deleted.data as { state: string }).state, "pending");
    assert.match(deleted.message!, /user restore/);
    assert.equal(await saslOutcome(t, "bob", "bob-pw"), "account-disabled");
    await assert.rejects(() => run(t, "enable", "bob@localhost"), /pending deletion/);
    const listed = await run(t, "list", "localhost");
    assert.deepEqual(listed.data, [
      { jid: "alice@localhost", disabled: false, deleted: false, last_login: null },
      { jid: "bob@localhost", disabled: true, deleted: true, last_login: null },
    ]);
    await run(t, "restore", "bob@localhost");
    assert.equal(await saslOutcome(t, "bob", "bob-pw"), "success");
    await assert.rejects(() => run(t, "restore", "bob@localhost"), /not pending deletion/);
    await assert.rejects(() => run(t, "delete", "nobody@localhost"), /No account/);
  }));

Deno.test("user activity and list_inactive use recorded logins", () =>
  withServer(async (t) => {
    const { client } = await RawClient.login(t.port, "alice", "alice-pw");
    const activity = await run(t, "activity", "alice@localhost");
    const data = activity.data as { last_login: string | null; online_sessions: number };
    assert.ok(data.last_login !== null);
    assert.equal(data.online_sessions, 1);
    client.close();
    // bob never logged in and was created "long ago"; alice logged in just now.
    t.server.database.prepare("UPDATE accounts SET created_ms = ? WHERE user = 'bob'")
      .run(Date.now() - 40 * 86400_000);
    const inactive = await run(t, "list_inactive", "localhost", "30d");
    assert.deepEqual((inactive.data as { jid: string }[]).map((r) => r.jid), ["bob@localhost"]);
    const none = await run(t, "list_inactive", "localhost", "45d");
    assert.deepEqual(none.data, []);
    await assert.rejects(() => run(t, "list_inactive", "localhost", "soon"), /duration/);
  }));

Deno.test("user import creates 5,000 accounts with roles and reports bad lines", () =>
  withServer(async (t) => {
    const lines = ["# provisioning file", ""];
    for (let i = 0; i < 5000; i++) {
      lines.push(`user${i}@localhost pw${i}${i % 1000 === 0 ? " member" : ""}`);
    }
    lines.push("alice@localhost taken", "broken-line", "x@elsewhere pw", "y@localhost pw emperor");
    const file = `${t.dataDir}/import.txt`;
    await Deno.writeTextFile(file, lines.join("\n"));
    const result = await run(t, "import", file);
    const data = result.data as { created: number; failed: { line: number; jid: string }[] };
    assert.equal(data.created, 5000);
    assert.deepEqual(data.failed.map((f) => f.jid), [
      "alice@localhost",
      "broken-line",
      "x@elsewhere",
      "y@localhost",
    ]);
    assert.match(result.message!, /^Created 5000 account\(s\), skipped 4/);
    assert.ok(!result.message!.includes("taken"), "passwords are never echoed");
    assert.equal(await t.server.accounts.verifyPassword("localhost", "user4999", "pw4999"), true);
    const roles = new RoleModel({ config: t.config, storage: t.server.storage, host: "localhost" });
    assert.equal(roles.storedRole("user3000"), "member");
    assert.equal(roles.storedRole("user3001"), undefined);
    assert.equal(await saslOutcome(t, "user42", "pw42"), "success");
    await assert.rejects(() => run(t, "import", `${t.dataDir}/missing.txt`), /Cannot read/);
  }));
