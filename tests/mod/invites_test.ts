// Invitations on the wire: XEP-0445 <preauth/> before XEP-0077 registration (required when
// registration_requires_invite is on), wrong, expired, used and revoked tokens, reusable ones,
// the mutual subscription with the inviter (XEP-0379), and the `invite` shell section.

import assert from "node:assert/strict";
import type { CommandResult } from "../../core/admin_commands.ts";
import type { Element } from "../../core/xml/element.ts";
import { conditionOf, RawClient } from "../helpers/raw_client.ts";
import { startTestServer, type TestServer } from "../helpers/test_server.ts";

const NS_REGISTER = "jabber:iq:register";
const NS_PARS = "urn:xmpp:pars:0";
const NS_IBR_TOKEN = "urn:xmpp:ibr-token:0";
const NS_ROSTER = "jabber:iq:roster";
const MODULES = ["disco", "ping", "roster", "presence", "register", "invites"];
const INVITE_ONLY = "allow_registration = true\nregistration_requires_invite = true";

async function withServer(
  globalToml: string,
  fn: (t: TestServer) => Promise<void>,
  modules = MODULES,
): Promise<void> {
  const t = await startTestServer({ modules, globalToml, users: { alice: "alice-pw" } });
  try {
    await fn(t);
  } finally {
    await t.stop();
  }
}

/** Runs an `invite` shell command the way the admin socket does (words joined as it does). */
async function shell(t: TestServer, name: string, ...args: string[]): Promise<CommandResult> {
  const spec = t.server.commands.get("invite", name)!;
  const joined = name === "create" ? [args.join(" ")] : args;
  return await spec.run(
    { server: t.server, emit: () => {}, signal: new AbortController().signal },
    joined,
  );
}

/** The token of an invite the shell created. */
async function createInvite(t: TestServer, ...args: string[]): Promise<string> {
  const result = await shell(t, "create", ...args);
  return (result.data as { token: string }).token;
}

/** Sends an iq and returns the answer with the same id. */
async function iq(client: RawClient, id: string, xml: string): Promise<Element> {
  client.send(xml);
  return await client.next((el) => el.name === "iq" && el.attrs.id === id);
}

function preauthXml(id: string, token: string): string {
  return `<iq type='set' id='${id}' to='localhost'><preauth xmlns='${NS_PARS}' token='${token}'/></iq>`;
}

function registerXml(id: string, username: string, password: string): string {
  return `<iq type='set' id='${id}'><query xmlns='${NS_REGISTER}'>` +
    `<username>${username}</username><password>${password}</password></query></iq>`;
}

/** A not-logged-in client after STARTTLS, with the features of its stream. */
async function connectSecure(port: number): Promise<{ client: RawClient; features: Element }> {
  const client = await RawClient.connect(port);
  await client.open();
  const features = await client.starttls();
  return { client, features };
}

/** On a new connection: presents `token` (when given), then registers; both answers. */
async function registerWith(
  port: number,
  token: string | undefined,
  user: string,
  password = "pw-" + user,
): Promise<{ preauth?: Element; register: Element }> {
  const { client } = await connectSecure(port);
  try {
    const preauth = token === undefined
      ? undefined
      : await iq(client, "pa", preauthXml("pa", token));
    const register = await iq(client, "reg", registerXml("reg", user, password));
    return { preauth, register };
  } finally {
    client.close();
  }
}

Deno.test("with invites loaded the XEP-0445 stream feature is offered beside registration", () =>
  withServer("allow_registration = true", async (t) => {
    const { client, features } = await connectSecure(t.port);
    assert.ok(features.getChild("register", NS_IBR_TOKEN), "urn:xmpp:ibr-token:0 offered");
    assert.ok(features.getChild("register", "http://jabber.org/features/iq-register"));
    client.close();
  }));

Deno.test("invite-only registration: refused without a token, accepted with one, which is then used up", () =>
  withServer(INVITE_ONLY, async (t) => {
    const none = await registerWith(t.port, undefined, "mallory");
    assert.equal(conditionOf(none.register), "not-allowed");
    assert.match(
      none.register.getChild("error")!.getChildText("text")!,
      /needs an invite: present its token first/,
    );

    const token = await createInvite(t, "localhost");
    const first = await registerWith(t.port, token, "carol");
    assert.equal(first.preauth!.attrs.type, "result");
    assert.equal(first.preauth!.attrs.from, undefined, "no address before authentication");
    assert.equal(first.register.attrs.type, "result");
    const { client } = await RawClient.login(t.port, "carol", "pw-carol");
    client.close();

    // Single use: the same token is refused the next time, and registration with it too.
    const again = await registerWith(t.port, token, "dave");
    assert.equal(again.preauth!.attrs.type, "error");
    assert.equal(conditionOf(again.preauth!), "item-not-found");
    assert.equal(conditionOf(again.register), "not-allowed");
    assert.equal(t.server.accounts.exists("localhost", "dave"), false);
  }));

Deno.test("unknown, malformed, expired and revoked tokens get item-not-found; the stream stays usable", () =>
  withServer(INVITE_ONLY, async (t) => {
    const { client } = await connectSecure(t.port);
    for (const [id, token] of [["a", "no-such-token"], ["b", "bad token&amp;&lt;"], ["c", ""]]) {
      const answer = await iq(client, id, preauthXml(id, token));
      assert.equal(conditionOf(answer), "item-not-found", `token '${token}'`);
      assert.match(answer.getChild("error")!.getChildText("text")!, /invalid, expired/);
    }
    const missingId = await iq(
      client,
      "d",
      `<iq type='get' id='d'><preauth xmlns='${NS_PARS}' token='x'/></iq>`,
    );
    assert.equal(conditionOf(missingId), "bad-request");

    const expired = await createInvite(t, "localhost");
    t.server.database.prepare("UPDATE invites SET expires_ms = ? WHERE token = ?")
      .run(Date.now() - 1000, expired);
    assert.equal(conditionOf(await iq(client, "e", preauthXml("e", expired))), "item-not-found");

    const revoked = await createInvite(t, "localhost");
    const revocation = await shell(t, "revoke", revoked);
    assert.equal(revocation.message, `Revoked invite ${revoked} on localhost`);
    await assert.rejects(shell(t, "revoke", revoked), /No invite/);
    assert.equal(conditionOf(await iq(client, "f", preauthXml("f", revoked))), "item-not-found");

    // The same stream logs in afterwards.
    assert.equal(await client.loginPlain("alice", "alice-pw"), "alice@localhost/test");
    client.close();
  }));

Deno.test("a token presented before it expired still registers after (XEP-0445: expiry checked once)", () =>
  withServer(INVITE_ONLY, async (t) => {
    const token = await createInvite(t, "localhost", "--expires", "1h");
    const { client } = await connectSecure(t.port);
    assert.equal((await iq(client, "pa", preauthXml("pa", token))).attrs.type, "result");
    t.server.database.prepare("UPDATE invites SET expires_ms = ? WHERE token = ?")
      .run(Date.now() - 1000, token);
    const done = await iq(client, "reg", registerXml("reg", "late", "late-pw"));
    assert.equal(done.attrs.type, "result");
    client.close();
  }));

Deno.test("a reusable invite registers several accounts from one address, spacing aside, until revoked", () =>
  withServer(INVITE_ONLY, async (t) => {
    const token = await createInvite(t, "localhost", "--reusable", "--expires=2d");
    for (const user of ["u1", "u2", "u3"]) {
      const outcome = await registerWith(t.port, token, user);
      assert.equal(outcome.register.attrs.type, "result", user);
    }
    const listed = await shell(t, "list", "localhost");
    const rows = listed.data as { token: string; uses: number; reusable: boolean }[];
    assert.deepEqual(rows.map((r) => [r.token, r.uses, r.reusable]), [[token, 3, true]]);
    await shell(t, "revoke", token);
    const after = await registerWith(t.port, token, "u4");
    assert.equal(conditionOf(after.preauth!), "item-not-found");
  }));

Deno.test("a registration that fails gives the invite's use back", () =>
  withServer(INVITE_ONLY, async (t) => {
    const token = await createInvite(t, "localhost");
    const taken = await registerWith(t.port, token, "alice");
    assert.equal(conditionOf(taken.register), "conflict");
    const retry = await registerWith(t.port, token, "alice2");
    assert.equal(retry.register.attrs.type, "result");
  }));

Deno.test("an account registered with alice's invite and alice are subscribed both ways", () =>
  withServer(INVITE_ONLY, async (t) => {
    const created = await shell(t, "create", "--user", "alice@localhost");
    const data = created.data as { token: string; uri: string; inviter: string };
    assert.equal(created.message, data.uri);
    assert.equal(data.uri, `xmpp:alice@localhost?roster;preauth=${data.token};ibr=y`);
    assert.equal(data.inviter, "alice@localhost");

    const { client: alice } = await RawClient.login(t.port, "alice", "alice-pw");
    await iq(alice, "r0", `<iq type='get' id='r0'><query xmlns='${NS_ROSTER}'/></iq>`);
    const outcome = await registerWith(t.port, data.token, "juliet");
    assert.equal(outcome.register.attrs.type, "result");

    // alice's interested resource gets the roster push for her new contact.
    const push = await alice.next((el) =>
      el.name === "iq" && el.attrs.type === "set" &&
      el.getChild("query", NS_ROSTER) !== undefined
    );
    const pushed = push.getChild("query", NS_ROSTER)!.getChild("item")!;
    assert.equal(pushed.attrs.jid, "juliet@localhost");
    assert.equal(pushed.attrs.subscription, "both");
    alice.close();

    const { client: juliet } = await RawClient.login(t.port, "juliet", "pw-juliet");
    const roster = await iq(
      juliet,
      "r1",
      `<iq type='get' id='r1'><query xmlns='${NS_ROSTER}'/></iq>`,
    );
    const items = roster.getChild("query", NS_ROSTER)!.getChildren("item");
    assert.deepEqual(items.map((i) => [i.attrs.jid, i.attrs.subscription, i.attrs.ask]), [
      ["alice@localhost", "both", undefined],
    ]);
    juliet.close();
  }));

Deno.test("an invite without the invite requirement also lifts the per-address spacing", () =>
  withServer("allow_registration = true", async (t) => {
    const plain = await registerWith(t.port, undefined, "first");
    assert.equal(plain.register.attrs.type, "result");
    const spaced = await registerWith(t.port, undefined, "second");
    assert.equal(conditionOf(spaced.register), "resource-constraint");
    const token = await createInvite(t, "localhost");
    const invited = await registerWith(t.port, token, "third");
    assert.equal(invited.register.attrs.type, "result");
  }));

Deno.test("invite-only registration without the invites module is refused with a reason", () =>
  withServer(INVITE_ONLY, async (t) => {
    const { client, features } = await connectSecure(t.port);
    assert.equal(features.getChild("register", NS_IBR_TOKEN), undefined);
    const answer = await iq(client, "reg", registerXml("reg", "nobody", "pw"));
    assert.equal(conditionOf(answer), "not-allowed");
    assert.match(answer.getChild("error")!.getChildText("text")!, /none can be checked/);
    client.close();
  }, MODULES.filter((name) => name !== "invites")));

Deno.test("invite create refuses bad options with clear errors", () =>
  withServer(INVITE_ONLY, async (t) => {
    await assert.rejects(shell(t, "create"), /Expected a host, or --user JID/);
    await assert.rejects(
      shell(t, "create", "localhost", "--forever"),
      /Unknown option '--forever'/,
    );
    await assert.rejects(
      shell(t, "create", "localhost", "--expires", "soon"),
      /Expected a duration such as 7d.*found 'soon'/,
    );
    await assert.rejects(shell(t, "create", "localhost", "--expires"), /Expected a value after/);
    await assert.rejects(shell(t, "create", "--user", "nobody@localhost"), /No account/);
    await assert.rejects(shell(t, "create", "--user", "localhost"), /Expected an account JID/);
    await assert.rejects(shell(t, "create", "elsewhere.example"), /No host 'elsewhere.example'/);
    await assert.rejects(
      shell(t, "create", "bob@localhost"),
      /Expected a host, found 'bob@localhost'/,
    );
    await assert.rejects(shell(t, "create", "localhost", "extra"), /Unexpected argument 'extra'/);
    // A host is prepared as a JID domain is.
    assert.match((await shell(t, "create", "LocalHost")).message!, /^xmpp:localhost\?register;/);
    await assert.rejects(
      shell(t, "create", "other.example", "--user", "alice@localhost"),
      /not on 'other.example'/,
    );
    const account = await shell(t, "create", "localhost", "--expires", "90m");
    const data = account.data as { uri: string; token: string; expires: string };
    assert.equal(data.uri, `xmpp:localhost?register;preauth=${data.token}`);
    assert.match(data.token, /^[A-Za-z0-9_-]{24}$/);
    const minutes = (Date.parse(data.expires) - Date.now()) / 60_000;
    assert.ok(minutes > 88 && minutes <= 90, `expires in ${minutes} minutes`);
  }));

Deno.test("invites of an account that is deleted go with it", () =>
  withServer(`${INVITE_ONLY}\ndeletion_grace_period = 0`, async (t) => {
    const token = await createInvite(t, "--user", "alice@localhost");
    await createInvite(t, "localhost");
    const { deleteAccount } = await import("../../core/auth/account_lifecycle.ts");
    deleteAccount(t.server, "localhost", "alice");
    const rows = (await shell(t, "list")).data as { token: string }[];
    assert.equal(rows.length, 1);
    assert.notEqual(rows[0].token, token);
  }));

Deno.test("an inviter whose roster is full still brings the new account in, without the subscription", () =>
  withServer(`${INVITE_ONLY}\nmax_roster_size = 1`, async (t) => {
    const first = await createInvite(t, "--user", "alice@localhost");
    assert.equal((await registerWith(t.port, first, "romeo")).register.attrs.type, "result");
    const second = await createInvite(t, "--user", "alice@localhost");
    assert.equal((await registerWith(t.port, second, "tybalt")).register.attrs.type, "result");
    const { client } = await RawClient.login(t.port, "tybalt", "pw-tybalt");
    const roster = await iq(
      client,
      "r",
      `<iq type='get' id='r'><query xmlns='${NS_ROSTER}'/></iq>`,
    );
    assert.deepEqual(roster.getChild("query", NS_ROSTER)!.getChildren("item"), []);
    client.close();
  }));

Deno.test("a subscription request with alice's invite token is approved and alice asks back (XEP-0379)", () =>
  withServer(INVITE_ONLY, async (t) => {
    await t.server.accounts.create("localhost", "bob", "bob-pw");
    await t.server.accounts.create("localhost", "carol", "carol-pw");
    const token = await createInvite(t, "--user", "alice@localhost");
    const { client: bob } = await RawClient.login(t.port, "bob", "bob-pw");
    await iq(bob, "r0", `<iq type='get' id='r0'><query xmlns='${NS_ROSTER}'/></iq>`);
    bob.send("<presence/>");
    bob.send(
      `<presence type='subscribe' to='alice@localhost'><preauth xmlns='${NS_PARS}' token='${token}'/></presence>`,
    );
    // alice is offline: her server answers for her, and asks bob back.
    const subscribed = await bob.next((el) =>
      el.name === "presence" && el.attrs.type === "subscribed"
    );
    assert.equal(subscribed.attrs.from, "alice@localhost");
    const askedBack = await bob.next((el) =>
      el.name === "presence" && el.attrs.type === "subscribe"
    );
    assert.equal(askedBack.attrs.from, "alice@localhost");
    bob.send("<presence type='subscribed' to='alice@localhost'/>");

    const { client: alice } = await RawClient.login(t.port, "alice", "alice-pw");
    const roster = await iq(
      alice,
      "r1",
      `<iq type='get' id='r1'><query xmlns='${NS_ROSTER}'/></iq>`,
    );
    const items = roster.getChild("query", NS_ROSTER)!.getChildren("item");
    assert.deepEqual(items.map((i) => [i.attrs.jid, i.attrs.subscription, i.attrs.ask]), [
      ["bob@localhost", "both", undefined],
    ]);

    alice.send("<presence/>");
    // The token was single-use: carol's request with it waits for alice like any other.
    const { client: carol } = await RawClient.login(t.port, "carol", "carol-pw");
    carol.send(
      `<presence type='subscribe' to='alice@localhost'><preauth xmlns='${NS_PARS}' token='${token}'/></presence>`,
    );
    const request = await alice.next((el) =>
      el.name === "presence" && el.attrs.type === "subscribe"
    );
    assert.equal(request.attrs.from, "carol@localhost");
    const after = await iq(
      alice,
      "r2",
      `<iq type='get' id='r2'><query xmlns='${NS_ROSTER}'/></iq>`,
    );
    assert.deepEqual(
      after.getChild("query", NS_ROSTER)!.getChildren("item").map((i) => i.attrs.jid),
      ["bob@localhost"],
    );
    for (const c of [alice, bob, carol]) c.close();
  }));
