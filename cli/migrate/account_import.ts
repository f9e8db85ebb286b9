// Writes one account's data, read from another server's export, into Lilt's stores: credentials,
// roster, vCard, private XML, offline messages, blocklist, PEP nodes and the message archive.
// Every importer (XEP-0227 files, Prosody's data directories) builds plain AccountData objects
// and hands them here, so the layout of Lilt's stores is known in one place.

import { AccountStore, type ScramCredentials, type ScramHash } from "../../core/auth/accounts.ts";
import { preparePassword } from "../../core/auth/saslprep.ts";
import { deriveCredentials, SCRAM_HASHES } from "../../core/auth/scram.ts";
import type { Database } from "../../core/storage/database.ts";
import { Storage } from "../../core/storage/stores.ts";
import type { Element } from "../../core/xml/element.ts";
import { serialize } from "../../core/xml/serializer.ts";
import { type NodeConfig, pepNodeConfig } from "../../mod/pubsub/config.ts";
import { options as pepOptions } from "../../mod/pep.ts";
import {
  type Affiliation,
  PUBSUB_MIGRATIONS,
  PubsubStore,
  type SubscriptionState,
} from "../../mod/pubsub/storage.ts";
import type { RosterItem, Subscription } from "../../mod/roster_store.ts";

/** XEP-0359 unique and stable stanza IDs. */
const NS_SID = "urn:xmpp:sid:0";

/** One roster item as another server exported it (RFC 6121 §2.1.2). */
export interface RosterEntry {
  /** The contact's bare JID, already prepared. */
  jid: string;
  name?: string;
  subscription: Subscription;
  /** The user's own subscription request waits for an answer ("Pending Out"). */
  ask?: boolean;
  /** The user pre-approved the contact's request (RFC 6121 §3.4). */
  approved?: boolean;
  groups: string[];
}

/** A subscription request to the user not answered yet ("Pending In"). */
export interface PendingSubscription {
  /** The requester's bare JID, already prepared. */
  from: string;
  /** The request stanza, delivered again when the user comes online (optional). */
  stanza?: Element;
}

/** One PEP item. */
export interface PepItemData {
  id: string;
  /** The payload element; undefined for an item without payload. */
  payload?: Element;
  /** Who published it (default: the account's bare JID). */
  publisher?: string;
  /** When (ms since the epoch; default: the import). */
  publishedMs?: number;
}

/** One of the account's PEP nodes. */
export interface PepNodeData {
  node: string;
  /** The node's configuration, complete (see `pepDefaultConfig` to start from PEP's defaults). */
  config: NodeConfig;
  /** Affiliations besides the owner's: bare JID -> affiliation. */
  affiliations?: Map<string, Affiliation>;
  /** Explicit subscriptions to the node. */
  subscriptions?: { jid: string; state: SubscriptionState; subid?: string }[];
  /** Items, oldest first. */
  items: PepItemData[];
}

/** One archived message (XEP-0313) of the account. */
export interface ArchivedMessage {
  /**
   * Its id in the old archive (the `<result id=.../>`), when known: a stored message's
   * XEP-0359 `<stanza-id/>` naming it is rewritten to the id the message gets here.
   */
  id?: string;
  /** When it was archived (ms since the epoch). */
  when: number;
  /** The other party (the contact's JID). */
  with: string;
  /** The message stanza as the account sent or received it. */
  message: Element;
}

/**
 * Everything one account brings along, as plain data. Any field but `username` may be left
 * out; absent data is simply not written.
 */
export interface AccountData {
  /** The JID localpart, already prepared (`prepLocal`). */
  username: string;
  /** SCRAM credentials carried over (the password itself stays unknown). */
  scram?: Partial<Record<ScramHash, ScramCredentials>>;
  /** A plaintext password, used only when `scram` has nothing for Lilt's hashes. */
  password?: string;
  roster?: RosterEntry[];
  pendingIn?: PendingSubscription[];
  /** The `<vCard xmlns='vcard-temp'/>` element. */
  vcard?: Element;
  /** Private XML fragments (XEP-0049), one element each. */
  privateXml?: Element[];
  /** Messages stored while the user was offline, oldest first, with their delay stamps. */
  offlineMessages?: Element[];
  /** Blocked JIDs (XEP-0191). */
  blocklist?: string[];
  pep?: PepNodeData[];
  archive?: ArchivedMessage[];
}

/** What happened to one account. */
export type ImportOutcome =
  | { status: "imported"; replaced: boolean; warnings: string[] }
  | { status: "skipped"; reason: string };

/** Options for {@link importAccount} and {@link importAccounts}. */
export interface ImportAccountOptions {
  /**
   * Replace an account that exists already (its stored data is deleted first). Without it
   * such an account is skipped and keeps everything it has.
   */
  overwrite?: boolean;
}

/** Options for {@link prepareAccount}. */
export interface PrepareAccountOptions {
  /** PBKDF2 iterations for credentials derived from a plaintext password. */
  iterations: number;
}

/** An account ready to be written: its credentials derived when it came with a password. */
export interface PreparedAccount extends AccountData {
  /** The credentials to store (possibly empty: the account cannot log in until a password is set). */
  credentials: Partial<Record<ScramHash, ScramCredentials>>;
}

/** One account of a host, for {@link importAccounts}. */
export interface HostAccount {
  host: string;
  account: AccountData;
}

/** What {@link importAccounts} did, account by account, in the order given. */
export interface ImportSummary {
  results: { host: string; username: string; outcome: ImportOutcome }[];
}

/**
 * The configuration a PEP node gets in Lilt when its owner does not say otherwise (mod/pep.ts's
 * defaults with its default item size), for importers whose source gives only some options.
 */
export function pepDefaultConfig(): NodeConfig {
  return pepNodeConfig(pepOptions.pep_max_item_size.default as number);
}

/**
 * Derives SCRAM credentials from `account.password` for the hashes `account.scram` lacks
 * (asynchronous: PBKDF2), so that {@link importAccount} can then run inside one transaction.
 * Throws `PasswordPrepError` for a password PRECIS refuses.
 */
export async function prepareAccount(
  account: AccountData,
  options: PrepareAccountOptions,
): Promise<PreparedAccount> {
  const credentials: Partial<Record<ScramHash, ScramCredentials>> = { ...account.scram };
  if (account.password !== undefined && account.password !== "") {
    const prepared = preparePassword(account.password);
    for (const hash of SCRAM_HASHES) {
      if (credentials[hash] !== undefined) continue;
      credentials[hash] = await deriveCredentials(prepared, {
        hash,
        iterations: options.iterations,
      });
    }
  }
  return { ...account, credentials };
}

/** The key-value shape mod/roster_store.ts keeps the roster version in. */
interface RosterVersion {
  epoch: string;
  counter: number;
}

function randomEpoch(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Whether the pubsub tables exist (the pep or pubsub module has run on this store once). */
function hasPubsubTables(database: Database): boolean {
  return database.hasTable("pubsub_nodes");
}

/**
 * Creates the pubsub tables when they are missing, as the pep module would on its first
 * load. Call it outside any transaction, before importing accounts with PEP nodes.
 */
export function ensurePubsubSchema(database: Database): void {
  database.migrateModule("pubsub", PUBSUB_MIGRATIONS);
}

/**
 * Writes one prepared account of `host` into the stores of `database`. Synchronous, so the
 * caller can put a whole import in one `database.transaction` (and must, for all-or-nothing).
 * An existing account is skipped unless `options.overwrite`; a name held by the tombstone of a
 * purged account is always skipped. Accounts with PEP nodes need {@link ensurePubsubSchema}
 * first.
 *
 * @example
 * ```ts
 * const prepared = await prepareAccount({ username: "juliet", password: "r0m30" },
 *   { iterations: 10000 });
 * database.transaction(() => importAccount(database, "example.com", prepared));
 * ```
 */
export function importAccount(
  database: Database,
  host: string,
  account: PreparedAccount,
  options: ImportAccountOptions = {},
): ImportOutcome {
  const accounts = new AccountStore(database);
  const storage = new Storage(database);
  const user = account.username;
  const bare = `${user}@${host}`;
  const warnings: string[] = [];
  if (accounts.tombstoneUntil(host, user) !== undefined) {
    return {
      status: "skipped",
      reason: `the name ${bare} belongs to a recently purged account (tombstone_period)`,
    };
  }
  const exists = accounts.exists(host, user);
  if (exists && !options.overwrite) {
    return { status: "skipped", reason: `${bare} exists already (use --overwrite to replace it)` };
  }
  return database.transaction((): ImportOutcome => {
    if (exists) {
      storage.deleteUser(host, user);
      if (hasPubsubTables(database)) new PubsubStore(database).deleteService(bare);
    }
    accounts.setCredentials(host, user, account.credentials);
    if (Object.keys(account.credentials).length === 0) {
      warnings.push(
        `${bare} has no password or SCRAM-SHA-1/SCRAM-SHA-256 credentials: it cannot log in ` +
          "until 'lilt user passwd' sets one",
      );
    }
    writeRoster(storage, host, account);
    if (account.vcard !== undefined) {
      storage.keyval<string>(host, "vcard").set(user, serialize(account.vcard, ""));
    }
    const privateStore = storage.map<string>(host, "private");
    for (const fragment of account.privateXml ?? []) {
      privateStore.set(user, `{${fragment.ns}}${fragment.name}`, serialize(fragment, ""));
    }
    // The archive first: offline messages name archived ones by their new ids.
    const mam = storage.archive(host, "mam");
    const newIds = new Map<string, string>();
    for (const entry of account.archive ?? []) {
      const id = mam.append(user, {
        when: entry.when,
        with: entry.with,
        type: entry.message.attrs.type ?? "normal",
        payload: serialize(entry.message),
      });
      if (entry.id !== undefined) newIds.set(entry.id, id);
    }
    const offline = storage.archive(host, "offline");
    for (const original of account.offlineMessages ?? []) {
      const message = withArchiveIds(original, bare, newIds);
      offline.append(user, {
        when: delayStamp(message) ?? Date.now(),
        with: bareOf(message.attrs.from ?? ""),
        type: message.attrs.type ?? "normal",
        payload: serialize(message),
      });
    }
    if (account.blocklist !== undefined && account.blocklist.length > 0) {
      storage.keyval<string[]>(host, "blocklist").set(user, [...new Set(account.blocklist)]);
    }
    if (account.pep !== undefined && account.pep.length > 0) writePep(database, bare, account.pep);
    return { status: "imported", replaced: exists, warnings };
  });
}

/**
 * Prepares every account (passwords hashed with `iterations(host)`) and writes them all in one
 * transaction: an error anywhere leaves the store as it was. Creates the pubsub tables first
 * when an account brings PEP nodes.
 */
export async function importAccounts(
  database: Database,
  accounts: HostAccount[],
  options: ImportAccountOptions & {
    iterations: (host: string) => number;
    /** More writes of the same import (rooms), in the same transaction after the accounts. */
    alsoInTransaction?: () => void;
  },
): Promise<ImportSummary> {
  const prepared: { host: string; account: PreparedAccount }[] = [];
  for (const { host, account } of accounts) {
    prepared.push({
      host,
      account: await prepareAccount(account, { iterations: options.iterations(host) }),
    });
  }
  if (prepared.some(({ account }) => (account.pep?.length ?? 0) > 0)) ensurePubsubSchema(database);
  const results: ImportSummary["results"] = [];
  database.transaction(() => {
    for (const { host, account } of prepared) {
      results.push({
        host,
        username: account.username,
        outcome: importAccount(database, host, account, options),
      });
    }
    options.alsoInTransaction?.();
  });
  return { results };
}

function writeRoster(storage: Storage, host: string, account: AccountData): void {
  const user = account.username;
  const store = storage.map<RosterItem>(host, "roster");
  const items = new Map<string, RosterItem>();
  for (const entry of account.roster ?? []) {
    const item: RosterItem = {
      groups: [...new Set(entry.groups)],
      subscription: entry.subscription,
    };
    if (entry.name !== undefined && entry.name !== "") item.name = entry.name;
    if (entry.ask) item.ask = "subscribe";
    if (entry.approved) item.approved = true;
    items.set(entry.jid, item);
  }
  for (const pending of account.pendingIn ?? []) {
    let item = items.get(pending.from);
    if (item === undefined) {
      item = { groups: [], subscription: "none", hidden: true };
      items.set(pending.from, item);
    }
    // A contact already subscribed to the user has nothing pending.
    if (item.subscription === "from" || item.subscription === "both") continue;
    item.pendingIn = true;
    if (pending.stanza !== undefined) item.pendingStanza = serialize(pending.stanza);
  }
  for (const [jid, item] of items) store.set(user, jid, item);
  if ([...items.values()].some((item) => !item.hidden)) {
    // A fresh version epoch, so no client's cached roster version from elsewhere matches.
    storage.keyval<RosterVersion>(host, "roster_version").set(user, {
      epoch: randomEpoch(),
      counter: 1,
    });
  }
}

function writePep(database: Database, owner: string, nodes: PepNodeData[]): void {
  const store = new PubsubStore(database);
  const now = Date.now();
  for (const node of nodes) {
    store.createNode(owner, { node: node.node, config: node.config, owner, createdMs: now });
    for (const [jid, affiliation] of node.affiliations ?? []) {
      if (jid !== owner) store.setAffiliation(owner, node.node, jid, affiliation);
    }
    for (const subscription of node.subscriptions ?? []) {
      store.putSubscription(owner, {
        node: node.node,
        jid: subscription.jid,
        subid: subscription.subid ?? crypto.randomUUID(),
        state: subscription.state,
      }, now);
    }
    for (const item of node.items) {
      store.putItem(owner, node.node, {
        itemId: item.id,
        publisher: item.publisher ?? owner,
        payload: item.payload === undefined ? "" : serialize(item.payload, ""),
        publishedMs: item.publishedMs ?? now,
      });
    }
    const keep = node.config.maxItems === "max" ? undefined : node.config.maxItems;
    if (keep !== undefined) store.trimItems(owner, node.node, keep);
  }
}

/**
 * `message` with its XEP-0359 stanza-ids from the account's own archive (`by` its bare JID)
 * pointing at the ids the archived copies got here; one whose copy did not come along is
 * removed, since it would name nothing in this archive.
 */
function withArchiveIds(message: Element, bare: string, newIds: Map<string, string>): Element {
  const own = message.getChildren("stanza-id", NS_SID).filter((el) => el.attrs.by === bare);
  if (own.length === 0) return message;
  const copy = message.clone();
  copy.children = copy.children.filter((child) =>
    typeof child === "string" || child.name !== "stanza-id" || child.ns !== NS_SID ||
    child.attrs.by !== bare
  );
  for (const el of own) {
    const id = newIds.get(el.attrs.id ?? "");
    if (id !== undefined) copy.c("stanza-id", { xmlns: NS_SID, id, by: bare });
  }
  return copy;
}

/** The XEP-0203 stamp of a stored message (ms), or undefined when it has none or a bad one. */
function delayStamp(message: Element): number | undefined {
  const stamp = message.getChild("delay", "urn:xmpp:delay")?.attrs.stamp;
  if (stamp === undefined) return undefined;
  const when = Date.parse(stamp);
  return Number.isFinite(when) && when >= 0 ? when : undefined;
}

function bareOf(jid: string): string {
  const slash = jid.indexOf("/");
  return slash === -1 ? jid : jid.slice(0, slash);
}
