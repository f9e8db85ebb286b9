// The HTTP server over real sockets: module routes by Host header, unknown host or route,
// the body size limit, and routes leaving with their module.

import assert from "node:assert/strict";
import type { ModuleAPI } from "../../../core/modules.ts";
import { hostFromHeader } from "../../../core/http/routes.ts";
import { startTestServer, type TestServer } from "../../helpers/test_server.ts";

/** Starts a server with an HTTP listener on port 0 and a module that echoes on /echo. */
async function startWithEcho(): Promise<{ t: TestServer; base: string }> {
  const t = await startTestServer({
    modules: ["disco"],
    globalToml: 'http_interfaces = ["127.0.0.1:0"]\nhttp_max_body_size = 2048',
    extraToml: '[[host]]\ndomain = "other.test"\n',
  });
  t.server.modules.register("echo_route", {
    default(m: ModuleAPI) {
      m.httpRoute("GET", "/hello", (_request, info) => new Response(`hello ${info.host}`));
      m.httpRoute("POST", "/echo", async (request) => new Response(await request.text()));
      m.httpRoute("GET", "/fail", () => {
        throw new Error("handler broke");
      });
    },
  });
  await t.server.modules.load(t.server.hosts.get("localhost")!, "echo_route");
  return { t, base: `http://127.0.0.1:${t.server.port("http")}` };
}

/**
 * Sends one HTTP/1.1 request over a raw socket (fetch does not let a test set the Host
 * header) and returns the status and body. `chunked` sends the body without Content-Length.
 */
async function request(
  url: string,
  host: string,
  init: { method?: string; body?: string; chunked?: boolean } = {},
): Promise<{ status: number; body: string }> {
  const { hostname, port, pathname } = new URL(url);
  const conn = await Deno.connect({ hostname, port: Number(port) });
  try {
    const body = init.body ?? "";
    const framing = init.chunked
      ? `Transfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`
      : `Content-Length: ${body.length}\r\n\r\n${body}`;
    const head = `${init.method ?? "GET"} ${pathname} HTTP/1.1\r\nHost: ${host}\r\n` +
      `Connection: close\r\n`;
    await conn.write(new TextEncoder().encode(head + framing));
    const text = await new Response(conn.readable).text();
    const status = Number(text.slice(9, 12));
    const headers = text.slice(0, text.indexOf("\r\n\r\n")).toLowerCase();
    let rest = text.slice(text.indexOf("\r\n\r\n") + 4);
    if (headers.includes("transfer-encoding: chunked")) {
      let decoded = "";
      while (true) {
        const line = rest.indexOf("\r\n");
        const size = parseInt(rest.slice(0, line), 16);
        if (!size) break;
        decoded += rest.slice(line + 2, line + 2 + size);
        rest = rest.slice(line + 2 + size + 2);
      }
      rest = decoded;
    }
    return { status, body: rest };
  } finally {
    try {
      conn.close();
    } catch {
      // Already closed by the server.
    }
  }
}

Deno.test("a module route answers for its host only; unknown host and path get 404", async () => {
  const { t, base } = await startWithEcho();
  try {
    assert.deepEqual(await request(`${base}/hello`, "localhost"), {
      status: 200,
      body: "hello localhost",
    });
    assert.equal((await request(`${base}/hello`, "LocalHost:5280")).body, "hello localhost");
    assert.equal((await request(`${base}/hello`, "other.test")).status, 404);
    assert.equal((await request(`${base}/hello`, "unknown.example")).status, 404);
    assert.equal((await request(`${base}/nothing`, "localhost")).status, 404);
    assert.equal((await request(`${base}/hello`, "localhost", { method: "DELETE" })).status, 405);
  } finally {
    await t.stop();
  }
});

Deno.test("request bodies over http_max_body_size get 413; smaller ones reach the handler", async () => {
  const { t, base } = await startWithEcho();
  try {
    const small = await request(`${base}/echo`, "localhost", {
      method: "POST",
      body: "x".repeat(100),
    });
    assert.deepEqual(small, { status: 200, body: "x".repeat(100) });
    const big = await request(`${base}/echo`, "localhost", {
      method: "POST",
      body: "x".repeat(5000),
    });
    assert.equal(big.status, 413);
    // A chunked body (no Content-Length) is cut off while it streams.
    const chunked = await request(`${base}/echo`, "localhost", {
      method: "POST",
      body: "y".repeat(5000),
      chunked: true,
    });
    assert.equal(chunked.status, 413);
  } finally {
    await t.stop();
  }
});

Deno.test("a failing handler gets 500 and the server keeps serving", async () => {
  const { t, base } = await startWithEcho();
  try {
    assert.equal((await request(`${base}/fail`, "localhost")).status, 500);
    assert.equal((await request(`${base}/hello`, "localhost")).status, 200);
  } finally {
    await t.stop();
  }
});

Deno.test("a module's routes are removed when it unloads", async () => {
  const { t, base } = await startWithEcho();
  try {
    assert.equal((await request(`${base}/hello`, "localhost")).status, 200);
    t.server.modules.unload(t.server.hosts.get("localhost")!, "echo_route");
    assert.equal((await request(`${base}/hello`, "localhost")).status, 404);
  } finally {
    await t.stop();
  }
});

Deno.test("hostFromHeader drops the port, a trailing dot and IPv6 brackets", () => {
  assert.deepEqual(hostFromHeader("Example.ORG.:443"), "example.org");
  assert.deepEqual(hostFromHeader("[::1]:5280"), "::1");
  assert.deepEqual(hostFromHeader(""), undefined);
  assert.deepEqual(hostFromHeader(null), undefined);
});

Deno.test("an HTTP address already in use fails start-up with a clear error", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = (taken.addr as Deno.NetAddr).port;
    await assert.rejects(
      startTestServer({ globalToml: `http_interfaces = ["127.0.0.1:${port}"]` }),
      new RegExp(`Cannot listen for http on 127\\.0\\.0\\.1:${port}`),
    );
  } finally {
    taken.close();
  }
});
