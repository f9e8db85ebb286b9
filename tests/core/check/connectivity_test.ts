// The connectivity check against a real server: every configured listener answers, a
// configured port nobody listens on is an error, and a server that is not running is one line.

import assert from "node:assert/strict";
import { parseConfigText } from "../../../core/config.ts";
import { checkConnectivity } from "../../../core/check/connectivity.ts";
import type { Config } from "../../../core/config.ts";
import { startAdminSocket } from "../../../shell/admin_socket.ts";
import { startTestServer } from "../../helpers/test_server.ts";

/** A configuration naming the given listeners, the data dir and admin socket of a server. */
function configFor(dataDir: string, listeners: string): Config {
  const text = `data_dir = ${JSON.stringify(dataDir)}
admin_socket = "run/lilt.sock"
${listeners}
[[host]]
domain = "localhost"
`;
  const { config, problems } = parseConfigText(text, `${dataDir}/check.toml`);
  assert.ok(config, JSON.stringify(problems));
  return config;
}

/** A port that was free a moment ago (bound, then released). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

Deno.test("every configured listener of the running server accepts a connection", async () => {
  const t = await startTestServer({
    modules: ["disco"],
    globalToml: 'component_interfaces = ["127.0.0.1:0"]\nhttp_interfaces = ["127.0.0.1:0"]',
  });
  const admin = await startAdminSocket(t.server, `${t.dataDir}/run/lilt.sock`);
  try {
    const component = t.server.port("component");
    const http = t.server.port("http");
    const good = configFor(
      t.dataDir,
      `c2s_interfaces = ["127.0.0.1:${t.port}"]
c2s_direct_tls_interfaces = ["*:${t.tlsPort}"]
component_interfaces = ["127.0.0.1:${component}"]
http_interfaces = ["127.0.0.1:${http}"]`,
    );
    assert.deepEqual(await checkConnectivity(good), []);

    const missing = freePort();
    const broken = configFor(
      t.dataDir,
      `c2s_interfaces = ["127.0.0.1:${t.port}"]
c2s_direct_tls_interfaces = ["127.0.0.1:${t.tlsPort}"]
s2s_interfaces = ["127.0.0.1:${missing}"]
https_interfaces = ["127.0.0.1:0"]`,
    );
    assert.deepEqual(await checkConnectivity(broken), [
      {
        level: "error",
        message: `Nothing accepts connections on 127.0.0.1:${missing} (s2s_interfaces ` +
          `"127.0.0.1:${missing}"): connection refused; restart Lilt if this listener was ` +
          "added after it started, and check its log",
      },
      {
        level: "warning",
        message: 'https_interfaces "127.0.0.1:0" listens on a different free port at each ' +
          "start, so clients cannot be told where: set a fixed port",
      },
    ]);
  } finally {
    await admin.close();
    await t.stop();
  }
});

Deno.test("a server that is not running is said in one line", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "lilt-check-" });
  try {
    const config = configFor(dataDir, 'c2s_interfaces = ["127.0.0.1:5222"]');
    assert.deepEqual(await checkConnectivity(config), [{
      level: "error",
      message: `Lilt is not running on ${dataDir}/check.toml: its admin socket ` +
        `${dataDir}/run/lilt.sock does not answer; start it with 'lilt start' (or its ` +
        "service) and check again",
    }]);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
