// The role model: built-in inheritance, custom roles, permission overrides, where a user's role
// comes from (admins, stored, default, disabled, remote) and config errors with file:line.

import assert from "node:assert/strict";
import {
  checkRoleConfig,
  createRoleModel,
  RoleConfigError,
  RoleError,
  roleModelFor,
} from "../../../core/auth/roles.ts";
import { parseConfigText } from "../../../core/config.ts";
import { parseJid } from "../../../core/jid.ts";
import { startTestServer, type TestServerOptions } from "../../helpers/test_server.ts";

const jid = parseJid;

async function withServer(
  options: TestServerOptions,
  fn: (t: Awaited<ReturnType<typeof startTestServer>>) => void | Promise<void>,
): Promise<void> {
  const t = await startTestServer({ modules: [], ...options });
  try {
    await fn(t);
  } finally {
    await t.stop();
  }
}

function configProblems(extra: string, hostExtra = ""): string[] {
  const text = `modules = []\n${extra}\n[[host]]\ndomain = "localhost"\n${hostExtra}\n`;
  const { config, problems } = parseConfigText(text, "/etc/lilt/test.toml");
  assert.ok(config, `the validator accepts the options: ${JSON.stringify(problems)}`);
  return checkRoleConfig(config).map((p) => `${p.file}:${p.line}: ${p.message}`);
}

Deno.test("built-in roles inherit upwards: operator > admin > member > registered > guest", async () => {
  await withServer({}, (t) => {
    const roles = createRoleModel(t.server, "localhost");
    assert.deepEqual(roles.roles().map((r) => r.name), [
      "guest",
      "registered",
      "member",
      "admin",
      "operator",
    ]);
    assert.deepEqual(roles.ancestors("admin"), ["member", "registered", "guest"]);
    assert.ok(roles.roleMay("guest", "lilt:view-public-info"));
    assert.ok(!roles.roleMay("guest", "lilt:change-own-password"));
    assert.ok(roles.roleMay("registered", "lilt:change-own-password"));
    assert.ok(!roles.roleMay("registered", "lilt:muc-create-room"));
    assert.ok(roles.roleMay("member", "lilt:muc-create-room"));
    assert.ok(roles.roleMay("member", "lilt:change-own-password"), "inherited from registered");
    assert.ok(!roles.roleMay("member", "lilt:announce"));
    assert.ok(roles.roleMay("admin", "lilt:announce"));
    assert.ok(roles.roleMay("admin", "lilt:muc-create-room"), "inherited from member");
    assert.ok(!roles.roleMay("admin", "lilt:server-shutdown"));
    assert.ok(roles.roleMay("operator", "lilt:server-shutdown"));
    assert.ok(roles.roleMay("operator", "mod_x:anything"), "the operator may do everything");
    assert.ok(!roles.roleMay("nobody", "lilt:view-public-info"), "unknown roles may nothing");
    const admin = roles.permissions("admin");
    for (const action of roles.permissions("member")) assert.ok(admin.has(action), action);
    assert.ok(roles.permissions("operator").has("lilt:config-reload"));
    assert.deepEqual(roles.grantedBy("admin", "lilt:change-own-password"), {
      allowed: true,
      by: "registered",
    });
    assert.ok(roles.may("lilt:server-shutdown", "operator"), "the admin shell is the operator");
  });
});

Deno.test("a user's role: admins list, stored role, default_user_role, guests", async () => {
  await withServer({
    users: { boss: "pw", alice: "pw", bob: "pw", carol: "pw" },
    hostToml: 'admins = ["boss@localhost"]\ndefault_user_role = "member"',
  }, (t) => {
    const roles = roleModelFor(t.server, "localhost");
    assert.equal(roles.defaultRole, "member");
    assert.deepEqual(roles.explain(jid("boss@localhost/phone")), {
      role: "admin",
      source: "admins",
    });
    assert.deepEqual(roles.explain(jid("alice@localhost")), { role: "member", source: "default" });
    roles.setRole("localhost", "bob", "registered");
    assert.deepEqual(roles.explain(jid("bob@localhost")), { role: "registered", source: "stored" });
    assert.equal(roles.storedRole("bob"), "registered");
    // The admins list wins over a stored role.
    roles.setRole("localhost", "boss", "member");
    assert.equal(roles.roleOf(jid("boss@localhost")), "admin");
    assert.ok(roles.may("lilt:announce", jid("boss@localhost/phone")));
    assert.ok(!roles.may("lilt:announce", jid("alice@localhost/phone")));

    t.server.accounts.disable("localhost", "carol");
    assert.deepEqual(roles.explain(jid("carol@localhost")), { role: "guest", source: "disabled" });
    assert.ok(!roles.may("lilt:change-own-password", jid("carol@localhost")));
    assert.deepEqual(roles.explain(jid("ghost@localhost")), { role: "guest", source: "unknown" });
    assert.deepEqual(roles.explain(jid("boss@example.org")), { role: "guest", source: "remote" });
    assert.deepEqual(roles.explain(jid("localhost")), { role: "guest", source: "remote" });

    assert.throws(() => roles.setRole("localhost", "alice", "king"), RoleError);
    assert.throws(() => roles.setRole("localhost", "ghost", "member"), /No account/);
    assert.throws(() => roles.setRole("example.org", "alice", "member"), RoleError);
  });
});

Deno.test("custom roles inherit and add permissions; add/remove_permissions change roles", async () => {
  await withServer({
    users: { mia: "pw", ann: "pw" },
    globalToml: `custom_roles = [
  { name = "moderator", inherits = "member", permissions = ["lilt:muc-admin", "chat:kick"] },
  { name = "helpdesk", inherits = ["moderator"], permissions = ["lilt:user-disable"] },
]
add_permissions = { member = ["lilt:announce"] }
remove_permissions = { member = ["lilt:upload-file"], admin = ["lilt:module-load"] }`,
  }, (t) => {
    const roles = createRoleModel(t.server, "localhost");
    assert.deepEqual(roles.roles().map((r) => r.name).slice(5), ["moderator", "helpdesk"]);
    const helpdesk = roles.roles().find((r) => r.name === "helpdesk")!;
    assert.deepEqual(helpdesk.inherits, ["moderator"]);
    assert.ok(helpdesk.permissions.includes("chat:kick"), "custom actions are known");
    assert.ok(helpdesk.permissions.includes("lilt:muc-create-room"), "from member");
    assert.ok(helpdesk.permissions.includes("lilt:user-disable"));
    assert.ok(!roles.roleMay("moderator", "lilt:user-disable"));
    assert.ok(roles.roleMay("member", "lilt:announce"), "added");
    assert.ok(roles.roleMay("moderator", "lilt:announce"), "added permissions are inherited");
    assert.ok(!roles.roleMay("member", "lilt:upload-file"), "removed");
    assert.ok(!roles.roleMay("admin", "lilt:upload-file"), "removal is inherited");
    assert.ok(!roles.roleMay("admin", "lilt:module-load"));
    assert.ok(roles.roleMay("operator", "lilt:module-load"), "the operator keeps everything");
    roles.setRole("localhost", "mia", "helpdesk");
    assert.ok(roles.may("lilt:user-disable", jid("mia@localhost")));
    assert.ok(!roles.may("lilt:user-disable", jid("ann@localhost")));
  });
});

Deno.test("a host's custom_roles replace the global ones; the table form works too", async () => {
  await withServer({
    globalToml: 'custom_roles = [{ name = "everywhere", permissions = ["x:y"] }]',
    hostToml: '[host.custom_roles.local_only]\ninherits = "registered"\npermissions = ["x:z"]',
  }, (t) => {
    const roles = createRoleModel(t.server, "localhost");
    assert.ok(roles.has("local_only"));
    assert.ok(!roles.has("everywhere"));
    assert.ok(roles.roleMay("local_only", "lilt:change-own-password"));
    assert.ok(createRoleModel(t.server).has("everywhere"), "the global level keeps its roles");
  });
});

Deno.test("role config errors name the option with file:line", () => {
  assert.deepEqual(configProblems(""), []);
  assert.deepEqual(
    configProblems('custom_roles = [{ name = "mod", inherits = "moderator" }]'),
    [
      "/etc/lilt/test.toml:2: option 'custom_roles': role 'mod' inherits unknown role " +
      "'moderator' (roles: guest, registered, member, admin, operator, mod)",
    ],
  );
  assert.deepEqual(
    configProblems(
      '\ncustom_roles = [{ name = "a", inherits = "b" }, { name = "b", inherits = ["member", "a"] }]',
    ),
    [
      "/etc/lilt/test.toml:3: option 'custom_roles': roles inherit from each other in a cycle: " +
      "a -> b -> a",
    ],
  );
  assert.deepEqual(configProblems("", 'default_user_role = "king"'), [
    "/etc/lilt/test.toml:5: option 'default_user_role' names unknown role \"king\" " +
    "(roles: guest, registered, member, admin, operator)",
  ]);
  assert.deepEqual(configProblems('add_permissions = { king = ["x:y"] }'), [
    "/etc/lilt/test.toml:2: option 'add_permissions' names unknown role 'king' " +
    "(roles: guest, registered, member, admin, operator)",
  ]);
  assert.match(
    configProblems('custom_roles = [{ name = "admin" }]')[0],
    /redefines the built-in role 'admin'/,
  );
  assert.match(configProblems('custom_roles = [{ inherits = "member" }]')[0], /has no 'name'/);
  assert.match(
    configProblems('custom_roles = [{ name = "x", permissions = "lilt:announce" }]')[0],
    /'permissions' must be a list/,
  );
  assert.match(configProblems('remove_permissions = { member = "x" }')[0], /must be a list/);
  // The config validator already refuses a custom_roles that is not a list of tables.
  const { problems } = parseConfigText(
    'custom_roles = "admin"\n[[host]]\ndomain = "localhost"\n',
    "/etc/lilt/test.toml",
  );
  assert.match(
    problems.map((p) => `${p.file}:${p.line}: ${p.message}`).join("\n"),
    /test\.toml:1: option 'custom_roles' must be a list of tables/,
  );
});

Deno.test("building a model from a bad config throws RoleConfigError", async () => {
  await withServer({ hostToml: 'default_user_role = "king"' }, (t) => {
    assert.throws(
      () => createRoleModel(t.server, "localhost"),
      (error: unknown) =>
        error instanceof RoleConfigError &&
        /test\.toml:\d+: error: option 'default_user_role' names unknown role/.test(error.message),
    );
  });
});
