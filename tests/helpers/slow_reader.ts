// What the slow-reader tests (a client that stops reading, over TCP, TLS, WebSocket or BOSH)
// share: the flood they send to slow@localhost, the configuration that lets it through at once
// with a 64 KiB send limit, and how they log in and count what arrived.

import assert from "node:assert/strict";
import type { Element } from "../../core/xml/element.ts";
import { RawClient, roundTrip } from "./raw_client.ts";
import type { TestServer } from "./test_server.ts";

/** The body of each flood message (4 KB). */
export const BODY = "x".repeat(4000);
/** Sent at most: the loopback socket buffers take a few MB before the server's queue grows. */
export const MAX_MESSAGES = 4000;
/** Messages sent between round trips. */
export const BATCH = 100;
/** The send limit under test, and rate limits that let the flood through at once. */
export const FAST_FLOOD = 'c2s_max_send_buffer = 65536\nlimits_c2s_rate = "1gb/s"\n' +
  "limits_message_rate = 1000000";
/** Plain TCP logins allowed (the tests pause the raw socket), and room for the flood offline. */
export const PLAIN_HOST = "c2s_require_encryption = false\nallow_unencrypted_plain_auth = true\n" +
  "offline_max_messages = 100000";

/** The ids of the flood messages among `elements`, in order. */
export function messageIds(elements: Element[]): string[] {
  return elements.filter((el) => el.name === "message" && el.attrs.id?.startsWith("flood-"))
    .map((el) => el.attrs.id!);
}

/** Sends flood messages `flood-<from>` … `flood-<from + count - 1>` to slow@localhost. */
export function sendFlood(flooder: RawClient, from: number, count: number): void {
  for (let i = from; i < from + count; i++) {
    flooder.send(
      `<message to='slow@localhost' type='chat' id='flood-${i}'><body>${BODY}</body></message>`,
    );
  }
}

/** Floods slow@localhost until the server cuts a slow reader off; returns how many were sent. */
export async function floodUntilCut(t: TestServer, flooder: RawClient): Promise<number> {
  const cut = t.server.metrics.counter("c2s.slow_readers_cut");
  let sent = 0;
  while (sent < MAX_MESSAGES && cut.value === 0) {
    sendFlood(flooder, sent, BATCH);
    sent += BATCH;
    await roundTrip(flooder);
  }
  assert.equal(cut.value, 1, `the slow reader was not cut off after ${sent} messages`);
  return sent;
}

/** Sends `count` flood messages to slow@localhost while it is offline; they wait there. */
export async function storeOffline(flooder: RawClient, count: number): Promise<void> {
  sendFlood(flooder, 0, count);
  await roundTrip(flooder);
}

/** Logs in over plain TCP (allowed by PLAIN_HOST), bound and available. */
export async function plainLogin(
  t: TestServer,
  user: string,
  resource: string,
  streamManagement = false,
): Promise<RawClient> {
  const client = await RawClient.connect(t.port);
  await client.open();
  await client.loginPlain(user, "pw", resource);
  if (streamManagement) {
    client.send("<enable xmlns='urn:xmpp:sm:3'/>");
    await client.next((el) => el.name === "enabled");
  }
  client.send("<presence/>");
  await roundTrip(client);
  return client;
}
