// What the nodes of a cluster say to each other through Redis: the key and channel names, and
// the JSON messages on them. Pure data, no connection: the one place to read the wire format.

/** The channel every node follows: heartbeats and changes of the session registry. */
export const CLUSTER_CHANNEL = "lilt:cluster";

/** Every Redis name Lilt uses starts with this (a shared Redis server stays readable). */
const PREFIX = "lilt:";

/**
 * A node's registry key (JSON {@link NodeInfo}, expiring after the node timeout) and, under the
 * same name, its own channel: stanzas for its sessions and requests to close them.
 */
export function nodeKey(node: string): string {
  return `${PREFIX}node:${node}`;
}

/** The name a {@link nodeKey} belongs to, or undefined for another key. */
export function nodeOfKey(key: string): string | undefined {
  const prefix = `${PREFIX}node:`;
  return key.startsWith(prefix) ? key.slice(prefix.length) : undefined;
}

/** A node's session hash: full JID -> JSON {@link SessionRecord}, expiring with the node. */
export function sessionsKey(node: string): string {
  return `${PREFIX}sessions:${node}`;
}

/** What a node says about itself in its registry key and heartbeats. */
export interface NodeInfo {
  /** When the process started (ms epoch): a new value means the node restarted. */
  started: number;
  pid: number;
  /** Its listeners, as "kind host:port". */
  listeners: string[];
  /** How many client sessions it holds. */
  sessions: number;
}

/** One bound client session as the other nodes see it (RFC 6121 presence included). */
export interface SessionRecord {
  /** The session's id on its node. */
  id: string;
  connectedAt: number;
  ip: string;
  secure: boolean;
  available: boolean;
  interested: boolean;
  priority: number;
  /** The last available presence broadcast (serialised), or null. */
  presence: string | null;
}

/** Messages on {@link CLUSTER_CHANNEL}; `node` is the sender. */
export type ClusterMessage =
  | { t: "heartbeat"; node: string; info: NodeInfo }
  /** A session bound, or its presence changed: the whole record again. */
  | { t: "session"; node: string; jid: string; session: SessionRecord }
  | { t: "unbound"; node: string; jid: string; id: string }
  /** The node stops (its sessions have ended already). */
  | { t: "leave"; node: string };

/**
 * One stanza for a session a node holds: its full JID, the serialised stanza, and 1 when the
 * sender was itself handling a stanza that missed its session (it must not travel again).
 */
export type StanzaItem = [jid: string, xml: string, rerouted?: 1];

/** Messages on a node's own channel ({@link nodeKey}); `from` is the sender. */
export type NodeMessage =
  /** What one event-loop turn of the sender produced for this node's sessions. */
  | { t: "stanzas"; from: string; items: StanzaItem[] }
  /** Closes the session `id` bound to `jid` (replaced by a login elsewhere, or shell action). */
  | { t: "close"; from: string; jid: string; id: string; condition?: string; text?: string }
  /**
   * What one event-loop turn of the sender routed to internal components (MUC, pubsub, ...),
   * which this node serves as their owner: serialised stanzas, `from` stamped, after the
   * sender's `pre-` events.
   */
  | { t: "component"; from: string; items: string[] };

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Parses a message of {@link CLUSTER_CHANNEL}; undefined for anything malformed. */
export function parseClusterMessage(text: string): ClusterMessage | undefined {
  const value = parseJson(text);
  if (!isObject(value) || typeof value.node !== "string") return undefined;
  switch (value.t) {
    case "heartbeat":
      return isObject(value.info) && typeof value.info.started === "number"
        ? value as ClusterMessage
        : undefined;
    case "session":
      return typeof value.jid === "string" && isSessionRecord(value.session)
        ? value as ClusterMessage
        : undefined;
    case "unbound":
      return typeof value.jid === "string" && typeof value.id === "string"
        ? value as ClusterMessage
        : undefined;
    case "leave":
      return value as ClusterMessage;
    default:
      return undefined;
  }
}

/** Parses a message of a node's channel; undefined for anything malformed. */
export function parseNodeMessage(text: string): NodeMessage | undefined {
  const value = parseJson(text);
  if (!isObject(value) || typeof value.from !== "string") return undefined;
  if (value.t === "stanzas") {
    return Array.isArray(value.items) &&
        value.items.every((item) =>
          Array.isArray(item) && typeof item[0] === "string" && typeof item[1] === "string"
        )
      ? value as NodeMessage
      : undefined;
  }
  if (value.t === "component") {
    return Array.isArray(value.items) && value.items.every((item) => typeof item === "string")
      ? value as NodeMessage
      : undefined;
  }
  if (value.t === "close") {
    return typeof value.jid === "string" && typeof value.id === "string"
      ? value as NodeMessage
      : undefined;
  }
  return undefined;
}

/** Parses a {@link SessionRecord} read from a node's hash; undefined when malformed. */
export function parseSessionRecord(text: string): SessionRecord | undefined {
  const value = parseJson(text);
  return isSessionRecord(value) ? value : undefined;
}

/** Parses a {@link NodeInfo} read from a node's key; undefined when malformed. */
export function parseNodeInfo(text: string | null): NodeInfo | undefined {
  if (text === null) return undefined;
  const value = parseJson(text);
  return isObject(value) && typeof value.started === "number"
    ? value as unknown as NodeInfo
    : undefined;
}

function isSessionRecord(value: unknown): value is SessionRecord {
  return isObject(value) && typeof value.id === "string" && typeof value.available === "boolean" &&
    typeof value.priority === "number" &&
    (value.presence === null || typeof value.presence === "string");
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
