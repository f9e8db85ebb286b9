// Reloading the configuration of a running server: module lists, hosts and limits change
// without dropping the sessions that stay valid.

import assert from "node:assert/strict";
import { parseConfigText } from "../../core/config.ts";
import { RawClient } from "../helpers/raw_client.ts";
import { startTestServer, testConfigText } from "../helpers/test_server.ts";

Deno.test("reload unloads and loads modules and adds hosts while sessions stay up", async () => {
  const t = await startTestServer({ users: { alice: "pw" } });
  try {
    const { client } = await RawClient.login(t.port, "alice", "pw");
    client.send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    assert.equal((await client.next((el) => el.attrs.id === "p1")).attrs.type, "result");

    const text = testConfigText(t.dataDir, { modules: ["disco", "roster", "presence"] }) +
      '\n[[host]]\ndomain = "second.localhost"\n';
    const { config, problems } = parseConfigText(text, `${t.dataDir}/reloaded.toml`);
    assert.ok(config, JSON.stringify(problems));
    await t.server.reload(config);

    assert.deepEqual(t.server.modules.loaded("localhost").sort(), ["disco", "presence", "roster"]);
    assert.ok(t.server.hosts.has("second.localhost"));
    client.send("<iq type='get' id='p2' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    const answer = await client.next((el) => el.attrs.id === "p2");
    assert.equal(answer.attrs.type, "error");
    assert.ok(answer.getChild("error")?.getChild("service-unavailable"));
    client.send(
      "<iq type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    );
    const info = await client.next((el) => el.attrs.id === "d");
    const features = info.getChild("query")!.getChildren("feature").map((f) => f.attrs.var);
    assert.ok(!features.includes("urn:xmpp:ping"));
    client.close();
  } finally {
    await t.stop();
  }
});

Deno.test("scram_iterations is read per host, and a reload applies it to new passwords", async () => {
  const t = await startTestServer({
    hostToml: "scram_iterations = 5000",
    extraToml: '[[host]]\ndomain = "other.localhost"\n',
  });
  try {
    const iterationsOf = (host: string, user: string) =>
      t.server.accounts.credentials(host, user, "SHA-256")!.iterations;
    await t.server.accounts.create("localhost", "alice", "pw");
    await t.server.accounts.create("other.localhost", "bob", "pw");
    assert.equal(iterationsOf("localhost", "alice"), 5000);
    assert.equal(iterationsOf("other.localhost", "bob"), 4096); // the top-level value

    const text = testConfigText(t.dataDir, {
      hostToml: "scram_iterations = 6000",
      extraToml: '[[host]]\ndomain = "other.localhost"\n',
    });
    const { config } = parseConfigText(text, t.config.file);
    await t.server.reload(config!);
    await t.server.accounts.setPassword("localhost", "alice", "new-pw");
    assert.equal(iterationsOf("localhost", "alice"), 6000);
    // A login for an unknown user is answered with the host's count too (no tell-tale).
    assert.equal(t.server.accounts.iterationsFor("localhost"), 6000);
  } finally {
    await t.stop();
  }
});

Deno.test("a reload lowers the stanza size limit of a stream already open", async () => {
  const t = await startTestServer({ users: { alice: "pw" } });
  try {
    const { client } = await RawClient.login(t.port, "alice", "pw");
    const big = `<message to='alice@localhost/test' id='big'><body>${
      "x".repeat(20000)
    }</body></message>`;
    client.send(big);
    assert.equal((await client.next((el) => el.attrs.id === "big")).name, "message");

    const text = testConfigText(t.dataDir, { hostToml: "c2s_stanza_size_limit = 10000" });
    const { config } = parseConfigText(text, t.config.file);
    const report = await t.server.reload(config!);
    assert.deepEqual(report.applied.map((c) => [c.option, c.host]), [
      ["c2s_stanza_size_limit", "localhost"],
    ]);
    client.send(big);
    const error = await client.next((el) => el.name === "error");
    assert.ok(error.getChild("policy-violation"));
  } finally {
    await t.stop();
  }
});
