// Tests for the TLS contexts over real loopback sockets: SNI per virtual host, STARTTLS on a
// socket that carried plaintext first, channel binding, concurrency and failed handshakes.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import * as net from "node:net";
import * as tls from "node:tls";
import {
  createSelfSignedCertificate,
  describeCertificate,
  type LoadedCertificate,
} from "../../../core/net/certificates.ts";
import { TlsContexts, type TlsContexts as TlsContextsType } from "../../../core/net/tls.ts";

interface Fixture {
  a: LoadedCertificate;
  b: LoadedCertificate;
  client: LoadedCertificate;
}

let fixture: Promise<Fixture> | undefined;

function certificates(): Promise<Fixture> {
  fixture ??= (async () => {
    const make = async (domain: string) =>
      describeCertificate(domain, await createSelfSignedCertificate(domain));
    return { a: await make("a.test"), b: await make("b.test"), client: await make("client.test") };
  })();
  return fixture;
}

function hex(bytes: Uint8Array | undefined): string {
  return bytes ? Buffer.from(bytes).toString("hex") : "none";
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** A loopback server that runs `onConnection` for each accepted raw socket. */
class Harness {
  readonly sockets = new Set<net.Socket>();
  readonly #server: net.Server;

  constructor(onConnection: (raw: net.Socket) => void) {
    this.#server = net.createServer((raw) => {
      this.track(raw);
      raw.on("error", () => {});
      onConnection(raw);
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
    return (this.#server.address() as net.AddressInfo).port;
  }

  track<S extends net.Socket>(socket: S): S {
    this.sockets.add(socket);
    return socket;
  }

  async close(): Promise<void> {
    const closed = [...this.sockets].map((socket) =>
      socket.closed ? Promise.resolve() : new Promise((resolve) => {
        socket.once("close", resolve);
        socket.destroy();
      })
    );
    await Promise.all(closed);
    await new Promise((resolve) => this.#server.close(resolve));
  }
}

/** Answers "who" with the certificate domain, binding and ALPN the server sees, "ping" with "pong". */
function serveLines(contexts: TlsContextsType, socket: tls.TLSSocket): void {
  socket.on("error", () => {});
  socket.setEncoding("utf8");
  let buffer = "";
  socket.on("data", (chunk: string) => {
    buffer += chunk;
    for (let end = buffer.indexOf("\n"); end !== -1; end = buffer.indexOf("\n")) {
      const line = buffer.slice(0, end);
      buffer = buffer.slice(end + 1);
      if (line === "ping") socket.write("pong\n");
      if (line === "who") {
        const cert = contexts.certificateFor(socket);
        const binding = hex(contexts.endpointBinding(socket));
        socket.write(`${cert?.domain} ${binding} ${socket.alpnProtocol}\n`);
      }
    }
  });
}

/** Starts a direct-TLS server (upgrade right after accept); upgrade outcomes are collected. */
async function directTlsServer(contexts: TlsContextsType, expectedServername?: string) {
  const outcomes: Promise<tls.TLSSocket>[] = [];
  const harness = new Harness((raw) => {
    const upgraded = contexts.upgrade(raw, { expectedServername }).then((socket) => {
      harness.track(socket);
      serveLines(contexts, socket);
      return socket;
    });
    upgraded.catch(() => {});
    outcomes.push(upgraded);
  });
  return { harness, outcomes, port: await harness.listen() };
}

function readLine(socket: net.Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffer = "";
    const onData = (chunk: Buffer | string) => {
      buffer += String(chunk);
      const end = buffer.indexOf("\n");
      if (end === -1) return;
      socket.off("data", onData);
      socket.off("close", onClose);
      resolve(buffer.slice(0, end));
    };
    const onClose = () => reject(new Error(`Connection closed before a line, got '${buffer}'`));
    socket.on("data", onData);
    socket.once("close", onClose);
  });
}

function connectTls(
  harness: Harness,
  options: tls.ConnectionOptions,
): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = harness.track(
      tls.connect({ host: "127.0.0.1", rejectUnauthorized: false, ...options }, () => {
        socket.off("error", reject);
        socket.on("error", () => {});
        resolve(socket);
      }),
    );
    socket.once("error", reject);
  });
}

async function ask(socket: tls.TLSSocket, line: string): Promise<string> {
  const reply = readLine(socket);
  socket.write(`${line}\n`);
  return await reply;
}

Deno.test("direct TLS presents the certificate chosen by SNI and negotiates xmpp-client", async () => {
  const { a, b } = await certificates();
  const contexts = new TlsContexts([{ domain: "a.test", cert: a }, { domain: "b.test", cert: b }]);
  const { harness, port } = await directTlsServer(contexts);
  try {
    for (const [servername, expected] of [["a.test", a], ["b.test", b]] as const) {
      const client = await connectTls(harness, {
        port,
        servername,
        ALPNProtocols: ["xmpp-client"],
      });
      assert.equal(client.getPeerCertificate().subject.CN, servername);
      assert.deepEqual(new Uint8Array(client.getPeerCertificate().raw), expected.der);
      assert.equal(client.alpnProtocol, "xmpp-client");
      const [domain, , serverAlpn] = (await ask(client, "who")).split(" ");
      assert.equal(domain, servername);
      assert.equal(serverAlpn, "xmpp-client");
    }
  } finally {
    await harness.close();
  }
});

Deno.test("SNI falls back to a parent domain's certificate, then to the first host", async () => {
  const { a, b } = await certificates();
  const contexts = new TlsContexts([{ domain: "a.test", cert: a }, { domain: "b.test", cert: b }]);
  const { harness, port } = await directTlsServer(contexts);
  try {
    const cases = [
      ["conference.b.test", "b.test"], // covered by b's wildcard SAN
      ["deep.sub.b.test", "b.test"], // not covered, but b.test is the nearest parent host
      ["B.TEST", "b.test"],
      ["elsewhere.example", "a.test"],
    ];
    for (const [servername, expected] of cases) {
      const client = await connectTls(harness, { port, servername });
      assert.equal(client.getPeerCertificate().subject.CN, expected, servername);
      assert.equal((await ask(client, "who")).split(" ")[0], expected, servername);
    }
  } finally {
    await harness.close();
  }
});

Deno.test("a client without SNI gets the expected host's certificate, else the first", async () => {
  const { a, b } = await certificates();
  const entries = [{ domain: "a.test", cert: a }, { domain: "b.test", cert: b }];
  for (const [expectedServername, expected] of [["b.test", "b.test"], [undefined, "a.test"]]) {
    const contexts = new TlsContexts(entries);
    const { harness, port } = await directTlsServer(contexts, expectedServername);
    try {
      const client = await connectTls(harness, { port }); // an IP host sends no SNI
      assert.equal(client.getPeerCertificate().subject.CN, expected);
      assert.equal((await ask(client, "who")).split(" ")[0], expected);
    } finally {
      await harness.close();
    }
  }
});

Deno.test("STARTTLS: plaintext first, then both sides upgrade the same socket", async () => {
  const { a, b } = await certificates();
  const contexts = new TlsContexts([{ domain: "a.test", cert: a }, { domain: "b.test", cert: b }]);
  const plaintext: string[] = [];
  const harness = new Harness((raw) => {
    readLine(raw).then(async (line) => {
      plaintext.push(line);
      raw.write("proceed\n");
      const secure = harness.track(await contexts.upgrade(raw, { expectedServername: "b.test" }));
      serveLines(contexts, secure);
    }).catch(() => {});
  });
  const port = await harness.listen();
  try {
    const raw = harness.track(net.connect(port, "127.0.0.1"));
    raw.on("error", () => {});
    const proceed = readLine(raw);
    raw.write("hello\n");
    assert.equal(await proceed, "proceed");
    const client = await connectTls(harness, { socket: raw, servername: "b.test" });
    assert.equal(client.getPeerCertificate().subject.CN, "b.test");
    assert.equal(await ask(client, "ping"), "pong");
    assert.equal((await ask(client, "who")).split(" ")[0], "b.test");
    assert.deepEqual(plaintext, ["hello"]);
  } finally {
    await harness.close();
  }
});

Deno.test("endpointBinding is the SHA-256 of the certificate the client received", async () => {
  const { a, b } = await certificates();
  const contexts = new TlsContexts([{ domain: "a.test", cert: a }, { domain: "b.test", cert: b }]);
  const { harness, outcomes, port } = await directTlsServer(contexts);
  try {
    // b.test is not the default context, which is where Deno's getCertificate() would mislead.
    const client = await connectTls(harness, { port, servername: "b.test" });
    const seen = sha256Hex(client.getPeerCertificate().raw);
    const [, binding] = (await ask(client, "who")).split(" ");
    assert.equal(binding, seen);
    const server = await outcomes[0];
    assert.equal(hex(contexts.endpointBinding(server)), seen);
    assert.equal(contexts.certificateFor(server), b);
    assert.equal(contexts.endpointBinding(client), undefined); // not one of ours
  } finally {
    await harness.close();
  }
});

Deno.test("50 concurrent upgrades with alternating SNI each get their own certificate", async () => {
  const { a, b } = await certificates();
  const contexts = new TlsContexts([{ domain: "a.test", cert: a }, { domain: "b.test", cert: b }]);
  const { harness, port } = await directTlsServer(contexts);
  try {
    const names = Array.from({ length: 50 }, (_, i) => (i % 2 === 0 ? "a.test" : "b.test"));
    const results = await Promise.all(names.map(async (servername) => {
      const client = await connectTls(harness, { port, servername });
      const [domain, binding] = (await ask(client, "who")).split(" ");
      return {
        servername,
        peer: client.getPeerCertificate().subject.CN,
        domain,
        binding,
        seen: sha256Hex(client.getPeerCertificate().raw),
      };
    }));
    for (const result of results) {
      assert.equal(result.peer, result.servername);
      assert.equal(result.domain, result.servername);
      assert.equal(result.binding, result.seen);
    }
  } finally {
    await harness.close();
  }
});

Deno.test("a client sending garbage makes the upgrade reject without crashing", async () => {
  const { a } = await certificates();
  const contexts = new TlsContexts([{ domain: "a.test", cert: a }]);
  const { harness, outcomes, port } = await directTlsServer(contexts);
  try {
    const raw = harness.track(net.connect(port, "127.0.0.1"));
    raw.on("error", () => {});
    raw.resume(); // read, or the server's FIN is never seen
    raw.write("<?xml version='1.0'?><stream:stream to='a.test'>\r\n\r\n");
    await new Promise((resolve) => raw.once("close", resolve));
    await assert.rejects(outcomes[0], (error: Error) => {
      assert.ok(error instanceof Error);
      assert.match(error.message, /^TLS handshake failed: /);
      return true;
    });
    // The context still serves the next client.
    const client = await connectTls(harness, { port, servername: "a.test" });
    assert.equal(await ask(client, "ping"), "pong");
  } finally {
    await harness.close();
  }
});

Deno.test("a peer that closes during the handshake makes the upgrade reject", async () => {
  const { a } = await certificates();
  const contexts = new TlsContexts([{ domain: "a.test", cert: a }]);
  const { harness, outcomes, port } = await directTlsServer(contexts);
  try {
    const raw = harness.track(net.connect(port, "127.0.0.1", () => raw.end()));
    raw.on("error", () => {});
    await new Promise((resolve) => raw.once("close", resolve));
    while (outcomes.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    await assert.rejects(outcomes[0], Error);
  } finally {
    await harness.close();
  }
});

Deno.test("a silent client makes the upgrade reject after the handshake timeout", async () => {
  const { a } = await certificates();
  const contexts = new TlsContexts([{ domain: "a.test", cert: a }], { handshakeTimeoutMs: 100 });
  const { harness, outcomes, port } = await directTlsServer(contexts);
  try {
    const raw = harness.track(net.connect(port, "127.0.0.1"));
    raw.on("error", () => {});
    await new Promise((resolve) => raw.once("close", resolve)); // the server gives up
    await assert.rejects(outcomes[0], /TLS handshake did not finish within 100 ms/);
  } finally {
    await harness.close();
  }
});

Deno.test("update() changes the certificate for new handshakes and keeps open ones", async () => {
  const { a, b } = await certificates();
  const renewed = describeCertificate("a.test", await createSelfSignedCertificate("a.test"));
  const contexts = new TlsContexts([{ domain: "a.test", cert: a }, { domain: "b.test", cert: b }]);
  const { harness, outcomes, port } = await directTlsServer(contexts);
  try {
    const before = await connectTls(harness, { port, servername: "a.test" });
    contexts.update([{ domain: "a.test", cert: renewed }, { domain: "b.test", cert: b }]);
    const after = await connectTls(harness, { port, servername: "a.test" });
    assert.deepEqual(new Uint8Array(after.getPeerCertificate().raw), renewed.der);
    assert.equal((await ask(after, "who")).split(" ")[1], sha256Hex(renewed.der));
    // The first connection still works and still reports the certificate it was given.
    assert.equal(await ask(before, "ping"), "pong");
    assert.equal(contexts.certificateFor(await outcomes[0]), a);
    assert.equal((await ask(before, "who")).split(" ")[1], sha256Hex(a.der));
    // The default (no SNI) context follows the update too.
    const noSni = await connectTls(harness, { port });
    assert.deepEqual(new Uint8Array(noSni.getPeerCertificate().raw), renewed.der);
  } finally {
    await harness.close();
  }
  assert.throws(() => contexts.update([]), /at least one TLS host/);
});

Deno.test("TLS 1.2 clients are served and the server can ask for a client certificate", async () => {
  const { a, client: clientCert } = await certificates();
  const contexts = new TlsContexts([{ domain: "a.test", cert: a }], { requestCert: true });
  const { harness, outcomes, port } = await directTlsServer(contexts);
  try {
    const client = await connectTls(harness, {
      port,
      servername: "a.test",
      maxVersion: "TLSv1.2",
      cert: clientCert.certPem,
      key: clientCert.keyPem,
    });
    assert.equal(client.getProtocol(), "TLSv1.2");
    assert.equal(await ask(client, "ping"), "pong");
    const server = await outcomes[0];
    assert.deepEqual(new Uint8Array(server.getPeerCertificate(true).raw), clientCert.der);
    assert.equal(server.authorized, false); // self-signed: the server decides, not node:tls
    const anonymous = await connectTls(harness, { port, servername: "a.test" });
    assert.equal(await ask(anonymous, "ping"), "pong");
  } finally {
    await harness.close();
  }
});
