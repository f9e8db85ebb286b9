// Presence and subscriptions (RFC 6121 §3-4): the subscription state machine on both sides,
// pre-approval, pending requests, presence broadcast, probes and directed presence.

import type { OptionSpec } from "../core/config_schema.ts";
import type { SessionEvent, StanzaEvent, StreamFeaturesEvent } from "../core/hosts.ts";
import { type JID, tryParseJid } from "../core/jid.ts";
import type { ModuleAPI } from "../core/modules.ts";
import type { Session } from "../core/sessions.ts";
import { Element } from "../core/xml/element.ts";
import { parseElement } from "../core/xml/parser.ts";
import { serialize } from "../core/xml/serializer.ts";
import { errorReply } from "../core/xml/stanza.ts";
import {
  hasFrom,
  hasTo,
  MAX_ROSTER_SIZE_OPTION,
  maxRosterSize as readMaxRosterSize,
  type RosterItem,
  Rosters,
  withFrom,
  withTo,
} from "./roster_store.ts";
import { presenceOf, updatePresence } from "../core/presence_state.ts";

const NS_PRE_APPROVAL = "urn:xmpp:features:pre-approval";

/** The presence types that manage subscriptions (RFC 6121 §3). */
const SUBSCRIPTION_TYPES = new Set(["subscribe", "subscribed", "unsubscribe", "unsubscribed"]);

/** One line for module listings. */
export const description = "RFC 6121 presence: subscriptions, broadcast, probes, directed presence";

/** Options this module reads (the roster size limit is shared with the roster module). */
export const options: Record<string, OptionSpec> = { max_roster_size: MAX_ROSTER_SIZE_OPTION };

/** Parses <priority/> (RFC 6121 §4.7.2.3): an integer -128..127, default 0. */
function priorityOf(presence: Element): number {
  const text = presence.getChildText("priority")?.trim();
  if (!text || !/^[+-]?\d+$/.test(text)) return 0;
  return Math.max(-128, Math.min(127, Number(text)));
}

/** A copy of a presence addressed to `to`. */
function addressed(presence: Element, to: string): Element {
  const copy = presence.clone();
  copy.attrs.to = to;
  return copy;
}

/** Loads presence and subscription handling on a host. */
export default function presence(m: ModuleAPI): void {
  const rosters = new Rosters(m);
  let maxRosterSize = readMaxRosterSize(m);
  // Re-read on reload rather than being reloaded: the directed presence below must survive.
  m.hook("config-reloaded", () => {
    maxRosterSize = readMaxRosterSize(m);
  });
  /** JIDs each session sent directed presence to, owed an unavailable on logout (§4.6). */
  const directed = new WeakMap<Session, Set<string>>();
  /** Sessions that already announced themselves with `resource-available`. */
  const announced = new WeakSet<Session>();

  m.hook("stream-features", ({ session, features }: StreamFeaturesEvent) => {
    if (session.authenticated) features.c("sub", { xmlns: NS_PRE_APPROVAL });
  });

  const bareOf = (session: Session) => session.jid!.bare.toString();
  const sessionsOf = (user: string) => m.server.sessions.userSessions(m.domain, user);
  const availableOf = (user: string) => sessionsOf(user).filter((s) => presenceOf(s).available);
  /** Routes a stanza the server generates (presence on a user's behalf, replies). */
  const route = (stanza: Element) => m.server.route(stanza, m.server.hostSession(m.domain));

  /** The user's available resources' presence, sent to `to` (§3.1.5, §4.3.2). */
  function sendPresenceOf(user: string, to: string, only?: string): number {
    let sent = 0;
    for (const session of availableOf(user)) {
      const own = presenceOf(session).presence;
      if (!own || (only !== undefined && session.jid!.resource !== only)) continue;
      const copy = addressed(own, to);
      copy.attrs.from = session.jid!.toString();
      route(copy);
      sent++;
    }
    return sent;
  }

  /** Unavailable presence from each of the user's available resources to `to` (§3.2.2). */
  function sendUnavailableOf(user: string, to: string): void {
    for (const session of availableOf(user)) {
      route(new Element("presence", { type: "unavailable", from: session.jid!.toString(), to }));
    }
  }

  // ---------- outbound subscription stanzas (RFC 6121 §3.1.2, §3.2.2, §3.3.2, §3.4, A.2) ----------

  const outbound = ({ stanza, origin }: StanzaEvent) => {
    const type = stanza.attrs.type;
    if (origin.kind !== "c2s" || !origin.jid?.local) return false;
    if (type === undefined || type === "unavailable") {
      trackDirected(stanza, origin);
      return false;
    }
    if (!SUBSCRIPTION_TYPES.has(type)) return false;
    const to = tryParseJid(stanza.attrs.to ?? "");
    if (!to) return false;
    const user = origin.jid.local;
    const contact = to.bare.toString();
    if (contact === bareOf(origin)) return true; // subscriptions with oneself mean nothing
    // §3.1.2: the server addresses subscription stanzas bare JID to bare JID.
    stanza.attrs.to = contact;
    stanza.attrs.from = bareOf(origin);
    const item = rosters.get(user, contact);
    switch (type) {
      case "subscribe":
        return outboundSubscribe(stanza, origin, user, contact, item);
      case "subscribed":
        return outboundSubscribed(stanza, user, contact, item);
      case "unsubscribe":
        if (item && (hasTo(item.subscription) || item.ask)) {
          const changed: RosterItem = { ...item, subscription: withTo(item.subscription, false) };
          delete changed.ask;
          rosters.update(user, contact, changed);
        }
        route(stanza);
        return true;
      default: // unsubscribed
        return outboundUnsubscribed(stanza, user, contact, item);
    }
  };

  function outboundSubscribe(
    stanza: Element,
    origin: Session,
    user: string,
    contact: string,
    item: RosterItem | undefined,
  ): boolean {
    if ((!item || item.hidden) && rosters.visibleAtLeast(user, maxRosterSize)) {
      const error = errorReply(stanza, "policy-violation", {
        text: `A roster holds at most ${maxRosterSize} items`,
      });
      error.attrs.to = origin.jid!.toString();
      origin.send(error);
      return true;
    }
    const changed: RosterItem = { ...(item ?? { subscription: "none", groups: [] }) };
    delete changed.hidden;
    if (!hasTo(changed.subscription)) changed.ask = "subscribe";
    rosters.update(user, contact, changed);
    // Routed even when nothing changed: a repeated request resynchronises the contact's side.
    route(stanza);
    return true;
  }

  function outboundSubscribed(
    stanza: Element,
    user: string,
    contact: string,
    item: RosterItem | undefined,
  ): boolean {
    if (item?.pendingIn) {
      // Approval of a pending request: "None + Pending In" -> "From", "To + Pending In" -> "Both".
      const changed: RosterItem = { ...item, subscription: withFrom(item.subscription, true) };
      delete changed.pendingIn;
      delete changed.pendingStanza;
      delete changed.hidden;
      delete changed.approved;
      rosters.update(user, contact, changed);
      route(stanza);
      sendPresenceOf(user, contact);
      return true;
    }
    if (item && hasFrom(item.subscription)) return true; // already approved: nothing to do
    // §3.4 pre-approval of a request the contact has not sent yet.
    if (!item && rosters.visibleAtLeast(user, maxRosterSize)) return true;
    if (item?.approved) return true;
    rosters.update(user, contact, {
      ...(item ?? { subscription: "none", groups: [] }),
      approved: true,
    });
    return true;
  }

  function outboundUnsubscribed(
    stanza: Element,
    user: string,
    contact: string,
    item: RosterItem | undefined,
  ): boolean {
    if (!item) return true;
    const wasFrom = hasFrom(item.subscription);
    if (!wasFrom && !item.pendingIn) {
      // §3.4: cancels a pre-approval, if there is one; nothing is routed.
      if (item.approved) {
        const changed = { ...item };
        delete changed.approved;
        rosters.update(user, contact, changed);
      }
      return true;
    }
    const changed: RosterItem = { ...item, subscription: withFrom(item.subscription, false) };
    delete changed.pendingIn;
    delete changed.pendingStanza;
    delete changed.approved;
    rosters.update(user, contact, changed.hidden ? undefined : changed);
    route(stanza);
    if (wasFrom) sendUnavailableOf(user, contact);
    return true;
  }

  m.hook("pre-presence/bare", outbound);
  m.hook("pre-presence/full", outbound);
  m.hook("pre-presence/host", outbound);

  /** §4.6: remembers who got directed presence from the session, for its unavailable. */
  function trackDirected(stanza: Element, origin: Session): void {
    const to = stanza.attrs.to;
    const target = to === undefined ? undefined : tryParseJid(to);
    if (!target || target.bare.toString() === bareOf(origin)) return;
    let targets = directed.get(origin);
    if (stanza.attrs.type === "unavailable") {
      targets?.delete(target.toString());
      return;
    }
    if (!targets) directed.set(origin, targets = new Set());
    targets.add(target.toString());
  }

  // ---------- inbound subscription stanzas and probes (RFC 6121 §3.1.3 - §3.3.3, §4.3.2, A.3) ----------

  const inbound = ({ stanza }: StanzaEvent) => {
    const type = stanza.attrs.type;
    if (type !== "probe" && (type === undefined || !SUBSCRIPTION_TYPES.has(type))) return false;
    const to = tryParseJid(stanza.attrs.to ?? "");
    const from = tryParseJid(stanza.attrs.from ?? "");
    if (!to?.local || !from) return true;
    const user = to.local;
    const userJid = to.bare.toString();
    const contact = from.bare.toString();
    if (!m.server.accounts.exists(m.domain, user)) {
      // §3.1.3, §4.3.2: no such account; the same answer as an unsubscribed one.
      if (type === "subscribe" || type === "probe") {
        route(new Element("presence", { type: "unsubscribed", from: userJid, to: contact }));
      }
      return true;
    }
    if (type === "probe") {
      answerProbe(stanza, user, to, from);
      return true;
    }
    if (contact === userJid) return true;
    // §3.1.3: a subscription stanza to a full JID is handled as if sent to the bare JID.
    stanza.attrs.to = userJid;
    const item = rosters.get(user, contact);
    switch (type) {
      case "subscribe":
        inboundSubscribe(stanza, user, contact, item);
        break;
      case "unsubscribe":
        if (item && (hasFrom(item.subscription) || item.pendingIn)) {
          const wasFrom = hasFrom(item.subscription);
          const changed: RosterItem = {
            ...item,
            subscription: withFrom(item.subscription, false),
          };
          delete changed.pendingIn;
          delete changed.pendingStanza;
          rosters.update(user, contact, changed.hidden ? undefined : changed);
          deliver(stanza, user);
          // The contact no longer sees the user's presence: tell it the user is gone.
          if (wasFrom) sendUnavailableOf(user, contact);
        }
        break;
      case "subscribed":
        if (item?.ask) {
          const changed: RosterItem = { ...item, subscription: withTo(item.subscription, true) };
          delete changed.ask;
          rosters.update(user, contact, changed);
          deliver(stanza, user);
        }
        break;
      default: // unsubscribed
        if (item && !item.hidden && (hasTo(item.subscription) || item.ask)) {
          const changed: RosterItem = {
            ...item,
            subscription: withTo(item.subscription, false),
          };
          delete changed.ask;
          rosters.update(user, contact, changed);
          deliver(stanza, user);
        }
    }
    return true;
  };

  function inboundSubscribe(
    stanza: Element,
    user: string,
    contact: string,
    item: RosterItem | undefined,
  ): void {
    const userJid = `${user}@${m.domain}`;
    if (item && hasFrom(item.subscription)) {
      // Already subscribed: the server answers for the user.
      route(new Element("presence", { type: "subscribed", from: userJid, to: contact }));
      return;
    }
    if (item?.approved) {
      // §3.4: pre-approved, so approved now without asking the user.
      const changed: RosterItem = { ...item, subscription: withFrom(item.subscription, true) };
      delete changed.approved;
      delete changed.pendingIn;
      delete changed.pendingStanza;
      rosters.update(user, contact, changed);
      route(new Element("presence", { type: "subscribed", from: userJid, to: contact }));
      sendPresenceOf(user, contact);
      return;
    }
    if (!item && rosters.count(user) >= maxRosterSize) return; // no room to remember it
    // The request is now waiting for the user: acknowledged with the contact's unavailable
    // presence (what Prosody does), which tells the sender it arrived and reveals nothing.
    route(new Element("presence", { type: "unavailable", from: userJid, to: contact }));
    if (item?.pendingIn) return; // already pending: not delivered again (A.3.1)
    const changed: RosterItem = {
      ...(item ?? { subscription: "none", groups: [], hidden: true }),
      pendingIn: true,
      pendingStanza: serialize(stanza),
    };
    rosters.update(user, contact, changed);
    deliver(stanza, user);
  }

  /** Hands an inbound subscription stanza to the user's available resources. */
  function deliver(stanza: Element, user: string): void {
    for (const session of availableOf(user)) session.send(stanza);
  }

  /** §4.3.2: a probe is answered only for a contact the user shares presence with. */
  function answerProbe(stanza: Element, user: string, to: JID, prober: JID): void {
    const userJid = to.bare.toString();
    const proberBare = prober.bare.toString();
    const replyTo = stanza.attrs.from!;
    const item = proberBare === userJid ? undefined : rosters.get(user, proberBare);
    const allowed = proberBare === userJid || (item !== undefined && !item.hidden &&
      hasFrom(item.subscription));
    if (!allowed) {
      route(new Element("presence", { type: "unsubscribed", from: userJid, to: proberBare }));
      return;
    }
    if (sendPresenceOf(user, replyTo, to.resource) === 0) {
      route(new Element("presence", { type: "unavailable", from: to.toString(), to: replyTo }));
    }
  }

  m.hook("presence/bare", inbound);
  m.hook("presence/full", inbound);

  // ---------- the user's own presence (RFC 6121 §4.2, §4.4, §4.5) ----------

  m.hook("presence/self", ({ stanza, origin, host }: StanzaEvent) => {
    const type = stanza.attrs.type;
    if (!origin.jid?.local) return true;
    if (type === undefined) {
      available(stanza, origin);
      if (!announced.has(origin)) {
        announced.add(origin);
        host.events.fire("resource-available", { session: origin, host });
      }
    } else if (type === "unavailable") {
      unavailable(origin, stanza);
    }
    // Anything else without a 'to' (subscriptions, probes, errors) means nothing: ignored.
    return true;
  });

  m.hook("resource-unbind", ({ session }: SessionEvent) => {
    if (session.jid?.local) unavailable(session);
  });

  /** Initial or updated available presence: broadcast, and on initial presence probe too. */
  function available(stanza: Element, origin: Session): void {
    const user = origin.jid!.local!;
    const full = origin.jid!.toString();
    const initial = !presenceOf(origin).available;
    const broadcast = stanza.clone();
    delete broadcast.attrs.to;
    broadcast.attrs.from = full;
    updatePresence(origin, { available: true, priority: priorityOf(stanza), presence: broadcast });
    // The account's own resources, this one included (§4.2.2, §4.4.2).
    for (const other of availableOf(user)) {
      if (other === origin) continue;
      other.send(addressed(broadcast, other.jid!.toString()));
      const theirs = presenceOf(other).presence;
      if (initial && theirs) origin.send(addressed(theirs, full));
    }
    origin.send(addressed(broadcast, full));
    // One read of the roster serves the broadcast, the probes and the pending requests.
    const pending: string[] = [];
    for (const [contact, item] of rosters.entries(user)) {
      // §3.1.3: subscription requests still waiting for an answer, again at each login.
      if (initial && item.pendingIn && item.pendingStanza) pending.push(item.pendingStanza);
      if (item.hidden) continue;
      if (hasFrom(item.subscription)) route(addressed(broadcast, contact));
      if (initial && hasTo(item.subscription)) {
        route(new Element("presence", { type: "probe", from: full, to: contact }));
      }
    }
    for (const text of pending) {
      try {
        origin.send(parseElement(text));
      } catch (error) {
        m.log.warn("Dropping an unreadable stored subscription request: {error}", { error });
      }
    }
  }

  /** Unavailable presence (sent, or implied by the session ending): §4.5.2, §4.6.3. */
  function unavailable(session: Session, stanza?: Element): void {
    const user = session.jid!.local!;
    const full = session.jid!.toString();
    const wasAvailable = presenceOf(session).available;
    updatePresence(session, { available: false, presence: undefined });
    const goodbye = stanza ? stanza.clone() : new Element("presence", { type: "unavailable" });
    delete goodbye.attrs.to;
    goodbye.attrs.from = full;
    // The resource that said goodbye gets it back, so the client knows the server processed
    // it before the stream ends (as Prosody does).
    if (stanza) session.send(addressed(goodbye, full));
    const reached = new Set<string>();
    if (wasAvailable) {
      for (const other of availableOf(user)) {
        if (other !== session) other.send(addressed(goodbye, other.jid!.toString()));
      }
      for (const [contact, item] of rosters.visible(user)) {
        if (!hasFrom(item.subscription)) continue;
        route(addressed(goodbye, contact));
        reached.add(contact);
      }
    }
    const targets = directed.get(session);
    directed.delete(session);
    for (const target of targets ?? []) {
      const jid = tryParseJid(target);
      if (jid && !reached.has(jid.bare.toString())) route(addressed(goodbye, target));
    }
  }
}
