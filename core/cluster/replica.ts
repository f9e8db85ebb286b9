// This node's in-memory copy of the other nodes and the client sessions they hold: routing is
// synchronous and never waits for Redis, so each remote session is a proxy bound in the
// SessionManager with its presence, kept current from the registry channel.

import type { Host } from "../hosts.ts";
import { type JID, tryParseJid } from "../jid.ts";
import { getLogger } from "../log.ts";
import { updatePresence } from "../presence_state.ts";
import type { SessionManager } from "../sessions.ts";
import { parseElement } from "../xml/parser.ts";
import type { NodeInfo, SessionRecord } from "./protocol.ts";
import { type RemoteOutbox, RemoteSession } from "./remote_session.ts";

const log = getLogger("cluster");

/** Stored presence is the node's own serialisation: generous limits, no client input. */
const PRESENCE_LIMITS = { maxStanzaBytes: 1 << 20 };

/** What the replica needs of the server. */
export interface ReplicaServer {
  readonly sessions: SessionManager;
  readonly hosts: ReadonlyMap<string, Host>;
  readonly accounts: { touchLogout(host: string, username: string): void };
}

/** Another node as this one knows it. */
export interface KnownNode {
  readonly name: string;
  info: NodeInfo;
  /** When its last heartbeat arrived here (ms epoch). */
  lastHeard: number;
  /** Its bound client sessions by full JID. */
  readonly proxies: Map<string, RemoteSession>;
}

/** The other nodes and their sessions, mirrored into the SessionManager. */
export class SessionReplica {
  #server: ReplicaServer;
  #outbox: RemoteOutbox;
  #nodes = new Map<string, KnownNode>();

  constructor(server: ReplicaServer, outbox: RemoteOutbox) {
    this.#server = server;
    this.#outbox = outbox;
  }

  /** The other nodes, by name. */
  nodes(): KnownNode[] {
    return [...this.#nodes.values()].sort((a, b) => a.name < b.name ? -1 : 1);
  }

  /** The node, if known. */
  node(name: string): KnownNode | undefined {
    return this.#nodes.get(name);
  }

  /**
   * Records a heartbeat (or the registry key read at start). "new": a node not known until
   * now, whose sessions the caller loads; "restarted": it came back under a new start time,
   * so its old sessions were dropped as a dead node's (their end announced from here when
   * `announceRestart`); "known" otherwise.
   */
  heard(
    name: string,
    info: NodeInfo,
    now: number,
    announceRestart = false,
  ): "new" | "restarted" | "known" {
    const known = this.#nodes.get(name);
    if (known && known.info.started === info.started) {
      known.info = info;
      known.lastHeard = now;
      return "known";
    }
    let outcome: "new" | "restarted" = "new";
    if (known) {
      this.drop(name, "restarted", announceRestart);
      outcome = "restarted";
    }
    this.#nodes.set(name, { name, info, lastHeard: now, proxies: new Map() });
    log.info("Cluster node {node} joined (pid {pid})", { node: name, pid: info.pid });
    return outcome;
  }

  /** A session bound on `node`, or its presence changed. Unknown nodes are ignored. */
  upsert(node: string, jidText: string, record: SessionRecord): void {
    const known = this.#nodes.get(node);
    const jid = tryParseJid(jidText);
    if (!known || !jid?.local || !jid.resource) return;
    const sessions = this.#server.sessions;
    let proxy = known.proxies.get(jidText);
    if (!proxy || proxy.remoteId !== record.id || sessions.get(jid) !== proxy) {
      const previous = sessions.get(jid);
      // The newer connection wins, as on one node: news of an older session that crossed the
      // newer one's login (a presence change in flight) must not end the newer one.
      if (previous && previous !== proxy && previous.connectedAt > record.connectedAt) return;
      if (proxy) this.#unbind(known, proxy);
      proxy = new RemoteSession(node, jid, record, this.#outbox);
      // A proxy of the same JID from another node is stale (the session moved): dropped
      // quietly. A local session with that JID is closed with `conflict` by bind().
      if (previous instanceof RemoteSession) this.#forgetStale(previous);
      sessions.bind(proxy, jid);
      known.proxies.set(jidText, proxy);
    }
    updatePresence(proxy, presenceFrom(record));
  }

  /** A session ended on `node`. */
  unbound(node: string, jidText: string, id: string): void {
    const known = this.#nodes.get(node);
    const proxy = known?.proxies.get(jidText);
    if (known && proxy && proxy.remoteId === id) this.#unbind(known, proxy);
  }

  /** Forgets one proxy (its node was asked to close the session). */
  forget(proxy: RemoteSession): void {
    const known = this.#nodes.get(proxy.node);
    if (known?.proxies.get(proxy.jid.toString()) === proxy) this.#unbind(known, proxy);
    else this.#server.sessions.unbind(proxy);
  }

  /**
   * Forgets a node and its sessions. For a node that died (`"dead"`, `"restarted"`) with
   * `announce`, each of its sessions ends here as a local one does (`resource-unbind`: the
   * presence module sends the unavailable presence to the contacts, last activity is
   * recorded); exactly one surviving node announces. A node that left in order has ended its
   * sessions itself; one read again after a Redis outage (`"resync"`) is still there.
   * Returns the proxies of its sessions, now unbound.
   */
  drop(
    name: string,
    reason: "dead" | "restarted" | "left" | "resync",
    announce = false,
  ): RemoteSession[] {
    const known = this.#nodes.get(name);
    if (!known) return [];
    this.#nodes.delete(name);
    const proxies = [...known.proxies.values()];
    for (const proxy of proxies) this.#unbind(known, proxy);
    if (announce) {
      for (const proxy of proxies) this.#announceEnd(proxy);
    }
    const level = reason === "left" || reason === "resync" ? "info" : "warn";
    const what = {
      left: "left",
      dead: "stopped answering",
      restarted: "restarted",
      resync: "is read again from Redis",
    }[reason];
    log[level]("Cluster node {node} {what}; {count} of its sessions dropped here{announced}", {
      node: name,
      what,
      count: proxies.length,
      announced: announce ? ", their end announced from this node" : "",
    });
    return proxies;
  }

  /**
   * Counts every node as heard `now`: after this node could not hear the cluster at all, the
   * others' silence meanwhile says nothing, and each gets a whole timeout to be heard again.
   */
  heardAll(now: number): void {
    for (const known of this.#nodes.values()) known.lastHeard = now;
  }

  /** The nodes not heard from for longer than `timeoutMs`. */
  expired(now: number, timeoutMs: number): string[] {
    return this.nodes().filter((n) => now - n.lastHeard > timeoutMs).map((n) => n.name);
  }

  #unbind(known: KnownNode, proxy: RemoteSession): void {
    known.proxies.delete(proxy.jid.toString());
    this.#server.sessions.unbind(proxy);
  }

  #forgetStale(proxy: RemoteSession): void {
    const known = this.#nodes.get(proxy.node);
    if (known?.proxies.get(proxy.jid.toString()) === proxy) this.#unbind(known, proxy);
  }

  /** What a node does when one of its sessions ends, done for a dead node's session. */
  #announceEnd(proxy: RemoteSession): void {
    const host = this.#server.hosts.get(proxy.host);
    if (!host) return;
    host.events.fire("resource-unbind", { session: proxy, host });
    const user = (proxy.jid as JID).local!;
    if (this.#server.sessions.userSessions(proxy.host, user).length === 0) {
      this.#server.accounts.touchLogout(proxy.host, user);
    }
  }
}

/** The ResourcePresence fields of a record. */
function presenceFrom(record: SessionRecord) {
  let presence = undefined;
  if (record.presence !== null) {
    try {
      presence = parseElement(record.presence, PRESENCE_LIMITS);
    } catch (error) {
      log.warn("Ignoring an unreadable presence from the cluster: {error}", { error });
    }
  }
  return {
    available: record.available,
    interested: record.interested === true,
    priority: record.priority,
    presence,
  };
}
