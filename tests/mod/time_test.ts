// XEP-0202 on the wire: the server answers with its UTC time and time zone offset in
// XEP-0082 formats.

import assert from "node:assert/strict";
import { serialize } from "../../core/xml/serializer.ts";
import { formatTzo, formatUtc } from "../../mod/time.ts";
import { RawClient } from "../helpers/raw_client.ts";
import { startTestServer } from "../helpers/test_server.ts";

Deno.test("time zone offsets and UTC times use XEP-0082 forms", () => {
  assert.equal(formatTzo(0), "+00:00");
  assert.equal(formatTzo(-0), "+00:00");
  assert.equal(formatTzo(120), "+02:00");
  assert.equal(formatTzo(-330), "-05:30");
  assert.equal(formatTzo(345), "+05:45");
  assert.equal(
    formatUtc(new Date(Date.UTC(2006, 11, 19, 17, 58, 35, 123))),
    "2006-12-19T17:58:35Z",
  );
});

Deno.test("the server answers an entity time query with tzo and utc", async () => {
  const t = await startTestServer({ users: { alice: "pw" }, modules: ["disco", "time"] });
  try {
    const { client } = await RawClient.login(t.port, "alice", "pw");
    const before = Math.floor(Date.now() / 1000) * 1000;
    client.send("<iq type='get' id='t1' to='localhost'><time xmlns='urn:xmpp:time'/></iq>");
    const answer = await client.next((el) => el.attrs.id === "t1");
    const after = Date.now();
    const time = answer.getChild("time", "urn:xmpp:time")!;
    const utc = time.getChildText("utc")!;
    const tzo = time.getChildText("tzo")!;
    assert.equal(
      serialize(answer),
      "<iq to='alice@localhost/test' from='localhost' id='t1' type='result'>" +
        `<time xmlns='urn:xmpp:time'><tzo>${tzo}</tzo><utc>${utc}</utc></time></iq>`,
    );
    assert.match(utc, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.equal(tzo, formatTzo(-new Date().getTimezoneOffset()));
    // The clock read lies between the request and the answer.
    const when = Date.parse(utc);
    assert.ok(when >= before && when <= after, `${utc} outside the request's time`);

    client.send(
      "<iq type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    );
    const info = await client.next((el) => el.attrs.id === "d1");
    const features = info.getChild("query")!.getChildren("feature").map((f) => f.attrs.var);
    assert.ok(features.includes("urn:xmpp:time"));
    client.close();
  } finally {
    await t.stop();
  }
});
