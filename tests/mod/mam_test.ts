// XEP-0313 message archive management over the wire: both sides of a conversation archived with
// the stanza-id they were delivered with, RSM paging both ways, filters, preferences, errors.

import assert from "node:assert/strict";
import { parseJid } from "../../core/jid.ts";
import type { ModuleAPI } from "../../core/modules.ts";
import type { Element } from "../../core/xml/element.ts";
import { parseElement } from "../../core/xml/parser.ts";
import type { MessageArchive } from "../../mod/mam.ts";
import { conditionOf, RawClient, roundTrip } from "../helpers/raw_client.ts";
import { startTestServer, type TestServer } from "../helpers/test_server.ts";

const NS_MAM = "urn:xmpp:mam:2";
const NS_SID = "urn:xmpp:sid:0";
const NS_RSM = "http://jabber.org/protocol/rsm";
const NS_FORWARD = "urn:xmpp:forward:0";
const NS_DELAY = "urn:xmpp:delay";
const NS_DATA = "jabber:x:data";
const MODULES = ["disco", "roster", "presence", "offline", "carbons", "mam"];

async function start(hostToml = ""): Promise<TestServer> {
  return await startTestServer({
    modules: MODULES,
    users: { alice: "pw", bob: "pw", carol: "pw" },
    hostToml,
  });
}

/** Runs an `archive` shell command the way the admin socket does. */
async function archiveCommand(t: TestServer, name: string, ...args: string[]) {
  const spec = t.server.commands.get("archive", name)!;
  return await spec.run(
    { server: t.server, emit: () => {}, signal: new AbortController().signal },
    args,
  );
}

async function online(t: TestServer, user: string, resource: string): Promise<RawClient> {
  const { client } = await RawClient.login(t.port, user, "pw", resource);
  client.send("<presence/>");
  await client.next((el) =>
    el.name === "presence" && el.attrs.from === `${user}@localhost/${resource}`
  );
  return client;
}

/** alice/one, alice/two with carbons enabled, and bob/b, all online. */
async function carbonsParty(t: TestServer) {
  const one = await online(t, "alice", "one");
  const two = await online(t, "alice", "two");
  two.send("<iq type='set' id='c'><enable xmlns='urn:xmpp:carbons:2'/></iq>");
  await two.next((el) => el.attrs.id === "c");
  const bob = await online(t, "bob", "b");
  return { one, two, bob };
}

/** The message inside a carbon of `kind`. */
function carbonInner(carbon: Element, kind: "sent" | "received"): Element {
  return carbon.getChild(kind, "urn:xmpp:carbons:2")!.getChild("forwarded", NS_FORWARD)!
    .getChild("message")!;
}

/** What an archive query asks for. */
interface Query {
  fields?: Record<string, string | string[]>;
  max?: number;
  after?: string;
  /** "" for the last page. */
  before?: string;
  flip?: boolean;
  to?: string;
}

/** The answer to an archive query: the result messages in order and the iq that ended it. */
interface Answer {
  iq: Element;
  results: Element[];
  fin?: Element;
  /** The result ids in the order they arrived. */
  ids: string[];
  /** The bodies of the archived messages, in the order they arrived. */
  bodies: (string | undefined)[];
  complete?: string;
  first?: string;
  last?: string;
  count?: string;
}

async function query(client: RawClient, q: Query = {}): Promise<Answer> {
  const qid = `q-${crypto.randomUUID()}`;
  let form = "";
  if (q.fields) {
    form = `<x xmlns='${NS_DATA}' type='submit'><field var='FORM_TYPE' type='hidden'>` +
      `<value>${NS_MAM}</value></field>`;
    for (const [name, value] of Object.entries(q.fields)) {
      const values = Array.isArray(value) ? value : [value];
      form += `<field var='${name}'>${values.map((v) => `<value>${v}</value>`).join("")}</field>`;
    }
    form += "</x>";
  }
  let set = "";
  if (q.max !== undefined || q.after !== undefined || q.before !== undefined) {
    set = `<set xmlns='${NS_RSM}'>` +
      (q.max !== undefined ? `<max>${q.max}</max>` : "") +
      (q.after !== undefined ? `<after>${q.after}</after>` : "") +
      (q.before === undefined
        ? ""
        : q.before === ""
        ? "<before/>"
        : `<before>${q.before}</before>`) +
      "</set>";
  }
  const to = q.to ? ` to='${q.to}'` : "";
  client.send(
    `<iq type='set' id='${qid}'${to}><query xmlns='${NS_MAM}' queryid='${qid}'>${form}${set}` +
      `${q.flip ? "<flip-page/>" : ""}</query></iq>`,
  );
  const iq = await client.next((el) => el.name === "iq" && el.attrs.id === qid);
  const results = client.received.filter((el) =>
    el.name === "message" && el.getChild("result", NS_MAM)?.attrs.queryid === qid
  );
  const fin = iq.getChild("fin", NS_MAM);
  const set_ = fin?.getChild("set", NS_RSM);
  return {
    iq,
    results,
    fin,
    ids: results.map((r) => r.getChild("result", NS_MAM)!.attrs.id),
    bodies: results.map((r) => archived(r).getChildText("body")),
    complete: fin?.attrs.complete,
    first: set_?.getChildText("first"),
    last: set_?.getChildText("last"),
    count: set_?.getChildText("count"),
  };
}

/** The archived message inside a result. */
function archived(result: Element): Element {
  const inner = result.getChild("result", NS_MAM)?.getChild("forwarded", NS_FORWARD)
    ?.getChild("message");
  assert.ok(inner, "a forwarded message in the result");
  return inner;
}

function stanzaId(message: Element, by: string): string | undefined {
  return message.getChildren("stanza-id", NS_SID).find((el) => el.attrs.by === by)?.attrs.id;
}

Deno.test("both sides are archived, and the recipient's copy carries the archive's stanza-id", async () => {
  const t = await start();
  try {
    const alice = await online(t, "alice", "a");
    const bob = await online(t, "bob", "b");
    bob.send(
      "<message to='alice@localhost' type='chat' id='m1'><body>hi alice</body>" +
        `<stanza-id xmlns='${NS_SID}' id='forged' by='alice@localhost'/></message>`,
    );
    const delivered = await alice.next((el) => el.name === "message" && el.attrs.id === "m1");
    const ids = delivered.getChildren("stanza-id", NS_SID);
    assert.equal(ids.length, 1, "the forged stanza-id is removed, the archive's added");
    const id = stanzaId(delivered, "alice@localhost");
    assert.ok(id && id !== "forged");

    const mine = await query(alice);
    assert.equal(mine.iq.attrs.type, "result");
    assert.deepEqual(mine.ids, [id]);
    assert.deepEqual(mine.bodies, ["hi alice"]);
    const result = mine.results[0];
    assert.equal(result.attrs.to, "alice@localhost/a");
    assert.equal(result.attrs.from, "alice@localhost");
    const inner = archived(result);
    assert.equal(inner.attrs.from, "bob@localhost/b");
    assert.equal(inner.ns, "jabber:client");
    const stamp = result.getChild("result", NS_MAM)!.getChild("forwarded", NS_FORWARD)!
      .getChild("delay", NS_DELAY)!.attrs.stamp;
    assert.ok(!Number.isNaN(Date.parse(stamp)), `a delay stamp, found ${stamp}`);
    assert.equal(mine.complete, "true");
    assert.equal(mine.count, "1");
    assert.equal(mine.first, id);
    assert.equal(mine.last, id);

    const theirs = await query(bob);
    assert.equal(theirs.ids.length, 1);
    assert.notEqual(theirs.ids[0], id, "each account has its own archive ids");
    assert.equal(archived(theirs.results[0]).attrs.to, "alice@localhost");
    assert.deepEqual(theirs.bodies, ["hi alice"]);
    for (const c of [alice, bob]) c.close();
  } finally {
    await t.stop();
  }
});

Deno.test("a carbon copy carries the same stanza-id as the delivered message", async () => {
  const t = await start();
  try {
    const { one, two, bob } = await carbonsParty(t);
    bob.send("<message to='alice@localhost/one' type='chat' id='m1'><body>x</body></message>");
    const delivered = await one.next((el) => el.name === "message" && el.attrs.id === "m1");
    const carbon = await two.next((el) =>
      el.name === "message" && el.getChild("received", "urn:xmpp:carbons:2") !== undefined
    );
    const copy = carbonInner(carbon, "received");
    const id = stanzaId(delivered, "alice@localhost");
    assert.ok(id);
    assert.equal(stanzaId(copy, "alice@localhost"), id);
    assert.deepEqual((await query(two)).ids, [id]);
    for (const c of [one, two, bob]) c.close();
  } finally {
    await t.stop();
  }
});

Deno.test("RSM pages forward and backward, with flip-page, and fin says when it is complete", async () => {
  const t = await start();
  try {
    const alice = await online(t, "alice", "a");
    for (const n of [1, 2, 3, 4, 5]) {
      alice.send(`<message to='bob@localhost' type='chat'><body>${n}</body></message>`);
    }
    await roundTrip(alice);

    const p1 = await query(alice, { max: 2 });
    assert.deepEqual(p1.bodies, ["1", "2"]);
    assert.equal(p1.complete, "false");
    assert.equal(p1.count, "5");
    assert.deepEqual([p1.first, p1.last], p1.ids);
    const p2 = await query(alice, { max: 2, after: p1.last });
    assert.deepEqual(p2.bodies, ["3", "4"]);
    assert.equal(p2.complete, "false");
    const p3 = await query(alice, { max: 2, after: p2.last });
    assert.deepEqual(p3.bodies, ["5"]);
    assert.equal(p3.complete, "true");

    const b1 = await query(alice, { max: 2, before: "" });
    assert.deepEqual(b1.bodies, ["4", "5"], "the last page, in chronological order");
    assert.equal(b1.complete, "false");
    assert.deepEqual([b1.first, b1.last], b1.ids);
    const b2 = await query(alice, { max: 2, before: b1.first });
    assert.deepEqual(b2.bodies, ["2", "3"]);
    assert.equal(b2.complete, "false");
    const b3 = await query(alice, { max: 2, before: b2.first });
    assert.deepEqual(b3.bodies, ["1"]);
    assert.equal(b3.complete, "true");

    const flipped = await query(alice, { max: 2, before: "", flip: true });
    assert.deepEqual(flipped.bodies, ["5", "4"]);
    assert.deepEqual([flipped.first, flipped.last], b1.ids, "first and last keep their meaning");

    const all = await query(alice);
    assert.deepEqual(all.bodies, ["1", "2", "3", "4", "5"]);
    assert.equal(all.complete, "true");

    // #extended: between two known ids, and by id.
    const between = await query(alice, {
      fields: { "after-id": all.ids[0], "before-id": all.ids[4] },
    });
    assert.deepEqual(between.bodies, ["2", "3", "4"]);
    assert.equal(between.count, "3");
    const picked = await query(alice, { fields: { ids: [all.ids[3], all.ids[1]] } });
    assert.deepEqual(picked.bodies, ["2", "4"]);

    const counted = await query(alice, { max: 0 });
    assert.deepEqual(counted.ids, []);
    assert.equal(counted.count, "5");
    alice.close();
  } finally {
    await t.stop();
  }
});

Deno.test("with matches a bare JID's every resource or one full JID; start and end bound the time", async () => {
  const t = await start();
  try {
    const alice = await online(t, "alice", "a");
    const b1 = await online(t, "bob", "b1");
    const b2 = await online(t, "bob", "b2");
    const carol = await online(t, "carol", "c");
    b1.send("<message to='alice@localhost' type='chat'><body>from b1</body></message>");
    await alice.next((el) => el.getChildText("body") === "from b1");
    b2.send("<message to='alice@localhost' type='chat'><body>from b2</body></message>");
    await alice.next((el) => el.getChildText("body") === "from b2");
    carol.send("<message to='alice@localhost' type='chat'><body>from carol</body></message>");
    await alice.next((el) => el.getChildText("body") === "from carol");
    alice.send("<message to='bob@localhost/b1' type='chat'><body>to b1</body></message>");
    await b1.next((el) => el.getChildText("body") === "to b1");

    const bare = await query(alice, { fields: { with: "bob@localhost" } });
    assert.deepEqual(bare.bodies, ["from b1", "from b2", "to b1"]);
    const full = await query(alice, { fields: { with: "bob@localhost/b1" } });
    assert.deepEqual(full.bodies, ["from b1", "to b1"]);
    assert.equal(full.count, "2");
    const fullPage = await query(alice, { fields: { with: "bob@localhost/b1" }, max: 1 });
    assert.deepEqual(fullPage.bodies, ["from b1"]);
    assert.equal(fullPage.complete, "false");
    const lastFull = await query(alice, {
      fields: { with: "bob@localhost/b1" },
      max: 1,
      before: "",
    });
    assert.deepEqual(lastFull.bodies, ["to b1"]);

    // Times are set in the store to be exact: one day apart each.
    const archive = t.server.storage.archive("localhost", "mam");
    const day = 86_400_000;
    const base = Date.UTC(2020, 0, 1);
    for (const n of [0, 1, 2]) {
      archive.append("carol", {
        when: base + n * day,
        with: "alice@localhost",
        type: "chat",
        payload:
          `<message to='alice@localhost' from='carol@localhost/c' type='chat'><body>day ${n}</body></message>`,
      });
    }
    const from = await query(carol, { fields: { start: "2020-01-02T00:00:00Z" } });
    // carol's own message of today is later than all three.
    assert.deepEqual(from.bodies, ["day 1", "day 2", "from carol"]);
    const until = await query(carol, { fields: { end: "2020-01-02T00:00:00+00:00" } });
    assert.deepEqual(until.bodies, ["day 0", "day 1"]);
    const window = await query(carol, {
      fields: { start: "2020-01-01T12:00:00.000Z", end: "2020-01-02T12:00:00Z" },
    });
    assert.deepEqual(window.bodies, ["day 1"]);
    const stamp = window.results[0].getChild("result", NS_MAM)!.getChild("forwarded", NS_FORWARD)!
      .getChild("delay", NS_DELAY)!.attrs.stamp;
    assert.equal(Date.parse(stamp), base + day);
    for (const c of [alice, b1, b2, carol]) c.close();
  } finally {
    await t.stop();
  }
});

Deno.test("a message to an offline account is archived and delivered later with the same stanza-id", async () => {
  const t = await start();
  try {
    const bob = await online(t, "bob", "b");
    bob.send(
      "<message to='alice@localhost' type='chat' id='off1'><body>while away</body></message>",
    );
    await roundTrip(bob);
    const alice = await online(t, "alice", "a");
    const delivered = await alice.next((el) => el.name === "message" && el.attrs.id === "off1");
    assert.ok(delivered.getChild("delay", NS_DELAY), "delivered from offline storage");
    const id = stanzaId(delivered, "alice@localhost");
    assert.ok(id);
    assert.deepEqual((await query(alice)).ids, [id]);
    for (const c of [alice, bob]) c.close();
  } finally {
    await t.stop();
  }
});

Deno.test("chat states, receipts, no-store hints and headlines are not archived; encrypted payloads are", async () => {
  const t = await start();
  try {
    const alice = await online(t, "alice", "a");
    const bob = await online(t, "bob", "b");
    const sends = [
      "<message to='alice@localhost' type='chat' id='s1'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
      "<message to='alice@localhost' type='chat' id='s2'><received xmlns='urn:xmpp:receipts' id='x'/></message>",
      "<message to='alice@localhost' type='chat' id='s3'><body>secret</body><no-store xmlns='urn:xmpp:hints'/></message>",
      "<message to='alice@localhost' type='chat' id='s4'><body>secret</body><no-permanent-store xmlns='urn:xmpp:hints'/></message>",
      "<message to='alice@localhost' type='headline' id='s5'><body>news</body></message>",
      "<message to='alice@localhost' type='chat' id='s6'><encrypted xmlns='eu.siacs.conversations.axolotl'><payload>AAAA</payload></encrypted></message>",
      "<message to='alice@localhost' type='chat' id='s7'><body>kept</body></message>",
    ];
    for (const s of sends) bob.send(s);
    const got = [];
    for (let i = 0; i < sends.length; i++) {
      got.push(await alice.next((el) => el.name === "message"));
    }
    const withId = got.filter((el) => stanzaId(el, "alice@localhost") !== undefined)
      .map((el) => el.attrs.id);
    assert.deepEqual(withId, ["s6", "s7"]);
    const mine = await query(alice);
    assert.deepEqual(mine.results.map((r) => archived(r).attrs.id), ["s6", "s7"]);
    const theirs = await query(bob);
    assert.deepEqual(theirs.results.map((r) => archived(r).attrs.id), ["s6", "s7"]);
    for (const c of [alice, bob]) c.close();
  } finally {
    await t.stop();
  }
});

async function setPrefs(client: RawClient, xml: string): Promise<Element> {
  const id = `p-${crypto.randomUUID()}`;
  client.send(`<iq type='set' id='${id}'>${xml}</iq>`);
  return await client.next((el) => el.attrs.id === id);
}

Deno.test("preferences: never wins over always, and the default decides the rest", async () => {
  const t = await start();
  try {
    const alice = await online(t, "alice", "a");
    const bob = await online(t, "bob", "b");
    const carol = await online(t, "carol", "c");
    const set = await setPrefs(
      alice,
      `<prefs xmlns='${NS_MAM}' default='always'><always><jid>bob@localhost</jid></always>` +
        `<never><jid>bob@localhost</jid></never></prefs>`,
    );
    assert.equal(set.attrs.type, "result");
    const prefs = set.getChild("prefs", NS_MAM)!;
    assert.equal(prefs.attrs.default, "always");
    assert.deepEqual(
      prefs.getChild("never", NS_MAM)!.getChildren("jid").map((j) => j.text()),
      ["bob@localhost"],
    );
    bob.send("<message to='alice@localhost' type='chat' id='n1'><body>not kept</body></message>");
    const unarchived = await alice.next((el) => el.attrs.id === "n1");
    assert.equal(stanzaId(unarchived, "alice@localhost"), undefined);
    carol.send("<message to='alice@localhost' type='chat' id='k1'><body>kept</body></message>");
    await alice.next((el) => el.attrs.id === "k1");
    alice.send("<message to='bob@localhost' type='chat' id='n2'><body>not kept</body></message>");
    await bob.next((el) => el.attrs.id === "n2");
    assert.deepEqual((await query(alice)).bodies, ["kept"]);

    await setPrefs(
      alice,
      `<prefs xmlns='${NS_MAM}' default='never'><always><jid>bob@localhost</jid></always></prefs>`,
    );
    const id = `g-${crypto.randomUUID()}`;
    alice.send(`<iq type='get' id='${id}'><prefs xmlns='${NS_MAM}'/></iq>`);
    const got = (await alice.next((el) => el.attrs.id === id)).getChild("prefs", NS_MAM)!;
    assert.equal(got.attrs.default, "never");
    assert.deepEqual(got.getChild("always", NS_MAM)!.getChildren("jid").map((j) => j.text()), [
      "bob@localhost",
    ]);
    bob.send("<message to='alice@localhost' type='chat' id='k2'><body>bob kept</body></message>");
    await alice.next((el) => el.attrs.id === "k2");
    carol.send(
      "<message to='alice@localhost' type='chat' id='n3'><body>carol not</body></message>",
    );
    await alice.next((el) => el.attrs.id === "n3");
    assert.deepEqual((await query(alice)).bodies, ["kept", "bob kept"]);

    const bad = await setPrefs(alice, `<prefs xmlns='${NS_MAM}' default='sometimes'/>`);
    assert.equal(conditionOf(bad), "bad-request");
    for (const c of [alice, bob, carol]) c.close();
  } finally {
    await t.stop();
  }
});

Deno.test("another account's archive is forbidden", async () => {
  const t = await start();
  try {
    const alice = await online(t, "alice", "a");
    const bob = await online(t, "bob", "b");
    bob.send("<message to='alice@localhost' type='chat'><body>x</body></message>");
    await alice.next((el) => el.name === "message");
    const answer = await query(bob, { to: "alice@localhost" });
    assert.equal(answer.iq.attrs.type, "error");
    assert.equal(conditionOf(answer.iq), "forbidden");
    assert.deepEqual(answer.results, []);
    const own = await query(alice, { to: "alice@localhost" });
    assert.equal(own.ids.length, 1, "the own bare JID is the archive");
    const prefs = await setPrefs(bob, `<prefs xmlns='${NS_MAM}' default='never'/>`);
    assert.equal(prefs.attrs.type, "result");
    bob.send(`<iq type='get' id='pf' to='alice@localhost'><prefs xmlns='${NS_MAM}'/></iq>`);
    assert.equal(conditionOf(await bob.next((el) => el.attrs.id === "pf")), "forbidden");
    for (const c of [alice, bob]) c.close();
  } finally {
    await t.stop();
  }
});

Deno.test("the query form, disco features, and errors for bad queries", async () => {
  const t = await start();
  try {
    const alice = await online(t, "alice", "a");
    alice.send(`<iq type='get' id='f'><query xmlns='${NS_MAM}'/></iq>`);
    const formIq = await alice.next((el) => el.attrs.id === "f");
    assert.equal(formIq.attrs.type, "result");
    const form = formIq.getChild("query", NS_MAM)!.getChild("x", NS_DATA)!;
    assert.equal(form.attrs.type, "form");
    const fields = form.getChildren("field", NS_DATA);
    assert.deepEqual(fields.map((f) => f.attrs.var), [
      "FORM_TYPE",
      "with",
      "start",
      "end",
      "before-id",
      "after-id",
      "ids",
      "include-groupchat",
    ]);
    assert.equal(fields[0].getChildText("value"), NS_MAM);

    alice.send(
      "<iq type='get' id='d' to='alice@localhost'>" +
        "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    );
    const features = (await alice.next((el) => el.attrs.id === "d")).getChild("query")!
      .getChildren("feature").map((f) => f.attrs.var);
    for (const f of [NS_MAM, `${NS_MAM}#extended`, `${NS_MAM}#groupchat-field`, NS_SID]) {
      assert.ok(features.includes(f), `account disco has ${f}`);
    }

    alice.send("<message to='bob@localhost' type='chat'><body>one</body></message>");
    await roundTrip(alice);
    const cases: [Query, string][] = [
      [{ fields: { start: "yesterday" } }, "bad-request"],
      [{ fields: { end: "2020-13-45" } }, "bad-request"],
      [{ fields: { colour: "blue" } }, "bad-request"],
      [{ fields: { with: "@@" } }, "jid-malformed"],
      [{ after: "no-such-id" }, "item-not-found"],
      [{ before: "no-such-id" }, "item-not-found"],
      [{ fields: { "after-id": "no-such-id" } }, "item-not-found"],
      [{ fields: { "include-groupchat": "maybe" } }, "bad-request"],
    ];
    for (const [q, condition] of cases) {
      const answer = await query(alice, q);
      assert.equal(answer.iq.attrs.type, "error", JSON.stringify(q));
      assert.equal(conditionOf(answer.iq), condition, JSON.stringify(q));
    }
    alice.send(
      `<iq type='set' id='bad-max'><query xmlns='${NS_MAM}'><set xmlns='${NS_RSM}'>` +
        "<max>lots</max></set></query></iq>",
    );
    assert.equal(conditionOf(await alice.next((el) => el.attrs.id === "bad-max")), "bad-request");
    alice.send(
      `<iq type='set' id='bad-type'><query xmlns='${NS_MAM}'><x xmlns='${NS_DATA}' type='submit'>` +
        "<field var='FORM_TYPE'><value>urn:xmpp:mam:1</value></field></x></query></iq>",
    );
    assert.equal(conditionOf(await alice.next((el) => el.attrs.id === "bad-type")), "bad-request");
    // The server still answers queries after all that; include-groupchat is understood.
    assert.equal((await query(alice)).ids.length, 1);
    assert.equal((await query(alice, { fields: { "include-groupchat": "true" } })).ids.length, 1);
    alice.close();
  } finally {
    await t.stop();
  }
});

Deno.test("archive metadata gives the first and last message, and nothing for an empty archive", async () => {
  const t = await start();
  try {
    const alice = await online(t, "alice", "a");
    const metadata = async () => {
      const id = crypto.randomUUID();
      alice.send(`<iq type='get' id='${id}'><metadata xmlns='${NS_MAM}'/></iq>`);
      const answer = await alice.next((el) => el.attrs.id === id);
      assert.equal(answer.attrs.type, "result");
      return answer.getChild("metadata", NS_MAM)!;
    };
    assert.deepEqual((await metadata()).children, [], "an empty archive has no start or end");
    for (const body of ["first", "middle", "last"]) {
      alice.send(`<message to='bob@localhost' type='chat'><body>${body}</body></message>`);
    }
    await roundTrip(alice);
    const all = await query(alice);
    const found = await metadata();
    const start = found.getChild("start", NS_MAM)!;
    const end = found.getChild("end", NS_MAM)!;
    assert.equal(start.attrs.id, all.ids[0]);
    assert.equal(end.attrs.id, all.ids[2]);
    for (const [el, result] of [[start, all.results[0]], [end, all.results[2]]]) {
      const stamp = result.getChild("result", NS_MAM)!.getChild("forwarded", NS_FORWARD)!
        .getChild("delay", NS_DELAY)!.attrs.stamp;
      assert.equal(el.attrs.timestamp, stamp);
    }
    // Only the account reads its archive's metadata.
    alice.send(`<iq type='get' id='other' to='bob@localhost'><metadata xmlns='${NS_MAM}'/></iq>`);
    assert.equal(conditionOf(await alice.next((el) => el.attrs.id === "other")), "forbidden");
    alice.close();
  } finally {
    await t.stop();
  }
});

Deno.test("preferences: default='roster' archives only conversations with roster contacts", async () => {
  const t = await start();
  try {
    const alice = await online(t, "alice", "a");
    const bob = await online(t, "bob", "b");
    const carol = await online(t, "carol", "c");
    alice.send(
      "<iq type='set' id='r'><query xmlns='jabber:iq:roster'>" +
        "<item jid='bob@localhost' name='Bob'/></query></iq>",
    );
    assert.equal((await alice.next((el) => el.attrs.id === "r")).attrs.type, "result");
    await setPrefs(alice, `<prefs xmlns='${NS_MAM}' default='roster'/>`);
    bob.send("<message to='alice@localhost' type='chat' id='b1'><body>contact</body></message>");
    const fromContact = await alice.next((el) => el.attrs.id === "b1");
    assert.ok(stanzaId(fromContact, "alice@localhost"));
    carol.send("<message to='alice@localhost' type='chat' id='c1'><body>stranger</body></message>");
    const fromStranger = await alice.next((el) => el.attrs.id === "c1");
    assert.equal(stanzaId(fromStranger, "alice@localhost"), undefined);
    alice.send(
      "<message to='carol@localhost' type='chat' id='c2'><body>to stranger</body></message>",
    );
    await carol.next((el) => el.attrs.id === "c2");
    assert.deepEqual((await query(alice)).bodies, ["contact"]);
    for (const c of [alice, bob, carol]) c.close();
  } finally {
    await t.stop();
  }
});

Deno.test("a message delivered again by stream management is not archived twice", async () => {
  const t = await startTestServer({
    modules: [...MODULES, "smacks"],
    users: { alice: "pw", bob: "pw" },
  });
  try {
    const { client: phone } = await RawClient.login(t.port, "alice", "pw", "phone");
    phone.send("<enable xmlns='urn:xmpp:sm:3'/>");
    await phone.next((el) => el.name === "enabled");
    phone.send("<presence/>");
    await phone.next((el) => el.name === "presence");
    const desk = await online(t, "alice", "desk");
    const bob = await online(t, "bob", "b");
    bob.send("<message to='alice@localhost/phone' type='chat' id='sm1'><body>x</body></message>");
    const first = await phone.next((el) => el.name === "message" && el.attrs.id === "sm1");
    const id = stanzaId(first, "alice@localhost");
    assert.ok(id);
    // The phone leaves without acknowledging it: the message goes to alice's other resource.
    phone.close();
    const again = await desk.next((el) => el.name === "message" && el.attrs.id === "sm1");
    assert.deepEqual(
      again.getChildren("stanza-id", NS_SID).map((el) => [el.attrs.by, el.attrs.id]),
      [["alice@localhost", id]],
    );
    assert.deepEqual((await query(desk)).ids, [id]);
    for (const c of [desk, bob]) c.close();
  } finally {
    await t.stop();
  }
});

Deno.test("archive_max_items keeps the newest messages of an account", async () => {
  const t = await start("archive_max_items = 3");
  try {
    const alice = await online(t, "alice", "a");
    const bob = await online(t, "bob", "b");
    for (let i = 1; i <= 5; i++) {
      bob.send(`<message to='alice@localhost' type='chat'><body>m${i}</body></message>`);
    }
    await roundTrip(bob);
    await alice.next((el) => el.getChildText("body") === "m5");
    const archive = t.server.storage.archive("localhost", "mam");
    const kept = archive.find("alice").map((item) => item.payload.match(/<body>(m\d)</)![1]);
    assert.deepEqual(kept, ["m3", "m4", "m5"]);
    alice.close();
    bob.close();
  } finally {
    await t.stop();
  }
});

Deno.test("the archive shell section counts, deletes and expires", async () => {
  const t = await start("archive_expires_after = 3600");
  try {
    const archive = t.server.storage.archive("localhost", "mam");
    const now = Date.now();
    const payload = "<message xmlns='jabber:client' type='chat'><body>old</body></message>";
    archive.append("alice", { with: "bob@localhost", when: now - 7200_000, payload });
    archive.append("alice", { with: "bob@localhost", when: now - 60_000, payload });
    archive.append("bob", { with: "alice@localhost", when: now - 60_000, payload });
    const counted = await archiveCommand(t, "count", "alice@localhost");
    assert.deepEqual(counted.data, {
      jid: "alice@localhost",
      count: 2,
      bytes: 2 * new TextEncoder().encode(payload).length,
    });
    const expired = await archiveCommand(t, "expire");
    assert.deepEqual(expired.data, { localhost: 1 });
    assert.equal(archive.count("alice"), 1);
    const deleted = await archiveCommand(t, "delete", "bob@localhost");
    assert.deepEqual(deleted.data, { jid: "bob@localhost", deleted: 1 });
    await assert.rejects(() => archiveCommand(t, "count", "nobody@localhost"), /No account/);
    await assert.rejects(() => archiveCommand(t, "count", "alice@elsewhere"), /mam module/);
  } finally {
    await t.stop();
  }
});

Deno.test("other modules reach the archive as the 'archive' service mam provides", async () => {
  const t = await start();
  try {
    const host = t.server.hosts.get("localhost")!;
    let service: MessageArchive | undefined;
    t.server.modules.register("archive_user", {
      depends: ["mam"],
      default(m: ModuleAPI) {
        service = m.service("archive");
      },
    });
    await t.server.modules.load(host, "archive_user");
    const message = parseElement(
      "<message xmlns='jabber:client' from='bob@localhost/b' to='alice@localhost' type='chat'>" +
        "<body>via the service</body></message>",
    );
    const id = service!.archive("alice", parseJid("bob@localhost/b"), message)!;
    const [item] = service!.items.find("alice", { ids: [id] });
    assert.equal(item.with, "bob@localhost/b");
    assert.match(item.payload, /via the service/);
    // The provider stays while a module that uses it is loaded.
    assert.throws(() => t.server.modules.unload(host, "mam"), /needed by 'archive_user'/);
  } finally {
    await t.stop();
  }
});

Deno.test("a sent carbon carries the message's id in the sender's archive", async () => {
  const t = await start();
  try {
    const { one, two, bob } = await carbonsParty(t);
    one.send("<message to='bob@localhost/b' type='chat' id='s1'><body>from one</body></message>");
    const received = await bob.next((el) => el.name === "message" && el.attrs.id === "s1");
    const carbon = await two.next((el) =>
      el.name === "message" && el.getChild("sent", "urn:xmpp:carbons:2") !== undefined
    );
    const copy = carbonInner(carbon, "sent");
    const id = stanzaId(copy, "alice@localhost");
    assert.ok(id, "the sent carbon has alice's archive id");
    assert.deepEqual((await query(two)).ids, [id]);
    // bob's copy carries bob's archive id, not alice's.
    assert.equal(stanzaId(received, "alice@localhost"), undefined);
    assert.ok(stanzaId(received, "bob@localhost"));
    for (const c of [one, two, bob]) c.close();
  } finally {
    await t.stop();
  }
});
