// HTTPS over real sockets: each host's certificate chosen by SNI, routes seeing a secure
// request and the client's address, X-Forwarded-For believed only from trusted proxies, and the
// header and idle deadlines closing connections that hold the server without a request.

import assert from "node:assert/strict";
import * as tls from "node:tls";
import type { ModuleAPI } from "../../../core/modules.ts";
import { AddressRanges } from "../../../core/net/address_ranges.ts";
import { forwardedPeer } from "../../../core/http/listener.ts";
import { rawRequest } from "../../helpers/http_request.ts";
import { startTestServer, type TestServer } from "../../helpers/test_server.ts";

/** A server with HTTP and HTTPS listeners and a route that reports what it saw. */
async function startWithWhoami(globalToml = ""): Promise<TestServer> {
  const t = await startTestServer({
    modules: ["disco"],
    globalToml: 'http_interfaces = ["127.0.0.1:0"]\nhttps_interfaces = ["127.0.0.1:0"]\n' +
      globalToml,
    extraToml: '[[host]]\ndomain = "other.test"\n',
  });
  for (const domain of ["localhost", "other.test"]) {
    t.server.modules.register(`whoami_${domain}`, {
      default(m: ModuleAPI) {
        m.httpRoute(
          "GET",
          "/whoami",
          (_request, info) => Response.json({ host: info.host, ip: info.ip, secure: info.secure }),
        );
      },
    });
    await t.server.modules.load(t.server.hosts.get(domain)!, `whoami_${domain}`);
  }
  return t;
}

/** Opens TLS to the HTTPS port with SNI `servername` (self-signed test certificates). */
function connectTls(port: number, servername: string): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: "127.0.0.1",
      port,
      servername,
      rejectUnauthorized: false,
      ALPNProtocols: ["http/1.1"],
    }, () => resolve(socket));
    socket.once("error", reject);
  });
}

/** Reads until the server closes the connection. */
function readAll(socket: tls.TLSSocket): Promise<string> {
  return new Promise((resolve) => {
    let text = "";
    socket.on("data", (chunk: Uint8Array) => text += new TextDecoder().decode(chunk));
    socket.on("error", () => {});
    socket.once("close", () => resolve(text));
  });
}

/** One GET over HTTPS: status, JSON body and the DNS names of the certificate presented. */
async function httpsGet(
  port: number,
  servername: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string; certNames: string }> {
  const socket = await connectTls(port, servername);
  const certNames = socket.getPeerCertificate().subjectaltname ?? "";
  const done = readAll(socket);
  const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join("");
  socket.write(`GET ${path} HTTP/1.1\r\nHost: ${servername}\r\nConnection: close\r\n${extra}\r\n`);
  const text = await done;
  return {
    status: Number(text.slice(9, 12)),
    body: text.slice(text.indexOf("\r\n\r\n") + 4),
    certNames,
  };
}

Deno.test("HTTPS presents each host's certificate by SNI and routes by Host", async () => {
  const t = await startWithWhoami();
  try {
    const port = t.server.port("https");
    const local = await httpsGet(port, "localhost", "/whoami");
    assert.equal(local.status, 200);
    assert.match(local.certNames, /DNS:localhost\b/);
    assert.deepEqual(JSON.parse(local.body), { host: "localhost", ip: "127.0.0.1", secure: true });
    const other = await httpsGet(port, "other.test", "/whoami");
    assert.equal(other.status, 200);
    assert.match(other.certNames, /DNS:other\.test\b/);
    assert.equal(JSON.parse(other.body).host, "other.test");
    // fetch (rustls, its own certificate checks) speaks to it too, trusting the host's cert.
    const certPem = await Deno.readTextFile(`${t.dataDir}/certs/localhost.crt`).catch(() => "");
    if (certPem) {
      const client = Deno.createHttpClient({ caCerts: [certPem] });
      try {
        const response = await fetch(`https://localhost:${port}/whoami`, { client });
        assert.equal((await response.json()).secure, true);
      } finally {
        client.close();
      }
    }
    // Plain HTTP from loopback counts as secure (a TLS proxy on the same machine).
    const plain = await rawRequest(`http://127.0.0.1:${t.server.port("http")}/whoami`, "localhost");
    assert.equal(JSON.parse(plain.body).secure, true);
  } finally {
    await t.stop();
  }
});

Deno.test("X-Forwarded-For and -Proto count from trusted proxies only", async () => {
  const t = await startWithWhoami();
  try {
    const url = `http://127.0.0.1:${t.server.port("http")}/whoami`;
    // Loopback is trusted by default: the last untrusted hop is the client.
    const forwarded = await rawRequest(url, "localhost", {
      headers: {
        "X-Forwarded-For": "198.51.100.7, 203.0.113.5, 127.0.0.1",
        "X-Forwarded-Proto": "https",
      },
    });
    assert.deepEqual(JSON.parse(forwarded.body), {
      host: "localhost",
      ip: "203.0.113.5",
      secure: true,
    });
    const overHttps = await httpsGet(t.server.port("https"), "localhost", "/whoami", {
      "X-Forwarded-For": "[2001:db8::5]:4711",
    });
    assert.equal(JSON.parse(overHttps.body).ip, "2001:db8::5");
  } finally {
    await t.stop();
  }
  const untrusting = await startWithWhoami('http_trusted_proxies = ["10.0.0.0/8"]');
  try {
    const url = `http://127.0.0.1:${untrusting.server.port("http")}/whoami`;
    const ignored = await rawRequest(url, "localhost", {
      headers: { "X-Forwarded-For": "203.0.113.5", "X-Forwarded-Proto": "https" },
    });
    assert.equal(JSON.parse(ignored.body).ip, "127.0.0.1");
  } finally {
    await untrusting.stop();
  }
});

Deno.test("forwardedPeer: a remote trusted proxy's X-Forwarded-Proto makes the request https", () => {
  const trusted = AddressRanges.parse(["10.0.0.0/8"]);
  const request = (headers: Record<string, string>) =>
    new Request("http://chat.example/", { headers });
  const proxy = { ip: "10.1.1.1", https: false, local: false };
  assert.deepEqual(
    forwardedPeer(
      request({ "x-forwarded-for": "203.0.113.9, 10.2.2.2", "x-forwarded-proto": "https" }),
      proxy,
      trusted,
    ),
    { ip: "203.0.113.9", https: true, local: false },
  );
  assert.deepEqual(forwardedPeer(request({ "x-forwarded-proto": "http" }), proxy, trusted), proxy);
  // Everything forwarded is trusted: the leftmost hop is the client.
  assert.equal(
    forwardedPeer(request({ "x-forwarded-for": "10.3.3.3, 10.2.2.2" }), proxy, trusted).ip,
    "10.3.3.3",
  );
  // Not a trusted proxy: its headers are ignored.
  const stranger = { ip: "198.51.100.1", https: false, local: false };
  assert.deepEqual(
    forwardedPeer(
      request({ "x-forwarded-for": "203.0.113.9", "x-forwarded-proto": "https" }),
      stranger,
      trusted,
    ),
    stranger,
  );
});

Deno.test("HTTPS closes a connection whose headers do not arrive, and an idle one", async () => {
  const t = await startWithWhoami("http_header_timeout = 1\nhttp_idle_timeout = 2");
  try {
    const port = t.server.port("https");
    // Slowloris: headers started and never finished.
    const slow = await connectTls(port, "localhost");
    const slowClosed = readAll(slow);
    slow.write("GET /whoami HTTP/1.1\r\nHost: localhost\r\n");
    assert.equal(await slowClosed, "");
    // Keep-alive: one answered request, then nothing.
    const idle = await connectTls(port, "localhost");
    const idleText = readAll(idle);
    idle.write("GET /whoami HTTP/1.1\r\nHost: localhost\r\n\r\n");
    const text = await idleText;
    assert.match(text, /^HTTP\/1\.1 200/);
    assert.equal(text.match(/HTTP\/1\.1 /g)?.length, 1);
    // A client that connects and says nothing.
    const silent = await connectTls(port, "localhost");
    assert.equal(await readAll(silent), "");
  } finally {
    await t.stop();
  }
});

Deno.test("config: https_interfaces, http_trusted_proxies and the timeouts are checked", async () => {
  for (
    const [toml, pattern] of [
      ['https_interfaces = ["nowhere"]', /https_interfaces/],
      ['http_trusted_proxies = ["10.0.0.0/99"]', /http_trusted_proxies.*10\.0\.0\.0\/99/],
      ["http_header_timeout = 0", /http_header_timeout/],
    ] as const
  ) {
    await assert.rejects(
      () => startTestServer({ modules: [], globalToml: toml }),
      (error: Error) => pattern.test(error.message),
    );
  }
});
