// One node of several serving the same domains (issue 19): it announces its client sessions
// and their presence in Redis, mirrors the other nodes' sessions (replica.ts), carries stanzas
// for remote sessions to their node, forwards stanzas for internal components (MUC, pubsub) to
// the one node serving them, and notices nodes that die. Loaded only with [cluster].

import type { ClusterConfig } from "../config.ts";
import type { Host } from "../hosts.ts";
import type { ModuleManager } from "../modules.ts";
import type { Router } from "../router.ts";
import { type JID, tryParseJid } from "../jid.ts";
import { getLogger } from "../log.ts";
import { observePresenceChanges, presenceOf } from "../presence_state.ts";
import type { Session, SessionManager } from "../sessions.ts";
import type { ScheduledTimers } from "../timers.ts";
import { Element } from "../xml/element.ts";
import { parseElement } from "../xml/parser.ts";
import { serialize } from "../xml/serializer.ts";
import { errorReply, isError, type StreamErrorCondition } from "../xml/stanza.ts";
import {
  CLUSTER_CHANNEL,
  type ClusterMessage,
  type NodeInfo,
  nodeKey,
  type NodeMessage,
  nodeOfKey,
  parseClusterMessage,
  parseNodeInfo,
  parseNodeMessage,
  parseSessionRecord,
  type SessionRecord,
  sessionsKey,
  type StanzaItem,
} from "./protocol.ts";
import { RedisBus } from "./redis_bus.ts";
import { type KnownNode, type ReplicaServer, SessionReplica } from "./replica.ts";
import { type RemoteOutbox, RemoteSession } from "./remote_session.ts";

const log = getLogger("cluster");

/** Stanzas between nodes were checked when they entered the cluster. */
const STANZA_LIMITS = { maxStanzaBytes: 16 << 20 };

/** What the cluster needs of the server. */
export interface ClusterServer extends ReplicaServer {
  readonly sessions: SessionManager;
  readonly hosts: ReadonlyMap<string, Host>;
  readonly timers: ScheduledTimers;
  readonly listeners: readonly { kind: string; host: string; port: number }[];
  readonly router: Pick<Router, "forwardComponents" | "routeForwarded">;
  readonly modules: Pick<ModuleManager, "loaded" | "load" | "unloadAll">;
  route(stanza: Element, origin: Session): void;
  hostSession(domain: string): Session;
}

/** One node as `cluster show` lists it. */
export interface ClusterNodeStatus {
  name: string;
  /** This node. */
  self: boolean;
  /** When its last heartbeat arrived (ms epoch; now for this node). */
  lastHeartbeat: number;
  started: number;
  pid: number;
  listeners: string[];
  /** Full JIDs of its client sessions, sorted. */
  sessions: string[];
  /** Those of them that are available (RFC 6121: sent initial presence), sorted. */
  available: string[];
}

/** A registry change waiting for the end of the event-loop turn. */
type Pending = { session: Session } | { unboundId: string };

/** This node's membership of the cluster. */
export class Cluster {
  /** This node's name. */
  readonly node: string;
  readonly started = Date.now();
  #server: ClusterServer;
  #config: ClusterConfig;
  #bus!: RedisBus;
  #replica: SessionReplica;
  /** This node's bound client sessions by full JID. */
  #local = new Map<string, Session>();
  /** Registry changes of this turn, by full JID, in the order they happened. */
  #pending = new Map<string, Pending>();
  /** Stanzas of this turn for each other node. */
  #outboxes = new Map<string, StanzaItem[]>();
  /** Stanzas of this turn for the internal components, by the node serving them. */
  #componentOutboxes = new Map<string, string[]>();
  /**
   * The node serving the internal components: the live node whose name sorts first, as every
   * node reads it from its own replica. Changes only in #checkOwner.
   */
  #owner: string;
  /** The components' modules starting over (one change of ownership after the other). */
  #restarting: Promise<void> = Promise.resolve();
  /**
   * As the owner: the occupant and directed addresses of internal components each remote
   * session sent available presence to, owed an unavailable when its node dies (RFC 6121 §4.6:
   * its own node would have sent it).
   */
  #componentPresence = new WeakMap<RemoteSession, Set<string>>();
  #flushQueued = false;
  /** Set while handling a stanza that missed its session here (see #missedSession). */
  #rerouting = false;
  /** Messages that came while the registry was being read at start. */
  #early: [string, string][] | undefined = [];
  /** When this node last heard its own heartbeat through Redis (its view is current). */
  #lastEcho = 0;
  /** Told once per outage that the other nodes' silence means nothing while this node is deaf. */
  #deaf = false;
  /** A heartbeat is waiting for Redis (none is started beside it). */
  #beating = false;
  #stopHeartbeat: (() => void) | undefined;
  #stopObserving: (() => void) | undefined;
  #stopped = false;

  private constructor(server: ClusterServer, config: ClusterConfig) {
    this.#server = server;
    this.#config = config;
    this.node = config.node;
    this.#owner = config.node;
    const outbox: RemoteOutbox = {
      send: (node, jid, stanza) => this.#queueStanza(node, jid, stanza),
      close: (session, condition, text) => this.#requestClose(session, condition, text),
    };
    this.#replica = new SessionReplica(server, outbox);
  }

  /**
   * Joins the cluster: connects to Redis, reads the other nodes and their sessions, then
   * follows the registry channel and starts heartbeats. Call before accepting clients.
   */
  static async start(server: ClusterServer, config: ClusterConfig): Promise<Cluster> {
    const cluster = new Cluster(server, config);
    await cluster.#start();
    return cluster;
  }

  get #timeoutMs(): number {
    return this.#config.node_timeout * 1000;
  }

  async #start(): Promise<void> {
    this.#bus = await RedisBus.connect({
      url: this.#config.redis_url,
      password: this.#config.password,
      channels: [CLUSTER_CHANNEL, nodeKey(this.node)],
      onMessage: (channel, text) => this.#onMessage(channel, text),
      onResubscribed: () => void this.#resync(),
      connectTimeoutMs: Math.max(5000, this.#timeoutMs),
    });
    // A previous run under this name left sessions that no longer exist.
    await this.#bus.delete(sessionsKey(this.node));
    await this.#loadNodes();
    // Just started: the components' modules read the store a moment ago.
    this.#owner = this.#ownerNow();
    this.#server.router.forwardComponents((stanza, host) => this.#forwardToOwner(stanza, host));
    this.#lastEcho = Date.now();
    this.#server.sessions.observeBindings({
      bound: (session, jid) => this.#bound(session, jid),
      unbound: (session) => this.#unbound(session),
    });
    this.#stopObserving = observePresenceChanges((session) => this.#presenceChanged(session));
    await this.#heartbeat();
    this.#stopHeartbeat = this.#server.timers.schedule(
      this.#config.heartbeat_interval * 1000,
      () => void this.#heartbeat().catch((error) => this.#heartbeatFailed(error)),
      { owner: "cluster", label: "heartbeat and dead-node check", repeat: true },
    );
    log.info(
      "Joined the cluster as {node} ({others} other nodes); internal components on {owner}",
      {
        node: this.node,
        others: this.#replica.nodes().length,
        owner: this.#owner,
      },
    );
  }

  /**
   * Reads the other nodes and their sessions from Redis, with what the channels say meanwhile
   * held back and applied after.
   */
  async #loadNodes(): Promise<void> {
    this.#early ??= [];
    try {
      const now = Date.now();
      for (const key of await this.#bus.keys(nodeKey("*"))) {
        const name = nodeOfKey(key);
        if (name === undefined || name === this.node) continue;
        const info = parseNodeInfo(await this.#bus.get(key));
        if (!info) continue;
        this.#replica.heard(name, info, now);
        await this.#loadSessions(name);
      }
    } finally {
      const early = this.#early ?? [];
      this.#early = undefined;
      for (const [channel, text] of early) this.#onMessage(channel, text);
    }
  }

  /**
   * After the subscription was lost and made again (Redis restarted or was out of reach),
   * announcements may have been missed: the replica is read again from Redis. A node that has
   * not written itself back yet returns with its next heartbeat.
   */
  async #resync(): Promise<void> {
    if (this.#stopped) return;
    log.info("Reconnected to Redis: reading the other nodes' sessions again");
    for (const known of this.#replica.nodes()) this.#replica.drop(known.name, "resync");
    try {
      await this.#loadNodes();
    } catch (error) {
      log.warn("Reading the cluster again after a reconnection: {error}", {
        error: (error as Error).message,
      });
    }
    this.#checkOwner();
  }

  /**
   * Leaves the cluster after this node's sessions have ended (their unbinds are announced
   * first): the other nodes forget it at once instead of waiting for the timeout.
   */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#stopHeartbeat?.();
    this.#server.router.forwardComponents(undefined);
    this.#flush();
    this.#server.sessions.observeBindings(undefined);
    this.#stopObserving?.();
    // Redis out of reach must not hold the shutdown: the others then time this node out.
    const limitMs = Math.max(1000, this.#timeoutMs);
    try {
      await withTimeout(this.#bus.delete(nodeKey(this.node), sessionsKey(this.node)), limitMs);
      this.#bus.publish(CLUSTER_CHANNEL, JSON.stringify({ t: "leave", node: this.node }));
    } catch (error) {
      log.warn("Leaving the cluster: {error}", { error: (error as Error).message });
    }
    await this.#bus.close(limitMs);
    log.info("Left the cluster");
  }

  /** The nodes and their sessions, this one first. */
  status(): ClusterNodeStatus[] {
    const now = Date.now();
    const own = this.#info();
    const rows: ClusterNodeStatus[] = [{
      name: this.node,
      self: true,
      lastHeartbeat: now,
      started: own.started,
      pid: own.pid,
      listeners: own.listeners,
      sessions: [...this.#local.keys()].sort(),
      available: availableOf(this.#local),
    }];
    for (const known of this.#replica.nodes()) {
      rows.push({
        name: known.name,
        self: false,
        lastHeartbeat: known.lastHeard,
        started: known.info.started,
        pid: known.info.pid,
        listeners: known.info.listeners ?? [],
        sessions: [...known.proxies.keys()].sort(),
        available: availableOf(known.proxies),
      });
    }
    return rows;
  }

  // ---------- this node's sessions, announced once per event-loop turn ----------

  #bound(session: Session, jid: JID): void {
    const key = jid.toString();
    if (session instanceof RemoteSession) {
      // A newer login elsewhere took the JID from a session here (closing it with conflict):
      // this node no longer holds it, whenever that session's stream ends.
      const replaced = this.#local.get(key);
      if (replaced) this.#unbound(replaced);
      return;
    }
    if (session.kind !== "c2s") return;
    this.#local.set(key, session);
    this.#pending.delete(key);
    this.#pending.set(key, { session });
    this.#schedule();
  }

  #unbound(session: Session): void {
    if (session instanceof RemoteSession) return;
    const key = session.jid?.toString();
    if (key === undefined || this.#local.get(key) !== session) return;
    this.#local.delete(key);
    this.#pending.delete(key);
    this.#pending.set(key, { unboundId: session.id });
    this.#schedule();
  }

  #presenceChanged(session: Session): void {
    if (session instanceof RemoteSession) return;
    const key = session.jid?.toString();
    if (key === undefined || this.#local.get(key) !== session) return;
    if (!this.#pending.has(key)) this.#pending.set(key, { session });
    this.#schedule();
  }

  #record(session: Session): SessionRecord {
    const presence = presenceOf(session);
    return {
      id: session.id,
      connectedAt: session.connectedAt,
      ip: session.ip,
      secure: session.secure,
      available: presence.available,
      interested: presence.interested,
      priority: presence.priority,
      presence: presence.presence ? serialize(presence.presence) : null,
    };
  }

  #schedule(): void {
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    queueMicrotask(() => this.#flush());
  }

  /**
   * Sends what this turn produced, in order on one connection: registry changes (hash, then
   * channel), then one PUBLISH per node with the stanzas for its sessions.
   */
  #flush(): void {
    this.#flushQueued = false;
    if (
      this.#stopped && this.#pending.size === 0 && this.#outboxes.size === 0 &&
      this.#componentOutboxes.size === 0
    ) {
      return;
    }
    const hash = sessionsKey(this.node);
    let wrote = false;
    for (const [jid, change] of this.#pending) {
      if ("session" in change) {
        const record = this.#record(change.session);
        this.#bus.hashSet(hash, jid, JSON.stringify(record));
        wrote = true;
        this.#publish({ t: "session", node: this.node, jid, session: record });
      } else {
        this.#bus.hashDelete(hash, jid);
        this.#publish({ t: "unbound", node: this.node, jid, id: change.unboundId });
      }
    }
    this.#pending.clear();
    if (wrote) this.#bus.expire(hash, this.#timeoutMs).catch(() => {});
    for (const [node, items] of this.#outboxes) {
      const message: NodeMessage = { t: "stanzas", from: this.node, items };
      this.#bus.publish(nodeKey(node), JSON.stringify(message));
    }
    this.#outboxes.clear();
    for (const [node, items] of this.#componentOutboxes) {
      const message: NodeMessage = { t: "component", from: this.node, items };
      this.#bus.publish(nodeKey(node), JSON.stringify(message));
    }
    this.#componentOutboxes.clear();
  }

  #publish(message: ClusterMessage): void {
    this.#bus.publish(CLUSTER_CHANNEL, JSON.stringify(message));
  }

  // ---------- stanzas for other nodes' sessions ----------

  #queueStanza(node: string, jid: string, stanza: Element): void {
    let items = this.#outboxes.get(node);
    if (!items) this.#outboxes.set(node, items = []);
    items.push(this.#rerouting ? [jid, serialize(stanza), 1] : [jid, serialize(stanza)]);
    this.#schedule();
  }

  #requestClose(session: RemoteSession, condition?: StreamErrorCondition, text?: string): void {
    // After what was already queued for that session.
    this.#flush();
    const message: NodeMessage = {
      t: "close",
      from: this.node,
      jid: session.jid.toString(),
      id: session.remoteId,
      ...(condition === undefined ? {} : { condition }),
      ...(text === undefined ? {} : { text }),
    };
    this.#bus.publish(nodeKey(session.node), JSON.stringify(message));
    this.#replica.forget(session);
  }

  // ---------- what the other nodes say ----------

  #onMessage(channel: string, text: string): void {
    if (this.#early) {
      this.#early.push([channel, text]);
      return;
    }
    if (this.#stopped) return;
    try {
      if (channel === CLUSTER_CHANNEL) {
        const message = parseClusterMessage(text);
        if (!message) log.warn("Ignoring a malformed cluster message: {text}", { text });
        else if (message.node !== this.node) this.#onClusterMessage(message);
        else if (message.t === "heartbeat") this.#ownHeartbeat(message.info);
      } else {
        const message = parseNodeMessage(text);
        if (!message) log.warn("Ignoring a malformed message for this node: {text}", { text });
        else this.#onNodeMessage(message);
      }
    } catch (error) {
      log.error("Handling a cluster message failed: {error}", { error });
    }
  }

  #onClusterMessage(message: ClusterMessage): void {
    switch (message.t) {
      case "heartbeat": {
        const known = this.#replica.node(message.node);
        const restarted = known !== undefined && known.info.started !== message.info.started;
        // A restarted node's sessions are gone: those in components leave them (see below).
        const previous = restarted ? [...known.proxies.values()] : [];
        const outcome = this.#replica.heard(
          message.node,
          message.info,
          Date.now(),
          restarted && this.#announces(new Set([message.node])),
        );
        if (outcome === "new") this.#checkOwner();
        if (outcome === "restarted" && this.#owner === this.node) {
          this.#leaveComponents(previous);
        }
        if (outcome !== "known") {
          this.#loadSessions(message.node).catch((error) =>
            log.warn("Reading the sessions of node {node}: {error}", {
              node: message.node,
              error: (error as Error).message,
            })
          );
        }
        return;
      }
      case "session":
        this.#replica.upsert(message.node, message.jid, message.session);
        return;
      case "unbound":
        this.#replica.unbound(message.node, message.jid, message.id);
        return;
      case "leave":
        this.#replica.drop(message.node, "left");
        this.#checkOwner();
        return;
    }
  }

  #onNodeMessage(message: NodeMessage): void {
    if (message.t === "close") {
      const jid = tryParseJid(message.jid);
      const session = jid && this.#server.sessions.get(jid);
      if (session && !(session instanceof RemoteSession) && session.id === message.id) {
        session.close(message.condition as StreamErrorCondition | undefined, message.text);
      }
      return;
    }
    if (message.t === "component") {
      for (const xml of message.items) this.#fromForwarder(message.from, xml);
      return;
    }
    for (const [jidText, xml, rerouted] of message.items) {
      const jid = tryParseJid(jidText);
      if (!jid) continue;
      let stanza: Element;
      try {
        stanza = parseElement(xml, STANZA_LIMITS);
      } catch (error) {
        log.warn("Ignoring an unreadable stanza from node {node}: {error}", {
          node: message.from,
          error,
        });
        continue;
      }
      const session = this.#server.sessions.get(jid);
      if (session && !(session instanceof RemoteSession)) session.send(stanza);
      else this.#missedSession(stanza, jid, rerouted === 1);
    }
  }

  /**
   * A stanza for a full JID this node no longer holds (it ended while the stanza travelled):
   * what RFC 6121 §8.5.3.2 says for a resource that is not available. A chat or normal message
   * is routed again (the router falls back to the bare JID: another resource, or offline
   * storage), once; an iq request is answered with an error; the rest is dropped.
   */
  #missedSession(stanza: Element, jid: JID, rerouted: boolean): void {
    const origin = this.#server.hostSession(jid.domain);
    if (stanza.name === "message") {
      const type = stanza.attrs.type ?? "normal";
      if ((type === "chat" || type === "normal") && !rerouted) {
        this.#rerouting = true;
        try {
          this.#server.route(stanza, origin);
        } finally {
          this.#rerouting = false;
        }
      } else if (type === "groupchat") {
        this.#server.route(errorReply(stanza, "service-unavailable"), origin);
      }
      return;
    }
    if (stanza.name === "iq" && !isError(stanza)) {
      const type = stanza.attrs.type;
      if (type === "get" || type === "set") {
        this.#server.route(errorReply(stanza, "service-unavailable"), origin);
      }
    }
  }

  // ---------- internal components, served by one node ----------

  /** The live node whose name sorts first, as this node's replica has it. */
  #ownerNow(): string {
    let first = this.node;
    for (const known of this.#replica.nodes()) if (known.name < first) first = known.name;
    return first;
  }

  /**
   * A stanza for an internal component routed here: on a node that does not serve the
   * components it goes to the owner (true); the owner keeps it (false).
   */
  #forwardToOwner(stanza: Element, host: Host): boolean {
    const owner = this.#owner;
    if (owner === this.node || this.#stopped || host.external) return false;
    let items = this.#componentOutboxes.get(owner);
    if (!items) this.#componentOutboxes.set(owner, items = []);
    items.push(serialize(stanza));
    this.#schedule();
    return true;
  }

  /**
   * A stanza another node forwarded to the components served here, routed into the
   * component's host as one from a client of this node: the sender's proxy session is its
   * origin (answers go back through it), or the component itself for any other sender.
   */
  #fromForwarder(node: string, xml: string): void {
    let stanza: Element;
    try {
      stanza = parseElement(xml, STANZA_LIMITS);
    } catch (error) {
      log.warn("Ignoring an unreadable component stanza from node {node}: {error}", {
        node,
        error,
      });
      return;
    }
    const to = tryParseJid(stanza.attrs.to ?? "");
    if (!to) return;
    const from = tryParseJid(stanza.attrs.from ?? "");
    const sender = from?.resource !== undefined ? this.#server.sessions.get(from) : undefined;
    if (sender instanceof RemoteSession && stanza.name === "presence") {
      this.#noteComponentPresence(sender, stanza);
    }
    this.#server.router.routeForwarded(stanza, sender ?? this.#server.hostSession(to.domain));
  }

  #noteComponentPresence(sender: RemoteSession, presence: Element): void {
    const type = presence.attrs.type;
    const target = presence.attrs.to!;
    let targets = this.#componentPresence.get(sender);
    if (type === undefined) {
      if (!targets) this.#componentPresence.set(sender, targets = new Set());
      targets.add(target);
    } else if (type === "unavailable" || type === "error") {
      targets?.delete(target);
    }
  }

  /**
   * The sessions of a dead node leave the components they had sent presence to, as their node
   * would have made them leave (rooms drop them as occupants).
   */
  #leaveComponents(proxies: readonly RemoteSession[]): void {
    for (const proxy of proxies) {
      const targets = this.#componentPresence.get(proxy);
      if (!targets) continue;
      this.#componentPresence.delete(proxy);
      const from = proxy.jid.toString();
      for (const to of targets) {
        const unavailable = new Element("presence", { from, to, type: "unavailable" });
        const domain = tryParseJid(to)?.domain;
        if (domain) {
          this.#server.router.routeForwarded(unavailable, this.#server.hostSession(domain));
        }
      }
    }
  }

  /**
   * After the set of live nodes changed: when this node starts or stops serving the internal
   * components, their modules start over from the shared store (rooms, nodes, affiliations,
   * archives), so an owner never serves from what it remembered of an earlier turn as owner,
   * and a node that handed over keeps no occupants.
   */
  #checkOwner(): void {
    const owner = this.#ownerNow();
    if (owner === this.#owner || this.#stopped) return;
    const previous = this.#owner;
    const was = previous === this.node;
    this.#owner = owner;
    const is = owner === this.node;
    log.info("Internal components are served by node {owner} now (was {previous})", {
      owner,
      previous,
    });
    if (was === is) return;
    this.#restarting = this.#restarting.then(() => this.#restartComponents(is));
  }

  async #restartComponents(owner: boolean): Promise<void> {
    const modules = this.#server.modules;
    for (const host of this.#server.hosts.values()) {
      if (host.kind !== "component" || host.external) continue;
      const names = modules.loaded(host.domain);
      modules.unloadAll(host);
      for (const name of names) {
        try {
          await modules.load(host, name);
        } catch (error) {
          log.error("Module {module} on {host} failed to start over: {error}", {
            module: name,
            host: host.domain,
            error: (error as Error).message,
          });
        }
      }
    }
    log.info(
      owner
        ? "This node serves the internal components now: their state was read from the store"
        : "This node no longer serves the internal components: their state here was dropped",
    );
  }

  // ---------- heartbeats and dead nodes ----------

  #info(): NodeInfo {
    return {
      started: this.started,
      pid: Deno.pid,
      listeners: this.#server.listeners.map((l) => `${l.kind} ${l.host}:${l.port}`),
      sessions: this.#local.size,
    };
  }

  /** This node's heartbeat came back: its subscription works. Or another node took its name. */
  #ownHeartbeat(info: NodeInfo): void {
    if (info.started !== this.started || info.pid !== Deno.pid) {
      log.error("Another node (pid {pid}) uses this node's name {node}: set cluster.node", {
        pid: info.pid,
        node: this.node,
      });
      return;
    }
    this.#lastEcho = Date.now();
    if (this.#deaf) {
      this.#deaf = false;
      // What the others said while this node heard nothing was lost, not unsaid: none of them
      // counts as dead before a whole timeout from now.
      this.#replica.heardAll(this.#lastEcho);
      log.info("Hearing the cluster again");
    }
  }

  /**
   * Drops the nodes not heard from in time, then refreshes this node's key and session hash
   * (both expire after the node timeout without it), writing the hash again when Redis lost
   * it, and only then tells the others it is alive (a node new to them reads the hash).
   */
  async #heartbeat(): Promise<void> {
    if (this.#stopped) return;
    this.#checkNodes();
    if (this.#beating) return; // the previous one still waits for Redis
    this.#beating = true;
    try {
      const info = this.#info();
      const ttl = this.#timeoutMs;
      const hash = sessionsKey(this.node);
      const [, hashExists] = await Promise.all([
        this.#bus.setWithTtl(nodeKey(this.node), JSON.stringify(info), ttl),
        this.#bus.expire(hash, ttl),
      ]);
      if (this.#stopped) return;
      if (!hashExists && this.#local.size > 0) {
        // The hash expired (Redis was out of reach longer than the timeout, or restarted).
        const records = [...this.#local].map(([jid, session]) =>
          [jid, this.#record(session)] as const
        );
        const entries: Record<string, string> = {};
        for (const [jid, record] of records) entries[jid] = JSON.stringify(record);
        await this.#bus.hashSetAll(hash, entries);
        await this.#bus.expire(hash, ttl);
        // A node that read this hash while it was gone (its own resync raced this one) learns
        // the sessions from the announcements.
        for (const [jid, session] of records) {
          this.#publish({ t: "session", node: this.node, jid, session });
        }
        log.info("Wrote this node's {count} sessions to Redis again", {
          count: this.#local.size,
        });
      }
      this.#publish({ t: "heartbeat", node: this.node, info: this.#info() });
    } finally {
      this.#beating = false;
    }
  }

  #heartbeatFailed(error: unknown): void {
    log.warn("Cluster heartbeat failed: {error}", { error: (error as Error).message });
  }

  /**
   * Drops the nodes silent for longer than the timeout, as long as this node hears itself. The
   * surviving node whose name sorts
   * first ends their sessions for everyone (unavailable presence to their contacts); the
   * others only forget them.
   */
  #checkNodes(): void {
    const now = Date.now();
    if (now - this.#lastEcho > this.#timeoutMs) {
      // Not even this node's own heartbeat comes back: the others' silence says nothing, and
      // dropping them would end every remote session for their contacts.
      if (!this.#deaf) {
        this.#deaf = true;
        log.warn("Not hearing the cluster through Redis: no node is counted dead meanwhile");
      }
      return;
    }
    // Timed against this node's own last echo, not the clock: a node is dead only when the
    // channel was seen working after its deadline (otherwise a Redis stall would condemn the
    // nodes whose last heartbeat happened to come a little before this node's own).
    const dead = new Set(this.#replica.expired(this.#lastEcho, this.#timeoutMs));
    if (dead.size === 0) return;
    const announce = this.#announces(dead);
    for (const name of dead) {
      const proxies = this.#replica.drop(name, "dead", announce);
      if (this.#owner === this.node) this.#leaveComponents(proxies);
    }
    this.#checkOwner();
  }

  /** True when this node sorts first among the nodes alive apart from `gone`. */
  #announces(gone: Set<string>): boolean {
    const alive = [this.node, ...this.#replica.nodes().map((n) => n.name)]
      .filter((name) => !gone.has(name))
      .sort();
    return alive[0] === this.node;
  }

  async #loadSessions(name: string): Promise<void> {
    const entries = await this.#bus.hashGetAll(sessionsKey(name));
    const known: KnownNode | undefined = this.#replica.node(name);
    if (!known) return;
    for (const [jid, text] of Object.entries(entries)) {
      // An announcement that arrived meanwhile is newer than what was read.
      if (known.proxies.has(jid)) continue;
      const record = parseSessionRecord(text);
      if (record) this.#replica.upsert(name, jid, record);
    }
  }
}

/** The full JIDs of the available sessions among `sessions`, sorted. */
function availableOf(sessions: ReadonlyMap<string, Session>): string[] {
  return [...sessions].filter(([, session]) => presenceOf(session).available)
    .map(([jid]) => jid).sort();
}

/** Rejects when `promise` takes longer than `ms`. */
async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Redis did not answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
