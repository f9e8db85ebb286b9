// The `http` admin shell section over a real admin socket: listeners with the port they bound
// (checked by requesting it), routes per host with the module that registered them, the
// per-host URL listing, --json shapes, and clear errors for unknown hosts.

import assert from "node:assert/strict";
import type { CommandResult } from "../../core/admin_commands.ts";
import { startAdminSocket } from "../../shell/admin_socket.ts";
import { AdminClient, formatResult, jsonOf } from "../../shell/client.ts";
import { httpCommands } from "../../shell/sections/http.ts";
import { rawRequest } from "../helpers/http_request.ts";
import { startTestServer, type TestServer } from "../helpers/test_server.ts";

/** Starts a server with the http section on its admin socket and runs `fn` with a client. */
async function withShell(
  options: Parameters<typeof startTestServer>[0],
  fn: (t: TestServer, call: (cmd: string, ...args: string[]) => Promise<CommandResult>) => Promise<
    void
  >,
): Promise<void> {
  const t = await startTestServer(options);
  t.server.commands.add(httpCommands());
  const admin = await startAdminSocket(t.server, `${t.dataDir}/run/lilt.sock`);
  const client = await AdminClient.connect(`${t.dataDir}/run/lilt.sock`);
  const call = async (cmd: string, ...args: string[]): Promise<CommandResult> => {
    const reply = await client.request(cmd, args);
    if (!reply.ok) throw new Error(reply.error);
    return reply.result;
  };
  try {
    await fn(t, call);
  } finally {
    client.close();
    await admin.close();
    await t.stop();
  }
}

Deno.test("http listeners shows the bound port, which answers HTTP", async () => {
  await withShell({
    globalToml: 'http_interfaces = ["127.0.0.1:0"]',
    modules: ["http_metrics"],
  }, async (_t, call) => {
    const result = await call("http listeners");
    assert.deepEqual(result.table!.columns, ["kind", "address", "port", "tls"]);
    assert.equal(result.table!.rows.length, 1);
    const [kind, address, port, tls] = result.table!.rows[0];
    assert.deepEqual([kind, address, tls], ["http", "127.0.0.1", false]);
    assert.ok(typeof port === "number" && port > 0, "the real port, not the configured 0");
    const answer = await rawRequest(`http://127.0.0.1:${port}/metrics`, "localhost");
    assert.equal(answer.status, 200);
    assert.deepEqual(jsonOf(result), [{ kind: "http", address: "127.0.0.1", port, tls: false }]);
  });
});

Deno.test("http routes lists each host's routes with the module that added them", async () => {
  await withShell({
    globalToml: 'http_interfaces = ["127.0.0.1:0"]',
    modules: ["http_metrics"],
    extraToml: '[[component]]\ndomain = "upload.localhost"\nmodules = ["upload"]\n',
  }, async (_t, call) => {
    const all = await call("http routes");
    assert.deepEqual(all.table!.columns, ["host", "method", "path", "module"]);
    const rows = all.table!.rows;
    assert.ok(rows.some((r) => r.join(" ") === "localhost GET /metrics http_metrics"));
    assert.ok(rows.some((r) => r.join(" ") === "localhost GET /xmpp-websocket core"));
    assert.ok(rows.some((r) => r.join(" ") === "upload.localhost PUT /upload/* upload"));
    const hosts = rows.map((r) => r[0]);
    assert.deepEqual(hosts, [...hosts].sort(), "sorted by host");

    const one = await call("http routes", "upload.localhost");
    assert.ok(one.table!.rows.length > 0);
    assert.ok(one.table!.rows.every((r) => r[0] === "upload.localhost" && r[3] === "upload"));
    assert.ok(
      (jsonOf(one) as { path: string }[]).some((row) => row.path === "/upload/*"),
      "--json gives row objects",
    );
    await assert.rejects(call("http routes", "nowhere.example"), /'nowhere.example' is not a host/);
  });
});

Deno.test("http list shows each host's endpoints as URLs on the listener", async () => {
  await withShell({
    globalToml: 'http_interfaces = ["127.0.0.1:0"]',
    modules: ["http_metrics"],
  }, async (t, call) => {
    const port = t.server.port("http");
    const result = await call("http list", "localhost");
    assert.match(result.message!, /^HTTP endpoints on localhost:$/m);
    assert.ok(
      result.message!.includes(`  GET http://localhost:${port}/metrics (http_metrics)`),
      formatResult(result),
    );
    const data = result.data as { host: string; endpoints: { url: string; module: string }[] }[];
    assert.equal(data.length, 1);
    assert.equal(data[0].host, "localhost");
    assert.ok(data[0].endpoints.some((e) => e.url === `http://localhost:${port}/metrics`));
  });
});

Deno.test("http list and listeners say so when there is no HTTP listener", async () => {
  await withShell({ modules: [] }, async (_t, call) => {
    assert.deepEqual((await call("http listeners")).table!.rows, []);
    const list = await call("http list");
    assert.match(list.message!, /No HTTP listener is running/);
  });
});
