// RFC 6121 §4 presence over the wire: broadcast to subscribers, probe answers, unavailable on
// logout to subscribers and directed-presence recipients, and the resource-available event.

import assert from "node:assert/strict";
import type { SessionEvent } from "../../core/hosts.ts";
import type { ModuleAPI } from "../../core/modules.ts";
import type { Element } from "../../core/xml/element.ts";
import type { RosterItem, Subscription } from "../../mod/roster_store.ts";
import { RawClient, roundTrip } from "../helpers/raw_client.ts";
import { startTestServer, type TestServer } from "../helpers/test_server.ts";
import { presenceOf } from "../../core/presence_state.ts";

const MODULES = ["disco", "ping", "roster", "presence"];
const USERS = { alice: "pw", bob: "pw", carol: "pw", dave: "pw", eve: "pw" };

/** Round trips in order: what the first client caused has reached all the others. */
async function settle(...clients: RawClient[]): Promise<void> {
  for (const client of clients) await roundTrip(client);
}

/** Presence from other accounts: from, type and show, in order of arrival. */
function presencesOf(client: RawClient, own: string): Record<string, string>[] {
  return client.received
    .filter((el: Element) => el.name === "presence" && !el.attrs.from?.startsWith(`${own}@`))
    .map((el: Element) => {
      const out: Record<string, string> = { from: el.attrs.from };
      if (el.attrs.type) out.type = el.attrs.type;
      const show = el.getChildText("show");
      if (show) out.show = show;
      return out;
    });
}

/** Logs a resource in and sends initial presence (without fetching the roster). */
async function online(t: TestServer, user: string, resource = user[0]): Promise<RawClient> {
  const { client } = await RawClient.login(t.port, user, "pw", resource);
  client.send("<presence/>");
  await client.next((el) =>
    el.name === "presence" && el.attrs.from === `${user}@localhost/${resource}`
  );
  return client;
}

/** Seeds the stored rosters: [user, contact, subscription] from the user's side. */
function seedRosters(t: TestServer, entries: [string, string, Subscription][]): void {
  const store = t.server.storage.map<RosterItem>("localhost", "roster");
  for (const [user, contact, subscription] of entries) {
    store.set(user, `${contact}@localhost`, { subscription, groups: [] });
  }
}

/**
 * alice shares presence both ways with bob; carol sees alice (alice's "from"); alice sees dave
 * (alice's "to"); eve is a stranger.
 */
async function start(): Promise<TestServer> {
  const t = await startTestServer({ users: USERS, modules: MODULES });
  seedRosters(t, [
    ["alice", "bob", "both"],
    ["bob", "alice", "both"],
    ["alice", "carol", "from"],
    ["carol", "alice", "to"],
    ["alice", "dave", "to"],
    ["dave", "alice", "from"],
  ]);
  return t;
}

Deno.test("initial presence reaches subscribers and probes answer with contacts' presence (RFC 6121 §4.2, §4.3)", async () => {
  const t = await start();
  try {
    const b = await online(t, "bob");
    const c = await online(t, "carol");
    const d = await online(t, "dave");
    const e = await online(t, "eve");
    const a = await online(t, "alice");
    await settle(a, b, c, d, e);
    // alice sees those she is subscribed to (bob, dave), each resource with its presence.
    assert.deepEqual(presencesOf(a, "alice"), [{ from: "bob@localhost/b" }, {
      from: "dave@localhost/d",
    }]);
    // Her presence goes to those subscribed to her (bob, carol) and nobody else; their own
    // probes, while she was offline, were answered with her bare unavailable presence.
    const offline = { from: "alice@localhost", type: "unavailable" };
    assert.deepEqual(presencesOf(b, "bob"), [offline, { from: "alice@localhost/a" }]);
    assert.deepEqual(presencesOf(c, "carol"), [offline, { from: "alice@localhost/a" }]);
    assert.deepEqual(presencesOf(d, "dave"), []);
    assert.deepEqual(presencesOf(e, "eve"), []);

    // An offline contact answers the probe with its bare unavailable presence.
    d.close();
    await settle(a);
    const a2 = await online(t, "alice", "a2");
    await settle(a2);
    assert.deepEqual(presencesOf(a2, "alice"), [
      { from: "bob@localhost/b" },
      { from: "dave@localhost", type: "unavailable" },
    ]);
    // A new resource also learns the account's other resources.
    assert.ok(
      a2.received.some((el) => el.name === "presence" && el.attrs.from === "alice@localhost/a"),
    );

    // Updates go to subscribers only (and the account's resources).
    a.send("<presence><show>away</show></presence>");
    await settle(a, a2, b, c, e);
    assert.deepEqual(presencesOf(b, "bob").at(-1), { from: "alice@localhost/a", show: "away" });
    assert.deepEqual(presencesOf(c, "carol").at(-1), { from: "alice@localhost/a", show: "away" });
    assert.deepEqual(presencesOf(e, "eve"), []);
    assert.ok(
      a2.received.some((el) =>
        el.attrs.from === "alice@localhost/a" && el.getChildText("show") === "away"
      ),
    );
    for (const x of [a, a2, b, c, e]) x.close();
  } finally {
    await t.stop();
  }
});

Deno.test("probes are answered only for subscribers (RFC 6121 §4.3.2)", async () => {
  const t = await start();
  try {
    const a = await online(t, "alice");
    const b = await online(t, "bob");
    const e = await online(t, "eve");
    await settle(a, b, e);
    const before = presencesOf(b, "bob").length;
    b.send("<presence type='probe' to='alice@localhost'/>");
    e.send("<presence type='probe' to='alice@localhost'/>");
    await settle(b, e);
    assert.deepEqual(presencesOf(b, "bob").slice(before), [{ from: "alice@localhost/a" }]);
    assert.deepEqual(presencesOf(e, "eve"), [], "a stranger learns nothing");
    for (const x of [a, b, e]) x.close();
  } finally {
    await t.stop();
  }
});

Deno.test("unavailable reaches subscribers and directed-presence recipients (RFC 6121 §4.5, §4.6)", async () => {
  const t = await start();
  try {
    const b = await online(t, "bob");
    const c = await online(t, "carol");
    const d = await online(t, "dave");
    const e = await online(t, "eve");
    const a = await online(t, "alice");

    // Directed presence to a stranger's full JID is delivered, but later broadcasts are not.
    a.send("<presence to='eve@localhost/e'><status>hello eve</status></presence>");
    await settle(a, e);
    assert.deepEqual(presencesOf(e, "eve"), [{ from: "alice@localhost/a" }]);
    a.send("<presence><show>dnd</show></presence>");
    await settle(a, b, e);
    assert.deepEqual(presencesOf(e, "eve"), [{ from: "alice@localhost/a" }]);

    // Going unavailable tells subscribers and the directed-presence recipient, once each.
    a.send("<presence type='unavailable'><status>bye</status></presence>");
    await settle(a, b, c, d, e);
    const gone = { from: "alice@localhost/a", type: "unavailable" };
    assert.deepEqual(presencesOf(b, "bob").at(-1), gone);
    assert.deepEqual(presencesOf(c, "carol").at(-1), gone);
    assert.deepEqual(presencesOf(e, "eve"), [{ from: "alice@localhost/a" }, gone]);
    assert.deepEqual(presencesOf(d, "dave"), []);
    const farewell = e.received.findLast((el) => el.attrs.type === "unavailable")!;
    assert.equal(farewell.getChildText("status"), "bye");

    // Back online, directed presence again (to the bare JID), then the connection drops.
    a.send("<presence/>");
    a.send("<presence to='eve@localhost'/>");
    await settle(a, b, e);
    assert.deepEqual(presencesOf(b, "bob").slice(-2), [gone, { from: "alice@localhost/a" }]);
    a.close();
    const unavailableCount = (x: RawClient, own: string) =>
      presencesOf(x, own).filter((p) => p.from === gone.from && p.type === "unavailable").length;
    for (const [x, own] of [[b, "bob"], [c, "carol"], [e, "eve"]] as const) {
      await x.waitUntil(() => unavailableCount(x, own) === 2 ? true : undefined);
    }
    await settle(b, c, e);
    assert.equal(unavailableCount(c, "carol"), 2);
    assert.equal(unavailableCount(b, "bob"), 2);
    assert.deepEqual(presencesOf(e, "eve"), [
      { from: "alice@localhost/a" },
      gone,
      { from: "alice@localhost/a" },
      gone,
    ]);
    assert.deepEqual(presencesOf(d, "dave"), []);
    for (const x of [b, c, d, e]) x.close();
  } finally {
    await t.stop();
  }
});

Deno.test("the resource that goes unavailable gets its presence back before the stream ends", async () => {
  const t = await start();
  try {
    const a = await online(t, "alice");
    // The goodbye and the end of the stream in one packet, as clients send them at logout.
    a.send("<presence type='unavailable'><status>bye</status></presence></stream:stream>");
    await a.waitClosed();
    const echo = a.received.findLast((el) => el.name === "presence");
    assert.equal(echo?.attrs.type, "unavailable");
    assert.equal(echo?.attrs.from, "alice@localhost/a");
    assert.equal(echo?.attrs.to, "alice@localhost/a");
    assert.equal(echo?.getChildText("status"), "bye");
    a.close();
  } finally {
    await t.stop();
  }
});

Deno.test("a subscription request waiting for a local contact is acknowledged with unavailable", async () => {
  const t = await start();
  try {
    const e = await online(t, "eve");
    const b = await online(t, "bob");
    e.send("<presence to='bob@localhost' type='subscribe'/>");
    await settle(e, b);
    // eve learns the request arrived, without learning bob's presence.
    assert.deepEqual(presencesOf(e, "eve"), [{ from: "bob@localhost", type: "unavailable" }]);
    assert.deepEqual(presencesOf(b, "bob").at(-1), { from: "eve@localhost", type: "subscribe" });
    for (const x of [b, e]) x.close();
  } finally {
    await t.stop();
  }
});

Deno.test("resource-available fires once per session, after priority is known", async () => {
  const t = await start();
  try {
    const seen: { resource: string; priority: number; available: boolean }[] = [];
    t.server.modules.register("test_available_probe", {
      default(m: ModuleAPI) {
        m.hook("resource-available", ({ session }: SessionEvent) => {
          seen.push({
            resource: session.jid!.resource!,
            priority: presenceOf(session).priority,
            available: presenceOf(session).available,
          });
        });
      },
    });
    await t.server.modules.load(t.server.hosts.get("localhost")!, "test_available_probe");
    const { client } = await RawClient.login(t.port, "alice", "pw", "a");
    client.send("<presence><priority>5</priority></presence>");
    client.send("<presence><priority>7</priority></presence>");
    client.send("<presence type='unavailable'/>");
    client.send("<presence/>");
    await settle(client);
    assert.deepEqual(seen, [{ resource: "a", priority: 5, available: true }]);
    client.close();
  } finally {
    await t.stop();
  }
});

Deno.test("the pre-approval stream feature is advertised after authentication (RFC 6121 §3.4)", async () => {
  const t = await start();
  try {
    const client = await RawClient.connect(t.port);
    await client.open();
    const before = await client.starttls();
    assert.equal(before.getChild("sub", "urn:xmpp:features:pre-approval"), undefined);
    client.send(
      `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${
        btoa("\0alice\0pw")
      }</auth>`,
    );
    await client.next((el) => el.name === "success");
    client.restart();
    const after = await client.open();
    assert.ok(after.getChild("sub", "urn:xmpp:features:pre-approval"));
    client.close();
  } finally {
    await t.stop();
  }
});
