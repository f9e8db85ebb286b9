// Before authentication a client's stanzas are held to c2s_preauth_stanza_size_limit, so that
// hundreds of connections that never log in cannot each make the parser hold a stanza of the
// full c2s_stanza_size_limit; after login the full limit applies. Over real sockets.

import assert from "node:assert/strict";
import { NS_STREAM, RawClient, roundTrip } from "../../helpers/raw_client.ts";
import { startTestServer } from "../../helpers/test_server.ts";

const NS_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams";
const NS_LIMITS = "urn:xmpp:stream-limits:0";

Deno.test("a stanza over the pre-authentication limit closes an unauthenticated stream", async () => {
  const t = await startTestServer({ users: { alice: "pw" } });
  try {
    const c = await RawClient.connect(t.port);
    const features = await c.open();
    assert.equal(features.getChild("limits", NS_LIMITS)?.getChildText("max-bytes"), "16384");
    c.send(`<message to='alice@localhost'><body>${"a".repeat(20000)}</body></message>`);
    await c.waitClosed();
    const error = c.received.find((el) => el.name === "error" && el.ns === NS_STREAM);
    assert.ok(error?.getChild("policy-violation", NS_STREAM_ERRORS), "no policy-violation");
  } finally {
    await t.stop();
  }
});

Deno.test("once authenticated, the client's full stanza size limit applies", async () => {
  const t = await startTestServer({ users: { alice: "pw" } });
  try {
    const { client } = await RawClient.login(t.port, "alice", "pw");
    const features = client.received.filter((el) => el.name === "features").at(-1)!;
    assert.equal(features.getChild("limits", NS_LIMITS)?.getChildText("max-bytes"), "262144");
    client.send(
      `<message to='alice@localhost/test' id='big'><body>${"a".repeat(20000)}</body></message>`,
    );
    const echoed = await client.next((el) => el.attrs.id === "big");
    assert.equal(echoed.getChildText("body")?.length, 20000);
    await roundTrip(client);
    client.close();
  } finally {
    await t.stop();
  }
});

Deno.test("over direct TLS a stanza that never ends is cut at the pre-authentication limit too", async () => {
  const t = await startTestServer({ users: { alice: "pw" } });
  try {
    const c = await RawClient.connect(t.tlsPort, { tls: true });
    await c.open();
    c.send("<message to='alice@localhost'><body>");
    // 4 KiB at a time, never closing the element: the parser must give up at the limit.
    for (let i = 0; i < 8 && !c.closedByServer; i++) {
      c.send("b".repeat(4096));
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await c.waitClosed();
    const error = c.received.find((el) => el.name === "error" && el.ns === NS_STREAM);
    assert.ok(error?.getChild("policy-violation", NS_STREAM_ERRORS), "no policy-violation");
  } finally {
    await t.stop();
  }
});
