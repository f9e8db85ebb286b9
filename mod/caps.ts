// XEP-0115 entity capabilities as the server sees them: what each client resource can do (local
// ones, and remote ones whose presence reaches an account here over s2s), learned from the caps
// hash in its presence (its disco#info is asked once per unseen hash, and the answer verified and
// cached), so that PEP sends a resource only the notifications it asked for (`+notify`
// features, XEP-0163 §4).

import { createHash } from "node:crypto";
import type { OptionSpec } from "../core/config_schema.ts";
import type { Host, SessionEvent, StanzaEvent } from "../core/hosts.ts";
import { type JID, tryParseJid } from "../core/jid.ts";
import type { ModuleAPI } from "../core/modules.ts";
import type { Session } from "../core/sessions.ts";
import { Element } from "../core/xml/element.ts";
import { type CapsIdentity, capsVerificationString } from "./disco.ts";

const NS_CAPS = "http://jabber.org/protocol/caps";
const NS_INFO = "http://jabber.org/protocol/disco#info";
const NS_DATA = "jabber:x:data";

/** The store (host-level, user "") of verified hashes: `HASH VER` -> features. */
const STORE = "caps";
/** Verification queries in flight at once on a host; beyond that a new hash stays unknown. */
const MAX_PENDING_QUERIES = 1000;
/** Remote resources whose caps a host tracks at once; presence from more is not looked at. */
const MAX_REMOTE_RESOURCES = 100_000;

/**
 * XEP-0115 hash names (IANA "Hash Function Textual Names") this module verifies, with their
 * node:crypto names. A `hash` outside this table is treated like legacy caps (§5.4 step 2).
 */
const HASH_FUNCTIONS: Readonly<Record<string, string>> = {
  "sha-1": "sha1",
  "sha-224": "sha224",
  "sha-256": "sha256",
  "sha-384": "sha384",
  "sha-512": "sha512",
};

/** What modules on the host ask of the caps module (`m.service("caps")`). */
export interface CapsService {
  /**
   * The disco#info features of a client resource (a full JID), once known from its caps: a
   * local one, or a remote one whose available presence reached an account of this host;
   * undefined for a bare JID, a resource without caps, or while its hash is being asked.
   */
  featuresOf(jid: JID): ReadonlySet<string> | undefined;
}

/**
 * Payload of `caps-features`, fired when a resource's features become known (its first caps)
 * or change (new caps with other features); `previous` is what was known before, if anything.
 */
export interface CapsFeaturesEvent {
  /** The resource's full JID. */
  jid: JID;
  features: ReadonlySet<string>;
  previous: ReadonlySet<string> | undefined;
  host: Host;
}

declare module "../core/hosts.ts" {
  interface ModuleEvents {
    "caps-features": CapsFeaturesEvent;
  }
}

declare module "../core/modules.ts" {
  interface ModuleServices {
    caps: CapsService;
  }
}

/** One line for module listings. */
export const description =
  "XEP-0115: learns and caches what each client resource supports, from the caps in its presence";

/** Options this module reads (live: each is read where it is used). */
export const options: Record<string, OptionSpec> = {
  caps_cache_size: {
    type: "integer",
    default: 10000,
    min: 1,
    max: 1_000_000,
    scope: "host",
    description: "Verified caps hashes kept in memory, and in the database, per host",
  },
  caps_query_timeout: {
    type: "integer",
    default: 30,
    min: 1,
    max: 600,
    scope: "host",
    description: "Seconds the server waits for a client's disco#info answer about its caps",
  },
};

/** A disco#info answer read for XEP-0115: what it lists, and why it is ill-formed if it is. */
export interface DiscoInfo {
  identities: CapsIdentity[];
  features: string[];
  forms: Element[];
  /** Set when §5.4 step 3 (c)–(e) calls the answer ill-formed: it must not be cached. */
  problem?: string;
}

/**
 * Reads the `<query/>` of a disco#info result as XEP-0115 §5.4 step 3 does: duplicate
 * identities, features or form types make it ill-formed, and an extension form whose FORM_TYPE
 * is not hidden is left out.
 */
export function readDiscoInfo(query: Element): DiscoInfo {
  const info: DiscoInfo = { identities: [], features: [], forms: [] };
  const seenIdentities = new Set<string>();
  for (const el of query.getChildren("identity", NS_INFO)) {
    const identity: CapsIdentity = {
      category: el.attrs.category ?? "",
      type: el.attrs.type ?? "",
      lang: el.attrs["xml:lang"],
      name: el.attrs.name,
    };
    if (identity.category === "" || identity.type === "") {
      info.problem ??= "an identity without category or type";
    }
    const key = `${identity.category}/${identity.type}/${identity.lang ?? ""}/${
      identity.name ?? ""
    }`;
    if (seenIdentities.has(key)) info.problem ??= `identity '${key}' listed twice`;
    seenIdentities.add(key);
    info.identities.push(identity);
  }
  const seenFeatures = new Set<string>();
  for (const el of query.getChildren("feature", NS_INFO)) {
    const feature = el.attrs.var;
    if (feature === undefined) continue;
    if (seenFeatures.has(feature)) info.problem ??= `feature '${feature}' listed twice`;
    seenFeatures.add(feature);
    info.features.push(feature);
  }
  const seenFormTypes = new Set<string>();
  for (const form of query.getChildren("x", NS_DATA)) {
    const formType = form.getChildren("field", NS_DATA).find((f) => f.attrs.var === "FORM_TYPE");
    if (!formType) continue; // §5.4 leaves forms without FORM_TYPE out of the string
    if (formType.attrs.type !== "hidden") continue; // step 3 (f): ignored, not an error
    const values = new Set(formType.getChildren("value", NS_DATA).map((v) => v.text()));
    if (values.size > 1) info.problem ??= "a FORM_TYPE with several values";
    const name = [...values][0] ?? "";
    if (seenFormTypes.has(name)) info.problem ??= `two forms of type '${name}'`;
    seenFormTypes.add(name);
    info.forms.push(form);
  }
  return info;
}

/** What the server knows of one client resource's caps. */
interface ResourceCaps {
  /** The local resource's session; undefined for a remote resource (presence over s2s). */
  session: Session | undefined;
  jid: JID;
  /** The `hash`, `node` and `ver` it announced, as one string. */
  announced: string;
  /** Its features, once known. */
  features: ReadonlySet<string> | undefined;
  /** A remote resource's: the local accounts (local parts) its available presence reached. */
  seenBy?: Set<string>;
}

/** The caps of an available presence, when it has a `node` and a `ver`. */
function announcedCaps(stanza: Element): { c: Element; announced: string } | undefined {
  const c = stanza.getChild("c", NS_CAPS);
  const ver = c?.attrs.ver;
  if (!c || !ver || !c.attrs.node) return undefined;
  return { c, announced: `${c.attrs.hash ?? ""}\n${c.attrs.node}\n${ver}` };
}

/** A verified hash as stored. */
interface StoredCaps {
  features: string[];
  /** When it was stored (ms since the epoch): the oldest go first when the store is full. */
  stored: number;
}

function sameFeatures(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size !== b.size) return false;
  for (const feature of a) if (!b.has(feature)) return false;
  return true;
}

function isStoredCaps(value: unknown): value is StoredCaps {
  const v = value as StoredCaps | undefined;
  return typeof v === "object" && v !== null && Array.isArray(v.features) &&
    v.features.every((f) => typeof f === "string") && typeof v.stored === "number";
}

/** Loads the entity capabilities cache on an account host. */
export default function caps(m: ModuleAPI): void {
  /** Resources that announced caps, by full JID. */
  const resources = new Map<string, ResourceCaps>();
  /** Verified hashes (`HASH VER`), least recently used first. */
  const verified = new Map<string, ReadonlySet<string>>();
  /** Verification queries in flight, by `HASH VER`: others announcing it wait for them. */
  const pending = new Map<string, Promise<void>>();
  const store = m.openStore<StoredCaps>(STORE, "map");
  /** The last `stored` stamp written, so two entries stored in one millisecond still have an order. */
  let lastStored = 0;

  const cacheSize = () => m.option<number>("caps_cache_size");

  /** A verified hash from memory, else from the database (then kept in memory). */
  function lookup(key: string): ReadonlySet<string> | undefined {
    const inMemory = verified.get(key);
    if (inMemory) {
      verified.delete(key);
      verified.set(key, inMemory);
      return inMemory;
    }
    const stored = store.get("", key);
    if (stored === undefined) return undefined;
    if (!isStoredCaps(stored)) {
      m.log.warn("Ignoring an unreadable stored caps entry {key}", { key });
      return undefined;
    }
    const features: ReadonlySet<string> = new Set(stored.features);
    remember(key, features);
    return features;
  }

  /** Keeps a verified hash in memory, dropping the least recently used beyond the bound. */
  function remember(key: string, features: ReadonlySet<string>): void {
    verified.delete(key);
    verified.set(key, features);
    const limit = cacheSize();
    for (const oldest of verified.keys()) {
      if (verified.size <= limit) break;
      verified.delete(oldest);
    }
  }

  /** Stores a newly verified hash; a full store loses its oldest tenth. */
  function persist(key: string, features: ReadonlySet<string>): void {
    lastStored = Math.max(Date.now(), lastStored + 1);
    store.set("", key, { features: [...features], stored: lastStored });
    const limit = cacheSize();
    if (store.count("") <= limit) return;
    const byAge = [...store.getAll("")]
      .sort(([, a], [, b]) => (isStoredCaps(a) ? a.stored : 0) - (isStoredCaps(b) ? b.stored : 0));
    const excess = byAge.length - limit + Math.floor(limit / 10);
    for (const [oldKey] of byAge.slice(0, excess)) store.set("", oldKey, undefined);
  }

  const isCurrent = (entry: ResourceCaps) => resources.get(entry.jid.toString()) === entry;

  /** The resource's features are known: record them, and tell the host if they changed. */
  function settle(entry: ResourceCaps, features: ReadonlySet<string>): void {
    if (!isCurrent(entry)) return;
    const previous = entry.features;
    entry.features = features;
    if (previous && sameFeatures(previous, features)) return;
    m.host.events.fire("caps-features", { jid: entry.jid, features, previous, host: m.host });
  }

  /** Asks the resource's disco#info for `node#ver` and reads the answer. */
  async function askInfo(entry: ResourceCaps, node: string, ver: string): Promise<DiscoInfo> {
    const to = entry.jid.toString();
    const iq = new Element("iq", { type: "get", to, id: `caps-${crypto.randomUUID()}` });
    iq.c("query", { xmlns: NS_INFO, node: `${node}#${ver}` });
    const answer = await m.sendIq(iq, m.option<number>("caps_query_timeout") * 1000);
    if (answer.attrs.from !== to) throw new Error(`The answer came from '${answer.attrs.from}'`);
    const query = answer.getChild("query", NS_INFO);
    if (!query) throw new Error("The answer has no disco#info query");
    return readDiscoInfo(query);
  }

  /** Learns the features behind a hash this host has not verified, from the resource itself. */
  async function verify(
    entry: ResourceCaps,
    caps: { hash: string; algorithm: string; node: string; ver: string; key: string },
  ): Promise<void> {
    const info = await askInfo(entry, caps.node, caps.ver);
    const features: ReadonlySet<string> = new Set(info.features);
    const computed = info.problem === undefined
      ? createHash(caps.algorithm)
        .update(capsVerificationString(info.identities, info.features, info.forms), "utf8")
        .digest("base64")
      : undefined;
    if (computed === caps.ver) {
      remember(caps.key, features);
      persist(caps.key, features);
    } else {
      m.log.debug("Caps of {jid} not cached: {reason}", {
        jid: entry.jid.toString(),
        reason: info.problem ?? `its ${caps.hash} is ${computed}, not ${caps.ver}`,
      });
    }
    settle(entry, features);
  }

  /** Finds the features of a resource whose caps are not in the cache. */
  async function learn(entry: ResourceCaps, c: Element): Promise<void> {
    const { hash, node = "", ver = "" } = c.attrs;
    const algorithm = hash === undefined ? undefined : HASH_FUNCTIONS[hash];
    try {
      if (hash === undefined || algorithm === undefined) {
        // Legacy caps, or a hash this server cannot check: for this resource only (§5.4 step 2).
        if (pending.size >= MAX_PENDING_QUERIES) throw new Error("Too many caps queries at once");
        const info = await askInfo(entry, node, ver);
        settle(entry, new Set(info.features));
        return;
      }
      const key = `${hash} ${ver}`;
      for (;;) {
        const known = lookup(key);
        if (known) return settle(entry, known);
        const inFlight = pending.get(key);
        if (!inFlight) break;
        await inFlight; // it may have failed: then look again, and ask this resource
        if (!isCurrent(entry)) return;
      }
      if (pending.size >= MAX_PENDING_QUERIES) throw new Error("Too many caps queries at once");
      const query = verify(entry, { hash, algorithm, node, ver, key });
      const done = query.catch(() => {});
      pending.set(key, done);
      try {
        await query;
      } finally {
        if (pending.get(key) === done) pending.delete(key);
      }
    } catch (error) {
      m.log.debug("Caps of {jid} unknown: {error}", { jid: entry.jid.toString(), error });
      if (isCurrent(entry)) entry.features = undefined;
    }
  }

  const forget = (session: Session) => {
    const jid = session.jid?.toString();
    if (jid !== undefined && resources.get(jid)?.session === session) resources.delete(jid);
  };
  /** Full JIDs of the remote resources in `resources`, to bound them. */
  const remote = new Set<string>();

  /** Records the caps a resource announced, and learns their features unless already known. */
  function announce(entry: ResourceCaps, c: Element): void {
    resources.set(entry.jid.toString(), entry);
    const { hash, ver = "" } = c.attrs;
    const algorithm = hash === undefined ? undefined : HASH_FUNCTIONS[hash];
    const known = algorithm === undefined ? undefined : lookup(`${hash} ${ver}`);
    if (known) settle(entry, known);
    else void learn(entry, c);
  }

  // Before the presence module takes the stanza: available presence from one of the account's
  // resources, with or without a change of caps; a presence without caps keeps what is known.
  m.hook("presence/self", ({ stanza, origin }: StanzaEvent) => {
    if (origin.kind !== "c2s" || origin.jid?.resource === undefined) return false;
    const type = stanza.attrs.type;
    if (type === "unavailable") {
      forget(origin);
      return false;
    }
    if (type !== undefined) return false;
    const caps = announcedCaps(stanza);
    if (!caps) return false;
    const full = origin.jid.toString();
    const current = resources.get(full);
    if (current?.session === origin && current.announced === caps.announced) return false;
    announce({
      session: origin,
      jid: origin.jid,
      announced: caps.announced,
      // Until the new caps are known, the old features stand (and become `previous`).
      features: current?.session === origin ? current.features : undefined,
    }, caps.c);
    return false;
  }, 10);

  // Presence from a remote resource (over s2s) to an account here: its caps are learned as a
  // local resource's are (the query goes from this host's domain), so that PEP can notify remote
  // contacts. They are forgotten once every account its available presence reached got its
  // unavailable presence; a presence without caps keeps what is known.
  const remotePresence = ({ stanza, origin }: StanzaEvent) => {
    if (origin.kind !== "s2sin" && origin.kind !== "s2sout") return false;
    const from = tryParseJid(stanza.attrs.from ?? "");
    const to = tryParseJid(stanza.attrs.to ?? "");
    if (from?.resource === undefined || to?.local === undefined || to.domain !== m.domain) {
      return false;
    }
    if (m.server.hosts.get(from.domain)?.kind === "local") return false;
    const full = from.toString();
    const current = resources.get(full);
    const type = stanza.attrs.type;
    if (type === "unavailable") {
      if (current?.seenBy?.delete(to.local) && current.seenBy.size === 0) {
        resources.delete(full);
        remote.delete(full);
      }
      return false;
    }
    if (type !== undefined || !m.server.accounts.exists(m.domain, to.local)) return false;
    const caps = announcedCaps(stanza);
    if (current?.seenBy && (!caps || current.announced === caps.announced)) {
      current.seenBy.add(to.local);
      return false;
    }
    if (!caps) return false;
    if (!current && remote.size >= MAX_REMOTE_RESOURCES) {
      m.log.debug("Caps of {jid} not tracked: too many remote resources", { jid: full });
      return false;
    }
    remote.add(full);
    announce({
      session: undefined,
      jid: from,
      announced: caps.announced,
      features: current?.features,
      seenBy: new Set([...current?.seenBy ?? [], to.local]),
    }, caps.c);
    return false;
  };
  m.hook("presence/bare", remotePresence, 10);
  m.hook("presence/full", remotePresence, 10);

  m.hook("resource-unbind", ({ session }: SessionEvent) => {
    forget(session);
  });

  m.provide("caps", {
    featuresOf: (jid) => resources.get(jid.toString())?.features,
  });
  m.onUnload(() => {
    resources.clear();
    remote.clear();
  });
}
