// XEP-0077 in-band registration on the wire: the stream feature and form, account creation and
// its refusals (disabled, taken, throttled, blocked), password change and account removal.

import assert from "node:assert/strict";
import type { Element } from "../../core/xml/element.ts";
import { conditionOf, NS_STREAM, RawClient } from "../helpers/raw_client.ts";
import { startTestServer, type TestServerOptions } from "../helpers/test_server.ts";

const NS_REGISTER = "jabber:iq:register";
const NS_REGISTER_FEATURE = "http://jabber.org/features/iq-register";
const NS_STREAMS_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams";
const NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl";
const MODULES = ["disco", "ping", "roster", "presence", "register"];

function hasRegisterFeature(features: Element): boolean {
  return features.getChild("register", NS_REGISTER_FEATURE) !== undefined;
}

async function streamErrorOf(client: RawClient): Promise<string | undefined> {
  const error = await client.next((el) => el.name === "error" && el.ns === NS_STREAM);
  return error.elements().find((c) => c.ns === NS_STREAMS_ERRORS && c.name !== "text")?.name;
}

/** Sends an iq and returns the answer with the same id. */
async function iq(client: RawClient, id: string, xml: string): Promise<Element> {
  client.send(xml);
  return await client.next((el) => el.name === "iq" && el.attrs.id === id);
}

function registerXml(id: string, username: string, password: string): string {
  return `<iq type='set' id='${id}'><query xmlns='${NS_REGISTER}'>` +
    `<username>${username}</username><password>${password}</password></query></iq>`;
}

/** A client on a fresh stream after STARTTLS, not logged in; returns it with its features. */
async function connectSecure(port: number): Promise<{ client: RawClient; features: Element }> {
  const client = await RawClient.connect(port);
  await client.open();
  const features = await client.starttls();
  return { client, features };
}

/** Registers an account on a new connection; returns the answer. */
async function registerOnce(port: number, id: string, user: string, pw: string) {
  const { client } = await connectSecure(port);
  const answer = await iq(client, id, registerXml(id, user, pw));
  client.close();
  return answer;
}

/** "success" or "failure" of a PLAIN login on a new connection. */
async function plainOutcome(port: number, user: string, password: string): Promise<string> {
  const { client } = await connectSecure(port);
  client.send(
    `<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${btoa(`\0${user}\0${password}`)}</auth>`,
  );
  const outcome = await client.next((el) => el.name === "success" || el.name === "failure");
  client.close();
  return outcome.name;
}

async function withServer(
  options: TestServerOptions,
  fn: (port: number, t: Awaited<ReturnType<typeof startTestServer>>) => Promise<void>,
): Promise<void> {
  const t = await startTestServer({ modules: MODULES, ...options });
  try {
    await fn(t.port, t);
  } finally {
    await t.stop();
  }
}

Deno.test("registration is off by default: no stream feature, service-unavailable, stream stays open", () =>
  withServer({ users: { alice: "alice-pw" } }, async (port) => {
    const { client, features } = await connectSecure(port);
    assert.equal(hasRegisterFeature(features), false);
    const form = await iq(
      client,
      "reg1",
      `<iq type='get' id='reg1' to='localhost'><query xmlns='${NS_REGISTER}'/></iq>`,
    );
    assert.equal(form.attrs.type, "error");
    assert.equal(conditionOf(form), "service-unavailable");
    assert.equal(form.attrs.from, undefined);
    assert.equal(form.attrs.to, undefined);
    const set = await iq(client, "reg2", registerXml("reg2", "mallory", "pw"));
    assert.equal(conditionOf(set), "service-unavailable");
    // The stream is still usable: an existing account logs in on it.
    assert.equal(await client.loginPlain("alice", "alice-pw"), "alice@localhost/test");
    client.close();
  }));

Deno.test("registration is advertised after STARTTLS, serves its form, and the new account logs in", () =>
  withServer({ globalToml: "allow_registration = true" }, async (port) => {
    const client = await RawClient.connect(port);
    const clear = await client.open();
    assert.equal(hasRegisterFeature(clear), false, "not offered before TLS");
    const features = await client.starttls();
    assert.equal(hasRegisterFeature(features), true);

    const form = await iq(
      client,
      "reg1",
      `<iq type='get' id='reg1' to='localhost'><query xmlns='${NS_REGISTER}'/></iq>`,
    );
    assert.equal(form.attrs.type, "result");
    assert.equal(form.attrs.from, undefined);
    assert.equal(form.attrs.to, undefined);
    const query = form.getChild("query", NS_REGISTER)!;
    assert.deepEqual(query.elements().map((el) => el.name), [
      "instructions",
      "username",
      "password",
    ]);
    assert.equal(query.getChildText("username"), "");
    assert.equal(query.getChildText("password"), "");

    // The username is prepared as a JID localpart: "Carol" becomes "carol".
    const done = await iq(client, "reg2", registerXml("reg2", "Carol", "s3cret pw"));
    assert.equal(done.attrs.type, "result");
    assert.equal(done.attrs.from, undefined);
    assert.equal(done.attrs.to, undefined);
    assert.equal(done.elements().length, 0);
    // The same stream goes on to log in with the new account (XEP-0077 §3.1.1 bootstrapping).
    assert.equal(await client.loginPlain("carol", "s3cret pw"), "carol@localhost/test");
    client.close();
    assert.equal(await plainOutcome(port, "carol", "s3cret pw"), "success");
    assert.equal(await plainOutcome(port, "carol", "wrong"), "failure");
  }));

Deno.test("registration refuses taken, missing and malformed usernames without using up the limit", () =>
  withServer(
    { globalToml: "allow_registration = true", users: { alice: "alice-pw" } },
    async (port) => {
      const { client } = await connectSecure(port);
      const taken = await iq(client, "r1", registerXml("r1", "alice", "other"));
      assert.equal(conditionOf(taken), "conflict");
      assert.equal(taken.getChild("error")?.attrs.type, "cancel");
      const takenCase = await iq(client, "r2", registerXml("r2", "ALICE", "other"));
      assert.equal(conditionOf(takenCase), "conflict");
      const noPassword = await iq(
        client,
        "r3",
        `<iq type='set' id='r3'><query xmlns='${NS_REGISTER}'><username>dave</username>` +
          `<password/></query></iq>`,
      );
      assert.equal(conditionOf(noPassword), "not-acceptable");
      const noUsername = await iq(
        client,
        "r4",
        `<iq type='set' id='r4'><query xmlns='${NS_REGISTER}'><password>pw</password></query></iq>`,
      );
      assert.equal(conditionOf(noUsername), "not-acceptable");
      const malformed = await iq(client, "r5", registerXml("r5", "da ve", "pw"));
      assert.equal(conditionOf(malformed), "jid-malformed");
      const remove = await iq(
        client,
        "r6",
        `<iq type='set' id='r6'><query xmlns='${NS_REGISTER}'><remove/></query></iq>`,
      );
      assert.equal(conditionOf(remove), "unexpected-request");
      // None of the refusals counted against this address.
      const ok = await iq(client, "r7", registerXml("r7", "dave", "dave-pw"));
      assert.equal(ok.attrs.type, "result");
      // The old password of alice still works: nothing was overwritten.
      assert.equal(await plainOutcome(port, "alice", "alice-pw"), "success");
      client.close();
    },
  ));

Deno.test("a second registration from the same address is refused until the interval passes", () =>
  withServer({ globalToml: "allow_registration = true" }, async (port) => {
    assert.equal((await registerOnce(port, "a", "first", "pw")).attrs.type, "result");
    const second = await registerOnce(port, "b", "second", "pw");
    assert.equal(conditionOf(second), "resource-constraint");
    assert.equal(second.getChild("error")?.attrs.type, "wait");
    assert.equal(await plainOutcome(port, "second", "pw"), "failure");
  }));

Deno.test("allowlisted addresses skip the interval; 0 turns the limit off", async () => {
  await withServer({
    globalToml: `allow_registration = true\nregistration_allowlist = ["10.0.0.0/8", "127.0.0.0/8"]`,
  }, async (port) => {
    assert.equal((await registerOnce(port, "a", "first", "pw")).attrs.type, "result");
    assert.equal((await registerOnce(port, "b", "second", "pw")).attrs.type, "result");
  });
  await withServer({
    globalToml: "allow_registration = true",
    hostToml: "min_seconds_between_registrations = 0",
  }, async (port) => {
    assert.equal((await registerOnce(port, "a", "first", "pw")).attrs.type, "result");
    assert.equal((await registerOnce(port, "b", "second", "pw")).attrs.type, "result");
  });
});

Deno.test("max_registrations_per_hour is server-wide: both hosts count, allowlisted addresses too", () =>
  withServer({
    globalToml: "allow_registration = true\nmin_seconds_between_registrations = 0\n" +
      'max_registrations_per_hour = 2\nregistration_allowlist = ["127.0.0.0/8"]',
    extraToml: `[[host]]\ndomain = "example.net"`,
  }, async (port) => {
    /** Registers on `domain` from a new connection; returns the answer. */
    const registerOn = async (domain: string, id: string, user: string) => {
      const client = await RawClient.connect(port);
      await client.open(domain);
      await client.starttls(domain);
      const answer = await iq(client, id, registerXml(id, user, "pw"));
      client.close();
      return answer;
    };
    // A refused registration (name taken) does not use up the hour's allowance.
    assert.equal(conditionOf(await registerOnce(port, "t", "taken", "pw")), undefined);
    assert.equal(conditionOf(await registerOnce(port, "t2", "taken", "pw")), "conflict");
    assert.equal((await registerOn("example.net", "b", "other")).attrs.type, "result");
    // The allowlist lifts the per-address spacing, not the server-wide limit.
    const third = await registerOnce(port, "c", "third", "pw");
    assert.equal(conditionOf(third), "resource-constraint");
    assert.equal(third.getChild("error")?.attrs.type, "wait");
    assert.match(
      third.getChild("error")!.getChildText("text")!,
      /^This server accepts at most 2 registrations per hour; try again in \d+ minutes$/,
    );
    assert.equal(
      conditionOf(await registerOn("example.net", "d", "fourth")),
      "resource-constraint",
    );
    assert.equal(await plainOutcome(port, "third", "pw"), "failure");
  }));

Deno.test("blocklisted addresses see no feature and are refused with forbidden", () =>
  withServer({
    globalToml: `allow_registration = true\nregistration_blocklist = ["::1", "127.0.0.1/32"]`,
  }, async (port) => {
    const { client, features } = await connectSecure(port);
    assert.equal(hasRegisterFeature(features), false);
    const answer = await iq(client, "r1", registerXml("r1", "eve", "pw"));
    assert.equal(conditionOf(answer), "forbidden");
    client.close();
    assert.equal(await plainOutcome(port, "eve", "pw"), "failure");
  }));

Deno.test("a logged-in user sees its registration and changes its password, even with registration off", () =>
  withServer({ users: { alice: "old-pw", bob: "bob-pw" } }, async (port) => {
    const { client } = await RawClient.login(port, "alice", "old-pw");
    const info = await iq(
      client,
      "g1",
      `<iq type='get' id='g1'><query xmlns='${NS_REGISTER}'/></iq>`,
    );
    assert.equal(info.attrs.type, "result");
    const query = info.getChild("query", NS_REGISTER)!;
    assert.ok(query.getChild("registered"));
    assert.equal(query.getChildText("username"), "alice");

    const other = await iq(
      client,
      "p1",
      `<iq type='set' id='p1'><query xmlns='${NS_REGISTER}'><username>bob</username>` +
        `<password>hacked</password></query></iq>`,
    );
    assert.equal(conditionOf(other), "forbidden");
    const empty = await iq(
      client,
      "p2",
      `<iq type='set' id='p2'><query xmlns='${NS_REGISTER}'><username>alice</username>` +
        `<password/></query></iq>`,
    );
    assert.equal(conditionOf(empty), "bad-request");
    assert.equal(await plainOutcome(port, "alice", "old-pw"), "success");
    assert.equal(await plainOutcome(port, "bob", "bob-pw"), "success");

    // Addressed to the server explicitly, as XEP-0077 §3.3 shows it.
    const changed = await iq(
      client,
      "p3",
      `<iq type='set' id='p3' to='localhost'><query xmlns='${NS_REGISTER}'>` +
        `<username>alice</username><password>new-pw</password></query></iq>`,
    );
    assert.equal(changed.attrs.type, "result");
    assert.equal(changed.attrs.from, "localhost");
    assert.equal(await plainOutcome(port, "alice", "old-pw"), "failure");
    assert.equal(await plainOutcome(port, "alice", "new-pw"), "success");
    client.close();
  }));

Deno.test("removing an account deletes its data and closes all its sessions", () =>
  withServer({
    users: { alice: "alice-pw", bob: "bob-pw" },
    globalToml: "deletion_grace_period = 0",
  }, async (port, t) => {
    const notes = t.server.storage.keyval<string>("localhost", "notes");
    notes.set("alice", "private");
    notes.set("bob", "kept");
    const { client: one } = await RawClient.login(port, "alice", "alice-pw", "one");
    const { client: two } = await RawClient.login(port, "alice", "alice-pw", "two");
    const { client: bob } = await RawClient.login(port, "bob", "bob-pw", "b");

    const extra = await iq(
      one,
      "x1",
      `<iq type='set' id='x1'><query xmlns='${NS_REGISTER}'><remove/><username>alice</username>` +
        `</query></iq>`,
    );
    assert.equal(conditionOf(extra), "bad-request");

    const done = await iq(
      one,
      "x2",
      `<iq type='set' id='x2'><query xmlns='${NS_REGISTER}'><remove/></query></iq>`,
    );
    assert.equal(done.attrs.type, "result");
    assert.equal(await streamErrorOf(one), "not-authorized");
    assert.equal(await streamErrorOf(two), "not-authorized");
    await one.waitClosed();
    await two.waitClosed();

    assert.equal(await plainOutcome(port, "alice", "alice-pw"), "failure");
    assert.equal(t.server.accounts.exists("localhost", "alice"), false);
    assert.equal(notes.get("alice"), undefined);
    assert.equal(notes.get("bob"), "kept");
    // Other accounts are untouched and their sessions keep working.
    const pong = await iq(
      bob,
      "ping1",
      `<iq type='get' id='ping1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`,
    );
    assert.equal(pong.attrs.type, "result");
    bob.close();
  }));

Deno.test("with a grace period, removal disables the account and keeps its data", () =>
  withServer({ users: { alice: "alice-pw" } }, async (port, t) => {
    const notes = t.server.storage.keyval<string>("localhost", "notes");
    notes.set("alice", "private");
    const { client } = await RawClient.login(port, "alice", "alice-pw", "one");
    const done = await iq(
      client,
      "r",
      `<iq type='set' id='r'><query xmlns='${NS_REGISTER}'><remove/></query></iq>`,
    );
    assert.equal(done.attrs.type, "result");
    assert.equal(await streamErrorOf(client), "not-authorized");
    assert.equal(await plainOutcome(port, "alice", "alice-pw"), "failure");
    assert.equal(t.server.accounts.exists("localhost", "alice"), true);
    assert.notEqual(t.server.accounts.deletedAt("localhost", "alice"), undefined);
    assert.equal(notes.get("alice"), "private");
  }));

Deno.test("a registration attempt before TLS closes the stream when TLS is required", () =>
  withServer({ globalToml: "allow_registration = true" }, async (port) => {
    const client = await RawClient.connect(port);
    await client.open();
    client.send(registerXml("r1", "mallory", "pw"));
    assert.equal(await streamErrorOf(client), "not-authorized");
    await client.waitClosed();
    client.close();
  }));

Deno.test("without TLS a password is only accepted when clear-text passwords are allowed", async () => {
  await withServer({
    globalToml: "allow_registration = true\nc2s_require_encryption = false",
  }, async (port) => {
    const client = await RawClient.connect(port);
    const features = await client.open();
    assert.equal(hasRegisterFeature(features), false);
    const answer = await iq(client, "r1", registerXml("r1", "mallory", "pw"));
    assert.equal(conditionOf(answer), "not-authorized");
    client.close();
  });
  await withServer({
    globalToml:
      "allow_registration = true\nc2s_require_encryption = false\nallow_unencrypted_plain_auth = true",
  }, async (port) => {
    const client = await RawClient.connect(port);
    const features = await client.open();
    assert.equal(hasRegisterFeature(features), true);
    const answer = await iq(client, "r1", registerXml("r1", "lan", "pw"));
    assert.equal(answer.attrs.type, "result");
    client.close();
  });
});

Deno.test("a malformed address range stops the module from loading with file and line", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "lilt-test-" });
  try {
    await assert.rejects(
      () =>
        startTestServer({
          modules: MODULES,
          dataDir,
          hostToml: `registration_allowlist = ["192.0.2.0/24", "192.0.2.300"]`,
        }),
      /test\.toml:\d+: Option 'registration_allowlist' of module 'register' expected IP addresses or CIDR ranges, found '192\.0\.2\.300'/,
    );
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
