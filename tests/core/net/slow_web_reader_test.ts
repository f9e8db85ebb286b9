// A WebSocket client that stops reading, or a BOSH client that stops sending requests, while
// another client floods it with messages is cut off once its unsent output passes
// c2s_max_send_buffer, and the messages that never reached it wait in offline storage (or in
// stream management's queue) for its next login: none lost, none delivered twice. Over real
// sockets; the WebSocket client is a raw one written here, since Deno's always reads.

import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import type { Element } from "../../../core/xml/element.ts";
import { DEFAULT_XML_LIMITS, parseElement } from "../../../core/xml/parser.ts";
import { rawRequest } from "../../helpers/http_request.ts";
import { type RawClient, roundTrip } from "../../helpers/raw_client.ts";
import {
  BATCH,
  FAST_FLOOD,
  floodUntilCut,
  messageIds,
  PLAIN_HOST,
  plainLogin,
  sendFlood,
  storeOffline,
} from "../../helpers/slow_reader.ts";
import { startTestServer, testConfigText, type TestServer } from "../../helpers/test_server.ts";
import { parseConfigText } from "../../../core/config.ts";

const NS_FRAMING = "urn:ietf:params:xml:ns:xmpp-framing";
const NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl";
const NS_BOSH = "http://jabber.org/protocol/httpbind";
const NS_XBOSH = "urn:xmpp:xbosh";
const NS_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams";
/** The flood's configuration (helpers/slow_reader.ts), with HTTP. */
const GLOBAL = `${FAST_FLOOD}\nhttp_interfaces = ["127.0.0.1:0"]`;
const HOST = `${PLAIN_HOST}\nsmacks_max_queue_size = 100000`;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One masked client text frame (RFC 6455 §5.2). */
function clientFrame(text: string, opcode = 1): Uint8Array {
  const payload = encoder.encode(text);
  const len = payload.length;
  const head = len < 126
    ? [0x80 | opcode, 0x80 | len]
    : len < 65536
    ? [0x80 | opcode, 0x80 | 126, len >> 8, len & 255]
    : [
      0x80 | opcode,
      0x80 | 127,
      0,
      0,
      0,
      0,
      len >>> 24,
      (len >> 16) & 255,
      (len >> 8) & 255,
      len & 255,
    ];
  const mask = crypto.getRandomValues(new Uint8Array(4));
  const out = new Uint8Array(head.length + 4 + len);
  out.set(head);
  out.set(mask, head.length);
  for (let i = 0; i < len; i++) out[head.length + 4 + i] = payload[i] ^ mask[i & 3];
  return out;
}

/** An RFC 7395 client over a raw TCP socket, so that the test can stop it reading. */
class RawWsClient {
  received: Element[] = [];
  closed = false;
  #buffer = new Uint8Array(0);
  #waiters: (() => void)[] = [];

  private constructor(readonly socket: Socket) {}

  static async connect(t: TestServer): Promise<RawWsClient> {
    const socket = connect(t.server.port("http"), "127.0.0.1");
    await new Promise((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    socket.write(
      "GET /xmpp-websocket HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n" +
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: xmpp\r\n\r\n",
    );
    const client = new RawWsClient(socket);
    let head = "";
    await new Promise<void>((resolve, reject) => {
      const onData = (chunk: Uint8Array) => {
        head += decoder.decode(chunk);
        const end = head.indexOf("\r\n\r\n");
        if (end < 0) return;
        socket.off("data", onData);
        if (!head.startsWith("HTTP/1.1 101")) reject(new Error(`no upgrade: ${head}`));
        client.#feed(encoder.encode(head.slice(end + 4)));
        socket.on("data", (data: Uint8Array) => client.#feed(data));
        resolve();
      };
      socket.on("data", onData);
    });
    socket.on("close", () => {
      client.closed = true;
      client.#wake();
    });
    socket.on("error", () => {});
    return client;
  }

  #wake(): void {
    for (const waiter of this.#waiters.splice(0)) waiter();
  }

  #feed(chunk: Uint8Array): void {
    const joined = new Uint8Array(this.#buffer.length + chunk.length);
    joined.set(this.#buffer);
    joined.set(chunk, this.#buffer.length);
    let at = 0;
    while (joined.length - at >= 2) {
      const opcode = joined[at] & 15;
      let len = joined[at + 1] & 127;
      let start = at + 2;
      if (len === 126) {
        if (joined.length - at < 4) break;
        len = (joined[at + 2] << 8) | joined[at + 3];
        start = at + 4;
      } else if (len === 127) {
        if (joined.length - at < 10) break;
        len = Number(new DataView(joined.buffer, at + 2, 8).getBigUint64(0));
        start = at + 10;
      }
      if (joined.length < start + len) break;
      const payload = joined.subarray(start, start + len);
      at = start + len;
      if (opcode === 1) this.received.push(parseElement(decoder.decode(payload)));
      else if (opcode === 9) this.socket.write(clientFrame(decoder.decode(payload), 10));
      else if (opcode === 8) {
        this.socket.write(clientFrame("", 8));
        this.socket.end();
        this.closed = true;
      }
    }
    this.#buffer = joined.slice(at);
    this.#wake();
  }

  send(text: string): void {
    this.socket.write(clientFrame(text));
  }

  /** Waits until `check` gives a value (a test that hangs fails by its timeout). */
  async waitFor<T>(check: () => T | undefined): Promise<T> {
    while (true) {
      const value = check();
      if (value !== undefined) return value;
      if (this.closed) throw new Error("the WebSocket closed");
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  /** The first element received from `from` on that matches. */
  async next(match: (el: Element) => boolean, from = 0): Promise<Element> {
    return await this.waitFor(() => this.received.slice(from).find(match));
  }

  async waitClosed(): Promise<void> {
    while (!this.closed) await new Promise<void>((resolve) => this.#waiters.push(resolve));
  }

  /** Opens the stream, logs in with PLAIN, binds, enables stream management on demand. */
  async login(user: string, resource: string, streamManagement: boolean): Promise<void> {
    await this.bind(user, resource, streamManagement);
    this.send("<presence xmlns='jabber:client'/>");
    this.send(
      "<iq xmlns='jabber:client' type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
    );
    await this.next((el) => el.attrs.id === "p1");
  }

  /** {@link login} up to the bound resource: no presence sent yet. */
  async bind(user: string, resource: string, streamManagement: boolean): Promise<void> {
    const open = `<open xmlns='${NS_FRAMING}' to='localhost' version='1.0'/>`;
    this.send(open);
    await this.next((el) => el.name === "features");
    this.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${btoa(`\0${user}\0pw`)}</auth>`);
    await this.next((el) => el.name === "success");
    const mark = this.received.length;
    this.send(open);
    await this.next((el) => el.name === "features", mark);
    this.send(
      `<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>` +
        `<resource>${resource}</resource></bind></iq>`,
    );
    await this.next((el) => el.attrs.id === "b1");
    if (streamManagement) {
      this.send("<enable xmlns='urn:xmpp:sm:3'/>");
      await this.next((el) => el.name === "enabled");
    }
  }
}

/**
 * Logs slow in again over TCP and waits for `expected` flood messages; returns their ids. The
 * send limit is raised first: megabytes come back at once, and this test's client, parsing
 * them on a loaded machine, must not pass for one that stopped reading.
 */
async function loginAgain(t: TestServer, expected: number, clients: RawClient[]) {
  const text = testConfigText(t.dataDir, {
    globalToml: GLOBAL.replace("65536", "268435456"),
    hostToml: HOST,
  });
  await t.server.reload(parseConfigText(text, t.config.file).config!);
  const again = await plainLogin(t, "slow", "laptop");
  clients.push(again);
  await again.waitUntil(
    () => messageIds(again.received).length >= expected ? true : undefined,
    20000,
    `${expected} offline messages`,
  );
  await roundTrip(again);
  return messageIds(again.received);
}

for (const streamManagement of [false, true]) {
  const name = streamManagement ? "with stream management" : "without stream management";
  Deno.test(`a WebSocket client that stops reading is cut off at its send buffer limit (${name})`, async () => {
    const t = await startTestServer({
      users: { slow: "pw", flooder: "pw" },
      globalToml: GLOBAL,
      hostToml: HOST,
    });
    const clients: RawClient[] = [];
    let slow: RawWsClient | undefined;
    try {
      slow = await RawWsClient.connect(t);
      await slow.login("slow", "phone", streamManagement);
      const flooder = await plainLogin(t, "flooder", "desk");
      clients.push(flooder);
      slow.socket.pause(); // stops reading: the kernel buffers fill, then Deno's, then ours

      const sent = await floodUntilCut(t, flooder);
      slow.socket.resume();
      await slow.waitClosed();
      const error = slow.received.find((el) => el.name === "error");
      assert.ok(
        error?.getChild("resource-constraint", NS_STREAM_ERRORS),
        "not resource-constraint",
      );
      const onOldStream = messageIds(slow.received);
      assert.ok(onOldStream.length < sent, "every message reached the connection: nothing queued");

      if (streamManagement) {
        // Nothing was acknowledged: stream management hands every message back, once.
        const offline = await loginAgain(t, sent, clients);
        assert.equal(offline.length, sent, "a message came back twice, or was lost");
        assert.equal(new Set(offline).size, sent);
      } else {
        const offline = await loginAgain(t, sent - onOldStream.length, clients);
        const all = [...onOldStream, ...offline];
        assert.equal(new Set(all).size, all.length, "a message was delivered twice");
        assert.equal(all.length, sent, "a message was lost");
      }
      console.log(`WebSocket (${name}): cut after ${sent}, ${onOldStream.length} reached it`);
    } finally {
      slow?.socket.destroy();
      for (const client of clients) client.socket.destroy();
      await t.stop();
    }
  });
}

Deno.test("a WebSocket client that reads gets a flood far over its send buffer limit whole", async () => {
  const t = await startTestServer({
    users: { slow: "pw", flooder: "pw" },
    globalToml: GLOBAL,
    hostToml: HOST,
  });
  const clients: RawClient[] = [];
  let reader: RawWsClient | undefined;
  try {
    reader = await RawWsClient.connect(t);
    await reader.login("slow", "phone", false);
    const flooder = await plainLogin(t, "flooder", "desk");
    clients.push(flooder);
    // Each batch of 400 KB is routed in one event-loop turn: Deno's bufferedAmount counts it
    // all at once, though the kernel takes it, which must not pass for a peer that stops.
    const sent = 800;
    for (let from = 0; from < sent; from += BATCH) {
      sendFlood(flooder, from, BATCH);
      await roundTrip(flooder);
    }
    const client = reader;
    await client.waitFor(() => messageIds(client.received).length >= sent ? true : undefined);
    assert.equal(t.server.metrics.counter("c2s.slow_readers_cut").value, 0);
    assert.equal(new Set(messageIds(client.received)).size, sent);
  } finally {
    reader?.socket.destroy();
    for (const client of clients) client.socket.destroy();
    await t.stop();
  }
});

Deno.test("a WebSocket client reading a large offline backlog at its own pace is not cut off when more arrives", async () => {
  const t = await startTestServer({
    users: { slow: "pw", flooder: "pw" },
    globalToml: GLOBAL,
    hostToml: HOST,
  });
  const clients: RawClient[] = [];
  let slow: RawWsClient | undefined;
  try {
    const flooder = await plainLogin(t, "flooder", "desk");
    clients.push(flooder);
    // 8 MB waits offline: more than the socket buffers hold, far more than twice the limit.
    const stored = 2000;
    await storeOffline(flooder, stored);
    slow = await RawWsClient.connect(t);
    await slow.bind("slow", "phone", false);
    // The backlog comes with the first presence while the client is busy elsewhere; another
    // message arrives meanwhile.
    slow.socket.pause();
    slow.send("<presence xmlns='jabber:client'/>");
    await new Promise((resolve) => setTimeout(resolve, 300));
    flooder.send(
      `<message to='slow@localhost/phone' type='chat' id='flood-${stored}'><body>late</body></message>`,
    );
    await roundTrip(flooder);
    await new Promise((resolve) => setTimeout(resolve, 100));
    slow.socket.resume();
    const client = slow;
    await client.waitFor(() => messageIds(client.received).length > stored ? true : undefined);
    assert.equal(t.server.metrics.counter("c2s.slow_readers_cut").value, 0, "cut off");
    assert.equal(new Set(messageIds(client.received)).size, stored + 1);
  } finally {
    slow?.socket.destroy();
    for (const client of clients) client.socket.destroy();
    await t.stop();
  }
});

Deno.test("a BOSH client that stops sending requests under a flood is ended and its messages wait offline", async () => {
  const t = await startTestServer({
    users: { slow: "pw", flooder: "pw" },
    globalToml: GLOBAL,
    hostToml: HOST,
  });
  const clients: RawClient[] = [];
  try {
    const url = `http://127.0.0.1:${t.server.port("http")}/http-bind`;
    let rid = 5000;
    let sid = "";
    const post = async (content: string, attrs = "") => {
      const res = await rawRequest(url, "localhost", {
        method: "POST",
        body: `<body xmlns='${NS_BOSH}' rid='${rid++}'${sid ? ` sid='${sid}'` : ""}${attrs}>` +
          `${content}</body>`,
        headers: { "content-type": "text/xml; charset=utf-8" },
      });
      return parseElement(res.body, { ...DEFAULT_XML_LIMITS, maxStanzaBytes: 1 << 26 });
    };
    const created = await post(
      "",
      ` xmlns:xmpp='${NS_XBOSH}' to='localhost' ver='1.6' wait='60' hold='1' xmpp:version='1.0'`,
    );
    sid = created.attrs.sid!;
    const success = await post(
      `<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${btoa("\0slow\0pw")}</auth>`,
    );
    assert.ok(success.getChild("success", NS_SASL), "PLAIN login failed");
    await post("", ` xmlns:xmpp='${NS_XBOSH}' to='localhost' xmpp:restart='true'`);
    await post(
      `<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>` +
        `<resource>phone</resource></bind></iq>`,
    );
    await post("<presence xmlns='jabber:client'/>");
    // The client's last request: held, answered with the first messages, and none after it.
    const last = post("");
    const flooder = await plainLogin(t, "flooder", "desk");
    clients.push(flooder);

    const sent = await floodUntilCut(t, flooder);
    const onOldSession = messageIds(
      (await last).children.filter((c): c is Element => typeof c !== "string"),
    );
    // The next request learns the session is over: XEP-0124 has no resource-constraint, so
    // the stream error rides in a remote-stream-error terminate body (XEP-0206 §7).
    const end = await post("");
    assert.equal(end.attrs.type, "terminate");
    assert.equal(end.attrs.condition, "remote-stream-error");
    const error = end.getChild("error", "http://etherx.jabber.org/streams");
    assert.ok(error?.getChild("resource-constraint", NS_STREAM_ERRORS), end.toString());
    assert.ok(onOldSession.length < sent, "every message was answered: nothing queued");

    const offline = await loginAgain(t, sent - onOldSession.length, clients);
    const all = [...onOldSession, ...offline];
    assert.equal(new Set(all).size, all.length, "a message was delivered twice");
    assert.equal(all.length, sent, "a message was lost");
    console.log(`BOSH: cut after ${sent}, ${onOldSession.length} answered`);
  } finally {
    for (const client of clients) client.socket.destroy();
    await t.stop();
  }
});
