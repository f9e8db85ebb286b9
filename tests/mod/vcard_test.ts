// XEP-0054 on the wire: an account stores its vCard and reads it back, others read it at the
// account's bare JID, nobody else may change it, oversized vCards are refused, and the data
// survives a restart.

import assert from "node:assert/strict";
import { serialize } from "../../core/xml/serializer.ts";
import { RawClient } from "../helpers/raw_client.ts";
import { startTestServer } from "../helpers/test_server.ts";

const NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";

/** A vCard with nested fields, an escaped character and a foreign-namespace extension. */
const CARD = "<vCard xmlns='vcard-temp'><FN>Alice &amp; Co</FN><N><FAMILY>Liddell</FAMILY>" +
  "<GIVEN>Alice</GIVEN></N><PHOTO><TYPE>image/png</TYPE><BINVAL>iVBORw0KGgo=</BINVAL></PHOTO>" +
  "<X-EXTRA xmlns='urn:example:extra' kind='test'>kept</X-EXTRA></vCard>";

/** Sends an iq and returns the serialized answer with the same id. */
async function ask(client: RawClient, xml: string): Promise<string> {
  const id = /id='([^']+)'/.exec(xml)![1];
  client.send(xml);
  return serialize(await client.next((el) => el.name === "iq" && el.attrs.id === id));
}

Deno.test("an account stores its vCard and others read it at its bare JID", async () => {
  const t = await startTestServer({
    users: { alice: "pw", bob: "pw" },
    modules: ["disco", "vcard"],
  });
  try {
    const { client: alice } = await RawClient.login(t.port, "alice", "pw");
    const { client: bob } = await RawClient.login(t.port, "bob", "pw");
    // None stored yet: an empty vCard for oneself (XEP-0054 §3.1).
    assert.equal(
      await ask(alice, "<iq type='get' id='g1'><vCard xmlns='vcard-temp'/></iq>"),
      "<iq to='alice@localhost/test' id='g1' type='result'><vCard xmlns='vcard-temp'/></iq>",
    );
    // ... and an error for others, the same whether the account exists or not (§3.3).
    const missing = "<error type='cancel'><item-not-found xmlns='" + NS_STANZAS +
      "'/></error></iq>";
    assert.equal(
      await ask(
        bob,
        "<iq type='get' id='g2' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>",
      ),
      "<iq to='bob@localhost/test' from='alice@localhost' id='g2' type='error'>" + missing,
    );
    assert.equal(
      await ask(
        bob,
        "<iq type='get' id='g3' to='nobody@localhost'><vCard xmlns='vcard-temp'/></iq>",
      ),
      "<iq to='bob@localhost/test' from='nobody@localhost' id='g3' type='error'>" + missing,
    );

    assert.equal(
      await ask(alice, `<iq type='set' id='s1'>${CARD}</iq>`),
      "<iq to='alice@localhost/test' id='s1' type='result'/>",
    );
    assert.equal(
      await ask(alice, "<iq type='get' id='g4'><vCard xmlns='vcard-temp'/></iq>"),
      `<iq to='alice@localhost/test' id='g4' type='result'>${CARD}</iq>`,
    );
    // Addressed to her own bare JID, it is the same request.
    assert.equal(
      await ask(
        alice,
        "<iq type='get' id='g5' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>",
      ),
      `<iq to='alice@localhost/test' from='alice@localhost' id='g5' type='result'>${CARD}</iq>`,
    );
    assert.equal(
      await ask(
        bob,
        "<iq type='get' id='g6' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>",
      ),
      `<iq to='bob@localhost/test' from='alice@localhost' id='g6' type='result'>${CARD}</iq>`,
    );

    // Bob may not change Alice's vCard (§3.2).
    assert.equal(
      await ask(
        bob,
        "<iq type='set' id='s2' to='alice@localhost'><vCard xmlns='vcard-temp'><FN>Bob</FN></vCard></iq>",
      ),
      "<iq to='bob@localhost/test' from='alice@localhost' id='s2' type='error'>" +
        `<error type='auth'><forbidden xmlns='${NS_STANZAS}'/></error></iq>`,
    );
    assert.match(
      await ask(
        bob,
        "<iq type='get' id='g7' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>",
      ),
      /<FN>Alice &amp; Co<\/FN>/,
    );

    // Publishing an empty vCard removes it.
    await ask(alice, "<iq type='set' id='s3'><vCard xmlns='vcard-temp'/></iq>");
    assert.match(
      await ask(
        bob,
        "<iq type='get' id='g8' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>",
      ),
      /item-not-found/,
    );

    const info = await ask(
      alice,
      "<iq type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    );
    assert.ok(info.includes("<feature var='vcard-temp'/>"));
    alice.close();
    bob.close();
  } finally {
    await t.stop();
  }
});

Deno.test("a vCard larger than vcard_max_size is refused with not-acceptable", async () => {
  const t = await startTestServer({
    users: { alice: "pw" },
    modules: ["vcard"],
    hostToml: "vcard_max_size = 1024",
  });
  try {
    const { client } = await RawClient.login(t.port, "alice", "pw");
    const big = "<vCard xmlns='vcard-temp'><DESC>" + "x".repeat(1024) + "</DESC></vCard>";
    assert.equal(
      await ask(client, `<iq type='set' id='s1'>${big}</iq>`),
      "<iq to='alice@localhost/test' id='s1' type='error'><error type='modify'>" +
        `<not-acceptable xmlns='${NS_STANZAS}'/><text xmlns='${NS_STANZAS}' xml:lang='en'>` +
        "The vCard is larger than the 1024 bytes this server stores</text></error></iq>",
    );
    // Nothing was stored; a card within the limit is.
    assert.equal(
      await ask(client, "<iq type='get' id='g1'><vCard xmlns='vcard-temp'/></iq>"),
      "<iq to='alice@localhost/test' id='g1' type='result'><vCard xmlns='vcard-temp'/></iq>",
    );
    const small = "<vCard xmlns='vcard-temp'><DESC>" + "x".repeat(900) + "</DESC></vCard>";
    assert.match(await ask(client, `<iq type='set' id='s2'>${small}</iq>`), /type='result'/);
    client.close();
  } finally {
    await t.stop();
  }
});

Deno.test("a stored vCard survives a restart", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "lilt-test-" });
  try {
    const options = { dataDir, users: { alice: "pw" }, modules: ["vcard"] };
    const first = await startTestServer(options);
    try {
      const { client } = await RawClient.login(first.port, "alice", "pw");
      assert.match(await ask(client, `<iq type='set' id='s1'>${CARD}</iq>`), /type='result'/);
      client.close();
    } finally {
      await first.stop();
    }
    const second = await startTestServer(options);
    try {
      const { client } = await RawClient.login(second.port, "alice", "pw");
      assert.equal(
        await ask(client, "<iq type='get' id='g1'><vCard xmlns='vcard-temp'/></iq>"),
        `<iq to='alice@localhost/test' id='g1' type='result'>${CARD}</iq>`,
      );
      client.close();
    } finally {
      await second.stop();
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
