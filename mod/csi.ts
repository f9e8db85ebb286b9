// XEP-0352 client state indication: a client that says it is inactive (a phone with its screen
// off) is sent only what matters at once; presence updates and bodiless signals (chat states,
// receipts, markers) wait and go out together when it is active again or something important
// arrives, which saves the radio from waking for each of them.

import type { OptionSpec } from "../core/config_schema.ts";
import type {
  Bind2Event,
  Host,
  InlineFeaturesEvent,
  SessionEvent,
  StreamElementEvent,
} from "../core/hosts.ts";
import type { ModuleAPI } from "../core/modules.ts";
import { C2SSession } from "../core/net/c2s.ts";
import type { Session } from "../core/sessions.ts";
import type { Element } from "../core/xml/element.ts";

const NS_CSI = "urn:xmpp:csi:0";
const NS_CARBONS = "urn:xmpp:carbons:2";
const NS_FORWARD = "urn:xmpp:forward:0";
const NS_MUC_USER = "http://jabber.org/protocol/muc#user";

/**
 * Namespaces of message payloads that make a bodiless message urgent: end-to-end encrypted
 * content (its body is inside), invitations and calls a user must see, and archive results the
 * client is waiting for.
 */
const URGENT_PAYLOADS = new Set([
  "eu.siacs.conversations.axolotl", // OMEMO (legacy, XEP-0384 0.3)
  "urn:xmpp:omemo:2", // OMEMO
  "jabber:x:encrypted", // XEP-0027 OpenPGP
  "urn:xmpp:openpgp:0", // XEP-0373 OpenPGP for XMPP
  "urn:xmpp:eme:0", // XEP-0380 explicit message encryption
  "jabber:x:conference", // XEP-0249 direct MUC invitation
  "urn:xmpp:jingle-message:0", // XEP-0353 call propose/retract/accept
  "urn:xmpp:mam:2", // XEP-0313 results of the client's own query
]);

/**
 * Payload of `csi-urgent`: an important stanza (see {@link isImportant}) is going out at once to
 * a client that said it is inactive. Its app may be suspended with the connection still open,
 * so push notifications wake the device here.
 */
export interface CsiUrgentEvent {
  session: C2SSession;
  stanza: Element;
  host: Host;
}

/** Payload of `csi-client-state`: a bound client said `<active/>` or `<inactive/>`. */
export interface CsiClientStateEvent {
  session: C2SSession;
  inactive: boolean;
  host: Host;
}

declare module "../core/hosts.ts" {
  interface ModuleEvents {
    "csi-urgent": CsiUrgentEvent;
    "csi-client-state": CsiClientStateEvent;
  }
}

/** One line for module listings. */
export const description =
  "XEP-0352: holds presence updates and chat states for inactive clients until they matter";

/** Options the module reads (applied at once by a reload). */
export const options: Record<string, OptionSpec> = {
  csi_max_held_stanzas: {
    type: "integer",
    default: 100,
    min: 1,
    max: 10000,
    scope: "host",
    description: "Stanzas held for an inactive client; one more sends everything held",
  },
};

/**
 * Whether a stanza for an inactive client goes out now (true) or may wait (false). Urgent:
 * every iq and error; presence about subscriptions and a MUC's presence about the user itself
 * (status 110, which a client waits for after joining); a message with a body or subject, an
 * encrypted one, an invitation, a call, an archive result; a carbon copy is judged by the
 * message it carries. Everything else waits: presence updates, chat states, receipts, markers,
 * PEP notifications.
 *
 * This is the one place that decides. A MUC mention rule (a groupchat message is urgent only
 * when it names the user) belongs here once Lilt hosts MUC: it narrows the body rule for
 * `type='groupchat'`, with the account passed in to match against.
 */
export function isImportant(stanza: Element): boolean {
  const type = stanza.attrs.type;
  if (type === "error") return true;
  if (stanza.name === "presence") {
    // Typed other than unavailable: subscribe, subscribed, unsubscribe, unsubscribed (or probe).
    if (type !== undefined && type !== "unavailable") return true;
    return isMucSelfPresence(stanza);
  }
  if (stanza.name !== "message") return true; // iq (and anything unforeseen)
  for (const child of stanza.children) {
    if (typeof child === "string") continue;
    if (child.name === "body" || child.name === "subject") return true;
    if (URGENT_PAYLOADS.has(child.ns)) return true;
    if (child.ns === NS_MUC_USER && child.getChild("invite", NS_MUC_USER)) return true;
    if (child.ns === NS_CARBONS && (child.name === "sent" || child.name === "received")) {
      const inner = child.getChild("forwarded", NS_FORWARD)?.getChild("message");
      return inner === undefined || isImportant(inner);
    }
  }
  return false;
}

/** A MUC presence about the occupant itself (XEP-0045 status code 110). */
function isMucSelfPresence(stanza: Element): boolean {
  const x = stanza.getChild("x", NS_MUC_USER);
  if (!x) return false;
  return x.getChildren("status", NS_MUC_USER).some((status) => status.attrs.code === "110");
}

/** Client state of one bound session. */
interface CsiState {
  session: C2SSession;
  /** Held stanzas in arrival order, each presence keyed by its sender, the rest by a number. */
  held: Map<string | number, Element>;
  nextKey: number;
  /** Removes the send gate; set while the client is inactive. */
  removeGate: (() => void) | undefined;
}

/** Loads client state indication on a host. */
export default function csi(m: ModuleAPI) {
  const readMax = () => m.option<number>("csi_max_held_stanzas");
  let maxHeld = readMax();
  m.hook("config-reloaded", () => {
    maxHeld = readMax();
  });

  const states = new Set<CsiState>();
  const bySession = new WeakMap<Session, CsiState>();
  /**
   * Authenticated sessions that said `<inactive/>` before binding. XEP-0352 offers CSI with
   * the post-authentication features, next to `<bind/>`, and its in-order rule (§5.1) makes a
   * state apply to everything processed after it; before binding nothing is delivered to the
   * stream, so the state takes effect when the resource is bound (as a Bind2 inline
   * `<inactive/>` does). `<active/>` before binding undoes it.
   */
  const inactiveBeforeBind = new WeakSet<Session>();

  m.hook("stream-features", ({ session, features }) => {
    if (session.authenticated) features.c("csi", { xmlns: NS_CSI });
  });

  m.hook("bind2-inline-features", ({ inline }: InlineFeaturesEvent) => {
    inline.c("feature", { var: NS_CSI });
  });

  m.hook("stream-element", ({ element, session }: StreamElementEvent) => {
    if (element.ns !== NS_CSI || !(session instanceof C2SSession)) return false;
    if (element.name !== "active" && element.name !== "inactive") return false; // stream error
    const inactive = element.name === "inactive";
    if (!session.bound) {
      if (inactive) inactiveBeforeBind.add(session);
      else inactiveBeforeBind.delete(session);
      return true;
    }
    const state = stateOf(session);
    if (inactive) goInactive(state);
    else goActive(state);
    m.host.events.fire("csi-client-state", { session, inactive, host: m.host });
    return true;
  });

  m.hook("resource-bind", ({ session }: SessionEvent) => {
    if (!(session instanceof C2SSession)) return;
    const state = stateOf(session);
    if (inactiveBeforeBind.delete(session)) goInactive(state);
  });

  m.hook("bind2-bound", ({ session, request }: Bind2Event) => {
    if (!(session instanceof C2SSession)) return;
    const state = stateOf(session);
    const inline = request.getChild("inactive", NS_CSI) !== undefined;
    if (inactiveBeforeBind.delete(session) || inline) goInactive(state);
  });

  // XEP-0352 §5.2: the state is not kept when a stream is resumed, since a stream begins
  // active. So when the connection drops, what is held goes on now (into stream management's
  // queue, to be sent again on resumption, or nowhere if the session ends), and stanzas sent
  // while the session waits are queued by stream management as they come. Runs before
  // stream management decides whether the session hibernates, and never claims the event.
  m.hook("transport-lost", ({ session }: SessionEvent) => {
    const state = bySession.get(session);
    if (state) goActive(state);
    return false;
  }, 10);

  // Resumed (possibly before the old connection was noticed as lost): a stream begins active.
  m.hook("transport-attached", ({ session }: SessionEvent) => {
    const state = bySession.get(session);
    if (state) goActive(state);
  });

  m.hook("resource-unbind", ({ session }: SessionEvent) => {
    const state = bySession.get(session);
    if (!state) return;
    // The session is closed: what is held (presence, signals) is stale and cannot be written.
    forget(state);
  });

  m.onUnload(() => {
    for (const state of [...states]) {
      goActive(state);
      forget(state);
    }
  });

  // Sessions bound before the module was loaded are active.
  for (const session of m.server.sessions.all()) {
    if (session instanceof C2SSession && session.bound && session.host === m.domain) {
      stateOf(session);
    }
  }

  function stateOf(session: C2SSession): CsiState {
    const known = bySession.get(session);
    if (known) return known;
    const state: CsiState = {
      session,
      held: new Map(),
      nextKey: 0,
      removeGate: undefined,
    };
    bySession.set(session, state);
    states.add(state);
    session.info.set("csi", () => describe(state));
    return state;
  }

  function goInactive(state: CsiState): void {
    if (state.removeGate) return;
    state.removeGate = state.session.addSendGate((stanza) => gate(state, stanza));
  }

  /** Sends everything held, in order, and stops holding. */
  function goActive(state: CsiState): void {
    state.removeGate?.();
    state.removeGate = undefined;
    flush(state);
  }

  function forget(state: CsiState): void {
    state.removeGate?.();
    state.removeGate = undefined;
    state.held.clear();
    states.delete(state);
    bySession.delete(state.session);
    state.session.info.delete("csi");
  }

  /** Decides a stanza's fate while the client is inactive: true writes it now. */
  function gate(state: CsiState, stanza: Element): boolean {
    if (isImportant(stanza)) {
      flush(state); // what was held was sent earlier, so it goes first
      m.host.events.fire("csi-urgent", { session: state.session, stanza, host: m.host });
      return true;
    }
    if (state.held.size >= maxHeld) {
      flush(state);
      return true;
    }
    if (stanza.name === "presence") {
      // Only the latest presence of each sender matters; it takes its own place in the order.
      const key = `presence ${stanza.attrs.from ?? ""}`;
      state.held.delete(key);
      state.held.set(key, stanza);
    } else {
      state.held.set(state.nextKey++, stanza);
    }
    return false;
  }

  function flush(state: CsiState): void {
    if (state.held.size === 0) return;
    const held = [...state.held.values()];
    state.held.clear();
    for (const stanza of held) state.session.release(stanza);
  }

  function describe(state: CsiState): string {
    return state.removeGate ? `inactive, ${state.held.size} held` : "active";
  }
}
