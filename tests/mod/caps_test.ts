// XEP-0115 entity capabilities seen by the server, over real sockets: an unseen hash is asked
// once and verified, then answered from the cache (also after a restart); wrong hashes, legacy
// caps and silent clients are asked per resource and never cached; what a resource announced is
// forgotten when it goes; `caps-features` tells other modules.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import type { Host } from "../../core/hosts.ts";
import { parseJid } from "../../core/jid.ts";
import { hostService } from "../../core/modules.ts";
import type { Element } from "../../core/xml/element.ts";
import { type CapsFeaturesEvent, readDiscoInfo } from "../../mod/caps.ts";
import { type CapsIdentity, capsVerificationString } from "../../mod/disco.ts";
import { parseElement } from "../../core/xml/parser.ts";
import { RawClient, roundTrip } from "../helpers/raw_client.ts";
import { startTestServer, type TestServer } from "../helpers/test_server.ts";

const NS_CAPS = "http://jabber.org/protocol/caps";
const NS_INFO = "http://jabber.org/protocol/disco#info";
const MODULES = ["disco", "roster", "presence", "caps"];
const NODE = "http://code.google.com/p/exodus";

/** XEP-0115 §5.2's example client, whose sha-1 ver is known. */
const EXODUS = {
  identities: [{ category: "client", type: "pc", name: "Exodus 0.9.1" }] as CapsIdentity[],
  features: [
    "http://jabber.org/protocol/caps",
    "http://jabber.org/protocol/disco#info",
    "http://jabber.org/protocol/disco#items",
    "http://jabber.org/protocol/muc",
  ],
};
const EXODUS_VER = "QgayPKawpkPSDYmwT/WM94uAlu0=";

function hostOf(t: TestServer): Host {
  return t.server.hosts.get("localhost")!;
}

function featuresOf(t: TestServer, jid: string): ReadonlySet<string> | undefined {
  const caps = hostService(hostOf(t), "caps");
  assert.ok(caps, "the caps service is provided");
  return caps.featuresOf(parseJid(jid));
}

/** Available presence with caps; `hash` null is legacy caps (no hash attribute). */
function announce(client: RawClient, ver: string, hash: string | null = "sha-1"): void {
  const hashAttr = hash === null ? "" : ` hash='${hash}'`;
  client.send(
    `<presence><c xmlns='${NS_CAPS}'${hashAttr} node='${NODE}' ver='${ver}'/></presence>`,
  );
}

const isCapsQuery = (el: Element) =>
  el.name === "iq" && el.attrs.type === "get" &&
  el.getChild("query", NS_INFO)?.attrs.node?.startsWith(`${NODE}#`) === true;

function capsQueriesOf(client: RawClient): Element[] {
  return client.received.filter(isCapsQuery);
}

/** Answers the server's disco#info query with these identities and features. */
function answer(
  client: RawClient,
  query: Element,
  info: { identities: CapsIdentity[]; features: string[] },
): void {
  const identities = info.identities.map((i) =>
    `<identity category='${i.category}' type='${i.type}' name='${i.name ?? ""}'/>`
  ).join("");
  const features = info.features.map((f) => `<feature var='${f}'/>`).join("");
  const node = query.getChild("query", NS_INFO)!.attrs.node!;
  client.send(
    `<iq type='result' id='${query.attrs.id}' to='${query.attrs.from}'>` +
      `<query xmlns='${NS_INFO}' node='${node}'>${identities}${features}</query></iq>`,
  );
}

async function login(t: TestServer, user: string, resource: string): Promise<RawClient> {
  const { client } = await RawClient.login(t.port, user, "pw", resource);
  return client;
}

Deno.test("an unseen ver is asked once; other resources and accounts with it are answered from the cache", async () => {
  const t = await startTestServer({ modules: MODULES, users: { alice: "pw", bob: "pw" } });
  const clients: RawClient[] = [];
  try {
    const one = await login(t, "alice", "one");
    const bob = await login(t, "bob", "b");
    const two = await login(t, "alice", "two");
    clients.push(one, bob, two);
    announce(one, EXODUS_VER);
    const query = await one.next(isCapsQuery);
    assert.equal(query.attrs.from, "localhost");
    assert.equal(query.attrs.to, "alice@localhost/one");
    assert.equal(query.getChild("query", NS_INFO)!.attrs.node, `${NODE}#${EXODUS_VER}`);
    assert.equal(featuresOf(t, "alice@localhost/one"), undefined);

    // bob announces the same ver while alice's answer is still awaited: he waits for it.
    announce(bob, EXODUS_VER);
    await roundTrip(bob);
    assert.equal(capsQueriesOf(bob).length, 0);

    answer(one, query, EXODUS);
    await roundTrip(one);
    assert.deepEqual(featuresOf(t, "alice@localhost/one"), new Set(EXODUS.features));
    assert.deepEqual(featuresOf(t, "bob@localhost/b"), new Set(EXODUS.features));

    announce(two, EXODUS_VER);
    await roundTrip(two);
    assert.equal(capsQueriesOf(two).length, 0);
    assert.deepEqual(featuresOf(t, "alice@localhost/two"), new Set(EXODUS.features));
    assert.equal(capsQueriesOf(one).length, 1);
    assert.equal(capsQueriesOf(bob).length, 0);
    // The same caps again (a status change) ask nothing either.
    announce(one, EXODUS_VER);
    await roundTrip(one);
    assert.equal(capsQueriesOf(one).length, 1);
    // Bare JIDs and resources without caps have no features.
    assert.equal(featuresOf(t, "alice@localhost"), undefined);
    assert.equal(featuresOf(t, "alice@localhost/three"), undefined);
  } finally {
    for (const c of clients) c.close();
    await t.stop();
  }
});

Deno.test("a ver whose hash does not match is kept for that resource only, never cached", async () => {
  const t = await startTestServer({ modules: MODULES, users: { alice: "pw", bob: "pw" } });
  const clients: RawClient[] = [];
  try {
    const alice = await login(t, "alice", "a");
    const bob = await login(t, "bob", "b");
    clients.push(alice, bob);
    const wrongVer = "AAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    announce(alice, wrongVer);
    answer(alice, await alice.next(isCapsQuery), EXODUS);
    await roundTrip(alice);
    assert.deepEqual(featuresOf(t, "alice@localhost/a"), new Set(EXODUS.features));

    announce(bob, wrongVer);
    const query = await bob.next(isCapsQuery);
    const other = { identities: EXODUS.identities, features: ["urn:example:other"] };
    answer(bob, query, other);
    await roundTrip(bob);
    assert.deepEqual(featuresOf(t, "bob@localhost/b"), new Set(other.features));
    assert.deepEqual(featuresOf(t, "alice@localhost/a"), new Set(EXODUS.features));
  } finally {
    for (const c of clients) c.close();
    await t.stop();
  }
});

Deno.test("legacy caps, and hashes the server cannot check, are asked for each resource", async () => {
  const t = await startTestServer({ modules: MODULES, users: { alice: "pw", bob: "pw" } });
  const clients: RawClient[] = [];
  try {
    const alice = await login(t, "alice", "a");
    const bob = await login(t, "bob", "b");
    clients.push(alice, bob);
    announce(alice, "0.9.1", null);
    const query = await alice.next(isCapsQuery);
    assert.equal(query.getChild("query", NS_INFO)!.attrs.node, `${NODE}#0.9.1`);
    answer(alice, query, EXODUS);
    await roundTrip(alice);
    assert.deepEqual(featuresOf(t, "alice@localhost/a"), new Set(EXODUS.features));

    announce(bob, "0.9.1", null);
    answer(bob, await bob.next(isCapsQuery), EXODUS);
    await roundTrip(bob);
    assert.deepEqual(featuresOf(t, "bob@localhost/b"), new Set(EXODUS.features));

    // A hash function the server does not know counts the same way (§5.4 step 2).
    for (const client of [alice, bob]) {
      announce(client, EXODUS_VER, "x-unknown");
      answer(client, await client.next(isCapsQuery), EXODUS);
      await roundTrip(client);
    }
    assert.equal(capsQueriesOf(alice).length, 2);
    assert.equal(capsQueriesOf(bob).length, 2);
  } finally {
    for (const c of clients) c.close();
    await t.stop();
  }
});

Deno.test("a resource's features are forgotten when it goes unavailable or away", async () => {
  const t = await startTestServer({ modules: MODULES, users: { alice: "pw" } });
  const clients: RawClient[] = [];
  try {
    const one = await login(t, "alice", "one");
    const two = await login(t, "alice", "two");
    clients.push(one, two);
    announce(one, EXODUS_VER);
    answer(one, await one.next(isCapsQuery), EXODUS);
    await roundTrip(one);
    announce(two, EXODUS_VER);
    await roundTrip(two);
    assert.ok(featuresOf(t, "alice@localhost/one"));
    assert.ok(featuresOf(t, "alice@localhost/two"));

    one.send("<presence type='unavailable'/>");
    await roundTrip(one);
    assert.equal(featuresOf(t, "alice@localhost/one"), undefined);

    // Last of the resource-unbind handlers, so the caps module has seen it too.
    const unbound = new Promise<void>((resolve) => {
      const off = hostOf(t).events.on("resource-unbind", ({ session }) => {
        if (session.jid?.resource !== "two") return;
        off();
        resolve();
      }, -100);
    });
    two.close();
    await unbound;
    assert.equal(featuresOf(t, "alice@localhost/two"), undefined);
  } finally {
    for (const c of clients) c.close();
    await t.stop();
  }
});

Deno.test("a client that never answers holds nothing up: the next resource with its ver is asked", async () => {
  const t = await startTestServer({
    modules: MODULES,
    users: { alice: "pw", bob: "pw" },
    globalToml: "caps_query_timeout = 1",
  });
  const clients: RawClient[] = [];
  try {
    const alice = await login(t, "alice", "a");
    const bob = await login(t, "bob", "b");
    clients.push(alice, bob);
    announce(alice, EXODUS_VER);
    await alice.next(isCapsQuery); // never answered
    announce(bob, EXODUS_VER);
    // bob waits for alice's query; when it times out, bob is asked himself.
    answer(bob, await bob.next(isCapsQuery), EXODUS);
    await roundTrip(bob);
    assert.deepEqual(featuresOf(t, "bob@localhost/b"), new Set(EXODUS.features));
    assert.equal(featuresOf(t, "alice@localhost/a"), undefined);
    await roundTrip(alice); // the server still serves alice
  } finally {
    for (const c of clients) c.close();
    await t.stop();
  }
});

Deno.test("an error answer or a bad caps element leaves the resource without features", async () => {
  const t = await startTestServer({ modules: MODULES, users: { alice: "pw" } });
  const clients: RawClient[] = [];
  try {
    const alice = await login(t, "alice", "a");
    clients.push(alice);
    alice.send(`<presence><c xmlns='${NS_CAPS}' hash='sha-1' node='${NODE}'/></presence>`);
    alice.send(`<presence><c xmlns='${NS_CAPS}' hash='sha-1' ver='x'/></presence>`);
    await roundTrip(alice);
    assert.equal(capsQueriesOf(alice).length, 0);
    announce(alice, EXODUS_VER);
    const query = await alice.next(isCapsQuery);
    alice.send(
      `<iq type='error' id='${query.attrs.id}' to='localhost'><error type='cancel'>` +
        "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
    );
    await roundTrip(alice);
    assert.equal(featuresOf(t, "alice@localhost/a"), undefined);
    // A result without a query is no answer either.
    announce(alice, "BBBBBBBBBBBBBBBBBBBBBBBBBBB=");
    const second = await alice.next(isCapsQuery);
    alice.send(`<iq type='result' id='${second.attrs.id}' to='localhost'/>`);
    await roundTrip(alice);
    assert.equal(featuresOf(t, "alice@localhost/a"), undefined);
  } finally {
    for (const c of clients) c.close();
    await t.stop();
  }
});

Deno.test("verified caps survive a restart: the second server asks nothing", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "lilt-caps-" });
  try {
    const first = await startTestServer({ modules: MODULES, users: { alice: "pw" }, dataDir });
    try {
      const alice = await login(first, "alice", "a");
      announce(alice, EXODUS_VER);
      answer(alice, await alice.next(isCapsQuery), EXODUS);
      await roundTrip(alice);
      assert.ok(featuresOf(first, "alice@localhost/a"));
      alice.close();
    } finally {
      await first.stop();
    }
    const second = await startTestServer({ modules: MODULES, users: { alice: "pw" }, dataDir });
    try {
      const alice = await login(second, "alice", "a");
      announce(alice, EXODUS_VER);
      await roundTrip(alice);
      assert.equal(capsQueriesOf(alice).length, 0);
      assert.deepEqual(featuresOf(second, "alice@localhost/a"), new Set(EXODUS.features));
      alice.close();
    } finally {
      await second.stop();
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
});

Deno.test("caps_cache_size bounds the cache in memory and in the database", async () => {
  const t = await startTestServer({
    modules: MODULES,
    users: { alice: "pw", bob: "pw" },
    globalToml: "caps_cache_size = 1",
  });
  const clients: RawClient[] = [];
  try {
    const alice = await login(t, "alice", "a");
    const bob = await login(t, "bob", "b");
    clients.push(alice, bob);
    announce(alice, EXODUS_VER);
    answer(alice, await alice.next(isCapsQuery), EXODUS);
    await roundTrip(alice);
    const newer = { identities: EXODUS.identities, features: ["urn:example:newer"] };
    const newerVer = createHash("sha1")
      .update(capsVerificationString(newer.identities, newer.features), "utf8").digest("base64");
    announce(alice, newerVer);
    answer(alice, await alice.next(isCapsQuery), newer);
    await roundTrip(alice);
    assert.deepEqual(featuresOf(t, "alice@localhost/a"), new Set(newer.features));

    // Only the newer ver is left: bob's newer client is known at once, his Exodus is asked.
    announce(bob, newerVer);
    await roundTrip(bob);
    assert.equal(capsQueriesOf(bob).length, 0);
    assert.deepEqual(featuresOf(t, "bob@localhost/b"), new Set(newer.features));
    announce(bob, EXODUS_VER);
    answer(bob, await bob.next(isCapsQuery), EXODUS);
    await roundTrip(bob);
    assert.deepEqual(featuresOf(t, "bob@localhost/b"), new Set(EXODUS.features));
  } finally {
    for (const c of clients) c.close();
    await t.stop();
  }
});

Deno.test("caps-features fires when a resource's features become known and when they change", async () => {
  const t = await startTestServer({ modules: MODULES, users: { alice: "pw" } });
  const events: CapsFeaturesEvent[] = [];
  const off = hostOf(t).events.on("caps-features", (event) => {
    events.push(event);
  });
  const clients: RawClient[] = [];
  try {
    const alice = await login(t, "alice", "a");
    clients.push(alice);
    announce(alice, EXODUS_VER);
    answer(alice, await alice.next(isCapsQuery), EXODUS);
    await roundTrip(alice);
    assert.equal(events.length, 1);
    assert.equal(events[0].jid.toString(), "alice@localhost/a");
    assert.deepEqual(events[0].features, new Set(EXODUS.features));
    assert.equal(events[0].previous, undefined);

    // A new client version with one more feature, hashed with sha-256 this time.
    const newer = {
      identities: EXODUS.identities,
      features: [...EXODUS.features, "urn:xmpp:avatar:metadata+notify"],
    };
    const ver = createHash("sha256")
      .update(capsVerificationString(newer.identities, newer.features), "utf8").digest("base64");
    announce(alice, ver, "sha-256");
    answer(alice, await alice.next(isCapsQuery), newer);
    await roundTrip(alice);
    assert.equal(events.length, 2);
    assert.deepEqual(events[1].features, new Set(newer.features));
    assert.deepEqual(events[1].previous, new Set(EXODUS.features));
    assert.deepEqual(featuresOf(t, "alice@localhost/a"), new Set(newer.features));

    // Back to the cached ver: known at once, and announced as a change.
    announce(alice, EXODUS_VER);
    await roundTrip(alice);
    assert.equal(events.length, 3);
    assert.deepEqual(events[2].features, new Set(EXODUS.features));
    assert.deepEqual(events[2].previous, new Set(newer.features));
    assert.equal(capsQueriesOf(alice).length, 2);
  } finally {
    off();
    for (const c of clients) c.close();
    await t.stop();
  }
});

Deno.test("readDiscoInfo finds the ill-formed answers XEP-0115 §5.4 refuses to cache", () => {
  const read = (inner: string) =>
    readDiscoInfo(parseElement(`<query xmlns='${NS_INFO}'>${inner}</query>`));
  const ok = read("<identity category='client' type='pc'/><feature var='a'/><feature var='b'/>");
  assert.equal(ok.problem, undefined);
  assert.deepEqual(ok.features, ["a", "b"]);
  assert.ok(read("<feature var='a'/><feature var='a'/>").problem);
  assert.ok(
    read("<identity category='client' type='pc'/><identity category='client' type='pc'/>")
      .problem,
  );
  const form = (type: string, hidden = true) =>
    `<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE'${
      hidden ? " type='hidden'" : ""
    }><value>${type}</value></field></x>`;
  assert.ok(read(form("urn:example") + form("urn:example")).problem);
  const visible = read(form("urn:example", false));
  assert.equal(visible.problem, undefined);
  assert.equal(visible.forms.length, 0);
});
