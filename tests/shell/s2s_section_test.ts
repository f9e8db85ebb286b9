// The `s2s` and `xmpp` admin shell sections against two federating servers: links with their
// authentication and certificate status, refusals with reasons, closing links, and ping.

import assert from "node:assert/strict";
import type { CommandContext, CommandResult } from "../../core/admin_commands.ts";
import type { Server } from "../../core/server.ts";
import { s2sCommands } from "../../shell/sections/s2s.ts";
import { startDnsResponder } from "../helpers/dns_responder.ts";
import { startFederatingServer } from "../helpers/federation.ts";
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
