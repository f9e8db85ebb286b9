// The TCP transport on its own, over a real socket: stream events reach the receiver, output is
// written in the stream's namespace, closing writes the closing tags, and a receiver that throws
// while handling input ends the stream with internal-server-error instead of the server, and a
// closed stream parses no more of its input.

import assert from "node:assert/strict";
import net from "node:net";
import { SocketTransport } from "../../../core/net/socket_transport.ts";
import type { StreamReceiver } from "../../../core/net/transport.ts";
import { Element, NS_CLIENT } from "../../../core/xml/element.ts";

const HEADER = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' " +
  "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

interface Harness {
  transport: SocketTransport;
  peer: net.Socket;
  /** Everything the peer received so far. */
  received(): string;
  events: string[];
  close(): Promise<void>;
}

/** A listening transport with `receiver` and a connected peer socket. */
async function connected(receiver: (t: () => SocketTransport) => StreamReceiver): Promise<Harness> {
  let transport: SocketTransport | undefined;
  const events: string[] = [];
  const server = net.createServer();
  const accepted = new Promise<void>((resolve) => {
    server.once("connection", (socket: net.Socket) => {
      transport = new SocketTransport(socket, receiver(() => transport!), {
        namespace: NS_CLIENT,
      });
      transport.start(undefined).then(() => resolve());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  const peer = net.connect(port, "127.0.0.1");
  let text = "";
  peer.on("data", (chunk) => text += chunk.toString());
  peer.on("error", () => {});
  await accepted;
  return {
    transport: transport!,
    peer,
    received: () => text,
    events,
    async close() {
      peer.destroy();
      transport!.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 300 && !check(); i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.ok(check(), `timed out waiting for ${what}`);
}

function recording(events: string[], transport: () => SocketTransport): StreamReceiver {
  return {
    streamOpen(header, ns) {
      events.push(`open ${header.attrs.to} ${ns}`);
      transport().openStream({ ns: NS_CLIENT, id: "s1", from: "localhost", version: true });
    },
    element(el) {
      events.push(`element ${el.name}`);
      transport().send(new Element("message", { to: "a@localhost" }).c("body").t("hi").up());
    },
    streamClose() {
      events.push("close");
      transport().close();
    },
    inputError(error) {
      events.push(`input ${error.condition}`);
    },
    internalError() {
      events.push("internal");
    },
    transportClosed() {
      events.push("gone");
    },
  };
}

Deno.test("stream events reach the receiver and output is written in the stream's namespace", async () => {
  const events: string[] = [];
  const h = await connected((t) => recording(events, t));
  try {
    h.peer.write(`${HEADER}<presence/>`);
    await until(() => h.received().includes("</message>"), "the answer");
    assert.deepEqual(events, [`open localhost ${NS_CLIENT}`, "element presence"]);
    assert.match(h.received(), /<stream:stream xmlns='jabber:client'/);
    assert.match(h.received(), /<message to='a@localhost'><body>hi<\/body><\/message>$/);
    h.peer.write("</stream:stream>");
    await until(() => h.received().endsWith("</stream:stream>"), "the closing tag");
    await until(() => events.includes("gone"), "the connection to go");
    assert.deepEqual(events.slice(2), ["close", "gone"]);
  } finally {
    await h.close();
  }
});

Deno.test("a receiver that throws on input ends the stream with internal-server-error", async () => {
  const events: string[] = [];
  const h = await connected((t) => ({
    ...recording(events, t),
    element() {
      throw new Error("a bug");
    },
    internalError() {
      events.push("internal");
      t().close("internal-server-error");
    },
  }));
  try {
    h.peer.write(`${HEADER}<presence/>`);
    await until(() => h.received().endsWith("</stream:stream>"), "the stream to end");
    assert.ok(events.includes("internal"));
    assert.match(
      h.received(),
      /<stream:error><internal-server-error xmlns='urn:ietf:params:xml:ns:xmpp-streams'\/><\/stream:error><\/stream:stream>$/,
    );
  } finally {
    await h.close();
  }
});

Deno.test("input that breaks the XML rules reaches the receiver as an input error", async () => {
  const events: string[] = [];
  const h = await connected((t) => recording(events, t));
  try {
    h.peer.write(`${HEADER}<!-- a comment -->`);
    await until(() => events.some((e) => e.startsWith("input")), "the input error");
    assert.ok(events.includes("input restricted-xml"), events.join(", "));
  } finally {
    await h.close();
  }
});

Deno.test("once the stream is closed, the rest of the chunk being parsed is not handled", async () => {
  const events: string[] = [];
  const h = await connected((t) => ({
    ...recording(events, t),
    element(el) {
      events.push(`element ${el.name}`);
      t().close("not-authorized", "Authenticate first");
    },
  }));
  try {
    h.peer.write(`${HEADER}${"<presence/>".repeat(2000)}`);
    await until(() => h.received().endsWith("</stream:stream>"), "the stream to end");
    h.peer.write("<presence/><presence/>");
    await until(() => events.includes("gone"), "the connection to go");
    assert.deepEqual(events.filter((e) => e.startsWith("element")), ["element presence"]);
  } finally {
    await h.close();
  }
});
