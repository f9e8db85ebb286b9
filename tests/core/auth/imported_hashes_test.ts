// Accounts imported with SCRAM-SHA-1 keys only (Prosody keeps no others): their host offers only
// the SCRAM hashes every account has, so a client picking the strongest offered one logs in;
// a PLAIN login gives the account the missing keys and SCRAM-SHA-256 comes back.

import assert from "node:assert/strict";
import { deriveCredentials } from "../../../core/auth/scram.ts";
import { RawClient } from "../../helpers/raw_client.ts";
import { startTestServer } from "../../helpers/test_server.ts";

/** The SASL mechanisms a fresh connection is offered after STARTTLS. */
async function offered(port: number): Promise<string[]> {
  const client = await RawClient.connect(port);
  try {
    await client.open("localhost");
    await client.starttls("localhost");
    return client.advertisedSasl().mechanisms;
  } finally {
    client.close();
  }
}

Deno.test("a host with SCRAM-SHA-1-only accounts offers SCRAM-SHA-1 until they get SHA-256 keys", async () => {
  const t = await startTestServer({ users: { modern: "modern-pw" } });
  try {
    assert.ok((await offered(t.port)).includes("SCRAM-SHA-256"));
    const legacy = await deriveCredentials("legacy-pw", { hash: "SHA-1", iterations: 4096 });
    t.server.accounts.setCredentials("localhost", "legacy", { "SHA-1": legacy });
    const mechanisms = await offered(t.port);
    assert.ok(!mechanisms.includes("SCRAM-SHA-256"), mechanisms.join(" "));
    assert.ok(mechanisms.includes("SCRAM-SHA-1"));
    // The strongest offered SCRAM works for both kinds of account.
    for (const [user, password] of [["legacy", "legacy-pw"], ["modern", "modern-pw"]]) {
      const client = await RawClient.connect(t.port);
      await client.open("localhost");
      await client.starttls("localhost");
      const { outcome, verified } = await client.scram(user, password, { hash: "SHA-1" });
      assert.equal(outcome.name, "success", user);
      assert.ok(verified);
      client.close();
    }
    // A PLAIN login shows the password: the account gets SHA-256 keys, and the host offers
    // SCRAM-SHA-256 again, with which the legacy user now logs in.
    const { client } = await RawClient.login(t.port, "legacy", "legacy-pw");
    client.close();
    assert.ok(t.server.accounts.credentials("localhost", "legacy", "SHA-256"));
    assert.ok((await offered(t.port)).includes("SCRAM-SHA-256"));
    const again = await RawClient.connect(t.port);
    await again.open("localhost");
    await again.starttls("localhost");
    const { outcome } = await again.scram("legacy", "legacy-pw", { hash: "SHA-256" });
    assert.equal(outcome.name, "success");
    again.close();
  } finally {
    await t.stop();
  }
});

Deno.test("a wrong PLAIN password adds no keys to a SCRAM-SHA-1-only account", async () => {
  const t = await startTestServer({ users: {} });
  try {
    const legacy = await deriveCredentials("legacy-pw", { hash: "SHA-1", iterations: 4096 });
    t.server.accounts.setCredentials("localhost", "legacy", { "SHA-1": legacy });
    assert.equal(await t.server.accounts.verifyPassword("localhost", "legacy", "wrong"), false);
    assert.equal(t.server.accounts.credentials("localhost", "legacy", "SHA-256"), undefined);
    assert.deepEqual([...t.server.accounts.scramHashesOfAll("localhost")], ["SHA-1"]);
  } finally {
    await t.stop();
  }
});
