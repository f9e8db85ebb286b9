// Acceptance of `lilt check` (issue 17, point 4): a real `lilt start` process with a CA-issued
// certificate and fixed ports, DNS served by a loopback responder (dns_nameservers), and
// `lilt check all|dns|connectivity` run as an operator runs them, on a good and a broken setup.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { type DnsRecords, startDnsResponder } from "./helpers/dns_responder.ts";
import { type CommandOutput, finish, startLiltProcess } from "./helpers/lilt_process.ts";
import { createTestCa } from "./helpers/test_ca.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const DAY_MS = 24 * 3600_000;

/** The test CA's file, trusted by the certificate check through $SSL_CERT_FILE. */
let trustedCa = "";

/** Runs `main.ts ARGS...` to its end. */
async function lilt(...args: string[]): Promise<CommandOutput> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}main.ts`, ...args],
    cwd: ROOT,
    env: { SSL_CERT_FILE: trustedCa },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return await finish(child);
}

/** Ports that were free a moment ago (all bound at once so they differ, then released). */
function freePorts(count: number): number[] {
  const listeners = Array.from(
    { length: count },
    () => Deno.listen({ hostname: "127.0.0.1", port: 0 }),
  );
  const ports = listeners.map((l) => (l.addr as Deno.NetAddr).port);
  listeners.forEach((l) => l.close());
  return ports;
}

function lines(text: string): string[] {
  return text.split("\n").filter((line) => line !== "");
}

Deno.test("lilt check all passes on a good setup and names every fault of a broken one", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lilt-check-" });
  const ca = await createTestCa({ notAfter: new Date(Date.now() + 400 * DAY_MS) });
  const cert = await ca.issue({
    names: ["example.test", "gw.example.test"],
    notAfter: new Date(Date.now() + 90 * DAY_MS),
  });
  const files = await cert.writeTo(dir, "example.test");
  trustedCa = `${dir}/ca.pem`;
  await ca.writeCa(trustedCa);
  const [c2s, tls, s2s, component, http, unused] = freePorts(6);
  const good: Record<string, DnsRecords> = {
    "example.test": { a: ["127.0.0.1"] },
    "xmpp.example.test": { a: ["127.0.0.1"] },
    "_xmpp-client._tcp.example.test": {
      srv: [{ priority: 0, weight: 5, port: c2s, target: "xmpp.example.test" }],
    },
    "_xmpps-client._tcp.example.test": {
      srv: [{ priority: 0, weight: 5, port: tls, target: "xmpp.example.test" }],
    },
    "_xmpp-server._tcp.example.test": {
      srv: [{ priority: 0, weight: 5, port: s2s, target: "xmpp.example.test" }],
    },
    "_xmpp-server._tcp.gw.example.test": {
      srv: [{ priority: 0, weight: 5, port: s2s, target: "xmpp.example.test" }],
    },
  };
  const dns = await startDnsResponder(good);
  const configText = (extra: string) =>
    `data_dir = ${JSON.stringify(`${dir}/data`)}
modules = ["disco", "ping", "roster", "presence"]
c2s_interfaces = ["127.0.0.1:${c2s}"]
c2s_direct_tls_interfaces = ["127.0.0.1:${tls}"]
s2s_interfaces = ["127.0.0.1:${s2s}"]
component_interfaces = ["127.0.0.1:${component}"]
http_interfaces = ["127.0.0.1:${http}"]
dns_nameservers = ["${dns.address}"]
${extra}
[log]
level = "warning"

[[host]]
domain = "example.test"
certificate = ${JSON.stringify(files.certFile)}
key = ${JSON.stringify(files.keyFile)}

[[component]]
domain = "gw.example.test"
secret = "gateway-secret"
`;
  const goodFile = `${dir}/lilt.toml`;
  await Deno.writeTextFile(goodFile, configText(""));
  const server = await startLiltProcess(goodFile);
  try {
    // The good setup: every part OK, nothing on stderr, exit 0.
    const ok = await lilt("check", "all", "-c", goodFile);
    assert.equal(ok.stderr, "", ok.stderr);
    assert.deepEqual(lines(ok.stdout), [
      `${goodFile}: OK (1 host(s))`,
      "certs: OK",
      "dns: OK",
      "connectivity: OK",
    ]);
    assert.equal(ok.code, 0);

    // The dns section of the shell sees the same records through the server's resolver.
    const shell = await lilt("shell", "dns", "srv", "example.test", "--json", "-c", goodFile);
    assert.equal(shell.code, 0, shell.stderr);
    assert.deepEqual(JSON.parse(shell.stdout)[0], {
      name: "_xmpp-client._tcp.example.test",
      service: "client (STARTTLS)",
      priority: 0,
      weight: 5,
      port: c2s,
      target: "xmpp.example.test",
      addresses: "127.0.0.1",
    });

    // Warnings alone exit 0: without the direct TLS record clients just do not use it.
    dns.set("_xmpps-client._tcp.example.test", {});
    const warned = await lilt("check", "dns", "-c", goodFile);
    assert.deepEqual(lines(warned.stderr), [
      "dns: warning: _xmpps-client._tcp.example.test has no SRV record, so clients (direct " +
      `TLS) will not find port ${tls} (XEP-0368): add "_xmpps-client._tcp.example.test. 3600 ` +
      `IN SRV 0 5 ${tls} example.test."`,
    ]);
    assert.deepEqual(lines(warned.stdout), ["dns: OK (1 warning(s))"]);
    assert.equal(warned.code, 0);

    // The broken setup: no client SRV record (and the port is not 5222), the direct TLS
    // record on the wrong port, the host without an A record, and a listener the running
    // server does not have.
    dns.set("_xmpp-client._tcp.example.test", {});
    dns.set("_xmpps-client._tcp.example.test", {
      srv: [{ priority: 0, weight: 5, port: unused, target: "xmpp.example.test" }],
    });
    dns.set("example.test", {});
    const brokenFile = `${dir}/broken.toml`;
    await Deno.writeTextFile(
      brokenFile,
      configText("").replace(
        `component_interfaces = ["127.0.0.1:${component}"]`,
        `component_interfaces = ["127.0.0.1:${component}", "127.0.0.1:${unused}"]`,
      ),
    );
    const broken = await lilt("check", "all", "-c", brokenFile);
    assert.deepEqual(lines(broken.stdout), [
      `${brokenFile}: OK (1 host(s))`,
      "certs: OK",
      "dns: FAILED (3 error(s))",
      "connectivity: FAILED (1 error(s))",
    ]);
    assert.deepEqual(lines(broken.stderr), [
      "dns: error: example.test has no A or AAAA record (HTTP requests for example.test go " +
      'to it): add "example.test. 3600 IN A 127.0.0.1"',
      "dns: error: _xmpp-client._tcp.example.test has no SRV record, so clients try " +
      `example.test:5222, but Lilt listens on port ${c2s} (c2s_interfaces): add ` +
      `"_xmpp-client._tcp.example.test. 3600 IN SRV 0 5 ${c2s} example.test."`,
      "dns: error: _xmpps-client._tcp.example.test points at xmpp.example.test:" +
      `${unused} but Lilt listens for clients (direct TLS) on port ${tls} ` +
      "(c2s_direct_tls_interfaces): change it to " +
      `"_xmpps-client._tcp.example.test. 3600 IN SRV 0 5 ${tls} xmpp.example.test."`,
      `connectivity: error: Nothing accepts connections on 127.0.0.1:${unused} ` +
      `(component_interfaces "127.0.0.1:${unused}"): connection refused; restart Lilt if ` +
      "this listener was added after it started, and check its log",
    ]);
    assert.equal(broken.code, 1);
  } finally {
    await server.stop();
  }
  try {
    // With the server stopped, connectivity says so in one line.
    const down = await lilt("check", "connectivity", "-c", goodFile);
    assert.deepEqual(lines(down.stderr), [
      `connectivity: error: Lilt is not running on ${goodFile}: its admin socket ` +
      `${dir}/data/lilt.sock does not answer; start it with 'lilt start' (or its service) ` +
      "and check again",
    ]);
    assert.deepEqual(lines(down.stdout), ["connectivity: FAILED (1 error(s))"]);
    assert.equal(down.code, 1);
    // Bad arguments get the usage, not a crash.
    const bad = await lilt("check", "dns", "--address", "not-an-ip", "-c", goodFile);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--address expects an IP address, found 'not-an-ip'/);
    assert.equal((await lilt("check", "everything", "-c", goodFile)).code, 2);
  } finally {
    await dns.close();
    await Deno.remove(dir, { recursive: true });
  }
});
