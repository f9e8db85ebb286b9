// A real client over RFC 7395: xmpp.js, run as a child process, connects to the server's HTTP
// listener with a ws:// URL and to its HTTPS listener with a wss:// one, logs in with its default
// settings, and exchanges a message with an xmpp.js client on TCP.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { makeTestCa } from "../helpers/test_ca.ts";
import { startTestServer } from "../helpers/test_server.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

for (const scheme of ["ws", "wss"] as const) {
  Deno.test(`xmpp.js logs in over ${scheme}:// and exchanges a message with a TCP client`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "lilt-ws-ca-" });
    const certs = await makeTestCa(dir, ["localhost"]);
    const t = await startTestServer({
      users: { alice: "alice-secret", bob: "bob-secret" },
      globalToml: `certificate = ${JSON.stringify(certs.certFile)}\n` +
        `key = ${JSON.stringify(certs.keyFile)}\n` +
        'http_interfaces = ["127.0.0.1:0"]\nhttps_interfaces = ["127.0.0.1:0"]',
    });
    try {
      const port = t.server.port(scheme === "ws" ? "http" : "https");
      const output = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "tests/interop/xmppjs_ws_client.ts",
          `${scheme}://localhost:${port}/xmpp-websocket`,
          String(t.port),
        ],
        cwd: ROOT,
        env: { DENO_CERT: certs.caFile },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stdout = new TextDecoder().decode(output.stdout).trim();
      const stderr = new TextDecoder().decode(output.stderr).trim();
      let result;
      try {
        result = JSON.parse(stdout.split("\n").at(-1) ?? "");
      } catch {
        throw new Error(`xmpp.js printed no JSON (exit ${output.code}):\n${stdout}\n${stderr}`);
      }
      assert.equal(result.error, undefined);
      assert.match(result.jid, /^alice@localhost\/web/);
      assert.equal(result.pingType, "result");
      // One SASL attempt, with the mechanism xmpp.js 0.14 prefers.
      assert.deepEqual(result.mechanisms, ["SCRAM-SHA-1"]);
      assert.deepEqual(result.tcpGot, { from: result.jid, body: "to tcp" });
      assert.equal(result.webGot.body, "to web");
      assert.match(result.webGot.from, /^bob@localhost\/tcp/);
    } finally {
      await t.stop();
      await Deno.remove(dir, { recursive: true });
    }
  });
}
