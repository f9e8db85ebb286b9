// XEP-0092 on the wire: the server reports its name, version and OS, and leaves the OS out
// when the operator hides it.

import assert from "node:assert/strict";
import { serialize } from "../../core/xml/serializer.ts";
import { LILT_NAME, LILT_VERSION } from "../../core/version.ts";
import { RawClient } from "../helpers/raw_client.ts";
import { startTestServer } from "../helpers/test_server.ts";

const QUERY = "<iq type='get' id='v1' to='localhost'><query xmlns='jabber:iq:version'/></iq>";

Deno.test("the server answers a software version query with name, version and OS", async () => {
  const t = await startTestServer({ users: { alice: "pw" }, modules: ["disco", "version"] });
  try {
    const { client } = await RawClient.login(t.port, "alice", "pw");
    client.send(QUERY);
    const answer = await client.next((el) => el.attrs.id === "v1");
    assert.equal(
      serialize(answer),
      "<iq to='alice@localhost/test' from='localhost' id='v1' type='result'>" +
        "<query xmlns='jabber:iq:version'><name>Lilt</name><version>0.1.0</version>" +
        `<os>${Deno.build.os}</os></query></iq>`,
    );
    client.send(
      "<iq type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    );
    const info = await client.next((el) => el.attrs.id === "d1");
    const features = info.getChild("query")!.getChildren("feature").map((f) => f.attrs.var);
    assert.ok(features.includes("jabber:iq:version"));
    client.close();
  } finally {
    await t.stop();
  }
});

Deno.test("hide_os_type leaves the OS out of the answer", async () => {
  const t = await startTestServer({
    users: { alice: "pw" },
    modules: ["version"],
    hostToml: "hide_os_type = true",
  });
  try {
    const { client } = await RawClient.login(t.port, "alice", "pw");
    client.send(QUERY);
    const answer = await client.next((el) => el.attrs.id === "v1");
    assert.equal(
      serialize(answer),
      "<iq to='alice@localhost/test' from='localhost' id='v1' type='result'>" +
        `<query xmlns='jabber:iq:version'><name>${LILT_NAME}</name>` +
        `<version>${LILT_VERSION}</version></query></iq>`,
    );
    client.close();
  } finally {
    await t.stop();
  }
});
