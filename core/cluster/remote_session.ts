// A client session held by another node, as this node's router sees it: bound under its full
// JID in the SessionManager with its RFC 6121 presence, so delivery, presence broadcast and roster
// pushes reach it unchanged; what is sent to it travels to the holding node through the broker.

import type { JID } from "../jid.ts";
import type { Session } from "../sessions.ts";
import type { Element } from "../xml/element.ts";
import type { StreamErrorCondition } from "../xml/stanza.ts";
import type { SessionRecord } from "./protocol.ts";

/** Where a proxy's stanzas and close requests go (the cluster's connection to the broker). */
export interface RemoteOutbox {
  /** Queues a stanza for the session `jid` on `node` (sent once per event-loop turn). */
  send(node: string, jid: string, stanza: Element): void;
  /** Asks `node` to close the session and forgets the proxy here. */
  close(session: RemoteSession, condition?: StreamErrorCondition, text?: string): void;
}

/** A proxy for a client session bound on another node. */
export class RemoteSession implements Session {
  /** `node/id`, unique beside this node's own session ids. */
  readonly id: string;
  /** The session's id on its node. */
  readonly remoteId: string;
  readonly kind = "c2s" as const;
  readonly host: string;
  readonly jid: JID;
  readonly ip: string;
  readonly secure: boolean;
  readonly authenticated = true;
  readonly connectedAt: number;
  readonly lastActivity: number;
  /** The node that holds the session. */
  readonly node: string;
  #jidText: string;
  #outbox: RemoteOutbox;

  constructor(node: string, jid: JID, record: SessionRecord, outbox: RemoteOutbox) {
    this.node = node;
    this.jid = jid;
    this.#jidText = jid.toString();
    this.host = jid.domain;
    this.remoteId = record.id;
    this.id = `${node}/${record.id}`;
    this.ip = record.ip;
    this.secure = record.secure;
    this.connectedAt = record.connectedAt;
    this.lastActivity = record.connectedAt;
    this.#outbox = outbox;
  }

  /** Queues the stanza for the holding node. */
  send(stanza: Element): void {
    this.#outbox.send(this.node, this.#jidText, stanza);
  }

  /** Asks the holding node to close the session. */
  close(condition?: StreamErrorCondition, text?: string): void {
    this.#outbox.close(this, condition, text);
  }
}
