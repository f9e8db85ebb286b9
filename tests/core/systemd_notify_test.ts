// Tests for sd_notify support: `lilt start` under a NOTIFY_SOCKET (as systemd starts a unit of
// Type=notify) says READY=1 once it listens and STOPPING=1 when it shuts down.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { testConfigText } from "../helpers/test_server.ts";
import { listenUnixDatagrams } from "../helpers/unix_datagram_listener.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

Deno.test("lilt start notifies READY=1 after listening and STOPPING=1 on SIGTERM", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lilt-notify-" });
  const notify = await listenUnixDatagrams(`${dir}/notify.sock`);
  const file = `${dir}/lilt.toml`;
  await Deno.writeTextFile(file, testConfigText(dir));
  const server = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}main.ts`, "start", "-c", file],
    env: { NOTIFY_SOCKET: notify.path },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(server.stderr).text();
  const exited = server.status.then(async (status) => {
    throw new Error(`lilt exited (${status.code}) before notifying:\n${await stderr}`);
  });
  try {
    const ready = new TextDecoder().decode(await Promise.race([notify.next(), exited]));
    assert.match(ready, /^READY=1\nSTATUS=Serving c2s 127\.0\.0\.1:\d+, /);
    // Listening already: a connection to the announced port is accepted.
    const port = Number(/c2s 127\.0\.0\.1:(\d+)/.exec(ready)![1]);
    (await Deno.connect({ hostname: "127.0.0.1", port })).close();
    server.kill("SIGTERM");
    const stopping = new TextDecoder().decode(await Promise.race([notify.next(), exited]));
    assert.equal(stopping, "STOPPING=1");
    assert.equal((await server.status).code, 0);
    assert.match(await stderr, /lilt: serving/);
  } finally {
    exited.catch(() => {});
    try {
      server.kill("SIGKILL");
    } catch {
      // already exited
    }
    await server.status;
    await stderr;
    await notify.close();
    await Deno.remove(dir, { recursive: true });
  }
});
