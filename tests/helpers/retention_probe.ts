// Run with --v8-flags=--expose-gc: logs clients in, has them use the modules that keep
// per-session state, closes them, collects garbage and prints how many of the server's session
// objects are still alive. Used by tests/core/sessions_test.ts.

import { RawClient, roundTrip } from "./raw_client.ts";
import { startTestServer } from "./test_server.ts";

const count = Number(Deno.args[0] ?? "100");
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("Expected --v8-flags=--expose-gc");

let collected = 0;
const alive = new Set<number>();
const registry = new FinalizationRegistry<number>((i) => {
  collected++;
  alive.delete(i);
});
const t = await startTestServer({ users: { alice: "pw", bob: "pw" } });
const { client: bob } = await RawClient.login(t.port, "bob", "pw", "bob");
bob.send("<presence/>");
/** One client's whole life; its own function, so no reference outlives it in this frame. */
async function oneSession(i: number): Promise<void> {
  const { client } = await RawClient.login(t.port, "alice", "pw", `r${i}`);
  client.send("<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>");
  client.send("<iq type='get' id='bl'><blocklist xmlns='urn:xmpp:blocking'/></iq>");
  client.send("<iq type='set' id='cb'><enable xmlns='urn:xmpp:carbons:2'/></iq>");
  client.send("<presence><status>here</status></presence>");
  client.send("<presence to='bob@localhost/bob'/>");
  client.send("<message to='bob@localhost' type='chat'><body>hi</body></message>");
  client.send("<presence type='unavailable'><status>bye</status></presence>");
  await roundTrip(client);
  const session = t.server.sessions.all().find((s) => s.jid?.resource === `r${i}`);
  if (!session) throw new Error(`No session for r${i}`);
  registry.register(session, i);
  alive.add(i);
  client.close();
}
for (let i = 0; i < count; i++) await oneSession(i);
const deadline = Date.now() + 10_000;
while (t.server.sessions.all().some((s) => s.jid?.local === "alice")) {
  if (Date.now() > deadline) throw new Error("Sessions did not close");
  await new Promise((resolve) => setTimeout(resolve, 20));
}
// FinalizationRegistry callbacks run in later tasks, after a collection.
for (let round = 0; round < 20 && collected < count; round++) {
  gc();
  await new Promise((resolve) => setTimeout(resolve, 50));
}
console.log(JSON.stringify({ sessions: count, collected, alive: [...alive] }));
bob.close();
await t.stop();
