// A client session's presence as RFC 6121 defines it (available, interested, priority, the last
// broadcast presence), kept beside the session instead of in it: only bound client resources
// have presence, and only the presence module changes it. The router reads it for RFC 6121 §8
// delivery to a bare JID; other modules read it to find who is online.

import type { Session } from "./sessions.ts";
import type { Element } from "./xml/element.ts";

/** What RFC 6121 tracks for one resource. */
export interface ResourcePresence {
  /** Sent initial presence and not yet unavailable (RFC 6121 "available resource"). */
  available: boolean;
  /** Requested the roster (RFC 6121 "interested resource"). */
  interested: boolean;
  /** Priority from the last available presence (-128..127). */
  priority: number;
  /** The last available presence the client sent (broadcast copy), if any. */
  presence: Element | undefined;
}

const NONE: Readonly<ResourcePresence> = Object.freeze({
  available: false,
  interested: false,
  priority: 0,
  presence: undefined,
});

const states = new WeakMap<Session, ResourcePresence>();

/** Told of each change (the cluster announces its local sessions'); none on a single node. */
const changeObservers = new Set<(session: Session) => void>();

/** Calls `observer` after each change of any session's presence; returns a function removing it. */
export function observePresenceChanges(observer: (session: Session) => void): () => void {
  changeObservers.add(observer);
  return () => changeObservers.delete(observer);
}

/** The presence of a session (unavailable and not interested when nothing was recorded). */
export function presenceOf(session: Session): Readonly<ResourcePresence> {
  return states.get(session) ?? NONE;
}

/** Records a change of a session's presence (the presence and roster modules do). */
export function updatePresence(session: Session, change: Partial<ResourcePresence>): void {
  let state = states.get(session);
  if (!state) states.set(session, state = { ...NONE });
  Object.assign(state, change);
  if (changeObservers.size > 0) { for (const observer of changeObservers) observer(session); }
}
