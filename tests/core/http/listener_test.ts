// The HTTP server over real sockets: module routes by Host header, unknown host or route,
// the body size limit, and routes leaving with their module.

import assert from "node:assert/strict";
import type { ModuleAPI } from "../../../core/modules.ts";
import { hostFromHeader } from "../../../core/http/routes.ts";
import { rawRequest } from "../../helpers/http_request.ts";
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
      m.httpRoute("GET", "/files/*", (request) => new Response(new URL(request.url).pathname));
      m.httpRoute("GET", "/files/exact", () => new Response("exact"));
      m.httpRoute("PUT", "/big/*", async (request) => new Response(await request.text()), {
        maxBodyBytes: () => 4096,
      });
    },
  });
  await t.server.modules.load(t.server.hosts.get("localhost")!, "echo_route");
  return { t, base: `http://127.0.0.1:${t.server.port("http")}` };
}

/** Status and body of a request with the given Host header. */
async function request(
  ...args: Parameters<typeof rawRequest>
): Promise<{ status: number; body: string }> {
  const { status, body } = await rawRequest(...args);
  return { status, body };
}

Deno.test("a module route answers for its host only; unknown hosts get the default host", async () => {
  const { t, base } = await startWithEcho();
  try {
    assert.deepEqual(await request(`${base}/hello`, "localhost"), {
      status: 200,
      body: "hello localhost",
    });
    assert.equal((await request(`${base}/hello`, "LocalHost:5280")).body, "hello localhost");
    assert.equal((await request(`${base}/hello`, "other.test")).status, 404);
    // A Host header naming no served host (an IP address, a proxy's name): the first host.
    assert.equal((await request(`${base}/hello`, "unknown.example")).body, "hello localhost");
    assert.equal((await request(`${base}/hello`, "127.0.0.1")).body, "hello localhost");
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

Deno.test("a prefix route serves paths below it; exact routes win; its own body limit applies", async () => {
  const { t, base } = await startWithEcho();
  try {
    assert.deepEqual(await request(`${base}/files/a/b.txt`, "localhost"), {
      status: 200,
      body: "/files/a/b.txt",
    });
    assert.equal((await request(`${base}/files/exact`, "localhost")).body, "exact");
    assert.equal((await request(`${base}/files/`, "localhost")).status, 404);
    assert.equal((await request(`${base}/files`, "localhost")).status, 404);
    assert.equal((await request(`${base}/files/x`, "localhost", { method: "POST" })).status, 405);
    const body = "y".repeat(3000);
    const put = await request(`${base}/big/x`, "localhost", { method: "PUT", body });
    assert.deepEqual(put, { status: 200, body });
    const tooBig = await request(`${base}/big/x`, "localhost", {
      method: "PUT",
      body: "z".repeat(5000),
    });
    assert.equal(tooBig.status, 413);
    const posted = await request(`${base}/echo`, "localhost", { method: "POST", body });
    assert.equal(posted.status, 413);
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

Deno.test("http_default_host names the host that answers unknown Host headers", async () => {
  const t = await startTestServer({
    modules: ["disco"],
    globalToml: 'http_interfaces = ["127.0.0.1:0"]\nhttp_default_host = "other.test"',
    extraToml: '[[host]]\ndomain = "other.test"\n',
  });
  try {
    for (const domain of ["localhost", "other.test"]) {
      t.server.modules.register(`where_${domain}`, {
        default(m: ModuleAPI) {
          m.httpRoute("GET", "/where", (_request, info) => new Response(info.host));
        },
      });
      await t.server.modules.load(t.server.hosts.get(domain)!, `where_${domain}`);
    }
    const base = `http://127.0.0.1:${t.server.port("http")}`;
    assert.equal((await request(`${base}/where`, "192.0.2.1")).body, "other.test");
    assert.equal((await request(`${base}/where`, "localhost")).body, "localhost");
  } finally {
    await t.stop();
  }
});
