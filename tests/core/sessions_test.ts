// The server forgets closed client sessions: after many clients log in, exchange messages and
// disconnect, no session, binding or per-session event handler is left behind (a leak here
// would grow the heap with every connection).

import assert from "node:assert/strict";
import { RawClient, roundTrip } from "../helpers/raw_client.ts";
import { startTestServer } from "../helpers/test_server.ts";
import type { Server } from "../../core/server.ts";

/** Resolves once `check` holds; gives up (and lets the assertion after it fail) after a while. */
async function settle(check: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
}

function handlerCounts(server: Server): Record<string, number> {
  return Object.fromEntries([...server.hosts].map(([domain, host]) => [domain, host.events.size]));
}

Deno.test("closed sessions leave no session, binding or host handler behind", async () => {
  const users = Object.fromEntries(Array.from({ length: 6 }, (_, i) => [`user${i}`, "pw"]));
  const t = await startTestServer({ users });
  try {
    const { server } = t;
    const handlersBefore = handlerCounts(server);
    for (let round = 0; round < 2; round++) {
      const clients = await Promise.all(
        Object.keys(users).map((user) => RawClient.login(t.port, user, "pw", `r${round}`)),
      );
      for (const { client } of clients) {
        client.send("<presence/>");
        client.send("<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>");
        await client.next((el) => el.name === "iq" && el.attrs.id === "roster");
      }
      const [a, b] = clients;
      a.client.send(`<message to='${b.jid}' type='chat' id='m1'><body>hi</body></message>`);
      await b.client.next((el) => el.name === "message" && el.attrs.id === "m1");
      await roundTrip(a.client);
      assert.equal(server.sessions.count, clients.length);

      // Half close politely, half just drop the socket.
      clients.forEach(({ client }, i) => i % 2 ? client.socket.destroy() : client.close());
      await settle(() => server.sessions.count === 0);
      assert.equal(server.sessions.count, 0);
      for (const user of Object.keys(users)) {
        assert.deepEqual(server.sessions.userSessions("localhost", user), []);
      }
      assert.deepEqual(handlerCounts(server), handlersBefore);
    }
  } finally {
    await t.stop();
  }
});

Deno.test("closed sessions leave nothing behind: every session object is collected", async () => {
  // A separate process, so that garbage collection can be forced (--expose-gc).
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--v8-flags=--expose-gc",
      new URL("../helpers/retention_probe.ts", import.meta.url).pathname,
      "40",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(output.stdout).trim();
  assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
  const result = JSON.parse(stdout.split("\n").at(-1)!);
  assert.deepEqual(result, { sessions: 40, collected: 40, alive: [] });
});
