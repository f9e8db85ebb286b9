// RFC 7395 over real sockets: a WebSocket client with the `xmpp` subprotocol logs in with
// SCRAM, binds, talks to a TCP client and enables Stream Management; bad subprotocols and
// malformed messages are refused.

import assert from "node:assert/strict";
import type { Element } from "../../../core/xml/element.ts";
import { parseElement } from "../../../core/xml/parser.ts";
import { RawClient } from "../../helpers/raw_client.ts";
import { ScramClient } from "../../helpers/scram_client.ts";
import { startTestServer, type TestServer } from "../../helpers/test_server.ts";

const NS_FRAMING = "urn:ietf:params:xml:ns:xmpp-framing";
const NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl";

/** A WebSocket client that parses each message as one element. */
class WsClient {
  received: Element[] = [];
  closed = false;
  #taken = 0;
  #waiters: (() => void)[] = [];

  private constructor(readonly socket: WebSocket) {
    socket.addEventListener("message", (event) => {
      this.received.push(parseElement(String(event.data)));
      this.#wake();
    });
    socket.addEventListener("close", () => {
      this.closed = true;
      this.#wake();
    });
  }

  #wake(): void {
    for (const waiter of this.#waiters.splice(0)) waiter();
  }

  /** Opens a WebSocket to the server's /xmpp-websocket with the given subprotocols. */
  static connect(t: TestServer, protocols: string[] = ["xmpp"]): Promise<WsClient> {
    const url = `ws://localhost:${t.server.port("http")}/xmpp-websocket`;
    const socket = new WebSocket(url, protocols);
    return new Promise((resolve, reject) => {
      socket.addEventListener("open", () => resolve(new WsClient(socket)), { once: true });
      socket.addEventListener("error", () => reject(new Error("WebSocket refused")), {
        once: true,
      });
    });
  }

  send(text: string): void {
    this.socket.send(text);
  }

  /** The next element not yet taken, waiting for it (a test that hangs fails by its timeout). */
  async next(match: (el: Element) => boolean = () => true): Promise<Element> {
    while (true) {
      for (let i = this.#taken; i < this.received.length; i++) {
        if (match(this.received[i])) {
          this.#taken = i + 1;
          return this.received[i];
        }
      }
      if (this.closed) throw new Error("Closed before the expected element arrived");
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  async waitClosed(): Promise<void> {
    while (!this.closed) await new Promise<void>((resolve) => this.#waiters.push(resolve));
  }

  /** Sends `<open/>` and returns the features that follow the server's `<open/>`. */
  async open(): Promise<Element> {
    this.send(`<open xmlns='${NS_FRAMING}' to='localhost' version='1.0'/>`);
    await this.next((el) => el.name === "open" && el.ns === NS_FRAMING);
    return await this.next((el) => el.name === "features");
  }

  /** SCRAM-SHA-256 login, stream restart and bind; returns the bound JID. */
  async login(user: string, password: string, resource: string): Promise<string> {
    const features = await this.open();
    const mechanisms = features.getChild("mechanisms", NS_SASL)!.getChildren("mechanism")
      .map((m) => m.text());
    assert.ok(mechanisms.includes("SCRAM-SHA-256"), `offered: ${mechanisms}`);
    const scram = new ScramClient({ hash: "SHA-256", username: user, password });
    const b64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes));
    this.send(`<auth xmlns='${NS_SASL}' mechanism='SCRAM-SHA-256'>${b64(scram.first())}</auth>`);
    const challenge = await this.next((el) => el.name === "challenge");
    const final = await scram.final(atob(challenge.text()));
    this.send(`<response xmlns='${NS_SASL}'>${b64(final)}</response>`);
    const success = await this.next((el) => el.name === "success" || el.name === "failure");
    assert.equal(success.name, "success");
    assert.ok(scram.verify(atob(success.text())));
    const bound = await this.open();
    assert.ok(bound.getChild("bind", "urn:ietf:params:xml:ns:xmpp-bind"));
    this.send(
      `<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>` +
        `<resource>${resource}</resource></bind></iq>`,
    );
    const result = await this.next((el) => el.name === "iq" && el.attrs.id === "b1");
    assert.equal(result.attrs.type, "result");
    return result.getChild("bind")!.getChild("jid")!.text();
  }
}

/** Sends a WebSocket handshake by hand and returns the start of the server's answer. */
async function rawHandshake(t: TestServer, headers: Record<string, string>): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: t.server.port("http") });
  try {
    const extra = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join("");
    await conn.write(
      new TextEncoder().encode(
        "GET /xmpp-websocket HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n" +
          "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n" +
          `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${extra}\r\n`,
      ),
    );
    const buffer = new Uint8Array(4096);
    const n = await conn.read(buffer);
    return new TextDecoder().decode(buffer.subarray(0, n ?? 0));
  } finally {
    conn.close();
  }
}

function start(): Promise<TestServer> {
  return startTestServer({
    users: { alice: "alice-pw", bob: "bob-pw" },
    globalToml: 'http_interfaces = ["127.0.0.1:0"]',
  });
}

Deno.test("a WebSocket client logs in with SCRAM, binds and exchanges messages with a TCP client", async () => {
  const t = await start();
  const ws = await WsClient.connect(t);
  const { client: tcp } = await RawClient.login(t.port, "bob", "bob-pw", "desk");
  try {
    assert.equal(ws.socket.protocol, "xmpp");
    const jid = await ws.login("alice", "alice-pw", "web");
    assert.equal(jid, "alice@localhost/web");
    ws.send(
      `<message xmlns='jabber:client' to='bob@localhost/desk' type='chat'><body>hi bob</body></message>`,
    );
    const atBob = await tcp.next((el) => el.name === "message");
    assert.equal(atBob.getChild("body")!.text(), "hi bob");
    assert.equal(atBob.attrs.from, "alice@localhost/web");
    tcp.send(`<message to='alice@localhost/web' type='chat'><body>hi alice</body></message>`);
    const atAlice = await ws.next((el) => el.name === "message");
    assert.equal(atAlice.ns, "jabber:client");
    assert.equal(atAlice.getChild("body")!.text(), "hi alice");
    ws.send(`<close xmlns='${NS_FRAMING}'/>`);
    await ws.next((el) => el.name === "close" && el.ns === NS_FRAMING);
    await ws.waitClosed();
  } finally {
    tcp.close();
    ws.socket.close();
    await t.stop();
  }
});

Deno.test("Stream Management can be enabled over a WebSocket", async () => {
  const t = await start();
  const ws = await WsClient.connect(t);
  try {
    await ws.login("alice", "alice-pw", "web");
    ws.send(`<enable xmlns='urn:xmpp:sm:3' resume='true'/>`);
    const enabled = await ws.next((el) => el.name === "enabled" || el.name === "failed");
    assert.equal(enabled.name, "enabled");
    assert.equal(enabled.ns, "urn:xmpp:sm:3");
    ws.send(`<r xmlns='urn:xmpp:sm:3'/>`);
    const ack = await ws.next((el) => el.name === "a");
    assert.equal(ack.attrs.h, "0");
  } finally {
    ws.socket.close();
    await t.stop();
  }
});

Deno.test("a WebSocket without the xmpp subprotocol is refused", async () => {
  const t = await start();
  try {
    // The handshake by hand, to see the server's answer rather than the client's verdict.
    const answer = await rawHandshake(t, { "Sec-WebSocket-Protocol": "chat" });
    assert.match(answer, /^HTTP\/1\.1 400 /);
    assert.match(answer, /subprotocol must be 'xmpp'/);
    await assert.rejects(WsClient.connect(t, ["chat"]), /refused/);
  } finally {
    await t.stop();
  }
});

Deno.test("a malformed message gets a stream error and the stream closes", async () => {
  const t = await start();
  const ws = await WsClient.connect(t);
  try {
    await ws.open();
    ws.send("<message xmlns='jabber:client'><body>unclosed</message>");
    const error = await ws.next((el) => el.name === "error");
    assert.equal(error.ns, "http://etherx.jabber.org/streams");
    assert.ok(error.getChild("not-well-formed", "urn:ietf:params:xml:ns:xmpp-streams"));
    await ws.next((el) => el.name === "close" && el.ns === NS_FRAMING);
    await ws.waitClosed();
  } finally {
    ws.socket.close();
    await t.stop();
  }
});

Deno.test("a stanza before <open/> closes the stream with bad-format", async () => {
  const t = await start();
  const ws = await WsClient.connect(t);
  try {
    ws.send("<message xmlns='jabber:client'><body>early</body></message>");
    const error = await ws.next((el) => el.name === "error");
    assert.ok(error.getChild("bad-format", "urn:ietf:params:xml:ns:xmpp-streams"));
    await ws.waitClosed();
  } finally {
    ws.socket.close();
    await t.stop();
  }
});

Deno.test("websocket_origins refuses other origins and accepts listed ones", async () => {
  const t = await startTestServer({
    globalToml: 'http_interfaces = ["127.0.0.1:0"]\nwebsocket_origins = ["https://chat.example"]',
  });
  try {
    const refused = await rawHandshake(t, {
      "Sec-WebSocket-Protocol": "xmpp",
      Origin: "https://evil.example",
    });
    assert.match(refused, /^HTTP\/1\.1 403 /);
    const accepted = await rawHandshake(t, {
      "Sec-WebSocket-Protocol": "xmpp",
      Origin: "https://chat.example",
    });
    assert.match(accepted, /^HTTP\/1\.1 101 /);
    assert.match(accepted, /sec-websocket-protocol: xmpp/i);
  } finally {
    await t.stop();
  }
});

Deno.test("the server stops while a WebSocket client is connected, closing its stream", async () => {
  const t = await start();
  const ws = await WsClient.connect(t);
  await ws.login("alice", "alice-pw", "web");
  await t.stop();
  const error = await ws.next((el) => el.name === "error");
  assert.ok(error.getChild("system-shutdown", "urn:ietf:params:xml:ns:xmpp-streams"));
  await ws.waitClosed();
});

Deno.test("a WebSocket message over c2s_stanza_size_limit closes the stream with policy-violation", async () => {
  const t = await startTestServer({
    globalToml: 'http_interfaces = ["127.0.0.1:0"]',
    hostToml: "c2s_stanza_size_limit = 10000",
  });
  const ws = await WsClient.connect(t);
  try {
    await ws.open();
    ws.send(`<message xmlns='jabber:client'><body>${"x".repeat(20000)}</body></message>`);
    const error = await ws.next((el) => el.name === "error");
    assert.ok(error.getChild("policy-violation", "urn:ietf:params:xml:ns:xmpp-streams"));
    await ws.waitClosed();
  } finally {
    ws.socket.close();
    await t.stop();
  }
});

Deno.test("the WebSocket stanza size limit counts UTF-8 bytes, not characters", async () => {
  const t = await startTestServer({
    users: { alice: "alice-pw" },
    globalToml: 'http_interfaces = ["127.0.0.1:0"]',
    hostToml: "c2s_stanza_size_limit = 10000",
  });
  const ws = await WsClient.connect(t);
  try {
    await ws.login("alice", "alice-pw", "web");
    // 4,000 two-byte characters (8,000 bytes) fit; the ping's answer shows the stream is alive
    ws.send(
      `<iq xmlns='jabber:client' type='get' id='fits'><ping xmlns='urn:xmpp:ping'/><x xmlns='urn:x'>${
        "é".repeat(4000)
      }</x></iq>`,
    );
    await ws.next((el) => el.name === "iq" && el.attrs.id === "fits");
    // 6,000 three-byte characters are fewer characters than the limit but 18,000 bytes
    ws.send(`<message xmlns='jabber:client'><body>${"€".repeat(6000)}</body></message>`);
    const error = await ws.next((el) => el.name === "error");
    assert.ok(error.getChild("policy-violation", "urn:ietf:params:xml:ns:xmpp-streams"));
    await ws.waitClosed();
  } finally {
    ws.socket.close();
    await t.stop();
  }
});

Deno.test("WebSocket input over limits_c2s_rate waits and is handled in order", async () => {
  const t = await startTestServer({
    users: { alice: "alice-pw" },
    globalToml: 'http_interfaces = ["127.0.0.1:0"]\nlimits_c2s_rate = "2kb/s"\n' +
      'limits_c2s_burst = "2kb"',
  });
  const ws = await WsClient.connect(t);
  try {
    await ws.login("alice", "alice-pw", "web");
    const started = performance.now();
    // Ten pings of about 500 bytes: 2 kB at once, the other 3 kB at 2 kB/s.
    for (let i = 0; i < 10; i++) {
      ws.send(
        `<iq xmlns='jabber:client' type='get' id='r${i}'><ping xmlns='urn:xmpp:ping'/>` +
          `<x xmlns='urn:x'>${"p".repeat(420)}</x></iq>`,
      );
    }
    const ids: string[] = [];
    while (ids.length < 10) ids.push((await ws.next((el) => el.name === "iq")).attrs.id);
    const elapsed = performance.now() - started;
    console.log(
      `10 WebSocket pings of ~500 bytes at 2 kB/s (2 kB burst): ${elapsed.toFixed(0)} ms`,
    );
    assert.deepEqual(ids, Array.from({ length: 10 }, (_, i) => `r${i}`));
    // 3 kB past the burst at 2 kB/s cannot be through in less than 1.5 s.
    assert.ok(elapsed >= 1000, `answered after ${elapsed} ms`);
  } finally {
    ws.socket.close();
    await t.stop();
  }
});

Deno.test("a WebSocket flooding far past its burst is closed with policy-violation", async () => {
  const t = await startTestServer({
    users: { alice: "alice-pw" },
    globalToml: 'http_interfaces = ["127.0.0.1:0"]\nlimits_c2s_rate = "2kb/s"\n' +
      'limits_c2s_burst = "2kb"',
    hostToml: "c2s_stanza_size_limit = 10000",
  });
  const ws = await WsClient.connect(t);
  try {
    await ws.login("alice", "alice-pw", "web");
    // 60 kB at once: more than the burst and two stanzas of the size limit may wait.
    for (let i = 0; i < 60; i++) {
      ws.send(`<message xmlns='jabber:client'><body>${"f".repeat(1000)}</body></message>`);
    }
    const error = await ws.next((el) => el.name === "error");
    assert.ok(error.getChild("policy-violation", "urn:ietf:params:xml:ns:xmpp-streams"));
    assert.match(error.getChildText("text") ?? "", /Sending faster than the server reads/);
    await ws.waitClosed();
  } finally {
    ws.socket.close();
    await t.stop();
  }
});
