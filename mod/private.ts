// XEP-0049 Private XML Storage: an account keeps small XML documents on the server (bookmarks,
// client preferences), one per element name and namespace, readable only by itself.

import type { OptionSpec } from "../core/config_schema.ts";
import type { Host, StanzaEvent } from "../core/hosts.ts";
import type { JID } from "../core/jid.ts";
import type { ModuleAPI } from "../core/modules.ts";
import type { Element } from "../core/xml/element.ts";
import { parseElement } from "../core/xml/parser.ts";
import { serialize } from "../core/xml/serializer.ts";
import { errorReply, reply, type StanzaErrorCondition } from "../core/xml/stanza.ts";

const NS_PRIVATE = "jabber:iq:private";

/**
 * Namespaces nobody may store data under: the stanza namespaces and this protocol's own
 * (XEP-0049 §2.3 allows refusing reserved namespaces with not-acceptable). A child written
 * without its own xmlns inherits `jabber:iq:private`, so it is refused too.
 */
const RESERVED_NAMESPACES = new Set(["jabber:client", "jabber:server", NS_PRIVATE]);

/**
 * Payload of `private-xml-get` and `private-xml-set`, fired once per fragment so that another
 * module can keep a fragment somewhere else (bookmarks keeps XEP-0048 conferences in PEP).
 * Every handler sees the event (return nothing). For a get, `fragment` is what will be
 * answered (what is stored, or the empty element asked for); for a set, what will be stored
 * (an empty element clears the key). A handler may replace it. A set handler that refuses the
 * fragment sets `error`: the iq gets that error and nothing of the set is stored (handlers of
 * the set's earlier fragments have run by then).
 */
export interface PrivateXmlEvent {
  host: Host;
  /** The account (local part). */
  user: string;
  /** The full JID of the session asking. */
  from: JID;
  fragment: Element;
  error?: { condition: StanzaErrorCondition; text: string };
}

declare module "../core/hosts.ts" {
  interface ModuleEvents {
    "private-xml-get": PrivateXmlEvent;
    "private-xml-set": PrivateXmlEvent;
  }
}

/** One line for module listings. */
export const description = "XEP-0049: private XML storage for each account";

/** Options the module reads. */
export const options: Record<string, OptionSpec> = {
  private_max_bytes: {
    type: "integer",
    default: 1_048_576,
    min: 0,
    max: 1_073_741_824,
    scope: "host",
    description:
      "Bytes of private XML one account may store, all fragments together (UTF-8); 0 = no limit",
  },
};

const encoder = new TextEncoder();

/** The UTF-8 size of a stored fragment. */
function utf8Bytes(text: string): number {
  return encoder.encode(text).length;
}

/** The storage key of a fragment: its namespace and name in Clark notation, `{ns}name`. */
export function privateKey(el: Element): string {
  return `{${el.ns}}${el.name}`;
}

/** Loads private XML storage on a host. */
export default function privateStorage(m: ModuleAPI): void {
  const store = m.openStore<string>("private", "map");

  m.addFeature(NS_PRIVATE);

  /**
   * The query's child fragments, or an error reply sent and undefined. A get names exactly
   * one fragment (§2.3: at most one namespace per get); a set carries one or more.
   */
  const fragments = (stanza: Element, origin: StanzaEvent["origin"]): Element[] | undefined => {
    const children = stanza.firstElement()!.elements();
    const isGet = stanza.attrs.type === "get";
    if (children.length === 0 || (isGet && children.length > 1)) {
      const text = isGet
        ? "Name exactly one element to retrieve"
        : "Include at least one element to store";
      origin.send(errorReply(stanza, "bad-request", { text }));
      return undefined;
    }
    const reserved = children.find((child) => RESERVED_NAMESPACES.has(child.ns));
    if (reserved) {
      origin.send(
        errorReply(stanza, "not-acceptable", {
          text: `The namespace '${reserved.ns}' is reserved`,
        }),
      );
      return undefined;
    }
    return children;
  };

  m.hook(`iq-get/self/${NS_PRIVATE}:query`, ({ stanza, origin }: StanzaEvent) => {
    const from = origin.jid;
    const username = from?.local;
    if (from === undefined || username === undefined) return false;
    const wanted = fragments(stanza, origin)?.[0];
    if (!wanted) return true;
    let found: Element | undefined;
    const text = store.get(username, privateKey(wanted));
    if (text !== undefined) {
      try {
        found = parseElement(text);
      } catch (error) {
        m.log.error("Stored private XML of {user} is unreadable: {error}", {
          user: username,
          error,
        });
      }
    }
    // Nothing stored: answer with the empty element that was asked for (XEP-0049 usage).
    const event: PrivateXmlEvent = {
      host: m.host,
      user: username,
      from,
      fragment: found ?? wanted.clone(),
    };
    m.host.events.fire("private-xml-get", event);
    const answer = reply(stanza);
    answer.c("query", { xmlns: NS_PRIVATE }).append(event.fragment);
    origin.send(answer);
    return true;
  });

  m.hook(`iq-set/self/${NS_PRIVATE}:query`, ({ stanza, origin }: StanzaEvent) => {
    const from = origin.jid;
    const username = from?.local;
    if (from === undefined || username === undefined) return false;
    const children = fragments(stanza, origin);
    if (!children) return true;
    const events = children.map((child): PrivateXmlEvent => ({
      host: m.host,
      user: username,
      from,
      fragment: child,
    }));
    for (const event of events) {
      m.host.events.fire("private-xml-set", event);
      if (event.error) {
        origin.send(errorReply(stanza, event.error.condition, { text: event.error.text }));
        return true;
      }
    }
    const writes = new Map<string, string | undefined>();
    for (const { fragment: child } of events) {
      // An element with neither content nor attributes clears what was stored.
      const empty = child.children.length === 0 && Object.keys(child.attrs).length === 0;
      writes.set(privateKey(child), empty ? undefined : serialize(child, ""));
    }
    const limit = m.option<number>("private_max_bytes");
    if (limit > 0) {
      const stored = store.getAll(username);
      let before = 0;
      for (const text of stored.values()) before += utf8Bytes(text);
      let after = before;
      for (const [key, text] of writes) {
        const old = stored.get(key);
        after += (text === undefined ? 0 : utf8Bytes(text)) -
          (old === undefined ? 0 : utf8Bytes(old));
      }
      // A set that does not grow the total passes, so an account over a lowered limit can
      // still shrink its data.
      if (after > limit && after > before) {
        origin.send(errorReply(stanza, "resource-constraint", {
          text: `Private XML storage is limited to ${limit} bytes per account ` +
            `(this would store ${after})`,
        }));
        return true;
      }
    }
    for (const [key, text] of writes) store.set(username, key, text);
    origin.send(reply(stanza));
    return true;
  });

  // Another account's private data is off limits (XEP-0049 §2.3: forbidden is preferred).
  const refuse = ({ stanza, origin }: StanzaEvent) => {
    origin.send(errorReply(stanza, "forbidden"));
    return true;
  };
  m.hook(`iq-get/bare/${NS_PRIVATE}:query`, refuse);
  m.hook(`iq-set/bare/${NS_PRIVATE}:query`, refuse);
}
