// The XEP-0060 wire protocol: reads a `pubsub` or `pubsub#owner` iq, calls the engine, and
// builds the result element. Malformed requests become errors here, never reach the engine.

import { type JID, tryParseJid } from "../../core/jid.ts";
import { Element } from "../../core/xml/element.ts";
import { reply } from "../../core/xml/stanza.ts";
import {
  formFields,
  metaDataForm,
  NODE_CONFIG_FORM,
  PUBLISH_OPTIONS_FORM,
  SUBSCRIBE_OPTIONS_FORM,
  subscribeOptionsForm,
} from "./config.ts";
import { PubsubError } from "./errors.ts";
import type { PubsubService } from "./service.ts";
import type { StoredNode } from "./storage.ts";

/** The pubsub namespace (XEP-0060 §5–7). */
export const NS_PUBSUB = "http://jabber.org/protocol/pubsub";
/** The owner namespace (XEP-0060 §8). */
export const NS_PUBSUB_OWNER = "http://jabber.org/protocol/pubsub#owner";
const NS_DATA = "jabber:x:data";
const NS_RSM = "http://jabber.org/protocol/rsm";

/** The `jid` attribute parsed, undefined when absent; a malformed one is jid-malformed. */
function jidAttr(el: Element): JID | undefined {
  const text = el.attrs.jid;
  if (text === undefined) return undefined;
  const jid = tryParseJid(text);
  if (!jid) {
    throw new PubsubError("jid-malformed", undefined, { text: `Cannot parse JID '${text}'` });
  }
  return jid;
}

function requiredJid(el: Element): JID {
  const jid = jidAttr(el);
  if (!jid) throw new PubsubError("bad-request", undefined, { text: "Each entry needs a 'jid'" });
  return jid;
}

/** The fields of a `jabber:x:data` submit form with the expected FORM_TYPE, if present. */
function submittedForm(
  parent: Element | undefined,
  formType: string,
): Map<string, string[]> | undefined {
  const form = parent?.getChild("x", NS_DATA);
  if (!form || form.attrs.type === "cancel") return undefined;
  const fields = formFields(form);
  const type = fields.get("FORM_TYPE")?.[0];
  if (type !== undefined && type !== formType) {
    throw new PubsubError("bad-request", undefined, {
      text: `Expected a form of type '${formType}', found '${type}'`,
    });
  }
  return fields;
}

function parseMaxItems(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d{1,9}$/.test(text) || Number(text) < 1) {
    throw new PubsubError("bad-request", undefined, {
      text: `max_items expected a positive integer, found '${text}'`,
    });
  }
  return Number(text);
}

/**
 * Handles an iq get/set whose payload is `<pubsub xmlns='…pubsub'>` from `actor`, and returns
 * the result to send. Throws {@link PubsubError} for any failure.
 */
export function handlePubsub(service: PubsubService, stanza: Element, actor: JID): Element {
  const pubsub = stanza.getChild("pubsub", NS_PUBSUB)!;
  const isSet = stanza.attrs.type === "set";
  const answer = reply(stanza);
  // `<options/>` beside `<subscribe/>` configures it (§6.3.7); alone it is the request.
  const children = pubsub.elements().filter((el) =>
    el.ns === NS_PUBSUB && el.name !== "configure" && el.name !== "publish-options"
  );
  const action = children.find((el) => el.name !== "options") ?? children[0];
  if (!action) {
    throw new PubsubError("bad-request", undefined, { text: "The pubsub element is empty" });
  }
  const node = action.attrs.node;
  switch (`${isSet ? "set" : "get"}:${action.name}`) {
    case "set:create": {
      const fields = submittedForm(pubsub.getChild("configure", NS_PUBSUB), NODE_CONFIG_FORM);
      const created = service.create(actor, node, fields);
      if (node === undefined) {
        answer.c("pubsub", { xmlns: NS_PUBSUB }).c("create", { node: created });
      }
      return answer;
    }
    case "set:publish": {
      const items = action.getChildren("item", NS_PUBSUB);
      if (items.length > 1) {
        throw new PubsubError("bad-request", "invalid-payload", {
          text: "Publish one item per request",
        });
      }
      const item = items[0];
      const options = submittedForm(
        pubsub.getChild("publish-options", NS_PUBSUB),
        PUBLISH_OPTIONS_FORM,
      );
      const published = service.publish(actor, node, {
        id: item?.attrs.id,
        payload: item?.elements() ?? [],
        hasItem: item !== undefined,
        options,
      });
      answer.c("pubsub", { xmlns: NS_PUBSUB }).c("publish", { node: published.node })
        .c("item", { id: published.id });
      return answer;
    }
    case "set:retract": {
      const items = action.getChildren("item", NS_PUBSUB);
      if (items.length !== 1) throw new PubsubError("bad-request", "item-required");
      const notify = action.attrs.notify === "true" || action.attrs.notify === "1";
      service.retract(actor, node, items[0].attrs.id, notify);
      return answer;
    }
    case "set:subscribe": {
      const optionsEl = pubsub.getChild("options", NS_PUBSUB);
      const options = submittedForm(optionsEl, SUBSCRIBE_OPTIONS_FORM);
      const subscription = service.subscribe(actor, node, jidAttr(action), options);
      const out = answer.c("pubsub", { xmlns: NS_PUBSUB });
      // §6.1.5: options are supported (not required) on this subscription.
      out.c("subscription", {
        node: subscription.node,
        jid: subscription.jid,
        subid: subscription.subid,
        subscription: subscription.state,
      }).c("subscribe-options");
      if (options !== undefined) {
        // §6.3.7: the options now in force.
        out.c("options", { node: subscription.node, jid: subscription.jid }).append(
          subscribeOptionsForm(
            service.subscriptionOptions(actor, subscription.node, jidAttr(action)),
            "result",
          ),
        );
      }
      return answer;
    }
    case "set:unsubscribe":
      service.unsubscribe(actor, node, jidAttr(action), action.attrs.subid);
      return answer;
    case "get:options": {
      const jid = jidAttr(action);
      const options = service.subscriptionOptions(actor, node, jid, action.attrs.subid);
      answer.c("pubsub", { xmlns: NS_PUBSUB }).c("options", {
        node,
        jid: jid?.toString(),
        subid: action.attrs.subid,
      }).append(subscribeOptionsForm(options));
      return answer;
    }
    case "set:options": {
      const fields = submittedForm(action, SUBSCRIBE_OPTIONS_FORM);
      if (fields === undefined) {
        throw new PubsubError("bad-request", "invalid-options", {
          text: "The options element has no submitted form",
        });
      }
      service.setSubscriptionOptions(actor, node, jidAttr(action), action.attrs.subid, fields);
      return answer;
    }
    case "get:default":
      answer.c("pubsub", { xmlns: NS_PUBSUB }).c("default", { node }).append(
        subscribeOptionsForm(service.defaultSubscriptionOptions(node)),
      );
      return answer;
    case "get:items": {
      const rsm = pubsub.getChild("set", NS_RSM);
      if (rsm) return itemsPageAnswer(service, actor, node, rsm, answer);
      const ids = action.getChildren("item", NS_PUBSUB).map((item) => item.attrs.id)
        .filter((id): id is string => id !== undefined);
      const items = service.items(actor, node, {
        ids: ids.length > 0 ? ids : undefined,
        max: parseMaxItems(action.attrs.max_items),
      });
      const out = answer.c("pubsub", { xmlns: NS_PUBSUB }).c("items", { node });
      for (const item of items) {
        const el = out.c("item", { id: item.id, publisher: item.publisher });
        if (item.payload) el.append(item.payload);
      }
      return answer;
    }
    case "get:subscriptions": {
      const out = answer.c("pubsub", { xmlns: NS_PUBSUB }).c("subscriptions", { node });
      for (const s of service.subscriptionsOf(actor, node)) {
        out.c("subscription", { node: s.node, jid: s.jid, subid: s.subid, subscription: s.state });
      }
      return answer;
    }
    case "get:affiliations": {
      const out = answer.c("pubsub", { xmlns: NS_PUBSUB }).c("affiliations", { node });
      for (const [name, affiliation] of service.affiliationsOf(actor, node)) {
        out.c("affiliation", { node: name, affiliation });
      }
      return answer;
    }
    default:
      throw new PubsubError("feature-not-implemented", "unsupported", {
        feature: action.name,
        text: `Unsupported pubsub request '${action.name}' in an iq ${stanza.attrs.type}`,
      });
  }
}

/** Answers an items request with XEP-0059 paging (`<set/>` beside `<items/>`). */
function itemsPageAnswer(
  service: PubsubService,
  actor: JID,
  node: string | undefined,
  rsm: Element,
  answer: Element,
): Element {
  const maxText = rsm.getChildText("max", NS_RSM);
  if (maxText !== undefined && !/^\d{1,9}$/.test(maxText)) {
    throw new PubsubError("bad-request", undefined, {
      text: `RSM max expected a non-negative integer, found '${maxText}'`,
    });
  }
  const max = maxText === undefined ? service.limits.maxItemsPerNode : Number(maxText);
  const page = service.itemsPage(actor, node, {
    max,
    after: rsm.getChildText("after", NS_RSM),
    before: rsm.getChildText("before", NS_RSM),
  });
  const out = answer.c("pubsub", { xmlns: NS_PUBSUB });
  const items = out.c("items", { node });
  for (const item of page.items) {
    const el = items.c("item", { id: item.id, publisher: item.publisher });
    if (item.payload) el.append(item.payload);
  }
  const set = out.c("set", { xmlns: NS_RSM });
  const first = page.items[0];
  const last = page.items.at(-1);
  if (first && last) {
    set.c("first", { index: String(page.firstIndex ?? 0) }).t(first.id);
    set.c("last").t(last.id);
  }
  set.c("count").t(String(page.count));
  return answer;
}

/**
 * Handles an iq get/set whose payload is `<pubsub xmlns='…pubsub#owner'>` (XEP-0060 §8) and
 * returns the result to send. Throws {@link PubsubError} for any failure.
 */
export function handlePubsubOwner(service: PubsubService, stanza: Element, actor: JID): Element {
  const pubsub = stanza.getChild("pubsub", NS_PUBSUB_OWNER)!;
  const isSet = stanza.attrs.type === "set";
  const answer = reply(stanza);
  const action = pubsub.elements().find((el) => el.ns === NS_PUBSUB_OWNER);
  if (!action) {
    throw new PubsubError("bad-request", undefined, { text: "The pubsub element is empty" });
  }
  const node = action.attrs.node;
  switch (`${isSet ? "set" : "get"}:${action.name}`) {
    case "get:configure":
      answer.c("pubsub", { xmlns: NS_PUBSUB_OWNER }).c("configure", { node })
        .append(service.configForm(actor, node));
      return answer;
    case "set:configure": {
      const form = action.getChild("x", NS_DATA);
      if (!form) {
        throw new PubsubError("bad-request", undefined, {
          text: "The configure element has no form",
        });
      }
      const fields = submittedForm(action, NODE_CONFIG_FORM);
      // A cancelled form changes nothing (§8.2.5), but the node must still exist and be theirs.
      if (fields === undefined) service.configForm(actor, node);
      else service.configure(actor, node, fields);
      return answer;
    }
    case "get:default":
      answer.c("pubsub", { xmlns: NS_PUBSUB_OWNER }).c("default")
        .append(service.defaultConfigForm());
      return answer;
    case "set:delete":
      service.delete(actor, node, action.getChild("redirect", NS_PUBSUB_OWNER)?.attrs.uri);
      return answer;
    case "set:purge":
      service.purge(actor, node);
      return answer;
    case "get:subscriptions": {
      const out = answer.c("pubsub", { xmlns: NS_PUBSUB_OWNER }).c("subscriptions", { node });
      for (const s of service.nodeSubscriptions(actor, node)) {
        out.c("subscription", { jid: s.jid, subscription: s.state, subid: s.subid });
      }
      return answer;
    }
    case "set:subscriptions": {
      const changes = action.getChildren("subscription", NS_PUBSUB_OWNER).map((el) => ({
        jid: requiredJid(el),
        state: el.attrs.subscription ?? "",
      }));
      service.setNodeSubscriptions(actor, node, changes);
      return answer;
    }
    case "get:affiliations": {
      const out = answer.c("pubsub", { xmlns: NS_PUBSUB_OWNER }).c("affiliations", { node });
      for (const [jid, affiliation] of service.nodeAffiliations(actor, node)) {
        out.c("affiliation", { jid, affiliation });
      }
      return answer;
    }
    case "set:affiliations": {
      const changes = action.getChildren("affiliation", NS_PUBSUB_OWNER).map((el) => ({
        jid: requiredJid(el),
        affiliation: el.attrs.affiliation ?? "",
      }));
      service.setNodeAffiliations(actor, node, changes);
      return answer;
    }
    default:
      throw new PubsubError("feature-not-implemented", "unsupported", {
        feature: action.name,
        text: `Unsupported pubsub#owner request '${action.name}' in an iq ${stanza.attrs.type}`,
      });
  }
}

/** The answer fields of a subscription approval form (§8.6), if `message` carries one. */
export function authorizationAnswer(
  message: Element,
): { node: string; subscriber: string; allow: boolean } | undefined {
  const form = message.getChild("x", NS_DATA);
  if (!form || form.attrs.type !== "submit") return undefined;
  const fields = formFields(form);
  if (
    fields.get("FORM_TYPE")?.[0] !== "http://jabber.org/protocol/pubsub#subscribe_authorization"
  ) {
    return undefined;
  }
  const node = fields.get("pubsub#node")?.[0];
  const subscriber = fields.get("pubsub#subscriber_jid")?.[0];
  const allow = fields.get("pubsub#allow")?.[0];
  if (node === undefined || subscriber === undefined) return undefined;
  return { node, subscriber, allow: allow === "1" || allow === "true" };
}

/**
 * The disco#info answer for one node (XEP-0060 §5.4): a leaf identity, the pubsub feature and
 * the node's meta-data form.
 */
export function nodeInfoReply(stanza: Element, service: PubsubService, node: StoredNode): Element {
  const result = reply(stanza);
  const query = result.c("query", {
    xmlns: "http://jabber.org/protocol/disco#info",
    node: node.node,
  });
  query.c("identity", { category: "pubsub", type: "leaf", name: node.config.title || undefined });
  query.c("feature", { var: NS_PUBSUB });
  query.append(
    metaDataForm(node.config, { owners: service.owners(node.node), createdMs: node.createdMs }),
  );
  return result;
}

/** Adds a node's items to a disco#items answer (XEP-0060 §5.5), as `actor` may see them. */
export function addNodeItems(
  query: Element,
  service: PubsubService,
  actor: JID,
  node: string,
): void {
  for (const item of service.items(actor, node)) {
    query.c("item", { jid: service.jid, name: item.id });
  }
}
