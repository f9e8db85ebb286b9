// External components (XEP-0114) over real sockets: the handshake, stanzas both ways between a
// component and a logged-in client, and the refusals (wrong secret, unknown domain, forged from).

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import type { Element } from "../../../core/xml/element.ts";
import { conditionOf, NS_STREAM, RawClient, roundTrip } from "../../helpers/raw_client.ts";
import { startTestServer, type TestServer } from "../../helpers/test_server.ts";

const COMPONENT_TOML = `[[component]]
domain = "comp.localhost"
secret = "s3cret"

[[component]]
domain = "internal.localhost"
module = "ping"
`;

function startServer(): Promise<TestServer> {
  return startTestServer({
    globalToml: 'component_interfaces = ["127.0.0.1:0"]',
    extraToml: COMPONENT_TOML,
    users: { alice: "pw" },
    modules: ["ping", "disco"],
  });
}

/** Opens a component stream and waits for the server's header. */
async function openComponent(t: TestServer, domain: string): Promise<RawClient> {
  const component = await RawClient.connect(t.server.port("component"));
  component.send(
    `<stream:stream xmlns='jabber:component:accept' xmlns:stream='${NS_STREAM}' to='${domain}'>`,
  );
  await component.waitUntil(() => component.headers[0], 5000, "stream header");
  return component;
}

/** Sends the XEP-0114 handshake computed from the stream id and a secret. */
function sendHandshake(component: RawClient, secret: string): void {
  const id = component.headers[0].attrs.id;
  const digest = createHash("sha1").update(id + secret).digest("hex");
  component.send(`<handshake>${digest}</handshake>`);
}

/** Connects and authenticates a component; resolves once the server confirmed. */
async function connectComponent(t: TestServer, secret = "s3cret"): Promise<RawClient> {
  const component = await openComponent(t, "comp.localhost");
  sendHandshake(component, secret);
  const answer = await component.next();
  assert.equal(answer.name, "handshake");
  assert.equal(answer.children.length, 0);
  return component;
}

/** The stream error condition the server closed with. */
async function streamErrorOf(client: RawClient): Promise<string | undefined> {
  const error = await client.next((el) => el.name === "error" && el.ns === NS_STREAM);
  await client.waitClosed();
  return error.elements()[0]?.name;
}

function isMessage(id: string): (el: Element) => boolean {
  return (el) => el.name === "message" && el.attrs.id === id;
}

Deno.test("a component with the right secret exchanges stanzas with a user", async () => {
  const t = await startServer();
  try {
    const component = await connectComponent(t);
    const header = component.headers[0];
    assert.equal(header.attrs.from, "comp.localhost");
    assert.ok(header.attrs.id);
    assert.match(component.text, /xmlns='jabber:component:accept'/);
    const { client: alice, jid } = await RawClient.login(t.port, "alice", "pw");

    alice.send(
      "<message to='x@comp.localhost' id='m1' type='chat'><body>hello</body></message>",
    );
    const got = await component.next(isMessage("m1"));
    assert.equal(got.attrs.from, jid);
    assert.equal(got.attrs.to, "x@comp.localhost");
    assert.equal(got.ns, "jabber:component:accept");
    assert.equal(got.getChildText("body"), "hello");
    // The stanza takes the component stream's namespace: no jabber:client on the wire.
    assert.doesNotMatch(component.text, /jabber:client/);

    // Whitespace keepalives between stanzas are fine.
    component.send(" \n ");
    component.send(
      `<message from='x@comp.localhost/bot' to='${jid}' id='m2' type='chat'>` +
        "<body>hi back</body></message>",
    );
    const back = await alice.next(isMessage("m2"));
    assert.equal(back.attrs.from, "x@comp.localhost/bot");
    assert.equal(back.getChildText("body"), "hi back");
    assert.equal(back.ns, "jabber:client");
    assert.doesNotMatch(alice.text, /jabber:component:accept/);

    // iqs to the component's domain go to the component, not to the server's modules.
    alice.send(
      "<iq type='get' id='q1' to='comp.localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
    );
    const iq = await component.next((el) => el.name === "iq" && el.attrs.id === "q1");
    assert.equal(iq.attrs.from, jid);
    component.send(`<iq type='result' id='q1' from='comp.localhost' to='${jid}'/>`);
    const result = await alice.next((el) => el.name === "iq" && el.attrs.id === "q1");
    assert.equal(result.attrs.type, "result");
    assert.equal(result.attrs.from, "comp.localhost");

    // A stanza without 'from' gets a stanza error, not a stream error.
    component.send(`<message to='${jid}' id='nofrom'><body>x</body></message>`);
    const refused = await component.next(isMessage("nofrom"));
    assert.equal(conditionOf(refused), "bad-request");
    alice.close();
    component.close();
  } finally {
    await t.stop();
  }
});

Deno.test("a wrong secret is refused with not-authorized", async () => {
  const t = await startServer();
  try {
    const component = await openComponent(t, "comp.localhost");
    sendHandshake(component, "wrong");
    assert.equal(await streamErrorOf(component), "not-authorized");
    assert.equal(component.received.some((el) => el.name === "handshake"), false);
    // Nothing was attached: the right secret still works afterwards.
    const good = await connectComponent(t);
    good.close();
  } finally {
    await t.stop();
  }
});

Deno.test("unknown domains and internal components are refused with host-unknown", async () => {
  const t = await startServer();
  try {
    const unknown = await openComponent(t, "nothere.localhost");
    assert.equal(await streamErrorOf(unknown), "host-unknown");
    const internal = await openComponent(t, "internal.localhost");
    assert.equal(await streamErrorOf(internal), "host-unknown");
    const local = await openComponent(t, "localhost");
    assert.equal(await streamErrorOf(local), "host-unknown");
  } finally {
    await t.stop();
  }
});

Deno.test("a stanza with a forged from closes the stream with invalid-from", async () => {
  const t = await startServer();
  try {
    const { client: alice, jid } = await RawClient.login(t.port, "alice", "pw");
    const component = await connectComponent(t);
    component.send(
      `<message from='bob@localhost' to='${jid}' id='forged'><body>x</body></message>`,
    );
    assert.equal(await streamErrorOf(component), "invalid-from");
    // A subdomain is not the component's domain either.
    const again = await connectComponent(t);
    again.send(
      `<message from='a@sub.comp.localhost' to='${jid}' id='forged2'><body>x</body></message>`,
    );
    assert.equal(await streamErrorOf(again), "invalid-from");
    await roundTrip(alice);
    assert.equal(alice.received.some((el) => el.name === "message"), false);
    alice.close();
  } finally {
    await t.stop();
  }
});

Deno.test("stanzas to a component that is not connected bounce", async () => {
  const t = await startServer();
  try {
    const { client: alice } = await RawClient.login(t.port, "alice", "pw");
    alice.send("<message to='x@comp.localhost' id='m1' type='chat'><body>hi</body></message>");
    const bounce = await alice.next(isMessage("m1"));
    assert.equal(bounce.attrs.type, "error");
    assert.equal(bounce.attrs.from, "x@comp.localhost");
    assert.equal(conditionOf(bounce), "service-unavailable");
    alice.send("<iq type='get' id='q1' to='comp.localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    const iq = await alice.next((el) => el.name === "iq" && el.attrs.id === "q1");
    assert.equal(conditionOf(iq), "service-unavailable");
    alice.close();
  } finally {
    await t.stop();
  }
});

Deno.test("a disconnected component is detached and a new one can take over", async () => {
  const t = await startServer();
  try {
    const { client: alice } = await RawClient.login(t.port, "alice", "pw");
    const first = await connectComponent(t);
    // Only one connection per domain: the second is refused, the first keeps working.
    const second = await openComponent(t, "comp.localhost");
    sendHandshake(second, "s3cret");
    assert.equal(await streamErrorOf(second), "conflict");
    alice.send("<message to='x@comp.localhost' id='m1'><body>1</body></message>");
    await first.next(isMessage("m1"));

    first.send("</stream:stream>");
    await first.waitClosed();
    alice.send("<message to='x@comp.localhost' id='m2'><body>2</body></message>");
    assert.equal(conditionOf(await alice.next(isMessage("m2"))), "service-unavailable");

    const third = await connectComponent(t);
    alice.send("<message to='x@comp.localhost' id='m3'><body>3</body></message>");
    assert.equal((await third.next(isMessage("m3"))).getChildText("body"), "3");
    third.close();
    alice.close();
  } finally {
    await t.stop();
  }
});

Deno.test("protocol errors on a component stream become stream errors", async () => {
  const t = await startServer();
  try {
    const early = await openComponent(t, "comp.localhost");
    early.send("<message from='comp.localhost' to='localhost'/>");
    assert.equal(await streamErrorOf(early), "not-authorized");

    const wrongNs = await RawClient.connect(t.server.port("component"));
    wrongNs.send(
      `<stream:stream xmlns='jabber:client' xmlns:stream='${NS_STREAM}' to='comp.localhost'>`,
    );
    assert.equal(await streamErrorOf(wrongNs), "invalid-namespace");

    const broken = await connectComponent(t);
    broken.send("<message><body></message>");
    assert.equal(await streamErrorOf(broken), "not-well-formed");
  } finally {
    await t.stop();
  }
});

Deno.test("a component that never sends its handshake is disconnected", async () => {
  const t = await startTestServer({
    globalToml: 'component_interfaces = ["127.0.0.1:0"]\nc2s_auth_timeout = 1',
    extraToml: COMPONENT_TOML,
    modules: ["ping"],
  });
  try {
    const silent = await openComponent(t, "comp.localhost");
    assert.equal(await streamErrorOf(silent), "connection-timeout");
  } finally {
    await t.stop();
  }
});
