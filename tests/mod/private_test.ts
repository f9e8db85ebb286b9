// XEP-0049 on the wire: an account stores XML fragments keyed by element name and namespace,
// reads them back, gets the empty element for what it never stored, and is refused for
// malformed queries, reserved namespaces and other accounts' data. Data survives a restart.

import assert from "node:assert/strict";
import { serialize } from "../../core/xml/serializer.ts";
import { RawClient } from "../helpers/raw_client.ts";
import { startTestServer } from "../helpers/test_server.ts";

const NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";
const BOOKMARKS = "<storage xmlns='storage:bookmarks'><conference jid='tea@muc.localhost' " +
  "autojoin='true' name='Tea &amp; cake'><nick>Alice</nick></conference></storage>";

/** Sends an iq and returns the serialized answer with the same id. */
async function ask(client: RawClient, xml: string): Promise<string> {
  const id = /id='([^']+)'/.exec(xml)![1];
  client.send(xml);
  return serialize(await client.next((el) => el.name === "iq" && el.attrs.id === id));
}

/** The error answer alice gets for iq `id`. */
function errorAnswer(id: string, type: string, condition: string, text?: string): string {
  const textEl = text ? `<text xmlns='${NS_STANZAS}' xml:lang='en'>${text}</text>` : "";
  return `<iq to='alice@localhost/test' id='${id}' type='error'><error type='${type}'>` +
    `<${condition} xmlns='${NS_STANZAS}'/>${textEl}</error></iq>`;
}

Deno.test("an account stores private XML and reads it back by name and namespace", async () => {
  const t = await startTestServer({ users: { alice: "pw", bob: "pw" }, modules: ["private"] });
  try {
    const { client: alice } = await RawClient.login(t.port, "alice", "pw");
    const { client: bob } = await RawClient.login(t.port, "bob", "pw");
    assert.equal(
      await ask(
        alice,
        `<iq type='set' id='s1'><query xmlns='jabber:iq:private'>${BOOKMARKS}</query></iq>`,
      ),
      "<iq to='alice@localhost/test' id='s1' type='result'/>",
    );
    assert.equal(
      await ask(
        alice,
        "<iq type='get' id='g1'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>",
      ),
      `<iq to='alice@localhost/test' id='g1' type='result'><query xmlns='jabber:iq:private'>${BOOKMARKS}</query></iq>`,
    );
    // Same name, other namespace: a different fragment, never stored, so the empty element.
    assert.equal(
      await ask(
        alice,
        "<iq type='get' id='g2'><query xmlns='jabber:iq:private'><storage xmlns='storage:rosternotes'/></query></iq>",
      ),
      "<iq to='alice@localhost/test' id='g2' type='result'><query xmlns='jabber:iq:private'>" +
        "<storage xmlns='storage:rosternotes'/></query></iq>",
    );
    // A set may carry several fragments.
    await ask(
      alice,
      "<iq type='set' id='s2'><query xmlns='jabber:iq:private'><prefs xmlns='urn:example:a'>1</prefs>" +
        "<prefs xmlns='urn:example:b'>2</prefs></query></iq>",
    );
    assert.match(
      await ask(
        alice,
        "<iq type='get' id='g3'><query xmlns='jabber:iq:private'><prefs xmlns='urn:example:b'/></query></iq>",
      ),
      /<query xmlns='jabber:iq:private'><prefs xmlns='urn:example:b'>2<\/prefs><\/query>/,
    );
    // Storing the empty element clears the fragment.
    await ask(
      alice,
      "<iq type='set' id='s3'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>",
    );
    assert.match(
      await ask(
        alice,
        "<iq type='get' id='g4'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>",
      ),
      /<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'\/><\/query>/,
    );

    // Bob may neither read nor write Alice's data.
    for (const type of ["get", "set"]) {
      assert.equal(
        await ask(
          bob,
          `<iq type='${type}' id='b-${type}' to='alice@localhost'><query xmlns='jabber:iq:private'>` +
            "<prefs xmlns='urn:example:a'/></query></iq>",
        ),
        `<iq to='bob@localhost/test' from='alice@localhost' id='b-${type}' type='error'>` +
          `<error type='auth'><forbidden xmlns='${NS_STANZAS}'/></error></iq>`,
      );
    }
    alice.close();
    bob.close();
  } finally {
    await t.stop();
  }
});

Deno.test("malformed private queries and reserved namespaces are refused", async () => {
  const t = await startTestServer({ users: { alice: "pw" }, modules: ["private"] });
  try {
    const { client } = await RawClient.login(t.port, "alice", "pw");
    const one = "Name exactly one element to retrieve";
    assert.equal(
      await ask(client, "<iq type='get' id='e1'><query xmlns='jabber:iq:private'/></iq>"),
      errorAnswer("e1", "modify", "bad-request", one),
    );
    assert.equal(
      await ask(
        client,
        "<iq type='get' id='e2'><query xmlns='jabber:iq:private'><a xmlns='urn:example:a'/>" +
          "<b xmlns='urn:example:b'/></query></iq>",
      ),
      errorAnswer("e2", "modify", "bad-request", one),
    );
    assert.equal(
      await ask(client, "<iq type='set' id='e3'><query xmlns='jabber:iq:private'/></iq>"),
      errorAnswer("e3", "modify", "bad-request", "Include at least one element to store"),
    );
    // A child without its own namespace inherits jabber:iq:private, which is reserved.
    assert.equal(
      await ask(
        client,
        "<iq type='set' id='e4'><query xmlns='jabber:iq:private'><x>1</x></query></iq>",
      ),
      errorAnswer(
        "e4",
        "modify",
        "not-acceptable",
        "The namespace 'jabber:iq:private' is reserved",
      ),
    );
    assert.equal(
      await ask(
        client,
        "<iq type='get' id='e5'><query xmlns='jabber:iq:private'><message xmlns='jabber:client'/></query></iq>",
      ),
      errorAnswer("e5", "modify", "not-acceptable", "The namespace 'jabber:client' is reserved"),
    );
    // A set with one reserved fragment stores none of them.
    await ask(
      client,
      "<iq type='set' id='e6'><query xmlns='jabber:iq:private'><ok xmlns='urn:example:ok'>1</ok>" +
        "<bad xmlns='jabber:server'/></query></iq>",
    );
    assert.match(
      await ask(
        client,
        "<iq type='get' id='g1'><query xmlns='jabber:iq:private'><ok xmlns='urn:example:ok'/></query></iq>",
      ),
      /<ok xmlns='urn:example:ok'\/>/,
    );
    client.close();
  } finally {
    await t.stop();
  }
});

Deno.test("private XML survives a restart", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "lilt-test-" });
  try {
    const options = { dataDir, users: { alice: "pw" }, modules: ["private"] };
    const first = await startTestServer(options);
    try {
      const { client } = await RawClient.login(first.port, "alice", "pw");
      await ask(
        client,
        `<iq type='set' id='s1'><query xmlns='jabber:iq:private'>${BOOKMARKS}</query></iq>`,
      );
      client.close();
    } finally {
      await first.stop();
    }
    const second = await startTestServer(options);
    try {
      const { client } = await RawClient.login(second.port, "alice", "pw");
      assert.equal(
        await ask(
          client,
          "<iq type='get' id='g1'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>",
        ),
        `<iq to='alice@localhost/test' id='g1' type='result'><query xmlns='jabber:iq:private'>${BOOKMARKS}</query></iq>`,
      );
      client.close();
    } finally {
      await second.stop();
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("private_max_bytes refuses a set that would grow an account's data past it, with the limit", async () => {
  const t = await startTestServer({
    users: { alice: "pw" },
    modules: ["private"],
    hostToml: "private_max_bytes = 100",
  });
  try {
    const { client: alice } = await RawClient.login(t.port, "alice", "pw");
    const fragment = (ns: string, text: string) => `<n xmlns='urn:example:${ns}'>${text}</n>`;
    const set = (id: string, ...fragments: string[]) =>
      ask(
        alice,
        `<iq type='set' id='${id}'><query xmlns='jabber:iq:private'>${
          fragments.join("")
        }</query></iq>`,
      );
    // 29 bytes of markup and 30 of text: 59 bytes stored.
    const first = fragment("a", "x".repeat(30));
    assert.equal(await set("s1", first), "<iq to='alice@localhost/test' id='s1' type='result'/>");
    // Another 59 bytes would make 118: refused, and nothing of the set is stored.
    assert.equal(
      await set("s2", fragment("b", "y".repeat(30)), fragment("c", "")),
      errorAnswer(
        "s2",
        "wait",
        "resource-constraint",
        "Private XML storage is limited to 100 bytes per account (this would store 118)",
      ),
    );
    assert.equal(
      await ask(
        alice,
        "<iq type='get' id='g1'><query xmlns='jabber:iq:private'><n xmlns='urn:example:c'/></query></iq>",
      ),
      "<iq to='alice@localhost/test' id='g1' type='result'><query xmlns='jabber:iq:private'><n xmlns='urn:example:c'/></query></iq>",
    );
    // Replacing the stored fragment counts its new size only; multi-byte text counts in UTF-8.
    assert.equal(
      await set("s3", fragment("a", "é".repeat(35))),
      "<iq to='alice@localhost/test' id='s3' type='result'/>",
    );
    assert.equal(
      await set("s4", fragment("a", "é".repeat(36))),
      errorAnswer(
        "s4",
        "wait",
        "resource-constraint",
        "Private XML storage is limited to 100 bytes per account (this would store 101)",
      ),
    );
    alice.close();
  } finally {
    await t.stop();
  }
});
