// SASL2 (XEP-0388), Bind2 (XEP-0386) and FAST (XEP-0484) over real sockets: one round trip from
// authentication to a bound resource with carbons and stream management enabled inline, FAST
// token login, rotation and invalidation (by the client, a password change, a disabled account),
// and stream management resumption inside <authenticate/>.

import assert from "node:assert/strict";
import { htProof } from "../../../core/auth/fast.ts";
import type { Element } from "../../../core/xml/element.ts";
import { RawClient } from "../../helpers/raw_client.ts";
import { ScramClient } from "../../helpers/scram_client.ts";
import { startTestServer, type TestServer } from "../../helpers/test_server.ts";

const NS_SASL2 = "urn:xmpp:sasl:2";
const NS_BIND2 = "urn:xmpp:bind:0";
const NS_FAST = "urn:xmpp:fast:0";
const NS_SM = "urn:xmpp:sm:3";
const NS_CARBONS = "urn:xmpp:carbons:2";
const NS_CSI = "urn:xmpp:csi:0";
const NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl";
const AGENT = "d4565fa7-4d72-4749-b3d3-740edbf87770";

const b64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes));
const text = (s: string) => btoa(unescape(encodeURIComponent(s)));

function server(): Promise<TestServer> {
  return startTestServer({
    modules: ["disco", "roster", "presence", "carbons", "smacks", "csi"],
    users: { alice: "pw", bob: "pw" },
  });
}

/** Connects and runs STARTTLS; returns the client and the features offered for login. */
async function secured(t: TestServer): Promise<{ client: RawClient; features: Element }> {
  const client = await RawClient.connect(t.port);
  await client.open("localhost");
  const features = await client.starttls("localhost");
  return { client, features };
}

const isSasl2 = (el: Element) =>
  el.ns === NS_SASL2 && ["success", "failure", "challenge", "continue"].includes(el.name);

/** `<authenticate/>` with PLAIN and whatever inline requests `inner` holds. */
function plainAuthenticate(user: string, password: string, inner = ""): string {
  return `<authenticate xmlns='${NS_SASL2}' mechanism='PLAIN'>` +
    `<initial-response>${text(`\0${user}\0${password}`)}</initial-response>` +
    `<user-agent id='${AGENT}'><software>Lilt tests</software><device>CI</device></user-agent>` +
    `${inner}</authenticate>`;
}

/** `<authenticate/>` with a FAST token. */
function tokenAuthenticate(user: string, token: string, inner = ""): string {
  const proof = htProof(token, "Initiator", new Uint8Array(0));
  const response = new Uint8Array([...new TextEncoder().encode(user), 0, ...proof]);
  return `<authenticate xmlns='${NS_SASL2}' mechanism='HT-SHA-256-NONE'>` +
    `<initial-response>${b64(response)}</initial-response>` +
    `<user-agent id='${AGENT}'><software>Lilt tests</software></user-agent>` +
    `${inner}</authenticate>`;
}

const BIND = `<bind xmlns='${NS_BIND2}'><tag>Tests</tag>` +
  `<enable xmlns='${NS_CARBONS}'/><enable xmlns='${NS_SM}' resume='true'/></bind>`;
const REQUEST_TOKEN = `<request-token xmlns='${NS_FAST}' mechanism='HT-SHA-256-NONE'/>`;

Deno.test("SASL2 is offered with Bind2, FAST and SM inline", async () => {
  const t = await server();
  try {
    const { client, features } = await secured(t);
    const authentication = features.getChild("authentication", NS_SASL2);
    assert.ok(authentication, "<authentication/> offered");
    const mechanisms = authentication.getChildren("mechanism").map((m) => m.text());
    assert.deepEqual(mechanisms, ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]);
    const inline = authentication.getChild("inline")!;
    const bindFeatures = inline.getChild("bind", NS_BIND2)!.getChild("inline")!
      .getChildren("feature").map((f) => f.attrs.var).sort();
    assert.deepEqual(bindFeatures, [NS_CARBONS, NS_CSI, NS_SM]);
    assert.deepEqual(
      inline.getChild("fast", NS_FAST)!.getChildren("mechanism").map((m) => m.text()),
      ["HT-SHA-256-NONE"],
    );
    assert.ok(inline.getChild("sm", NS_SM));
    client.close();
  } finally {
    await t.stop();
  }
});

Deno.test("SASL2 with Bind2 binds, enables carbons and SM and issues a token in one round trip", async () => {
  const t = await server();
  try {
    const { client } = await secured(t);
    client.send(plainAuthenticate("alice", "pw", BIND + REQUEST_TOKEN));
    const success = await client.next(isSasl2);
    assert.equal(success.name, "success");
    const jid = success.getChildText("authorization-identifier")!;
    assert.match(jid, /^alice@localhost\/Tests\.[0-9a-f]{8}$/);
    const bound = success.getChild("bound", NS_BIND2)!;
    const enabled = bound.getChild("enabled", NS_SM)!;
    assert.equal(enabled.attrs.resume, "true");
    const token = success.getChild("token", NS_FAST)!;
    assert.ok(token.attrs.token.length >= 40);
    assert.ok(Date.parse(token.attrs.expiry) > Date.now());
    // No stream restart: stanzas flow at once, carbons are on.
    client.send("<presence/>");
    await client.next((el) => el.name === "presence");
    const { client: other } = await RawClient.login(t.port, "alice", "pw", "other");
    const { client: bob } = await RawClient.login(t.port, "bob", "pw", "b");
    bob.send("<message to='alice@localhost/other' type='chat'><body>hi</body></message>");
    await other.next((el) => el.getChildText("body") === "hi");
    const carbon = await client.next((el) => el.getChild("received", NS_CARBONS) !== undefined);
    assert.equal(carbon.attrs.to, jid);
    // The same user-agent gets the same resource next time.
    const { client: again } = await secured(t);
    again.send(plainAuthenticate("alice", "pw", BIND));
    const second = await again.next(isSasl2);
    assert.equal(second.getChildText("authorization-identifier"), jid);
    for (const c of [client, other, bob, again]) c.close();
  } finally {
    await t.stop();
  }
});

Deno.test("SASL2 with SCRAM: challenge, response, success with the server signature; no Bind2 means the client binds", async () => {
  const t = await server();
  try {
    const { client, features } = await secured(t);
    // XEP-0474: the server's h must cover what <authentication/> listed.
    const listed = features.getChild("authentication", NS_SASL2)!.getChildren("mechanism")
      .map((m) => m.text());
    const scram = new ScramClient({
      hash: "SHA-256",
      username: "alice",
      password: "pw",
      advertised: { mechanisms: listed },
    });
    client.send(
      `<authenticate xmlns='${NS_SASL2}' mechanism='SCRAM-SHA-256'>` +
        `<initial-response>${b64(scram.first())}</initial-response></authenticate>`,
    );
    const challenge = await client.next(isSasl2);
    assert.equal(challenge.name, "challenge");
    const final = await scram.final(atob(challenge.text()));
    assert.equal(scram.downgradeCheck, "matched");
    client.send(`<response xmlns='${NS_SASL2}'>${b64(final)}</response>`);
    const success = await client.next(isSasl2);
    assert.equal(success.name, "success");
    assert.ok(scram.verify(atob(success.getChildText("additional-data")!)));
    assert.equal(success.getChildText("authorization-identifier"), "alice@localhost");
    client.send(
      "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>",
    );
    const bound = await client.next((el) => el.attrs.id === "b");
    assert.equal(bound.getChild("bind")!.getChildText("jid"), "alice@localhost/r");
    client.close();
  } finally {
    await t.stop();
  }
});

Deno.test("a wrong password over SASL2 gets a SASL2 failure and the stream stays usable", async () => {
  const t = await server();
  try {
    const { client } = await secured(t);
    client.send(plainAuthenticate("alice", "wrong"));
    const failure = await client.next(isSasl2);
    assert.equal(failure.name, "failure");
    assert.ok(failure.getChild("not-authorized", NS_SASL));
    client.send(plainAuthenticate("alice", "pw"));
    assert.equal((await client.next(isSasl2)).name, "success");
    client.close();
  } finally {
    await t.stop();
  }
});

async function tokenFor(t: TestServer): Promise<string> {
  const { client } = await secured(t);
  client.send(plainAuthenticate("alice", "pw", REQUEST_TOKEN));
  const success = await client.next(isSasl2);
  client.close();
  return success.getChild("token", NS_FAST)!.attrs.token;
}

async function tokenLogin(t: TestServer, token: string, inner = ""): Promise<Element> {
  const { client } = await secured(t);
  client.send(tokenAuthenticate("alice", token, inner));
  const outcome = await client.next(isSasl2);
  client.close();
  return outcome;
}

Deno.test("a FAST token logs in in one message, the server proves it had the token too", async () => {
  const t = await server();
  try {
    const token = await tokenFor(t);
    const outcome = await tokenLogin(t, token);
    assert.equal(outcome.name, "success");
    const expected = htProof(token, "Responder", new Uint8Array(0));
    assert.equal(outcome.getChildText("additional-data"), b64(expected));
    // A wrong token fails like a wrong password.
    const wrong = await tokenLogin(t, token.slice(0, -4) + "AAAA");
    assert.equal(wrong.name, "failure");
    assert.ok(wrong.getChild("not-authorized", NS_SASL));
  } finally {
    await t.stop();
  }
});

Deno.test("FAST tokens rotate: the old one works until the new one is used", async () => {
  const t = await server();
  try {
    const first = await tokenFor(t);
    const rotated = await tokenLogin(t, first, REQUEST_TOKEN);
    const second = rotated.getChild("token", NS_FAST)!.attrs.token;
    assert.notEqual(second, first);
    assert.equal((await tokenLogin(t, first)).name, "success", "old token until the new is used");
    assert.equal((await tokenLogin(t, second)).name, "success");
    assert.equal((await tokenLogin(t, first)).name, "failure", "old token gone");
  } finally {
    await t.stop();
  }
});

Deno.test("FAST tokens end with invalidate, a password change and a disabled account", async () => {
  const t = await server();
  try {
    let token = await tokenFor(t);
    const invalidated = await tokenLogin(t, token, `<fast xmlns='${NS_FAST}' invalidate='true'/>`);
    assert.equal(invalidated.name, "success");
    assert.equal((await tokenLogin(t, token)).name, "failure");

    token = await tokenFor(t);
    await t.server.accounts.setPassword("localhost", "alice", "new-pw");
    assert.equal((await tokenLogin(t, token)).name, "failure", "password changed");

    const { client } = await secured(t);
    client.send(plainAuthenticate("alice", "new-pw", REQUEST_TOKEN));
    token = (await client.next(isSasl2)).getChild("token", NS_FAST)!.attrs.token;
    client.close();
    t.server.accounts.disable("localhost", "alice");
    assert.equal((await tokenLogin(t, token)).name, "failure", "account disabled");
  } finally {
    await t.stop();
  }
});

Deno.test("SM resumption inside SASL2 authenticate", async () => {
  const t = await server();
  try {
    const { client } = await secured(t);
    client.send(plainAuthenticate("alice", "pw", BIND));
    const success = await client.next(isSasl2);
    const jid = success.getChildText("authorization-identifier")!;
    const id = success.getChild("bound", NS_BIND2)!.getChild("enabled", NS_SM)!.attrs.id;
    client.socket.destroy();
    for (let i = 0; i < 200; i++) {
      const s = t.server.sessions.userSessions("localhost", "alice")[0] as { transport?: unknown };
      if (s && s.transport === undefined) break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const { client: bob } = await RawClient.login(t.port, "bob", "pw", "b");
    bob.send(`<message to='${jid}' type='chat'><body>while away</body></message>`);
    const { client: again } = await secured(t);
    again.send(
      plainAuthenticate("alice", "pw", `<resume xmlns='${NS_SM}' previd='${id}' h='0'/>` + BIND),
    );
    const resumed = await again.next(isSasl2);
    assert.equal(resumed.name, "success");
    assert.equal(resumed.getChildText("authorization-identifier"), jid);
    assert.ok(resumed.getChild("resumed", NS_SM));
    assert.equal(resumed.getChild("bound", NS_BIND2), undefined, "no new binding");
    await again.next((el) => el.getChildText("body") === "while away");
    assert.equal(t.server.sessions.userSessions("localhost", "alice").length, 1);
    again.close();
    bob.close();
  } finally {
    await t.stop();
  }
});

Deno.test("Bind2 can start a session inactive (CSI): presence waits until <active/>", async () => {
  const t = await server();
  try {
    const { client } = await secured(t);
    client.send(
      plainAuthenticate(
        "alice",
        "pw",
        `<bind xmlns='${NS_BIND2}'><tag>Tests</tag><inactive xmlns='${NS_CSI}'/></bind>`,
      ),
    );
    const success = await client.next(isSasl2);
    const jid = success.getChildText("authorization-identifier")!;
    client.send("<presence/>"); // its own echo is held too: the client is inactive
    const { client: other } = await RawClient.login(t.port, "alice", "pw", "other");
    other.send("<presence/>");
    await other.next((el) => el.name === "presence" && el.attrs.from === jid);
    // The other resource's presence is held for the inactive one.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const seen = () =>
      client.received.filter((el) =>
        el.name === "presence" && el.attrs.from === "alice@localhost/other"
      ).length;
    assert.equal(seen(), 0, `presence held for ${jid}`);
    client.send(`<active xmlns='${NS_CSI}'/>`);
    await client.next((el) => el.name === "presence" && el.attrs.from === "alice@localhost/other");
    client.close();
    other.close();
  } finally {
    await t.stop();
  }
});
