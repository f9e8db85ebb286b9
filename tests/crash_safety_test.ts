// Crash safety (issue 18): a client sends messages to an offline contact while the server, a
// real `lilt start` process, is killed with SIGKILL at random moments, round after round. Every
// message the server acknowledged (a stream management <a/> counting it, or the reply to a ping
// sent after it) must be delivered once the contact logs in after the last restart, none twice,
// and SQLite's integrity check must pass on the store after every kill (on the embedded store;
// with PostgreSQL the database server is not what gets killed).

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { AccountStore } from "../core/auth/accounts.ts";
import { parseConfigText } from "../core/config.ts";
import { Database, storageOptions } from "../core/storage/database.ts";
import { startLiltProcess } from "./helpers/lilt_process.ts";
import { RawClient, roundTrip } from "./helpers/raw_client.ts";
import { testConfigText, TESTING_ON_POSTGRESQL } from "./helpers/test_server.ts";
import { createRandom, randomInt } from "./core/xml/corpus.ts";

const MODULES = ["disco", "roster", "presence", "offline", "smacks", "ping"];
const ROUNDS = 5;
/** Most messages one round sends (the kill usually comes first). */
const MAX_PER_ROUND = 3000;
const NS_SM = "urn:xmpp:sm:3";
/** Most stanzas the client sends beyond the server's last acknowledgement. */
const MAX_UNACKED = 400;

/** What one round sent after enabling stream management, in order. */
type Sent = { kind: "message"; body: string } | { kind: "ping"; id: string };

function integrityCheck(path: string): string {
  const db = new DatabaseSync(path);
  try {
    const rows = db.prepare("PRAGMA integrity_check").all() as { integrity_check: string }[];
    return rows.map((row) => row.integrity_check).join("\n");
  } finally {
    db.close();
  }
}

/** One round: log in, enable SM, send until the server is killed; returns sent and acked. */
async function round(
  config: string,
  index: number,
  killAfterMs: number,
): Promise<{ sent: string[]; acked: string[] }> {
  const server = await startLiltProcess(config);
  let client: RawClient | undefined;
  try {
    client = (await RawClient.login(server.port, "alice", "alice-pw", `desk${index}`)).client;
    client.send(`<enable xmlns='${NS_SM}'/>`);
    await client.next((el) => el.name === "enabled" && el.ns === NS_SM);
    const sent: Sent[] = [];
    let killed = false;
    const kill = new Promise<void>((resolve) => {
      setTimeout(() => {
        killed = true;
        server.process.kill("SIGKILL");
        resolve();
      }, killAfterMs);
    });
    let messages = 0;
    let ackedH = 0;
    let scanned = 0;
    while (!killed && !client.ended && messages < MAX_PER_ROUND) {
      for (; scanned < client.received.length; scanned++) {
        const el = client.received[scanned];
        if (el.name === "a" && el.ns === NS_SM) ackedH = Math.max(ackedH, Number(el.attrs.h));
      }
      // A client that reads its acks: a server slower than the flood (PostgreSQL's round trips
      // per stored message) answers only once it catches up, which a kill may never let happen.
      if (sent.length - ackedH > MAX_UNACKED) {
        await new Promise((resolve) => setTimeout(resolve, 1));
        continue;
      }
      for (let burst = 0; burst < 10; burst++) {
        const body = `r${index}-m${messages++}`;
        client.send(
          `<message to='bob@localhost' type='chat' id='${body}'><body>${body}</body></message>`,
        );
        sent.push({ kind: "message", body });
        if (messages % 4 === 0) client.send(`<r xmlns='${NS_SM}'/>`);
        if (messages % 7 === 0) {
          const id = `ping-${index}-${messages}`;
          client.send(
            `<iq type='get' id='${id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`,
          );
          sent.push({ kind: "ping", id });
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    await kill;
    await server.process.status;
    await client.waitUntil(() => client!.ended || undefined, 5000, "the connection to close");

    // What the server acknowledged: the largest SM count, and every stanza before an answered ping.
    let handled = 0;
    for (const el of client.received) {
      if (el.name === "a" && el.ns === NS_SM) handled = Math.max(handled, Number(el.attrs.h));
      if (el.name === "iq" && el.attrs.type === "result" && el.attrs.id?.startsWith("ping-")) {
        handled = Math.max(
          handled,
          sent.findIndex((s) => s.kind === "ping" && s.id === el.attrs.id),
        );
      }
    }
    // A message refused with an error (policy-violation past the stanza rate) was handled but
    // never stored.
    const refused = new Set(
      client.received.filter((el) => el.attrs.type === "error").map((el) => el.attrs.id),
    );
    const bodies = (list: Sent[]) =>
      list.flatMap((s) => s.kind === "message" && !refused.has(s.body) ? [s.body] : []);
    return { sent: bodies(sent), acked: bodies(sent.slice(0, handled)) };
  } finally {
    client?.close();
    await server.stop();
  }
}

Deno.test("messages acknowledged before a SIGKILL are delivered after restart, once each, and the store stays intact", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lilt-test-crash-" });
  const seed = Number(Deno.env.get("LILT_CRASH_SEED") ?? Math.floor(Math.random() * 1e9));
  const random = createRandom(seed);
  const store = `${dir}/lilt.sqlite`;
  try {
    const config = `${dir}/lilt.toml`;
    // Even rounds run with the default stanza rates (past the burst, messages wait for the
    // account's rate, and stream management must not count them before they are handled), odd
    // rounds without them (more messages in the write batches when the kill comes).
    const writeConfig = (limited: boolean) =>
      Deno.writeTextFile(
        config,
        testConfigText(dir, {
          modules: MODULES,
          hostToml: "offline_max_messages = 100000",
          globalToml: limited ? "" : "limits_message_rate = 0\nlimits_iq_rate = 0",
        }),
      );
    // The server's own store: the embedded file, or its schema on PostgreSQL.
    await writeConfig(true);
    const { config: parsed, problems } = parseConfigText(await Deno.readTextFile(config), config);
    if (!parsed) throw new Error(`Test config invalid: ${JSON.stringify(problems)}`);
    const database = Database.open(storageOptions(parsed.storage));
    const accounts = new AccountStore(database, { iterations: 4096 });
    await accounts.create("localhost", "alice", "alice-pw");
    await accounts.create("localhost", "bob", "bob-pw");
    database.close();

    const sent: string[] = [];
    const acked: string[] = [];
    const figures: string[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const killAfterMs = randomInt(random, 20, 400);
      await writeConfig(i % 2 === 0);
      const result = await round(config, i, killAfterMs);
      sent.push(...result.sent);
      acked.push(...result.acked);
      figures.push(
        `round ${i} (${i % 2 === 0 ? "default stanza rates" : "no stanza rates"}): killed after ` +
          `${killAfterMs} ms, ${result.sent.length} sent, ${result.acked.length} acknowledged`,
      );
      // The file check is SQLite's; PostgreSQL is a separate process the kill does not reach.
      if (!TESTING_ON_POSTGRESQL) {
        assert.equal(integrityCheck(store), "ok", `integrity check after round ${i}`);
      }
    }

    const server = await startLiltProcess(config);
    try {
      const { client } = await RawClient.login(server.port, "bob", "bob-pw");
      client.send("<presence/>");
      await roundTrip(client);
      const delivered = client.received
        .filter((el) => el.name === "message")
        .map((el) => el.getChildText("body") ?? "");
      client.close();
      console.log(
        `crash safety (seed ${seed}):\n  ${figures.join("\n  ")}\n  ` +
          `${sent.length} sent, ${acked.length} acknowledged, ${delivered.length} delivered`,
      );
      const counts = new Map<string, number>();
      for (const body of delivered) counts.set(body, (counts.get(body) ?? 0) + 1);
      const twice = [...counts].filter(([, n]) => n > 1).map(([body]) => body);
      assert.deepEqual(twice, [], "messages delivered more than once");
      const sentSet = new Set(sent);
      assert.deepEqual(delivered.filter((body) => !sentSet.has(body)), [], "messages never sent");
      const lost = acked.filter((body) => !counts.has(body));
      assert.deepEqual(lost, [], `acknowledged messages lost (seed ${seed})`);
      assert.ok(acked.length > 0, "some messages were acknowledged before the kills");
    } finally {
      await server.stop();
    }
    if (!TESTING_ON_POSTGRESQL) {
      assert.equal(integrityCheck(store), "ok", "integrity check at the end");
    }
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
