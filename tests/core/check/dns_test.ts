// The DNS check against a loopback DNS responder: a correct zone gives no problem, and each
// kind of mistake (missing or "." SRV, wrong port, target without or with a foreign address,
// host without A, unreachable component, dead nameserver) gives its one line with the fix.

import assert from "node:assert/strict";
import type { Config } from "../../../core/config.ts";
import { parseConfigText } from "../../../core/config.ts";
import { checkDns } from "../../../core/check/dns.ts";
import type { Problem } from "../../../core/check/problem.ts";
import { Resolver } from "../../../core/net/dns.ts";
import { type DnsRecords, startDnsResponder } from "../../helpers/dns_responder.ts";

interface Setup {
  /** Global TOML (the listeners); default c2s on 127.0.0.1:5222 and direct TLS on :5223. */
  listeners?: string;
  /** Extra TOML after the [[host]] section. */
  extra?: string;
  hostToml?: string;
}

function config(setup: Setup = {}): Config {
  const text = `data_dir = "/nonexistent/lilt-dns-check"
${
    setup.listeners ?? `c2s_interfaces = ["127.0.0.1:5222"]
c2s_direct_tls_interfaces = ["127.0.0.1:5223"]`
  }
[[host]]
domain = "example.test"
${setup.hostToml ?? ""}
${setup.extra ?? ""}
`;
  const { config, problems } = parseConfigText(text, "/nonexistent/lilt.toml");
  assert.ok(config, JSON.stringify(problems));
  return config;
}

/** Runs the check with the responder answering `records`; returns "level: message" lines. */
async function check(
  records: Record<string, DnsRecords>,
  setup: Setup = {},
  options: { addresses?: string[]; machineAddresses?: string[] } = {},
): Promise<string[]> {
  const dns = await startDnsResponder(records);
  const resolver = new Resolver({ nameservers: [dns.address], timeoutMs: 500, tries: 1 });
  try {
    const problems: Problem[] = await checkDns(config(setup), { resolver, ...options });
    return problems.map((p) => `${p.level}: ${p.message}`);
  } finally {
    await dns.close();
  }
}

const GOOD: Record<string, DnsRecords> = {
  "example.test": { a: ["127.0.0.1"] },
  "xmpp.example.test": { a: ["127.0.0.1"] },
  "_xmpp-client._tcp.example.test": {
    srv: [{ priority: 0, weight: 5, port: 5222, target: "xmpp.example.test" }],
  },
  "_xmpps-client._tcp.example.test": {
    srv: [{ priority: 0, weight: 5, port: 5223, target: "xmpp.example.test" }],
  },
};

Deno.test("a zone that leads clients to the configured addresses and ports has no problem", async () => {
  assert.deepEqual(await check(GOOD), []);
});

Deno.test("a missing client SRV record is an error on a non-standard port, nothing on 5222", async () => {
  const records = { ...GOOD };
  delete records["_xmpp-client._tcp.example.test"];
  assert.deepEqual(await check(records), []);
  assert.deepEqual(
    await check(records, {
      listeners: 'c2s_interfaces = ["127.0.0.1:5322"]\nc2s_direct_tls_interfaces = []',
    }),
    [
      "error: _xmpp-client._tcp.example.test has no SRV record, so clients try " +
      "example.test:5222, but Lilt listens on port 5322 (c2s_interfaces): add " +
      '"_xmpp-client._tcp.example.test. 3600 IN SRV 0 5 5322 example.test."',
      // The direct TLS record left in the zone leads to a listener that is not configured.
      "warning: _xmpps-client._tcp.example.test points clients (direct TLS) at " +
      "xmpp.example.test:5223 but Lilt has no c2s_direct_tls_interfaces: remove the record, " +
      "or set c2s_direct_tls_interfaces",
    ],
  );
});

Deno.test("a missing direct TLS SRV record is a warning (no fallback in XEP-0368)", async () => {
  const records = { ...GOOD };
  delete records["_xmpps-client._tcp.example.test"];
  assert.deepEqual(await check(records), [
    "warning: _xmpps-client._tcp.example.test has no SRV record, so clients (direct TLS) " +
    "will not find port 5223 (XEP-0368): add " +
    '"_xmpps-client._tcp.example.test. 3600 IN SRV 0 5 5223 example.test."',
  ]);
});

Deno.test("an SRV record on the wrong port names the record to write instead", async () => {
  const records = {
    ...GOOD,
    "_xmpp-client._tcp.example.test": {
      srv: [{ priority: 10, weight: 20, port: 5999, target: "xmpp.example.test" }],
    },
  };
  assert.deepEqual(await check(records), [
    "error: _xmpp-client._tcp.example.test points at xmpp.example.test:5999 but Lilt listens " +
    "for clients on port 5222 (c2s_interfaces): change it to " +
    '"_xmpp-client._tcp.example.test. 3600 IN SRV 10 20 5222 xmpp.example.test."',
  ]);
});

Deno.test("an SRV target without addresses, or with another machine's, is an error", async () => {
  const noAddress = { ...GOOD, "xmpp.example.test": {} };
  assert.deepEqual(await check(noAddress), [
    "error: xmpp.example.test (the target of _xmpp-client._tcp.example.test) has no A or " +
    'AAAA record: add "xmpp.example.test. 3600 IN A 127.0.0.1"',
    "error: xmpp.example.test (the target of _xmpps-client._tcp.example.test) has no A or " +
    'AAAA record: add "xmpp.example.test. 3600 IN A 127.0.0.1"',
  ]);
  const foreign = { ...GOOD, "xmpp.example.test": { a: ["203.0.113.5"] } };
  const lines = await check(foreign);
  assert.equal(lines.length, 2);
  assert.equal(
    lines[0],
    "error: xmpp.example.test (the target of _xmpp-client._tcp.example.test) resolves to " +
      "203.0.113.5, not to this server (this server's are 127.0.0.1): correct the record, or " +
      "if this server is behind NAT name its public address with --address",
  );
  // Behind NAT: the public address named with --address is this server's.
  assert.deepEqual(await check(foreign, {}, { addresses: ["203.0.113.5"] }), []);
  // One foreign address among ours is a warning.
  const mixed = { ...GOOD, "xmpp.example.test": { a: ["127.0.0.1", "203.0.113.9"] } };
  const mixedLines = await check(mixed);
  assert.equal(mixedLines.length, 2);
  assert.match(mixedLines[0], /^warning: xmpp\.example\.test .* also resolves to 203\.0\.113\.9/);
});

Deno.test("wildcard listeners accept on the machine's addresses", async () => {
  const records = { ...GOOD, "xmpp.example.test": { a: ["198.51.100.7"] } };
  const listeners = 'c2s_interfaces = ["*:5222"]\nc2s_direct_tls_interfaces = ["*:5223"]';
  assert.deepEqual(
    await check(records, { listeners }, { machineAddresses: ["127.0.0.1", "198.51.100.7"] }),
    [],
  );
  const lines = await check(records, { listeners }, {
    machineAddresses: ["127.0.0.1", "10.1.1.1"],
  });
  assert.match(
    lines[0],
    /resolves to 198\.51\.100\.7, not to this server \(this server's are 127\.0\.0\.1, 10\.1\.1\.1\)/,
  );
});

Deno.test("a host without A/AAAA: an error when clients fall back to it, else a warning", async () => {
  const records: Record<string, DnsRecords> = { ...GOOD, "example.test": {} };
  assert.deepEqual(await check(records), [
    "warning: example.test has no A or AAAA record; its SRV records lead to the server, but " +
    'clients that skip SRV do not: add "example.test. 3600 IN A 127.0.0.1"',
  ]);
  delete records["_xmpp-client._tcp.example.test"];
  assert.deepEqual(await check(records), [
    "error: example.test has no A or AAAA record (without SRV records example.test itself is " +
    'connected to): add "example.test. 3600 IN A 127.0.0.1"',
  ]);
  // With the fallback, the host's own address must be this server's.
  const elsewhere = { ...records, "example.test": { a: ["192.0.2.44"] } };
  assert.match(
    (await check(elsewhere))[0],
    /^error: example\.test resolves to 192\.0\.2\.44, not to this server/,
  );
});

Deno.test('an SRV record saying "service not offered" for a served service is an error', async () => {
  const records = {
    ...GOOD,
    "_xmpp-client._tcp.example.test": { srv: [{ priority: 0, weight: 0, port: 0, target: "." }] },
  };
  assert.deepEqual(await check(records), [
    'error: _xmpp-client._tcp.example.test says the service is not offered (target ".") but ' +
    "Lilt listens on port 5222 (c2s_interfaces): replace it with " +
    '"_xmpp-client._tcp.example.test. 3600 IN SRV 0 5 5222 example.test."',
  ]);
});

const FEDERATION = `c2s_interfaces = ["127.0.0.1:5222"]
c2s_direct_tls_interfaces = ["127.0.0.1:5223"]
s2s_interfaces = ["127.0.0.1:5269"]`;

Deno.test("with federation: server SRV records and components reachable by remote servers", async () => {
  const extra = '[[component]]\ndomain = "upload.example.test"\nmodules = ["upload"]\n' +
    '[[component]]\ndomain = "gw.example.test"\nsecret = "s3cret"\n';
  const records: Record<string, DnsRecords> = {
    ...GOOD,
    "_xmpp-server._tcp.example.test": {
      srv: [{ priority: 0, weight: 5, port: 5269, target: "xmpp.example.test" }],
    },
    "_xmpp-server._tcp.upload.example.test": {
      srv: [{ priority: 0, weight: 5, port: 5269, target: "xmpp.example.test" }],
    },
  };
  assert.deepEqual(await check(records, { listeners: FEDERATION, extra }), [
    "error: Component gw.example.test cannot be found by remote servers: it has no " +
    "_xmpp-server._tcp SRV record and no A or AAAA record; add " +
    '"_xmpp-server._tcp.gw.example.test. 3600 IN SRV 0 5 5269 example.test." or ' +
    '"gw.example.test. 3600 IN A 127.0.0.1"',
  ]);
  // An A record pointing here is enough for a component (remote servers fall back to 5269).
  records["gw.example.test"] = { a: ["127.0.0.1"] };
  assert.deepEqual(await check(records, { listeners: FEDERATION, extra }), []);
  // A server SRV record to the wrong port.
  records["_xmpp-server._tcp.example.test"] = {
    srv: [{ priority: 0, weight: 5, port: 5270, target: "xmpp.example.test" }],
  };
  assert.match(
    (await check(records, { listeners: FEDERATION, extra }))[0],
    /^error: _xmpp-server\._tcp\.example\.test points at xmpp\.example\.test:5270 but Lilt listens for remote servers on port 5269 \(s2s_interfaces\)/,
  );
});

Deno.test("server SRV records while federation is off are a warning; components are not checked", async () => {
  const records: Record<string, DnsRecords> = {
    ...GOOD,
    "_xmpp-server._tcp.example.test": {
      srv: [{ priority: 0, weight: 5, port: 5269, target: "xmpp.example.test" }],
    },
  };
  const extra = '[[component]]\ndomain = "gw.example.test"\nsecret = "s3cret"\n';
  assert.deepEqual(await check(records, { extra }), [
    "warning: _xmpp-server._tcp.example.test points remote servers at xmpp.example.test:5269 " +
    "but Lilt has no s2s_interfaces: remove the record, or set s2s_interfaces",
  ]);
  // A host with s2s = false on a federating server.
  const lines = await check(records, { listeners: FEDERATION, hostToml: "s2s = false" });
  assert.deepEqual(lines, [
    "warning: _xmpp-server._tcp.example.test points remote servers at xmpp.example.test:5269 " +
    "but s2s = false for this host: remove the record, or set s2s = true",
  ]);
});

Deno.test("a nameserver that does not answer is reported, not waited for forever", async () => {
  const records: Record<string, DnsRecords> = {};
  for (const name of Object.keys(GOOD)) records[name] = { silent: true };
  const lines = await check(records);
  assert.ok(lines.length > 0);
  for (const line of lines) {
    assert.match(line, /^error: Cannot look up .* timed out; check dns_nameservers/);
  }
});
