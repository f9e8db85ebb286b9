// XEP-0199 on the wire: the server answers pings, and pings clients that went quiet: one that
// answers (even with an error) stays connected, one that does not is closed with
// connection-timeout after a single outstanding ping.

import assert from "node:assert/strict";
import type { Element } from "../../core/xml/element.ts";
import { serialize } from "../../core/xml/serializer.ts";
import { NS_STREAM, RawClient } from "../helpers/raw_client.ts";
import { startTestServer } from "../helpers/test_server.ts";

const NS_STREAMS_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams";

function isServerPing(el: Element): boolean {
  return el.name === "iq" && el.attrs.type === "get" &&
    el.getChild("ping", "urn:xmpp:ping") !== undefined;
}

Deno.test("the server answers pings to it and to no address", async () => {
  const t = await startTestServer({ users: { alice: "pw" }, modules: ["disco", "ping"] });
  try {
    const { client } = await RawClient.login(t.port, "alice", "pw");
    client.send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    assert.equal(
      serialize(await client.next((el) => el.attrs.id === "p1")),
      "<iq to='alice@localhost/test' from='localhost' id='p1' type='result'/>",
    );
    client.send("<iq type='get' id='p2'><ping xmlns='urn:xmpp:ping'/></iq>");
    assert.equal(
      serialize(await client.next((el) => el.attrs.id === "p2")),
      "<iq to='alice@localhost/test' id='p2' type='result'/>",
    );
    client.close();
  } finally {
    await t.stop();
  }
});

Deno.test("quiet clients are pinged; those that answer stay, a silent one is closed", async () => {
  const t = await startTestServer({
    users: { alice: "pw" },
    modules: ["ping"],
    hostToml: "c2s_ping_interval = 1\nc2s_ping_timeout = 1",
  });
  try {
    const { client } = await RawClient.login(t.port, "alice", "pw");
    const first = await client.next(isServerPing);
    const id = first.attrs.id;
    assert.ok(id);
    assert.equal(
      serialize(first),
      `<iq type='get' from='localhost' to='alice@localhost/test' id='${id}'>` +
        "<ping xmlns='urn:xmpp:ping'/></iq>",
    );
    client.send(`<iq type='result' to='localhost' id='${id}'/>`);

    // An error answer (a client without ping support) also proves the client is alive.
    const second = await client.next(isServerPing);
    assert.notEqual(second.attrs.id, id);
    client.send(
      `<iq type='error' to='localhost' id='${second.attrs.id}'><error type='cancel'>` +
        "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
    );

    // Silence: one ping, never a second while it is outstanding, then the stream closes.
    const third = await client.next(isServerPing);
    const streamError = await client.next((el) => el.name === "error" && el.ns === NS_STREAM);
    assert.equal(
      streamError.elements().find((c) => c.ns === NS_STREAMS_ERRORS && c.name !== "text")?.name,
      "connection-timeout",
    );
    const pings = client.received.filter(isServerPing);
    assert.deepEqual(pings.map((p) => p.attrs.id), [id, second.attrs.id, third.attrs.id]);
    await client.waitClosed();
    client.close();
  } finally {
    await t.stop();
  }
});
