// Tests for Happy Eyeballs over loopback: a blackholed address (a socket that never connects,
// injected through connectFn) loses to a working one, failures move on at once, errors name all.

import assert from "node:assert/strict";
import * as net from "node:net";
import {
  ConnectError,
  type ConnectRequest,
  happyEyeballs,
  type HappyEyeballsOptions,
} from "../../../core/net/connect.ts";
import { Resolver } from "../../../core/net/dns.ts";
import { type DnsRecords, startDnsResponder } from "../../helpers/dns_responder.ts";

/** A loopback TCP server that accepts and holds connections until closed. */
async function startServer(): Promise<
  { port: number; accepted: () => number; close(): Promise<void> }
> {
  const sockets = new Set<net.Socket>();
  let count = 0;
  const server = net.createServer((socket) => {
    count++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    accepted: () => count,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A port on 127.0.0.1 where nothing listens (connections are refused). */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * connectFn that blackholes the given addresses: their "sockets" never connect nor fail (no
 * packet leaves the process), like a host that drops SYNs. Other addresses connect for real.
 */
function blackholing(addresses: string[]) {
  const requests: ConnectRequest[] = [];
  const blackholes: net.Socket[] = [];
  const connectFn = (request: ConnectRequest): net.Socket => {
    requests.push(request);
    if (!addresses.includes(request.host)) {
      return net.connect({ host: request.host, port: request.port, family: request.family });
    }
    const socket = new net.Socket();
    blackholes.push(socket);
    return socket;
  };
  return { connectFn, requests, blackholes };
}

async function withDns<T>(
  records: Record<string, DnsRecords>,
  body: (resolver: Resolver) => Promise<T>,
): Promise<T> {
  const dns = await startDnsResponder(records);
  try {
    return await body(new Resolver({ nameservers: [dns.address], timeoutMs: 500, tries: 1 }));
  } finally {
    await dns.close();
  }
}

Deno.test("a working IPv4 address wins after one attempt delay over a blackholed IPv6 one", async () => {
  const server = await startServer();
  const hole = blackholing(["::1"]);
  try {
    await withDns({ "dual.test": { aaaa: ["::1"], a: ["127.0.0.1"] } }, async (resolver) => {
      const options: HappyEyeballsOptions = {
        resolver,
        connectFn: hole.connectFn,
        attemptDelayMs: 50,
        // Far beyond the attempt delay: winning at all means the blackhole was not waited for.
        timeoutMs: 5000,
      };
      const result = await happyEyeballs([{ host: "dual.test", port: server.port }], options);
      try {
        assert.equal(result.address, "127.0.0.1");
        assert.equal(result.family, 4);
        assert.equal(result.socket.remotePort, server.port);
        assert.deepEqual(
          hole.requests.map((request) => [request.host, request.family]),
          [["::1", 6], ["127.0.0.1", 4]],
          "IPv6 is tried first",
        );
        assert.deepEqual(
          result.attempts.map(({ address, outcome, startedBy }) => ({
            address,
            outcome,
            startedBy,
          })),
          [
            { address: "::1", outcome: "cancelled", startedBy: "first" },
            { address: "127.0.0.1", outcome: "connected", startedBy: "delay" },
          ],
        );
        assert.ok(hole.blackholes.every((socket) => socket.destroyed), "the loser is destroyed");
      } finally {
        result.socket.destroy();
      }
    });
  } finally {
    await server.close();
  }
});

Deno.test("targets are tried in order and the winner's target is returned", async () => {
  const server = await startServer();
  const hole = blackholing(["127.0.0.3"]);
  try {
    const targets = [
      { host: "127.0.0.3", port: 5269, directTls: true },
      { host: "127.0.0.1", port: server.port, directTls: false },
    ];
    const result = await happyEyeballs(targets, {
      connectFn: hole.connectFn,
      attemptDelayMs: 20,
      timeoutMs: 5000,
    });
    try {
      assert.equal(result.target, targets[1]);
      assert.equal(result.target.directTls, false);
      assert.deepEqual(hole.requests.map((request) => request.host), ["127.0.0.3", "127.0.0.1"]);
      assert.equal(server.accepted(), 1);
    } finally {
      result.socket.destroy();
    }
  } finally {
    await server.close();
  }
});

Deno.test("a refused attempt starts the next one at once instead of after the delay", async () => {
  const server = await startServer();
  const refused = await closedPort();
  try {
    const result = await happyEyeballs(
      [{ host: "127.0.0.1", port: refused }, { host: "127.0.0.1", port: server.port }],
      // The delay outlasts the overall timeout: only moving on at the failure can succeed.
      { attemptDelayMs: 60_000, timeoutMs: 5000 },
    );
    try {
      assert.equal(result.target.port, server.port);
      assert.deepEqual(
        result.attempts.map(({ port, outcome, startedBy, reason }) => ({
          port,
          outcome,
          startedBy,
          reason,
        })),
        [
          { port: refused, outcome: "failed", startedBy: "first", reason: "connection refused" },
          { port: server.port, outcome: "connected", startedBy: "failure", reason: undefined },
        ],
      );
    } finally {
      result.socket.destroy();
    }
  } finally {
    await server.close();
  }
});

Deno.test("when every attempt fails the error names each address and why", async () => {
  const refused = await closedPort();
  await withDns({ "dual.test": { aaaa: ["::1"], a: ["127.0.0.1"] } }, async (resolver) => {
    const targets = [
      { host: "missing.test", port: 5269 },
      { host: "dual.test", port: refused },
      { host: "127.0.0.1", port: refused },
    ];
    await assert.rejects(happyEyeballs(targets, { resolver, timeoutMs: 5000 }), (error) => {
      assert.ok(error instanceof ConnectError);
      assert.equal(error.timedOut, false);
      assert.deepEqual(
        error.attempts.map(({ host, address, outcome }) => [host, address, outcome]),
        [
          ["missing.test", undefined, "unresolved"],
          ["dual.test", "::1", "failed"],
          ["dual.test", "127.0.0.1", "failed"],
          ["127.0.0.1", "127.0.0.1", "failed"],
        ],
      );
      assert.equal(
        error.message,
        "Cannot connect to any address: " +
          "missing.test: No A or AAAA records for 'missing.test'; " +
          `dual.test ([::1]:${refused}) failed: connection refused; ` +
          `dual.test (127.0.0.1:${refused}) failed: connection refused; ` +
          `127.0.0.1:${refused} failed: connection refused`,
      );
      return true;
    });
  });
});

Deno.test("the overall timeout cancels attempts that never answer", async () => {
  const hole = blackholing(["::1", "127.0.0.1"]);
  const targets = [{ host: "::1", port: 5269 }, { host: "127.0.0.1", port: 5269 }];
  await assert.rejects(
    happyEyeballs(targets, { connectFn: hole.connectFn, attemptDelayMs: 10, timeoutMs: 100 }),
    (error) => {
      assert.ok(error instanceof ConnectError);
      assert.equal(error.timedOut, true);
      assert.deepEqual(error.attempts.map((attempt) => attempt.outcome), [
        "cancelled",
        "cancelled",
      ]);
      assert.match(
        error.message,
        /^Connection attempts timed out after 100 ms: \[::1\]:5269 cancelled/,
      );
      return true;
    },
  );
  assert.equal(hole.blackholes.length, 2);
  assert.ok(hole.blackholes.every((socket) => socket.destroyed));
});

Deno.test("aborting stops every pending attempt", async () => {
  const hole = blackholing(["127.0.0.1"]);
  const controller = new AbortController();
  const race = happyEyeballs([{ host: "127.0.0.1", port: 5269 }], {
    connectFn: hole.connectFn,
    signal: controller.signal,
  });
  setTimeout(() => controller.abort(), 10);
  await assert.rejects(race, /^ConnectError: Connection attempts aborted/);
  assert.ok(hole.blackholes[0].destroyed);
});

Deno.test("an empty target list fails at once", async () => {
  await assert.rejects(happyEyeballs([]), {
    name: "ConnectError",
    message: "No targets to connect to",
  });
});

Deno.test("SRV targets found by the resolver feed the race in priority order", async () => {
  const server = await startServer();
  const refused = await closedPort();
  try {
    await withDns(
      {
        "_xmpp-server._tcp.remote.test": {
          srv: [
            { priority: 10, weight: 0, port: server.port, target: "live.remote.test" },
            { priority: 0, weight: 0, port: refused, target: "dead.remote.test" },
          ],
        },
        "dead.remote.test": { a: ["127.0.0.1"] },
        "live.remote.test": { a: ["127.0.0.1"] },
      },
      async (resolver) => {
        const { targets } = await resolver.xmppServerTargets("remote.test");
        const result = await happyEyeballs(targets, { resolver, timeoutMs: 5000 });
        try {
          assert.equal(result.target.host, "live.remote.test");
          assert.equal(result.target.directTls, false);
          assert.deepEqual(
            result.attempts.map(({ host, outcome }) => [host, outcome]),
            [["dead.remote.test", "failed"], ["live.remote.test", "connected"]],
          );
        } finally {
          result.socket.destroy();
        }
      },
    );
  } finally {
    await server.close();
  }
});
