// A real client over RFC 7395: xmpp.js, run as a child process, connects to the server's
// HTTP listener with a ws:// URL and logs in with its default settings.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { startTestServer } from "../helpers/test_server.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

Deno.test("xmpp.js logs in over ws:// and pings the server", async () => {
  const t = await startTestServer({
    users: { alice: "alice-secret" },
    globalToml: 'http_interfaces = ["127.0.0.1:0"]',
  });
  try {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "tests/interop/xmppjs_ws_client.ts", String(t.server.port("http"))],
      cwd: ROOT,
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
  } finally {
    await t.stop();
  }
});
