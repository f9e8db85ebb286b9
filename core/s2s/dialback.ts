// Server Dialback (XEP-0220) keys and names: the key an originating server sends is an HMAC
// that only the authoritative server can recompute (XEP-0185), so nothing is stored per key.

import { createHash, createHmac } from "node:crypto";

/** The dialback namespace of `<db:result/>` and `<db:verify/>`. */
export const NS_DIALBACK = "jabber:server:dialback";
/** The stream feature a receiving server advertises when it accepts dialback. */
export const NS_DIALBACK_FEATURE = "urn:xmpp:features:dialback";

/**
 * The dialback key for a stream (XEP-0185 §3): HMAC-SHA256 keyed with the hex SHA-256 of the
 * secret over "receiving originating streamId", as lowercase hex.
 *
 * @example
 * ```ts
 * dialbackKey("s3cr3tf0rd14lb4ck", "xmpp.example.com", "example.org", "D60000229F");
 * ```
 */
export function dialbackKey(
  secret: string,
  receiving: string,
  originating: string,
  streamId: string,
): string {
  const hashedSecret = createHash("sha256").update(secret).digest("hex");
  return createHmac("sha256", hashedSecret)
    .update(`${receiving} ${originating} ${streamId}`)
    .digest("hex");
}

/** Compares two keys in constant time for equal lengths. */
export function sameKey(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}
