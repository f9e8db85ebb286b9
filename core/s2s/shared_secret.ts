// The dialback secret the nodes of a cluster share when `s2s_dialback_secret` is not set: a
// dialback key (XEP-0185) one node generated must verify on whichever node the peer's
// verification request reaches, so the secret lives in the store they share.

import type { Database } from "../storage/database.ts";

/** The kv row (host "", user "") the shared secret is kept in. */
const STORE = "cluster_dialback_secret";

/**
 * The cluster's dialback secret: made by the first node that asks (nodes starting at once
 * race to insert; the first insert wins and every node reads that one back).
 */
export function sharedDialbackSecret(database: Database): string {
  const candidate = JSON.stringify(crypto.randomUUID() + crypto.randomUUID());
  database.prepare(
    "INSERT INTO kv (host, user, store, value) VALUES ('', '', ?, ?) " +
      "ON CONFLICT (host, user, store) DO NOTHING",
  ).run(STORE, candidate);
  const row = database.prepare(
    "SELECT value FROM kv WHERE host = '' AND user = '' AND store = ?",
  ).get(STORE) as { value: string };
  return JSON.parse(row.value) as string;
}
