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
