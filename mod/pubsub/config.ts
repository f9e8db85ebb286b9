// A node's configuration (XEP-0060 §16.4, the `pubsub#node_config` form): its typed shape, the
// form a node owner edits, reading a submitted form back, and the publish-options preconditions
// (§7.1.5) compared against it.

import { Element } from "../../core/xml/element.ts";
import { PubsubError } from "./errors.ts";

const NS_DATA = "jabber:x:data";
/** FORM_TYPE of the node configuration form. */
export const NODE_CONFIG_FORM = "http://jabber.org/protocol/pubsub#node_config";
/** FORM_TYPE of publish-options (XEP-0060 §7.1.5). */
export const PUBLISH_OPTIONS_FORM = "http://jabber.org/protocol/pubsub#publish-options";

/** Who may subscribe and retrieve items (XEP-0060 §4.5). */
export type AccessModel = "open" | "presence" | "roster" | "whitelist" | "authorize";
/** Who may publish (XEP-0060 §16.4 `pubsub#publish_model`). */
export type PublishModel = "publishers" | "subscribers" | "open";
/** When the last item goes to a new subscriber. */
export type SendLastPublishedItem = "never" | "on_sub" | "on_sub_and_presence";

/** A node's configuration, as stored (JSON) and used by the engine. */
export interface NodeConfig {
  title: string;
  /** Payload type (`pubsub#type`), a namespace; "" when not set. */
  type: string;
  /** Items kept; "max" is the service's cap. */
  maxItems: number | "max";
  persistItems: boolean;
  accessModel: AccessModel;
  /** Roster groups allowed under the roster access model. */
  rosterGroupsAllowed: string[];
  publishModel: PublishModel;
  deliverNotifications: boolean;
  deliverPayloads: boolean;
  notifyConfig: boolean;
  notifyDelete: boolean;
  notifyRetract: boolean;
  sendLastPublishedItem: SendLastPublishedItem;
  /** Largest payload in bytes. */
  maxPayloadSize: number;
  /** Seconds an item lives (0: for ever). */
  itemExpire: number;
  /** The type of notification messages. */
  notificationType: "headline" | "normal";
}

/** Defaults a service starts from (its policy may change them). */
export function defaultNodeConfig(maxPayloadSize: number): NodeConfig {
  return {
    title: "",
    type: "",
    maxItems: 10,
    persistItems: true,
    accessModel: "open",
    rosterGroupsAllowed: [],
    publishModel: "publishers",
    deliverNotifications: true,
    deliverPayloads: true,
    notifyConfig: false,
    notifyDelete: true,
    notifyRetract: true,
    sendLastPublishedItem: "never",
    maxPayloadSize,
    itemExpire: 0,
    notificationType: "headline",
  };
}

/**
 * A PEP node's defaults (XEP-0163: one item, presence access, the last item on subscription
 * and presence): what mod/pep.ts creates nodes with, and importers start from.
 */
export function pepNodeConfig(maxPayloadSize: number): NodeConfig {
  return {
    ...defaultNodeConfig(maxPayloadSize),
    maxItems: 1,
    accessModel: "presence",
    sendLastPublishedItem: "on_sub_and_presence",
  };
}

type FieldKind = "boolean" | "text" | "list" | "list-multi" | "integer" | "max";

/** One form field: its var, how it is typed and which config key it maps to. */
interface FieldSpec {
  key: keyof NodeConfig;
  kind: FieldKind;
  label: string;
  options?: readonly string[];
}

const FIELDS: Record<string, FieldSpec> = {
  "pubsub#title": { key: "title", kind: "text", label: "A short name for the node" },
  "pubsub#type": { key: "type", kind: "text", label: "The type of payload data" },
  "pubsub#max_items": { key: "maxItems", kind: "max", label: "Most items to keep" },
  "pubsub#persist_items": { key: "persistItems", kind: "boolean", label: "Keep items" },
  "pubsub#access_model": {
    key: "accessModel",
    kind: "list",
    label: "Who may subscribe and retrieve items",
    options: ["open", "presence", "roster", "whitelist", "authorize"],
  },
  "pubsub#roster_groups_allowed": {
    key: "rosterGroupsAllowed",
    kind: "list-multi",
    label: "Roster groups allowed to subscribe",
  },
  "pubsub#publish_model": {
    key: "publishModel",
    kind: "list",
    label: "Who may publish",
    options: ["publishers", "subscribers", "open"],
  },
  "pubsub#deliver_notifications": {
    key: "deliverNotifications",
    kind: "boolean",
    label: "Deliver event notifications",
  },
  "pubsub#deliver_payloads": {
    key: "deliverPayloads",
    kind: "boolean",
    label: "Deliver payloads with notifications",
  },
  "pubsub#notify_config": {
    key: "notifyConfig",
    kind: "boolean",
    label: "Notify subscribers when the configuration changes",
  },
  "pubsub#notify_delete": {
    key: "notifyDelete",
    kind: "boolean",
    label: "Notify subscribers when the node is deleted",
  },
  "pubsub#notify_retract": {
    key: "notifyRetract",
    kind: "boolean",
    label: "Notify subscribers when items are removed",
  },
  "pubsub#send_last_published_item": {
    key: "sendLastPublishedItem",
    kind: "list",
    label: "When to send the last published item",
    options: ["never", "on_sub", "on_sub_and_presence"],
  },
  "pubsub#max_payload_size": {
    key: "maxPayloadSize",
    kind: "integer",
    label: "Largest payload in bytes",
  },
  "pubsub#item_expire": {
    key: "itemExpire",
    kind: "integer",
    label: "Seconds after which items expire (0: never)",
  },
  "pubsub#notification_type": {
    key: "notificationType",
    kind: "list",
    label: "Message type of notifications",
    options: ["headline", "normal"],
  },
};

/** The limits a submitted value is checked against. */
export interface ConfigLimits {
  /** The service's cap on items per node (what "max" means). */
  maxItemsPerNode: number;
  /** The service's largest item in bytes. */
  maxItemBytes: number;
}

function valueStrings(config: NodeConfig, spec: FieldSpec): string[] {
  const value = config[spec.key];
  if (Array.isArray(value)) return value;
  if (typeof value === "boolean") return [value ? "1" : "0"];
  return [String(value)];
}

/**
 * The `pubsub#node_config` form (type "form") showing `config`, for a configure get (§8.2) or
 * the default configuration (§8.3).
 */
export function configForm(config: NodeConfig, limits: ConfigLimits): Element {
  const form = new Element("x", { xmlns: NS_DATA, type: "form" });
  form.c("field", { var: "FORM_TYPE", type: "hidden" }).c("value").t(NODE_CONFIG_FORM);
  for (const [name, spec] of Object.entries(FIELDS)) {
    const type = spec.kind === "boolean"
      ? "boolean"
      : spec.kind === "list"
      ? "list-single"
      : spec.kind === "list-multi"
      ? "text-multi"
      : "text-single";
    const field = form.c("field", { var: name, type, label: spec.label });
    for (const option of spec.options ?? []) field.c("option").c("value").t(option);
    if (spec.kind === "max") {
      field.c("validate", {
        xmlns: "http://jabber.org/protocol/xdata-validate",
        datatype: "xs:integer",
      })
        .c("range", { min: "1", max: String(limits.maxItemsPerNode) });
    }
    for (const value of valueStrings(config, spec)) field.c("value").t(value);
  }
  return form;
}

/** The fields of a submitted data form: var -> values (FORM_TYPE included). */
export function formFields(form: Element): Map<string, string[]> {
  const fields = new Map<string, string[]>();
  for (const field of form.getChildren("field", NS_DATA)) {
    const name = field.attrs.var;
    if (name === undefined) continue;
    fields.set(name, field.getChildren("value", NS_DATA).map((value) => value.text()));
  }
  return fields;
}

function parseBoolean(name: string, value: string): boolean {
  if (value === "1" || value === "true") return true;
  if (value === "0" || value === "false") return false;
  throw new PubsubError("not-acceptable", undefined, {
    text: `Field '${name}' expected a boolean, found '${value}'`,
  });
}

function parseInteger(name: string, value: string, max: number): number {
  const n = /^\d{1,15}$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n > max) {
    throw new PubsubError("not-acceptable", undefined, {
      text: `Field '${name}' expected an integer from 0 to ${max}, found '${value}'`,
    });
  }
  return n;
}

/** One field's value parsed to the config's type; throws not-acceptable on a bad value. */
function parseField(
  name: string,
  spec: FieldSpec,
  values: string[],
  limits: ConfigLimits,
): NodeConfig[keyof NodeConfig] {
  if (spec.kind === "list-multi") return values.filter((v) => v !== "");
  const value = values[0] ?? "";
  switch (spec.kind) {
    case "boolean":
      return parseBoolean(name, value);
    case "text":
      return value;
    case "integer":
      return parseInteger(
        name,
        value,
        spec.key === "maxPayloadSize" ? limits.maxItemBytes : 315_360_000,
      );
    case "max":
      if (value === "max") return "max";
      {
        const n = parseInteger(name, value, limits.maxItemsPerNode);
        if (n < 1) {
          throw new PubsubError("not-acceptable", undefined, {
            text:
              `Field '${name}' expected 1 to ${limits.maxItemsPerNode} or 'max', found '${value}'`,
          });
        }
        return n;
      }
    case "list":
      if (!spec.options!.includes(value)) {
        throw new PubsubError("not-acceptable", undefined, {
          text: `Field '${name}' expected one of ${spec.options!.join(", ")}, found '${value}'`,
        });
      }
      return value;
  }
}

/**
 * `config` with the submitted fields applied (§8.2.4); a value out of range fails with
 * not-acceptable and changes nothing. Fields Lilt does not know are ignored.
 */
export function applyConfigFields(
  config: NodeConfig,
  fields: Map<string, string[]>,
  limits: ConfigLimits,
): NodeConfig {
  const next: NodeConfig = { ...config };
  for (const [name, values] of fields) {
    if (name === "FORM_TYPE") continue;
    const spec = FIELDS[name];
    // Fields of options Lilt does not have (pubsub#body_xslt, collections) are ignored, as
    // forms carry what a client knows, not what this service does.
    if (!spec) continue;
    (next as unknown as Record<string, unknown>)[spec.key] = parseField(name, spec, values, limits);
  }
  return next;
}

/**
 * Checks publish-options (§7.1.5) against an existing node's configuration: each field must
 * equal the node's value, else conflict + precondition-not-met. Fields of options Lilt does not
 * have are ignored, as in a configuration form.
 */
export function checkPreconditions(
  config: NodeConfig,
  fields: Map<string, string[]>,
  limits: ConfigLimits,
): void {
  for (const [name, values] of fields) {
    if (name === "FORM_TYPE") continue;
    const spec = FIELDS[name];
    if (!spec) continue;
    let met = false;
    {
      try {
        const wanted = parseField(name, spec, values, limits);
        met = JSON.stringify(wanted) === JSON.stringify(config[spec.key]);
      } catch {
        met = false;
      }
    }
    if (!met) {
      throw new PubsubError("conflict", "precondition-not-met", {
        text: `Field '${name}' does not match the node's configuration`,
      });
    }
  }
}

/** FORM_TYPE of the subscription options form (XEP-0060 §6.3, §16.4.2). */
export const SUBSCRIBE_OPTIONS_FORM = "http://jabber.org/protocol/pubsub#subscribe_options";

/** The options of one subscription (§6.3); only those Lilt acts on. */
export interface SubscriptionOptions {
  /** `pubsub#deliver`: false stops event notifications to this subscription. */
  deliver: boolean;
}

/** What a subscription gets when it sets no options (the §6.4 default). */
export const DEFAULT_SUBSCRIPTION_OPTIONS: Readonly<SubscriptionOptions> = { deliver: true };

/**
 * The `pubsub#subscribe_options` form showing `options`: type "form" for an options request
 * (§6.3.2) or the default options (§6.4), "result" after subscribe-and-configure (§6.3.7).
 */
export function subscribeOptionsForm(
  options: SubscriptionOptions,
  type: "form" | "result" = "form",
): Element {
  const form = new Element("x", { xmlns: NS_DATA, type });
  form.c("field", { var: "FORM_TYPE", type: "hidden" }).c("value").t(SUBSCRIBE_OPTIONS_FORM);
  form.c("field", {
    var: "pubsub#deliver",
    type: "boolean",
    label: "Enable delivery?",
  }).c("value").t(options.deliver ? "1" : "0");
  return form;
}

/**
 * `options` with a submitted options form applied (§6.3.5). A bad value fails with
 * bad-request + invalid-options (§6.3.6) and changes nothing; fields Lilt does not have are
 * ignored.
 */
export function applySubscriptionOptionFields(
  options: SubscriptionOptions,
  fields: Map<string, string[]>,
): SubscriptionOptions {
  const next = { ...options };
  const deliver = fields.get("pubsub#deliver");
  if (deliver !== undefined) {
    const value = deliver[0] ?? "";
    if (value === "1" || value === "true") next.deliver = true;
    else if (value === "0" || value === "false") next.deliver = false;
    else {
      throw new PubsubError("bad-request", "invalid-options", {
        text: `Field 'pubsub#deliver' expected a boolean, found '${value}'`,
      });
    }
  }
  return next;
}

/** FORM_TYPE of a node's disco#info meta-data (XEP-0060 §5.4). */
export const META_DATA_FORM = "http://jabber.org/protocol/pubsub#meta-data";

/** What a node's meta-data form shows besides its configuration. */
export interface NodeFacts {
  /** Bare JIDs of its owners. */
  owners: string[];
  /** When it was created (ms). */
  createdMs: number;
}

/** The `pubsub#meta-data` form of a node's disco#info (XEP-0060 §5.4, type "result"). */
export function metaDataForm(config: NodeConfig, facts: NodeFacts): Element {
  const form = new Element("x", { xmlns: NS_DATA, type: "result" });
  const field = (name: string, type: string, values: string[]) => {
    const el = form.c("field", { var: name, type });
    for (const value of values) el.c("value").t(value);
  };
  field("FORM_TYPE", "hidden", [META_DATA_FORM]);
  field("pubsub#title", "text-single", [config.title]);
  field("pubsub#type", "text-single", [config.type]);
  field("pubsub#access_model", "list-single", [config.accessModel]);
  field("pubsub#publish_model", "list-single", [config.publishModel]);
  field("pubsub#owner", "jid-multi", facts.owners);
  field("pubsub#creation_date", "text-single", [new Date(facts.createdMs).toISOString()]);
  return form;
}
