// Dialback keys (XEP-0185): the published example vector, and that every input changes the key.

import assert from "node:assert/strict";
import { dialbackKey, sameKey } from "../../../core/s2s/dialback.ts";

Deno.test("dialback keys match the XEP-0185 example", () => {
  assert.equal(
    dialbackKey("s3cr3tf0rd14lb4ck", "xmpp.example.com", "example.org", "D60000229F"),
    "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643",
  );
});

Deno.test("dialback keys depend on the secret, both domains and the stream id", () => {
  const base = dialbackKey("secret", "b.test", "a.test", "id1");
  assert.notEqual(dialbackKey("other", "b.test", "a.test", "id1"), base);
  assert.notEqual(dialbackKey("secret", "a.test", "b.test", "id1"), base);
  assert.notEqual(dialbackKey("secret", "b.test", "a.test", "id2"), base);
  assert.ok(sameKey(base, dialbackKey("secret", "b.test", "a.test", "id1")));
  assert.ok(!sameKey(base, base.slice(1)));
});
