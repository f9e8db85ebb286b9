// Roster management (RFC 6121 §2) with roster versioning (RFC 6121 §2.6, XEP-0237): roster
// gets, sets and removals, with a push to every interested resource after each change.

import type { OptionSpec } from "../core/config_schema.ts";
import type { StanzaEvent, StreamFeaturesEvent } from "../core/hosts.ts";
import { type JID, tryParseJid } from "../core/jid.ts";
import type { ModuleAPI } from "../core/modules.ts";
import type { Session } from "../core/sessions.ts";
import { Element } from "../core/xml/element.ts";
import { errorReply, reply, type StanzaErrorCondition } from "../core/xml/stanza.ts";
import {
  hasFrom,
  hasTo,
  itemElement,
  MAX_ROSTER_SIZE_OPTION,
  maxRosterSize as readMaxRosterSize,
  NS_ROSTER,
  type RosterItem,
  Rosters,
} from "./roster_store.ts";
import { presenceOf, updatePresence } from "../core/presence_state.ts";

const NS_ROSTER_VER = "urn:xmpp:features:rosterver";

/** Longest item name and group name accepted, in characters (RFC 6121 §2.3.3). */
const MAX_TEXT_LENGTH = 1023;

/** One line for module listings. */
export const description = "RFC 6121 roster with versioning (XEP-0237)";

/** Options this module reads. */
export const options: Record<string, OptionSpec> = { max_roster_size: MAX_ROSTER_SIZE_OPTION };

/** A rejected roster set: the error condition and a text for the client. */
interface Rejection {
  condition: StanzaErrorCondition;
  text: string;
}

/** A roster set's single item, checked (RFC 6121 §2.1.5, §2.3.3). */
type ParsedSet =
  | { remove: true; jid: JID }
  | { remove: false; jid: JID; name: string | undefined; groups: string[] };

/** Checks a roster set's payload; returns the item or why it is refused. */
function parseRosterSet(query: Element, owner: JID): ParsedSet | Rejection {
  const items = query.getChildren("item", NS_ROSTER);
  if (items.length !== 1 || query.elements().length !== 1) {
    return { condition: "bad-request", text: "A roster set carries exactly one item" };
  }
  const item = items[0];
  const jidText = item.attrs.jid;
  const jid = jidText === undefined ? undefined : tryParseJid(jidText);
  if (!jid) return { condition: "bad-request", text: "The item needs a valid 'jid'" };
  if (jid.resource !== undefined) {
    return { condition: "bad-request", text: "Roster items are bare JIDs" };
  }
  if (jid.local === owner.local && jid.domain === owner.domain) {
    return { condition: "not-allowed", text: "An account cannot be in its own roster" };
  }
  // Any 'subscription' other than "remove", and 'ask'/'approved', are ignored (§2.1.5).
  if (item.attrs.subscription === "remove") return { remove: true, jid };
  const name = item.attrs.name;
  if (name !== undefined && [...name].length > MAX_TEXT_LENGTH) {
    return {
      condition: "not-acceptable",
      text: `Names are limited to ${MAX_TEXT_LENGTH} characters`,
    };
  }
  const groups: string[] = [];
  for (const group of item.getChildren("group", NS_ROSTER)) {
    const text = group.text();
    if (text === "") return { condition: "not-acceptable", text: "A group name cannot be empty" };
    if ([...text].length > MAX_TEXT_LENGTH) {
      return {
        condition: "not-acceptable",
        text: `Group names are limited to ${MAX_TEXT_LENGTH} characters`,
      };
    }
    if (groups.includes(text)) {
      return { condition: "bad-request", text: `The group '${text}' is listed twice` };
    }
    groups.push(text);
  }
  return { remove: false, jid, name: name === "" ? undefined : name, groups };
}

/** Loads roster management on a host. */
export default function roster(m: ModuleAPI): void {
  const rosters = new Rosters(m);
  let maxRosterSize = readMaxRosterSize(m);
  m.hook("config-reloaded", () => {
    maxRosterSize = readMaxRosterSize(m);
  });

  m.hook("stream-features", ({ session, features }: StreamFeaturesEvent) => {
    if (session.authenticated) features.c("ver", { xmlns: NS_ROSTER_VER });
  });

  m.hook(`iq-get/self/${NS_ROSTER}:query`, ({ stanza, origin }: StanzaEvent) => {
    const user = origin.jid?.local;
    if (!user) return false;
    updatePresence(origin, { interested: true });
    const requested = stanza.firstElement()!.attrs.ver;
    const current = rosters.version(user);
    const answer = reply(stanza);
    delete answer.attrs.from;
    // RFC 6121 §2.6.3: an unchanged roster is answered with an empty result; later changes
    // arrive as pushes.
    if (requested !== current) {
      const query = answer.c("query", { xmlns: NS_ROSTER, ver: current });
      for (const [jid, item] of rosters.visible(user)) query.append(itemElement(jid, item));
    }
    origin.send(answer);
    return true;
  });

  m.hook(`iq-set/self/${NS_ROSTER}:query`, ({ stanza, origin }: StanzaEvent) => {
    const owner = origin.jid;
    if (!owner?.local) return false;
    const parsed = parseRosterSet(stanza.firstElement()!, owner);
    if ("condition" in parsed) {
      origin.send(errorReply(stanza, parsed.condition, { text: parsed.text }));
      return true;
    }
    const user = owner.local;
    const contact = parsed.jid.toString();
    const existing = rosters.get(user, contact);
    if (parsed.remove) {
      if (!existing) {
        origin.send(errorReply(stanza, "item-not-found", { text: "No such roster item" }));
        return true;
      }
      answer(origin, stanza);
      removeItem(user, contact, existing);
      return true;
    }
    if ((!existing || existing.hidden) && rosters.visibleAtLeast(user, maxRosterSize)) {
      origin.send(
        errorReply(stanza, "policy-violation", {
          text: `A roster holds at most ${maxRosterSize} items`,
        }),
      );
      return true;
    }
    const item: RosterItem = {
      ...(existing ?? { subscription: "none" }),
      name: parsed.name,
      groups: parsed.groups,
    };
    delete item.hidden;
    if (item.name === undefined) delete item.name;
    answer(origin, stanza);
    rosters.update(user, contact, item);
    return true;
  });

  // Another account's roster is never readable or writable (RFC 6121 §2.1.5).
  const forbidden = ({ stanza, origin }: StanzaEvent) => {
    origin.send(errorReply(stanza, "forbidden", { text: "This roster is not yours" }));
    return true;
  };
  m.hook(`iq-get/bare/${NS_ROSTER}:query`, forbidden);
  m.hook(`iq-set/bare/${NS_ROSTER}:query`, forbidden);

  function answer(origin: Session, stanza: Element): void {
    const result = reply(stanza);
    delete result.attrs.from;
    origin.send(result);
  }

  /**
   * RFC 6121 §2.5.2: removes the item, pushes the removal, and cancels the subscriptions in
   * both directions: "unsubscribe" when the user was subscribed (or asked to be), and
   * "unsubscribed" when the contact was (or asked to be), after the user's available resources
   * said goodbye to a contact that saw their presence.
   */
  function removeItem(user: string, contact: string, item: RosterItem): void {
    rosters.update(user, contact, undefined);
    const from = `${user}@${m.domain}`;
    const send = (attrs: Record<string, string>) =>
      m.send(new Element("presence", { from, to: contact, ...attrs }));
    if (hasTo(item.subscription) || item.ask) send({ type: "unsubscribe" });
    if (hasFrom(item.subscription) || item.pendingIn) {
      send({ type: "unsubscribed" });
      if (hasFrom(item.subscription)) {
        for (const session of m.server.sessions.userSessions(m.domain, user)) {
          if (presenceOf(session).available) {
            m.send(
              new Element("presence", {
                type: "unavailable",
                from: session.jid!.toString(),
                to: contact,
              }),
            );
          }
        }
      }
    }
  }
}
