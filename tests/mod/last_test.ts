// XEP-0012 on the wire: server uptime, an account's last logout and status for those allowed
// to see it (forbidden for others), 0 while online, and the record surviving a restart.

import assert from "node:assert/strict";
import { serialize } from "../../core/xml/serializer.ts";
import { RawClient } from "../helpers/raw_client.ts";
import { startTestServer, type TestServer } from "../helpers/test_server.ts";

/** Sends an iq and returns the answer with the same id. */
async function ask(client: RawClient, xml: string): Promise<string> {
  const id = /id='([^']+)'/.exec(xml)![1];
  client.send(xml);
  return serialize(await client.next((el) => el.name === "iq" && el.attrs.id === id));
}

/** Waits until `user` has at most `left` sessions (the server processed the logouts). */
async function loggedOut(t: TestServer, user: string, left = 0): Promise<void> {
  const deadline = Date.now() + 5000;
  while (t.server.sessions.userSessions("localhost", user).length > left) {
    if (Date.now() > deadline) throw new Error(`Expected ${user} to log out, still connected`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Logs in, leaves with an unavailable presence carrying `status`, and disconnects. */
async function leave(t: TestServer, user: string, status: string): Promise<void> {
  const { client } = await RawClient.login(t.port, user, "pw", "gone");
  client.send("<presence/>");
  await client.next((el) => el.name === "presence");
  client.send(`<presence type='unavailable'><status>${status}</status></presence>`);
  await ask(client, "<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
  client.close();
  await loggedOut(t, user);
}

Deno.test("the server reports its uptime in whole seconds", async () => {
  const t = await startTestServer({ users: { alice: "pw" }, modules: ["disco", "last"] });
  try {
    const { client } = await RawClient.login(t.port, "alice", "pw");
    client.send("<iq type='get' id='u1' to='localhost'><query xmlns='jabber:iq:last'/></iq>");
    const answer = await client.next((el) => el.attrs.id === "u1");
    const seconds = answer.getChild("query", "jabber:iq:last")!.attrs.seconds;
    assert.match(seconds, /^\d+$/);
    assert.equal(
      serialize(answer),
      "<iq to='alice@localhost/test' from='localhost' id='u1' type='result'>" +
        `<query xmlns='jabber:iq:last' seconds='${seconds}'/></iq>`,
    );
    const info = await ask(
      client,
      "<iq type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    );
    assert.ok(info.includes("<feature var='jabber:iq:last'/>"));
    client.close();
  } finally {
    await t.stop();
  }
});

Deno.test("an account's last logout is shown to itself, 0 while online, forbidden to others", async () => {
  const t = await startTestServer({
    users: { alice: "pw", bob: "pw" },
    modules: ["ping", "presence", "last"],
  });
  try {
    const { client: bob } = await RawClient.login(t.port, "bob", "pw");
    // Nothing recorded yet.
    assert.equal(
      await ask(bob, "<iq type='get' id='n1'><query xmlns='jabber:iq:last'/></iq>"),
      "<iq to='bob@localhost/test' id='n1' type='error'><error type='cancel'>" +
        "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>" +
        "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='en'>No logout is recorded</text>" +
        "</error></iq>",
    );

    await leave(t, "alice", "Heading Home");

    // Without a presence subscription, another user learns nothing (XEP-0012 §3).
    assert.equal(
      await ask(
        bob,
        "<iq type='get' id='b1' to='alice@localhost'><query xmlns='jabber:iq:last'/></iq>",
      ),
      "<iq to='bob@localhost/test' from='alice@localhost' id='b1' type='error'>" +
        "<error type='auth'><forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
    );
    // Nor about an account that does not exist: the same answer.
    assert.match(
      await ask(
        bob,
        "<iq type='get' id='b2' to='nobody@localhost'><query xmlns='jabber:iq:last'/></iq>",
      ),
      /<forbidden /,
    );

    // Alice back, without presence: she sees her own last logout and status.
    const { client: alice } = await RawClient.login(t.port, "alice", "pw");
    const own = await ask(
      alice,
      "<iq type='get' id='a1' to='alice@localhost'><query xmlns='jabber:iq:last'/></iq>",
    );
    const seconds = /seconds='(\d+)'/.exec(own)?.[1];
    assert.ok(seconds !== undefined, own);
    assert.equal(
      own,
      "<iq to='alice@localhost/test' from='alice@localhost' id='a1' type='result'>" +
        `<query xmlns='jabber:iq:last' seconds='${seconds}'>Heading Home</query></iq>`,
    );

    // Once available she is online: 0, with no status (XEP-0012 §3).
    alice.send("<presence/>");
    await alice.next((el) => el.name === "presence");
    assert.equal(
      await ask(alice, "<iq type='get' id='a2'><query xmlns='jabber:iq:last'/></iq>"),
      "<iq to='alice@localhost/test' id='a2' type='result'>" +
        "<query xmlns='jabber:iq:last' seconds='0'/></iq>",
    );
    alice.close();
    bob.close();
  } finally {
    await t.stop();
  }
});

Deno.test("only the last resource's logout is recorded, with its own status", async () => {
  const t = await startTestServer({
    users: { alice: "pw" },
    modules: ["ping", "presence", "last"],
  });
  try {
    const { client: first } = await RawClient.login(t.port, "alice", "pw", "first");
    const { client: second } = await RawClient.login(t.port, "alice", "pw", "second");
    first.send("<presence type='unavailable'><status>first left</status></presence>");
    await ask(first, "<iq type='get' id='s1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    first.close();
    await loggedOut(t, "alice", 1);
    // Alice is still connected: nothing is recorded yet.
    assert.match(
      await ask(second, "<iq type='get' id='q1'><query xmlns='jabber:iq:last'/></iq>"),
      /item-not-found/,
    );
    // The last resource drops without an unavailable presence: no status.
    second.close();
    await loggedOut(t, "alice");
    const { client: again } = await RawClient.login(t.port, "alice", "pw");
    assert.match(
      await ask(again, "<iq type='get' id='q2'><query xmlns='jabber:iq:last'/></iq>"),
      /^<iq to='alice@localhost\/test' id='q2' type='result'><query xmlns='jabber:iq:last' seconds='\d+'\/><\/iq>$/,
    );
    again.close();
  } finally {
    await t.stop();
  }
});

Deno.test("the last logout survives a restart", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "lilt-test-" });
  try {
    const options = {
      dataDir,
      users: { alice: "pw" },
      modules: ["ping", "presence", "last"],
    };
    const first = await startTestServer(options);
    try {
      await leave(first, "alice", "Back tomorrow");
    } finally {
      await first.stop();
    }
    const second = await startTestServer(options);
    try {
      const { client } = await RawClient.login(second.port, "alice", "pw");
      assert.match(
        await ask(client, "<iq type='get' id='r1'><query xmlns='jabber:iq:last'/></iq>"),
        /seconds='\d+'>Back tomorrow<\/query>/,
      );
      client.close();
    } finally {
      await second.stop();
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
