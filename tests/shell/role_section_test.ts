// The `role` shell section and `user role` / `user set_role`, run through their specs against a
// real server: listings, inheritance shown, roles stored and reported with their source.

import assert from "node:assert/strict";
import { CommandError, type CommandSpec } from "../../core/admin_commands.ts";
import type { Server } from "../../core/server.ts";
import { roleCommands } from "../../shell/sections/role.ts";
import { startTestServer } from "../helpers/test_server.ts";

function command(section: string, name: string): CommandSpec {
  const spec = roleCommands().find((c) => c.section === section && c.name === name);
  assert.ok(spec, `${section} ${name} exists`);
  return spec;
}

async function run(server: Server, section: string, name: string, args: string[]) {
  return await command(section, name).run(
    { server, emit() {}, signal: new AbortController().signal },
    args,
  );
}

Deno.test("role list and role show report roles, inheritance and permissions", async () => {
  const t = await startTestServer({
    modules: [],
    hostToml:
      'custom_roles = [{ name = "moderator", inherits = "member", permissions = ["x:kick"] }]',
  });
  try {
    const list = await run(t.server, "role", "list", ["localhost"]);
    assert.deepEqual(list.table!.columns, ["role", "inherits", "permissions", "default"]);
    assert.deepEqual(list.table!.rows.map((r) => [r[0], r[1], r[3]]), [
      ["guest", "", false],
      ["registered", "guest", true],
      ["member", "registered", false],
      ["admin", "member", false],
      ["operator", "admin", false],
      ["moderator", "member", false],
    ]);
    const global = await run(t.server, "role", "list", []);
    assert.ok(!global.table!.rows.some((r) => r[0] === "moderator"), "host roles stay on the host");

    const show = await run(t.server, "role", "show", ["localhost", "moderator"]);
    assert.equal(show.message, "Role moderator inherits member, registered, guest");
    const rows = new Map(show.table!.rows.map((r) => [r[0], r[1]]));
    assert.equal(rows.get("x:kick"), "moderator");
    assert.equal(rows.get("lilt:muc-create-room"), "member");
    assert.equal(rows.get("lilt:change-own-password"), "registered");
    assert.equal(rows.get("lilt:announce"), undefined);

    await assert.rejects(
      async () => await run(t.server, "role", "show", ["localhost", "king"]),
      (e: unknown) => e instanceof CommandError && /Unknown role 'king'/.test(e.message),
    );
    await assert.rejects(
      async () => await run(t.server, "role", "list", ["nowhere.example"]),
      (e: unknown) => e instanceof CommandError && /Unknown host 'nowhere.example'/.test(e.message),
    );
  } finally {
    await t.stop();
  }
});

Deno.test("user role and user set_role show and store an account's role", async () => {
  const t = await startTestServer({
    modules: [],
    users: { alice: "pw", boss: "pw" },
    hostToml: 'admins = ["boss@localhost"]',
  });
  try {
    assert.deepEqual((await run(t.server, "user", "role", ["alice@localhost"])).data, {
      jid: "alice@localhost",
      role: "registered",
      source: "default",
    });
    const set = await run(t.server, "user", "set_role", ["alice@localhost", "member"]);
    assert.equal(set.message, "alice@localhost now has role member");
    assert.deepEqual((await run(t.server, "user", "role", ["alice@localhost"])).data, {
      jid: "alice@localhost",
      role: "member",
      source: "stored",
    });
    const boss = await run(t.server, "user", "set_role", ["boss@localhost", "member"]);
    assert.match(boss.message!, /listed in 'admins'/);
    assert.equal(
      (await run(t.server, "user", "role", ["boss@localhost"])).message,
      "boss@localhost: admin (admins)",
    );

    for (
      const [args, pattern] of [
        [["alice@localhost", "king"], /Unknown role 'king'/],
        [["ghost@localhost", "member"], /No account 'ghost@localhost'/],
        [["alice@localhost/phone", "member"], /Expected a bare JID/],
      ] as const
    ) {
      await assert.rejects(
        async () => await run(t.server, "user", "set_role", [...args]),
        (e: unknown) => e instanceof CommandError && pattern.test(e.message),
      );
    }
  } finally {
    await t.stop();
  }
});
