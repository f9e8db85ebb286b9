// The `dns` admin shell section over a real admin socket, with the server's dns_nameservers
// pointed at a loopback DNS responder: lookups of each record type, the XMPP SRV overview of
// a domain, --json shapes, and clear errors for bad names, types and dead nameservers.

import assert from "node:assert/strict";
import type { CommandResult } from "../../core/admin_commands.ts";
import { startAdminSocket } from "../../shell/admin_socket.ts";
import { AdminClient, formatResult, jsonOf } from "../../shell/client.ts";
import { dnsCommands } from "../../shell/sections/dns.ts";
import { type DnsRecords, startDnsResponder } from "../helpers/dns_responder.ts";
import { startTestServer } from "../helpers/test_server.ts";

const RECORDS: Record<string, DnsRecords> = {
  "example.test": { a: ["192.0.2.10"], aaaa: ["2001:db8::10"], txt: ["v=spf1 -all"] },
  "xmpp.example.test": { a: ["192.0.2.20"] },
  "_xmpp-client._tcp.example.test": {
    srv: [{ priority: 5, weight: 10, port: 5222, target: "xmpp.example.test" }],
  },
  "_xmpps-client._tcp.example.test": {
    srv: [{ priority: 0, weight: 0, port: 0, target: "." }],
  },
  "_xmpp-server._tcp.example.test": {
    srv: [{ priority: 0, weight: 5, port: 5269, target: "nowhere.example.test" }],
  },
};

/** Starts a server whose resolver asks the responder, with the dns section on its socket. */
async function withShell(
  globalToml: string,
  fn: (call: (cmd: string, ...args: string[]) => Promise<CommandResult>) => Promise<void>,
): Promise<void> {
  const dns = await startDnsResponder(RECORDS);
  const t = await startTestServer({
    modules: ["disco"],
    globalToml: `dns_nameservers = ["${dns.address}"]\n${globalToml}`,
  });
  t.server.commands.add(dnsCommands());
  const admin = await startAdminSocket(t.server, `${t.dataDir}/run/lilt.sock`);
  const client = await AdminClient.connect(`${t.dataDir}/run/lilt.sock`);
  const call = async (cmd: string, ...args: string[]): Promise<CommandResult> => {
    const reply = await client.request(cmd, args);
    if (!reply.ok) throw new Error(reply.error);
    return reply.result;
  };
  try {
    await fn(call);
  } finally {
    client.close();
    await admin.close();
    await t.stop();
    await dns.close();
  }
}

Deno.test("dns lookup answers A, AAAA, TXT and SRV as the server's resolver sees them", async () => {
  await withShell("", async (call) => {
    assert.deepEqual(jsonOf(await call("dns lookup", "example.test")), [
      { name: "example.test", type: "A", value: "192.0.2.10" },
    ]);
    assert.deepEqual(jsonOf(await call("dns lookup", "example.test", "aaaa")), [
      { name: "example.test", type: "AAAA", value: "2001:db8::10" },
    ]);
    assert.deepEqual(jsonOf(await call("dns lookup", "example.test.", "TXT")), [
      { name: "example.test", type: "TXT", value: "v=spf1 -all" },
    ]);
    const srv = await call("dns lookup", "_xmpp-client._tcp.example.test", "SRV");
    assert.deepEqual(jsonOf(srv), [{
      name: "_xmpp-client._tcp.example.test",
      type: "SRV",
      priority: 5,
      weight: 10,
      port: 5222,
      target: "xmpp.example.test",
    }]);
    assert.match(formatResult(srv), /_xmpp-client\._tcp\.example\.test +SRV +5 +10 +5222 +xmpp/);
    const none = await call("dns lookup", "xmpp.example.test", "AAAA");
    assert.match(
      none.message!,
      /^No AAAA records for xmpp\.example\.test \(nameservers: 127\.0\.0\.1:\d+\)$/,
    );
    assert.deepEqual(jsonOf(none), []);
  });
});

Deno.test("dns srv shows the four XMPP services of a domain with their targets' addresses", async () => {
  // With federation on, the section uses the federation manager's resolver.
  await withShell('s2s_interfaces = ["127.0.0.1:0"]', async (call) => {
    const result = await call("dns srv", "example.test");
    assert.deepEqual(jsonOf(result), [
      {
        name: "_xmpp-client._tcp.example.test",
        service: "client (STARTTLS)",
        priority: 5,
        weight: 10,
        port: 5222,
        target: "xmpp.example.test",
        addresses: "192.0.2.20",
      },
      {
        name: "_xmpps-client._tcp.example.test",
        service: "client (direct TLS)",
        priority: 0,
        weight: 0,
        port: 0,
        target: ".",
        addresses: "(service not offered)",
      },
      {
        name: "_xmpp-server._tcp.example.test",
        service: "server (STARTTLS)",
        priority: 0,
        weight: 5,
        port: 5269,
        target: "nowhere.example.test",
        addresses: "(no A or AAAA)",
      },
      {
        name: "_xmpps-server._tcp.example.test",
        service: "server (direct TLS)",
        priority: null,
        weight: null,
        port: null,
        target: "",
        addresses: "(no records)",
      },
    ]);
    assert.match(formatResult(result), /^name +service +priority/);
  });
});

Deno.test("dns commands refuse bad names and types, and say when no nameserver answers", async () => {
  await withShell("", async (call) => {
    await assert.rejects(
      call("dns lookup", "example.test", "MX"),
      /Unknown record type 'MX': expected one of A, AAAA, SRV, TXT/,
    );
    await assert.rejects(
      call("dns lookup", "a..b"),
      /Expected a DNS name such as "example.org", found 'a\.\.b'/,
    );
    await assert.rejects(call("dns srv", "user@example.test"), /Expected a DNS name/);
  });
  // A nameserver that never answers: the lookup ends with a timeout error, the server stays up.
  const silent = await startDnsResponder({ "example.test": { silent: true } });
  const t = await startTestServer({
    modules: ["disco"],
    globalToml: `dns_nameservers = ["${silent.address}"]`,
  });
  try {
    const spec = dnsCommands().find((c) => c.name === "lookup")!;
    const ctx = { server: t.server, emit: () => {}, signal: new AbortController().signal };
    await assert.rejects(
      Promise.resolve(spec.run(ctx, ["example.test"])),
      /DNS lookup of A records for 'example\.test' timed out \(nameservers: 127\.0\.0\.1:\d+\)/,
    );
  } finally {
    await t.stop();
    await silent.close();
  }
});
