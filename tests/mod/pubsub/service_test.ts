// The pubsub engine on its own, without sockets: what depends on a clock (item expiry) or on a
// policy (who is notified, service admins) is easiest to pin down here.

import assert from "node:assert/strict";
import { parseJid } from "../../../core/jid.ts";
import { Database } from "../../../core/storage/database.ts";
import { Element } from "../../../core/xml/element.ts";
import { defaultNodeConfig } from "../../../mod/pubsub/config.ts";
import { PubsubError } from "../../../mod/pubsub/errors.ts";
import { type PubsubPolicy, PubsubService } from "../../../mod/pubsub/service.ts";
import { PUBSUB_MIGRATIONS, PubsubStore } from "../../../mod/pubsub/storage.ts";

const alice = parseJid("alice@example.org/home");
const bob = parseJid("bob@example.org/phone");

interface Fixture {
  service: PubsubService;
  sent: Element[];
  clock: { now: number };
  database: Database;
}

function fixture(overrides: Partial<PubsubPolicy> = {}): Fixture {
  const database = Database.open({ path: ":memory:" });
  database.migrateModule("pubsub", PUBSUB_MIGRATIONS);
  const sent: Element[] = [];
  const clock = { now: 1_000_000 };
  const policy: PubsubPolicy = {
    mayCreate: () => true,
    isServiceAdmin: (bare) => bare === "admin@example.org",
    defaultConfig: () => defaultNodeConfig(1000),
    rosterGroups: () => undefined,
    hasPresenceSubscription: () => false,
    maxItemBytes: 1000,
    maxNodes: 100,
    maxItemsPerNode: 50,
    autoCreateOnPublish: false,
    notify: (message) => sent.push(message),
    now: () => clock.now,
    ...overrides,
  };
  const service = new PubsubService("pubsub.example.org", new PubsubStore(database), policy);
  return { service, sent, clock, database };
}

function entry(text: string): Element {
  return new Element("entry", { xmlns: "urn:example" }).t(text);
}

Deno.test("pubsub engine: expired items are left out and dropped on the next publish", () => {
  const { service, clock, database } = fixture();
  try {
    service.create(alice, "news", new Map([["pubsub#item_expire", ["60"]]]));
    service.publish(alice, "news", { id: "old", payload: [entry("old")], hasItem: true });
    clock.now += 30_000;
    service.publish(alice, "news", { id: "new", payload: [entry("new")], hasItem: true });
    assert.deepEqual(service.items(bob, "news").map((i) => i.id), ["old", "new"]);
    clock.now += 31_000;
    assert.deepEqual(service.items(bob, "news").map((i) => i.id), ["new"]);
    assert.deepEqual(service.items(bob, "news", { ids: ["old"] }), []);
    service.publish(alice, "news", { id: "newer", payload: [entry("x")], hasItem: true });
    const stored = database.prepare(
      "SELECT item_id FROM pubsub_items WHERE node = 'news' ORDER BY id",
    ).all().map((row) => row.item_id);
    assert.deepEqual(stored, ["new", "newer"]);
  } finally {
    database.close();
  }
});

Deno.test("pubsub engine: notifications go through the policy, one message per subscriber", () => {
  const { service, sent, database } = fixture();
  try {
    service.create(alice, "news");
    service.subscribe(bob, "news", bob.bare);
    service.subscribe(bob, "news", bob);
    service.publish(alice, "news", { id: "1", payload: [entry("hi")], hasItem: true });
    assert.deepEqual(sent.map((m) => m.attrs.to).sort(), [
      "bob@example.org",
      "bob@example.org/phone",
    ]);
    // Each message owns its payload tree.
    const [a, b] = sent.map((m) => m.getChild("event")!.getChild("items")!.getChild("item")!);
    assert.notEqual(a, b);
    assert.equal(a.getChildText("entry", "urn:example"), "hi");
    assert.equal(a.attrs.publisher, "alice@example.org");
  } finally {
    database.close();
  }
});

Deno.test("pubsub engine: service admins own every node; others are refused", () => {
  const { service, database } = fixture();
  try {
    service.create(alice, "news");
    const admin = parseJid("admin@example.org/x");
    service.configure(admin, "news", new Map([["pubsub#title", ["Admin's"]]]));
    assert.equal(service.findNode("news")!.config.title, "Admin's");
    assert.throws(
      () => service.delete(bob, "news"),
      (e: unknown) => e instanceof PubsubError && e.condition === "forbidden",
    );
    service.delete(admin, "news");
    assert.equal(service.findNode("news"), undefined);
  } finally {
    database.close();
  }
});

Deno.test("pubsub engine: a payload of the wrong type is refused when the node sets pubsub#type", () => {
  const { service, database } = fixture();
  try {
    service.create(alice, "typed", new Map([["pubsub#type", ["urn:example:other"]]]));
    assert.throws(
      () => service.publish(alice, "typed", { payload: [entry("x")], hasItem: true }),
      (e: unknown) =>
        e instanceof PubsubError && e.condition === "bad-request" &&
        e.pubsubCondition === "invalid-payload",
    );
  } finally {
    database.close();
  }
});

Deno.test("pubsub storage: a subscription stored before options existed migrates with the defaults", () => {
  const database = Database.open({ path: ":memory:" });
  try {
    database.migrateModule("pubsub", PUBSUB_MIGRATIONS.slice(0, 1));
    const store = new PubsubStore(database);
    store.createNode("pubsub.example.org", {
      node: "news",
      config: defaultNodeConfig(1000),
      owner: "alice@example.org",
      createdMs: 1,
    });
    database.prepare(
      "INSERT INTO pubsub_subscriptions (service, node, jid, subid, state, created_ms) " +
        "VALUES ('pubsub.example.org', 'news', 'bob@example.org', 's1', 'subscribed', 2)",
    ).run();
    database.migrateModule("pubsub", PUBSUB_MIGRATIONS);
    const old = store.subscription("pubsub.example.org", "news", "bob@example.org");
    assert.equal(old?.subid, "s1");
    assert.equal(old?.options, undefined);
    store.putSubscription(
      "pubsub.example.org",
      { ...old!, options: { deliver: false } },
      3,
    );
    assert.deepEqual(
      store.subscription("pubsub.example.org", "news", "bob@example.org")?.options,
      { deliver: false },
    );
  } finally {
    database.close();
  }
});
