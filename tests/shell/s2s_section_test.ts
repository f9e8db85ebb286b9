// The `s2s` and `xmpp` admin shell sections against two federating servers: links with their
// authentication and certificate status, refusals with reasons, closing links, and ping.

import assert from "node:assert/strict";
import type { CommandContext, CommandResult } from "../../core/admin_commands.ts";
import type { Server } from "../../core/server.ts";
import { formatResult } from "../../shell/client.ts";
import { s2sCommands } from "../../shell/sections/s2s.ts";
import { startDnsResponder } from "../helpers/dns_responder.ts";
import { online, startFederatingServer } from "../helpers/federation.ts";
import { RawClient } from "../helpers/raw_client.ts";
import { createTestCa } from "../helpers/test_ca.ts";

async function run(server: Server, command: string, ...args: string[]): Promise<CommandResult> {
  const [section, name] = command.split(" ");
  const spec = s2sCommands().find((c) => c.section === section && c.name === name)!;
  const ctx: CommandContext = { server, emit: () => {}, signal: new AbortController().signal };
  return await spec.run(ctx, args);
}

async function waitFor(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!check()) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

Deno.test("s2s show, close, closeall and xmpp ping on federating servers", async () => {
  const dns = await startDnsResponder();
  const ca = await createTestCa();
  const modules = ["disco", "ping", "roster", "presence"];
  const a = await startFederatingServer({ domain: "a.test", dns, ca, modules });
  const b = await startFederatingServer({ domain: "b.test", dns, ca, modules, selfSigned: true });
  await b.server.accounts.create("b.test", "bob", "pw");
  try {
    // b.test is self-signed: a.test's ping fails with the reason.
    await assert.rejects(
      run(a.server, "xmpp ping", "a.test", "b.test"),
      /Ping to 'b.test' failed: remote-server-timeout \(.*self-signed.*s2s_secure_auth\)/,
    );
    const refused = await run(a.server, "s2s show", "b.test");
    assert.match(
      refused.message!,
      /Recent refusals and failures:\n.*to b\.test \(a\.test\): .*self-signed/,
    );
    await assert.rejects(
      run(a.server, "xmpp ping", "a.test", "nowhere.test"),
      /remote-server-not-found/,
    );

    // A trusted peer: ping succeeds and both directions show up.
    const c = await startFederatingServer({ domain: "c.test", dns, ca, modules });
    try {
      const pong = await run(a.server, "xmpp ping", "a.test", "c.test");
      assert.match(pong.message!, /^Pong from c\.test in \d+\.\d ms \(sasl-external, TLSv1\.3\)$/);
      const shown = await run(a.server, "s2s show", "c.test");
      assert.deepEqual(shown.table!.columns, [
        "local",
        "remote",
        "direction",
        "state",
        "auth",
        "tls",
        "certificate",
        "idle",
        "address",
      ]);
      const rows = shown.table!.rows.map((r) => r.slice(0, 7));
      assert.deepEqual(rows.sort(), [
        ["a.test", "c.test", "in", "ready", "sasl-external", "TLSv1.3", "valid"],
        ["a.test", "c.test", "out", "ready", "sasl-external", "TLSv1.3", "valid"],
      ]);
      // Filtering by the other domain hides these links.
      assert.deepEqual((await run(a.server, "s2s show", "b.test")).table!.rows, []);

      const closed = await run(a.server, "s2s close", "a.test", "c.test");
      assert.match(closed.message!, /^Closed 2 link\(s\) between a\.test and c\.test$/);
      await waitFor(() => a.server.remote!.links().length === 0, "links closed");
      await assert.rejects(run(a.server, "s2s close", "a.test", "c.test"), /No such link/);

      await run(a.server, "xmpp ping", "a.test", "c.test");
      await waitFor(() => a.server.remote!.links().length === 2, "links reopened");
      assert.match((await run(a.server, "s2s closeall", "a.test")).message!, /^Closed 2 link/);
      await waitFor(() => a.server.remote!.links().length === 0, "links closed again");
    } finally {
      await c.stop();
    }
  } finally {
    await a.stop();
    await b.stop();
    await dns.close();
  }
});

Deno.test("s2s show tells SASL EXTERNAL from dialback on a valid certificate, puts certificate problems on a detail line, and shows inbound ports", async () => {
  const dns = await startDnsResponder();
  const ca = await createTestCa();
  const common = { dns, ca, modules: ["roster", "presence"] };
  const a = await startFederatingServer({
    ...common,
    domain: "a.test",
    users: { alice: "pw" },
    hostToml: `s2s_insecure_domains = ["b.test"]`,
  });
  const b = await startFederatingServer({
    ...common,
    domain: "b.test",
    users: { bob: "pw" },
    selfSigned: true,
  });
  const alice = await online(a.port, "alice", "a.test");
  const bob = await online(b.port, "bob", "b.test");
  const peer = await RawClient.connect(a.server.port("s2s"));
  try {
    // b.test (self-signed, allowed dialback) reaches a.test: dialback with a call back.
    bob.send("<message to='alice@a.test' type='chat' id='b1'><body>hi</body></message>");
    await alice.next((el) => el.attrs.id === "b1", 10_000);
    // x.test has a valid certificate but uses dialback: accepted without a call back.
    const issued = await ca.issue({ names: ["x.test"] });
    const server = { ns: "jabber:server", from: "x.test" };
    await peer.open("a.test", server);
    await peer.starttls("a.test", {
      ...server,
      certificate: { cert: issued.chainPem, key: issued.keyPem },
    });
    peer.send("<db:result from='x.test' to='a.test'>any-key</db:result>");
    const answer = await peer.next((el) => el.name === "result");
    assert.equal(answer.attrs.type, "valid");

    const shown = await run(a.server, "s2s show");
    const rows = shown.table!.rows;
    const row = (remote: string, direction: string) => {
      const index = rows.findIndex((r) => r[1] === remote && r[2] === direction);
      assert.ok(index >= 0, `no ${direction} row for ${remote}: ${JSON.stringify(rows)}`);
      return { cells: rows[index], detail: shown.table!.details?.[index] ?? null };
    };
    const fromB = row("b.test", "in");
    assert.deepEqual(fromB.cells.slice(3, 7), ["ready", "dialback", "TLSv1.3", "self-signed"]);
    assert.match(fromB.detail ?? "", /^certificate: .*self-signed/);
    const toB = row("b.test", "out");
    assert.deepEqual(toB.cells.slice(3, 7), ["ready", "sasl-external", "TLSv1.3", "self-signed"]);
    assert.match(toB.detail ?? "", /^certificate: .*self-signed/);
    const fromX = row("x.test", "in");
    assert.deepEqual(fromX.cells.slice(3, 7), [
      "ready",
      "dialback-certificate",
      "TLSv1.3",
      "valid",
    ]);
    assert.equal(fromX.detail, null);
    // Inbound rows name the peer's port: the one this test's socket connected from.
    assert.equal(fromX.cells[8], `127.0.0.1:${peer.socket.localPort}`);
    assert.match(String(fromB.cells[8]), /^127\.0\.0\.1:\d+$/);

    // As printed: the reason sits on its own indented line under its row, not in a column.
    const lines = formatResult(shown).split("\n");
    const at = lines.findIndex((line) => /^a\.test\s+b\.test\s+in\s/.test(line));
    assert.ok(at >= 0, lines.join("\n"));
    assert.ok(!lines[at].includes("certificate:"), lines[at]);
    assert.match(lines[at + 1], /^ {4}certificate: .*self-signed/);
  } finally {
    peer.close();
    alice.close();
    bob.close();
    await a.stop();
    await b.stop();
    await dns.close();
  }
});

Deno.test("s2s commands explain that federation is off without s2s_interfaces", async () => {
  const { startTestServer } = await import("../helpers/test_server.ts");
  const t = await startTestServer({ modules: [] });
  try {
    const shown = await run(t.server, "s2s show");
    assert.match(shown.message!, /Federation is off/);
    await assert.rejects(run(t.server, "s2s closeall", "localhost"), /Federation is off/);
    await assert.rejects(
      run(t.server, "xmpp ping", "localhost", "example.org"),
      /Federation is off/,
    );
  } finally {
    await t.stop();
  }
});
