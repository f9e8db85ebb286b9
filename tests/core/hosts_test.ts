// A host's event bus on the wire: a module handler that throws, or whose promise rejects, is
// logged with its module and event, and the iq it left unanswered gets internal-server-error
// (RFC 6120 §8.2.3: every get/set gets exactly one reply).

import assert from "node:assert/strict";
import { addLogWatcher, formatLogRecord } from "../../core/log.ts";
import type { ModuleAPI } from "../../core/modules.ts";
import { reply } from "../../core/xml/stanza.ts";
import { conditionOf, RawClient } from "../helpers/raw_client.ts";
import { startTestServer } from "../helpers/test_server.ts";

const NS = "urn:example:faulty";

/** A module whose handlers fail in the three ways a handler can. */
function faulty(m: ModuleAPI) {
  m.hook(`iq-get/host/${NS}:throws`, () => {
    throw new Error("deliberate throw");
  });
  m.hook(`iq-get/host/${NS}:rejects`, async () => {
    await new Promise((resolve) => setTimeout(resolve, 10));
    throw new Error("deliberate rejection");
  });
  m.hook(`iq-get/host/${NS}:answers-then-throws`, ({ stanza, origin }) => {
    origin.send(reply(stanza));
    throw new Error("failed after answering");
  });
}

Deno.test("an iq whose handler throws or rejects gets internal-server-error, once", async () => {
  const logged: string[] = [];
  const stopWatching = addLogWatcher((record) => logged.push(formatLogRecord(record)), "error");
  const t = await startTestServer({ users: { alice: "pw" }, modules: ["disco"] });
  try {
    t.server.modules.register("faulty", { default: faulty });
    await t.server.modules.load(t.server.hosts.get("localhost")!, "faulty");
    const { client } = await RawClient.login(t.port, "alice", "pw");

    for (const name of ["throws", "rejects"]) {
      client.send(`<iq type='get' id='${name}' to='localhost'><${name} xmlns='${NS}'/></iq>`);
      const answer = await client.next((el) => el.attrs.id === name);
      assert.equal(answer.attrs.type, "error", name);
      assert.equal(conditionOf(answer), "internal-server-error", name);
    }
    assert.ok(
      logged.some((l) =>
        /faulty.*iq-get\/host\/urn:example:faulty:throws.*deliberate throw/.test(l)
      ),
    );
    assert.ok(
      logged.some((l) =>
        /faulty.*iq-get\/host\/urn:example:faulty:rejects.*deliberate rejection/.test(l)
      ),
    );

    // A handler that answered before failing is not answered twice.
    client.send(
      `<iq type='get' id='both' to='localhost'><answers-then-throws xmlns='${NS}'/></iq>`,
    );
    assert.equal((await client.next((el) => el.attrs.id === "both")).attrs.type, "result");
    client.send(`<iq type='get' id='after' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
    const next = await client.next((el) => el.name === "iq");
    assert.equal(next.attrs.id, "after", "no second reply to 'both'");
    client.close();
  } finally {
    stopWatching();
    await t.stop();
  }
});
