// XEP-0012 Last Activity: the server's uptime, and for an account how long ago its last
// resource logged out (with the status it left), shown only to those allowed to see presence.

import type { SessionEvent, StanzaEvent } from "../core/hosts.ts";
import { type JID, tryParseJid } from "../core/jid.ts";
import type { ModuleAPI } from "../core/modules.ts";
import type { Session } from "../core/sessions.ts";
import { errorReply, reply } from "../core/xml/stanza.ts";
import { hasFrom, subscriptionOf } from "./roster_store.ts";
import { presenceOf } from "../core/presence_state.ts";

const NS_LAST = "jabber:iq:last";

/** One line for module listings. */
export const description = "XEP-0012: server uptime and accounts' last logout time and status";

/**
 * What is stored per account in the "lastlog" key-value store: only a logout that left a status
 * text. The logout time itself is the account's (`AccountStore.touchLogout`), so a plain logout
 * writes nothing here.
 */
export interface LastLogout {
  /** When the account's last resource went away (ms since the epoch). */
  when: number;
  /** The status text of its last unavailable presence. */
  status: string;
}

/**
 * True when `requester` may learn the last activity of local account `username`: the account
 * itself, or (XEP-0012 §3, §8) an entity subscribed to the account's presence (the account's
 * roster item for it has subscription from or both).
 */
export function mayViewLastActivity(m: ModuleAPI, requester: JID, username: string): boolean {
  if (requester.local === username && requester.domain === m.domain) return true;
  return hasFrom(subscriptionOf(m, username, requester.bareString()));
}

/** Whole seconds from `from` to `to` (ms), never negative (clocks may step back). */
function secondsBetween(from: number, to: number): number {
  return Math.max(0, Math.floor((to - from) / 1000));
}

/** Loads last activity on a host. */
export default function last(m: ModuleAPI): void {
  const store = m.openStore<LastLogout>("lastlog", "keyval");
  // The status of each session's latest broadcast unavailable presence, until it logs out.
  const leavingStatus = new WeakMap<Session, string>();

  m.addFeature(NS_LAST);

  m.hook(`iq-get/host/${NS_LAST}:query`, ({ stanza, origin }: StanzaEvent) => {
    const answer = reply(stanza);
    answer.c("query", {
      xmlns: NS_LAST,
      seconds: String(secondsBetween(m.server.startedAt, Date.now())),
    });
    origin.send(answer);
    return true;
  });

  const answerForAccount = ({ stanza, origin }: StanzaEvent) => {
    const to = stanza.attrs.to;
    const username = to ? tryParseJid(to)?.local : origin.jid?.local;
    const requester = origin.jid;
    if (username === undefined || !requester || !mayViewLastActivity(m, requester, username)) {
      origin.send(errorReply(stanza, "forbidden"));
      return true;
    }
    const answer = reply(stanza);
    const online = m.server.sessions.userSessions(m.domain, username).some((s) =>
      presenceOf(s).available
    );
    if (online) {
      // XEP-0012 §3: an account with an available resource answers 0.
      answer.c("query", { xmlns: NS_LAST, seconds: "0" });
      origin.send(answer);
      return true;
    }
    const record = store.get(username);
    // The account's logout time is that of its last session (recorded by core).
    const loggedOut = m.server.accounts.info(m.domain, username)?.lastLogout ?? 0;
    const when = Math.max(loggedOut, record?.when ?? 0);
    if (when === 0) {
      origin.send(errorReply(stanza, "item-not-found", { text: "No logout is recorded" }));
      return true;
    }
    answer.c("query", { xmlns: NS_LAST, seconds: String(secondsBetween(when, Date.now())) })
      .t(record?.status ?? "");
    origin.send(answer);
    return true;
  };
  m.hook(`iq-get/bare/${NS_LAST}:query`, answerForAccount);
  m.hook(`iq-get/self/${NS_LAST}:query`, answerForAccount);

  // Observe (never handle) a client's broadcast presence to remember its leaving status. The
  // pre- event runs on the sender's host before any presence handler can stop the stanza.
  m.hook("pre-presence/self", ({ stanza, origin }: StanzaEvent) => {
    if (origin.kind !== "c2s") return false;
    const type = stanza.attrs.type;
    if (type === "unavailable") leavingStatus.set(origin, stanza.getChildText("status") ?? "");
    else if (type === undefined) leavingStatus.delete(origin);
    return false;
  }, 100);

  m.hook("resource-unbind", ({ session }: SessionEvent) => {
    const username = session.jid?.local;
    if (session.kind !== "c2s" || username === undefined || session.host !== m.domain) return;
    // Only the account's last resource logging out counts (unbind precedes this event).
    if (m.server.sessions.userSessions(m.domain, username).length > 0) return;
    const status = leavingStatus.get(session) ?? "";
    if (status !== "") store.set(username, { when: Date.now(), status });
    else if (store.get(username) !== undefined) store.set(username, undefined); // status is stale
  });
}
