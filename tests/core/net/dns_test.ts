// Tests for the federation resolver: RFC 2782 ordering (statistically, with a seeded random
// source), XEP-0368 merging, "." targets, fallback and error kinds, against a loopback responder.

import assert from "node:assert/strict";
import { parseConfigText } from "../../../core/config.ts";
import {
  DnsError,
  DnsNoRecordsError,
  DnsTimeoutError,
  orderSrvRecords,
  Resolver,
  type SrvRecord,
} from "../../../core/net/dns.ts";
import {
  type DnsRecords,
  type DnsResponder,
  startDnsResponder,
} from "../../helpers/dns_responder.ts";

/** A small deterministic PRNG (mulberry32), so statistical tests cannot flake. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function srv(priority: number, weight: number, target: string, port = 5269): SrvRecord {
  return { priority, weight, port, target };
}

/** Counts how often each target comes first. */
function firstPicks(orderings: SrvRecord[][]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const ordering of orderings) {
    counts.set(ordering[0].target, (counts.get(ordering[0].target) ?? 0) + 1);
  }
  return counts;
}

function assertShares(counts: Map<string, number>, expected: Record<string, number>, n: number) {
  for (const [target, share] of Object.entries(expected)) {
    const observed = (counts.get(target) ?? 0) / n;
    assert.ok(
      Math.abs(observed - share) <= 0.05,
      `${target} came first ${(observed * 100).toFixed(1)}% of the time, expected ${
        share * 100
      }% ± 5`,
    );
  }
}

async function withResponder(
  records: Record<string, DnsRecords>,
  body: (dns: DnsResponder, resolver: Resolver) => Promise<void>,
  random?: () => number,
): Promise<void> {
  const dns = await startDnsResponder(records);
  const resolver = new Resolver({ nameservers: [dns.address], timeoutMs: 300, tries: 1, random });
  try {
    await body(dns, resolver);
  } finally {
    await dns.close();
  }
}

Deno.test("weights 10/30/60 at one priority are picked first in proportion", () => {
  const records = [srv(10, 10, "a.test"), srv(10, 30, "b.test"), srv(10, 60, "c.test")];
  const random = seededRandom(1);
  const n = 2000;
  const orderings = Array.from({ length: n }, () => orderSrvRecords(records, random));
  assertShares(firstPicks(orderings), { "a.test": 0.1, "b.test": 0.3, "c.test": 0.6 }, n);
  for (const ordering of orderings) {
    assert.deepEqual(ordering.map((r) => r.target).sort(), ["a.test", "b.test", "c.test"]);
  }
});

Deno.test("priorities are always tried in ascending order whatever the weights", () => {
  const records = [
    srv(20, 100, "late.test"),
    srv(5, 1, "early-a.test"),
    srv(10, 50, "middle.test"),
    srv(5, 99, "early-b.test"),
  ];
  const random = seededRandom(2);
  for (let i = 0; i < 500; i++) {
    const ordered = orderSrvRecords(records, random);
    assert.deepEqual(ordered.map((r) => r.priority), [5, 5, 10, 20]);
  }
});

Deno.test("a zero-weight record is rarely first next to weighted ones, and never lost", () => {
  const records = [srv(0, 0, "zero.test"), srv(0, 50, "fifty.test"), srv(0, 50, "other.test")];
  const random = seededRandom(3);
  const n = 2000;
  const orderings = Array.from({ length: n }, () => orderSrvRecords(records, random));
  // RFC 2782: a random integer in [0, 100] selects the zero-weight record only when it is 0.
  assertShares(firstPicks(orderings), { "zero.test": 1 / 101, "fifty.test": 0.5 }, n);
  assert.ok(orderings.every((ordering) => ordering.length === 3));
  const zeroLast = orderings.filter((ordering) => ordering[2].target === "zero.test").length;
  assert.ok(zeroLast / n > 0.9, "the zero-weight record usually comes last");
});

Deno.test("the selection follows the running sums exactly for a given random number", () => {
  const records = [srv(1, 0, "zero.test"), srv(1, 10, "ten.test"), srv(1, 30, "thirty.test")];
  // Total 40; running sums in RFC order (zero first): 0, 10, 40. random() * 41 floors to the pick.
  const pickFor = (value: number) => orderSrvRecords(records, () => value)[0].target;
  assert.equal(pickFor(0), "zero.test"); // pick 0
  assert.equal(pickFor(1 / 41), "ten.test"); // pick 1
  assert.equal(pickFor(10.5 / 41), "ten.test"); // pick 10
  assert.equal(pickFor(11.5 / 41), "thirty.test"); // pick 11
  assert.equal(pickFor(0.999999), "thirty.test"); // pick 40
});

Deno.test("records that all weigh zero are ordered uniformly", () => {
  const records = [srv(1, 0, "a.test"), srv(1, 0, "b.test"), srv(1, 0, "c.test")];
  const random = seededRandom(4);
  const n = 2000;
  const orderings = Array.from({ length: n }, () => orderSrvRecords(records, random));
  assertShares(firstPicks(orderings), { "a.test": 1 / 3, "b.test": 1 / 3, "c.test": 1 / 3 }, n);
});

Deno.test("SRV answers from the wire are ordered by priority and weight", async () => {
  await withResponder(
    {
      "_xmpp-server._tcp.weighted.test": {
        srv: [
          srv(10, 10, "a.weighted.test", 5001),
          srv(10, 30, "b.weighted.test", 5002),
          srv(10, 60, "c.weighted.test", 5003),
          srv(20, 100, "backup.weighted.test", 5004),
          srv(5, 0, "primary.weighted.test", 5000),
        ],
      },
    },
    async (_dns, resolver) => {
      const n = 2000;
      const orderings: SrvRecord[][] = [];
      for (let batch = 0; batch < n / 100; batch++) {
        orderings.push(
          ...await Promise.all(
            Array.from({ length: 100 }, () => resolver.srv("_xmpp-server._tcp.weighted.test")),
          ),
        );
      }
      for (const ordering of orderings) {
        assert.deepEqual(ordering.map((r) => r.priority), [5, 10, 10, 10, 20]);
        assert.deepEqual(ordering[0], srv(5, 0, "primary.weighted.test", 5000));
        assert.equal(ordering[4].target, "backup.weighted.test");
      }
      const seconds = orderings.map((ordering) => ordering.slice(1));
      assertShares(
        firstPicks(seconds),
        { "a.weighted.test": 0.1, "b.weighted.test": 0.3, "c.weighted.test": 0.6 },
        n,
      );
    },
    seededRandom(5),
  );
});

Deno.test("both SRV sets are mixed into one order, each target marked direct TLS or not", async () => {
  await withResponder(
    {
      "_xmpps-server._tcp.mixed.test": {
        srv: [srv(5, 0, "tls.mixed.test", 5270), srv(20, 0, "tls-backup.mixed.test", 443)],
      },
      "_xmpp-server._tcp.mixed.test": {
        srv: [srv(10, 0, "plain.mixed.test", 5269)],
      },
    },
    async (_dns, resolver) => {
      const result = await resolver.xmppServerTargets("mixed.test");
      assert.equal(result.source, "srv");
      assert.deepEqual(result.targets, [
        { host: "tls.mixed.test", port: 5270, directTls: true, priority: 5, weight: 0 },
        { host: "plain.mixed.test", port: 5269, directTls: false, priority: 10, weight: 0 },
        { host: "tls-backup.mixed.test", port: 443, directTls: true, priority: 20, weight: 0 },
      ]);
    },
  );
});

Deno.test("weights are mixed across direct TLS and STARTTLS records of one priority", async () => {
  await withResponder(
    {
      "_xmpps-server._tcp.split.test": { srv: [srv(1, 75, "tls.split.test", 5270)] },
      "_xmpp-server._tcp.split.test": { srv: [srv(1, 25, "plain.split.test", 5269)] },
    },
    async (_dns, resolver) => {
      const n = 1000;
      let directFirst = 0;
      for (let batch = 0; batch < n / 100; batch++) {
        const results = await Promise.all(
          Array.from({ length: 100 }, () => resolver.xmppServerTargets("split.test")),
        );
        directFirst += results.filter((result) => result.targets[0].directTls).length;
      }
      assert.ok(Math.abs(directFirst / n - 0.75) <= 0.05, `direct TLS first ${directFirst}/${n}`);
    },
    seededRandom(6),
  );
});

Deno.test("a '.' STARTTLS target with no direct TLS records means no service and no fallback", async () => {
  await withResponder(
    {
      "_xmpp-server._tcp.closed.test": { srv: [srv(0, 0, ".", 0)] },
      "closed.test": { a: ["127.0.0.1"] },
    },
    async (_dns, resolver) => {
      const result = await resolver.xmppServerTargets("closed.test");
      assert.equal(result.source, "unavailable");
      assert.deepEqual(result.targets, []);
      assert.match(result.reason, /'_xmpp-server\._tcp\.closed\.test' is "\."/);
      assert.deepEqual(await resolver.srv("_xmpp-server._tcp.closed.test"), [srv(0, 0, ".", 0)]);
    },
  );
});

Deno.test("a '.' direct TLS target only turns direct TLS off", async () => {
  await withResponder(
    {
      "_xmpps-server._tcp.nodirect.test": { srv: [srv(0, 0, ".", 0)] },
      "_xmpp-server._tcp.nodirect.test": { srv: [srv(0, 0, "xmpp.nodirect.test", 5269)] },
    },
    async (_dns, resolver) => {
      const result = await resolver.xmppServerTargets("nodirect.test");
      assert.equal(result.source, "srv");
      assert.deepEqual(result.targets, [
        { host: "xmpp.nodirect.test", port: 5269, directTls: false, priority: 0, weight: 0 },
      ]);
    },
  );
});

Deno.test("a '.' direct TLS target and no STARTTLS records forbid the A/AAAA fallback", async () => {
  await withResponder(
    { "_xmpps-server._tcp.dotonly.test": { srv: [srv(0, 0, ".", 0)] } },
    async (_dns, resolver) => {
      const result = await resolver.xmppServerTargets("dotonly.test");
      assert.equal(result.source, "unavailable");
      assert.deepEqual(result.targets, []);
    },
  );
});

Deno.test("no SRV records (NXDOMAIN or NODATA) fall back to the domain on 5269", async () => {
  await withResponder(
    {
      "nodata.test": { a: ["127.0.0.1"] },
      "_xmpp-server._tcp.nodata.test": {},
    },
    async (_dns, resolver) => {
      for (const domain of ["nodata.test", "nxdomain.test"]) {
        const result = await resolver.xmppServerTargets(domain);
        assert.equal(result.source, "fallback");
        assert.deepEqual(result.targets, [
          { host: domain, port: 5269, directTls: false, priority: 0, weight: 0 },
        ]);
        assert.match(result.reason, /no SRV records/);
      }
    },
  );
});

Deno.test("SRV lookups that time out fall back (RFC 6120 §3.2.1) and say why", async () => {
  await withResponder(
    {
      "_xmpps-server._tcp.silent.test": { silent: true },
      "_xmpp-server._tcp.silent.test": { silent: true },
    },
    async (_dns, resolver) => {
      const result = await resolver.xmppServerTargets("silent.test");
      assert.equal(result.source, "fallback");
      assert.equal(result.targets[0].host, "silent.test");
      assert.match(result.reason, /timed out/);
    },
  );
});

Deno.test("a timed-out direct TLS lookup does not hide the STARTTLS records", async () => {
  await withResponder(
    {
      "_xmpps-server._tcp.half.test": { silent: true },
      "_xmpp-server._tcp.half.test": { srv: [srv(0, 0, "xmpp.half.test", 5269)] },
    },
    async (_dns, resolver) => {
      const result = await resolver.xmppServerTargets("half.test");
      assert.equal(result.source, "srv");
      assert.deepEqual(result.targets.map((t) => t.host), ["xmpp.half.test"]);
      assert.match(result.reason, /timed out/);
    },
  );
});

Deno.test("lookup failures are typed: timeout versus no records", async () => {
  await withResponder(
    { "silent.test": { silent: true }, "empty.test": {} },
    async (_dns, resolver) => {
      await assert.rejects(resolver.srv("_xmpp-server._tcp.unknown.test"), (error) => {
        assert.ok(error instanceof DnsNoRecordsError && error instanceof DnsError);
        assert.equal(error.kind, "no-records");
        assert.equal(error.type, "SRV");
        return true;
      });
      await assert.rejects(resolver.srv("silent.test"), (error) => {
        assert.ok(error instanceof DnsTimeoutError);
        assert.equal(error.kind, "timeout");
        assert.equal(error.query, "silent.test");
        assert.equal(error.message, "DNS lookup of SRV records for 'silent.test' timed out");
        return true;
      });
      await assert.rejects(resolver.addresses("empty.test"), (error) => {
        assert.ok(error instanceof DnsNoRecordsError);
        assert.equal(error.message, "No A or AAAA records for 'empty.test'");
        return true;
      });
      await assert.rejects(resolver.addresses("silent.test"), DnsTimeoutError);
    },
  );
});

Deno.test("addresses gives both families, and one family failing keeps the other", async () => {
  await withResponder(
    {
      "dual.test": { a: ["127.0.0.1", "127.0.0.2"], aaaa: ["::1", "2001:db8::ffff:1.2.3.4"] },
      "v4only.test": { a: ["127.0.0.1"] },
      "v6only.test": { aaaa: ["::1"] },
    },
    async (dns, resolver) => {
      const dual = await resolver.addresses("dual.test");
      assert.deepEqual(dual.v6, ["::1", "2001:db8::ffff:102:304"]);
      assert.deepEqual(dual.v4, ["127.0.0.1", "127.0.0.2"]);
      const v4 = await resolver.addresses("v4only.test");
      assert.deepEqual([v4.v6, v4.v4], [[], ["127.0.0.1"]]);
      assert.ok(v4.errors.v6 instanceof DnsNoRecordsError);
      const v6 = await resolver.addresses("v6only.test");
      assert.deepEqual([v6.v6, v6.v4], [["::1"], []]);
      const literal = await resolver.addresses("192.0.2.7");
      assert.deepEqual([literal.v6, literal.v4], [[], ["192.0.2.7"]]);
      assert.equal(dns.queries.get("192.0.2.7/A"), undefined, "IP literals are not looked up");
    },
  );
});

Deno.test("dns_nameservers accepts IP and port pairs and refuses anything else", () => {
  const host = `\n[[host]]\ndomain = "localhost"\n`;
  const ok = parseConfigText(`dns_nameservers = ["127.0.0.1:5353", "[::1]:53"]\n${host}`, "c.toml");
  assert.deepEqual(ok.problems, []);
  assert.deepEqual(ok.config!.get("dns_nameservers"), ["127.0.0.1:5353", "[::1]:53"]);
  const fallback = parseConfigText(host, "c.toml");
  assert.deepEqual(fallback.config!.get("dns_nameservers"), []);
  for (const bad of ["dns.example:53", "127.0.0.1", "*:53", "127.0.0.1:0"]) {
    const result = parseConfigText(`dns_nameservers = ["${bad}"]\n${host}`, "c.toml");
    assert.equal(result.config, undefined, bad);
    assert.match(result.problems[0].message, /invalid nameserver/);
  }
});

Deno.test("[dns] nameservers is another spelling of dns_nameservers, checked the same way", () => {
  const host = `\n[[host]]\ndomain = "localhost"\n`;
  const ok = parseConfigText(`[dns]\nnameservers = ["127.0.0.1:5353"]\n${host}`, "c.toml");
  assert.deepEqual(ok.problems, []);
  assert.deepEqual(ok.config!.get("dns_nameservers"), ["127.0.0.1:5353"]);
  const bad = parseConfigText(`[dns]\nnameservers = ["nowhere"]\n${host}`, "c.toml");
  assert.equal(bad.config, undefined);
  assert.match(bad.problems[0].message, /invalid nameserver/);
  assert.equal(bad.problems[0].line, 2);
  const both = parseConfigText(
    `dns_nameservers = ["127.0.0.1:53"]\n[dns]\nnameservers = ["127.0.0.1:5353"]\n${host}`,
    "c.toml",
  );
  assert.match(both.problems[0].message, /either 'dns.nameservers' or 'dns_nameservers'/);
  const typo = parseConfigText(`[dns]\nnameserver = ["127.0.0.1:53"]\n${host}`, "c.toml");
  assert.match(typo.problems[0].message, /unknown option 'dns.nameserver'.*nameservers/);
});
