// XEP-0054 vcard-temp: each account stores one vCard on the server, which any user may read
// by asking the account's bare JID. Stored as XML text, so unknown fields survive unchanged.

import type { OptionSpec } from "../core/config_schema.ts";
import type { Host, StanzaEvent } from "../core/hosts.ts";
import { tryParseJid } from "../core/jid.ts";
import type { ModuleAPI } from "../core/modules.ts";
import { Element } from "../core/xml/element.ts";
import { parseElement } from "../core/xml/parser.ts";
import { serialize } from "../core/xml/serializer.ts";
import { errorReply, reply } from "../core/xml/stanza.ts";

const NS_VCARD = "vcard-temp";

/** What mod/vcard.ts provides on an account host as `vcard`: the stored cards. */
export interface VcardStore {
  /** The stored vCard of account `user`, or undefined. */
  get(user: string): Element | undefined;
  /**
   * Stores account `user`'s vCard (undefined or an empty card removes it) without firing
   * `vcard-updated`: for modules that mirror another source into the card. Returns false, and
   * stores nothing, for a card larger than `vcard_max_size`.
   */
  set(user: string, card: Element | undefined): boolean;
}

/** Payload of `vcard-updated`: an account's client stored a new vCard (undefined: removed). */
export interface VcardUpdatedEvent {
  host: Host;
  user: string;
  card: Element | undefined;
}

declare module "../core/modules.ts" {
  interface ModuleServices {
    vcard: VcardStore;
  }
}

declare module "../core/hosts.ts" {
  interface ModuleEvents {
    "vcard-updated": VcardUpdatedEvent;
  }
}

/** True for a card with neither child elements nor text: storing it means removing the card. */
function isEmptyCard(card: Element): boolean {
  return card.elements().length === 0 && card.text().trim() === "";
}

/** One line for module listings. */
export const description = "XEP-0054: stores each account's vCard and serves it to others";

/** Options this module reads. */
export const options: Record<string, OptionSpec> = {
  vcard_max_size: {
    type: "integer",
    default: 32768,
    min: 1024,
    max: 16777216,
    scope: "host",
    description: "Largest vCard an account may store, in bytes of XML",
  },
};

/** Loads vCard storage on a host. */
export default function vcard(m: ModuleAPI): void {
  const maxBytes = m.option<number>("vcard_max_size");
  const store = m.openStore<string>("vcard", "keyval");
  const encoder = new TextEncoder();

  /** The stored vCard of an account, or undefined (also for unreadable data, logged). */
  const load = (username: string): Element | undefined => {
    const text = store.get(username);
    if (text === undefined) return undefined;
    try {
      return parseElement(text);
    } catch (error) {
      m.log.error("Stored vCard of {user} is unreadable: {error}", { user: username, error });
      return undefined;
    }
  };

  m.addFeature(NS_VCARD);

  // Own vCard: XEP-0054 §3.1 lets the server answer an empty <vCard/> when none is stored.
  m.hook(`iq-get/self/${NS_VCARD}:vCard`, ({ stanza, origin }: StanzaEvent) => {
    const username = origin.jid?.local;
    if (username === undefined) return false;
    const answer = reply(stanza);
    answer.append(load(username) ?? new Element("vCard", { xmlns: NS_VCARD }));
    origin.send(answer);
    return true;
  });

  // Another account's vCard: §3.3 requires an error when there is none, the same whether or
  // not the account exists (no account harvesting).
  m.hook(`iq-get/bare/${NS_VCARD}:vCard`, ({ stanza, origin }: StanzaEvent) => {
    const username = tryParseJid(stanza.attrs.to ?? "")?.local;
    const card = username === undefined ? undefined : load(username);
    if (!card) {
      origin.send(errorReply(stanza, "item-not-found"));
      return true;
    }
    origin.send(reply(stanza).append(card));
    return true;
  });

  m.hook(`iq-set/self/${NS_VCARD}:vCard`, ({ stanza, origin }: StanzaEvent) => {
    const username = origin.jid?.local;
    if (username === undefined) return false;
    const card = stanza.firstElement()!;
    const text = serialize(card, "");
    // Too large is permanent for this request (modify it), not a passing shortage (wait):
    // hence not-acceptable rather than resource-constraint.
    if (encoder.encode(text).length > maxBytes) {
      origin.send(
        errorReply(stanza, "not-acceptable", {
          text: `The vCard is larger than the ${maxBytes} bytes this server stores`,
        }),
      );
      return true;
    }
    // Publishing an empty vCard removes it (a get then answers an empty vCard anyway).
    const empty = isEmptyCard(card);
    store.set(username, empty ? undefined : text);
    origin.send(reply(stanza));
    m.host.events.fire("vcard-updated", {
      host: m.host,
      user: username,
      card: empty ? undefined : card,
    });
    return true;
  });

  m.provide("vcard", {
    get: load,
    set: (user, card) => {
      if (card === undefined || isEmptyCard(card)) {
        store.set(user, undefined);
        return true;
      }
      const text = serialize(card, "");
      if (encoder.encode(text).length > maxBytes) return false;
      store.set(user, text);
      return true;
    },
  });

  // §3.2: nobody may change another account's vCard.
  m.hook(`iq-set/bare/${NS_VCARD}:vCard`, ({ stanza, origin }: StanzaEvent) => {
    origin.send(errorReply(stanza, "forbidden"));
    return true;
  });
}
