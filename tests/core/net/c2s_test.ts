// Client streams on the wire: STARTTLS and SASL negotiation, binding, routing between two
// users, and the stream errors a misbehaving or hostile client gets (the server keeps
// serving everyone else).

import assert from "node:assert/strict";
import { connect as netConnect, createServer, type Socket } from "node:net";
import { NS_STREAM, RawClient } from "../../helpers/raw_client.ts";
import { startTestServer, testConfigText, type TestServer } from "../../helpers/test_server.ts";
import type { Element } from "../../../core/xml/element.ts";
import { addLogWatcher, formatLogRecord } from "../../../core/log.ts";
import { parseConfigText } from "../../../core/config.ts";

const NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl";
const NS_STREAMS_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams";
const NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";
const NS_SASL_CB = "urn:xmpp:sasl-cb:0";

function streamErrorOf(client: RawClient): Promise<string> {
  return client.next((el) => el.name === "error" && el.ns === NS_STREAM).then((el) =>
    el.elements().find((c) => c.ns === NS_STREAMS_ERRORS && c.name !== "text")!.name
  );
}

function mechanisms(features: Element): string[] {
  return features.getChild("mechanisms", NS_SASL)?.getChildren("mechanism").map((m) => m.text()) ??
    [];
}

function stanzaErrorOf(stanza: Element): string | undefined {
  return stanza.getChild("error")?.elements().find((c) => c.ns === NS_STANZAS && c.name !== "text")
    ?.name;
}

async function withServer(
  fn: (t: TestServer) => Promise<void>,
  options: Parameters<typeof startTestServer>[0] = {},
): Promise<void> {
  const t = await startTestServer({
    users: { alice: "alice-pw", bob: "bob-pw" },
    ...options,
  });
  try {
    await fn(t);
  } finally {
    await t.stop();
  }
}

Deno.test("before TLS only a required STARTTLS is offered", () =>
  withServer(async (t) => {
    const c = await RawClient.connect(t.port);
    const features = await c.open();
    const starttls = features.getChild("starttls", "urn:ietf:params:xml:ns:xmpp-tls");
    assert.ok(starttls?.getChild("required"));
    assert.deepEqual(mechanisms(features), []);
    const header = c.headers[0];
    assert.equal(header.attrs.from, "localhost");
    assert.equal(header.attrs.version, "1.0");
    assert.ok(header.attrs.id);
    // Trying SASL anyway is refused.
    c.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${btoa("\0alice\0alice-pw")}</auth>`);
    const failure = await c.next((el) => el.name === "failure");
    assert.ok(failure.getChild("encryption-required"));
    c.close();
  }));

Deno.test("after STARTTLS the SCRAM family and PLAIN are offered, without -PLUS by default", () =>
  withServer(async (t) => {
    const c = await RawClient.connect(t.port);
    await c.open();
    const features = await c.starttls();
    assert.deepEqual(mechanisms(features), ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]);
    // XEP-0440 types are announced only together with -PLUS mechanisms.
    assert.equal(features.getChild("sasl-channel-binding", NS_SASL_CB), undefined);
    c.close();
  }));

Deno.test("sasl_offer_channel_binding offers -PLUS first and announces tls-server-end-point", () =>
  withServer(async (t) => {
    for (const tls of [false, true]) {
      const c = await RawClient.connect(tls ? t.tlsPort : t.port, { tls });
      const features = tls ? await c.open() : (await c.open(), await c.starttls());
      assert.deepEqual(mechanisms(features), [
        "SCRAM-SHA-256-PLUS",
        "SCRAM-SHA-1-PLUS",
        "SCRAM-SHA-256",
        "SCRAM-SHA-1",
        "PLAIN",
      ]);
      const types = features.getChild("sasl-channel-binding", NS_SASL_CB)
        ?.getChildren("channel-binding").map((el) => el.attrs.type);
      assert.deepEqual(types, ["tls-server-end-point"]);
      c.close();
    }
  }, { hostToml: "sasl_offer_channel_binding = true" }));

Deno.test("PLAIN without TLS is refused even when encryption is optional", () =>
  withServer(async (t) => {
    const c = await RawClient.connect(t.port);
    const features = await c.open();
    assert.ok(!mechanisms(features).includes("PLAIN"));
    assert.ok(mechanisms(features).includes("SCRAM-SHA-256"));
    c.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${btoa("\0alice\0alice-pw")}</auth>`);
    const failure = await c.next((el) => el.name === "failure");
    assert.ok(failure.getChild("encryption-required"));
    c.close();
  }, { globalToml: "c2s_require_encryption = false" }));

Deno.test("a wrong password gets not-authorized and the stream stays usable", () =>
  withServer(async (t) => {
    const c = await RawClient.connect(t.port);
    await c.open();
    await c.starttls();
    c.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${btoa("\0alice\0nope")}</auth>`);
    const failure = await c.next((el) => el.name === "failure");
    assert.ok(failure.getChild("not-authorized"));
    const jid = await c.loginPlain("alice", "alice-pw", "again");
    assert.equal(jid, "alice@localhost/again");
    c.close();
  }));

Deno.test("past the allowed failures the next attempt waits, and the right password then gets in", () =>
  withServer(async (t) => {
    const c = await RawClient.connect(t.port);
    await c.open();
    await c.starttls();
    for (let i = 0; i < 2; i++) {
      c.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${btoa("\0alice\0nope")}</auth>`);
      assert.ok((await c.next((el) => el.name === "failure")).getChild("not-authorized"));
    }
    assert.equal(t.server.metrics.counter("c2s.auth_delayed").value, 0);
    // Held back (not refused) before it is checked; then answered as usual.
    c.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${btoa("\0alice\0alice-pw")}</auth>`);
    assert.equal(
      (await c.next((el) => el.name === "success" || el.name === "failure")).name,
      "success",
    );
    assert.equal(t.server.metrics.counter("c2s.auth_delayed").value, 1);
    assert.equal(t.server.metrics.counter("c2s.auth_throttled").value, 0);
    c.close();
  }, { globalToml: "auth_throttle_max_failures = 2\nauth_throttle_delay = 0.2" }));

Deno.test("failed logins are logged with the username, address, mechanism and reason", async () => {
  const logged: string[] = [];
  const stopWatching = addLogWatcher((record) => {
    if (record.category.join(".") === "lilt.c2s") logged.push(formatLogRecord(record).trimEnd());
  }, "info");
  try {
    await withServer(async (t) => {
      t.server.accounts.disable("localhost", "bob");
      const c = await RawClient.connect(t.port);
      await c.open();
      await c.starttls();
      const failure = async () => (await c.next((el) => el.name === "failure")).elements()[0].name;
      const failedLine = () => logged.filter((l) => l.includes("Failed login")).at(-1) ?? "";

      // The right password for a disabled account: refused, logged, not counted as a guess.
      c.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${btoa("\0bob\0bob-pw")}</auth>`);
      assert.equal(await failure(), "account-disabled");
      assert.match(failedLine(), /as "bob" .* with PLAIN: disabled account$/);

      c.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${btoa("\0alice\0nope")}</auth>`);
      assert.equal(await failure(), "not-authorized");
      assert.match(
        failedLine(),
        /Failed login as "alice" on localhost from 127\.0\.0\.1 with PLAIN: wrong password$/,
      );

      // An unknown user looks like a wrong password on the wire, not in the log.
      assert.equal(
        (await c.scram("mallory", "guess")).outcome.getChild("not-authorized")?.name,
        "not-authorized",
      );
      assert.match(failedLine(), /as "mallory" .* with SCRAM-SHA-256: unknown user$/);

      // Two guesses from this address used up its allowance: the next attempt waits first.
      c.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${btoa("\0alice\0nope")}</auth>`);
      assert.equal(await failure(), "not-authorized");
      assert.match(
        logged.find((l) => l.includes(" waits: ")) ?? "",
        new RegExp(
          'Login as "alice" on localhost from 127\\.0\\.0\\.1 with PLAIN waits: ' +
            "2 failed logins of this address, 0\\.2 s to wait$",
        ),
      );
      c.close();
    }, {
      globalToml: "auth_throttle_address_failures = 2\nauth_throttle_delay = 0.2",
    });
  } finally {
    stopWatching();
  }
});

Deno.test("two users exchange messages and the server answers ping, disco and roster", () =>
  withServer(async (t) => {
    const { client: alice, jid: aliceJid } = await RawClient.login(
      t.port,
      "alice",
      "alice-pw",
      "a",
    );
    const { client: bob } = await RawClient.login(t.port, "bob", "bob-pw", "b");
    assert.equal(aliceJid, "alice@localhost/a");
    alice.send("<presence/>");
    bob.send("<presence/>");
    await alice.next((el) => el.name === "presence");
    bob.send(
      "<message to='alice@localhost' type='chat' id='m1'><body>hi &amp; bye</body></message>",
    );
    const message = await alice.next((el) => el.name === "message");
    assert.equal(message.attrs.from, "bob@localhost/b");
    assert.equal(message.attrs.to, "alice@localhost");
    assert.equal(message.getChildText("body"), "hi & bye");

    alice.send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    const pong = await alice.next((el) => el.attrs.id === "p1");
    assert.equal(pong.attrs.type, "result");
    assert.equal(pong.attrs.from, "localhost");

    alice.send(
      "<iq type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    );
    const info = await alice.next((el) => el.attrs.id === "d1");
    const features = info.getChild("query")!.getChildren("feature").map((f) => f.attrs.var);
    assert.ok(features.includes("urn:xmpp:ping"));
    assert.equal(info.getChild("query")!.getChild("identity")?.attrs.category, "server");

    alice.send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>");
    const roster = await alice.next((el) => el.attrs.id === "r1");
    assert.equal(roster.attrs.type, "result");
    assert.equal(roster.getChild("query", "jabber:iq:roster")?.elements().length, 0);
    alice.close();
    bob.close();
  }));

Deno.test("presence reaches the account's other resources", () =>
  withServer(async (t) => {
    const { client: one } = await RawClient.login(t.port, "alice", "alice-pw", "one");
    const { client: two } = await RawClient.login(t.port, "alice", "alice-pw", "two");
    one.send("<presence><priority>5</priority></presence>");
    await one.next((el) => el.name === "presence");
    two.send("<presence/>");
    const seenByOne = await one.next((el) =>
      el.name === "presence" && el.attrs.from === "alice@localhost/two"
    );
    assert.equal(seenByOne.attrs.type, undefined);
    const seenByTwo = await two.next((el) =>
      el.name === "presence" && el.attrs.from === "alice@localhost/one"
    );
    assert.equal(seenByTwo.getChildText("priority"), "5");
    two.close();
    const gone = await one.next((el) =>
      el.name === "presence" && el.attrs.from === "alice@localhost/two"
    );
    assert.equal(gone.attrs.type, "unavailable");
    one.close();
  }));

Deno.test("unhandled iq, remote and unknown destinations get the right stanza errors", () =>
  withServer(async (t) => {
    const { client: c } = await RawClient.login(t.port, "alice", "alice-pw");
    c.send("<iq type='get' id='u1' to='localhost'><query xmlns='urn:example:unknown'/></iq>");
    assert.equal(stanzaErrorOf(await c.next((el) => el.attrs.id === "u1")), "service-unavailable");
    c.send("<message to='someone@remote.example' id='r1' type='chat'><body>x</body></message>");
    const bounced = await c.next((el) => el.attrs.id === "r1");
    assert.equal(bounced.attrs.type, "error");
    // Federation is off (no s2s_interfaces): remote domains are not served.
    assert.equal(stanzaErrorOf(bounced), "service-unavailable");
    // A service name under a local host that is not configured is not a remote server.
    c.send("<iq type='get' id='s1' to='conference.localhost'><query xmlns='urn:x'/></iq>");
    const noService = await c.next((el) => el.attrs.id === "s1");
    assert.equal(stanzaErrorOf(noService), "remote-server-not-found");
    assert.equal(
      noService.getChild("error")!.getChildText("text"),
      "No service 'conference.localhost' on localhost",
    );
    c.send("<message to='room@upload.localhost' id='s2' type='chat'><body>x</body></message>");
    assert.equal(
      stanzaErrorOf(await c.next((el) => el.attrs.id === "s2")),
      "remote-server-not-found",
    );
    c.send("<message to='nobody@localhost' id='n1' type='chat'><body>x</body></message>");
    assert.equal(stanzaErrorOf(await c.next((el) => el.attrs.id === "n1")), "service-unavailable");
    c.send("<message to='a@@b' id='j1'><body>x</body></message>");
    assert.equal(stanzaErrorOf(await c.next((el) => el.attrs.id === "j1")), "jid-malformed");
    // Errors are never answered with errors.
    c.send("<message to='x@remote.example' id='e1' type='error'><body>x</body></message>");
    c.send("<iq type='get' id='last' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    const last = await c.next((el) => el.attrs.id === "last" || el.attrs.id === "e1");
    assert.equal(last.attrs.id, "last");
    c.close();
  }));

Deno.test("binding a resource in use replaces the old session with a conflict error", () =>
  withServer(async (t) => {
    const { client: first } = await RawClient.login(t.port, "alice", "alice-pw", "same");
    const { client: second, jid } = await RawClient.login(t.port, "alice", "alice-pw", "same");
    assert.equal(jid, "alice@localhost/same");
    assert.equal(await streamErrorOf(first), "conflict");
    await first.waitClosed();
    second.send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    assert.equal((await second.next((el) => el.attrs.id === "p")).attrs.type, "result");
    second.close();
  }));

Deno.test("stanzas before authentication close the stream with not-authorized", () =>
  withServer(async (t) => {
    const c = await RawClient.connect(t.port);
    await c.open();
    c.send("<message to='alice@localhost'><body>sneaky</body></message>");
    assert.equal(await streamErrorOf(c), "not-authorized");
    await c.waitClosed();
  }));

Deno.test("an unknown host gets host-unknown", () =>
  withServer(async (t) => {
    const c = await RawClient.connect(t.port);
    c.send(
      `<stream:stream to='elsewhere.example' version='1.0' xmlns='jabber:client' xmlns:stream='${NS_STREAM}'>`,
    );
    assert.equal(await streamErrorOf(c), "host-unknown");
    await c.waitClosed();
  }));

Deno.test("a forged from address closes the stream with invalid-from", () =>
  withServer(async (t) => {
    const { client: c } = await RawClient.login(t.port, "alice", "alice-pw");
    c.send("<message from='bob@localhost/b' to='alice@localhost'><body>x</body></message>");
    assert.equal(await streamErrorOf(c), "invalid-from");
  }));

Deno.test("direct TLS negotiates xmpp-client ALPN and logs in", () =>
  withServer(async (t) => {
    const c = await RawClient.connect(t.tlsPort, { tls: true });
    assert.equal((c.socket as import("node:tls").TLSSocket).alpnProtocol, "xmpp-client");
    const features = await c.open();
    assert.ok(mechanisms(features).includes("SCRAM-SHA-1"));
    assert.equal(features.getChild("starttls", "urn:ietf:params:xml:ns:xmpp-tls"), undefined);
    const jid = await c.loginPlain("bob", "bob-pw", "direct");
    assert.equal(jid, "bob@localhost/direct");
    c.close();
  }));

const HOSTILE: [string, string | Uint8Array, string][] = [
  [
    "billion laughs",
    "<!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol2 '&lol;&lol;&lol;&lol;'>]><message>&lol2;</message>",
    "restricted-xml",
  ],
  ["a comment", "<!-- hello -->", "restricted-xml"],
  ["a processing instruction", "<?evil stuff?>", "restricted-xml"],
  ["an undefined entity", "<message><body>&nbsp;</body></message>", "restricted-xml"],
  ["mismatched tags", "<message><body></message>", "not-well-formed"],
  [
    "invalid UTF-8",
    new Uint8Array([0x3c, 0x61, 0x3e, 0xff, 0xfe, 0x3c, 0x2f, 0x61, 0x3e]),
    "unsupported-encoding",
  ],
];

for (const [name, payload, condition] of HOSTILE) {
  Deno.test(`hostile input (${name}) gets ${condition} and others keep being served`, () =>
    withServer(async (t) => {
      const { client: good } = await RawClient.login(t.port, "bob", "bob-pw", "good");
      const bad = await RawClient.connect(t.port);
      await bad.open();
      bad.send(payload);
      assert.equal(await streamErrorOf(bad), condition);
      await bad.waitClosed();
      good.send("<iq type='get' id='still' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
      assert.equal((await good.next((el) => el.attrs.id === "still")).attrs.type, "result");
      good.close();
    }));
}

Deno.test("a 10 MB stanza is cut off with policy-violation", () =>
  withServer(async (t) => {
    const { client: bad } = await RawClient.login(t.port, "alice", "alice-pw", "big");
    const { client: good } = await RawClient.login(t.port, "bob", "bob-pw", "good");
    bad.send("<message to='bob@localhost'><body>");
    const chunk = "x".repeat(1024 * 1024);
    for (let i = 0; i < 10 && !bad.ended && !bad.closedByServer; i++) bad.send(chunk);
    assert.equal(await streamErrorOf(bad), "policy-violation");
    good.send("<iq type='get' id='still' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    assert.equal((await good.next((el) => el.attrs.id === "still")).attrs.type, "result");
    good.close();
  }));

Deno.test("a [[host]] c2s_stanza_size_limit applies to that host's streams", () =>
  withServer(async (t) => {
    const c = await RawClient.connect(t.port);
    await c.open();
    await c.starttls();
    c.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${btoa("\0alice\0alice-pw")}</auth>`);
    await c.next((el) => el.name === "success");
    c.restart();
    const features = await c.open();
    // XEP-0478: the limit announced is the host's, not the top-level default.
    assert.equal(
      features.getChild("limits", "urn:xmpp:stream-limits:0")?.getChild("max-bytes")?.text(),
      "10000",
    );
    c.close();
    const { client: bob } = await RawClient.login(t.port, "bob", "bob-pw", "bob");
    const { client: alice } = await RawClient.login(t.port, "alice", "alice-pw", "alice");
    const body = (n: number) => "x".repeat(n);
    alice.send(`<message to='bob@localhost/bob' id='small'><body>${body(5000)}</body></message>`);
    assert.equal((await bob.next((el) => el.attrs.id === "small")).name, "message");
    alice.send(`<message to='bob@localhost/bob' id='big'><body>${body(20000)}</body></message>`);
    assert.equal(await streamErrorOf(alice), "policy-violation");
    bob.close();
  }, { hostToml: "c2s_stanza_size_limit = 10000" }));

Deno.test("shutdown closes every stream with system-shutdown", async () => {
  const t = await startTestServer({ users: { alice: "alice-pw" } });
  const { client } = await RawClient.login(t.port, "alice", "alice-pw");
  const error = streamErrorOf(client);
  await t.stop();
  assert.equal(await error, "system-shutdown");
  await client.waitClosed();
});

Deno.test("SCRAM-SHA-256-PLUS binds to the TLS channel (tls-server-end-point)", () =>
  withServer(async (t) => {
    const c = await RawClient.connect(t.port);
    await c.open();
    const features = await c.starttls();
    const cb = features.getChild("sasl-channel-binding", "urn:xmpp:sasl-cb:0");
    assert.equal(cb?.getChild("channel-binding")?.attrs.type, "tls-server-end-point");
    const { outcome, verified } = await c.scram("alice", "alice-pw", { plus: true });
    assert.equal(outcome.name, "success");
    assert.ok(verified, "the server proved it knows the credentials");
    c.close();

    // Binding data from another channel (a man in the middle's) is refused.
    const d = await RawClient.connect(t.port);
    await d.open();
    await d.starttls();
    const wrong = await d.scram("alice", "alice-pw", {
      plus: true,
      cbData: new Uint8Array(32),
    });
    assert.equal(wrong.outcome.name, "failure");
    assert.ok(wrong.outcome.getChild("not-authorized"));
    d.close();
  }, { globalToml: "sasl_offer_channel_binding = true" }));

/** A SCRAM-SHA-256-PLUS first message asking for tls-unique, as slixmpp 1.8 sends it. */
function tlsUniqueAuth(user: string): string {
  const first = btoa(`p=tls-unique,,n=${user},r=${crypto.randomUUID()}`);
  return `<auth xmlns='${NS_SASL}' mechanism='SCRAM-SHA-256-PLUS'>${first}</auth>`;
}

Deno.test("an unsupported channel binding type fails recoverably and is not a wrong password", () =>
  withServer(async (t) => {
    const c = await RawClient.connect(t.port);
    await c.open();
    await c.starttls();
    // With one failed login allowed, counting these as wrong passwords would lock us out.
    for (let i = 0; i < 3; i++) {
      c.send(tlsUniqueAuth("alice"));
      const failure = await c.next((el) => el.name === "failure");
      assert.ok(failure.getChild("malformed-request"), failure.toString());
      assert.match(failure.getChildText("text") ?? "", /tls-unique.*tls-server-end-point/);
    }
    // Retrying on the same stream with a binding the server has works (RFC 6120 §6.4.5).
    const { outcome } = await c.scram("alice", "alice-pw", { plus: true });
    assert.equal(outcome.name, "success");
    assert.equal(t.server.metrics.counter("c2s.auth_failures").value, 0);
    c.close();
  }, {
    globalToml: "sasl_offer_channel_binding = true\nauth_throttle_max_failures = 1",
  }));

Deno.test("a -PLUS mechanism that is not offered is invalid-mechanism, and the stream stays usable", () =>
  withServer(async (t) => {
    const c = await RawClient.connect(t.port);
    await c.open();
    await c.starttls();
    c.send(tlsUniqueAuth("alice"));
    const failure = await c.next((el) => el.name === "failure");
    assert.ok(failure.getChild("invalid-mechanism"), failure.toString());
    assert.equal((await c.scram("alice", "alice-pw")).outcome.name, "success");
    c.close();
  }, { globalToml: "auth_throttle_max_failures = 1" }));

Deno.test("the 'y' flag is a downgrade only where -PLUS was offered", async () => {
  const yFlag = async (t: TestServer) => {
    const c = await RawClient.connect(t.port);
    await c.open();
    await c.starttls();
    const { outcome } = await c.scram("alice", "alice-pw", { gs2: "y,," });
    c.close();
    return outcome;
  };
  // Without -PLUS on offer a client with channel binding rightly sends "y": it logs in.
  await withServer(async (t) => {
    assert.equal((await yFlag(t)).name, "success");
  }, { hostToml: "sasl_reject_channel_binding_downgrade = true" });
  // With -PLUS offered, "y" means the client did not see it: refused when so configured.
  await withServer(async (t) => {
    const outcome = await yFlag(t);
    assert.equal(outcome.name, "failure");
    assert.ok(outcome.getChild("not-authorized"));
  }, {
    hostToml: "sasl_reject_channel_binding_downgrade = true\nsasl_offer_channel_binding = true",
  });
});

Deno.test("SCRAM-SHA-1 over direct TLS, then a server-generated resource", () =>
  withServer(async (t) => {
    const c = await RawClient.connect(t.tlsPort, { tls: true });
    await c.open();
    const { outcome, verified } = await c.scram("bob", "bob-pw", { hash: "SHA-1" });
    assert.equal(outcome.name, "success");
    assert.ok(verified);
    c.restart();
    await c.open();
    c.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>");
    const bound = await c.next((el) => el.attrs.id === "b");
    const jid = bound.getChild("bind")!.getChildText("jid")!;
    assert.match(jid, /^bob@localhost\/.{8,}$/);
    c.close();
  }));

Deno.test("SCRAM carries XEP-0474's hash of exactly the lists the client saw in the features", () =>
  withServer(async (t) => {
    const logins = [
      { tls: false, hash: "SHA-256", plus: false },
      { tls: false, hash: "SHA-1", plus: true },
      { tls: true, hash: "SHA-256", plus: true },
    ] as const;
    for (const { tls, hash, plus } of logins) {
      const c = await RawClient.connect(tls ? t.tlsPort : t.port, { tls });
      const features = tls ? await c.open() : (await c.open(), await c.starttls());
      assert.ok(features.getChild("sasl-channel-binding", NS_SASL_CB));
      const { outcome, verified, downgradeCheck } = await c.scram("alice", "alice-pw", {
        hash,
        plus,
      });
      assert.equal(outcome.name, "success");
      assert.ok(verified);
      assert.equal(
        downgradeCheck,
        "matched",
        `${hash}${plus ? "-PLUS" : ""} over ${tls ? "direct TLS" : "STARTTLS"}`,
      );
      c.close();
    }
    // Without -PLUS on offer the hash covers the mechanisms alone.
    await t.server.reload(
      parseConfigText(testConfigText(t.dataDir, {}), t.config.file).config!,
    );
    const c = await RawClient.connect(t.port);
    await c.open();
    assert.equal((await c.starttls()).getChild("sasl-channel-binding", NS_SASL_CB), undefined);
    const { outcome, downgradeCheck } = await c.scram("alice", "alice-pw");
    assert.equal(outcome.name, "success");
    assert.equal(downgradeCheck, "matched");
    c.close();
  }, { hostToml: "sasl_offer_channel_binding = true" }));

Deno.test("XEP-0474's hash covers what the stream advertised even after a reload", () =>
  withServer(async (t) => {
    const c = await RawClient.connect(t.port);
    await c.open();
    const features = await c.starttls();
    assert.equal(mechanisms(features)[0], "SCRAM-SHA-256-PLUS");
    // Channel binding is turned off between the features and the login.
    const { config } = parseConfigText(testConfigText(t.dataDir, {}), t.config.file);
    await t.server.reload(config!);
    const { outcome, downgradeCheck } = await c.scram("alice", "alice-pw");
    assert.equal(outcome.name, "success");
    assert.equal(downgradeCheck, "matched");
    c.close();
  }, { hostToml: "sasl_offer_channel_binding = true" }));

/** A relay between a client and the server, able to rewrite what the server sends. */
interface Relay {
  port: number;
  close(): Promise<void>;
}

/**
 * A man in the middle on a cleartext stream: relays bytes both ways, and applies `rewrite` to
 * the server's text up to and including its first stream features.
 */
async function startRelay(serverPort: number, rewrite: (text: string) => string): Promise<Relay> {
  const sockets = new Set<Socket>();
  const relay = createServer((client) => {
    const upstream = netConnect(serverPort, "127.0.0.1");
    sockets.add(client).add(upstream);
    let head: string | undefined = "";
    upstream.on("data", (chunk: Uint8Array) => {
      if (head === undefined) return void client.write(chunk);
      head += new TextDecoder().decode(chunk);
      if (!head.includes("</stream:features>")) return;
      client.write(rewrite(head));
      head = undefined;
    });
    client.on("data", (chunk: Uint8Array) => upstream.write(chunk));
    for (const [from, to] of [[client, upstream], [upstream, client]]) {
      from.on("close", () => to.destroy());
      from.on("error", () => to.destroy());
    }
  });
  await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", resolve));
  return {
    port: (relay.address() as { port: number }).port,
    close() {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => relay.close(() => resolve()));
    },
  };
}

Deno.test("a man in the middle who removes a mechanism is caught by XEP-0474's hash", () =>
  withServer(async (t) => {
    // The honest relay changes nothing: the hash matches and the login succeeds.
    const honest = await startRelay(t.port, (text) => text);
    const c = await RawClient.connect(honest.port);
    assert.deepEqual(mechanisms(await c.open()), ["SCRAM-SHA-256", "SCRAM-SHA-1"]);
    const ok = await c.scram("alice", "alice-pw", { hash: "SHA-1" });
    assert.equal(ok.outcome.name, "success");
    assert.equal(ok.downgradeCheck, "matched");
    c.close();
    await honest.close();

    // This one hides SCRAM-SHA-256 so that the client settles for SCRAM-SHA-1.
    const mitm = await startRelay(
      t.port,
      (text) => text.replaceAll("<mechanism>SCRAM-SHA-256</mechanism>", ""),
    );
    const d = await RawClient.connect(mitm.port);
    assert.deepEqual(mechanisms(await d.open()), ["SCRAM-SHA-1"]);
    const caught = await d.scram("alice", "alice-pw", { hash: "SHA-1" });
    assert.equal(caught.downgradeCheck, "mismatch");
    // The client aborted before sending a proof; the server answers the abort, and no
    // password guess was counted.
    assert.equal(caught.outcome.name, "failure");
    assert.ok(caught.outcome.getChild("aborted"), caught.outcome.toString());
    assert.equal(t.server.metrics.counter("c2s.auth_failures").value, 0);
    d.close();
    await mitm.close();
  }, { globalToml: "c2s_require_encryption = false" }));

Deno.test("a connection that does not authenticate in time gets connection-timeout", () =>
  withServer(async (t) => {
    const c = await RawClient.connect(t.port);
    await c.open();
    assert.equal(await streamErrorOf(c), "connection-timeout");
    await c.waitClosed();
  }, { globalToml: "c2s_auth_timeout = 1" }));

Deno.test("an idle session is closed with connection-timeout", () =>
  withServer(async (t) => {
    const { client } = await RawClient.login(t.port, "alice", "alice-pw");
    assert.equal(await streamErrorOf(client), "connection-timeout");
  }, { globalToml: "c2s_idle_timeout = 1" }));
