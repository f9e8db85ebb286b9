// XEP-0163 personal eventing: every account's bare JID is a pubsub service (avatars, nicknames,
// OMEMO device lists, bookmarks live there). The XEP-0060 engine in mod/pubsub/ does the work on
// the tables it shares with the pubsub component; this file adds what PEP changes: the account owns every node,
// nodes appear on first publish, and notifications go to the resources that asked for them in
// their XEP-0115 caps (`+notify`): the owner's own, and those of contacts sharing presence,
// local ones and remote ones (whose presence and caps reach the account over s2s).

import type { OptionSpec } from "../core/config_schema.ts";
import type { Host, SessionEvent, StanzaEvent } from "../core/hosts.ts";
import { type JID, tryParseJid } from "../core/jid.ts";
import { hostService, type ModuleAPI } from "../core/modules.ts";
import { presenceOf } from "../core/presence_state.ts";
import { Element } from "../core/xml/element.ts";
import { errorReply, reply } from "../core/xml/stanza.ts";
import type { CapsFeaturesEvent } from "./caps.ts";
import { hasFrom, type RosterItem } from "./roster_store.ts";
import { pepNodeConfig } from "./pubsub/config.ts";
import { PubsubError, pubsubErrorReply } from "./pubsub/errors.ts";
import {
  addNodeItems,
  handlePubsub,
  handlePubsubOwner,
  nodeInfoReply,
  NS_PUBSUB,
  NS_PUBSUB_OWNER,
} from "./pubsub/protocol.ts";
import { PubsubService } from "./pubsub/service.ts";
import type { PersonalEventing } from "./pubsub/services.ts";
import { PUBSUB_COMMANDS } from "./pubsub/shell.ts";
import { PUBSUB_MIGRATIONS, PubsubStore } from "./pubsub/storage.ts";

/**
 * Payload of `pep-published`: an item was published to one of an account's PEP nodes (by the
 * account's client, or by a module on its behalf), after it was stored and notified.
 */
export interface PepPublishedEvent {
  host: Host;
  /** The account (local part) whose node it is. */
  user: string;
  node: string;
  /** The item id (generated when the publisher gave none). */
  id: string;
  /** The item's payload element, if it has one. */
  payload: Element | undefined;
  /** The full JID that published it. */
  publisher: string;
}

/**
 * Payload of `pep-items-removed`: items left one of an account's PEP nodes by a retraction
 * (`ids`), or all of them by a purge or the node's deletion (`ids` undefined).
 */
export interface PepItemsRemovedEvent {
  host: Host;
  user: string;
  node: string;
  ids: string[] | undefined;
}

declare module "../core/hosts.ts" {
  interface ModuleEvents {
    "pep-published": PepPublishedEvent;
    "pep-items-removed": PepItemsRemovedEvent;
  }
}

const NS_INFO = "http://jabber.org/protocol/disco#info";
const NS_ITEMS = "http://jabber.org/protocol/disco#items";
const NS_ADDRESS = "http://jabber.org/protocol/address";
/** Remote resources a host tracks the presence of at once; presence from more is not looked at. */
const MAX_REMOTE_RESOURCES = 100_000;

/** One line for module listings. */
export const description =
  "XEP-0163 personal eventing: a pubsub service on every account (OMEMO, avatars, bookmarks)";

/**
 * Caps tells which resources want which nodes; roster and presence decide who shares presence
 * with the owner; disco answers for the account.
 */
export const depends = ["disco", "roster", "presence", "caps"];

/** The tables, shared with the pubsub component (mod/pubsub.ts) under one schema name. */
export const migrations = PUBSUB_MIGRATIONS;
/** See {@link migrations}. */
export const schema = "pubsub";

/** Options the module reads. */
export const options: Record<string, OptionSpec> = {
  pep_max_items: {
    type: "integer",
    default: 256,
    min: 1,
    max: 100_000,
    scope: "host",
    description: "Most items one PEP node keeps (what pubsub#max_items = max means)",
  },
  pep_max_nodes: {
    type: "integer",
    default: 1000,
    min: 1,
    max: 1_000_000,
    scope: "host",
    description: "Most PEP nodes one account may have",
  },
  pep_max_item_size: {
    type: "integer",
    default: 262_144,
    min: 1,
    max: 16_777_216,
    scope: "host",
    description: "Largest PEP item payload in bytes",
  },
};

/** Account disco#info features (XEP-0163 §6.1), without the `pubsub#` prefix. */
const FEATURES = [
  "access-authorize",
  "access-open",
  "access-presence",
  "access-roster",
  "access-whitelist",
  "auto-create",
  "auto-subscribe",
  "config-node",
  "config-node-max",
  "create-and-configure",
  "create-nodes",
  "delete-items",
  "delete-nodes",
  "filtered-notifications",
  "item-ids",
  "last-published",
  "manage-affiliations",
  "manage-subscriptions",
  "member-affiliation",
  "meta-data",
  "modify-affiliations",
  "outcast-affiliation",
  "persistent-items",
  "presence-notifications",
  "publish",
  "publish-options",
  "purge-nodes",
  "retract-items",
  "retrieve-affiliations",
  "retrieve-default",
  "retrieve-default-sub",
  "retrieve-items",
  "retrieve-subscriptions",
  "rsm",
  "subscribe",
  "subscription-options",
];

/** Loads personal eventing on an account host. */
export default function pep(m: ModuleAPI): void {
  if (m.host.kind !== "local") {
    m.log.warn("Module pep serves accounts; idle on component {host}", { host: m.domain });
    return;
  }
  const store = new PubsubStore(m.database);
  const rosters = m.server.storage.map<RosterItem>(m.domain, "roster");
  const maxItemBytes = m.option<number>("pep_max_item_size");
  const maxItemsPerNode = m.option<number>("pep_max_items");
  const maxNodes = m.option<number>("pep_max_nodes");
  const services = new Map<string, PubsubService>();
  /**
   * Contacts' resources whose available presence reached accounts here: full JID -> the
   * accounts. Their caps may become known later (`caps-features`), and the last items follow.
   * Local contacts are recorded while they share presence; remote ones whenever their presence
   * reaches an account (the subscription is checked when they are notified).
   */
  const presenceSeenBy = new Map<string, Set<string>>();
  /**
   * Remote resources in {@link presenceSeenBy}, by bare JID: the server has no sessions for
   * them, so this is how a remote contact's available resources are found.
   */
  const remoteResources = new Map<string, Map<string, JID>>();
  let remoteCount = 0;
  const isRemote = (jid: JID) => m.server.hosts.get(jid.domain) === undefined;
  /** Drops a remote resource whose presence no account here has any more. */
  const untrackRemote = (jid: JID) => {
    const byBare = remoteResources.get(jid.bareString());
    if (!byBare?.delete(jid.toString())) return;
    remoteCount--;
    if (byBare.size === 0) remoteResources.delete(jid.bareString());
  };
  /** The remote contact's resources whose available presence reached `user`. */
  function* remoteResourcesSeenBy(user: string, contactBare: string): Iterable<JID> {
    for (const [full, jid] of remoteResources.get(contactBare) ?? []) {
      if (presenceSeenBy.get(full)?.has(user)) yield jid;
    }
  }
  /**
   * Nodes whose last item a resource got since it became available: full JID -> account ->
   * nodes, so that one presence (or its caps learned later) does not send an item twice.
   */
  const lastSent = new Map<string, Map<string, Set<string>>>();

  /**
   * While a service sends one event to its recipients, the owner's roster read once (the
   * access check and the replyto of each recipient look it up), instead of a read per contact.
   */
  let broadcastRoster: { user: string; items: Map<string, RosterItem> | undefined } | undefined;
  const rosterOf = (user: string): Map<string, RosterItem> => {
    if (broadcastRoster?.user !== user) return rosters.getAll(user);
    return broadcastRoster.items ??= rosters.getAll(user);
  };
  const rosterItem = (user: string, contact: string): RosterItem | undefined => {
    const item = broadcastRoster?.user === user
      ? rosterOf(user).get(contact)
      : rosters.get(user, contact);
    return item && !item.hidden ? item : undefined;
  };
  /** RFC 6121: `contact` is subscribed to `user`'s presence (`from` or `both`). */
  const sharesPresence = (user: string, contact: string) => {
    const item = rosterItem(user, contact);
    return item !== undefined && hasFrom(item.subscription);
  };
  const userOf = (bare: string): string | undefined => {
    const jid = tryParseJid(bare);
    return jid?.local !== undefined && jid.domain === m.domain ? jid.local : undefined;
  };

  /**
   * A resource's caps features, from the caps service of its host when it is local, else from
   * this host's (which learns them from the remote resource's presence to its accounts).
   */
  const featuresOf = (jid: JID): ReadonlySet<string> | undefined => {
    const host = m.server.hosts.get(jid.domain) ?? m.host;
    if (host.kind !== "local") return undefined;
    return hostService(host, "caps")?.featuresOf(jid);
  };

  /** An account's available resources (non-negative priority, XEP-0163 §4.3.2). */
  const availableResources = (domain: string, user: string): JID[] =>
    m.server.sessions.userSessions(domain, user).filter((session) => {
      const presence = presenceOf(session);
      return session.jid !== undefined && presence.available && presence.priority >= 0;
    }).map((session) => session.jid!);

  function serviceOf(user: string): PubsubService {
    let service = services.get(user);
    if (service) return service;
    const ownerBare = `${user}@${m.domain}`;
    service = new PubsubService(ownerBare, store, {
      // §2.2: the account is the only publisher, and owns every node.
      mayCreate: (actor) => actor.bareString() === ownerBare,
      isServiceAdmin: (bare) => bare === ownerBare,
      defaultConfig: () => pepNodeConfig(maxItemBytes),
      rosterGroups: (owner, contact) => {
        const owning = userOf(owner);
        return owning === undefined ? undefined : rosterItem(owning, contact)?.groups;
      },
      hasPresenceSubscription: (owner, contact) => {
        const owning = userOf(owner);
        return owning !== undefined && sharesPresence(owning, contact);
      },
      maxItemBytes,
      maxNodes,
      maxItemsPerNode,
      autoCreateOnPublish: true,
      notify: (message, target) => {
        // §4.3.1 (3): a contact sharing presence learns which resource published.
        const to = tryParseJid(target.recipient);
        if (
          target.publisher !== undefined && to !== undefined &&
          to.bareString() !== ownerBare && sharesPresence(user, to.bareString())
        ) {
          message.c("addresses", { xmlns: NS_ADDRESS })
            .c("address", { type: "replyto", jid: target.publisher });
        }
        m.send(message);
      },
      implicitRecipients: (node) => interestedIn(user, node),
      broadcastStarts: () => {
        broadcastRoster = { user, items: undefined };
      },
      broadcastEnds: () => {
        broadcastRoster = undefined;
      },
      itemsChanged: (change) => {
        if (change.kind === "published") {
          const { node, id, payload, publisher } = change;
          m.host.events.fire("pep-published", { host: m.host, user, node, id, payload, publisher });
        } else {
          const { node, ids } = change;
          m.host.events.fire("pep-items-removed", { host: m.host, user, node, ids });
        }
      },
    });
    services.set(user, service);
    return service;
  }

  /**
   * The resources that asked for `node` with `+notify`: the owner's, and those of contacts
   * subscribed to the owner's presence: local ones (the server knows their presence and caps
   * first hand), and remote ones whose available presence and caps reached the owner.
   */
  function* interestedIn(user: string, node: string): Iterable<string> {
    const wanted = `${node}+notify`;
    for (const jid of availableResources(m.domain, user)) {
      if (featuresOf(jid)?.has(wanted)) yield jid.toString();
    }
    for (const [contact, item] of rosterOf(user)) {
      if (item.hidden || !hasFrom(item.subscription)) continue;
      if (remoteResources.has(contact)) {
        for (const resource of remoteResourcesSeenBy(user, contact)) {
          if (featuresOf(resource)?.has(wanted)) yield resource.toString();
        }
        continue;
      }
      const jid = tryParseJid(contact);
      if (jid?.local === undefined || m.server.hosts.get(jid.domain)?.kind !== "local") continue;
      for (const resource of availableResources(jid.domain, jid.local)) {
        if (featuresOf(resource)?.has(wanted)) yield resource.toString();
      }
    }
  }

  /** Sends the last item of each node `resource` asked for and has not had yet (§4.3.4). */
  function sendLastItems(user: string, resource: JID): void {
    const features = featuresOf(resource);
    if (!features) return;
    const service = serviceOf(user);
    const full = resource.toString();
    let sent = lastSent.get(full)?.get(user);
    for (const node of service.nodes()) {
      if (!features.has(`${node.node}+notify`) || sent?.has(node.node)) continue;
      if (service.sendLastPublished(node.node, resource)) {
        if (!sent) {
          sent = new Set();
          const byUser = lastSent.get(full);
          if (byUser) byUser.set(user, sent);
          else lastSent.set(full, new Map([[user, sent]]));
        }
        sent.add(node.node);
      }
    }
  }

  /** The resource's presence session with `user` ended: its next one gets the last items again. */
  const forgetResource = (user: string, full: string) => {
    const byUser = lastSent.get(full);
    if (byUser?.delete(user) && byUser.size === 0) lastSent.delete(full);
  };

  m.addAccountIdentity("pubsub", "pep");
  m.addAccountFeature(NS_PUBSUB);
  for (const feature of FEATURES) m.addAccountFeature(`${NS_PUBSUB}#${feature}`);

  // ---------- iqs: the owner's own (`self`), and anyone's to an account (`bare`) ----------

  /** The account an iq addresses: the sender's own for `self`, else the `to`. */
  const targetUser = (event: StanzaEvent, self: boolean): string | undefined => {
    if (self) {
      const jid = event.origin.jid ?? tryParseJid(event.stanza.attrs.from ?? "");
      return jid?.domain === m.domain ? jid.local : undefined;
    }
    const to = tryParseJid(event.stanza.attrs.to ?? "");
    if (!to?.local || to.domain !== m.domain) return undefined;
    return m.server.accounts.exists(m.domain, to.local) ? to.local : undefined;
  };

  const answer = (
    event: StanzaEvent,
    self: boolean,
    handle: (service: PubsubService, actor: JID) => Element,
  ): boolean => {
    const { stanza, origin } = event;
    const user = targetUser(event, self);
    if (user === undefined) return false;
    const actor = tryParseJid(stanza.attrs.from ?? "") ?? origin.jid;
    if (!actor) {
      origin.send(errorReply(stanza, "jid-malformed"));
      return true;
    }
    try {
      const result = handle(serviceOf(user), actor);
      origin.send(result);
    } catch (error) {
      if (!(error instanceof PubsubError)) throw error;
      origin.send(pubsubErrorReply(stanza, error));
    }
    return true;
  };
  const user = (self: boolean) => (event: StanzaEvent) =>
    answer(event, self, (service, actor) => handlePubsub(service, event.stanza, actor));
  const owner = (self: boolean) => (event: StanzaEvent) =>
    answer(event, self, (service, actor) => handlePubsubOwner(service, event.stanza, actor));
  m.hook(`iq-get/self/${NS_PUBSUB}:pubsub`, user(true));
  m.hook(`iq-set/self/${NS_PUBSUB}:pubsub`, user(true));
  m.hook(`iq-get/self/${NS_PUBSUB_OWNER}:pubsub`, owner(true));
  m.hook(`iq-set/self/${NS_PUBSUB_OWNER}:pubsub`, owner(true));
  m.hook(`iq-get/bare/${NS_PUBSUB}:pubsub`, user(false));
  m.hook(`iq-set/bare/${NS_PUBSUB}:pubsub`, user(false));
  m.hook(`iq-get/bare/${NS_PUBSUB_OWNER}:pubsub`, owner(false));
  m.hook(`iq-set/bare/${NS_PUBSUB_OWNER}:pubsub`, owner(false));

  // ---------- disco: a node's info, and the nodes an asker may see (§6.2) ----------

  const nodeInfo = (self: boolean) => (event: StanzaEvent) => {
    const { stanza, origin } = event;
    const name = stanza.firstElement()?.attrs.node;
    if (name === undefined) return false;
    const user = targetUser(event, self);
    if (user === undefined) return false;
    const service = serviceOf(user);
    const node = service.findNode(name);
    const asker = tryParseJid(stanza.attrs.from ?? "") ?? origin.jid;
    if (!node || !asker || service.accessError(node, asker.bareString())) {
      origin.send(errorReply(stanza, "item-not-found"));
      return true;
    }
    origin.send(nodeInfoReply(stanza, service, node));
    return true;
  };
  const nodeItems = (self: boolean) => (event: StanzaEvent) => {
    const { stanza, origin } = event;
    const user = targetUser(event, self);
    if (user === undefined) return false;
    const service = serviceOf(user);
    const asker = tryParseJid(stanza.attrs.from ?? "") ?? origin.jid;
    const name = stanza.firstElement()?.attrs.node;
    const result = reply(stanza);
    const query = result.c("query", { xmlns: NS_ITEMS, node: name });
    try {
      if (!asker) throw new PubsubError("jid-malformed");
      if (name === undefined) {
        for (const item of m.host.accountDisco.items()) query.c("item", { ...item });
        for (const node of service.nodes()) {
          if (service.accessError(node, asker.bareString())) continue;
          query.c("item", {
            jid: service.jid,
            node: node.node,
            name: node.config.title || undefined,
          });
        }
      } else {
        addNodeItems(query, service, asker, name);
      }
      origin.send(result);
    } catch (error) {
      if (!(error instanceof PubsubError)) throw error;
      origin.send(pubsubErrorReply(stanza, error));
    }
    return true;
  };
  m.hook(`iq-get/self/${NS_INFO}:query`, nodeInfo(true), 10);
  m.hook(`iq-get/bare/${NS_INFO}:query`, nodeInfo(false), 10);
  m.hook(`iq-get/self/${NS_ITEMS}:query`, nodeItems(true), 10);
  m.hook(`iq-get/bare/${NS_ITEMS}:query`, nodeItems(false), 10);

  // ---------- presence: who gets notifications, and the last items on coming online ----------

  // A contact's presence reaching an account (broadcast to the bare JID, or directed to one of
  // its resources): only a contact subscribed to the account's presence shares presence with
  // it (XEP-0163 §4), so only its resources become recipients and get the last items.
  const contactPresence = ({ stanza }: StanzaEvent) => {
    const type = stanza.attrs.type;
    const to = tryParseJid(stanza.attrs.to ?? "");
    const from = tryParseJid(stanza.attrs.from ?? "");
    // A contact ending its subscription to the account's presence may lose access (§7.1).
    if (type === "unsubscribe" && to?.local !== undefined && to.domain === m.domain && from) {
      recheckLater(to.local, from.bareString());
      return false;
    }
    if (type !== undefined && type !== "unavailable") return false;
    if (!to?.local || to.domain !== m.domain || from?.resource === undefined) return false;
    const remote = isRemote(from);
    if (!remote && m.server.hosts.get(from.domain)?.kind !== "local") return false;
    const user = to.local;
    const full = from.toString();
    if (from.bareString() === to.bareString()) return false;
    const seenBy = presenceSeenBy.get(full);
    if (type === "unavailable") {
      if (seenBy?.delete(user) && seenBy.size === 0) {
        presenceSeenBy.delete(full);
        if (remote) untrackRemote(from);
      }
      forgetResource(user, full);
      return false;
    }
    if (remote) {
      // Tracked whatever the subscription: an approval may come after the presence.
      if (!m.server.accounts.exists(m.domain, user)) return false;
      if (seenBy) seenBy.add(user);
      else {
        if (remoteCount >= MAX_REMOTE_RESOURCES) return false;
        presenceSeenBy.set(full, new Set([user]));
        const byBare = remoteResources.get(from.bareString());
        if (byBare) byBare.set(full, from);
        else remoteResources.set(from.bareString(), new Map([[full, from]]));
        remoteCount++;
      }
      if (sharesPresence(user, from.bareString())) sendLastItems(user, from);
      return false;
    }
    if (!sharesPresence(user, from.bareString())) return false;
    if (!m.server.accounts.exists(m.domain, user)) return false;
    if (seenBy) seenBy.add(user);
    else presenceSeenBy.set(full, new Set([user]));
    sendLastItems(user, from);
    return false;
  };
  m.hook("presence/bare", contactPresence, 5);
  m.hook("presence/full", contactPresence, 5);

  // The owner approving a contact's subscription makes the contact a new (implicit) subscriber:
  // its online resources get the last items they asked for (XEP-0163 §4.3.4). The presence
  // module changes the roster after this hook, so the check waits for the routing to finish.
  m.hook("pre-presence/bare", ({ stanza, origin }: StanzaEvent) => {
    if (stanza.attrs.type !== "subscribed" || origin.kind !== "c2s") return false;
    const user = origin.jid?.domain === m.domain ? origin.jid.local : undefined;
    const contact = tryParseJid(stanza.attrs.to ?? "");
    if (user === undefined || contact?.local === undefined) return false;
    const contactBare = contact.bareString();
    if (sharesPresence(user, contactBare)) return false;
    queueMicrotask(() => {
      if (!sharesPresence(user, contactBare)) return;
      for (const resource of remoteResourcesSeenBy(user, contactBare)) {
        sendLastItems(user, resource);
      }
      if (m.server.hosts.get(contact.domain)?.kind !== "local") return;
      for (const resource of availableResources(contact.domain, contact.local!)) {
        sendLastItems(user, resource);
      }
    });
    return false;
  }, 5);

  /**
   * XEP-0163 §7.1: when a presence subscription or roster item changes, a contact's explicit
   * subscriptions to nodes it may no longer see are cancelled.
   */
  function recheckSubscriptions(user: string, contactBare: string): void {
    const contact = tryParseJid(contactBare);
    if (!contact || store.nodeCount(`${user}@${m.domain}`) === 0) return;
    const service = serviceOf(user);
    const owner = tryParseJid(service.jid)!;
    for (const subscription of service.subscriptionsOf(contact)) {
      const node = service.findNode(subscription.node);
      if (!node || !service.accessError(node, contactBare)) continue;
      const subscriber = tryParseJid(subscription.jid);
      if (!subscriber) continue;
      service.unsubscribe(owner, node.node, subscriber);
      m.log.debug("Cancelled {jid}'s subscription to {node} of {user}: access lost", {
        jid: subscription.jid,
        node: node.node,
        user,
      });
    }
  }
  /** Rechecks after the stanza's own handling (the presence or roster module) is done. */
  const recheckLater = (user: string, contactBare: string) =>
    queueMicrotask(() => recheckSubscriptions(user, contactBare));

  // The owner cancels a contact's subscription, or changes its roster (groups, removal).
  m.hook("pre-presence/bare", ({ stanza, origin }: StanzaEvent) => {
    if (stanza.attrs.type !== "unsubscribed" || origin.kind !== "c2s") return false;
    const to = tryParseJid(stanza.attrs.to ?? "");
    if (origin.jid?.local !== undefined && origin.jid.domain === m.domain && to) {
      recheckLater(origin.jid.local, to.bareString());
    }
    return false;
  }, 5);
  m.hook("iq-set/self/jabber:iq:roster:query", ({ stanza, origin }: StanzaEvent) => {
    if (origin.jid?.local === undefined || origin.jid.domain !== m.domain) return false;
    for (const item of stanza.firstElement()?.elements() ?? []) {
      const jid = tryParseJid(item.attrs.jid ?? "");
      if (jid) recheckLater(origin.jid.local, jid.bareString());
    }
    return false;
  }, 5);

  // The owner's own resource coming online (its initial presence, also after an unavailable
  // one) gets the last items it asked for, once the presence module has recorded it: after
  // the caps module (priority 10) and before the presence module, which takes the stanza.
  m.hook("presence/self", ({ stanza, origin }: StanzaEvent) => {
    const jid = origin.jid;
    if (origin.kind !== "c2s" || jid?.local === undefined || jid.domain !== m.domain) return false;
    const type = stanza.attrs.type;
    if (type === "unavailable") forgetResource(jid.local, jid.toString());
    if (type !== undefined || presenceOf(origin).available) return false;
    queueMicrotask(() => {
      const presence = presenceOf(origin);
      if (presence.available && presence.priority >= 0) sendLastItems(jid.local!, jid);
    });
    return false;
  }, 5);
  m.hook("resource-unbind", ({ session }: SessionEvent) => {
    const jid = session.jid;
    if (jid === undefined) return;
    lastSent.delete(jid.toString());
    presenceSeenBy.delete(jid.toString());
  });

  // Features learned after the presence (an unseen caps hash): the last items follow now, for
  // the resource's own account and for every account it shares presence with here.
  m.hook("caps-features", ({ jid }: CapsFeaturesEvent) => {
    if (jid.local !== undefined && jid.domain === m.domain) {
      const session = m.server.sessions.get(jid);
      if (session && presenceOf(session).available && presenceOf(session).priority >= 0) {
        sendLastItems(jid.local, jid);
      }
    }
    for (const user of presenceSeenBy.get(jid.toString()) ?? []) {
      if (sharesPresence(user, jid.bareString())) sendLastItems(user, jid);
    }
  });

  // ---------- accounts that go ----------

  /** Removes a deleted account's nodes and items. */
  const purge = (user: string) => {
    store.deleteService(`${user}@${m.domain}`);
    services.delete(user);
  };
  m.hook("account-purged", ({ user }) => purge(user));
  // Accounts deleted while the server was stopped (`lilt user delete`) leave nodes behind.
  for (const service of store.servicesEndingWith(`@${m.domain}`)) {
    const owner = userOf(service);
    if (owner !== undefined && !m.server.accounts.exists(m.domain, owner)) purge(owner);
  }

  const eventing: PersonalEventing = {
    serviceOf,
    users: () =>
      store.servicesEndingWith(`@${m.domain}`).map(userOf)
        .filter((u): u is string => u !== undefined),
  };
  m.provide("pep", eventing);
  // The admin shell's pubsub section reaches accounts' nodes through the service above.
  m.shellCommands(PUBSUB_COMMANDS);
  m.onUnload(() => {
    services.clear();
    presenceSeenBy.clear();
    remoteResources.clear();
    remoteCount = 0;
    lastSent.clear();
  });
}
