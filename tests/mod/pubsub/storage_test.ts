// The pubsub store's lookups by JID prefix and suffix and its unbounded item reads, on the engine
// the suite runs on (SQLite in memory, or a PostgreSQL schema of its own with
// LILT_TEST_STORAGE=postgresql), where the two engines' SQL once differed (LIKE's case, LIMIT -1).

import assert from "node:assert/strict";
import { Database } from "../../../core/storage/database.ts";
import { defaultNodeConfig } from "../../../mod/pubsub/config.ts";
import { PUBSUB_MIGRATIONS, PubsubStore } from "../../../mod/pubsub/storage.ts";
import { freshSchema, postgresUrl } from "../../helpers/postgres.ts";
import { TESTING_ON_POSTGRESQL } from "../../helpers/test_server.ts";

/** Runs `fn` with a migrated pubsub store on the engine of this run, then drops it. */
async function withStore(fn: (store: PubsubStore) => void): Promise<void> {
  if (!TESTING_ON_POSTGRESQL) {
    const database = Database.open({ path: ":memory:" });
    try {
      database.migrateModule("pubsub", PUBSUB_MIGRATIONS);
      fn(new PubsubStore(database));
    } finally {
      database.close();
    }
    return;
  }
  const url = await postgresUrl();
  using schema = freshSchema(url);
  const database = Database.open({
    path: "pubsub storage test",
    postgres: { url, password: "", schema: schema.name },
  });
  try {
    database.migrateModule("pubsub", PUBSUB_MIGRATIONS);
    fn(new PubsubStore(database));
  } finally {
    database.close();
  }
}

function createNode(store: PubsubStore, service: string, node: string): void {
  store.createNode(service, {
    node,
    config: defaultNodeConfig(1000),
    owner: service,
    createdMs: 1,
  });
}

Deno.test("pubsub storage: services are found by their exact domain suffix", async () => {
  await withStore((store) => {
    for (
      const service of [
        "bob@my_host.test",
        "alice@my_host.test",
        // LIKE's wildcard, another case, a longer domain and a JID shorter than the suffix.
        "carol@myxhost.test",
        "dave@MY_HOST.TEST",
        "erin@sub.my_host.test.org",
        "host.test",
      ]
    ) {
      createNode(store, service, "urn:xmpp:avatar:metadata");
    }
    assert.deepEqual(store.servicesEndingWith("@my_host.test"), [
      "alice@my_host.test",
      "bob@my_host.test",
    ]);
    assert.deepEqual(store.servicesEndingWith("@nowhere.test"), []);
  });
});

Deno.test("pubsub storage: a bare JID's subscriptions are its own and its resources'", async () => {
  await withStore((store) => {
    const service = "pubsub.example.org";
    createNode(store, service, "a");
    createNode(store, service, "b");
    const subscribe = (node: string, jid: string) =>
      store.putSubscription(
        service,
        { node, jid, subid: `${node}:${jid}`, state: "subscribed" },
        1,
      );
    subscribe("b", "bob@example.org");
    subscribe("a", "bob@example.org/phone");
    subscribe("a", "bob@example.org");
    subscribe("b", "bob@example.org/Laptop");
    // Not bob: a longer domain, another case, a look-alike through LIKE's wildcards.
    subscribe("a", "bob@example.orgx/phone");
    subscribe("a", "BOB@example.org/phone");
    subscribe("a", "bob@example_org/phone");
    subscribe("b", "bob%example.org/phone");
    assert.deepEqual(
      store.subscriptionsOf(service, "bob@example.org").map((s) => `${s.node} ${s.jid}`),
      [
        "a bob@example.org",
        "a bob@example.org/phone",
        "b bob@example.org",
        "b bob@example.org/Laptop",
      ],
    );
    assert.deepEqual(store.subscriptionsOf(service, "bob@example"), []);
  });
});

Deno.test("pubsub storage: items come oldest first, all of them or the newest max", async () => {
  await withStore((store) => {
    const service = "pubsub.example.org";
    createNode(store, service, "news");
    for (let i = 1; i <= 5; i++) {
      store.putItem(service, "news", {
        itemId: `i${i}`,
        publisher: "alice@example.org/a",
        payload: `<entry>${i}</entry>`,
        publishedMs: i * 10,
      });
    }
    // Republishing an id makes it the newest.
    store.putItem(service, "news", {
      itemId: "i2",
      publisher: "alice@example.org/a",
      payload: "<entry>2 again</entry>",
      publishedMs: 60,
    });
    const ids = (items: { itemId: string }[]) => items.map((item) => item.itemId);
    assert.deepEqual(ids(store.items(service, "news")), ["i1", "i3", "i4", "i5", "i2"]);
    assert.deepEqual(ids(store.items(service, "news", { max: 2 })), ["i5", "i2"]);
    assert.deepEqual(ids(store.items(service, "news", { expiredBeforeMs: 30 })), [
      "i4",
      "i5",
      "i2",
    ]);
    store.trimItems(service, "news", 3);
    assert.deepEqual(ids(store.items(service, "news")), ["i4", "i5", "i2"]);
    assert.equal(store.itemCount(service, "news"), 3);
  });
});
