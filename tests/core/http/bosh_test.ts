// XEP-0206 over real sockets: a BOSH client posts `<body/>` wrappers to /http-bind, creates a
// session, logs in (SCRAM and PLAIN, with stream restarts), binds and talks to a TCP client;
// rid ordering, replay and window, held requests, wait expiry, terminate, bad input and CORS.

import assert from "node:assert/strict";
import type { Element } from "../../../core/xml/element.ts";
import { parseElement } from "../../../core/xml/parser.ts";
import { rawRequest } from "../../helpers/http_request.ts";
import { RawClient } from "../../helpers/raw_client.ts";
import { ScramClient } from "../../helpers/scram_client.ts";
import { startTestServer, type TestServer } from "../../helpers/test_server.ts";

const NS_BOSH = "http://jabber.org/protocol/httpbind";
const NS_XBOSH = "urn:xmpp:xbosh";
const NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl";
const NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind";
const NS_STREAM = "http://etherx.jabber.org/streams";

/** One answer of the connection manager. */
interface BoshReply {
  status: number;
  headers: string;
  text: string;
  body: Element;
  /** The payload elements the body carries. */
  payload: Element[];
}

/** A BOSH client over raw HTTP/1.1 requests (one connection each, as a browser may do). */
class BoshClient {
  rid = 1_000_000 + Math.floor(Math.random() * 1_000_000);
  sid = "";

  constructor(readonly t: TestServer) {}

  get url(): string {
    return `http://127.0.0.1:${this.t.server.port("http")}/http-bind`;
  }

  /** Posts a raw request body. */
  async post(text: string, headers: Record<string, string> = {}): Promise<BoshReply> {
    const res = await rawRequest(this.url, "localhost", {
      method: "POST",
      body: text,
      headers: { "content-type": "text/xml; charset=utf-8", ...headers },
    });
    const body = parseElement(res.body);
    const payload = body.children.filter((c): c is Element => typeof c !== "string");
    return { status: res.status, headers: res.headers, text: res.body, body, payload };
  }

  /** The next request of the session: `content` inside, `attrs` on the body. */
  send(content = "", attrs = "", rid = ++this.rid): Promise<BoshReply> {
    return this.post(
      `<body xmlns='${NS_BOSH}' rid='${rid}' sid='${this.sid}'${attrs}>` +
        `${content}</body>`,
    );
  }

  /** The session creation request; returns the answer (the session's attributes and features). */
  async create(attrs: Record<string, string> = {}): Promise<BoshReply> {
    const all: Record<string, string> = {
      to: "localhost",
      "xml:lang": "en",
      ver: "1.6",
      wait: "60",
      hold: "1",
      "xmpp:version": "1.0",
      ...attrs,
    };
    const text = Object.entries(all).map(([k, v]) => ` ${k}='${v}'`).join("");
    const reply = await this.post(
      `<body xmlns='${NS_BOSH}' xmlns:xmpp='${NS_XBOSH}' rid='${this.rid}'${text}/>`,
    );
    this.sid = reply.body.attrs.sid ?? "";
    return reply;
  }

  /** A stream restart request (after SASL success); returns the new features. */
  async restart(): Promise<Element> {
    const reply = await this.send(
      "",
      ` to='localhost' xml:lang='en' xmpp:restart='true' xmlns:xmpp='${NS_XBOSH}'`,
    );
    const features = reply.payload.find((el) => el.name === "features" && el.ns === NS_STREAM);
    assert.ok(features, `features after restart: ${reply.text}`);
    return features;
  }

  /** Binds a resource; returns the full JID. */
  async bind(resource: string): Promise<string> {
    const reply = await this.send(
      `<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='${NS_BIND}'>` +
        `<resource>${resource}</resource></bind></iq>`,
    );
    const result = reply.payload.find((el) => el.name === "iq" && el.attrs.id === "b1");
    assert.equal(result?.attrs.type, "result", reply.text);
    return result!.getChild("bind")!.getChild("jid")!.text();
  }

  /** Creates a session, logs in with SCRAM-SHA-256, restarts and binds; returns the JID. */
  async login(user: string, password: string, resource: string): Promise<string> {
    const created = await this.create();
    const features = created.payload.find((el) => el.name === "features")!;
    const mechanisms = features.getChild("mechanisms", NS_SASL)!.getChildren("mechanism")
      .map((m) => m.text());
    assert.ok(mechanisms.includes("SCRAM-SHA-256"), `offered: ${mechanisms}`);
    const scram = new ScramClient({ hash: "SHA-256", username: user, password });
    const b64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes));
    const challenge = await this.send(
      `<auth xmlns='${NS_SASL}' mechanism='SCRAM-SHA-256'>${b64(scram.first())}</auth>`,
    );
    assert.equal(challenge.payload[0]?.name, "challenge", challenge.text);
    const final = await scram.final(atob(challenge.payload[0].text()));
    const success = await this.send(`<response xmlns='${NS_SASL}'>${b64(final)}</response>`);
    assert.equal(success.payload[0]?.name, "success", success.text);
    assert.ok(scram.verify(atob(success.payload[0].text())));
    const bound = await this.restart();
    assert.ok(bound.getChild("bind", NS_BIND));
    return await this.bind(resource);
  }
}

function start(globalToml = ""): Promise<TestServer> {
  return startTestServer({
    users: { alice: "alice-pw", bob: "bob-pw" },
    globalToml: 'http_interfaces = ["127.0.0.1:0"]\n' + globalToml,
  });
}

Deno.test("a BOSH session is created with its parameters, the stream features and CORS headers", async () => {
  const t = await start("bosh_max_wait = 30");
  try {
    const bosh = new BoshClient(t);
    const created = await bosh.create({ wait: "120" });
    assert.equal(created.status, 200);
    assert.match(created.headers, /content-type: text\/xml; charset=utf-8/);
    assert.match(created.headers, /access-control-allow-origin: \*/);
    const attrs = created.body.attrs;
    assert.ok(attrs.sid && attrs.sid.length >= 16, created.text);
    assert.equal(attrs.wait, "30"); // capped by bosh_max_wait
    assert.equal(attrs.requests, "2");
    assert.equal(attrs.hold, "1");
    assert.equal(attrs.inactivity, "60");
    assert.equal(attrs.polling, "5");
    assert.equal(attrs.from, "localhost");
    assert.ok(attrs.ver);
    assert.ok(attrs.authid);
    assert.equal(attrs["xmlns:xmpp"], NS_XBOSH);
    assert.equal(attrs["xmpp:version"], "1.0");
    assert.equal(attrs["xmpp:restartlogic"], "true");
    const features = created.payload.find((el) => el.name === "features" && el.ns === NS_STREAM);
    assert.ok(features?.getChild("mechanisms", NS_SASL), created.text);
    // The admin shell's c2s listing sees the session as a BOSH one.
    assert.ok(
      t.server.sessions.all().some((s) => "transportKind" in s && s.transportKind === "bosh"),
    );
    const ended = await bosh.send("", " type='terminate'");
    assert.equal(ended.body.attrs.type, "terminate");
    assert.equal(t.server.boshSessions.size, 0);
  } finally {
    await t.stop();
  }
});

Deno.test("a BOSH client logs in with SCRAM, binds and exchanges messages with a TCP client", async () => {
  const t = await start();
  const { client: tcp } = await RawClient.login(t.port, "bob", "bob-pw", "desk");
  try {
    const bosh = new BoshClient(t);
    assert.equal(await bosh.login("alice", "alice-pw", "web"), "alice@localhost/web");
    // The message request is held (no output for alice yet) ...
    const held = bosh.send(
      `<message xmlns='jabber:client' to='bob@localhost/desk' type='chat'><body>hi bob</body></message>`,
    );
    const atBob = await tcp.next((el) => el.name === "message");
    assert.equal(atBob.getChild("body")!.text(), "hi bob");
    assert.equal(atBob.attrs.from, "alice@localhost/web");
    // ... and returns at once with bob's answer.
    tcp.send(`<message to='alice@localhost/web' type='chat'><body>hi alice</body></message>`);
    const answer = await held;
    const message = answer.payload.find((el) => el.name === "message");
    assert.ok(message, answer.text);
    assert.equal(message.ns, "jabber:client");
    assert.equal(message.getChild("body")!.text(), "hi alice");
    assert.equal(message.attrs.from, "bob@localhost/desk");
    // Terminate with a last presence: the session ends and bob sees alice leave.
    const ended = await bosh.send(
      `<presence xmlns='jabber:client' type='unavailable'/>`,
      " type='terminate'",
    );
    assert.equal(ended.body.attrs.type, "terminate");
    assert.equal(ended.body.attrs.condition, undefined);
    assert.equal(t.server.sessions.userSessions("localhost", "alice").length, 0);
    const after = await bosh.send();
    assert.equal(after.status, 200);
    assert.equal(after.body.attrs.condition, "item-not-found");
  } finally {
    tcp.close();
    await t.stop();
  }
});

Deno.test("a BOSH client logs in with PLAIN; a stanza without xmlns is read as jabber:client", async () => {
  const t = await start();
  try {
    const bosh = new BoshClient(t);
    await bosh.create();
    const plain = btoa("\0alice\0alice-pw");
    const success = await bosh.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${plain}</auth>`);
    assert.equal(success.payload[0]?.name, "success", success.text);
    await bosh.restart();
    assert.equal(await bosh.bind("plain"), "alice@localhost/plain");
    // The iq inherits the body's namespace: the server takes it as a client stanza.
    const pong = await bosh.send(`<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>`);
    const result = pong.payload.find((el) => el.name === "iq" && el.attrs.id === "p1");
    assert.equal(result?.attrs.type, "result", pong.text);
    await bosh.send("", " type='terminate'");
  } finally {
    await t.stop();
  }
});

Deno.test("a repeated rid gets the same answer again; out-of-order rids are taken in order", async () => {
  const t = await start();
  try {
    const bosh = new BoshClient(t);
    await bosh.login("alice", "alice-pw", "web");
    const ping = (id: string) =>
      `<iq xmlns='jabber:client' type='get' id='${id}'><ping xmlns='urn:xmpp:ping'/></iq>`;
    const first = await bosh.send(ping("r1"));
    assert.ok(first.payload.some((el) => el.attrs.id === "r1"), first.text);
    const again = await bosh.send(ping("r1"), "", bosh.rid);
    assert.equal(again.text, first.text);
    // rid+2 arrives before rid+1: it waits, and the pings are answered in rid order.
    const later = bosh.send(ping("o2"), "", bosh.rid + 2);
    const earlier = bosh.send(ping("o1"), "", bosh.rid + 1);
    bosh.rid += 2;
    const answers = [await earlier, await later];
    const ids = answers.flatMap((a) => a.payload.map((el) => el.attrs.id));
    assert.deepEqual(ids, ["o1", "o2"]);
    await bosh.send("", " type='terminate'");
  } finally {
    await t.stop();
  }
});

Deno.test("a rid outside the window or no longer buffered ends the session with item-not-found", async () => {
  const t = await start();
  try {
    const bosh = new BoshClient(t);
    await bosh.create();
    const ahead = await bosh.send("", "", bosh.rid + 5);
    assert.equal(ahead.status, 200);
    assert.equal(ahead.body.attrs.type, "terminate");
    assert.equal(ahead.body.attrs.condition, "item-not-found");
    assert.equal((await bosh.send()).body.attrs.condition, "item-not-found");
    assert.equal(t.server.boshSessions.size, 0);

    const old = new BoshClient(t);
    await old.login("alice", "alice-pw", "web");
    const start = old.rid;
    for (let i = 0; i < 3; i++) {
      await old.send(
        `<iq xmlns='jabber:client' type='get' id='x${i}'><ping xmlns='urn:xmpp:ping'/></iq>`,
      );
    }
    const stale = await old.send("", "", start);
    assert.equal(stale.body.attrs.condition, "item-not-found", stale.text);
  } finally {
    await t.stop();
  }
});

Deno.test("a held request returns empty after wait; two quick empty requests are a policy violation", async () => {
  const t = await start();
  try {
    const bosh = new BoshClient(t);
    const created = await bosh.create({ wait: "1" });
    assert.equal(created.body.attrs.wait, "1");
    const empty = await bosh.send();
    assert.equal(empty.status, 200);
    assert.deepEqual(empty.payload, []);
    assert.equal(empty.body.attrs.type, undefined);
    // One empty request held, another empty one right after it: faster than polling.
    const quick = new BoshClient(t);
    await quick.create();
    const first = quick.send();
    const second = await quick.send();
    assert.equal(second.body.attrs.type, "terminate");
    assert.equal(second.body.attrs.condition, "policy-violation");
    const firstAnswer = await first;
    assert.equal(firstAnswer.status, 200);
    assert.equal(t.server.boshSessions.get(quick.sid), undefined);
    assert.ok(t.server.boshSessions.get(bosh.sid));
  } finally {
    await t.stop();
  }
});

Deno.test("bad BOSH requests: unknown sid, malformed XML, wrong root, missing rid, unknown host", async () => {
  const t = await start();
  try {
    const bosh = new BoshClient(t);
    const unknown = await bosh.post(`<body xmlns='${NS_BOSH}' rid='5' sid='nope'/>`);
    assert.equal(unknown.status, 200);
    assert.equal(unknown.body.attrs.condition, "item-not-found");
    const malformed = await rawRequest(bosh.url, "localhost", {
      method: "POST",
      body: `<body xmlns='${NS_BOSH}' rid='5'><message>`,
    });
    assert.equal(malformed.status, 400);
    assert.equal(parseElement(malformed.body).attrs.condition, "bad-request");
    const wrongRoot = await bosh.post(`<stream xmlns='${NS_BOSH}' rid='5'/>`);
    assert.equal(wrongRoot.status, 400);
    const noRid = await bosh.post(`<body xmlns='${NS_BOSH}' to='localhost'/>`);
    assert.equal(noRid.body.attrs.condition, "bad-request");
    const elsewhere = await bosh.create({ to: "elsewhere.example" });
    assert.equal(elsewhere.body.attrs.type, "terminate");
    assert.equal(elsewhere.body.attrs.condition, "host-unknown");
    const error = elsewhere.payload.find((el) => el.name === "error" && el.ns === NS_STREAM);
    assert.ok(error?.getChild("host-unknown"), elsewhere.text);
    assert.equal(t.server.boshSessions.size, 0);
    // The server is still up: a new session works.
    const fresh = new BoshClient(t);
    assert.equal((await fresh.create()).body.attrs.type, undefined);
    await fresh.send("", " type='terminate'");
  } finally {
    await t.stop();
  }
});

Deno.test("a stanza over c2s_stanza_size_limit ends the BOSH session with a stream error", async () => {
  const t = await start();
  try {
    const bosh = new BoshClient(t);
    await bosh.login("alice", "alice-pw", "web");
    const limit = t.server.config.hostDefault<number>("c2s_stanza_size_limit");
    const big = await bosh.send(
      `<message xmlns='jabber:client' to='bob@localhost'><body>${
        "x".repeat(limit)
      }</body></message>`,
    );
    assert.equal(big.body.attrs.type, "terminate");
    assert.equal(big.body.attrs.condition, "policy-violation");
    assert.ok(big.payload.find((el) => el.name === "error" && el.ns === NS_STREAM), big.text);
    assert.equal(t.server.sessions.userSessions("localhost", "alice").length, 0);
  } finally {
    await t.stop();
  }
});

Deno.test("OPTIONS and GET on /http-bind, and bosh_origins refusing other origins", async () => {
  const t = await start('bosh_origins = ["https://chat.example.org"]');
  try {
    const bosh = new BoshClient(t);
    const preflight = await rawRequest(bosh.url, "localhost", {
      method: "OPTIONS",
      headers: { origin: "https://chat.example.org" },
    });
    assert.equal(preflight.status, 204);
    assert.match(preflight.headers, /access-control-allow-origin: https:\/\/chat\.example\.org/);
    assert.match(preflight.headers, /access-control-allow-methods: .*post/);
    const other = await rawRequest(bosh.url, "localhost", {
      method: "POST",
      body: `<body xmlns='${NS_BOSH}' rid='5' sid='x'/>`,
      headers: { origin: "https://evil.example" },
    });
    assert.equal(other.status, 403);
    const page = await rawRequest(bosh.url, "localhost");
    assert.equal(page.status, 200);
    assert.match(page.body, /BOSH/);
  } finally {
    await t.stop();
  }
});

Deno.test("the server stops while a BOSH request is held, answering it with system-shutdown", async () => {
  const t = await start();
  const bosh = new BoshClient(t);
  await bosh.login("alice", "alice-pw", "web");
  const held = bosh.send();
  // Stop once the server holds the request (it has nothing to say yet).
  while (t.server.boshSessions.get(bosh.sid)?.heldRequests !== 1) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await t.stop();
  const answer = await held;
  assert.equal(answer.body.attrs.type, "terminate");
  assert.equal(answer.body.attrs.condition, "system-shutdown");
});

Deno.test("Stream Management over BOSH: enable, ack, and resume on a new BOSH session", async () => {
  const t = await start();
  const { client: tcp } = await RawClient.login(t.port, "bob", "bob-pw", "desk");
  try {
    const first = new BoshClient(t);
    await first.login("alice", "alice-pw", "web");
    const enabled = await first.send(`<enable xmlns='urn:xmpp:sm:3' resume='true'/>`);
    const enable = enabled.payload.find((el) => el.name === "enabled");
    assert.equal(enable?.ns, "urn:xmpp:sm:3", enabled.text);
    assert.ok(enable.attrs.id);
    const acked = await first.send(`<r xmlns='urn:xmpp:sm:3'/>`);
    assert.ok(acked.payload.find((el) => el.name === "a" && el.attrs.h === "0"), acked.text);
    // The client lost its BOSH session's state: it resumes the stream on a new one.
    const second = new BoshClient(t);
    await second.create();
    const plain = btoa("\0alice\0alice-pw");
    await second.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${plain}</auth>`);
    await second.restart();
    const resumed = await second.send(
      `<resume xmlns='urn:xmpp:sm:3' previd='${enable.attrs.id}' h='0'/>`,
    );
    assert.ok(resumed.payload.find((el) => el.name === "resumed"), resumed.text);
    assert.equal(t.server.boshSessions.get(first.sid), undefined);
    const held = second.send();
    tcp.send(`<message to='alice@localhost/web' type='chat'><body>still there?</body></message>`);
    const answer = await held;
    const message = answer.payload.find((el) => el.name === "message");
    assert.equal(message?.getChild("body")?.text(), "still there?", answer.text);
    await second.send("", " type='terminate'");
  } finally {
    tcp.close();
    await t.stop();
  }
});
