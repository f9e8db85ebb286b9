// Roster data shared by the roster and presence modules (RFC 6121 §2-3, XEP-0237): items per
// account in a map store, the roster version, and the roster pushes every change sends.

import type { OptionSpec } from "../core/config_schema.ts";
import type { ModuleAPI } from "../core/modules.ts";
import type { Session } from "../core/sessions.ts";
import type { KeyValueStore, MapStore } from "../core/storage/stores.ts";
import { Element } from "../core/xml/element.ts";
import { presenceOf } from "../core/presence_state.ts";

/** The roster namespace (RFC 6121 §2). */
export const NS_ROSTER = "jabber:iq:roster";

/** The subscription states of a roster item (RFC 6121 §2.1.2.5). */
export type Subscription = "none" | "to" | "from" | "both";

/**
 * One stored entry of an account's roster, keyed by the contact's bare JID. An entry marked
 * `hidden` only remembers an inbound subscription request from someone who is not in the
 * roster ("None + Pending In" without an item, RFC 6121 §3.1.3): it is never shown or pushed.
 */
export interface RosterItem {
  /** The handle the user gave the contact. */
  name?: string;
  /** Groups the item is in (no duplicates). */
  groups: string[];
  /** Who is subscribed to whom. */
  subscription: Subscription;
  /** The user asked to subscribe to the contact and has no answer yet ("Pending Out"). */
  ask?: "subscribe";
  /** The user pre-approved a subscription request from the contact (RFC 6121 §3.4). */
  approved?: true;
  /** The contact asked to subscribe to the user and has no answer yet ("Pending In"). */
  pendingIn?: true;
  /** That request's stanza (XML text), delivered again on each initial presence. */
  pendingStanza?: string;
  /** Not a roster item the user sees: only a pending inbound request. */
  hidden?: true;
}

/** The `max_roster_size` option, read by both modules (RFC 6121 leaves the limit to policy). */
export const MAX_ROSTER_SIZE_OPTION: OptionSpec = {
  type: "integer",
  default: 1000,
  min: 1,
  max: 1_000_000,
  scope: "host",
  description: "Most items an account's roster may hold",
};

/** The host's `max_roster_size`. */
export function maxRosterSize(m: ModuleAPI): number {
  return m.option<number>("max_roster_size");
}

/** What the "roster_version" key-value store holds per account. */
interface VersionRecord {
  /** Random per roster lifetime, so a re-created account never repeats an old version. */
  epoch: string;
  /** Incremented on every change a client can see. */
  counter: number;
}

/** True when the contact receives the user's presence ("from" or "both"). */
export function hasFrom(subscription: Subscription): boolean {
  return subscription === "from" || subscription === "both";
}

/** True when the user receives the contact's presence ("to" or "both"). */
export function hasTo(subscription: Subscription): boolean {
  return subscription === "to" || subscription === "both";
}

/** The subscription state with the user's subscription to the contact added or removed. */
export function withTo(subscription: Subscription, on: boolean): Subscription {
  const from = hasFrom(subscription);
  return on ? (from ? "both" : "to") : (from ? "from" : "none");
}

/** The subscription state with the contact's subscription to the user added or removed. */
export function withFrom(subscription: Subscription, on: boolean): Subscription {
  const to = hasTo(subscription);
  return on ? (to ? "both" : "from") : (to ? "to" : "none");
}

/** The `<item/>` a roster result or push carries; `undefined` gives a removal. */
export function itemElement(jid: string, item: RosterItem | undefined): Element {
  if (!item) return new Element("item", { xmlns: NS_ROSTER, jid, subscription: "remove" });
  const el = new Element("item", {
    xmlns: NS_ROSTER,
    jid,
    name: item.name,
    subscription: item.subscription,
    ask: item.ask,
    approved: item.approved ? "true" : undefined,
  });
  for (const group of item.groups) el.c("group").t(group);
  return el;
}

/** What a client sees of an entry, for deciding whether a change needs a push. */
function visibleForm(item: RosterItem | undefined): string | undefined {
  if (!item || item.hidden) return undefined;
  return JSON.stringify([item.name, item.groups, item.subscription, item.ask, item.approved]);
}

/** The version of a roster that never had a visible entry (no epoch is stored for it). */
const EMPTY_VERSION = "0";

function randomEpoch(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The rosters of one host's accounts. Both modules create one per host; it keeps no state of
 * its own beyond the stores, so they always agree.
 *
 * @example
 * ```ts
 * const rosters = new Rosters(m);
 * const item = rosters.get("juliet", "romeo@example.net");
 * rosters.update("juliet", "romeo@example.net", { ...item!, subscription: "both" });
 * ```
 */
export class Rosters {
  #m: ModuleAPI;
  #items: MapStore<RosterItem>;
  #versions: KeyValueStore<VersionRecord>;
  #pushCounter = 0;

  /** Opens the roster stores of the module's host. */
  constructor(m: ModuleAPI) {
    this.#m = m;
    this.#items = m.openStore<RosterItem>("roster", "map");
    this.#versions = m.openStore<VersionRecord>("roster_version", "keyval");
  }

  /** The stored entry for `contact` (a bare JID) in `user`'s roster, hidden ones included. */
  get(user: string, contact: string): RosterItem | undefined {
    return this.#items.get(user, contact);
  }

  /** Every stored entry of `user`'s roster, hidden ones included, ordered by JID. */
  entries(user: string): Map<string, RosterItem> {
    return this.#items.getAll(user);
  }

  /**
   * True when `user`'s roster has `limit` or more visible entries. Counting the stored rows
   * answers most checks without reading any item; only a roster near the limit is read to
   * leave out the hidden entries.
   */
  visibleAtLeast(user: string, limit: number): boolean {
    if (this.#items.count(user) < limit) return false;
    return this.visible(user).length >= limit;
  }

  /** How many entries `user`'s roster stores, hidden ones included. */
  count(user: string): number {
    return this.#items.count(user);
  }

  /** The entries a client sees (RFC 6121 §2.1.4: no bare pending requests). */
  visible(user: string): [string, RosterItem][] {
    return [...this.entries(user)].filter(([, item]) => !item.hidden);
  }

  /**
   * The current roster version string of `user`. A roster that never changed has no stored
   * version and reads as {@link EMPTY_VERSION} (a login's roster get writes nothing); the
   * first change starts a random epoch, so versions never repeat across a deleted and
   * recreated account.
   */
  version(user: string): string {
    const record = this.#versions.get(user);
    return record ? `${record.epoch}-${record.counter}` : EMPTY_VERSION;
  }

  #bump(user: string): VersionRecord {
    const old = this.#versions.get(user);
    const record = old
      ? { epoch: old.epoch, counter: old.counter + 1 }
      : { epoch: randomEpoch(), counter: 1 };
    this.#versions.set(user, record);
    return record;
  }

  /**
   * Stores `item` (or deletes the entry when undefined) and, when what a client sees changed,
   * bumps the roster version and pushes the item to every interested resource (RFC 6121
   * §2.1.6). Returns true when a push was sent.
   */
  update(user: string, contact: string, item: RosterItem | undefined): boolean {
    const before = visibleForm(this.#items.get(user, contact));
    this.#items.set(user, contact, item);
    const after = visibleForm(item);
    if (before === after) return false;
    this.#bump(user);
    this.push(user, contact, after === undefined ? undefined : item);
    return true;
  }

  /** Sends a roster push for one item (undefined: removal) to `user`'s interested resources. */
  push(user: string, contact: string, item: RosterItem | undefined): void {
    const ver = this.version(user);
    for (const session of this.#interested(user)) {
      const iq = new Element("iq", {
        type: "set",
        id: `push-${++this.#pushCounter}-${randomEpoch()}`,
        to: session.jid!.toString(),
      });
      iq.c("query", { xmlns: NS_ROSTER, ver }).append(itemElement(contact, item));
      session.send(iq);
    }
  }

  #interested(user: string): Session[] {
    return this.#m.server.sessions.userSessions(this.#m.domain, user).filter((s) =>
      presenceOf(s).interested
    );
  }
}

/**
 * The subscription between local account `user` and `contact` (a bare JID), "none" when the
 * contact is not in the roster. For modules that show data only to subscribers (XEP-0012).
 */
export function subscriptionOf(m: ModuleAPI, user: string, contact: string): Subscription {
  const item = m.openStore<RosterItem>("roster", "map").get(user, contact);
  return item && !item.hidden ? item.subscription : "none";
}
