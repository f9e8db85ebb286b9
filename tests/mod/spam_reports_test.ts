// XEP-0377 spam reports over real sockets: a block carrying a <report/> is recorded (who,
// whom, reason, text, stanza ids) and shown to admins by `spam reports`, cleared by
// `spam clear`; a block without one, or one the blocklist refuses, records nothing.

import assert from "node:assert/strict";
import { purgeAccount } from "../../core/auth/account_lifecycle.ts";
import type { Element } from "../../core/xml/element.ts";
import { parseSince } from "../../mod/spam_reports.ts";
import { RawClient } from "../helpers/raw_client.ts";
import { startTestServer, type TestServer } from "../helpers/test_server.ts";

const NS_BLOCKING = "urn:xmpp:blocking";
const NS_REPORTING = "urn:xmpp:reporting:1";
const MODULES = ["disco", "ping", "roster", "presence", "blocklist", "spam_reports"];

async function ask(client: RawClient, xml: string): Promise<Element> {
  const id = `iq-${crypto.randomUUID()}`;
  client.send(xml.replace("<iq ", `<iq id='${id}' `));
  return await client.next((el) => el.name === "iq" && el.attrs.id === id);
}

async function shell(t: TestServer, name: string, ...args: string[]) {
  const spec = t.server.commands.get("spam", name)!;
  return await spec.run(
    { server: t.server, emit: () => {}, signal: new AbortController().signal },
    args,
  );
}

function block(items: string): string {
  return `<iq type='set'><block xmlns='${NS_BLOCKING}'>${items}</block></iq>`;
}

Deno.test("a block with a spam report is recorded and listed for admins", async () => {
  const t = await startTestServer({ modules: MODULES, users: { alice: "pw" } });
  try {
    const { client: alice } = await RawClient.login(t.port, "alice", "pw", "r");
    const disco = await ask(
      alice,
      "<iq type='get' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    );
    assert.ok(
      disco.getChild("query")!.getChildren("feature").some((f) => f.attrs.var === NS_REPORTING),
    );
    assert.equal((await shell(t, "reports")).message, "No spam reports");

    const answer = await ask(
      alice,
      block(
        `<item jid='spammer@evil.example'><report xmlns='${NS_REPORTING}' reason='urn:xmpp:reporting:spam'>` +
          `<stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='s-1'/>` +
          `<text xml:lang='en'>Pills &amp; crypto</text></report></item>` +
          `<item jid='quiet@evil.example'/>`,
      ),
    );
    assert.equal(answer.attrs.type, "result");
    // The blocklist module still blocked both.
    const list = await ask(alice, `<iq type='get'><blocklist xmlns='${NS_BLOCKING}'/></iq>`);
    assert.deepEqual(
      list.getChild("blocklist")!.getChildren("item").map((i) => i.attrs.jid).sort(),
      ["quiet@evil.example", "spammer@evil.example"],
    );

    // The older form (urn:xmpp:reporting:0 with an <abuse/> child) is understood too.
    await ask(
      alice,
      block(
        "<item jid='troll@evil.example'><report xmlns='urn:xmpp:reporting:0'><abuse/></report></item>",
      ),
    );
    // A refused block (a malformed JID) records nothing.
    const refused = await ask(
      alice,
      block(
        `<item jid='@@'><report xmlns='${NS_REPORTING}' reason='urn:xmpp:reporting:spam'/></item>`,
      ),
    );
    assert.equal(refused.attrs.type, "error");

    const shown = await shell(t, "reports");
    const reports = shown.data as {
      reporter: string;
      reported: string;
      reason: string;
      text?: string;
      stanzaIds: { id: string }[];
    }[];
    assert.deepEqual(
      reports.map((r) => [r.reporter, r.reported, r.reason]).sort(),
      [
        ["alice@localhost", "spammer@evil.example", "urn:xmpp:reporting:spam"],
        ["alice@localhost", "troll@evil.example", "urn:xmpp:reporting:abuse"],
      ],
    );
    const spam = reports.find((r) => r.reported === "spammer@evil.example")!;
    assert.equal(spam.text, "Pills & crypto");
    assert.deepEqual(spam.stanzaIds.map((s) => s.id), ["s-1"]);
    assert.deepEqual(shown.table!.columns, [
      "time",
      "reporter",
      "reported",
      "reason",
      "stanzas",
      "text",
    ]);
    assert.equal(t.server.metrics.snapshot()["spam.reports"], 2);

    // --since: a window reaching back covers them, a date in the future none.
    assert.equal(((await shell(t, "reports", "--since", "1h")).data as unknown[]).length, 2);
    assert.equal(
      (await shell(t, "reports", "--since=2999-01-01")).message,
      "No spam reports since then",
    );
    await assert.rejects(shell(t, "reports", "--since", "yesterday"), /Expected a duration/);

    assert.equal((await shell(t, "clear", "troll@evil.example")).message, "Deleted 1 spam report");
    assert.equal((await shell(t, "clear")).message, "Deleted 1 spam report");
    assert.equal((await shell(t, "reports")).message, "No spam reports");
    alice.close();
  } finally {
    await t.stop();
  }
});

Deno.test("a purged account's own reports are deleted with it", async () => {
  const t = await startTestServer({ modules: MODULES, users: { alice: "pw", bob: "pw" } });
  try {
    for (const user of ["alice", "bob"]) {
      const { client } = await RawClient.login(t.port, user, "pw", "r");
      const answer = await ask(
        client,
        block(
          `<item jid='spammer@evil.example'><report xmlns='${NS_REPORTING}' reason='urn:xmpp:reporting:spam'/></item>`,
        ),
      );
      assert.equal(answer.attrs.type, "result");
      client.close();
    }
    assert.equal(purgeAccount(t.server, "localhost", "alice"), true);
    const left = (await shell(t, "reports")).data as { reporter: string }[];
    assert.deepEqual(left.map((r) => r.reporter), ["bob@localhost"]);
  } finally {
    await t.stop();
  }
});

Deno.test("parseSince reads durations back from now and dates", () => {
  const now = Date.parse("2026-12-07T00:00:00Z");
  assert.equal(parseSince("7d", now), now - 7 * 86_400_000);
  assert.equal(parseSince("90", now), now - 90_000);
  assert.equal(parseSince("2026-12-01", now), Date.parse("2026-12-01"));
  assert.equal(parseSince("soon", now), undefined);
});
