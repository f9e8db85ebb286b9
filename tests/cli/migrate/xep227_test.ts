// XEP-0227 export and import as an operator runs them (`lilt export xep227`, `lilt import
// xep227`): a round trip between two Lilt servers keeps what users see over real sockets, an
// existing account is skipped or replaced, a malformed file writes nothing and says where it is
// wrong, and an import into a running server is refused.

import assert from "node:assert/strict";
import { AccountStore } from "../../../core/auth/accounts.ts";
import { Database } from "../../../core/storage/database.ts";
import { importAccounts, pepDefaultConfig } from "../../../cli/migrate/account_import.ts";
import { importXep227 } from "../../../cli/migrate/xep227_import.ts";
import { PubsubStore } from "../../../mod/pubsub/storage.ts";
import { runLilt, startLiltProcess } from "../../helpers/lilt_process.ts";
import { RawClient, roundTrip } from "../../helpers/raw_client.ts";
import { iqResult } from "../../helpers/iq.ts";
import { openTestStore } from "../../helpers/test_store.ts";
import { startTestServer, testConfigText } from "../../helpers/test_server.ts";

const NS_ROSTER = "jabber:iq:roster";
const NS_PUBSUB = "http://jabber.org/protocol/pubsub";
const NS_NICK = "http://jabber.org/protocol/nick";
const NS_AVATAR_DATA = "urn:xmpp:avatar:data";
const NS_AVATAR_META = "urn:xmpp:avatar:metadata";
const OMEMO_DEVICES = "eu.siacs.conversations.axolotl.devicelist";
const NS_BLOCKING = "urn:xmpp:blocking";
const NS_DELAY = "urn:xmpp:delay";
const NS_MAM = "urn:xmpp:mam:2";
const USERS = { alice: "alice's old secret", bob: "bob-pw-2024" };

/** Runs `main.ts ARGS` as the operator would, in a process of its own. */
function lilt(args: string[]) {
  return runLilt(args);
}

/** A data directory with its configuration file written (what `-c` points at). */
async function dataDirWithConfig(): Promise<{ dir: string; configFile: string }> {
  const dir = await Deno.makeTempDir({ prefix: "lilt-xep227-" });
  const configFile = `${dir}/lilt.toml`;
  await Deno.writeTextFile(configFile, testConfigText(dir));
  return { dir, configFile };
}

/** SCRAM login with `hash`, then the new stream and a bound resource. */
async function scramLogin(
  port: number,
  user: string,
  password: string,
  hash: "SHA-1" | "SHA-256",
): Promise<RawClient> {
  const client = await RawClient.connect(port);
  await client.open();
  await client.starttls();
  const { outcome, verified } = await client.scram(user, password, { hash });
  assert.equal(outcome.name, "success", `SCRAM-${hash} login of ${user} failed`);
  assert.ok(verified, "the server signature proves the server has the carried-over keys");
  client.restart();
  await client.open();
  client.send(
    "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>" +
      "<resource>b</resource></bind></iq>",
  );
  await client.next((el) => el.name === "iq" && el.attrs.id === "bind");
  return client;
}

function publish(node: string, id: string, payload: string, options = ""): string {
  return `<pubsub xmlns='${NS_PUBSUB}'><publish node='${node}'><item id='${id}'>${payload}</item>` +
    `</publish>${options}</pubsub>`;
}

const OPEN_ACCESS = "<publish-options><x xmlns='jabber:x:data' type='submit'>" +
  `<field var='FORM_TYPE' type='hidden'><value>${NS_PUBSUB}#publish-options</value></field>` +
  "<field var='pubsub#access_model'><value>open</value></field></x></publish-options>";

/** Fills server A over real sockets with what users keep on a server. */
async function fillServerA(port: number): Promise<void> {
  const { client: alice } = await RawClient.login(port, "alice", USERS.alice, "desk");
  await iqResult(
    alice,
    "set",
    `<query xmlns='${NS_ROSTER}'><item jid='bob@localhost' name='Bobby'>` +
      "<group>Friends</group><group>Work</group></item></query>",
  );
  await iqResult(
    alice,
    "set",
    `<query xmlns='${NS_ROSTER}'><item jid='carol@elsewhere.example' name='Carol'>` +
      "<group>Far</group></item></query>",
  );
  // Pending out for alice, pending in for bob (who is offline).
  alice.send("<presence to='bob@localhost' type='subscribe'/>");
  await roundTrip(alice);
  await iqResult(
    alice,
    "set",
    "<vCard xmlns='vcard-temp'><FN>Alice Liddell</FN><NICKNAME>al</NICKNAME></vCard>",
  );
  await iqResult(
    alice,
    "set",
    "<query xmlns='jabber:iq:private'><prefs xmlns='example:prefs'><theme>dark</theme></prefs></query>",
  );
  await iqResult(alice, "set", publish(NS_NICK, "current", `<nick xmlns='${NS_NICK}'>Ally</nick>`));
  await iqResult(
    alice,
    "set",
    publish(NS_AVATAR_DATA, "abc123", `<data xmlns='${NS_AVATAR_DATA}'>iVBORw0KGgo=</data>`),
  );
  await iqResult(
    alice,
    "set",
    publish(
      NS_AVATAR_META,
      "abc123",
      `<metadata xmlns='${NS_AVATAR_META}'><info id='abc123' bytes='8' type='image/png'/></metadata>`,
    ),
  );
  await iqResult(
    alice,
    "set",
    publish(
      OMEMO_DEVICES,
      "current",
      "<list xmlns='eu.siacs.conversations.axolotl'><device id='4711'/></list>",
      OPEN_ACCESS,
    ),
  );
  await iqResult(
    alice,
    "set",
    `<block xmlns='${NS_BLOCKING}'><item jid='spammer@evil.example'/></block>`,
  );
  alice.send(
    "<message to='bob@localhost' type='chat' id='m1'><body>Hello while you are away</body></message>",
  );
  await roundTrip(alice);
  alice.close();
}

Deno.test("XEP-0227 round trip between two Lilt servers keeps what users see", async () => {
  const a = await dataDirWithConfig();
  const b = await dataDirWithConfig();
  const file = `${a.dir}/export.xml`;
  try {
    const serverA = await startTestServer({ dataDir: a.dir, users: USERS });
    try {
      await fillServerA(serverA.port);
    } finally {
      await serverA.stop();
    }

    const exported = await lilt(["export", "xep227", file, "-c", a.configFile]);
    assert.equal(exported.code, 0, exported.stderr);
    assert.match(exported.stdout, /Exported 2 accounts \(2 of localhost\)/);
    assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600, "the file holds credential hashes");
    const xml = await Deno.readTextFile(file);
    assert.match(xml, /<server-data xmlns='urn:xmpp:pie:0'>/);
    assert.match(xml, /<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-256'>/);
    assert.doesNotMatch(xml, /password=/, "no password is ever exported");

    const imported = await lilt(["import", "xep227", file, "-c", b.configFile]);
    assert.equal(imported.code, 0, imported.stderr);
    assert.match(imported.stdout, /Imported 2 accounts/);

    const serverB = await startTestServer({ dataDir: b.dir });
    try {
      // Old passwords, both SCRAM hashes.
      (await scramLogin(serverB.port, "alice", USERS.alice, "SHA-1")).close();
      const alice = await scramLogin(serverB.port, "alice", USERS.alice, "SHA-256");

      const roster = await iqResult(alice, "get", `<query xmlns='${NS_ROSTER}'/>`);
      const items = roster.getChild("query", NS_ROSTER)!.getChildren("item");
      const bob = items.find((item) => item.attrs.jid === "bob@localhost")!;
      assert.equal(bob.attrs.name, "Bobby");
      assert.equal(bob.attrs.subscription, "none");
      assert.equal(bob.attrs.ask, "subscribe", "the pending outbound request is kept");
      assert.deepEqual(bob.getChildren("group").map((g) => g.text()).sort(), ["Friends", "Work"]);
      const carol = items.find((item) => item.attrs.jid === "carol@elsewhere.example")!;
      assert.deepEqual(carol.getChildren("group").map((g) => g.text()), ["Far"]);

      // A change is pushed with the item as kept.
      alice.send("<presence/>");
      await iqResult(
        alice,
        "set",
        `<query xmlns='${NS_ROSTER}'><item jid='carol@elsewhere.example' name='Caroline'>` +
          "<group>Far</group></item></query>",
      );
      const push = await alice.next((el) =>
        el.name === "iq" && el.attrs.type === "set" && el.getChild("query", NS_ROSTER) !== undefined
      );
      assert.equal(push.getChild("query", NS_ROSTER)!.getChild("item")!.attrs.name, "Caroline");

      const vcard = await iqResult(alice, "get", "<vCard xmlns='vcard-temp'/>");
      assert.equal(vcard.getChild("vCard", "vcard-temp")!.getChildText("FN"), "Alice Liddell");

      const priv = await iqResult(
        alice,
        "get",
        "<query xmlns='jabber:iq:private'><prefs xmlns='example:prefs'/></query>",
      );
      assert.equal(
        priv.getChild("query", "jabber:iq:private")!.getChild("prefs", "example:prefs")!
          .getChildText("theme"),
        "dark",
      );

      const nick = await iqResult(
        alice,
        "get",
        `<pubsub xmlns='${NS_PUBSUB}'><items node='${NS_NICK}'/></pubsub>`,
        "alice@localhost",
      );
      assert.match(
        JSON.stringify(nick.getChild("pubsub", NS_PUBSUB)!.getChild("items")!
          .getChild("item")!.getChild("nick", NS_NICK)!.text()),
        /Ally/,
      );
      const meta = await iqResult(
        alice,
        "get",
        `<pubsub xmlns='${NS_PUBSUB}'><items node='${NS_AVATAR_META}'/></pubsub>`,
        "alice@localhost",
      );
      const info = meta.getChild("pubsub", NS_PUBSUB)!.getChild("items")!.getChild("item")!
        .getChild("metadata", NS_AVATAR_META)!.getChild("info")!;
      assert.equal(info.attrs.id, "abc123");

      const blocked = await iqResult(alice, "get", `<blocklist xmlns='${NS_BLOCKING}'/>`);
      assert.deepEqual(
        blocked.getChild("blocklist", NS_BLOCKING)!.getChildren("item").map((i) => i.attrs.jid),
        ["spammer@evil.example"],
      );

      // The message archive came along.
      alice.send(`<iq type='set' id='mam1'><query xmlns='${NS_MAM}' queryid='q1'/></iq>`);
      const archived = await alice.next((el) =>
        el.name === "message" && el.getChild("result", NS_MAM)?.attrs.queryid === "q1"
      );
      assert.match(
        archived.getChild("result", NS_MAM)!.getChild("forwarded")!.getChild("message")!
          .getChildText("body")!,
        /Hello while you are away/,
      );
      await alice.next((el) => el.name === "iq" && el.attrs.id === "mam1");
      alice.close();

      // Bob: old password, the offline message with its delay, alice's pending request, and
      // alice's OMEMO device list, whose open access model came along.
      const bobClient = await scramLogin(serverB.port, "bob", USERS.bob, "SHA-256");
      bobClient.send("<presence/>");
      const offline = await bobClient.next((el) =>
        el.name === "message" && el.getChildText("body") === "Hello while you are away"
      );
      const delay = offline.getChild("delay", NS_DELAY)!;
      assert.equal(delay.attrs.from, "localhost");
      assert.ok(Date.parse(delay.attrs.stamp!) <= Date.now());
      // Its stanza-id names the archived copy by the id that copy has on this server.
      const stanzaId = offline.getChildren("stanza-id", "urn:xmpp:sid:0")
        .find((el) => el.attrs.by === "bob@localhost")!.attrs.id;
      bobClient.send(`<iq type='set' id='mam2'><query xmlns='${NS_MAM}' queryid='q2'/></iq>`);
      const bobArchived = await bobClient.next((el) =>
        el.name === "message" && el.getChild("result", NS_MAM)?.attrs.queryid === "q2"
      );
      assert.equal(bobArchived.getChild("result", NS_MAM)!.attrs.id, stanzaId);
      await bobClient.next((el) => el.name === "iq" && el.attrs.id === "mam2");
      const request = await bobClient.next((el) =>
        el.name === "presence" && el.attrs.type === "subscribe"
      );
      assert.equal(request.attrs.from?.split("/")[0], "alice@localhost");
      const devices = await iqResult(
        bobClient,
        "get",
        `<pubsub xmlns='${NS_PUBSUB}'><items node='${OMEMO_DEVICES}'/></pubsub>`,
        "alice@localhost",
      );
      const device = devices.getChild("pubsub", NS_PUBSUB)!.getChild("items")!.getChild("item")!
        .getChild("list")!.getChild("device")!;
      assert.equal(device.attrs.id, "4711");
      bobClient.close();
    } finally {
      await serverB.stop();
    }
  } finally {
    await Deno.remove(a.dir, { recursive: true }).catch(() => {});
    await Deno.remove(b.dir, { recursive: true }).catch(() => {});
  }
});

/** A small XEP-0227 file with one account and a plaintext password. */
function oneAccountFile(password: string, extra = ""): string {
  return `<?xml version='1.0' encoding='UTF-8'?>
<!-- written by hand -->
<server-data xmlns='urn:xmpp:pie:0'>
  <host jid='localhost'>
    <user name='alice' password='${password}'>
      <query xmlns='jabber:iq:roster'>
        <item jid='bob@localhost' subscription='both'><group>Imported</group></item>
      </query>
    </user>${extra}
  </host>
</server-data>
`;
}

Deno.test("XEP-0227 import skips an existing account and replaces it with --overwrite", async () => {
  const b = await dataDirWithConfig();
  try {
    const database = openTestStore(b.dir);
    try {
      const accounts = new AccountStore(database, { iterations: 4096 });
      await accounts.create("localhost", "alice", "kept-password");
    } finally {
      database.close();
    }
    const file = `${b.dir}/in.xml`;
    await Deno.writeTextFile(file, oneAccountFile("from-file"));

    const skipped = await lilt(["import", "xep227", file, "-c", b.configFile]);
    assert.equal(skipped.code, 0, skipped.stderr);
    assert.match(skipped.stderr, /skipped alice@localhost: alice@localhost exists already/);
    assert.match(skipped.stdout, /Imported 0 accounts .*skipped 1/);
    {
      const database = openTestStore(b.dir);
      const accounts = new AccountStore(database);
      assert.ok(await accounts.verifyPassword("localhost", "alice", "kept-password"));
      database.close();
    }

    const replaced = await lilt(["import", "xep227", file, "--overwrite", "-c", b.configFile]);
    assert.equal(replaced.code, 0, replaced.stderr);
    assert.match(replaced.stdout, /Imported 1 accounts .*\(1 replaced\)/);
    const server = await startTestServer({ dataDir: b.dir });
    try {
      const { client } = await RawClient.login(server.port, "alice", "from-file");
      const roster = await iqResult(client, "get", `<query xmlns='${NS_ROSTER}'/>`);
      const item = roster.getChild("query", NS_ROSTER)!.getChild("item")!;
      assert.equal(item.attrs.jid, "bob@localhost");
      assert.equal(item.attrs.subscription, "both");
      client.close();
    } finally {
      await server.stop();
    }
  } finally {
    await Deno.remove(b.dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("a malformed XEP-0227 file is refused with file:line and writes nothing", async () => {
  const b = await dataDirWithConfig();
  try {
    // Not well-formed: the error names the line.
    const broken = `${b.dir}/broken.xml`;
    await Deno.writeTextFile(broken, oneAccountFile("pw", "\n    <user name='bob'>\n  </host>"));
    const result = await lilt(["import", "xep227", broken, "-c", b.configFile]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, new RegExp(`import failed: ${broken}:1[0-9]:`));
    assert.match(result.stderr, /Nothing was imported/);

    // Well-formed, but the second account's credentials are wrong: the first is not written.
    const badScram = `${b.dir}/bad-scram.xml`;
    await Deno.writeTextFile(
      badScram,
      oneAccountFile(
        "pw",
        "\n    <user name='bob'>\n      <scram-credentials xmlns='urn:xmpp:pie:0#scram' " +
          "mechanism='SCRAM-SHA-1'>\n        <iter-count>4096</iter-count><salt>c2FsdA==</salt>" +
          "\n        <stored-key>AAAAAAAAAAAAAAAAAAAAAAAAAAA=</stored-key><server-key>not base64!</server-key>" +
          "\n      </scram-credentials>\n    </user>",
      ),
    );
    const scram = await lilt(["import", "xep227", badScram, "-c", b.configFile]);
    assert.equal(scram.code, 1);
    assert.match(
      scram.stderr,
      new RegExp(`${badScram}:13: bob@localhost: <server-key/> of SCRAM-SHA-1 is not base64`),
    );

    // Not a XEP-0227 document at all.
    const wrongRoot = `${b.dir}/wrong.xml`;
    await Deno.writeTextFile(wrongRoot, "<accounts><user name='x'/></accounts>");
    const root = await lilt(["import", "xep227", wrongRoot, "-c", b.configFile]);
    assert.equal(root.code, 1);
    assert.match(
      root.stderr,
      /wrong\.xml:1: expected the root <server-data xmlns='urn:xmpp:pie:0'\/>/,
    );

    // A host that is not configured.
    const otherHost = `${b.dir}/other.xml`;
    await Deno.writeTextFile(
      otherHost,
      oneAccountFile("pw").replace("jid='localhost'", "jid='elsewhere.example'"),
    );
    const host = await lilt(["import", "xep227", otherHost, "-c", b.configFile]);
    assert.equal(host.code, 1);
    assert.match(host.stderr, /other\.xml:4: host 'elsewhere\.example' is not served here/);

    const database = openTestStore(b.dir);
    try {
      assert.deepEqual(new AccountStore(database).list("localhost"), [], "nothing was written");
    } finally {
      database.close();
    }
  } finally {
    await Deno.remove(b.dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("XEP-0227 import follows relative XIncludes and reports what it leaves out", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lilt-xep227-" });
  try {
    await Deno.mkdir(`${dir}/localhost`);
    await Deno.writeTextFile(
      `${dir}/main.xml`,
      "<server-data xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude'>" +
        "<xi:include href='localhost.xml'/></server-data>",
    );
    await Deno.writeTextFile(
      `${dir}/localhost.xml`,
      "<host xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude' jid='localhost'>\n" +
        "<xi:include href='localhost/juliet.xml'/></host>",
    );
    await Deno.writeTextFile(
      `${dir}/localhost/juliet.xml`,
      "<user xmlns='urn:xmpp:pie:0' name='Juliet' password='r0m30'>\n" +
        "  <query xmlns='jabber:iq:privacy'><list name='x'/></query>\n" +
        "  <pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='urn:xmpp:microblog:0'>\n" +
        "    <x xmlns='jabber:x:data' type='submit'>" +
        "<field var='pubsub#access_model'><value>open</value></field>" +
        "<field var='pubsub#max_items'><value>lots</value></field></x></configure></pubsub>\n" +
        "  <pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:microblog:0'>" +
        "<item id='first'><entry xmlns='http://www.w3.org/2005/Atom'>Hi</entry></item>" +
        "</items></pubsub>\n</user>",
    );
    const database = Database.open({ path: ":memory:" });
    try {
      const result = await importXep227(database, `${dir}/main.xml`, {
        hosts: ["localhost"],
        iterations: () => 4096,
      });
      assert.deepEqual(result.results.map((r) => [r.username, r.outcome.status]), [
        ["juliet", "imported"],
      ]);
      assert.deepEqual(result.warnings, [
        `${dir}/localhost/juliet.xml:2: <query xmlns='jabber:iq:privacy'/> of juliet@localhost ` +
        "is not imported",
        `${dir}/localhost/juliet.xml:4: juliet@localhost: node 'urn:xmpp:microblog:0': Field ` +
        "'pubsub#max_items' expected an integer from 0 to 100000, found 'lots'; Lilt's default " +
        "is kept",
      ]);
      // The node came along with the options Lilt could take, and its item.
      const pubsub = new PubsubStore(database);
      const node = pubsub.node("juliet@localhost", "urn:xmpp:microblog:0")!;
      assert.equal(node.config.accessModel, "open");
      assert.equal(node.config.maxItems, 1);
      assert.deepEqual(
        pubsub.items("juliet@localhost", "urn:xmpp:microblog:0").map((i) => i.itemId),
        ["first"],
      );
      assert.ok(await new AccountStore(database).verifyPassword("localhost", "juliet", "r0m30"));
    } finally {
      database.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("XEP-0227 import is refused while the server runs", async () => {
  const b = await dataDirWithConfig();
  const file = `${b.dir}/in.xml`;
  await Deno.writeTextFile(file, oneAccountFile("pw"));
  const server = await startLiltProcess(b.configFile);
  try {
    const result = await lilt(["import", "xep227", file, "-c", b.configFile]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /cannot import while the server is running/);
  } finally {
    await server.stop();
    await Deno.remove(b.dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("XEP-0227 export works while the server runs", async () => {
  const a = await dataDirWithConfig();
  const server = await startTestServer({ dataDir: a.dir, users: USERS });
  try {
    const { client } = await RawClient.login(server.port, "alice", USERS.alice);
    await iqResult(client, "set", "<vCard xmlns='vcard-temp'><FN>Alice</FN></vCard>");
    const file = `${a.dir}/live.xml`;
    const result = await lilt(["export", "xep227", file, "-c", a.configFile]);
    assert.equal(result.code, 0, result.stderr);
    const xml = await Deno.readTextFile(file);
    assert.match(xml, /<user name='alice'>.*<vCard xmlns='vcard-temp'><FN>Alice<\/FN><\/vCard>/);
    assert.match(xml, /<user name='bob'>/);
    // The server goes on serving.
    await iqResult(client, "get", "<vCard xmlns='vcard-temp'/>");
    client.close();
  } finally {
    await server.stop();
    await Deno.remove(a.dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("importAccounts writes all accounts or none when a write fails midway", async () => {
  const database = Database.open({ path: ":memory:" });
  try {
    const node = { node: "urn:xmpp:tune", config: pepDefaultConfig(), items: [] };
    await assert.rejects(
      importAccounts(database, [
        { host: "localhost", account: { username: "romeo", password: "pw" } },
        // The same node twice cannot be stored: the second account fails while being written.
        { host: "localhost", account: { username: "mercutio", password: "pw", pep: [node, node] } },
      ], { iterations: () => 4096 }),
    );
    assert.deepEqual(new AccountStore(database).list("localhost"), []);
    assert.deepEqual(new PubsubStore(database).nodes("mercutio@localhost"), []);
  } finally {
    database.close();
  }
});
