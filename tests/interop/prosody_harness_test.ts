// Proves the Prosody harness works before any s2s code relies on it: a user logs in over
// STARTTLS + SCRAM, and Prosody finds a remote domain only through our DNS responder.

import assert from "node:assert/strict";
import { createServer, type Server, type Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { startDnsResponder } from "../helpers/dns_responder.ts";
import { type ProsodyInstance, startProsody } from "../helpers/prosody.ts";
import { RawClient } from "../helpers/raw_client.ts";
import { makeTestCa } from "../helpers/test_ca.ts";

const DOMAIN = "prosody.test";
const REMOTE = "remote.test";

/** A plain TCP server that records what the first connection sends. */
function listenForPeer(): Promise<{ server: Server; port: number; received: Promise<string> }> {
  let resolveReceived: (text: string) => void;
  const received = new Promise<string>((resolve) => (resolveReceived = resolve));
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    let text = "";
    socket.on("error", () => {});
    socket.on("close", () => sockets.delete(socket));
    socket.on("data", (chunk) => {
      text += chunk.toString("utf8");
      // The stream header is complete once its opening tag is closed.
      if (/<stream:stream\b[^>]*>/.test(text)) {
        resolveReceived(text);
        socket.destroy();
      }
    });
  });
  server.on("close", () => sockets.forEach((s) => s.destroy()));
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as { port: number }).port;
      resolve({ server, port, received });
    });
  });
}

Deno.test("Prosody logs a user in and resolves a remote domain through the test DNS responder", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lilt-prosody-test-" });
  const dns = await startDnsResponder();
  const peer = await listenForPeer();
  let client: RawClient | undefined;
  try {
    const ca = await makeTestCa(dir, [DOMAIN]);
    dns.set(`_xmpp-server._tcp.${REMOTE}`, {
      srv: [{ priority: 0, weight: 0, port: peer.port, target: REMOTE }],
    });
    dns.set(REMOTE, { a: ["127.0.0.1"] });
    await using prosody = await startProsody({
      domain: DOMAIN,
      dns: { port: dns.port },
      certFile: ca.certFile,
      keyFile: ca.keyFile,
      caFile: ca.caFile,
      users: { alice: "wonderland" },
    });

    // 1. c2s: STARTTLS with the CA-issued certificate, then SCRAM-SHA-1 and bind.
    client = await RawClient.connect(prosody.c2sPort);
    const plainFeatures = await client.open(DOMAIN);
    assert.ok(plainFeatures.getChild("starttls", "urn:ietf:params:xml:ns:xmpp-tls"));
    await client.starttls(DOMAIN);
    const cert = (client.socket as TLSSocket).getPeerCertificate();
    assert.match(cert.subjectaltname ?? "", new RegExp(`DNS:${DOMAIN.replace(".", "\\.")}`));
    assert.equal(cert.issuer.CN, "Lilt Test CA");
    const { outcome, verified } = await client.scram("alice", "wonderland", { hash: "SHA-1" });
    assert.equal(outcome.name, "success");
    assert.ok(verified, "Prosody's SCRAM server signature verifies");
    client.restart();
    await client.open(DOMAIN);
    client.send(
      "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>" +
        "<resource>test</resource></bind></iq>",
    );
    const bound = await client.next((el) => el.name === "iq" && el.attrs.id === "bind1");
    assert.equal(bound.attrs.type, "result");
    assert.equal(bound.getChild("bind")?.getChildText("jid"), `alice@${DOMAIN}/test`);

    // 2. s2s: a message to the remote domain makes Prosody look up its SRV record in our
    // responder and open a stream to the port that record names.
    client.send(
      `<message type='chat' id='m1' to='someone@${REMOTE}'><body>hello</body></message>`,
    );
    const header = await peer.received;
    assert.match(header, /<stream:stream\b[^>]*\bto=(['"])remote\.test\1/);
    assert.match(header, /<stream:stream\b[^>]*\bfrom=(['"])prosody\.test\1/);
    assert.match(header, /xmlns=(['"])jabber:server\1/);
    assert.ok((dns.queries.get(`_xmpp-server._tcp.${REMOTE}/SRV`) ?? 0) >= 1, "SRV was asked");
    assert.ok((dns.queries.get(`${REMOTE}/A`) ?? 0) >= 1, "A of the SRV target was asked");
    await prosody.waitForLog(/Resolve _xmpp-server\._tcp\.remote\.test IN SRV/);
  } finally {
    client?.close();
    await new Promise((resolve) => peer.server.close(resolve));
    await dns.close();
    await Deno.remove(dir, { recursive: true });
  }
});

/** STARTTLS, SCRAM-SHA-1, bind and initial presence on a harness Prosody. */
async function login(prosody: ProsodyInstance, user: string, password: string) {
  const client = await RawClient.connect(prosody.c2sPort);
  await client.open(prosody.domain);
  await client.starttls(prosody.domain);
  const { outcome } = await client.scram(user, password, { hash: "SHA-1" });
  assert.equal(outcome.name, "success", `${user}@${prosody.domain} logs in`);
  client.restart();
  await client.open(prosody.domain);
  client.send(
    "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>" +
      "<resource>test</resource></bind></iq>",
  );
  await client.next((el) => el.name === "iq" && el.attrs.id === "bind1");
  client.send("<presence/>");
  return client;
}

/** Two harness Prosodys that find each other through one responder. */
async function withPair(
  trustB: boolean,
  run: (a: ProsodyInstance, b: ProsodyInstance, dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "lilt-prosody-test-" });
  const dns = await startDnsResponder();
  try {
    const ca = await makeTestCa(dir, ["a.test", "b.test"]);
    const common = { dns: { port: dns.port }, certFile: ca.certFile, keyFile: ca.keyFile };
    await using a = await startProsody({
      ...common,
      domain: "a.test",
      caFile: ca.caFile,
      s2sSecureAuth: true,
      users: { alice: "a-pass" },
    });
    await using b = await startProsody({
      ...common,
      domain: "b.test",
      caFile: trustB ? ca.caFile : undefined,
      s2sSecureAuth: true,
      users: { bob: "b-pass" },
    });
    for (const p of [a, b]) {
      dns.set(`_xmpp-server._tcp.${p.domain}`, {
        srv: [{ priority: 0, weight: 0, port: p.s2sPort, target: p.domain }],
      });
      dns.set(p.domain, { a: ["127.0.0.1"] });
    }
    await run(a, b, dir);
  } finally {
    await dns.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("two harness Prosodys federate over verified TLS with s2s_secure_auth", async () => {
  await withPair(true, async (a, b) => {
    const alice = await login(a, "alice", "a-pass");
    const bob = await login(b, "bob", "b-pass");
    try {
      alice.send("<message type='chat' id='m1' to='bob@b.test'><body>hi bob</body></message>");
      const got = await bob.next((el) => el.name === "message" && el.attrs.id === "m1", 10_000);
      assert.equal(got.attrs.from, "alice@a.test/test");
      assert.equal(got.getChildText("body"), "hi bob");
      await a.waitForLog(/Outgoing s2s connection a\.test->b\.test complete/);
      await b.waitForLog(/Incoming s2s connection a\.test->b\.test complete/);
    } finally {
      alice.close();
      bob.close();
    }
  });
});

Deno.test("a Prosody without the peer's CA refuses it under s2s_secure_auth and says why", async () => {
  await withPair(false, async (a, b) => {
    const alice = await login(a, "alice", "a-pass");
    try {
      alice.send("<message type='chat' id='m2' to='bob@b.test'><body>hi bob</body></message>");
      const line = await b.waitForLog(
        /Forbidding insecure connection to\/from a\.test because its certificate is not trusted/,
        10_000,
      );
      assert.match(line, /\twarn\t/);
      // Alice's server is told why and bounces the message back to her.
      const bounce = await alice.next(
        (el) => el.name === "message" && el.attrs.id === "m2",
        10_000,
      );
      assert.equal(bounce.attrs.type, "error");
    } finally {
      alice.close();
    }
  });
});

Deno.test("startProsody reports Prosody's own complaint when it cannot start", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lilt-prosody-test-" });
  try {
    await assert.rejects(
      startProsody({
        domain: DOMAIN,
        dns: { port: 9 },
        certFile: `${dir}/missing.crt`,
        keyFile: `${dir}/missing.key`,
        globalConfig: "this is not lua",
      }),
      /Prosody exited with code 1[\s\S]*syntax error/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
