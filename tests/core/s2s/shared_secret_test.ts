// Cluster nodes without s2s_dialback_secret share one dialback secret through their store: two
// connections to one store (two nodes) get the same secret, made once.

import assert from "node:assert/strict";
import { sharedDialbackSecret } from "../../../core/s2s/shared_secret.ts";
import { openTestStore } from "../../helpers/test_store.ts";

Deno.test("two nodes on one store share the dialback secret the first one made", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "lilt-secret-" });
  const first = openTestStore(dataDir);
  const second = openTestStore(dataDir);
  try {
    const made = sharedDialbackSecret(first);
    assert.ok(made.length >= 64, "a short secret");
    assert.equal(sharedDialbackSecret(second), made);
    assert.equal(sharedDialbackSecret(first), made);
  } finally {
    first.close();
    second.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});
