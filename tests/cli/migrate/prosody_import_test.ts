// `lilt import prosody` against data a real Debian Prosody 0.12 wrote: accounts made with
// prosodyctl, a client filling roster, vCard, private XML, PEP and an offline message over
// SCRAM-SHA-1, once with internal file storage and once with SQLite storage; then Lilt serves the
// imported accounts (and the MUC room) and users log in with their old passwords. Also: errors
// for data that is not Prosody's, hosts not served here, malformed files, an import into a
// running server, the choice between both backends and --overwrite.

import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { finish, runLilt, startLiltProcess } from "../../helpers/lilt_process.ts";
import { startProsody, writeProsodyAccount } from "../../helpers/prosody.ts";
import { AccountStore } from "../../../core/auth/accounts.ts";
import { deriveCredentials, utf8 } from "../../../core/auth/scram.ts";
import { startDnsResponder } from "../../helpers/dns_responder.ts";
import { makeTestCa } from "../../helpers/test_ca.ts";
import { RawClient, roundTrip } from "../../helpers/raw_client.ts";
import { iqResult } from "../../helpers/iq.ts";
import { openTestStore } from "../../helpers/test_store.ts";
import { startTestServer, testConfigText } from "../../helpers/test_server.ts";
import { serialize } from "../../../core/xml/serializer.ts";

const DOMAIN = "prosody.test";
const ROOMS = "rooms.prosody.test";
const NS_MUC = "http://jabber.org/protocol/muc";
const NS_ROSTER = "jabber:iq:roster";
const NS_PUBSUB = "http://jabber.org/protocol/pubsub";
const NS_NICK = "http://jabber.org/protocol/nick";
const NS_BOOKMARKS = "urn:xmpp:bookmarks:1";
const NS_DELAY = "urn:xmpp:delay";
const USERS = { alice: "alice's old Prosody secret", bob: "bob-pw-ünïcode" };

/** Runs `main.ts ARGS` as the operator would, in a process of its own. */
function lilt(args: string[]) {
  return runLilt(args);
}

/** Lilt's MUC service, at the domain of Prosody's MUC component. */
const MUC_TOML = `[[component]]\ndomain = "${ROOMS}"\nmodules = ["disco", "muc"]\n`;

/** A fresh Lilt data directory serving `domain`, with its configuration file. */
async function liltDataDir(domain = DOMAIN): Promise<{ dir: string; configFile: string }> {
  const dir = await Deno.makeTempDir({ prefix: "lilt-prosody-import-" });
  const configFile = `${dir}/lilt.toml`;
  await Deno.writeTextFile(configFile, testConfigText(dir, { domain, extraToml: MUC_TOML }));
  return { dir, configFile };
}

/** STARTTLS, SCRAM-SHA-1 (the only hash Prosody 0.12 keeps), a new stream, a bound resource. */
async function scramSha1Login(port: number, user: string, password: string): Promise<RawClient> {
  const client = await RawClient.connect(port);
  await client.open(DOMAIN);
  await client.starttls(DOMAIN);
  assert.ok(client.advertisedSasl().mechanisms.includes("SCRAM-SHA-1"), "SCRAM-SHA-1 offered");
  const { outcome, verified } = await client.scram(user, password, { hash: "SHA-1" });
  assert.equal(outcome.name, "success", `SCRAM-SHA-1 login of ${user} failed`);
  assert.ok(verified, "the server signature proves the server holds the user's own keys");
  client.restart();
  await client.open(DOMAIN);
  client.send(
    "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>" +
      "<resource>r</resource></bind></iq>",
  );
  await client.next((el) => el.name === "iq" && el.attrs.id === "bind");
  return client;
}

const BOOKMARK_OPTIONS = "<publish-options><x xmlns='jabber:x:data' type='submit'>" +
  `<field var='FORM_TYPE' type='hidden'><value>${NS_PUBSUB}#publish-options</value></field>` +
  "<field var='pubsub#persist_items'><value>true</value></field>" +
  "<field var='pubsub#max_items'><value>max</value></field>" +
  "<field var='pubsub#access_model'><value>whitelist</value></field>" +
  "</x></publish-options>";

/**
 * Runs a real Prosody with `storage` in a temporary directory, registers the users with
 * prosodyctl, fills alice's account over a client connection, stops Prosody and returns its
 * data directory (the caller removes `dir`).
 */
async function prosodyData(storage: "internal" | "sql"): Promise<{ dir: string; dataDir: string }> {
  const certDir = await Deno.makeTempDir({ prefix: "lilt-prosody-ca-" });
  const dns = await startDnsResponder({});
  try {
    const ca = await makeTestCa(certDir, [DOMAIN]);
    const prosody = await startProsody({
      domain: DOMAIN,
      dns: { port: dns.port },
      certFile: ca.certFile,
      keyFile: ca.keyFile,
      modules: ["vcard", "private", "offline", "pep", "bookmarks", "blocklist"],
      globalConfig: storage === "sql"
        ? 'storage = "sql"\nsql = { driver = "SQLite3", database = "prosody.sqlite" }'
        : "",
      extraConfig: `Component ${JSON.stringify(ROOMS)} "muc"\n`,
      keepDir: true,
    });
    try {
      for (const [user, password] of Object.entries(USERS)) {
        const registered = await finish(
          new Deno.Command("prosodyctl", {
            args: ["--config", prosody.configFile, "register", user, DOMAIN, password],
            stdin: "null",
            stdout: "piped",
            stderr: "piped",
          }).spawn(),
        );
        assert.equal(registered.code, 0, `prosodyctl register ${user}: ${registered.stderr}`);
      }
      const alice = await scramSha1Login(prosody.c2sPort, "alice", USERS.alice);
      await iqResult(
        alice,
        "set",
        `<query xmlns='${NS_ROSTER}'><item jid='bob@${DOMAIN}' name='Bobby'>` +
          "<group>Friends</group><group>Work</group></item></query>",
      );
      await iqResult(
        alice,
        "set",
        `<query xmlns='${NS_ROSTER}'><item jid='carol@elsewhere.test' name='Carol'>` +
          "<group>Far</group></item></query>",
      );
      alice.send(`<presence to='bob@${DOMAIN}' type='subscribe'/>`);
      await roundTrip(alice);
      await iqResult(
        alice,
        "set",
        "<vCard xmlns='vcard-temp'><FN>Alice Liddell</FN><NICKNAME>al &amp; co</NICKNAME>" +
          "<NOTE xml:lang='en'>ünïcode \"quoted\" line\nbreak</NOTE></vCard>",
      );
      await iqResult(
        alice,
        "set",
        "<query xmlns='jabber:iq:private'><prefs xmlns='example:prefs'><theme>dark</theme>" +
          "</prefs></query>",
      );
      await iqResult(
        alice,
        "set",
        `<pubsub xmlns='${NS_PUBSUB}'><publish node='${NS_NICK}'><item id='current'>` +
          `<nick xmlns='${NS_NICK}'>Ally</nick></item></publish></pubsub>`,
      );
      await iqResult(
        alice,
        "set",
        `<pubsub xmlns='${NS_PUBSUB}'><publish node='${NS_BOOKMARKS}'>` +
          `<item id='tea@rooms.elsewhere.test'><conference xmlns='${NS_BOOKMARKS}' ` +
          "name='Tea party' autojoin='true'><nick>alice</nick></conference></item></publish>" +
          `${BOOKMARK_OPTIONS}</pubsub>`,
      );
      // A persistent, members-only room with a subject, bob a member.
      alice.send(`<presence to='tea@${ROOMS}/Alice'><x xmlns='${NS_MUC}'/></presence>`);
      await alice.next((el) => el.name === "presence" && el.attrs.from === `tea@${ROOMS}/Alice`);
      await iqResult(
        alice,
        "set",
        `<query xmlns='${NS_MUC}#owner'><x xmlns='jabber:x:data' type='submit'>` +
          `<field var='FORM_TYPE'><value>${NS_MUC}#roomconfig</value></field>` +
          "<field var='muc#roomconfig_persistentroom'><value>1</value></field>" +
          "<field var='muc#roomconfig_roomname'><value>Tea Party</value></field>" +
          "<field var='muc#roomconfig_roomdesc'><value>Mad hatters only</value></field>" +
          "<field var='muc#roomconfig_membersonly'><value>1</value></field>" +
          "</x></query>",
        `tea@${ROOMS}`,
      );
      await iqResult(
        alice,
        "set",
        `<query xmlns='${NS_MUC}#admin'><item affiliation='member' jid='bob@${DOMAIN}'/></query>`,
        `tea@${ROOMS}`,
      );
      alice.send(
        `<message to='tea@${ROOMS}' type='groupchat'><subject>Why is a raven like a desk?</subject>` +
          "</message>",
      );
      await alice.next((el) => el.name === "message" && el.getChild("subject") !== undefined);
      alice.send(`<presence to='tea@${ROOMS}/Alice' type='unavailable'/>`);
      await roundTrip(alice);
      alice.send(
        `<message to='bob@${DOMAIN}' type='chat' id='m1'><body>Hello while you are away</body>` +
          "</message>",
      );
      await roundTrip(alice);
      alice.close();
      await alice.waitClosed().catch(() => {});
    } finally {
      await prosody.stop();
    }
    return { dir: prosody.dir, dataDir: prosody.dataDir };
  } finally {
    await dns.close();
    await Deno.remove(certDir, { recursive: true }).catch(() => {});
  }
}

/** Imports `dataDir` into a fresh Lilt, logs both users in with their old passwords, checks. */
async function importAndCheck(dataDir: string, storage: "internal" | "sql"): Promise<void> {
  const lilt0 = await liltDataDir();
  try {
    const imported = await lilt(["import", "prosody", dataDir, "-c", lilt0.configFile]);
    assert.equal(imported.code, 0, imported.stderr);
    assert.match(
      imported.stdout,
      new RegExp(`Imported 2 accounts from Prosody's ${storage} storage at .* and 1 MUC rooms`),
    );

    const server = await startTestServer({
      dataDir: lilt0.dir,
      domain: DOMAIN,
      extraToml: MUC_TOML,
    });
    try {
      const alice = await scramSha1Login(server.port, "alice", USERS.alice);
      const roster = await iqResult(alice, "get", `<query xmlns='${NS_ROSTER}'/>`);
      const items = roster.getChild("query", NS_ROSTER)!.getChildren("item");
      const bob = items.find((item) => item.attrs.jid === `bob@${DOMAIN}`);
      assert.ok(bob, `bob is on alice's roster: ${serialize(roster)}`);
      assert.equal(bob.attrs.name, "Bobby");
      assert.equal(bob.attrs.subscription, "none");
      assert.equal(bob.attrs.ask, "subscribe", "the pending outbound request is kept");
      assert.deepEqual(bob.getChildren("group").map((g) => g.text()).sort(), ["Friends", "Work"]);
      const carol = items.find((item) => item.attrs.jid === "carol@elsewhere.test");
      assert.deepEqual(carol?.getChildren("group").map((g) => g.text()), ["Far"]);

      const vcard = (await iqResult(alice, "get", "<vCard xmlns='vcard-temp'/>"))
        .getChild("vCard", "vcard-temp")!;
      assert.equal(vcard.getChildText("FN"), "Alice Liddell");
      assert.equal(vcard.getChildText("NICKNAME"), "al & co");
      const note = vcard.getChild("NOTE")!;
      assert.equal(note.text(), 'ünïcode "quoted" line\nbreak');
      assert.equal(note.attrs["xml:lang"], "en");

      const prefs = (await iqResult(
        alice,
        "get",
        "<query xmlns='jabber:iq:private'><prefs xmlns='example:prefs'/></query>",
      )).getChild("query", "jabber:iq:private")!.getChild("prefs", "example:prefs")!;
      assert.equal(prefs.getChildText("theme"), "dark");

      const nick = await iqResult(
        alice,
        "get",
        `<pubsub xmlns='${NS_PUBSUB}'><items node='${NS_NICK}'/></pubsub>`,
        `alice@${DOMAIN}`,
      );
      const nickItem = nick.getChild("pubsub", NS_PUBSUB)!.getChild("items")!.getChild("item")!;
      assert.equal(nickItem.attrs.id, "current");
      assert.equal(nickItem.getChild("nick", NS_NICK)?.text(), "Ally");

      const bookmarks = await iqResult(
        alice,
        "get",
        `<pubsub xmlns='${NS_PUBSUB}'><items node='${NS_BOOKMARKS}'/></pubsub>`,
        `alice@${DOMAIN}`,
      );
      const conference = bookmarks.getChild("pubsub", NS_PUBSUB)!.getChild("items")!
        .getChild("item")!;
      assert.equal(conference.attrs.id, "tea@rooms.elsewhere.test");
      assert.equal(conference.getChild("conference", NS_BOOKMARKS)?.attrs.name, "Tea party");

      // The room: its configuration, alice its owner, bob a member, the subject.
      const form =
        (await iqResult(alice, "get", `<query xmlns='${NS_MUC}#owner'/>`, `tea@${ROOMS}`))
          .getChild("query", `${NS_MUC}#owner`)!.getChild("x", "jabber:x:data")!;
      const field = (name: string) =>
        form.getChildren("field").find((f) => f.attrs.var === name)?.getChildText("value");
      assert.equal(field("muc#roomconfig_roomname"), "Tea Party");
      assert.equal(field("muc#roomconfig_roomdesc"), "Mad hatters only");
      assert.equal(field("muc#roomconfig_persistentroom"), "1");
      assert.equal(field("muc#roomconfig_membersonly"), "1");
      const members = await iqResult(
        alice,
        "get",
        `<query xmlns='${NS_MUC}#admin'><item affiliation='member'/></query>`,
        `tea@${ROOMS}`,
      );
      const member = members.getChild("query", `${NS_MUC}#admin`)!.getChild("item")!;
      assert.equal(member.attrs.jid, `bob@${DOMAIN}`);
      alice.send(`<presence to='tea@${ROOMS}/Alice'><x xmlns='${NS_MUC}'/></presence>`);
      const subject = await alice.next((el) =>
        el.name === "message" && el.attrs.from?.startsWith(`tea@${ROOMS}`) === true &&
        el.getChild("subject") !== undefined
      );
      assert.equal(subject.getChildText("subject"), "Why is a raven like a desk?");
      alice.close();

      // Bob's old password; the message alice sent while he was offline arrives, stamped.
      const bobClient = await scramSha1Login(server.port, "bob", USERS.bob);
      const bobRoster = await iqResult(bobClient, "get", `<query xmlns='${NS_ROSTER}'/>`);
      assert.ok(bobRoster.getChild("query", NS_ROSTER), "bob's roster answers");
      bobClient.send("<presence/>");
      const offline = await bobClient.next((el) =>
        el.name === "message" && el.getChildText("body") === "Hello while you are away"
      );
      assert.equal(offline.attrs.from?.split("/")[0], `alice@${DOMAIN}`);
      const delay = offline.getChild("delay", NS_DELAY);
      assert.ok(delay?.attrs.stamp, "the offline message keeps when it was sent");
      // alice's subscription request waits for bob too.
      const request = await bobClient.next((el) =>
        el.name === "presence" && el.attrs.type === "subscribe"
      );
      assert.equal(request.attrs.from, `alice@${DOMAIN}`);
      bobClient.close();
    } finally {
      await server.stop();
    }
  } finally {
    await Deno.remove(lilt0.dir, { recursive: true }).catch(() => {});
  }
}

Deno.test("import prosody: Prosody 0.12's internal storage, users keep their passwords", async () => {
  const { dir, dataDir } = await prosodyData("internal");
  try {
    // What Prosody wrote is its own file storage.
    const accounts = await Deno.readTextFile(join(dataDir, "prosody%2etest/accounts/alice.dat"));
    assert.match(accounts, /\["stored_key"\] = "[0-9a-f]{40}"/);
    await importAndCheck(dataDir, "internal");
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("import prosody: Prosody 0.12's SQLite storage, users keep their passwords", async () => {
  const { dir, dataDir } = await prosodyData("sql");
  try {
    assert.ok((await Deno.stat(join(dataDir, "prosody.sqlite"))).isFile);
    await importAndCheck(dataDir, "sql");
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

/** Writes a Prosody account file (internal storage, SCRAM-SHA-1) into `dataDir`. */
async function prosodyAccount(dataDir: string, host: string, user: string, password: string) {
  const salt = crypto.randomUUID();
  const credentials = await deriveCredentials(password, {
    hash: "SHA-1",
    salt: utf8(salt),
    iterations: 4096,
  });
  await writeProsodyAccount(dataDir, host, user, { ...credentials, salt });
}

/** The accounts Lilt's store at `dir` holds for DOMAIN. */
function liltAccounts(dir: string): string[] {
  const database = openTestStore(dir);
  try {
    return new AccountStore(database).list(DOMAIN).sort();
  } finally {
    database.close();
  }
}

Deno.test("import prosody: a directory that is not Prosody's is refused with a clear error", async () => {
  const lilt0 = await liltDataDir();
  const empty = await Deno.makeTempDir({ prefix: "lilt-not-prosody-" });
  try {
    await Deno.writeTextFile(`${empty}/notes.txt`, "hello");
    const result = await lilt(["import", "prosody", empty, "-c", lilt0.configFile]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /is not a Prosody data directory: no HOST\/accounts\/USER\.dat/);
    assert.match(result.stderr, /Nothing was imported/);
    const missing = await lilt(["import", "prosody", `${empty}/nope`, "-c", lilt0.configFile]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /nope does not exist/);
    const badStorage = await lilt([
      "import",
      "prosody",
      empty,
      "--storage",
      "ldap",
      "-c",
      lilt0.configFile,
    ]);
    assert.equal(badStorage.code, 2);
    assert.match(badStorage.stderr, /--storage takes internal or sql/);
  } finally {
    await Deno.remove(empty, { recursive: true });
    await Deno.remove(lilt0.dir, { recursive: true });
  }
});

Deno.test("import prosody: accounts of hosts Lilt does not serve are skipped with a warning", async () => {
  const lilt0 = await liltDataDir();
  const data = await Deno.makeTempDir({ prefix: "lilt-prosody-data-" });
  try {
    await prosodyAccount(data, DOMAIN, "first.last", "dotted pw");
    await prosodyAccount(data, "other.test", "stranger", "pw");
    await Deno.mkdir(`${data}/chat%2eother%2etest`);
    await Deno.writeTextFile(
      `${data}/chat%2eother%2etest/persistent.dat`,
      'return {\n\t["tea@chat.other.test"] = true;\n};\n',
    );
    const result = await lilt(["import", "prosody", data, "-c", lilt0.configFile]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(
      result.stderr,
      /warning: host 'other\.test' \(1 accounts\) is not served here \(configured: prosody\.test\); its accounts are skipped/,
    );
    assert.match(
      result.stderr,
      /warning: MUC host 'chat\.other\.test' \(1 persistent rooms\) is not a \[\[component\]\] with the muc module here; its rooms are skipped/,
    );
    assert.match(result.stdout, /Imported 1 accounts from Prosody's internal storage/);
    assert.deepEqual(liltAccounts(lilt0.dir), ["first.last"], "the %2e-encoded name is decoded");
    const database = openTestStore(lilt0.dir);
    try {
      assert.ok(await new AccountStore(database).verifyPassword(DOMAIN, "first.last", "dotted pw"));
    } finally {
      database.close();
    }

    // Only hosts that are not served: an error, nothing written.
    const other = await liltDataDir("elsewhere.test");
    try {
      const none = await lilt(["import", "prosody", data, "-c", other.configFile]);
      assert.equal(none.code, 1);
      assert.match(none.stderr, /none of the hosts with accounts in .* is configured here/);
    } finally {
      await Deno.remove(other.dir, { recursive: true });
    }
  } finally {
    await Deno.remove(data, { recursive: true });
    await Deno.remove(lilt0.dir, { recursive: true });
  }
});

Deno.test("import prosody: a malformed file stops the import before anything is written", async () => {
  const lilt0 = await liltDataDir();
  const data = await Deno.makeTempDir({ prefix: "lilt-prosody-data-" });
  try {
    await prosodyAccount(data, DOMAIN, "alice", "pw");
    await prosodyAccount(data, DOMAIN, "bob", "pw");
    await Deno.mkdir(`${data}/prosody%2etest/roster`);
    // Code, not a literal: never run, refused with its place.
    await Deno.writeTextFile(
      `${data}/prosody%2etest/roster/bob.dat`,
      'return {\n\t["x@y"] = os.execute("touch /tmp/pwned");\n};\n',
    );
    const result = await lilt(["import", "prosody", data, "-c", lilt0.configFile]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /roster\/bob\.dat:2:12: 'os' is not a literal \(no code is run\)/);
    assert.match(result.stderr, /Nothing was imported/);
    assert.deepEqual(liltAccounts(lilt0.dir), [], "alice, read before bob, was not written");
  } finally {
    await Deno.remove(data, { recursive: true });
    await Deno.remove(lilt0.dir, { recursive: true });
  }
});

Deno.test("import prosody: refused while the server runs", async () => {
  const lilt0 = await liltDataDir();
  const data = await Deno.makeTempDir({ prefix: "lilt-prosody-data-" });
  try {
    await prosodyAccount(data, DOMAIN, "alice", "pw");
    const server = await startLiltProcess(lilt0.configFile);
    try {
      const result = await lilt(["import", "prosody", data, "-c", lilt0.configFile]);
      assert.equal(result.code, 1);
      assert.match(result.stderr, /cannot import while the server is running/);
    } finally {
      await server.stop();
    }
    assert.deepEqual(liltAccounts(lilt0.dir), []);
  } finally {
    await Deno.remove(data, { recursive: true });
    await Deno.remove(lilt0.dir, { recursive: true });
  }
});

Deno.test("import prosody: --storage chooses between both backends; --overwrite replaces", async () => {
  const lilt0 = await liltDataDir();
  const data = await Deno.makeTempDir({ prefix: "lilt-prosody-data-" });
  try {
    await prosodyAccount(data, DOMAIN, "alice", "old pw");
    // An SQLite store in Prosody's layout beside the files, with an account of its own.
    const sqlite = new DatabaseSync(`${data}/prosody.sqlite`);
    sqlite.exec(
      'CREATE TABLE prosody ("host" TEXT, "user" TEXT, "store" TEXT, "key" TEXT, "type" TEXT, ' +
        '"value" TEXT)',
    );
    sqlite.prepare("INSERT INTO prosody VALUES (?, ?, 'accounts', 'password', 'string', ?)")
      .run(DOMAIN, "sqluser", "plain pw");
    sqlite.close();

    const both = await lilt(["import", "prosody", data, "-c", lilt0.configFile]);
    assert.equal(both.code, 1);
    assert.match(
      both.stderr,
      /holds both internal storage .* say which Prosody used with --storage/,
    );

    const fromSql = await lilt([
      "import",
      "prosody",
      data,
      "--storage",
      "sql",
      "-c",
      lilt0.configFile,
    ]);
    assert.equal(fromSql.code, 0, fromSql.stderr);
    assert.deepEqual(liltAccounts(lilt0.dir), ["sqluser"]);

    const files = ["import", "prosody", data, "--storage", "internal", "-c", lilt0.configFile];
    assert.equal((await lilt(files)).code, 0);
    assert.deepEqual(liltAccounts(lilt0.dir), ["alice", "sqluser"]);

    // Again: alice exists, so she is skipped and keeps her password.
    await prosodyAccount(data, DOMAIN, "alice", "new pw");
    const again = await lilt(files);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /skipped alice@prosody\.test: .* exists already \(use --overwrite/);
    const replaced = await lilt([...files, "--overwrite"]);
    assert.equal(replaced.code, 0, replaced.stderr);
    assert.match(replaced.stdout, /Imported 1 accounts .* \(1 replaced\)/);
    const database = openTestStore(lilt0.dir);
    try {
      const accounts = new AccountStore(database);
      assert.ok(await accounts.verifyPassword(DOMAIN, "alice", "new pw"));
      assert.ok(await accounts.verifyPassword(DOMAIN, "sqluser", "plain pw"), "plain hashed");
    } finally {
      database.close();
    }
  } finally {
    await Deno.remove(data, { recursive: true });
    await Deno.remove(lilt0.dir, { recursive: true });
  }
});
