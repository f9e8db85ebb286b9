// The XEP-0060 publish-subscribe engine for one service address (a component domain, later an
// account's bare JID for PEP): node lifecycle, items, subscriptions, affiliations and access
// models. It knows nothing of how requests arrive; what differs between services (who may
// create, defaults, rosters, limits, how notifications leave) comes in as a policy.

import { type JID, parseJid } from "../../core/jid.ts";
import { Element } from "../../core/xml/element.ts";
import { parseElement } from "../../core/xml/parser.ts";
import { serialize } from "../../core/xml/serializer.ts";
import {
  applyConfigFields,
  applySubscriptionOptionFields,
  checkPreconditions,
  configForm,
  type ConfigLimits,
  DEFAULT_SUBSCRIPTION_OPTIONS,
  type NodeConfig,
  type SubscriptionOptions,
} from "./config.ts";
import { PubsubError } from "./errors.ts";
import type {
  Affiliation,
  ItemPageQuery,
  PubsubStore,
  StoredItem,
  StoredNode,
  StoredSubscription,
  SubscriptionState,
} from "./storage.ts";

/** Namespace of event notifications (XEP-0060 §12). */
export const NS_PUBSUB_EVENT = "http://jabber.org/protocol/pubsub#event";
/** FORM_TYPE of the subscription approval form an owner receives (§8.6). */
export const SUBSCRIBE_AUTHORIZATION_FORM =
  "http://jabber.org/protocol/pubsub#subscribe_authorization";
const NS_DATA = "jabber:x:data";

/** What the service's policy is told about a notification it must send. */
export interface NotifyTarget {
  /** The node the event is about. */
  node: string;
  /** The JID (bare or full) the message is addressed to. */
  recipient: string;
  /** For a published item's notification, the full JID that published it. */
  publisher?: string;
}

/** What differs between services: the component's and, later, each account's PEP. */
export interface PubsubPolicy {
  /** Whether `actor` may create nodes on this service. */
  mayCreate(actor: JID): boolean;
  /** True for a JID that administers the whole service (an owner of every node). */
  isServiceAdmin(bare: string): boolean;
  /** The configuration a new node starts from. */
  defaultConfig(): NodeConfig;
  /** The groups `contact` has in `owner`'s roster, or undefined when it is not in it. */
  rosterGroups(owner: string, contact: string): string[] | undefined;
  /** True when `contact` is subscribed to `owner`'s presence. */
  hasPresenceSubscription(owner: string, contact: string): boolean;
  /** Largest item payload in bytes (`pubsub_max_item_size`). */
  maxItemBytes: number;
  /** Most nodes this service may hold. */
  maxNodes: number;
  /** Most items a node may keep (what `pubsub#max_items` = `max` means). */
  maxItemsPerNode: number;
  /** Publishing to a node that does not exist creates it (XEP-0060 §7.1.4). */
  autoCreateOnPublish: boolean;
  /** Sends one event notification (a PEP service may filter it by the recipient's caps). */
  notify(message: Element, target: NotifyTarget): void;
  /**
   * JIDs that get a node's notifications without a subscription of their own (PEP: the
   * owner's and contacts' resources that asked for the node with `+notify`). Each still passes
   * the node's access model; a bare JID subscription is served through them when present.
   */
  implicitRecipients?(node: string): Iterable<string>;
  /**
   * Called before and after one event is sent to its recipients: a policy may keep what it
   * reads for each recipient (a roster) for that long instead of reading it per recipient.
   */
  broadcastStarts?(): void;
  /** See `broadcastStarts`; called even when sending failed. */
  broadcastEnds?(): void;
  /**
   * Told after a node's items changed (a publish, a retraction, a purge, the node's deletion),
   * once stored and notified: PEP turns this into host events other modules follow.
   */
  itemsChanged?(change: ItemsChange): void;
  /** The clock (milliseconds); tests and expiry read it. */
  now?(): number;
}

/**
 * What {@link PubsubPolicy.itemsChanged} is told: an item was published (`payload` is its
 * element, if it has one), or items were removed (`ids` undefined: all of them, by a purge or
 * the node's deletion).
 */
export type ItemsChange =
  | {
    kind: "published";
    node: string;
    id: string;
    payload: Element | undefined;
    /** The full JID that published it. */
    publisher: string;
  }
  | { kind: "removed"; node: string; ids: string[] | undefined };

/** A subscription as the protocol reports it. */
export interface SubscriptionInfo {
  node: string;
  jid: string;
  subid: string;
  state: SubscriptionState;
  /** Options the subscriber set (§6.3); absent means the defaults. */
  options?: SubscriptionOptions;
}

/** A published item as returned by {@link PubsubService.items}. */
export interface ItemInfo {
  id: string;
  publisher: string;
  /** The payload element, or undefined for a notification-only item. */
  payload: Element | undefined;
  publishedMs: number;
}

/** A page of items as returned by {@link PubsubService.itemsPage}. */
export interface ItemsPage {
  items: ItemInfo[];
  /** Items in the whole node. */
  count: number;
  /** Position of the first item of the page in the node. */
  firstIndex: number | undefined;
}

/** Options for {@link PubsubService.items}. */
export interface ItemsRequest {
  /** Only these item ids (§6.5.8). */
  ids?: string[];
  /** The most recent `max` items (§6.5.7). */
  max?: number;
}

/** What a publish carries (§7.1). */
export interface PublishRequest {
  /** The item id; generated when absent. */
  id?: string;
  /** The `<item/>`'s child elements (exactly one payload is allowed). */
  payload: Element[];
  /** Whether an `<item/>` was present at all. */
  hasItem: boolean;
  /** Submitted publish-options fields (§7.1.5), if any. */
  options?: Map<string, string[]>;
}

/** Longest node name or item id accepted (they are keys in every row and notification). */
const MAX_NAME_LENGTH = 1024;

const PUBLISHING: ReadonlySet<string> = new Set(["owner", "publisher", "publish-only"]);
const AFFILIATIONS: ReadonlySet<string> = new Set([
  "owner",
  "publisher",
  "publish-only",
  "member",
  "outcast",
  "none",
]);

function nodeRequired(node: string | undefined): string {
  if (node === undefined || node === "") throw new PubsubError("bad-request", "nodeid-required");
  return node;
}

/** A stored publisher is a full JID; subscribers see only the bare one (no resource leaks). */
function bareOf(jid: string): string {
  return jid.split("/")[0];
}

function payloadText(payload: Element | undefined): string {
  return payload === undefined ? "" : serialize(payload, "");
}

/**
 * The publish-subscribe logic of one service address.
 *
 * @example
 * ```ts
 * const service = new PubsubService("pubsub.example.org", store, policy);
 * const node = service.create(alice, "news");
 * service.publish(alice, node, { payload: [entry], hasItem: true });
 * ```
 */
export class PubsubService {
  /** The service's JID (the `from` of its notifications). */
  readonly jid: string;
  #store: PubsubStore;
  #policy: PubsubPolicy;
  #counter = 0;
  #operating = false;

  constructor(jid: string, store: PubsubStore, policy: PubsubPolicy) {
    this.jid = jid;
    this.#store = store;
    this.#policy = policy;
  }

  /** The limits config values are checked against. */
  get limits(): ConfigLimits {
    return {
      maxItemsPerNode: this.#policy.maxItemsPerNode,
      maxItemBytes: this.#policy.maxItemBytes,
    };
  }

  #now(): number {
    return this.#policy.now?.() ?? Date.now();
  }

  #node(name: string | undefined): StoredNode {
    const node = this.#store.node(this.jid, nodeRequired(name));
    if (!node) throw new PubsubError("item-not-found");
    return node;
  }

  /**
   * Runs `fn` as the service's operator (the admin shell): the actor `fn` gets is the service's
   * own address, owner of every node and allowed to create nodes whatever the policy says. The
   * engine is synchronous, so these rights end when `fn` returns.
   */
  asOperator<T>(fn: (actor: JID) => T): T {
    const outer = this.#operating;
    this.#operating = true;
    try {
      return fn(parseJid(this.jid));
    } finally {
      this.#operating = outer;
    }
  }

  #isOperator(bare: string): boolean {
    return this.#operating && bare === this.jid;
  }

  /** A JID's affiliation with a node; service admins are owners of every node. */
  affiliation(node: string, bare: string): Affiliation | "none" {
    if (this.#isOperator(bare) || this.#policy.isServiceAdmin(bare)) return "owner";
    const known = this.#affiliationSnapshot;
    if (known?.node === node) return known.all.get(bare) ?? "none";
    return this.#store.affiliation(this.jid, node, bare);
  }

  /** A node's affiliations read once for one broadcast (see `#broadcast`). */
  #affiliationSnapshot: { node: string; all: Map<string, Affiliation> } | undefined;

  #requireOwner(node: StoredNode, actor: JID): void {
    if (this.affiliation(node.node, actor.bareString()) !== "owner") {
      throw new PubsubError("forbidden");
    }
  }

  /**
   * Why `bare` may not see a node's items, as the error to send, or undefined when it may
   * (§6.1.3, §6.5.9). With `subscribing`, the authorize model lets the request through (it
   * becomes a pending subscription).
   */
  accessError(node: StoredNode, bare: string, subscribing = false): PubsubError | undefined {
    const affiliation = this.affiliation(node.node, bare);
    // §4.1: outcasts, and publish-only entities, neither subscribe nor retrieve items.
    if (affiliation === "outcast" || affiliation === "publish-only") {
      return new PubsubError("forbidden");
    }
    if (affiliation === "owner" || affiliation === "publisher" || affiliation === "member") {
      return undefined;
    }
    switch (node.config.accessModel) {
      case "open":
        return undefined;
      case "presence":
        return this.owners(node.node).some((owner) =>
            this.#policy.hasPresenceSubscription(owner, bare)
          )
          ? undefined
          : new PubsubError("not-authorized", "presence-subscription-required");
      case "roster": {
        const allowed = node.config.rosterGroupsAllowed;
        const inGroup = this.owners(node.node).some((owner) => {
          const groups = this.#policy.rosterGroups(owner, bare);
          if (groups === undefined) return false;
          return allowed.length === 0 || groups.some((g) => allowed.includes(g));
        });
        return inGroup ? undefined : new PubsubError("not-authorized", "not-in-roster-group");
      }
      case "whitelist":
        return new PubsubError("not-allowed", "closed-node");
      case "authorize": {
        if (subscribing) return undefined;
        const subscribed = this.#store.subscriptionsOf(this.jid, bare)
          .some((s) => s.node === node.node && s.state === "subscribed");
        return subscribed ? undefined : new PubsubError("not-authorized", "not-subscribed");
      }
    }
  }

  /** Whether `bare` may publish to the node (§7.1.3.1). */
  #mayPublish(node: StoredNode, bare: string): boolean {
    const affiliation = this.affiliation(node.node, bare);
    if (affiliation === "outcast") return false;
    if (PUBLISHING.has(affiliation)) return true;
    if (node.config.publishModel === "open") return true;
    if (node.config.publishModel === "subscribers") {
      return this.#store.subscriptionsOf(this.jid, bare)
        .some((s) => s.node === node.node && s.state === "subscribed");
    }
    return false;
  }

  /** Every node of the service (for disco#items). */
  nodes(): StoredNode[] {
    return this.#store.nodes(this.jid);
  }

  /** One node, or undefined. */
  findNode(name: string): StoredNode | undefined {
    return this.#store.node(this.jid, name);
  }

  /** The bare JIDs of a node's owners (public, as disco#info meta-data shows them). */
  owners(name: string): string[] {
    const known = this.#affiliationSnapshot;
    const all = known?.node === name ? known.all : this.#store.affiliations(this.jid, name);
    return [...all].filter(([, affiliation]) => affiliation === "owner").map(([jid]) => jid);
  }

  /**
   * Creates a node (§8.1): named, or instant with a generated name when `name` is undefined;
   * `fields` is a submitted configuration form. Returns the node's name.
   */
  create(actor: JID, name: string | undefined, fields?: Map<string, string[]>): string {
    if (!this.#isOperator(actor.bareString()) && !this.#policy.mayCreate(actor)) {
      throw new PubsubError("forbidden");
    }
    const node = name ?? crypto.randomUUID();
    if (node === "") throw new PubsubError("not-acceptable", "nodeid-required");
    if (node.length > MAX_NAME_LENGTH) {
      throw new PubsubError("not-acceptable", undefined, {
        text: `A node name may have at most ${MAX_NAME_LENGTH} characters`,
      });
    }
    if (this.#store.node(this.jid, node)) throw new PubsubError("conflict");
    if (this.#store.nodeCount(this.jid) >= this.#policy.maxNodes) {
      throw new PubsubError("not-allowed", "max-nodes-exceeded", {
        text: `A service holds at most ${this.#policy.maxNodes} nodes`,
      });
    }
    let config = this.#policy.defaultConfig();
    if (fields) config = applyConfigFields(config, fields, this.limits);
    this.#store.createNode(this.jid, {
      node,
      config,
      owner: actor.bareString(),
      createdMs: this.#now(),
    });
    return node;
  }

  /** The default configuration form (§8.3). */
  defaultConfigForm(): Element {
    return configForm(this.#policy.defaultConfig(), this.limits);
  }

  /** The configuration form of a node, for its owner (§8.2). */
  configForm(actor: JID, name: string | undefined): Element {
    const node = this.#node(name);
    this.#requireOwner(node, actor);
    const form = configForm(node.config, this.limits);
    return form;
  }

  /** Applies a submitted configuration form (§8.2.4); notifies when `notify_config` is on. */
  configure(actor: JID, name: string | undefined, fields: Map<string, string[]>): void {
    const node = this.#node(name);
    this.#requireOwner(node, actor);
    const config = applyConfigFields(node.config, fields, this.limits);
    this.#store.transaction(() => {
      this.#store.setConfig(this.jid, node.node, config);
      const keep = this.#keep(config);
      this.#store.trimItems(this.jid, node.node, keep);
    });
    const updated = { ...node, config };
    if (config.notifyConfig) {
      this.#broadcast(updated, () => {
        const event = new Element("configuration", { xmlns: NS_PUBSUB_EVENT, node: node.node });
        if (config.deliverPayloads) event.append(configForm(config, this.limits));
        return event;
      });
    }
  }

  /** Deletes a node (§8.4), notifying subscribers first, with an optional redirect URI. */
  delete(actor: JID, name: string | undefined, redirect?: string): void {
    const node = this.#node(name);
    this.#requireOwner(node, actor);
    if (node.config.notifyDelete) {
      this.#broadcast(node, () => {
        const event = new Element("delete", { xmlns: NS_PUBSUB_EVENT, node: node.node });
        if (redirect !== undefined) event.c("redirect", { uri: redirect });
        return event;
      });
    }
    this.#store.deleteNode(this.jid, node.node);
    this.#policy.itemsChanged?.({ kind: "removed", node: node.node, ids: undefined });
  }

  /** Removes every item of a node (§8.5) and notifies subscribers. */
  purge(actor: JID, name: string | undefined): void {
    const node = this.#node(name);
    this.#requireOwner(node, actor);
    this.#store.purge(this.jid, node.node);
    if (node.config.notifyRetract) {
      this.#broadcast(
        node,
        () => new Element("purge", { xmlns: NS_PUBSUB_EVENT, node: node.node }),
      );
    }
    this.#policy.itemsChanged?.({ kind: "removed", node: node.node, ids: undefined });
  }

  #keep(config: NodeConfig): number {
    if (!config.persistItems) return 1;
    const cap = this.#policy.maxItemsPerNode;
    return config.maxItems === "max" ? cap : Math.min(config.maxItems, cap);
  }

  /**
   * Publishes an item (§7.1); an existing id replaces that item. With publish-options, an
   * existing node must match them, and a node created by this publish takes them as its
   * configuration. Returns the node and the item id.
   */
  publish(actor: JID, name: string | undefined, request: PublishRequest): {
    node: string;
    id: string;
  } {
    const nodeName = nodeRequired(name);
    let node = this.#store.node(this.jid, nodeName);
    if (node === undefined) {
      if (!this.#policy.autoCreateOnPublish) throw new PubsubError("item-not-found");
      this.create(actor, nodeName, request.options);
      node = this.#store.node(this.jid, nodeName)!;
    } else if (request.options) {
      checkPreconditions(node.config, request.options, this.limits);
    }
    const bare = actor.bareString();
    if (!this.#mayPublish(node, bare)) throw new PubsubError("forbidden");
    const config = node.config;
    const needsItem = config.persistItems || config.deliverPayloads;
    if (!request.hasItem && needsItem) throw new PubsubError("bad-request", "item-required");
    if (request.payload.length > 1) throw new PubsubError("bad-request", "invalid-payload");
    const payload = request.payload[0];
    if (payload === undefined && needsItem) {
      throw new PubsubError("bad-request", "payload-required");
    }
    if (payload !== undefined && !needsItem) {
      throw new PubsubError("bad-request", "item-forbidden");
    }
    if (payload !== undefined && config.type !== "" && payload.ns !== config.type) {
      throw new PubsubError("bad-request", "invalid-payload", {
        text: `The node takes payloads in '${config.type}', found '${payload.ns}'`,
      });
    }
    const text = payloadText(payload);
    const limit = Math.min(config.maxPayloadSize, this.#policy.maxItemBytes);
    if (new TextEncoder().encode(text).length > limit) {
      throw new PubsubError("not-acceptable", "payload-too-big", {
        text: `The item is larger than ${limit} bytes`,
      });
    }
    if (request.id !== undefined && request.id.length > MAX_NAME_LENGTH) {
      throw new PubsubError("bad-request", undefined, {
        text: `An item id may have at most ${MAX_NAME_LENGTH} characters`,
      });
    }
    const id = request.id || `${this.#now().toString(36)}-${crypto.randomUUID()}`;
    const now = this.#now();
    const stored: StoredItem = {
      itemId: id,
      publisher: actor.toString(),
      payload: text,
      publishedMs: now,
    };
    this.#store.transaction(() => {
      if (config.itemExpire > 0) {
        this.#store.expireItems(this.jid, node.node, now - config.itemExpire * 1000);
      }
      this.#store.putItem(this.jid, node.node, stored, this.#keep(config));
    });
    this.#broadcast(node, () => this.#itemsEvent(node, [stored]), actor.toString());
    this.#policy.itemsChanged?.({
      kind: "published",
      node: node.node,
      id,
      payload,
      publisher: actor.toString(),
    });
    return { node: node.node, id };
  }

  #itemsEvent(node: StoredNode, items: StoredItem[]): Element {
    const event = new Element("items", { xmlns: NS_PUBSUB_EVENT, node: node.node });
    for (const item of items) {
      const el = event.c("item", { id: item.itemId, publisher: bareOf(item.publisher) });
      if (node.config.deliverPayloads && item.payload !== "") el.append(parseElement(item.payload));
    }
    return event;
  }

  /** Deletes an item (§7.2); notifies subscribers when asked to or configured to. */
  retract(actor: JID, name: string | undefined, id: string | undefined, notify: boolean): void {
    const node = this.#node(name);
    if (id === undefined || id === "") throw new PubsubError("bad-request", "item-required");
    const bare = actor.bareString();
    const item = this.#store.item(this.jid, node.node, id);
    const affiliation = this.affiliation(node.node, bare);
    const ownItem = item !== undefined && bareOf(item.publisher) === bare;
    // Owners and publishers delete any item; anyone else only what it published (§4.1).
    const mayDeleteAny = affiliation === "owner" || affiliation === "publisher";
    if (!mayDeleteAny && !(ownItem && affiliation !== "outcast")) {
      throw new PubsubError("forbidden");
    }
    if (!item || !this.#store.deleteItem(this.jid, node.node, id)) {
      throw new PubsubError("item-not-found");
    }
    if (notify || node.config.notifyRetract) {
      this.#broadcast(node, () => {
        const event = new Element("items", { xmlns: NS_PUBSUB_EVENT, node: node.node });
        event.c("retract", { id });
        return event;
      });
    }
    this.#policy.itemsChanged?.({ kind: "removed", node: node.node, ids: [id] });
  }

  /** Items of a node the actor may see (§6.5), oldest first. */
  items(actor: JID, name: string | undefined, request: ItemsRequest = {}): ItemInfo[] {
    const node = this.#node(name);
    const denied = this.accessError(node, actor.bareString());
    if (denied) throw denied;
    const config = node.config;
    return this.#store.items(this.jid, node.node, {
      ids: request.ids,
      max: request.max,
      expiredBeforeMs: config.itemExpire > 0 ? this.#now() - config.itemExpire * 1000 : undefined,
    }).map((item) => this.#info(item));
  }

  /**
   * A page of a node's items the actor may see (XEP-0059 paging, §6.5.4), oldest first; an
   * `after` or `before` id that is not there is item-not-found (XEP-0059 §2.6).
   */
  itemsPage(actor: JID, name: string | undefined, page: ItemPageQuery): ItemsPage {
    const node = this.#node(name);
    const denied = this.accessError(node, actor.bareString());
    if (denied) throw denied;
    const expire = node.config.itemExpire;
    const found = this.#store.itemsPage(this.jid, node.node, {
      ...page,
      max: Math.min(page.max, this.#policy.maxItemsPerNode),
      expiredBeforeMs: expire > 0 ? this.#now() - expire * 1000 : undefined,
    });
    if (!found) {
      throw new PubsubError("item-not-found", undefined, {
        text: "The item named in the result set request is not there",
      });
    }
    return {
      items: found.items.map((item) => this.#info(item)),
      count: found.count,
      firstIndex: found.firstIndex,
    };
  }

  #info(item: StoredItem): ItemInfo {
    return {
      id: item.itemId,
      publisher: bareOf(item.publisher),
      payload: item.payload === "" ? undefined : parseElement(item.payload),
      publishedMs: item.publishedMs,
    };
  }

  /**
   * Subscribes `jid` (the actor's bare or full JID) to a node (§6.1). Under the authorize
   * model the subscription is pending and the owners get an approval form (§8.6). A new
   * subscription gets the last item when the node says `on_sub` or `on_sub_and_presence`.
   * Submitted `options` (subscribe and configure, §6.3.7) are checked before anything is
   * stored, and replace those of an existing subscription.
   */
  subscribe(
    actor: JID,
    name: string | undefined,
    jid: JID | undefined,
    options?: Map<string, string[]>,
  ): SubscriptionInfo {
    const nodeName = nodeRequired(name);
    if (jid === undefined) throw new PubsubError("bad-request", "jid-required");
    if (jid.bareString() !== actor.bareString()) {
      throw new PubsubError("bad-request", "invalid-jid");
    }
    const node = this.#node(nodeName);
    const bare = jid.bareString();
    const denied = this.accessError(node, bare, true);
    if (denied) throw denied;
    const existing = this.#store.subscription(this.jid, node.node, jid.toString());
    const chosen = options === undefined
      ? existing?.options
      : applySubscriptionOptionFields(existing?.options ?? DEFAULT_SUBSCRIPTION_OPTIONS, options);
    if (existing) {
      if (options === undefined) return existing;
      const updated = { ...existing, options: chosen };
      this.#store.putSubscription(this.jid, updated, this.#now());
      return updated;
    }
    const affiliation = this.affiliation(node.node, bare);
    const pending = node.config.accessModel === "authorize" && affiliation === "none";
    const subscription: StoredSubscription = {
      node: node.node,
      jid: jid.toString(),
      subid: crypto.randomUUID(),
      state: pending ? "pending" : "subscribed",
      options: chosen,
    };
    this.#store.putSubscription(this.jid, subscription, this.#now());
    if (pending) this.#askOwners(node, subscription);
    else this.#sendLastItem(node, subscription);
    return subscription;
  }

  /**
   * The subscription whose options a request reads or changes (§6.3.4 errors): the JID's own,
   * or for an owner anyone's; `subid`, when given, must be that subscription's.
   */
  #optionsTarget(
    actor: JID,
    name: string | undefined,
    jid: JID | undefined,
    subid: string | undefined,
  ): StoredSubscription {
    const node = this.#node(nodeRequired(name));
    if (jid === undefined) throw new PubsubError("bad-request", "jid-required");
    if (
      jid.bareString() !== actor.bareString() &&
      this.affiliation(node.node, actor.bareString()) !== "owner"
    ) {
      throw new PubsubError("forbidden", "invalid-jid");
    }
    const subscription = this.#store.subscription(this.jid, node.node, jid.toString());
    if (!subscription) throw new PubsubError("unexpected-request", "not-subscribed");
    if (subid !== undefined && subid !== subscription.subid) {
      throw new PubsubError("not-acceptable", "invalid-subid");
    }
    return subscription;
  }

  /** A subscription's options (§6.3.2), the defaults when it set none. */
  subscriptionOptions(
    actor: JID,
    name: string | undefined,
    jid: JID | undefined,
    subid?: string,
  ): SubscriptionOptions {
    return this.#optionsTarget(actor, name, jid, subid).options ?? DEFAULT_SUBSCRIPTION_OPTIONS;
  }

  /** Applies a submitted options form to a subscription (§6.3.5). */
  setSubscriptionOptions(
    actor: JID,
    name: string | undefined,
    jid: JID | undefined,
    subid: string | undefined,
    fields: Map<string, string[]>,
  ): void {
    const subscription = this.#optionsTarget(actor, name, jid, subid);
    const options = applySubscriptionOptionFields(
      subscription.options ?? DEFAULT_SUBSCRIPTION_OPTIONS,
      fields,
    );
    this.#store.putSubscription(this.jid, { ...subscription, options }, this.#now());
  }

  /** The options a new subscription to the service, or to one node, gets (§6.4). */
  defaultSubscriptionOptions(name?: string): SubscriptionOptions {
    if (name !== undefined) this.#node(name);
    return DEFAULT_SUBSCRIPTION_OPTIONS;
  }

  #sendLastItem(node: StoredNode, subscription: StoredSubscription): void {
    if (subscription.options?.deliver === false) return;
    const recipient = subscription.jid;
    if (node.config.sendLastPublishedItem === "never") return;
    if (!node.config.deliverNotifications) return;
    const expired = node.config.itemExpire > 0
      ? this.#now() - node.config.itemExpire * 1000
      : undefined;
    const [last] = this.#store.items(this.jid, node.node, { max: 1, expiredBeforeMs: expired });
    if (!last) return;
    this.#send(node, recipient, this.#itemsEvent(node, [last]));
  }

  /** The approval form of §8.6 sent to each owner of a node. */
  #askOwners(node: StoredNode, subscription: StoredSubscription): void {
    for (const [owner, affiliation] of this.#store.affiliations(this.jid, node.node)) {
      if (affiliation !== "owner") continue;
      const message = new Element("message", {
        from: this.jid,
        to: owner,
        id: this.#nextId(),
      });
      const form = message.c("x", { xmlns: NS_DATA, type: "form" });
      form.c("title").t("Pubsub subscription request");
      form.c("field", { var: "FORM_TYPE", type: "hidden" }).c("value").t(
        SUBSCRIBE_AUTHORIZATION_FORM,
      );
      form.c("field", { var: "pubsub#node", type: "text-single", label: "Node" })
        .c("value").t(node.node);
      form.c("field", { var: "pubsub#subscriber_jid", type: "jid-single", label: "Subscriber" })
        .c("value").t(subscription.jid);
      form.c("field", { var: "pubsub#subid", type: "hidden" }).c("value").t(subscription.subid);
      form.c("field", { var: "pubsub#allow", type: "boolean", label: "Allow this subscription?" })
        .c("value").t("false");
      this.#policy.notify(message, { node: node.node, recipient: owner });
    }
  }

  /**
   * An owner's answer to an approval form (§8.6): `allow` makes the pending subscription of
   * `subscriber` subscribed, otherwise it is removed.
   */
  answerAuthorization(actor: JID, name: string, subscriber: string, allow: boolean): void {
    const node = this.#node(name);
    this.#requireOwner(node, actor);
    const subscription = this.#store.subscription(this.jid, node.node, subscriber);
    if (!subscription || subscription.state !== "pending") {
      throw new PubsubError("unexpected-request", "not-subscribed");
    }
    this.#setSubscriptionState(node, subscription, allow ? "subscribed" : "none");
  }

  #setSubscriptionState(
    node: StoredNode,
    subscription: StoredSubscription,
    state: SubscriptionState | "none",
  ): void {
    if (state === "none") {
      this.#store.deleteSubscription(this.jid, node.node, subscription.jid);
    } else {
      this.#store.putSubscription(this.jid, { ...subscription, state }, this.#now());
    }
    // §8.8.4 / §8.6: the subscriber learns the outcome.
    const event = new Element("subscription", {
      xmlns: NS_PUBSUB_EVENT,
      node: node.node,
      jid: subscription.jid,
      subscription: state,
      subid: state === "none" ? undefined : subscription.subid,
    });
    this.#send(node, subscription.jid, event);
    if (state === "subscribed" && subscription.state !== "subscribed") {
      this.#sendLastItem(node, subscription);
    }
  }

  /** Ends a subscription (§6.2); an owner may end anyone's. */
  unsubscribe(actor: JID, name: string | undefined, jid: JID | undefined, subid?: string): void {
    const nodeName = nodeRequired(name);
    if (jid === undefined) throw new PubsubError("bad-request", "jid-required");
    const node = this.#node(nodeName);
    if (
      jid.bareString() !== actor.bareString() &&
      this.affiliation(node.node, actor.bareString()) !== "owner"
    ) {
      throw new PubsubError("forbidden");
    }
    const subscription = this.#store.subscription(this.jid, node.node, jid.toString());
    if (!subscription) throw new PubsubError("unexpected-request", "not-subscribed");
    if (subid !== undefined && subid !== subscription.subid) {
      throw new PubsubError("not-acceptable", "invalid-subid");
    }
    this.#store.deleteSubscription(this.jid, node.node, subscription.jid);
  }

  /** The actor's own subscriptions (§5.6), on one node or all. */
  subscriptionsOf(actor: JID, name?: string): SubscriptionInfo[] {
    if (name !== undefined) this.#node(name);
    return this.#store.subscriptionsOf(this.jid, actor.bareString())
      .filter((s) => name === undefined || s.node === name);
  }

  /** The actor's own affiliations (§5.7), on one node or all. */
  affiliationsOf(actor: JID, name?: string): [string, Affiliation][] {
    if (name !== undefined) this.#node(name);
    return [...this.#store.affiliationsOf(this.jid, actor.bareString())]
      .filter(([node]) => name === undefined || node === name);
  }

  /** Every subscription to a node, for its owner (§8.8.1). */
  nodeSubscriptions(actor: JID, name: string | undefined): SubscriptionInfo[] {
    const node = this.#node(name);
    this.#requireOwner(node, actor);
    return this.#store.subscriptions(this.jid, node.node);
  }

  /**
   * An owner changes subscriptions (§8.8.2): each entry's JID gets the state given ("none"
   * removes it). All entries are checked before any is applied.
   */
  setNodeSubscriptions(
    actor: JID,
    name: string | undefined,
    changes: { jid: JID; state: string }[],
  ): void {
    const node = this.#node(name);
    this.#requireOwner(node, actor);
    for (const change of changes) {
      if (!["none", "pending", "subscribed"].includes(change.state)) {
        throw new PubsubError("bad-request", undefined, {
          text: `Unknown subscription state '${change.state}'`,
        });
      }
    }
    this.#store.transaction(() => {
      for (const { jid, state } of changes) {
        const existing = this.#store.subscription(this.jid, node.node, jid.toString());
        const subscription = existing ??
          { node: node.node, jid: jid.toString(), subid: crypto.randomUUID(), state: "pending" };
        if (!existing && state === "none") continue;
        this.#setSubscriptionState(node, subscription, state as SubscriptionState | "none");
      }
    });
  }

  /** Every affiliation with a node, for its owner (§8.9.1). */
  nodeAffiliations(actor: JID, name: string | undefined): [string, Affiliation][] {
    const node = this.#node(name);
    this.#requireOwner(node, actor);
    return [...this.#store.affiliations(this.jid, node.node)];
  }

  /**
   * An owner changes affiliations (§8.9.2); the last owner cannot give up ownership. An
   * outcast loses its subscriptions; each changed JID is told its new affiliation.
   */
  setNodeAffiliations(
    actor: JID,
    name: string | undefined,
    changes: { jid: JID; affiliation: string }[],
  ): void {
    const node = this.#node(name);
    this.#requireOwner(node, actor);
    const after = this.#store.affiliations(this.jid, node.node);
    for (const { jid, affiliation } of changes) {
      if (!AFFILIATIONS.has(affiliation)) {
        throw new PubsubError("bad-request", undefined, {
          text: `Unknown affiliation '${affiliation}'`,
        });
      }
      if (affiliation === "none") after.delete(jid.bareString());
      else after.set(jid.bareString(), affiliation as Affiliation);
    }
    if (![...after.values()].includes("owner")) {
      throw new PubsubError("not-acceptable", undefined, {
        text: "A node must keep at least one owner",
      });
    }
    this.#store.transaction(() => {
      for (const { jid, affiliation } of changes) {
        const bare = jid.bareString();
        this.#store.setAffiliation(
          this.jid,
          node.node,
          bare,
          affiliation as Affiliation | "none",
        );
        if (affiliation === "outcast") {
          for (const s of this.#store.subscriptionsOf(this.jid, bare)) {
            if (s.node === node.node) this.#store.deleteSubscription(this.jid, node.node, s.jid);
          }
        }
      }
    });
    // §8.9.4: the entity whose affiliation changed is told.
    for (const { jid, affiliation } of changes) {
      const message = new Element("message", {
        from: this.jid,
        to: jid.bareString(),
        id: this.#nextId(),
      });
      message.c("pubsub", { xmlns: "http://jabber.org/protocol/pubsub" })
        .c("affiliations", { node: node.node })
        .c("affiliation", { jid: jid.bareString(), affiliation });
      this.#policy.notify(message, { node: node.node, recipient: jid.bareString() });
    }
  }

  #nextId(): string {
    return `pubsub-${Date.now().toString(36)}-${++this.#counter}`;
  }

  #eventMessage(node: StoredNode, recipient: string, payload: Element): Element {
    const message = new Element("message", {
      from: this.jid,
      to: recipient,
      type: node.config.notificationType,
      id: this.#nextId(),
    });
    message.c("event", { xmlns: NS_PUBSUB_EVENT }).append(payload);
    return message;
  }

  #send(node: StoredNode, recipient: string, payload: Element, publisher?: string): void {
    const message = this.#eventMessage(node, recipient, payload);
    this.#policy.notify(message, { node: node.node, recipient, publisher });
  }

  /**
   * Sends the last item of a node to a newly available resource (XEP-0163 §4.3.4, the
   * presence half of `on_sub_and_presence`), with the time it was published (XEP-0203), when
   * the node says so and the recipient may see it. Returns whether an item was sent.
   */
  sendLastPublished(name: string, recipient: JID): boolean {
    const node = this.#store.node(this.jid, name);
    if (!node || node.config.sendLastPublishedItem !== "on_sub_and_presence") return false;
    if (!node.config.deliverNotifications) return false;
    if (this.accessError(node, recipient.bareString())) return false;
    const expired = node.config.itemExpire > 0
      ? this.#now() - node.config.itemExpire * 1000
      : undefined;
    const [last] = this.#store.items(this.jid, node.node, { max: 1, expiredBeforeMs: expired });
    if (!last) return false;
    const message = this.#eventMessage(node, recipient.toString(), this.#itemsEvent(node, [last]));
    message.c("delay", {
      xmlns: "urn:xmpp:delay",
      from: this.jid,
      stamp: new Date(last.publishedMs).toISOString(),
    });
    this.#policy.notify(message, { node: node.node, recipient: recipient.toString() });
    return true;
  }

  /**
   * Sends an event to every subscriber whose access still holds (§7.1.2.1: access is checked
   * at delivery, so a subscriber who lost its roster group gets nothing). The payload is built
   * once, when the first recipient is found, and each message gets its own copy.
   */
  #broadcast(node: StoredNode, build: () => Element, publisher?: string): void {
    if (!node.config.deliverNotifications) return;
    // Access is checked per recipient: read the node's affiliations once, not per recipient,
    // and let the policy keep its own lookups (rosters) for the broadcast.
    this.#affiliationSnapshot = {
      node: node.node,
      all: new Map(this.#store.affiliations(this.jid, node.node)),
    };
    this.#policy.broadcastStarts?.();
    try {
      this.#deliver(node, build, publisher);
    } finally {
      this.#affiliationSnapshot = undefined;
      this.#policy.broadcastEnds?.();
    }
  }

  #deliver(node: StoredNode, build: () => Element, publisher?: string): void {
    let payload: Element | undefined;
    const sent = new Set<string>();
    const access = new Map<string, boolean>();
    const mayReceive = (bare: string) => {
      let allowed = access.get(bare);
      if (allowed === undefined) access.set(bare, allowed = !this.accessError(node, bare));
      return allowed;
    };
    const send = (recipient: string) => {
      if (sent.has(recipient)) return;
      sent.add(recipient);
      payload ??= build();
      this.#send(node, recipient, payload.clone(), publisher);
    };
    // XEP-0163 §4.3.2: resources known to want the node are served one by one; a bare JID
    // subscription with such resources needs no copy of its own.
    const servedBare = new Set<string>();
    for (const recipient of this.#policy.implicitRecipients?.(node.node) ?? []) {
      const bare = bareOf(recipient);
      if (!mayReceive(bare)) continue;
      servedBare.add(bare);
      send(recipient);
    }
    for (const subscription of this.#store.subscriptions(this.jid, node.node)) {
      if (subscription.state !== "subscribed") continue;
      if (subscription.options?.deliver === false) continue;
      const bare = bareOf(subscription.jid);
      if (subscription.jid === bare && servedBare.has(bare)) continue;
      // A subscription an owner approved (authorize) holds by itself.
      if (node.config.accessModel !== "authorize" && !mayReceive(bare)) continue;
      send(subscription.jid);
    }
  }
}
