// BoshTransport on its own, with a stand-in stream: the inactivity timeout ends the session,
// legacy clients get HTTP status codes for binding errors, and a polling session (hold=0)
// answers each request at once and refuses empty polls faster than `polling`.

import assert from "node:assert/strict";
import { BoshTransport, type BoshTransportOptions } from "../../../core/net/bosh_transport.ts";
import type { StreamReceiver } from "../../../core/net/transport.ts";
import { Element, NS_CLIENT } from "../../../core/xml/element.ts";
import { parseElement } from "../../../core/xml/parser.ts";
import { NS_STREAM } from "../../../core/xml/stanza.ts";

const NS_BOSH = "http://jabber.org/protocol/httpbind";

/** A stream that opens with empty features, echoes elements back and records what it saw. */
class EchoStream implements StreamReceiver {
  transport!: BoshTransport;
  received: Element[] = [];
  closedByPeer = false;
  gone: Promise<void>;
  #gone!: () => void;

  constructor() {
    this.gone = new Promise((resolve) => this.#gone = resolve);
  }

  streamOpen(): void {
    this.transport.openStream({ ns: NS_CLIENT, id: "s1", from: "localhost", version: true });
    this.transport.sendStreamLevel(new Element("features", { xmlns: NS_STREAM }));
  }
  element(el: Element): void {
    this.received.push(el);
    this.transport.send(el);
  }
  streamClose(): void {
    this.closedByPeer = true;
    this.transport.close();
  }
  inputError(): void {
    this.transport.close("bad-format");
  }
  internalError(): void {}
  transportClosed(): void {
    this.#gone();
  }
}

function open(options: Partial<BoshTransportOptions> = {}): {
  transport: BoshTransport;
  stream: EchoStream;
} {
  const stream = new EchoStream();
  const transport = new BoshTransport(stream, 100, {
    sid: "sid1",
    ip: "127.0.0.1",
    secure: true,
    wait: 60,
    hold: 1,
    inactivity: 60,
    polling: 5,
    legacy: false,
    ...options,
  });
  stream.transport = transport;
  return { transport, stream };
}

function body(rid: number, content = "", attrs = ""): Element {
  return parseElement(`<body xmlns='${NS_BOSH}' rid='${rid}' sid='sid1'${attrs}>${content}</body>`);
}

const creation = parseElement(
  `<body xmlns='${NS_BOSH}' xmlns:xmpp='urn:xmpp:xbosh' rid='100' to='localhost' ver='1.6' ` +
    `wait='60' hold='1' xmpp:version='1.0'/>`,
);

Deno.test("a BOSH session with no request for `inactivity` seconds is gone", async () => {
  let ended = false;
  const { transport, stream } = open({ inactivity: 0.05, onEnd: () => ended = true });
  const created = parseElement((await transport.create(creation)).body);
  assert.equal(created.attrs.sid, "sid1");
  assert.equal(created.attrs.authid, "s1");
  assert.ok(created.getChild("features", NS_STREAM));
  await stream.gone;
  assert.ok(ended);
  assert.ok(transport.gone);
  const late = await transport.request(body(101));
  assert.equal(parseElement(late.body).attrs.condition, "item-not-found");
});

Deno.test("a legacy BOSH client (no ver) gets HTTP 404 for a rid outside the window", async () => {
  const { transport, stream } = open({ legacy: true });
  await transport.create(creation);
  const response = await transport.request(body(150));
  assert.equal(response.status, 404);
  assert.equal(parseElement(response.body).attrs.condition, "item-not-found");
  await stream.gone;
});

Deno.test("a polling session answers each request at once and refuses too-fast empty polls", async () => {
  const { transport, stream } = open({ hold: 0, wait: 0 });
  const created = parseElement((await transport.create(creation)).body);
  assert.equal(created.attrs.hold, "0");
  assert.equal(created.attrs.requests, "1");
  const echoed = parseElement(
    (await transport.request(body(101, "<message xmlns='jabber:client'/>"))).body,
  );
  assert.equal(echoed.getChild("message", NS_CLIENT)?.name, "message");
  const firstPoll = parseElement((await transport.request(body(102))).body);
  assert.equal(firstPoll.attrs.type, undefined);
  const secondPoll = parseElement((await transport.request(body(103))).body);
  assert.equal(secondPoll.attrs.type, "terminate");
  assert.equal(secondPoll.attrs.condition, "policy-violation");
  await stream.gone;
});

Deno.test("a client terminate with payload reaches the stream, then the session ends", async () => {
  const { transport, stream } = open();
  await transport.create(creation);
  const held = transport.request(body(101));
  const response = await transport.request(
    body(102, "<presence xmlns='jabber:client' type='unavailable'/>", " type='terminate'"),
  );
  assert.equal(parseElement(response.body).attrs.type, "terminate");
  // The request that was held goes back first (empty), in rid order.
  assert.equal(parseElement((await held).body).attrs.type, undefined);
  assert.equal(stream.received[0]?.attrs.type, "unavailable");
  assert.ok(stream.closedByPeer);
  await stream.gone;
});
