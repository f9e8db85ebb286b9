// Two Lilt servers on different domains federate over loopback: they find each other through
// SRV records served by a DNS responder the test starts, authenticate with certificates from a
// test CA (SASL EXTERNAL or dialback), and carry messages and presence between real clients.

import assert from "node:assert/strict";
import { type AddressInfo, createServer } from "node:net";
import type { Element } from "../../../core/xml/element.ts";
import { type DnsResponder, startDnsResponder } from "../../helpers/dns_responder.ts";
import {
  exchange,
  type FederatingServerOptions,
  online,
  startFederatingServer,
} from "../../helpers/federation.ts";
import { conditionOf, RawClient } from "../../helpers/raw_client.ts";
import { createTestCa, type TestCa } from "../../helpers/test_ca.ts";
import type { TestServer } from "../../helpers/test_server.ts";

const MODULES = ["disco", "ping", "roster", "presence", "offline"];

/** a.test with alice online and b.test with bob online, federating through one responder. */
interface Pair {
  dns: DnsResponder;
  ca: TestCa;
  a: TestServer;
  b: TestServer;
  alice: RawClient;
  bob: RawClient;
}

type ServerOptions = Partial<Omit<FederatingServerOptions, "dns" | "ca">>;

/** Runs `test` with a fresh pair; everything is stopped afterwards, whatever happens. */
async function withPair(
  options: { a?: ServerOptions; b?: ServerOptions },
  test: (pair: Pair) => Promise<void>,
): Promise<void> {
  const dns = await startDnsResponder();
  const ca = await createTestCa();
  const started: TestServer[] = [];
  const clients: RawClient[] = [];
  try {
    const common = { dns, ca, modules: MODULES };
    const a = await startFederatingServer({
      ...common,
      domain: "a.test",
      users: { alice: "pw" },
      ...options.a,
    });
    started.push(a);
    const b = await startFederatingServer({
      ...common,
      domain: "b.test",
      users: { bob: "pw" },
      ...options.b,
    });
    started.push(b);
    const alice = await online(a.port, "alice", "a.test");
    clients.push(alice);
    const bob = await online(b.port, "bob", "b.test");
    clients.push(bob);
    await test({ dns, ca, a, b, alice, bob });
  } finally {
    for (const client of clients) client.close();
    for (const server of started) await server.stop();
    await dns.close();
  }
}

Deno.test("two Lilt servers federate with certificates: messages and subscriptions", () =>
  withPair({}, async ({ a, b, alice, bob }) => {
    await exchange({ client: alice, bare: "alice@a.test" }, { client: bob, bare: "bob@b.test" });

    // Both directions authenticated by certificate, with SASL EXTERNAL.
    for (const server of [a, b]) {
      const links = server.server.remote!.links();
      assert.ok(links.length >= 2, JSON.stringify(links));
      for (const link of links) {
        assert.equal(link.state, "ready", JSON.stringify(link));
        assert.equal(link.auth, "sasl-external", JSON.stringify(link));
        assert.equal(link.certificate, "valid", JSON.stringify(link));
        assert.match(link.tls, /^TLSv1\.[23]$/);
      }
    }
  }));

Deno.test("a self-signed peer is accepted by dialback only where s2s_insecure_domains allows", async () => {
  const dns = await startDnsResponder();
  const ca = await createTestCa();
  const a = await startFederatingServer({
    domain: "a.test",
    dns,
    ca,
    users: { alice: "pw" },
    modules: MODULES,
    hostToml: `s2s_insecure_domains = ["b.test"]`,
  });
  // b.test presents a self-signed certificate; it trusts the CA, so a.test is valid to it.
  const b = await startFederatingServer({
    domain: "b.test",
    dns,
    ca,
    selfSigned: true,
    users: { bob: "pw" },
    modules: MODULES,
  });
  // c.test also self-signed, but a.test has no exception for it.
  const c = await startFederatingServer({
    domain: "c.test",
    dns,
    ca,
    selfSigned: true,
    users: { carol: "pw" },
    modules: MODULES,
    hostToml: `s2s_insecure_domains = ["a.test"]`,
  });
  const alice = await online(a.port, "alice", "a.test");
  const bob = await online(b.port, "bob", "b.test");
  const carol = await online(c.port, "carol", "c.test");
  try {
    alice.send("<message to='bob@b.test' type='chat' id='ab'><body>via dialback</body></message>");
    await bob.next((el) => el.attrs.id === "ab");
    bob.send("<message to='alice@a.test' type='chat' id='ba'><body>back</body></message>");
    await alice.next((el) => el.attrs.id === "ba");
    const links = a.server.remote!.links().filter((l) => l.remote === "b.test");
    const inbound = links.find((l) => l.direction === "in")!;
    const outbound = links.find((l) => l.direction === "out")!;
    assert.equal(inbound.auth, "dialback");
    assert.equal(inbound.certificate, "self-signed");
    // Outbound, a.test's certificate is valid for b.test: SASL EXTERNAL.
    assert.equal(outbound.auth, "sasl-external");
    assert.equal(outbound.certificate, "self-signed");

    // a.test refuses c.test both ways, and says why.
    alice.send("<message to='carol@c.test' type='chat' id='ac'><body>x</body></message>");
    const bounced = await alice.next((el) => el.attrs.id === "ac");
    assert.equal(bounced.attrs.type, "error");
    assert.equal(conditionOf(bounced), "remote-server-timeout");
    assert.match(
      bounced.getChild("error")!.getChildText("text") ?? "",
      /self-signed.*s2s_secure_auth/,
    );
    carol.send("<message to='alice@a.test' type='chat' id='ca'><body>x</body></message>");
    const refused = await carol.next((el) => el.attrs.id === "ca");
    assert.equal(refused.attrs.type, "error");
    assert.match(
      refused.getChild("error")!.getChildText("text") ?? "",
      /Stream error from 'a\.test': not-authorized \(.*self-signed.*s2s_secure_auth\)/,
    );
    const reasons = a.server.remote!.refusals().filter((r) => r.remote === "c.test");
    assert.ok(reasons.some((r) => r.direction === "out" && /self-signed/.test(r.reason)));
    assert.ok(
      reasons.some((r) => r.direction === "in" && /valid certificate is required/.test(r.reason)),
      JSON.stringify(reasons),
    );
  } finally {
    for (const client of [alice, bob, carol]) client.close();
    for (const server of [a, b, c]) await server.stop();
    await dns.close();
  }
});

Deno.test("a remote that accepts TCP and stays silent blocks nobody; its queue bounces after the timeout", async () => {
  // A server that accepts connections and never says a word.
  const silentSockets: import("node:net").Socket[] = [];
  const silent = createServer((socket) => silentSockets.push(socket));
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  const silentPort = (silent.address() as AddressInfo).port;
  const a = { globalToml: "s2s_connect_timeout = 1\ns2s_auth_timeout = 1\ns2s_queue_limit = 2" };
  try {
    await withPair({ a }, async ({ dns, alice, bob }) => {
      dns.set("_xmpp-server._tcp.silent.test", {
        srv: [{ priority: 0, weight: 0, port: silentPort, target: "silent.test" }],
      });
      dns.set("silent.test", { a: ["127.0.0.1"] });
      for (const id of ["s1", "s2", "s3"]) {
        alice.send(
          `<message to='x@silent.test' type='chat' id='${id}'><body>hello?</body></message>`,
        );
      }
      // The queue holds two: the third bounces at once.
      const overflow = await alice.next((el) => el.attrs.id === "s3");
      assert.equal(conditionOf(overflow), "remote-server-timeout");
      assert.match(overflow.getChild("error")!.getChildText("text") ?? "", /Too many stanzas/);
      // Meanwhile b.test is reached at once.
      alice.send(
        "<message to='bob@b.test' type='chat' id='fast'><body>not blocked</body></message>",
      );
      await bob.next((el) => el.attrs.id === "fast");
      assert.ok(!alice.received.some((el) => el.attrs.id === "s1"), "s1 bounced too early");
      for (const id of ["s1", "s2"]) {
        const bounced = await alice.next((el) => el.attrs.id === id, 10_000);
        assert.equal(conditionOf(bounced), "remote-server-timeout");
        assert.match(
          bounced.getChild("error")!.getChildText("text") ?? "",
          /No authenticated link to 'silent.test'/,
        );
      }
      assert.ok(silentSockets.length >= 1, "the silent server was connected to");
    });
  } finally {
    for (const socket of silentSockets) socket.destroy();
    await new Promise((resolve) => silent.close(resolve));
  }
});

Deno.test("policy: a host with s2s = false, deny lists and allow lists refuse with the reason", () =>
  withPair({
    a: {
      hostToml: `s2s_deny_domains = ["c.test"]`,
      extraNames: ["quiet.test", "picky.test"],
      extraToml: `[[host]]\ndomain = "quiet.test"\ns2s = false\n` +
        `[[host]]\ndomain = "picky.test"\ns2s_allow_domains = ["b.test"]\n`,
    },
  }, async ({ dns, a, alice, bob }) => {
    await a.server.accounts.create("quiet.test", "q", "pw");
    await a.server.accounts.create("picky.test", "p", "pw");
    const quiet = await online(a.port, "q", "quiet.test");
    const picky = await online(a.port, "p", "picky.test");
    try {
      alice.send("<message to='x@c.test' type='chat' id='deny'><body>x</body></message>");
      const denied = await alice.next((el) => el.attrs.id === "deny");
      assert.equal(conditionOf(denied), "service-unavailable");
      assert.match(denied.getChild("error")!.getChildText("text") ?? "", /s2s_deny_domains/);
      quiet.send("<message to='bob@b.test' type='chat' id='off'><body>x</body></message>");
      const off = await quiet.next((el) => el.attrs.id === "off");
      assert.equal(conditionOf(off), "service-unavailable");
      assert.match(off.getChild("error")!.getChildText("text") ?? "", /Federation is off for/);
      picky.send("<message to='x@c.test' type='chat' id='allow'><body>x</body></message>");
      const notAllowed = await picky.next((el) => el.attrs.id === "allow");
      assert.match(notAllowed.getChild("error")!.getChildText("text") ?? "", /s2s_allow_domains/);
      picky.send("<message to='bob@b.test' type='chat' id='ok'><body>x</body></message>");
      await bob.next((el) => el.attrs.id === "ok");
      // Inbound: b.test cannot reach quiet.test; a.test says why.
      dns.set("_xmpp-server._tcp.quiet.test", {
        srv: [{ priority: 0, weight: 0, port: a.server.port("s2s"), target: "a.test" }],
      });
      bob.send("<message to='q@quiet.test' type='chat' id='in'><body>x</body></message>");
      const inbound = await bob.next((el) => el.attrs.id === "in");
      assert.equal(inbound.attrs.type, "error");
      assert.ok(
        a.server.remote!.refusals().some((r) =>
          r.direction === "in" && r.local === "quiet.test" && /Federation is off/.test(r.reason)
        ),
      );
    } finally {
      quiet.close();
      picky.close();
    }
  }));

Deno.test("direct TLS (XEP-0368) is preferred when published, and idle links close and reopen", () => {
  const options = { directTls: true, globalToml: "s2s_idle_timeout = 1" };
  return withPair({ a: options, b: options }, async ({ a, b, alice, bob }) => {
    alice.send("<message to='bob@b.test' type='chat' id='d1'><body>direct</body></message>");
    await bob.next((el) => el.attrs.id === "d1");
    const out = a.server.remote!.links().find((l) => l.direction === "out")!;
    assert.equal(out.auth, "sasl-external");
    assert.match(out.address, new RegExp(`:${b.server.port("s2s_direct_tls")} `));
    // Idle for more than a second: both sides close their links.
    const deadline = Date.now() + 10_000;
    while (a.server.remote!.links().length > 0 || b.server.remote!.links().length > 0) {
      assert.ok(Date.now() < deadline, "idle links close");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    alice.send("<message to='bob@b.test' type='chat' id='d2'><body>again</body></message>");
    await bob.next((el) => el.attrs.id === "d2");
  });
});

/** A pair in which a.test also serves chat.a.test, with carol online there. */
interface ChatPair extends Pair {
  carol: RawClient;
  /** The message bob got from carol, after the one from alice. */
  two: Element;
}

/**
 * Runs `test` with a pair in which a.test also serves chat.a.test (its [[host]] table holds
 * `chatToml`) and carol is online there; alice and then carol have each sent bob a message,
 * so a.test has links out for both of its domains.
 */
function withChatDomain(
  chatToml: string,
  test: (pair: ChatPair) => void | Promise<void>,
): Promise<void> {
  return withPair({
    a: {
      extraNames: ["chat.a.test"],
      extraToml: `[[host]]\ndomain = "chat.a.test"\n${chatToml}`,
    },
  }, async (pair) => {
    const { dns, a, alice, bob } = pair;
    await a.server.accounts.create("chat.a.test", "carol", "pw");
    dns.set("_xmpp-server._tcp.chat.a.test", {
      srv: [{ priority: 0, weight: 0, port: a.server.port("s2s"), target: "a.test" }],
    });
    const carol = await online(a.port, "carol", "chat.a.test");
    try {
      alice.send("<message to='bob@b.test' type='chat' id='x1'><body>one</body></message>");
      await bob.next((el) => el.attrs.id === "x1");
      carol.send("<message to='bob@b.test' type='chat' id='x2'><body>two</body></message>");
      const two = await bob.next((el) => el.attrs.id === "x2");
      await test({ ...pair, carol, two });
    } finally {
      carol.close();
    }
  });
}

Deno.test("a second local domain joins an existing link to the same server by dialback", () =>
  withChatDomain("", async ({ a, b, bob, carol, two }) => {
    assert.equal(two.attrs.from, "carol@chat.a.test/r");
    const out = a.server.remote!.links().filter((l) => l.direction === "out");
    assert.deepEqual(out.map((l) => [l.local, l.auth, l.state]).sort(), [
      ["a.test", "sasl-external", "ready"],
      ["chat.a.test", "dialback", "ready"],
    ]);
    assert.equal(new Set(out.map((l) => l.address)).size, 1, "one connection");
    const inbound = b.server.remote!.links().filter((l) => l.direction === "in");
    assert.equal(new Set(inbound.map((l) => l.id)).size, 1, JSON.stringify(inbound));
    assert.deepEqual(inbound.map((l) => l.remote).sort(), ["a.test", "chat.a.test"]);
    // b.test answers both domains over its own links.
    bob.send("<message to='carol@chat.a.test/r' type='chat' id='x3'><body>back</body></message>");
    await carol.next((el) => el.attrs.id === "x3");
  }));

Deno.test("with s2s_ca_files_only the CA file alone anchors certificates, and federation works on it", () =>
  withPair({
    a: { globalToml: "s2s_ca_files_only = true" },
    b: { globalToml: "s2s_ca_files_only = true" },
  }, async ({ a, b, alice, bob }) => {
    await exchange({ client: alice, bare: "alice@a.test" }, { client: bob, bare: "bob@b.test" });
    for (const server of [a, b]) {
      for (const link of server.server.remote!.links()) {
        assert.equal(link.auth, "sasl-external", JSON.stringify(link));
        assert.equal(link.certificate, "valid", JSON.stringify(link));
      }
    }
  }));

Deno.test("a local domain with s2s_dialback = false opens its own link with SASL EXTERNAL instead of joining one", () =>
  withChatDomain("s2s_dialback = false\n", ({ a, b }) => {
    const out = a.server.remote!.links().filter((l) => l.direction === "out");
    assert.deepEqual(out.map((l) => [l.local, l.auth, l.state]).sort(), [
      ["a.test", "sasl-external", "ready"],
      ["chat.a.test", "sasl-external", "ready"],
    ]);
    assert.equal(new Set(out.map((l) => l.id)).size, 2, "two connections");
    const inbound = b.server.remote!.links().filter((l) => l.direction === "in");
    assert.deepEqual(inbound.map((l) => l.auth), ["sasl-external", "sasl-external"]);
  }));
