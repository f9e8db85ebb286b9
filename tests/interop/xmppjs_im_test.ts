// xmpp.js clients exercise the IM features against a real Lilt server over STARTTLS: roster
// pushes, carbons, resource priorities, blocking and offline messages with delay stamps.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { makeTestCa } from "../helpers/test_ca.ts";
import { startTestServer } from "../helpers/test_server.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** Starts a CA-certified server with alice and bob, runs the client script, returns its JSON. */
// deno-lint-ignore no-explicit-any
async function runScenario(): Promise<any> {
  const dir = await Deno.makeTempDir({ prefix: "lilt-ca-" });
  const certs = await makeTestCa(dir, ["localhost"]);
  const t = await startTestServer({
    globalToml: `certificate = ${JSON.stringify(certs.certFile)}\nkey = ${
      JSON.stringify(certs.keyFile)
    }`,
    users: { alice: "alice-secret", bob: "bob-secret" },
  });
  try {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "tests/interop/xmppjs_im_client.ts", String(t.port)],
      cwd: ROOT,
      env: { DENO_CERT: certs.caFile },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(output.stdout).trim();
    const stderr = new TextDecoder().decode(output.stderr).trim();
    try {
      return JSON.parse(stdout.split("\n").at(-1) ?? "");
    } catch {
      throw new Error(
        `The xmpp.js script printed no JSON (exit ${output.code}):\n${stdout}\n${stderr}`,
      );
    }
  } finally {
    await t.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("xmpp.js clients get roster pushes, carbons, priorities, blocking and offline messages", async () => {
  const result = await runScenario();
  assert.equal(result.error, undefined, result.error);

  /** One roster item as the client script reports it. */
  type Item = { jid: string; subscription: string; ask: string | null };
  const item = (items: Item[], jid: string) => items.find((i) => i.jid === jid);
  assert.equal(item(result.rosters.alice, "bob@localhost")?.subscription, "both");
  assert.equal(item(result.rosters.alice, "bob@localhost")?.ask, null);
  assert.equal(item(result.rosters.bob, "alice@localhost")?.subscription, "both");
  assert.equal(item(result.rosters.bob, "alice@localhost")?.ask, null);
  for (const who of ["one", "two", "bob"]) {
    const pushes = result.pushes[who];
    assert.ok(pushes.length > 0, `${who} saw no roster push`);
    assert.equal(pushes.at(-1).subscription, "both", `last push seen by ${who}`);
  }

  assert.equal(result.carbon, true, "alice/two got no carbon of the message to alice/one");
  assert.deepEqual(result.priority.gotIt, ["one"]);
  assert.equal(result.blockedArrived, false);

  assert.equal(result.offline.body, "while you were away");
  // xmpp.js binds with Bind2: the server completes the resource it asked for.
  assert.match(result.offline.from, /^bob@localhost\/phone\.[0-9a-f]{8}$/);
  assert.equal(result.offline.delayFrom, "localhost");
  assert.ok(!Number.isNaN(Date.parse(result.offline.stamp)), `bad stamp ${result.offline.stamp}`);
});
