// XEP-0198 stream management: acknowledgements both ways, and sessions that outlive their
// connection. A resumable session whose connection drops hibernates (stays bound, its presence
// stays available, stanzas for it are queued) until the client resumes it on a new connection
// or the hibernation time runs out; then whatever the client never acknowledged is delivered
// again as RFC 6121 says (other resources or offline storage), never silently dropped.

import type { OptionSpec } from "../core/config_schema.ts";
import type {
  Bind2Event,
  Host,
  InlineFeaturesEvent,
  Sasl2InlineEvent,
  SessionEvent,
  StreamElementEvent,
} from "../core/hosts.ts";
import type { ModuleAPI } from "../core/modules.ts";
import { C2SSession } from "../core/net/c2s.ts";
import { redeliver as redeliverStanza, redeliveryOrigin } from "../core/redelivery.ts";
import type { Session } from "../core/sessions.ts";
import { Element } from "../core/xml/element.ts";
import { NS_STANZAS } from "../core/xml/stanza.ts";

const NS_SM = "urn:xmpp:sm:3";
/** Counters wrap at 2^32 (XEP-0198 §4). */
const WRAP = 2 ** 32;
/** `<r/>` a client may send without a stanza between them before it is cut off. */
const MAX_REQUESTS_WITHOUT_STANZA = 100;
/** Expired sessions whose handled count is still answered in `<failed h='…'/>`. */
const MAX_TOMBSTONES = 1000;

/**
 * Payload of `smacks-hibernating` (a session's connection dropped and it now waits to be
 * resumed) and of `smacks-queued-while-hibernating` (a stanza for a hibernating session was
 * queued, to be sent if the client resumes). Push notifications wake the device on both.
 */
export interface SmacksHibernationEvent {
  session: C2SSession;
  /**
   * For `smacks-hibernating`: what the client had not acknowledged when the connection dropped,
   * oldest first. For `smacks-queued-while-hibernating`: the one stanza just queued.
   */
  stanzas: readonly Element[];
  host: Host;
}

declare module "../core/hosts.ts" {
  interface ModuleEvents {
    "smacks-hibernating": SmacksHibernationEvent;
    "smacks-queued-while-hibernating": SmacksHibernationEvent;
  }
}

/** One line for module listings. */
export const description =
  "XEP-0198: acknowledgements and resumption of sessions after a lost connection";

function option(
  fallback: number,
  min: number,
  max: number,
  description: string,
): OptionSpec {
  return { type: "integer", default: fallback, min, max, scope: "host", description };
}

/** Options the module reads (all applied at once by a reload). */
export const options: Record<string, OptionSpec> = {
  smacks_hibernation_time: option(
    600,
    0,
    86400,
    "Seconds a session whose connection dropped waits to be resumed (0: no resumption)",
  ),
  smacks_max_unacked_stanzas: option(
    5,
    1,
    10000,
    "Unacknowledged stanzas after which the server asks the client for an ack",
  ),
  smacks_max_ack_delay: option(
    30,
    1,
    3600,
    "Seconds the server waits before asking for an ack of fewer stanzas",
  ),
  smacks_max_queue_size: option(
    500,
    10,
    100000,
    "Unacknowledged stanzas a session may hold; beyond, it ends with resource-constraint",
  ),
  smacks_max_hibernated_sessions: option(
    10,
    1,
    1000,
    "Hibernating sessions per account; the oldest ends when one more hibernates",
  ),
  smacks_max_hibernated_sessions_total: option(
    10000,
    1,
    1000000,
    "Hibernating sessions on the host; the oldest ends when one more hibernates",
  ),
};

interface Settings {
  hibernationMax: number;
  ackThreshold: number;
  ackDelayMs: number;
  maxQueue: number;
  maxPerAccount: number;
  maxTotal: number;
}

function readSettings(m: ModuleAPI): Settings {
  const get = (name: string) => m.option<number>(name);
  return {
    hibernationMax: get("smacks_hibernation_time"),
    ackThreshold: get("smacks_max_unacked_stanzas"),
    ackDelayMs: get("smacks_max_ack_delay") * 1000,
    maxQueue: get("smacks_max_queue_size"),
    maxPerAccount: get("smacks_max_hibernated_sessions"),
    maxTotal: get("smacks_max_hibernated_sessions_total"),
  };
}

/** Stream management state of one client session. */
interface SmState {
  session: C2SSession;
  /** The resumption id (only when resumable). */
  id: string | undefined;
  /** Longest hibernation the client gets, in seconds (0: not resumable). */
  maxSeconds: number;
  /** The session's stanza count when SM was enabled (inbound `h` counts from there). */
  inboundBase: number;
  /** Stanzas sent and not acknowledged, oldest first, with when each was queued. */
  queue: Element[];
  queuedAt: number[];
  /** Outbound stanzas the client acknowledged (mod 2^32): the `h` of the oldest queued one. */
  acked: number;
  /** An `<r/>` is outstanding (sent, no `<a/>` yet). */
  requested: boolean;
  /** Cancels the pending delayed `<r/>`. */
  requestTimer: (() => void) | undefined;
  /** `<r/>` received since the last stanza (flood guard). */
  requestsWithoutStanza: number;
  /** The inbound count at the last `<r/>`. */
  lastInboundAtRequest: number;
  /** When the connection was lost (ms epoch), while hibernating. */
  hibernatingSince: number | undefined;
  /** Ends the hibernation at its deadline. */
  expiry: (() => void) | undefined;
  removeFilter: () => void;
}

/** The `h` a `<failed/>` reports for a session that ended, kept for a while. */
interface Tombstone {
  account: string;
  handled: number;
  until: number;
}

function smElement(name: string, attrs: Record<string, string> = {}): Element {
  return new Element(name, { xmlns: NS_SM, ...attrs });
}

function failed(condition: string, h?: number, text?: string): Element {
  const el = smElement("failed", h === undefined ? {} : { h: String(h) });
  el.c(condition, { xmlns: NS_STANZAS });
  if (text) el.c("text", { xmlns: NS_STANZAS }).t(text);
  return el;
}

/** Parses an `h` attribute: an unsigned 32-bit integer, else undefined. */
function parseH(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d{1,10}$/.test(value)) return undefined;
  const h = Number(value);
  return h < WRAP ? h : undefined;
}

/**
 * How many queued stanzas an `h` acknowledges, counting modulo 2^32 from `acked` (the `h` of
 * the oldest queued stanza); undefined when `h` claims more than the `queued` ones.
 */
export function newlyAcknowledged(acked: number, h: number, queued: number): number | undefined {
  const newly = (h - acked + WRAP) % WRAP;
  return newly > queued ? undefined : newly;
}

/** Loads stream management on a host. */
export default function smacks(m: ModuleAPI) {
  // Read again on reload: loading the module again would end every hibernating session.
  let settings = readSettings(m);
  m.hook("config-reloaded", () => {
    settings = readSettings(m);
  });

  const states = new WeakMap<Session, SmState>();
  /** Every session with stream management on, for unloading. */
  const managed = new Set<SmState>();
  const byId = new Map<string, SmState>();
  /** Hibernating sessions, oldest first (Map keeps insertion order). */
  const hibernating = new Map<SmState, string>();
  const tombstones = new Map<string, Tombstone>();

  m.hook("stream-features", ({ session, features }) => {
    if (session.authenticated) features.c("sm", { xmlns: NS_SM });
  });

  m.hook("stream-element", (event: StreamElementEvent) => {
    const { element, session, host } = event;
    if (element.ns !== NS_SM || !(session instanceof C2SSession)) return false;
    switch (element.name) {
      case "enable":
        enable(session, element);
        return true;
      case "resume":
        resume(session, element, host);
        return true;
      case "r":
        return request(session);
      case "a":
        return acknowledge(session, element);
      default:
        session.close("unsupported-stanza-type", `Unexpected element <${element.name}>`);
        return true;
    }
  });

  // SASL2 and Bind2 (XEP-0388, XEP-0386): resumption inside <authenticate/>, enabling inside
  // <bind/>, each answered inside the <success/>.
  m.hook("sasl2-inline-features", ({ inline }: InlineFeaturesEvent) => {
    inline.c("sm", { xmlns: NS_SM });
  });
  m.hook("bind2-inline-features", ({ inline }: InlineFeaturesEvent) => {
    inline.c("feature", { var: NS_SM });
  });
  m.hook("sasl2-inline", ({ session, request, success, host }: Sasl2InlineEvent) => {
    const el = request.getChild("resume", NS_SM);
    if (!el || !(session instanceof C2SSession)) return false;
    return resume(session, el, host, success);
  });
  m.hook("bind2-bound", ({ session, request, bound }: Bind2Event) => {
    const el = request.getChild("enable", NS_SM);
    if (!el || !(session instanceof C2SSession)) return;
    enable(session, el, (answer) => bound.children.push(answer));
  });

  m.hook("transport-lost", ({ session }: SessionEvent) => {
    const state = states.get(session);
    if (!state || state.id === undefined || state.maxSeconds === 0) return false;
    hibernate(state);
    return true;
  });

  // A client cut off for not reading: its unacknowledged queue holds every stanza it never got
  // (and more), handed back when the resource is unbound.
  m.hook("stanzas-unsent", ({ session }: SessionEvent) => states.has(session));

  m.hook("resource-unbind", ({ session }: SessionEvent) => {
    const state = states.get(session);
    if (!state) return;
    finish(state);
  });

  // Unloading ends the sessions only stream management kept alive; the others stop being
  // counted (their client's next <r/> or <a/> is then an unsupported element).
  m.onUnload(() => {
    for (const state of [...hibernating.keys()]) state.session.close();
    for (const state of [...managed]) {
      managed.delete(state);
      states.delete(state.session);
      state.requestTimer?.();
      state.removeFilter();
      state.session.info.delete("sm");
    }
  });

  /** Enables SM; the answer goes to `answer` (the stream, or a Bind2 `<bound/>`). */
  function enable(
    session: C2SSession,
    el: Element,
    answer: (el: Element) => void = (reply) => session.sendNonza(reply),
  ): void {
    if (!session.bound) {
      answer(failed("unexpected-request", undefined, "Bind a resource first"));
      return;
    }
    if (states.has(session)) {
      answer(failed("unexpected-request", undefined, "Already enabled"));
      return;
    }
    const wantsResume = el.attrs.resume === "true" || el.attrs.resume === "1";
    const asked = parseH(el.attrs.max);
    const maxSeconds = wantsResume
      ? Math.min(settings.hibernationMax, asked && asked > 0 ? asked : settings.hibernationMax)
      : 0;
    const state: SmState = {
      session,
      id: maxSeconds > 0 ? crypto.randomUUID() : undefined,
      maxSeconds,
      inboundBase: session.stanzasReceived,
      queue: [],
      queuedAt: [],
      acked: 0,
      requested: false,
      requestTimer: undefined,
      requestsWithoutStanza: 0,
      lastInboundAtRequest: -1,
      hibernatingSince: undefined,
      expiry: undefined,
      removeFilter: () => {},
    };
    states.set(session, state);
    managed.add(state);
    if (state.id) byId.set(state.id, state);
    const enabled = smElement("enabled");
    if (state.id) {
      enabled.attrs.id = state.id;
      enabled.attrs.resume = "true";
      enabled.attrs.max = String(maxSeconds);
    }
    answer(enabled);
    // Stanzas sent from now on are counted (the <enabled/> itself is a nonza).
    state.removeFilter = session.addSendFilter((stanza) => queued(state, stanza));
    session.info.set("sm", () => describe(state));
  }

  function inboundH(state: SmState): number {
    return (state.session.stanzasReceived - state.inboundBase + WRAP) % WRAP;
  }

  function request(session: C2SSession): boolean {
    const state = states.get(session);
    if (!state) {
      session.sendNonza(failed("unexpected-request", undefined, "Stream management is off"));
      return true;
    }
    const received = inboundH(state);
    if (received === state.lastInboundAtRequest) {
      state.requestsWithoutStanza++;
      if (state.requestsWithoutStanza > MAX_REQUESTS_WITHOUT_STANZA) {
        session.close("policy-violation", "Too many <r/> without stanzas");
        return true;
      }
    } else {
      state.requestsWithoutStanza = 0;
      state.lastInboundAtRequest = received;
    }
    // The count promises the stanzas are stored: their writes commit before it goes out.
    m.database.commitWrites();
    session.sendNonza(smElement("a", { h: String(received) }));
    return true;
  }

  function acknowledge(session: C2SSession, el: Element): boolean {
    const state = states.get(session);
    if (!state) {
      session.sendNonza(failed("unexpected-request", undefined, "Stream management is off"));
      return true;
    }
    const h = parseH(el.attrs.h);
    if (h === undefined) {
      session.close("invalid-xml", "<a/> needs an 'h' between 0 and 4294967295");
      return true;
    }
    if (!applyAck(state, h)) {
      const sent = (state.acked + state.queue.length) % WRAP;
      session.close(
        "undefined-condition",
        `You acknowledged ${h} stanzas but only ${sent} were sent`,
      );
      return true;
    }
    state.requested = false;
    if (state.queue.length >= settings.ackThreshold) sendRequest(state);
    return true;
  }

  /** Drops the stanzas up to `h` from the queue; false when `h` is beyond what was sent. */
  function applyAck(state: SmState, h: number): boolean {
    const newly = newlyAcknowledged(state.acked, h, state.queue.length);
    if (newly === undefined) return false;
    if (newly > 0) {
      state.queue.splice(0, newly);
      state.queuedAt.splice(0, newly);
      state.acked = h;
    }
    return true;
  }

  function queued(state: SmState, stanza: Element): void {
    state.queue.push(stanza);
    state.queuedAt.push(Date.now());
    if (state.queue.length > settings.maxQueue) {
      state.session.close("resource-constraint", "Too many unacknowledged stanzas");
      return;
    }
    if (state.hibernatingSince !== undefined) {
      m.host.events.fire("smacks-queued-while-hibernating", {
        session: state.session,
        stanzas: [stanza],
        host: m.host,
      });
      return;
    }
    if (state.requested) return;
    if (state.queue.length >= settings.ackThreshold) sendRequest(state);
    else if (!state.requestTimer) {
      state.requestTimer = m.addTimer(settings.ackDelayMs, () => {
        state.requestTimer = undefined;
        if (state.queue.length > 0 && !state.requested) sendRequest(state);
      }, { label: "ack request" });
    }
  }

  function sendRequest(state: SmState): void {
    if (state.hibernatingSince !== undefined) return;
    state.requestTimer?.();
    state.requestTimer = undefined;
    state.requested = true;
    state.session.sendNonza(smElement("r"));
  }

  function hibernate(state: SmState): void {
    state.requestTimer?.();
    state.requestTimer = undefined;
    state.requested = false;
    state.hibernatingSince = Date.now();
    hibernating.set(state, state.session.jid!.bare.toString());
    state.expiry = m.addTimer(state.maxSeconds * 1000, () => {
      state.expiry = undefined;
      m.log.info("Hibernation of {jid} ({id}) ran out", {
        jid: state.session.jid?.toString(),
        id: state.session.id,
      });
      state.session.close();
    }, { label: "hibernation expiry" });
    // Bounded: the oldest hibernating sessions of this account, then of everyone, end first.
    const account = hibernating.get(state)!;
    let mine = 0;
    for (const owner of hibernating.values()) if (owner === account) mine++;
    for (const [other, owner] of hibernating) {
      if (mine <= settings.maxPerAccount) break;
      if (owner === account && other !== state) {
        mine--;
        other.session.close();
      }
    }
    for (const other of hibernating.keys()) {
      if (hibernating.size <= settings.maxTotal) break;
      other.session.close();
    }
    if (hibernating.has(state)) {
      m.host.events.fire("smacks-hibernating", {
        session: state.session,
        stanzas: [...state.queue],
        host: m.host,
      });
    }
  }

  /**
   * Resumes a hibernating (or still attached) session on this stream's transport. Inside a
   * SASL2 `<authenticate/>`, `sasl2` is the `<success/>` being built: a failure is added to it
   * (the caller then binds as usual), a resumption adds `<resumed/>` and sends it from the
   * resumed session. Returns true when the session was resumed.
   */
  function resume(session: C2SSession, el: Element, host: Host, sasl2?: Element): boolean {
    const previd = el.attrs.previd ?? "";
    const h = parseH(el.attrs.h);
    const account = `${session.username}@${host.domain}`;
    const answer = (reply: Element) => {
      if (sasl2) sasl2.children.push(reply);
      else session.sendNonza(reply);
      return false;
    };
    if (session.bound) {
      return answer(failed("unexpected-request", undefined, "Resume before binding"));
    }
    if (h === undefined) {
      return answer(failed("bad-request", undefined, "<resume/> needs a valid 'h'"));
    }
    const state = byId.get(previd);
    if (!state || state.session.closed || state.session.jid?.bare.toString() !== account) {
      // Only the account that owned a session learns what was handled in it.
      const tomb = tombstones.get(previd);
      const known = tomb && tomb.account === account && tomb.until > Date.now();
      return answer(
        failed("item-not-found", known ? tomb.handled : undefined, "No such session to resume"),
      );
    }
    if (!applyAck(state, h)) {
      answer(failed("undefined-condition", inboundH(state), "The 'h' is beyond what was sent"));
      state.session.close();
      return false;
    }
    const transport = session.handOver();
    if (!transport) return answer(failed("unexpected-request"));
    const old = state.session;
    state.expiry?.();
    state.expiry = undefined;
    state.hibernatingSince = undefined;
    hibernating.delete(state);
    old.attach(transport);
    const resumed = smElement("resumed", { h: String(inboundH(state)), previd });
    if (sasl2) {
      // The client is now the resumed session's full JID.
      const identifier = sasl2.getChild("authorization-identifier");
      if (identifier) identifier.children = [old.jid!.toString()];
      sasl2.children.push(resumed);
      old.sendNonza(sasl2);
    } else {
      old.sendNonza(resumed);
    }
    // Everything the client has not acknowledged goes out again, in order.
    for (const stanza of state.queue) old.sendNonza(stanza);
    state.requested = false;
    if (state.queue.length > 0) sendRequest(state);
    m.log.info("Session {id} for {jid} resumed from {ip}", {
      id: old.id,
      jid: old.jid?.toString(),
      ip: transport.ip,
    });
    return true;
  }

  /** The session ended: forget it, and deliver again what the client never acknowledged. */
  function finish(state: SmState): void {
    const session = state.session;
    states.delete(session);
    managed.delete(state);
    state.requestTimer?.();
    state.expiry?.();
    hibernating.delete(state);
    state.removeFilter();
    session.info.delete("sm");
    if (state.id) {
      byId.delete(state.id);
      tombstones.set(state.id, {
        account: session.jid!.bare.toString(),
        handled: inboundH(state),
        until: Date.now() + settings.hibernationMax * 1000,
      });
      for (const key of tombstones.keys()) {
        if (tombstones.size <= MAX_TOMBSTONES) break;
        tombstones.delete(key);
      }
    }
    const queue = state.queue.splice(0);
    const times = state.queuedAt.splice(0);
    for (let i = 0; i < queue.length; i++) redeliver(queue[i], times[i]);
  }

  /**
   * A stanza the client never acknowledged goes to the account again as RFC 6121 says (the
   * core's one path for stanzas a client never got).
   */
  function redeliver(stanza: Element, queuedAt: number): void {
    redeliverStanza(stanza, {
      server: m.server,
      domain: m.domain,
      origin: internalOrigin,
      queuedAt,
    });
  }

  function describe(state: SmState): string {
    const parts = ["enabled"];
    if (state.id) parts.push(`resumable for ${state.maxSeconds} s`);
    parts.push(`${state.queue.length} unacked`);
    if (state.hibernatingSince !== undefined) {
      parts.push(`hibernating since ${new Date(state.hibernatingSince).toISOString()}`);
    }
    return parts.join(", ");
  }

  /** The origin of stanzas delivered again (see core/redelivery.ts). */
  const internalOrigin: Session = redeliveryOrigin(m.server, m.domain);
}
