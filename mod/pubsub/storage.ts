// The publish-subscribe tables (nodes, items, affiliations, subscriptions) and the only code
// that touches them: one row per item, indexed per node, so a node's history never becomes one
// blob that every publish rewrites.

import type { Migration } from "../../core/storage/migrations.ts";
import type { Database } from "../../core/storage/database.ts";
import type { NodeConfig, SubscriptionOptions } from "./config.ts";

/** The module's schema, numbered for the pubsub module alone (see `ModuleFile.migrations`). */
export const PUBSUB_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: "pubsub nodes, items, affiliations and subscriptions",
    up(db) {
      db.exec(`
        CREATE TABLE pubsub_nodes (
          service TEXT NOT NULL,
          node TEXT NOT NULL,
          config TEXT NOT NULL,
          owner TEXT NOT NULL,
          created_ms INTEGER NOT NULL,
          PRIMARY KEY (service, node)
        ) WITHOUT ROWID;

        CREATE TABLE pubsub_items (
          id INTEGER PRIMARY KEY,
          service TEXT NOT NULL,
          node TEXT NOT NULL,
          item_id TEXT NOT NULL,
          publisher TEXT NOT NULL,
          payload TEXT NOT NULL,
          published_ms INTEGER NOT NULL,
          UNIQUE (service, node, item_id)
        );
        CREATE INDEX pubsub_items_order ON pubsub_items (service, node, id);

        CREATE TABLE pubsub_affiliations (
          service TEXT NOT NULL,
          node TEXT NOT NULL,
          jid TEXT NOT NULL,
          affiliation TEXT NOT NULL,
          PRIMARY KEY (service, node, jid)
        ) WITHOUT ROWID;
        CREATE INDEX pubsub_affiliations_jid ON pubsub_affiliations (service, jid);

        CREATE TABLE pubsub_subscriptions (
          service TEXT NOT NULL,
          node TEXT NOT NULL,
          jid TEXT NOT NULL,
          subid TEXT NOT NULL,
          state TEXT NOT NULL,
          created_ms INTEGER NOT NULL,
          PRIMARY KEY (service, node, jid)
        ) WITHOUT ROWID;
        CREATE INDEX pubsub_subscriptions_jid ON pubsub_subscriptions (service, jid);
      `);
    },
  },
  {
    version: 2,
    description: "pubsub subscription options (XEP-0060 §6.3)",
    up(db) {
      // NULL: the subscription never set options and has the defaults.
      db.exec("ALTER TABLE pubsub_subscriptions ADD COLUMN options TEXT");
    },
  },
];

/** The affiliations of XEP-0060 §4.1 that are stored ("none" is the absence of a row). */
export type Affiliation = "owner" | "publisher" | "publish-only" | "member" | "outcast";

/** A subscription's state (XEP-0060 §4.2); "none" and "unconfigured" are never stored. */
export type SubscriptionState = "subscribed" | "pending";

/** One node as stored. */
export interface StoredNode {
  node: string;
  config: NodeConfig;
  /** The bare JID that created it. */
  owner: string;
  createdMs: number;
}

/** One published item as stored. */
export interface StoredItem {
  itemId: string;
  /** The full JID that published it. */
  publisher: string;
  /** The payload element's serialised XML ("" for a notification without payload). */
  payload: string;
  publishedMs: number;
}

/** One subscription as stored. */
export interface StoredSubscription {
  node: string;
  /** The subscribed JID, bare or full as it subscribed. */
  jid: string;
  subid: string;
  state: SubscriptionState;
  /** Options the subscriber set (§6.3); absent means the defaults. */
  options?: SubscriptionOptions;
}

/** Options for {@link PubsubStore.items}. */
export interface ItemQuery {
  /** Only these item ids (in the order published). */
  ids?: string[];
  /** The most recent `max` items (still returned oldest first). */
  max?: number;
  /** Items published at or before this moment are expired and left out. */
  expiredBeforeMs?: number;
}

/** A page request for {@link PubsubStore.itemsPage}. */
export interface ItemPageQuery {
  /** Items after this item id. */
  after?: string;
  /** Items before this item id; "" asks for the last page. */
  before?: string;
  /** Most items in the page. */
  max: number;
  /** Items published at or before this moment are expired and left out. */
  expiredBeforeMs?: number;
}

/** One page of items, with what XEP-0059's `<set/>` reports. */
export interface ItemPage {
  items: StoredItem[];
  /** Items in the whole node. */
  count: number;
  /** Position of the page's first item in the node, when the page is not empty. */
  firstIndex: number | undefined;
}

/**
 * The stored state of every pubsub service of the server (a component's, and later each
 * account's PEP service), keyed by service JID. Statements are synchronous.
 */
export class PubsubStore {
  #db: Database;

  /** Uses the tables made by {@link PUBSUB_MIGRATIONS} in `database`. */
  constructor(database: Database) {
    this.#db = database;
  }

  /** Runs `fn` in one transaction (several rows that change together). */
  transaction<T>(fn: () => T): T {
    return this.#db.transaction(fn);
  }

  /** One node, or undefined. */
  node(service: string, node: string): StoredNode | undefined {
    const row = this.#db.prepare(
      "SELECT node, config, owner, created_ms FROM pubsub_nodes WHERE service = ? AND node = ?",
    ).get(service, node);
    return row ? nodeOf(row) : undefined;
  }

  /** Every node of a service, ordered by name. */
  nodes(service: string): StoredNode[] {
    return this.#db.prepare(
      "SELECT node, config, owner, created_ms FROM pubsub_nodes WHERE service = ? ORDER BY node",
    ).all(service).map(nodeOf);
  }

  /** The services with at least one node whose JID ends with `suffix` (e.g. `@host`), sorted. */
  servicesEndingWith(suffix: string): string[] {
    // Stored JIDs are prepared, so the suffix is compared exactly (LIKE ignores ASCII case on
    // SQLite but not on PostgreSQL).
    return this.#db.prepare(
      "SELECT DISTINCT service FROM pubsub_nodes WHERE length(service) >= length(?) " +
        "AND substr(service, length(service) - length(?) + 1) = ? ORDER BY service",
    ).all(suffix, suffix, suffix).map((row) => String(row.service));
  }

  /** Deletes every node, item, affiliation and subscription of a service (a deleted account's). */
  deleteService(service: string): void {
    this.transaction(() => {
      for (
        const table of [
          "pubsub_items",
          "pubsub_affiliations",
          "pubsub_subscriptions",
          "pubsub_nodes",
        ]
      ) {
        this.#db.prepare(`DELETE FROM ${table} WHERE service = ?`).run(service);
      }
    });
  }

  /** How many nodes a service has. */
  nodeCount(service: string): number {
    const row = this.#db.prepare("SELECT count(*) AS n FROM pubsub_nodes WHERE service = ?")
      .get(service);
    return Number(row?.n ?? 0);
  }

  /** Creates a node with its owner's affiliation. */
  createNode(service: string, node: StoredNode): void {
    this.transaction(() => {
      this.#db.prepare(
        "INSERT INTO pubsub_nodes (service, node, config, owner, created_ms) VALUES (?, ?, ?, ?, ?)",
      ).run(service, node.node, JSON.stringify(node.config), node.owner, node.createdMs);
      this.setAffiliation(service, node.node, node.owner, "owner");
    });
  }

  /** Replaces a node's configuration. */
  setConfig(service: string, node: string, config: NodeConfig): void {
    this.#db.prepare("UPDATE pubsub_nodes SET config = ? WHERE service = ? AND node = ?")
      .run(JSON.stringify(config), service, node);
  }

  /** Deletes a node with its items, affiliations and subscriptions. */
  deleteNode(service: string, node: string): void {
    this.transaction(() => {
      for (const table of ["pubsub_items", "pubsub_affiliations", "pubsub_subscriptions"]) {
        this.#db.prepare(`DELETE FROM ${table} WHERE service = ? AND node = ?`).run(service, node);
      }
      this.#db.prepare("DELETE FROM pubsub_nodes WHERE service = ? AND node = ?")
        .run(service, node);
    });
  }

  /**
   * Stores an item; one with the same id is replaced and becomes the newest. Then only the
   * newest `keep` items stay (when given).
   */
  putItem(service: string, node: string, item: StoredItem, keep?: number): void {
    this.transaction(() => {
      this.#db.prepare("DELETE FROM pubsub_items WHERE service = ? AND node = ? AND item_id = ?")
        .run(service, node, item.itemId);
      this.#db.prepare(
        "INSERT INTO pubsub_items (service, node, item_id, publisher, payload, published_ms) " +
          "VALUES (?, ?, ?, ?, ?, ?)",
      ).run(service, node, item.itemId, item.publisher, item.payload, item.publishedMs);
      if (keep !== undefined) this.trimItems(service, node, keep);
    });
  }

  /** Keeps only the newest `keep` items of a node. */
  trimItems(service: string, node: string, keep: number): void {
    this.#db.prepare(
      "DELETE FROM pubsub_items WHERE service = ? AND node = ? AND id NOT IN " +
        "(SELECT id FROM pubsub_items WHERE service = ? AND node = ? ORDER BY id DESC LIMIT ?)",
    ).run(service, node, service, node, keep);
  }

  /** Deletes items published at or before `beforeMs` (item expiry). */
  expireItems(service: string, node: string, beforeMs: number): void {
    this.#db.prepare(
      "DELETE FROM pubsub_items WHERE service = ? AND node = ? AND published_ms <= ?",
    ).run(service, node, beforeMs);
  }

  /** One item, or undefined. */
  item(service: string, node: string, itemId: string): StoredItem | undefined {
    const row = this.#db.prepare(
      "SELECT item_id, publisher, payload, published_ms FROM pubsub_items " +
        "WHERE service = ? AND node = ? AND item_id = ?",
    ).get(service, node, itemId);
    return row ? itemOf(row) : undefined;
  }

  /** A node's items, oldest first (see {@link ItemQuery}). */
  items(service: string, node: string, query: ItemQuery = {}): StoredItem[] {
    const expired = query.expiredBeforeMs ?? -1;
    if (query.ids !== undefined) {
      return query.ids.map((id) => this.item(service, node, id))
        .filter((item): item is StoredItem => item !== undefined && item.publishedMs > expired);
    }
    const newestFirst = "SELECT item_id, publisher, payload, published_ms FROM pubsub_items " +
      "WHERE service = ? AND node = ? AND published_ms > ? ORDER BY id DESC";
    const rows = query.max === undefined
      ? this.#db.prepare(newestFirst).all(service, node, expired)
      : this.#db.prepare(`${newestFirst} LIMIT ?`).all(service, node, expired, query.max);
    return rows.map(itemOf).reverse();
  }

  /**
   * One page of a node's items, oldest first (XEP-0059 over the publication order): after
   * the item `after`, before the item `before` ("" = the last page), else the first page.
   * Undefined when `after` or `before` names an item that is not there.
   */
  itemsPage(service: string, node: string, page: ItemPageQuery): ItemPage | undefined {
    const expired = page.expiredBeforeMs ?? -1;
    const columns = "SELECT id, item_id, publisher, payload, published_ms FROM pubsub_items " +
      "WHERE service = ? AND node = ? AND published_ms > ?";
    const anchorId = (itemId: string) =>
      this.#db.prepare(
        "SELECT id FROM pubsub_items WHERE service = ? AND node = ? AND item_id = ?",
      ).get(service, node, itemId)?.id;
    let rows: Record<string, unknown>[];
    if (page.after !== undefined) {
      const anchor = anchorId(page.after);
      if (anchor === undefined) return undefined;
      rows = this.#db.prepare(`${columns} AND id > ? ORDER BY id LIMIT ?`)
        .all(service, node, expired, anchor, page.max);
    } else if (page.before !== undefined) {
      let anchor: unknown = Number.MAX_SAFE_INTEGER;
      if (page.before !== "") {
        anchor = anchorId(page.before);
        if (anchor === undefined) return undefined;
      }
      rows = this.#db.prepare(`${columns} AND id < ? ORDER BY id DESC LIMIT ?`)
        .all(service, node, expired, anchor as number, page.max).reverse();
    } else {
      rows = this.#db.prepare(`${columns} ORDER BY id LIMIT ?`)
        .all(service, node, expired, page.max);
    }
    const count = Number(
      this.#db.prepare(
        "SELECT count(*) AS n FROM pubsub_items WHERE service = ? AND node = ? AND published_ms > ?",
      ).get(service, node, expired)?.n ?? 0,
    );
    let firstIndex: number | undefined;
    if (rows.length > 0) {
      firstIndex = Number(
        this.#db.prepare(
          "SELECT count(*) AS n FROM pubsub_items WHERE service = ? AND node = ? " +
            "AND published_ms > ? AND id < ?",
        ).get(service, node, expired, rows[0].id as number)?.n ?? 0,
      );
    }
    return { items: rows.map(itemOf), count, firstIndex };
  }

  /** How many items a node holds. */
  itemCount(service: string, node: string): number {
    const row = this.#db.prepare(
      "SELECT count(*) AS n FROM pubsub_items WHERE service = ? AND node = ?",
    ).get(service, node);
    return Number(row?.n ?? 0);
  }

  /** Deletes one item; false when there was none. */
  deleteItem(service: string, node: string, itemId: string): boolean {
    const result = this.#db.prepare(
      "DELETE FROM pubsub_items WHERE service = ? AND node = ? AND item_id = ?",
    ).run(service, node, itemId);
    return Number(result.changes) > 0;
  }

  /** Deletes every item of a node. */
  purge(service: string, node: string): void {
    this.#db.prepare("DELETE FROM pubsub_items WHERE service = ? AND node = ?").run(service, node);
  }

  /** A JID's affiliation with a node ("none" when it has no row). */
  affiliation(service: string, node: string, jid: string): Affiliation | "none" {
    const row = this.#db.prepare(
      "SELECT affiliation FROM pubsub_affiliations WHERE service = ? AND node = ? AND jid = ?",
    ).get(service, node, jid);
    return (row?.affiliation as Affiliation | undefined) ?? "none";
  }

  /** Every affiliation of a node: bare JID -> affiliation. */
  affiliations(service: string, node: string): Map<string, Affiliation> {
    const rows = this.#db.prepare(
      "SELECT jid, affiliation FROM pubsub_affiliations WHERE service = ? AND node = ? ORDER BY jid",
    ).all(service, node);
    return new Map(rows.map((row) => [String(row.jid), row.affiliation as Affiliation]));
  }

  /** Every affiliation of one JID across a service's nodes: node -> affiliation. */
  affiliationsOf(service: string, jid: string): Map<string, Affiliation> {
    const rows = this.#db.prepare(
      "SELECT node, affiliation FROM pubsub_affiliations WHERE service = ? AND jid = ? ORDER BY node",
    ).all(service, jid);
    return new Map(rows.map((row) => [String(row.node), row.affiliation as Affiliation]));
  }

  /** Sets (or with "none", removes) an affiliation. */
  setAffiliation(service: string, node: string, jid: string, affiliation: Affiliation | "none") {
    if (affiliation === "none") {
      this.#db.prepare(
        "DELETE FROM pubsub_affiliations WHERE service = ? AND node = ? AND jid = ?",
      ).run(service, node, jid);
      return;
    }
    this.#db.prepare(
      "INSERT INTO pubsub_affiliations (service, node, jid, affiliation) VALUES (?, ?, ?, ?) " +
        "ON CONFLICT (service, node, jid) DO UPDATE SET affiliation = excluded.affiliation",
    ).run(service, node, jid, affiliation);
  }

  /** The subscription of exactly this JID (bare or full), or undefined. */
  subscription(service: string, node: string, jid: string): StoredSubscription | undefined {
    const row = this.#db.prepare(
      "SELECT node, jid, subid, state, options FROM pubsub_subscriptions " +
        "WHERE service = ? AND node = ? AND jid = ?",
    ).get(service, node, jid);
    return row ? subscriptionOf(row) : undefined;
  }

  /** Every subscription to a node, oldest first. */
  subscriptions(service: string, node: string): StoredSubscription[] {
    return this.#db.prepare(
      "SELECT node, jid, subid, state, options FROM pubsub_subscriptions WHERE service = ? AND node = ? " +
        "ORDER BY created_ms, jid",
    ).all(service, node).map(subscriptionOf);
  }

  /** Every subscription of the JIDs given (a bare JID and its full JIDs) across a service. */
  subscriptionsOf(service: string, bare: string): StoredSubscription[] {
    // The bare JID, or it with a resource: its prefix compared exactly, as servicesEndingWith.
    const prefix = `${bare}/`;
    return this.#db.prepare(
      "SELECT node, jid, subid, state, options FROM pubsub_subscriptions " +
        "WHERE service = ? AND (jid = ? OR substr(jid, 1, length(?)) = ?) ORDER BY node, jid",
    ).all(service, bare, prefix, prefix).map(subscriptionOf);
  }

  /** Stores a subscription (replacing one of the same JID). */
  putSubscription(service: string, subscription: StoredSubscription, createdMs: number): void {
    this.#db.prepare(
      "INSERT INTO pubsub_subscriptions (service, node, jid, subid, state, created_ms, options) " +
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (service, node, jid) DO UPDATE SET " +
        "subid = excluded.subid, state = excluded.state, options = excluded.options",
    ).run(
      service,
      subscription.node,
      subscription.jid,
      subscription.subid,
      subscription.state,
      createdMs,
      subscription.options ? JSON.stringify(subscription.options) : null,
    );
  }

  /** Removes a subscription; false when there was none. */
  deleteSubscription(service: string, node: string, jid: string): boolean {
    const result = this.#db.prepare(
      "DELETE FROM pubsub_subscriptions WHERE service = ? AND node = ? AND jid = ?",
    ).run(service, node, jid);
    return Number(result.changes) > 0;
  }
}

function nodeOf(row: Record<string, unknown>): StoredNode {
  return {
    node: String(row.node),
    config: JSON.parse(String(row.config)) as NodeConfig,
    owner: String(row.owner),
    createdMs: Number(row.created_ms),
  };
}

function itemOf(row: Record<string, unknown>): StoredItem {
  return {
    itemId: String(row.item_id),
    publisher: String(row.publisher),
    payload: String(row.payload),
    publishedMs: Number(row.published_ms),
  };
}

function subscriptionOf(row: Record<string, unknown>): StoredSubscription {
  return {
    node: String(row.node),
    jid: String(row.jid),
    subid: String(row.subid),
    state: row.state as SubscriptionState,
    options: typeof row.options === "string"
      ? JSON.parse(row.options) as SubscriptionOptions
      : undefined,
  };
}
