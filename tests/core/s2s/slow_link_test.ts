// A remote server that stops reading its link while we send to it: the link is closed once the
// output waiting for it passes s2s_max_send_buffer, and the stanzas that never left bounce to
// their senders with remote-server-timeout. Two Lilt servers over loopback; the receiving one
// is made to stop reading its inbound stream.

import assert from "node:assert/strict";
import type { SocketTransport } from "../../../core/net/socket_transport.ts";
import { startDnsResponder } from "../../helpers/dns_responder.ts";
import { online, startFederatingServer } from "../../helpers/federation.ts";
import { conditionOf, type RawClient, roundTrip } from "../../helpers/raw_client.ts";
import { createTestCa } from "../../helpers/test_ca.ts";
import type { TestServer } from "../../helpers/test_server.ts";

const MODULES = ["disco", "ping", "roster", "presence", "offline"];
const BODY = "y".repeat(4000);
const MAX_MESSAGES = 6000;

Deno.test("a link whose remote server stops reading is closed at s2s_max_send_buffer, and what never left bounces", async () => {
  const dns = await startDnsResponder();
  const ca = await createTestCa();
  const started: TestServer[] = [];
  const clients: RawClient[] = [];
  try {
    const fast = 'limits_c2s_rate = "1gb/s"\nlimits_message_rate = 1000000\n' +
      'limits_s2s_rate = "unlimited"';
    const a = await startFederatingServer({
      dns,
      ca,
      modules: MODULES,
      domain: "a.test",
      users: { alice: "pw" },
      globalToml: `s2s_max_send_buffer = 65536\n${fast}`,
    });
    started.push(a);
    const b = await startFederatingServer({
      dns,
      ca,
      modules: MODULES,
      domain: "b.test",
      users: { bob: "pw" },
      globalToml: fast,
    });
    started.push(b);
    const alice = await online(a.port, "alice", "a.test");
    clients.push(alice);
    const bob = await online(b.port, "bob", "b.test");
    clients.push(bob);
    alice.send("<message to='bob@b.test' type='chat' id='first'><body>hi</body></message>");
    await bob.next((el) => el.attrs.id === "first", 15_000);

    // b.test stops reading the link from a.test (its TCP handle too, under TLS).
    const inbound = b.server.sessions.all().find((s) => s.kind === "s2sin");
    assert.ok(inbound, "no inbound link on b.test");
    (inbound as unknown as { transport: SocketTransport }).transport.holdInput(true);

    const cut = a.server.metrics.counter("s2s.slow_readers_cut");
    let sent = 0;
    while (sent < MAX_MESSAGES && cut.value === 0) {
      for (let i = 0; i < 100; i++, sent++) {
        alice.send(
          `<message to='bob@b.test' type='chat' id='s-${sent}'><body>${BODY}</body></message>`,
        );
      }
      await roundTrip(alice);
    }
    assert.equal(cut.value, 1, `the link was not cut after ${sent} messages`);
    const bounce = await alice.next(
      (el) => el.attrs.type === "error" && el.attrs.id?.startsWith("s-") === true,
      15_000,
    );
    assert.equal(conditionOf(bounce), "remote-server-timeout");
    assert.match(bounce.getChild("error")!.getChildText("text") ?? "", /stopped taking stanzas/);
    const bounced = alice.received.filter((el) => el.attrs.type === "error").length;
    console.log(`link cut after ${sent} messages of ${BODY.length} bytes; ${bounced} bounced`);
  } finally {
    for (const client of clients) client.close();
    for (const server of started) await server.stop();
    await dns.close();
  }
});
