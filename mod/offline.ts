// XEP-0160 offline messages: chat and normal messages to an account with no available resource
// are stored (stamped with a XEP-0203 delay) and handed to the next resource that comes online.
// To turn offline storage off for a host, leave "offline" out of that host's `modules`.

import type { OptionSpec } from "../core/config_schema.ts";
import type { Host, SessionEvent, StanzaEvent } from "../core/hosts.ts";
import { tryParseJid } from "../core/jid.ts";
import type { ModuleAPI } from "../core/modules.ts";
import type { Element } from "../core/xml/element.ts";
import { parseElement } from "../core/xml/parser.ts";
import { serialize } from "../core/xml/serializer.ts";
import { errorReply, isError } from "../core/xml/stanza.ts";
import { presenceOf } from "../core/presence_state.ts";
import { MAX_ARCHIVE_IDS } from "../core/storage/stores.ts";

const NS_DELAY = "urn:xmpp:delay";
const NS_CHATSTATES = "http://jabber.org/protocol/chatstates";
const NS_HINTS = "urn:xmpp:hints";

/**
 * Payload of `offline-message-stored`, fired after a message was stored for an account with no
 * available resource (push notifications wake the account's devices here).
 */
export interface OfflineStoredEvent {
  /** The account's local part. */
  user: string;
  /** The message as stored (with its delay stamp). */
  stanza: Element;
  /**
   * True when this host had held the message before (stream management delivering again what a
   * session that ended never acknowledged), so its arrival was already seen.
   */
  redelivered: boolean;
  host: Host;
}

declare module "../core/hosts.ts" {
  interface ModuleEvents {
    "offline-message-stored": OfflineStoredEvent;
  }
}

/** One line for module listings. */
export const description = "XEP-0160: stores messages for offline users and delivers them later";

/** Options the module reads. */
export const options: Record<string, OptionSpec> = {
  offline_max_messages: {
    type: "integer",
    default: 100,
    min: 0,
    max: 100000,
    scope: "host",
    description:
      "Messages kept per offline account; further ones are bounced with resource-constraint",
  },
};

/** True for standalone chat states, which are not stored (XEP-0160 §3, XEP-0085 §5.6). */
function isStandaloneChatState(stanza: Element): boolean {
  return stanza.getChild("body") === undefined && stanza.getChildByNs(NS_CHATSTATES) !== undefined;
}

/** Loads offline storage on a host. */
export default function offline(m: ModuleAPI): void {
  const readMaxMessages = () => m.option<number>("offline_max_messages");
  let maxMessages = readMaxMessages();
  // A reload applies a new limit at once, without reading the option for every message.
  m.hook("config-reloaded", () => {
    maxMessages = readMaxMessages();
  });
  const store = m.openStore("offline", "archive");

  m.addFeature("msgoffline");

  m.hook("message/offline", ({ stanza, origin }: StanzaEvent) => {
    const to = tryParseJid(stanza.attrs.to ?? "");
    if (!to?.local) return false;
    if (stanza.getChild("no-store", NS_HINTS)) return false; // the router answers for us
    if (isStandaloneChatState(stanza)) return true;
    if (store.countUpTo(to.local, maxMessages) >= maxMessages) {
      if (!isError(stanza)) {
        origin.send(errorReply(stanza, "resource-constraint", {
          includeOriginal: true,
          text: `The recipient's offline storage is full (at most ${maxMessages} messages)`,
        }));
      }
      return true;
    }
    const when = Date.now();
    const copy = stanza.clone();
    // A message delivered again (stream management) already says since when this host held it.
    const held = copy.getChildren("delay", NS_DELAY).some((d) => d.attrs.from === m.domain);
    if (!held) {
      copy.c("delay", {
        xmlns: NS_DELAY,
        from: m.domain,
        stamp: new Date(when).toISOString(),
      }).t("Offline Storage");
    }
    store.append(to.local, {
      when,
      with: tryParseJid(stanza.attrs.from ?? "")?.bareString() ?? "",
      type: stanza.attrs.type ?? "normal",
      payload: serialize(copy),
    });
    m.host.events.fire("offline-message-stored", {
      user: to.local,
      stanza: copy,
      redelivered: held,
      host: m.host,
    });
    return true;
  });

  m.hook("resource-available", ({ session }: SessionEvent) => {
    // RFC 6121 §8.5.2.1.1: negative-priority resources never get messages for the bare JID.
    // Delivered messages are deleted, so a second firing for a session finds nothing.
    if (presenceOf(session).priority < 0) return;
    const user = session.jid?.local;
    if (!user) return;
    const items = store.find(user);
    if (items.length === 0) return;
    for (const item of items) {
      let message: Element;
      try {
        message = parseElement(item.payload);
      } catch (error) {
        m.log.error("Dropping unreadable offline message {id} of {user}: {error}", {
          id: item.id,
          user,
          error,
        });
        continue;
      }
      session.send(message);
    }
    const ids = items.map((item) => item.id);
    for (let start = 0; start < ids.length; start += MAX_ARCHIVE_IDS) {
      store.delete(user, { ids: ids.slice(start, start + MAX_ARCHIVE_IDS) });
    }
  });
}
