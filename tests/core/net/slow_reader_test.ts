// A client that stops reading its socket while another floods it with messages is cut off once
// its unsent output passes c2s_max_send_buffer, with a resource-constraint stream error, and the
// messages that never reached its connection wait in offline storage for its next login: none
// lost, none delivered twice. Over real sockets, plain TCP and TLS.

import assert from "node:assert/strict";
import type { Socket } from "node:net";
import { nativeReads } from "../../../core/net/native_reads.ts";
import { RawClient, roundTrip } from "../../helpers/raw_client.ts";
import {
  BODY,
  FAST_FLOOD,
  floodUntilCut,
  messageIds,
  PLAIN_HOST,
  plainLogin,
  storeOffline,
} from "../../helpers/slow_reader.ts";
import { startTestServer } from "../../helpers/test_server.ts";

const NS_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams";

Deno.test("a client that stops reading is cut off at its send buffer limit and its messages wait offline", async () => {
  const t = await startTestServer({
    users: { slow: "pw", flooder: "pw" },
    globalToml: FAST_FLOOD,
    hostToml: PLAIN_HOST,
  });
  const clients: RawClient[] = [];
  try {
    const slow = await plainLogin(t, "slow", "phone");
    clients.push(slow);
    const flooder = await plainLogin(t, "flooder", "desk");
    clients.push(flooder);
    slow.socket.pause(); // stops reading: the kernel buffers fill, then the server's queue

    let sent = await floodUntilCut(t, flooder);
    // Messages sent after the cut go to offline storage directly.
    for (let i = 0; i < 10; i++, sent++) {
      flooder.send(
        `<message to='slow@localhost' type='chat' id='flood-${sent}'><body>late</body></message>`,
      );
    }
    await roundTrip(flooder);
    console.log(`slow reader cut off after ${sent - 10} messages of ${BODY.length} bytes`);

    // What reached the connection is still readable, followed by the stream error.
    slow.socket.resume();
    await slow.waitClosed(20000);
    const error = slow.received.find((el) =>
      el.name === "error" && el.ns === NS_STREAM_ERRORS ||
      el.name === "error" && el.getChild("resource-constraint", NS_STREAM_ERRORS) !== undefined
    );
    assert.ok(error, "no stream error before the close");
    assert.ok(error.getChild("resource-constraint", NS_STREAM_ERRORS), "not resource-constraint");
    assert.match(error.getChildText("text", NS_STREAM_ERRORS) ?? "", /did not read/);
    const onOldStream = messageIds(slow.received);
    console.log(`${onOldStream.length} messages reached the old connection`);
    assert.ok(onOldStream.length < sent, "every message reached the connection: nothing queued");

    // The rest waits offline and comes with the next login, each message once.
    const again = await plainLogin(t, "slow", "laptop");
    clients.push(again);
    const expected = sent - onOldStream.length;
    await again.waitUntil(
      () => messageIds(again.received).length >= expected ? true : undefined,
      20000,
      `${expected} offline messages`,
    );
    const offline = messageIds(again.received);
    const all = [...onOldStream, ...offline];
    assert.equal(new Set(all).size, all.length, "a message was delivered twice");
    assert.equal(all.length, sent, "a message was lost");
    const stored = again.received.find((el) => el.attrs.id === offline[0])!;
    assert.ok(stored.getChild("delay", "urn:xmpp:delay"), "offline message without a delay stamp");
  } finally {
    for (const client of clients) client.socket.destroy();
    await t.stop();
  }
});

Deno.test("a client reading a large offline backlog at its own pace is not cut off when more arrives", async () => {
  const t = await startTestServer({
    users: { slow: "pw", flooder: "pw" },
    globalToml: FAST_FLOOD,
    hostToml: PLAIN_HOST,
  });
  const clients: RawClient[] = [];
  try {
    const flooder = await plainLogin(t, "flooder", "desk");
    clients.push(flooder);
    // 8 MB waits offline: more than the loopback socket buffers hold, and far more than twice
    // the 64 KiB send limit.
    const stored = 2000;
    await storeOffline(flooder, stored);

    const slow = await RawClient.connect(t.port);
    clients.push(slow);
    await slow.open();
    await slow.loginPlain("slow", "pw", "phone");
    // The backlog comes with the first presence, while the client is busy elsewhere: the
    // server's socket fills and the rest waits in its queue.
    slow.socket.pause();
    slow.send("<presence/>");
    await new Promise((resolve) => setTimeout(resolve, 300));
    flooder.send(
      `<message to='slow@localhost/phone' type='chat' id='flood-${stored}'><body>late</body></message>`,
    );
    await roundTrip(flooder);
    await new Promise((resolve) => setTimeout(resolve, 100));
    slow.socket.resume();

    await slow.waitUntil(
      () => messageIds(slow.received).length > stored ? true : undefined,
      20000,
      `${stored + 1} messages`,
    );
    await roundTrip(slow);
    assert.equal(t.server.metrics.counter("c2s.slow_readers_cut").value, 0, "cut off");
    assert.ok(!slow.received.some((el) => el.name === "error"), "a stream error");
    assert.equal(new Set(messageIds(slow.received)).size, stored + 1);
  } finally {
    for (const client of clients) client.socket.destroy();
    await t.stop();
  }
});

Deno.test("with stream management the unacknowledged queue hands back what a cut-off reader never got", async () => {
  const t = await startTestServer({
    users: { slow: "pw", flooder: "pw" },
    globalToml: FAST_FLOOD,
    // Stream management's own queue limit would cut the session first.
    hostToml: `${PLAIN_HOST}\nsmacks_max_queue_size = 100000`,
  });
  const clients: RawClient[] = [];
  try {
    const slow = await plainLogin(t, "slow", "phone", true);
    clients.push(slow);
    const flooder = await plainLogin(t, "flooder", "desk");
    clients.push(flooder);
    slow.socket.pause();
    const sent = await floodUntilCut(t, flooder);
    slow.socket.resume();
    await slow.waitClosed(20000);
    const onOldStream = new Set(messageIds(slow.received));

    // The client never acknowledged anything: stream management delivers every message again
    // (at least once, as XEP-0198 does), and the core adds no second copy of the unsent ones.
    const again = await plainLogin(t, "slow", "laptop");
    clients.push(again);
    await again.waitUntil(
      () => messageIds(again.received).length >= sent ? true : undefined,
      20000,
      `${sent} offline messages`,
    );
    await roundTrip(again);
    const offline = messageIds(again.received);
    assert.equal(offline.length, sent, "a message came back twice, or was lost");
    assert.equal(new Set(offline).size, sent);
    console.log(`${onOldStream.size} of ${sent} messages reached the old connection`);
  } finally {
    for (const client of clients) client.socket.destroy();
    await t.stop();
  }
});

Deno.test("over TLS too a client that stops reading is cut off and its messages wait offline", async () => {
  const t = await startTestServer({
    users: { slow: "pw", flooder: "pw" },
    globalToml: FAST_FLOOD,
    hostToml: "offline_max_messages = 100000",
  });
  const clients: RawClient[] = [];
  try {
    const { client: slow } = await RawClient.login(t.port, "slow", "pw", "phone");
    clients.push(slow);
    slow.send("<presence/>");
    await roundTrip(slow);
    const { client: flooder } = await RawClient.login(t.port, "flooder", "pw", "desk");
    clients.push(flooder);
    // Deno's TLS socket goes on reading its TCP handle while paused: stop that too.
    const reads = nativeReads(slow.socket as Socket);
    assert.ok(reads, "no native TCP handle beneath the client's TLS socket");
    slow.socket.pause();
    reads.readStop();

    const sent = await floodUntilCut(t, flooder);
    reads.readStart();
    slow.socket.resume();
    await slow.waitClosed(20000);
    const onOldStream = messageIds(slow.received);

    const { client: again } = await RawClient.login(t.port, "slow", "pw", "laptop");
    clients.push(again);
    again.send("<presence/>");
    const expected = sent - onOldStream.length;
    await again.waitUntil(
      () => messageIds(again.received).length >= expected ? true : undefined,
      20000,
      `${expected} offline messages`,
    );
    const all = [...onOldStream, ...messageIds(again.received)];
    assert.equal(new Set(all).size, all.length, "a message was delivered twice");
    assert.equal(all.length, sent, "a message was lost");
    console.log(
      `over TLS: cut after ${sent} messages, ${onOldStream.length} reached the connection`,
    );
  } finally {
    for (const client of clients) client.socket.destroy();
    await t.stop();
  }
});
