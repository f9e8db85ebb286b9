// XEP-0060 publish-subscribe as a service Lilt hosts itself: load it on a `[[component]]`
// (`pubsub.HOST`, modules = ["disco", "pubsub"]). The engine in mod/pubsub/ does the work; this
// file wires iqs, disco and the component's policy (who may create nodes, limits, rosters).

import type { OptionSpec } from "../core/config_schema.ts";
import type { StanzaEvent } from "../core/hosts.ts";
import { type JID, tryParseJid } from "../core/jid.ts";
import type { ModuleAPI } from "../core/modules.ts";
import type { Element } from "../core/xml/element.ts";
import { errorReply, isError, reply } from "../core/xml/stanza.ts";
import { CAPS_NODE } from "./disco.ts";
import type { RosterItem } from "./roster_store.ts";
import { defaultNodeConfig } from "./pubsub/config.ts";
import { PubsubError, pubsubErrorReply } from "./pubsub/errors.ts";
import {
  addNodeItems,
  authorizationAnswer,
  handlePubsub,
  handlePubsubOwner,
  nodeInfoReply,
  NS_PUBSUB,
  NS_PUBSUB_OWNER,
} from "./pubsub/protocol.ts";
import { PubsubService } from "./pubsub/service.ts";
import { PUBSUB_COMMANDS } from "./pubsub/shell.ts";
import { PUBSUB_MIGRATIONS, PubsubStore } from "./pubsub/storage.ts";

const NS_INFO = "http://jabber.org/protocol/disco#info";
const NS_ITEMS = "http://jabber.org/protocol/disco#items";

/** One line for module listings. */
export const description = "XEP-0060 publish-subscribe service (load on a [[component]])";

/** The module's own tables. */
export const migrations = PUBSUB_MIGRATIONS;
/** The tables are shared with PEP (mod/pep.ts), which names the same schema. */
export const schema = "pubsub";

/** Options the module reads. */
export const options: Record<string, OptionSpec> = {
  pubsub_create: {
    type: "enum",
    default: "local",
    values: ["local", "admins", "anyone"],
    scope: "host",
    description:
      "Who may create pubsub nodes: accounts of this server's hosts (local), their admins, or anyone",
  },
  pubsub_max_item_size: {
    type: "integer",
    default: 262_144,
    min: 1,
    max: 16_777_216,
    scope: "host",
    description: "Largest pubsub item payload in bytes",
  },
  pubsub_max_nodes: {
    type: "integer",
    default: 10_000,
    min: 1,
    max: 10_000_000,
    scope: "host",
    description: "Most nodes one pubsub service may hold",
  },
  pubsub_max_items: {
    type: "integer",
    default: 256,
    min: 1,
    max: 1_000_000,
    scope: "host",
    description: "Most items a pubsub node may keep (what pubsub#max_items = max means)",
  },
  pubsub_autocreate_on_publish: {
    type: "boolean",
    default: false,
    scope: "host",
    description: "Publishing to a node that does not exist creates it (XEP-0060 §7.1.4)",
  },
};

/** The disco features of what the engine implements, without the `pubsub#` prefix. */
const FEATURES = [
  "access-authorize",
  "access-open",
  "access-presence",
  "access-roster",
  "access-whitelist",
  "config-node",
  "config-node-max",
  "create-and-configure",
  "create-nodes",
  "delete-items",
  "delete-nodes",
  "instant-nodes",
  "item-ids",
  "last-published",
  "manage-affiliations",
  "manage-subscriptions",
  "member-affiliation",
  "meta-data",
  "modify-affiliations",
  "outcast-affiliation",
  "persistent-items",
  "publish",
  "publish-only-affiliation",
  "publish-options",
  "publisher-affiliation",
  "purge-nodes",
  "retract-items",
  "retrieve-affiliations",
  "retrieve-default",
  "retrieve-default-sub",
  "retrieve-items",
  "rsm",
  "retrieve-subscriptions",
  "subscribe",
  "subscription-options",
  "subscription-notifications",
];

/** Loads the publish-subscribe service on a component. */
export default function pubsub(m: ModuleAPI): void {
  // A host's own address answers for the server; accounts get PEP from their bare JIDs (the
  // pep module, sharing these tables). The service belongs on a component, so on a host the
  // module stays idle.
  if (m.host.kind === "local") {
    m.log.debug("Module pubsub serves a [[component]] (e.g. pubsub.{host}); idle on host {host}", {
      host: m.domain,
    });
    return;
  }
  const store = new PubsubStore(m.database);
  const createPolicy = m.option<"local" | "admins" | "anyone">("pubsub_create");
  const maxItemBytes = m.option<number>("pubsub_max_item_size");
  const maxItemsPerNode = m.option<number>("pubsub_max_items");
  const autoCreate = m.option<boolean>("pubsub_autocreate_on_publish");

  const isLocalAccount = (jid: JID) =>
    jid.local !== undefined && m.server.hosts.get(jid.domain)?.kind === "local";
  const isAdmin = (bare: string) => {
    const jid = tryParseJid(bare);
    if (!jid || jid.local === undefined) return false;
    if (m.hostOption("admins").includes(bare)) return true;
    const home = m.server.hosts.get(jid.domain);
    return home?.kind === "local" &&
      m.server.config.hostOption(jid.domain, "admins").includes(bare);
  };
  /** `contact`'s entry in the roster of `owner`, when the owner is an account here. */
  const rosterItem = (owner: string, contact: string): RosterItem | undefined => {
    const jid = tryParseJid(owner);
    if (!jid?.local || m.server.hosts.get(jid.domain)?.kind !== "local") return undefined;
    const item = m.server.storage.map<RosterItem>(jid.domain, "roster").get(jid.local, contact);
    return item && !item.hidden ? item : undefined;
  };

  const service = new PubsubService(m.domain, store, {
    mayCreate: (actor) =>
      createPolicy === "anyone" ||
      (createPolicy === "local" && isLocalAccount(actor)) ||
      isAdmin(actor.bareString()),
    isServiceAdmin: isAdmin,
    defaultConfig: () => ({
      ...defaultNodeConfig(maxItemBytes),
      maxItems: Math.min(10, maxItemsPerNode),
    }),
    rosterGroups: (owner, contact) => rosterItem(owner, contact)?.groups,
    hasPresenceSubscription: (owner, contact) => {
      const subscription = rosterItem(owner, contact)?.subscription;
      return subscription === "from" || subscription === "both";
    },
    maxItemBytes,
    maxNodes: m.option<number>("pubsub_max_nodes"),
    maxItemsPerNode,
    autoCreateOnPublish: autoCreate,
    notify: (message) => m.send(message),
  });
  m.provide("pubsub", { service });
  m.shellCommands(PUBSUB_COMMANDS);

  m.addIdentity("pubsub", "service", "Publish-Subscribe");
  m.addFeature(NS_PUBSUB);
  for (const feature of FEATURES) m.addFeature(`${NS_PUBSUB}#${feature}`);
  if (autoCreate) m.addFeature(`${NS_PUBSUB}#auto-create`);

  const answer = (
    { stanza, origin }: StanzaEvent,
    handle: (actor: JID) => Element,
  ): true => {
    const actor = tryParseJid(stanza.attrs.from ?? "");
    if (!actor) {
      origin.send(errorReply(stanza, "jid-malformed"));
      return true;
    }
    try {
      origin.send(handle(actor));
    } catch (error) {
      if (!(error instanceof PubsubError)) throw error;
      origin.send(pubsubErrorReply(stanza, error));
    }
    return true;
  };
  const user = (event: StanzaEvent) =>
    answer(event, (actor) => handlePubsub(service, event.stanza, actor));
  const owner = (event: StanzaEvent) =>
    answer(event, (actor) => handlePubsubOwner(service, event.stanza, actor));
  m.hook(`iq-get/host/${NS_PUBSUB}:pubsub`, user);
  m.hook(`iq-set/host/${NS_PUBSUB}:pubsub`, user);
  m.hook(`iq-get/host/${NS_PUBSUB_OWNER}:pubsub`, owner);
  m.hook(`iq-set/host/${NS_PUBSUB_OWNER}:pubsub`, owner);

  // An owner's answer to a subscription approval form (XEP-0060 §8.6).
  m.hook("message/host", ({ stanza }: StanzaEvent) => {
    if (isError(stanza)) return true;
    const answered = authorizationAnswer(stanza);
    const actor = tryParseJid(stanza.attrs.from ?? "");
    if (!answered || !actor) return false;
    try {
      service.answerAuthorization(actor, answered.node, answered.subscriber, answered.allow);
    } catch (error) {
      if (!(error instanceof PubsubError)) throw error;
      m.log.info("Ignored a subscription approval from {actor}: {error}", {
        actor: actor.toString(),
        error: error.message,
      });
    }
    return true;
  });

  // disco#info and disco#items of a node (XEP-0060 §5.2–5.5); the service itself is the
  // disco module's, so these run first and only take queries that name a node.
  m.hook(`iq-get/host/${NS_INFO}:query`, ({ stanza, origin }: StanzaEvent) => {
    const name = stanza.firstElement()?.attrs.node;
    if (name === undefined) return false;
    const node = service.findNode(name);
    // The component's own caps node (XEP-0115) is the disco module's.
    if (!node && name.startsWith(`${CAPS_NODE}#`)) return false;
    if (!node) {
      origin.send(errorReply(stanza, "item-not-found"));
      return true;
    }
    origin.send(nodeInfoReply(stanza, service, node));
    return true;
  }, 10);
  m.hook(`iq-get/host/${NS_ITEMS}:query`, ({ stanza, origin }: StanzaEvent) => {
    const name = stanza.firstElement()?.attrs.node;
    const result = reply(stanza);
    const query = result.c("query", { xmlns: NS_ITEMS, node: name });
    if (name === undefined) {
      for (const node of service.nodes()) {
        query.c("item", { jid: m.domain, node: node.node, name: node.config.title || undefined });
      }
      origin.send(result);
      return true;
    }
    const actor = tryParseJid(stanza.attrs.from ?? "");
    try {
      if (!actor) throw new PubsubError("jid-malformed");
      addNodeItems(query, service, actor, name);
      origin.send(result);
    } catch (error) {
      if (!(error instanceof PubsubError)) throw error;
      origin.send(pubsubErrorReply(stanza, error));
    }
    return true;
  }, 10);
}
