// Tests that an answer promising a client's stanzas are safe (a stream management <a/>, a ping
// reply) never reaches the socket while the writes those stanzas caused are still uncommitted:
// a crash in between would lose an offline message the client was told was handled.

import assert from "node:assert/strict";
import { Socket } from "node:net";
import { RawClient } from "../helpers/raw_client.ts";
import { startTestServer } from "../helpers/test_server.ts";

const MODULES = ["disco", "roster", "presence", "offline", "smacks", "ping"];

/**
 * Runs `body` while every socket write whose text matches `pattern` records whether the
 * server's database had a transaction open at that moment.
 */
async function watchWrites(
  pattern: RegExp,
  inTransaction: () => boolean,
  body: () => Promise<void>,
): Promise<boolean[]> {
  const seen: boolean[] = [];
  const original = Socket.prototype.write;
  // deno-lint-ignore no-explicit-any
  Socket.prototype.write = function (this: Socket, data: any, ...rest: any[]) {
    if (typeof data === "string" && pattern.test(data)) seen.push(inTransaction());
    return original.call(this, data, ...rest);
  } as typeof original;
  try {
    await body();
  } finally {
    Socket.prototype.write = original;
  }
  return seen;
}

Deno.test("a stream management <a/> leaves only after the offline message it counts is committed", async () => {
  const t = await startTestServer({ modules: MODULES, users: { alice: "a-pw", bob: "b-pw" } });
  const { client } = await RawClient.login(t.port, "alice", "a-pw");
  try {
    client.send("<enable xmlns='urn:xmpp:sm:3'/>");
    await client.next((el) => el.name === "enabled");
    const db = t.server.database.db;
    const seen = await watchWrites(
      /<a xmlns='urn:xmpp:sm:3' h='1'/,
      () => db.isTransaction,
      async () => {
        // One read: the first <r/> queues output (and its flush) before the message opens the
        // write batch; the second <r/> counts the message.
        client.send(
          "<r xmlns='urn:xmpp:sm:3'/>" +
            "<message to='bob@localhost' type='chat' id='m1'><body>kept</body></message>" +
            "<r xmlns='urn:xmpp:sm:3'/>",
        );
        await client.next((el) => el.name === "a" && el.attrs.h === "1");
      },
    );
    assert.deepEqual(seen, [false], "the ack was written with the message's batch still open");
  } finally {
    client.close();
    await t.stop();
  }
});

Deno.test("a ping reply leaves only after the offline message before it is committed", async () => {
  const t = await startTestServer({ modules: MODULES, users: { alice: "a-pw", bob: "b-pw" } });
  const { client } = await RawClient.login(t.port, "alice", "a-pw");
  try {
    const db = t.server.database.db;
    const seen = await watchWrites(
      /<iq(?=[^>]*type='result')(?=[^>]*id='p2')/,
      () => db.isTransaction,
      async () => {
        client.send(
          "<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>" +
            "<message to='bob@localhost' type='chat' id='m1'><body>kept</body></message>" +
            "<iq type='get' id='p2' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
        );
        await client.next((el) => el.attrs.id === "p2");
      },
    );
    assert.deepEqual(
      seen,
      [false],
      "the ping reply was written with the message's batch still open",
    );
  } finally {
    client.close();
    await t.stop();
  }
});

Deno.test("a stream management <a/> does not count stanzas held back for the account's stanza rate", async () => {
  const t = await startTestServer({
    modules: MODULES,
    users: { alice: "a-pw", bob: "b-pw" },
    globalToml: "limits_message_rate = 1\nlimits_stanza_burst = 1\nlimits_stanza_max_delay = 30",
  });
  const { client } = await RawClient.login(t.port, "alice", "a-pw");
  try {
    client.send("<enable xmlns='urn:xmpp:sm:3'/>");
    await client.next((el) => el.name === "enabled");
    // One read: the first message uses the burst, the next two wait for the rate.
    let stanzas = "";
    for (let i = 1; i <= 3; i++) {
      stanzas += `<message to='bob@localhost' type='chat' id='m${i}'><body>${i}</body></message>`;
    }
    client.send(stanzas + "<r xmlns='urn:xmpp:sm:3'/>");
    const ack = await client.next((el) => el.name === "a");
    assert.equal(ack.attrs.h, "1", "only the message handled so far is acknowledged");
  } finally {
    client.close();
    await t.stop();
  }
});
