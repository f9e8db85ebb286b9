// A service Lilt hosts itself under its own domain: a [[component]] with a list of modules and
// its own disco, and a module written only against the module API (an echo bot) loaded on it
// and unloaded again at run time, with a table of its own made by its own migrations.

import assert from "node:assert/strict";
import type { StanzaEvent } from "../../core/hosts.ts";
import type { ModuleAPI } from "../../core/modules.ts";
import type { Migration } from "../../core/storage/migrations.ts";
import { Element } from "../../core/xml/element.ts";
import { RawClient } from "../helpers/raw_client.ts";
import { startTestServer } from "../helpers/test_server.ts";

const NS_INFO = "http://jabber.org/protocol/disco#info";

/**
 * An echo bot: answers every chat message with the same body and how many it has echoed for
 * that sender (kept in a table of its own), and says what it is in disco.
 */
function echoBot(m: ModuleAPI): void {
  m.addIdentity("automation", "bot", "Echo");
  m.addFeature("urn:example:echo");
  const echo = ({ stanza }: StanzaEvent) => {
    const body = stanza.getChildText("body");
    if (body === undefined || stanza.attrs.type === "error") return true;
    const sender = stanza.attrs.from!.split("/")[0];
    const { n } = m.database.prepare(
      "INSERT INTO echo_bot_counts (host, sender, n) VALUES (?, ?, 1) " +
        "ON CONFLICT (host, sender) DO UPDATE SET n = echo_bot_counts.n + 1 RETURNING n",
    ).get(m.domain, sender) as { n: number };
    m.send(
      new Element("message", { to: stanza.attrs.from!, from: m.domain, type: "chat" })
        .c("body").t(`echo #${n}: ${body}`).up(),
    );
    return true;
  };
  // To a user at the bot's domain, and to the bare domain itself (the host type).
  m.hook("message/bare", echo);
  m.hook("message/host", echo);
}

/** The echo bot's own schema: a table, then (a later release) an index on it. */
const ECHO_BOT_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: "echoes per sender",
    up(db) {
      db.exec(`CREATE TABLE echo_bot_counts (
        host TEXT NOT NULL, sender TEXT NOT NULL, n INTEGER NOT NULL,
        PRIMARY KEY (host, sender))`);
    },
  },
  {
    version: 2,
    description: "busiest senders first",
    up(db) {
      db.exec("CREATE INDEX echo_bot_counts_n ON echo_bot_counts (host, n)");
    },
  },
];

async function infoOf(client: RawClient, to: string): Promise<Element> {
  const id = crypto.randomUUID();
  client.send(`<iq type='get' id='${id}' to='${to}'><query xmlns='${NS_INFO}'/></iq>`);
  const answer = await client.next((el) => el.attrs.id === id);
  assert.equal(answer.attrs.type, "result", `disco#info of ${to}`);
  return answer.getChild("query")!;
}

Deno.test("a component with its own modules and disco; an echo bot loads and unloads on it", async () => {
  const t = await startTestServer({
    users: { alice: "pw" },
    extraToml: '[[component]]\ndomain = "echo.localhost"\nmodules = ["disco", "ping", "time"]\n',
  });
  try {
    const component = t.server.hosts.get("echo.localhost")!;
    assert.deepEqual(t.server.modules.loaded("echo.localhost").sort(), ["disco", "ping", "time"]);
    const { client } = await RawClient.login(t.port, "alice", "pw", "a");
    let features = (await infoOf(client, "echo.localhost")).getChildren("feature")
      .map((f) => f.attrs.var);
    assert.ok(features.includes("urn:xmpp:ping"));
    assert.ok(!features.includes("urn:example:echo"));
    // A component is not the server: without an identity of its own it is a generic component.
    const identitiesOf = async () =>
      (await infoOf(client, "echo.localhost")).getChildren("identity")
        .map((i) => `${i.attrs.category}/${i.attrs.type}`);
    assert.deepEqual(await identitiesOf(), ["component/generic"]);

    t.server.modules.register("echo_bot", { default: echoBot, migrations: ECHO_BOT_MIGRATIONS });
    await t.server.modules.load(component, "echo_bot");
    const info = await infoOf(client, "echo.localhost");
    features = info.getChildren("feature").map((f) => f.attrs.var);
    assert.ok(features.includes("urn:example:echo"));
    assert.deepEqual(await identitiesOf(), ["automation/bot"]);
    // The local host's own disco is not touched.
    const local = (await infoOf(client, "localhost")).getChildren("feature").map((f) =>
      f.attrs.var
    );
    assert.ok(!local.includes("urn:example:echo"));

    client.send("<message to='echo.localhost' type='chat' id='e1'><body>hello</body></message>");
    const echoed = await client.next((el) => el.getChildText("body") === "echo #1: hello");
    assert.equal(echoed.attrs.from, "echo.localhost");
    client.send("<message to='echo.localhost' type='chat' id='e2'><body>again</body></message>");
    await client.next((el) => el.getChildText("body") === "echo #2: again");
    // Its tables came from its own migrations, recorded under its name.
    const schema = t.server.database
      .prepare("SELECT version FROM module_schema WHERE module = ?").get("echo_bot");
    assert.equal(schema?.version, 2);

    assert.equal(t.server.modules.unload(component, "echo_bot"), true);
    features = (await infoOf(client, "echo.localhost")).getChildren("feature").map((f) =>
      f.attrs.var
    );
    assert.ok(!features.includes("urn:example:echo"));
    client.close();
  } finally {
    await t.stop();
  }
});
