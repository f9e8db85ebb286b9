// XEP-0191 blocking command: an account keeps a list of JIDs it never hears from and never
// talks to; the list is enforced on every stanza in either direction and survives restarts.

import type { OptionSpec } from "../core/config_schema.ts";
import type { SessionEvent, StanzaEvent } from "../core/hosts.ts";
import { type JID, tryParseJid } from "../core/jid.ts";
import type { ModuleAPI } from "../core/modules.ts";
import type { Session } from "../core/sessions.ts";
import type { KeyValueStore } from "../core/storage/stores.ts";
import { Element } from "../core/xml/element.ts";
import { errorReply, iq, isError, reply } from "../core/xml/stanza.ts";
import { hasFrom, hasTo, Rosters, type Subscription, subscriptionOf } from "./roster_store.ts";
import { presenceOf } from "../core/presence_state.ts";

const NS_BLOCKING = "urn:xmpp:blocking";
const NS_BLOCKING_ERRORS = "urn:xmpp:blocking:errors";
/** Blocklists kept in memory; the least recently used one is dropped first. */
const CACHED_LISTS = 10_000;
/** Runs before delivery, offline storage and carbons. */
const FILTER_PRIORITY = 1000;

/** One line for module listings. */
export const description = "XEP-0191: per-account blocklists enforced in both directions";

/** Options the module reads. */
export const options: Record<string, OptionSpec> = {
  bounce_blocked_messages: {
    type: "boolean",
    default: false,
    scope: "host",
    description:
      "Answer messages from blocked JIDs with service-unavailable instead of dropping them",
  },
};

/**
 * True when `jid` is covered by one of the blocked JIDs (XEP-0191 §6): the same JID (full,
 * bare, domain/resource or domain), its bare JID, or its domain (which covers every JID on it).
 */
function matches(blocked: ReadonlySet<string>, jid: JID): boolean {
  if (blocked.size === 0) return false;
  return blocked.has(jid.toString()) ||
    (jid.local !== undefined && jid.resource !== undefined && blocked.has(jid.bareString())) ||
    blocked.has(jid.domain);
}

/** A cached blocklist and whether it was looked up since the cache last passed over it. */
interface CachedList {
  jids: Set<string>;
  used: boolean;
}

/**
 * The account blocklists of one host: stored as JSON arrays, cached as sets. Every stanza looks
 * a list up (most are empty), so a hit only marks the entry; eviction gives marked entries a
 * second chance instead of reordering the cache on every lookup.
 */
class Blocklists {
  #store: KeyValueStore<string[]>;
  #cache = new Map<string, CachedList>();

  constructor(store: KeyValueStore<string[]>) {
    this.#store = store;
  }

  /** The blocked JIDs of an account (do not modify the returned set). */
  get(user: string): ReadonlySet<string> {
    const cached = this.#cache.get(user);
    if (cached) {
      cached.used = true;
      return cached.jids;
    }
    const stored = this.#store.get(user);
    const jids = new Set(Array.isArray(stored) ? stored : []);
    this.#remember(user, jids);
    return jids;
  }

  /** Replaces an account's blocklist. */
  put(user: string, list: Set<string>): void {
    this.#store.set(user, list.size === 0 ? undefined : [...list]);
    this.#cache.delete(user);
    this.#remember(user, list);
  }

  /** Drops an account's cached list, so the next lookup reads the store. */
  forget(user: string): void {
    this.#cache.delete(user);
  }

  #remember(user: string, jids: Set<string>): void {
    this.#cache.set(user, { jids, used: false });
    while (this.#cache.size > CACHED_LISTS) {
      // The oldest entry goes, unless it was used since: then it moves to the back, unmarked.
      const [oldest, entry] = this.#cache.entries().next().value!;
      this.#cache.delete(oldest);
      if (entry.used) {
        entry.used = false;
        this.#cache.set(oldest, entry);
      }
    }
  }
}

/** Parses the <item jid='...'/> children of a block or unblock command. */
function commandItems(
  command: Element,
): { jids: JID[] } | { error: "bad-request" | "jid-malformed"; text: string } {
  const jids: JID[] = [];
  for (const item of command.getChildren("item", NS_BLOCKING)) {
    const text = item.attrs.jid;
    if (text === undefined) {
      return { error: "bad-request", text: "An item needs a 'jid' attribute" };
    }
    const jid = tryParseJid(text);
    if (!jid) {
      return { error: "jid-malformed", text: `Cannot block or unblock '${text}': not a JID` };
    }
    jids.push(jid);
  }
  return { jids };
}

/** Loads blocking on a host. */
export default function blocklist(m: ModuleAPI): void {
  const bounceMessages = m.option<boolean>("bounce_blocked_messages");
  const lists = new Blocklists(m.openStore<string[]>("blocklist", "keyval"));
  // Resources that fetched the blocklist get pushes (XEP-0191 §3.3, §3.4).
  const interested = new WeakSet<Session>();
  let pushCounter = 0;

  m.addFeature(NS_BLOCKING);

  m.hook("resource-unbind", ({ session }: SessionEvent) => {
    interested.delete(session);
  });
  // Accounts can be deleted and created again behind this module's back (no event says so):
  // a login re-reads the stored list.
  m.hook("resource-bind", ({ session }: SessionEvent) => {
    if (session.jid?.local) lists.forget(session.jid.local);
  });

  const sessionsOf = (user: string) => m.server.sessions.userSessions(m.domain, user);

  const push = (user: string, command: "block" | "unblock", jids: JID[]) => {
    for (const session of sessionsOf(user)) {
      if (!interested.has(session)) continue;
      const stanza = iq("set", {
        to: session.jid!.toString(),
        id: `blocklist-push-${++pushCounter}`,
      });
      const element = stanza.c(command, { xmlns: NS_BLOCKING });
      for (const jid of jids) element.c("item", { jid: jid.toString() });
      session.send(stanza);
    }
  };

  const ownUser = (origin: Session): string | undefined =>
    origin.kind === "c2s" && origin.host === m.domain ? origin.jid?.local : undefined;

  m.hook(`iq-get/self/${NS_BLOCKING}:blocklist`, ({ stanza, origin }: StanzaEvent) => {
    const user = ownUser(origin);
    if (!user) {
      origin.send(errorReply(stanza, "not-allowed"));
      return true;
    }
    interested.add(origin);
    const answer = reply(stanza);
    delete answer.attrs.from;
    const list = answer.c("blocklist", { xmlns: NS_BLOCKING });
    for (const jid of lists.get(user)) list.c("item", { jid });
    origin.send(answer);
    return true;
  });

  m.hook(`iq-set/self/${NS_BLOCKING}:block`, ({ stanza, origin }: StanzaEvent) => {
    const user = ownUser(origin);
    if (!user) {
      origin.send(errorReply(stanza, "not-allowed"));
      return true;
    }
    const parsed = commandItems(stanza.firstElement()!);
    if ("error" in parsed) {
      origin.send(errorReply(stanza, parsed.error, { text: parsed.text }));
      return true;
    }
    if (parsed.jids.length === 0) {
      origin.send(errorReply(stanza, "bad-request", { text: "Block at least one JID" }));
      return true;
    }
    const list = new Set(lists.get(user));
    const added = parsed.jids.filter((jid) => !list.has(jid.toString()));
    // Before the list changes: once it has, the outbound filter would drop these.
    for (const jid of added) announceBlock(user, jid);
    for (const jid of added) list.add(jid.toString());
    lists.put(user, list);
    const answer = reply(stanza);
    delete answer.attrs.from;
    origin.send(answer);
    push(user, "block", parsed.jids);
    return true;
  });

  m.hook(`iq-set/self/${NS_BLOCKING}:unblock`, ({ stanza, origin }: StanzaEvent) => {
    const user = ownUser(origin);
    if (!user) {
      origin.send(errorReply(stanza, "not-allowed"));
      return true;
    }
    const parsed = commandItems(stanza.firstElement()!);
    if ("error" in parsed) {
      origin.send(errorReply(stanza, parsed.error, { text: parsed.text }));
      return true;
    }
    const old = lists.get(user);
    // No items: unblock everything (XEP-0191 §3.5).
    const removed = parsed.jids.length === 0
      ? [...old].map((text) => tryParseJid(text)).filter((jid) => jid !== undefined)
      : parsed.jids.filter((jid) => old.has(jid.toString()));
    const list = new Set(old);
    for (const jid of removed) list.delete(jid.toString());
    lists.put(user, list);
    const answer = reply(stanza);
    delete answer.attrs.from;
    origin.send(answer);
    push(user, "unblock", parsed.jids);
    for (const jid of removed) announceUnblock(user, jid);
    return true;
  });

  /**
   * The roster contacts (bare JIDs) a blocklist item covers, with their subscription, and the
   * address presence is exchanged with: the item itself for an account's JID, each contact for
   * a domain.
   */
  function covered(user: string, jid: JID): { target: string; subscription: Subscription }[] {
    if (jid.local !== undefined) {
      return [{ target: jid.toString(), subscription: subscriptionOf(m, user, jid.bareString()) }];
    }
    if (jid.resource !== undefined) return []; // domain/resource: not an account
    const found: { target: string; subscription: Subscription }[] = [];
    for (const [contact, item] of new Rosters(m).entries(user)) {
      if (!item.hidden && tryParseJid(contact)?.domain === jid.domain) {
        found.push({ target: contact, subscription: item.subscription });
      }
    }
    return found;
  }

  /**
   * XEP-0191 §3.3: a blocked contact allowed to see the account's presence sees it go offline,
   * and the account's resources see a contact whose presence they receive go offline.
   */
  function announceBlock(user: string, jid: JID): void {
    for (const { target, subscription } of covered(user, jid)) {
      for (const session of sessionsOf(user)) {
        if (!presenceOf(session).available || !session.jid) continue;
        const own = session.jid.toString();
        if (hasFrom(subscription)) {
          m.send(new Element("presence", { type: "unavailable", from: own, to: target }));
        }
        if (hasTo(subscription)) {
          session.send(new Element("presence", { type: "unavailable", from: target, to: own }));
        }
      }
    }
  }

  /**
   * XEP-0191 §3.4: an unblocked contact allowed to see the account's presence gets its current
   * presence, and the account asks for the contact's presence again (a probe).
   */
  function announceUnblock(user: string, jid: JID): void {
    for (const { target, subscription } of covered(user, jid)) {
      const targetJid = tryParseJid(target);
      if (!targetJid || blockedBetween(user, targetJid)) continue; // another item still applies
      if (hasFrom(subscription)) {
        for (const session of sessionsOf(user)) {
          const own = presenceOf(session);
          if (!own.available || !session.jid || !own.presence) continue;
          const presence = own.presence.clone();
          presence.attrs.from = session.jid.toString();
          presence.attrs.to = target;
          m.send(presence);
        }
      }
      if (hasTo(subscription)) {
        m.send(
          new Element("presence", {
            type: "probe",
            from: `${user}@${m.domain}`,
            to: targetJid.bareString(),
          }),
        );
      }
    }
  }

  /** True when the stanza is between an account and a JID its blocklist covers. */
  const blockedBetween = (user: string, peer: JID) => {
    // Never between an account's own resources, nor from the account's own server.
    if (peer.local === user && peer.domain === m.domain) return false;
    if (peer.local === undefined && peer.resource === undefined && peer.domain === m.domain) {
      return false;
    }
    return matches(lists.get(user), peer);
  };

  // Inbound: stanzas from a blocked JID to a local account (XEP-0191 §3.3).
  const inbound = ({ stanza, origin }: StanzaEvent) => {
    const to = tryParseJid(stanza.attrs.to ?? "");
    if (!to?.local || to.domain !== m.domain || lists.get(to.local).size === 0) return false;
    const from = tryParseJid(stanza.attrs.from ?? "");
    if (!from || !blockedBetween(to.local, from)) return false;
    if (isError(stanza)) return true;
    if (stanza.name === "message") {
      if (bounceMessages) {
        origin.send(errorReply(stanza, "service-unavailable", { includeOriginal: true }));
      }
    } else if (stanza.name === "iq") {
      const type = stanza.attrs.type;
      if (type === "get" || type === "set") origin.send(errorReply(stanza, "service-unavailable"));
    }
    return true; // presence: dropped without an answer
  };
  m.hook("message/bare", inbound, FILTER_PRIORITY);
  m.hook("message/full", inbound, FILTER_PRIORITY);
  m.hook("presence/bare", inbound, FILTER_PRIORITY);
  m.hook("presence/full", inbound, FILTER_PRIORITY);
  m.hook("iq/bare", inbound, FILTER_PRIORITY);
  m.hook("iq/full", inbound, FILTER_PRIORITY);

  // Outbound: a stanza from a local account to a JID it blocked. Modules sending on an
  // account's behalf (presence broadcasts) are covered too; their stanzas are dropped silently.
  const outbound = ({ stanza, origin }: StanzaEvent) => {
    let user = ownUser(origin);
    if (!user && origin.kind === "internal") {
      const from = tryParseJid(stanza.attrs.from ?? "");
      if (from?.domain === m.domain) user = from.local;
    }
    if (!user || lists.get(user).size === 0) return false;
    const to = tryParseJid(stanza.attrs.to ?? "");
    if (!to || !blockedBetween(user, to)) return false;
    if (origin.kind !== "c2s" || isError(stanza) || stanza.name === "presence") return true;
    if (stanza.name === "iq" && stanza.attrs.type !== "get" && stanza.attrs.type !== "set") {
      return true;
    }
    const error = errorReply(stanza, "not-acceptable", { type: "cancel", includeOriginal: true });
    error.getChild("error")!.c("blocked", { xmlns: NS_BLOCKING_ERRORS });
    origin.send(error);
    return true;
  };
  m.hook("pre-message/host", outbound, FILTER_PRIORITY);
  m.hook("pre-message/bare", outbound, FILTER_PRIORITY);
  m.hook("pre-message/full", outbound, FILTER_PRIORITY);
  m.hook("pre-presence/host", outbound, FILTER_PRIORITY);
  m.hook("pre-presence/bare", outbound, FILTER_PRIORITY);
  m.hook("pre-presence/full", outbound, FILTER_PRIORITY);
  m.hook("pre-iq/host", outbound, FILTER_PRIORITY);
  m.hook("pre-iq/bare", outbound, FILTER_PRIORITY);
  m.hook("pre-iq/full", outbound, FILTER_PRIORITY);
}
