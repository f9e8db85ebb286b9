// `lilt import prosody DATA_DIR`: reads a Prosody 0.12 server's accounts and what they keep
// (SCRAM credentials, rosters, vCards, private XML, offline messages, PEP nodes and items,
// blocklists) and its MUC components' persistent rooms from its internal file storage or its
// SQLite storage, turns them into AccountData (and rooms) and writes them all in one transaction
// through account_import.ts (and mod/muc/storage.ts).

import type { ScramCredentials, ScramHash } from "../../core/auth/accounts.ts";
import { HASH_BYTES } from "../../core/auth/scram.ts";
import { prepDomain, prepLocal, tryParseJid } from "../../core/jid.ts";
import type { Database } from "../../core/storage/database.ts";
import { Element } from "../../core/xml/element.ts";
import { applyConfigFields } from "../../mod/pubsub/config.ts";
import { PubsubError } from "../../mod/pubsub/errors.ts";
import type { Affiliation } from "../../mod/pubsub/storage.ts";
import type { Subscription } from "../../mod/roster_store.ts";
import type { ConfigLimits } from "../../mod/muc/config.ts";
import { MUC_MIGRATIONS, MucStore } from "../../mod/muc/storage.ts";
import {
  type AccountData,
  type HostAccount,
  importAccounts,
  type ImportSummary,
  type PendingSubscription,
  pepDefaultConfig,
  type PepNodeData,
  type RosterEntry,
} from "./account_import.ts";
import { type ProsodyRoom, readProsodyRooms } from "./prosody_muc.ts";
import { LuaTable, type LuaValue } from "./lua_table.ts";
import { elementFromLua, StoredStanzaError } from "./prosody_stanza.ts";
import {
  openProsodyStorage,
  ProsodyDataError,
  type ProsodyStorage,
  type ProsodyStorageKind,
} from "./prosody_storage.ts";

export { ProsodyDataError } from "./prosody_storage.ts";

const NS_DELAY = "urn:xmpp:delay";
const SUBSCRIPTIONS = new Set<string>(["none", "to", "from", "both"]);
const AFFILIATIONS = new Set<string>(["owner", "publisher", "publish-only", "member", "outcast"]);
/** The widest limits Lilt's PEP options allow; a node's own values are checked against them. */
const PEP_LIMITS = { maxItemsPerNode: 100_000, maxItemBytes: 16_777_216 };
/** The archive stores Prosody's mod_pep keeps a node's items in: `pep_` + the node name. */
const PEP_ITEM_STORE = "pep_";

/** Options for {@link importProsody}. */
export interface ImportProsodyOptions {
  /** The hosts this server serves; accounts of other hosts are skipped with a warning. */
  hosts: string[];
  /** PBKDF2 iterations for a host's accounts that come with a plaintext password. */
  iterations: (host: string) => number;
  /** Replace existing accounts instead of skipping them. */
  overwrite?: boolean;
  /** Which of Prosody's backends to read (default: decided by what the directory holds). */
  storage?: ProsodyStorageKind;
  /**
   * The MUC components here (domain -> the muc module's limits there): persistent rooms of a
   * Prosody MUC host with the same domain are imported, others skipped with a warning.
   */
  mucServices?: Map<string, ConfigLimits>;
}

/** What {@link importProsody} did. */
export interface ImportProsodyResult extends ImportSummary {
  /** The backend read ("internal" or "sql") and where. */
  storage: { kind: "internal" | "sql"; location: string };
  /** The rooms, in the order read: imported, or skipped with the reason. */
  rooms: { service: string; room: string; outcome: "imported" | "replaced" | string }[];
  /** Warnings from reading and from writing accounts. */
  warnings: string[];
}

/** What {@link readProsody} found. */
export interface ProsodyData {
  accounts: HostAccount[];
  rooms: ProsodyRoom[];
  warnings: string[];
}

/**
 * Reads every account of the hosts in `hosts` from `storage`. Hosts in the data that are not
 * listed are skipped with a warning; data Lilt has no place for is a warning too. Throws
 * `ProsodyDataError` for data that cannot be read (naming the file or row), and when no
 * account of a listed host is found.
 */
export function readProsody(
  storage: ProsodyStorage,
  hosts: string[],
  mucServices: Map<string, ConfigLimits> = new Map(),
): ProsodyData {
  const warnings: string[] = [];
  const accounts: HostAccount[] = [];
  const served = new Set(hosts.map((h) => prepDomain(h)));
  const found = storage.accountHosts();
  for (const rawHost of found) {
    let host: string;
    try {
      host = prepDomain(rawHost);
    } catch {
      warnings.push(`host '${rawHost}' in ${storage.location} is not a valid domain; skipped`);
      continue;
    }
    if (!served.has(host)) {
      warnings.push(
        `host '${host}' (${storage.users(rawHost).length} accounts) is not served here ` +
          `(configured: ${[...served].join(", ")}); its accounts are skipped`,
      );
      continue;
    }
    for (const rawUser of storage.users(rawHost)) {
      const account = new AccountReader(storage, rawHost, host, rawUser, warnings).read();
      if (account !== undefined) accounts.push({ host, account });
    }
  }
  const rooms = readProsodyRooms(storage, mucServices, warnings);
  if (found.length === 0 && rooms.length === 0) {
    throw new ProsodyDataError(`${storage.location} holds no Prosody accounts`);
  }
  if (found.length > 0 && accounts.length === 0) {
    throw new ProsodyDataError(
      `none of the hosts with accounts in ${storage.location} (${found.join(", ")}) is ` +
        `configured here (${[...served].join(", ")}); add a [[host]] for them`,
    );
  }
  return { accounts, rooms, warnings };
}

/**
 * Reads Prosody's data at `path` (see `openProsodyStorage`) and imports every account of the
 * configured hosts in one transaction. Throws before writing anything when the data cannot be
 * read; a failure while writing leaves the store as it was.
 */
export async function importProsody(
  database: Database,
  path: string,
  options: ImportProsodyOptions,
): Promise<ImportProsodyResult> {
  const storage = openProsodyStorage(path, options.storage ?? "auto");
  let data: ProsodyData;
  try {
    data = readProsody(storage, options.hosts, options.mucServices);
  } finally {
    storage.close();
  }
  if (data.rooms.length > 0) database.migrateModule("muc", MUC_MIGRATIONS);
  const rooms: ImportProsodyResult["rooms"] = [];
  // Accounts and rooms in one transaction: all of it is imported, or nothing.
  const { results } = await importAccounts(database, data.accounts, {
    ...options,
    alsoInTransaction: () => {
      const mucStore = new MucStore(database);
      const existing = new Map<string, Set<string>>();
      for (const { service, room } of data.rooms) {
        let names = existing.get(service);
        if (names === undefined) {
          names = new Set(mucStore.rooms(service).map((r) => r.room));
          existing.set(service, names);
        }
        const replaced = names.has(room.room);
        if (replaced && !options.overwrite) {
          rooms.push({
            service,
            room: room.room,
            outcome: `${room.room}@${service} exists already (use --overwrite to replace it)`,
          });
          continue;
        }
        mucStore.saveRoom(service, room);
        rooms.push({ service, room: room.room, outcome: replaced ? "replaced" : "imported" });
      }
    },
  });
  const warnings = [...data.warnings];
  for (const { outcome } of results) {
    if (outcome.status === "imported") warnings.push(...outcome.warnings);
  }
  return {
    results,
    rooms,
    storage: { kind: storage.kind, location: storage.location },
    warnings,
  };
}

/** Reads one account's stores. */
class AccountReader {
  #storage: ProsodyStorage;
  #rawHost: string;
  #host: string;
  #rawUser: string;
  #warnings: string[];
  #bare: string;

  constructor(
    storage: ProsodyStorage,
    rawHost: string,
    host: string,
    rawUser: string,
    warnings: string[],
  ) {
    this.#storage = storage;
    this.#rawHost = rawHost;
    this.#host = host;
    this.#rawUser = rawUser;
    this.#warnings = warnings;
    this.#bare = `${rawUser}@${host}`;
  }

  #warn(message: string): void {
    this.#warnings.push(`${this.#bare}: ${message}`);
  }

  #keyval(store: string): LuaTable | undefined {
    return this.#storage.keyval(this.#rawHost, this.#rawUser, store);
  }

  #stanza(table: LuaValue, what: string): Element | undefined {
    if (!(table instanceof LuaTable)) {
      this.#warn(`${what} is not a stored element; left out`);
      return undefined;
    }
    try {
      return elementFromLua(table, { where: `${this.#bare}: ${what}` });
    } catch (error) {
      if (!(error instanceof StoredStanzaError)) throw error;
      this.#warn(`${error.message}; left out`);
      return undefined;
    }
  }

  read(): AccountData | undefined {
    let username: string;
    try {
      username = prepLocal(this.#rawUser);
    } catch (error) {
      this.#warnings.push(
        `account '${this.#rawUser}' of ${this.#host} has a name Lilt cannot use ` +
          `(${(error as Error).message}); skipped`,
      );
      return undefined;
    }
    this.#bare = `${username}@${this.#host}`;
    const account: AccountData = { username, ...this.#credentials() };
    const roster = this.#roster();
    if (roster !== undefined) {
      account.roster = roster.items;
      account.pendingIn = roster.pending;
    }
    const vcard = this.#keyval("vcard");
    if (vcard !== undefined) account.vcard = this.#stanza(vcard, "the vCard");
    account.privateXml = this.#privateXml();
    account.offlineMessages = this.#offline();
    account.blocklist = this.#blocklist();
    account.pep = this.#pep();
    return account;
  }

  #credentials(): Pick<AccountData, "scram" | "password"> {
    const stored = this.#keyval("accounts");
    if (stored === undefined) return {};
    const storedKey = hexBytes(stored.string("stored_key"));
    const serverKey = hexBytes(stored.string("server_key"));
    const salt = stored.string("salt");
    const iterations = stored.number("iteration_count");
    if (storedKey !== undefined && serverKey !== undefined) {
      // Prosody names no hash: the key length tells SHA-1 (its default) from SHA-256
      // (password_hash = "SHA-256").
      const hash = (Object.keys(HASH_BYTES) as ScramHash[]).find((h) =>
        HASH_BYTES[h] === storedKey.length && HASH_BYTES[h] === serverKey.length
      );
      if (
        hash !== undefined && salt !== undefined && salt !== "" && iterations !== undefined &&
        Number.isSafeInteger(iterations) && iterations > 0
      ) {
        const credentials: ScramCredentials = {
          salt: new TextEncoder().encode(salt),
          iterations,
          storedKey,
          serverKey,
        };
        return { scram: { [hash]: credentials } };
      }
      this.#warn("its SCRAM keys, salt or iteration count are incomplete; they are left out");
    }
    const password = stored.string("password");
    if (password !== undefined && password !== "") return { password };
    return {};
  }

  #roster(): { items: RosterEntry[]; pending: PendingSubscription[] } | undefined {
    const stored = this.#keyval("roster");
    if (stored === undefined) return undefined;
    const items: RosterEntry[] = [];
    const pending: PendingSubscription[] = [];
    for (const [key, value] of stored.stringEntries()) {
      // A roster from before Prosody 0.10 kept its pending requests under "pending".
      if (
        key === "pending" && value instanceof LuaTable && value.string("subscription") === undefined
      ) {
        this.#pendingRequests(value, pending);
        continue;
      }
      if (!(value instanceof LuaTable)) continue;
      const jid = tryParseJid(key);
      if (jid === undefined || jid.resource !== undefined) {
        this.#warn(`roster item '${key}' is not a bare JID; left out`);
        continue;
      }
      const bare = jid.bareString();
      if (bare === this.#bare) continue; // Prosody's own entry for the user's self-presence
      const subscription = value.string("subscription") ?? "none";
      if (!SUBSCRIPTIONS.has(subscription)) {
        this.#warn(`roster item '${key}' has subscription '${subscription}'; left out`);
        continue;
      }
      const groups = value.table("groups");
      const entry: RosterEntry = {
        jid: bare,
        subscription: subscription as Subscription,
        groups: groups === undefined
          ? []
          : groups.stringEntries().filter(([, v]) => v === true).map(([g]) => g),
      };
      const name = value.string("name");
      if (name !== undefined && name !== "") entry.name = name;
      if (value.string("ask") === "subscribe") entry.ask = true;
      const approved = value.get("approved");
      if (approved === true || approved === "true") entry.approved = true;
      items.push(entry);
    }
    const metadata = stored.table(false);
    const requests = metadata?.table("pending");
    if (requests !== undefined) this.#pendingRequests(requests, pending);
    return { items, pending };
  }

  #pendingRequests(requests: LuaTable, pending: PendingSubscription[]): void {
    for (const [from, value] of requests.stringEntries()) {
      const jid = tryParseJid(from);
      if (jid === undefined) {
        this.#warn(`pending subscription request from '${from}' is not a JID; left out`);
        continue;
      }
      const request: PendingSubscription = { from: jid.bareString() };
      if (value instanceof LuaTable) {
        const stanza = this.#stanza(value, `the subscription request from ${from}`);
        if (stanza !== undefined) request.stanza = stanza;
      }
      pending.push(request);
    }
  }

  #privateXml(): Element[] {
    const stored = this.#keyval("private");
    if (stored === undefined) return [];
    const out: Element[] = [];
    for (const [key, value] of stored.stringEntries()) {
      const el = this.#stanza(value, `private XML '${key}'`);
      if (el !== undefined) out.push(el);
    }
    return out;
  }

  #offline(): Element[] {
    const out: Element[] = [];
    for (const item of this.#storage.archive(this.#rawHost, this.#rawUser, "offline")) {
      const message = item.value;
      if (message.name !== "message") {
        this.#warn(`offline item '${item.key}' is a <${message.name}/>, not a message; left out`);
        continue;
      }
      // Prosody adds the delay when it delivers; Lilt keeps it in the stored copy.
      const hasOwn = message.getChildren("delay", NS_DELAY).some((d) =>
        d.attrs.from === this.#host
      );
      if (!hasOwn && item.when !== undefined) {
        message.append(
          new Element("delay", {
            xmlns: NS_DELAY,
            from: this.#host,
            stamp: new Date(Math.round(item.when * 1000)).toISOString().replace(/\.\d{3}Z$/, "Z"),
          }),
        );
      }
      out.push(message);
    }
    return out;
  }

  #blocklist(): string[] {
    const stored = this.#keyval("blocklist");
    if (stored === undefined) return [];
    const out: string[] = [];
    for (const [key, value] of stored.stringEntries()) {
      if (value !== true) continue;
      const jid = tryParseJid(key);
      if (jid === undefined) {
        this.#warn(`blocked JID '${key}' is not a JID; left out`);
        continue;
      }
      out.push(jid.toString());
    }
    return out;
  }

  #pep(): PepNodeData[] {
    const stored = this.#keyval("pep");
    const nodes = new Map<string, PepNodeData>();
    for (const [name, value] of stored?.stringEntries() ?? []) {
      nodes.set(name, this.#pepNode(name, value));
    }
    // Items of a node whose configuration was never stored (Prosody writes it on creation,
    // but a half-copied directory may lack it) still come along with the defaults.
    for (const store of this.#storage.archiveStores(this.#rawHost, this.#rawUser, PEP_ITEM_STORE)) {
      const name = store.slice(PEP_ITEM_STORE.length);
      if (name === "") continue;
      let node = nodes.get(name);
      if (node === undefined) {
        node = { node: name, config: pepDefaultConfig(), items: [] };
        nodes.set(name, node);
      }
      const items = new Map<string, PepNodeData["items"][number]>();
      for (const item of this.#storage.archive(this.#rawHost, this.#rawUser, store)) {
        // A later entry with the same id replaces the earlier one (as Prosody reads them).
        items.delete(item.key);
        const publisher = item.with === undefined ? undefined : tryParseJid(item.with);
        items.set(item.key, {
          id: item.key,
          payload: item.value,
          publisher: publisher?.bareString(),
          publishedMs: item.when === undefined ? undefined : Math.round(item.when * 1000),
        });
      }
      node.items = [...items.values()];
    }
    return [...nodes.values()];
  }

  #pepNode(name: string, value: LuaValue): PepNodeData {
    const node: PepNodeData = { node: name, config: pepDefaultConfig(), items: [] };
    // Before Prosody 0.11 a node was stored as `true` (persist items, nothing else).
    if (!(value instanceof LuaTable)) return node;
    const config = value.table("config");
    for (const [option, setting] of config?.stringEntries() ?? []) {
      const values = setting instanceof LuaTable
        ? setting.array().filter((v) => typeof v !== "object").map(String)
        : [String(setting)];
      try {
        node.config = applyConfigFields(
          node.config,
          new Map([[`pubsub#${option}`, values]]),
          PEP_LIMITS,
        );
      } catch (error) {
        if (!(error instanceof PubsubError)) throw error;
        this.#warn(`PEP node '${name}': ${error.message}; Lilt's default is kept`);
      }
    }
    const affiliations = value.table("affiliations");
    for (const [jid, affiliation] of affiliations?.stringEntries() ?? []) {
      const parsed = tryParseJid(jid);
      if (affiliation === "none") continue;
      if (
        parsed === undefined || typeof affiliation !== "string" || !AFFILIATIONS.has(affiliation)
      ) {
        this.#warn(`PEP node '${name}': affiliation '${String(affiliation)}' of '${jid}' left out`);
        continue;
      }
      node.affiliations ??= new Map();
      node.affiliations.set(parsed.bareString(), affiliation as Affiliation);
    }
    const subscribers = value.table("subscribers");
    for (const [jid, options] of subscribers?.stringEntries() ?? []) {
      const parsed = tryParseJid(jid);
      if (parsed === undefined || options === false) continue;
      node.subscriptions ??= [];
      node.subscriptions.push({ jid: parsed.toString(), state: "subscribed" });
    }
    return node;
  }
}

/** The bytes of a hex string, or undefined when it is absent or not hex. */
function hexBytes(hex: string | undefined): Uint8Array | undefined {
  if (
    hex === undefined || hex.length === 0 || hex.length % 2 !== 0 || !/^[0-9a-fA-F]+$/.test(hex)
  ) {
    return undefined;
  }
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return bytes;
}
