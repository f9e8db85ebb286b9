// XEP-0313 message archive management for accounts: each account's chats are kept in its own
// archive, stamped with a XEP-0359 stanza-id on delivery, and queried page by page (XEP-0059)
// under the account's preferences (XEP-0441).

import { type AdminServer, CommandError, type CommandSpec } from "../core/admin_commands.ts";
import type { OptionSpec } from "../core/config_schema.ts";
import type { StanzaEvent } from "../core/hosts.ts";
import { type JID, tryParseJid } from "../core/jid.ts";
import { hostService, type ModuleAPI } from "../core/modules.ts";
import type { Session } from "../core/sessions.ts";
import {
  ARCHIVE_FLUSH_DELAY_MS,
  type ArchiveItem,
  ArchiveItemNotFoundError,
  type ArchiveQuery,
  type ArchiveStore,
  MAX_ARCHIVE_IDS,
} from "../core/storage/archive_store.ts";
import { Element } from "../core/xml/element.ts";
import { parseElement } from "../core/xml/parser.ts";
import { serialize } from "../core/xml/serializer.ts";
import { errorReply, reply, type StanzaErrorCondition } from "../core/xml/stanza.ts";
import type { CarbonCopyEvent } from "./carbons.ts";
import type { RosterItem } from "./roster_store.ts";

/** The MAM namespace (XEP-0313 v2). */
export const NS_MAM = "urn:xmpp:mam:2";
/** The feature saying before-id, after-id, ids and flip-page are understood. */
export const NS_MAM_EXTENDED = "urn:xmpp:mam:2#extended";
/** The feature saying the 'include-groupchat' field is understood (XEP-0313 §7). */
export const NS_MAM_GROUPCHAT_FIELD = "urn:xmpp:mam:2#groupchat-field";
/** XEP-0359 unique and stable stanza ids. */
export const NS_SID = "urn:xmpp:sid:0";
const NS_RSM = "http://jabber.org/protocol/rsm";
const NS_DATA = "jabber:x:data";
const NS_FORWARD = "urn:xmpp:forward:0";
const NS_DELAY = "urn:xmpp:delay";
const NS_HINTS = "urn:xmpp:hints";

/** Payloads a client shows although the message has no body: encryption, retraction, edits. */
const SHOWN_WITHOUT_BODY = new Set([
  "eu.siacs.conversations.axolotl", // OMEMO (legacy)
  "urn:xmpp:omemo:2", // OMEMO 2
  "jabber:x:encrypted", // XEP-0027 OpenPGP
  "urn:xmpp:openpgp:0", // XEP-0373 OpenPGP
  "urn:xmpp:message-retract:1", // XEP-0424
  "urn:xmpp:message-correct:0", // XEP-0308
]);

/** XEP-0082 date-time, as the `start` and `end` fields must be written. */
const DATE_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/;

/** One line for module listings. */
export const description =
  "XEP-0313: archives each account's messages (stanza-id, paging, preferences)";

/** Options the module reads. */
export const options: Record<string, OptionSpec> = {
  mam_default_max: {
    type: "integer",
    default: 50,
    min: 1,
    max: 10_000,
    scope: "host",
    description: "Results per archive page when a query sets no RSM <max/>",
  },
  mam_max_page_size: {
    type: "integer",
    default: 250,
    min: 1,
    max: 10_000,
    scope: "host",
    description: "Most results one archive page returns, whatever <max/> asks",
  },
  archive_expires_after: {
    type: "integer",
    default: 0,
    min: 0,
    max: 315_360_000,
    scope: "host",
    description:
      "Seconds an archived message is kept (0: for ever); a daily job and `archive expire` delete older ones",
  },
  archive_max_items: {
    type: "integer",
    default: 0,
    min: 0,
    max: 100_000_000,
    scope: "host",
    description: "Messages kept per account (0: no limit); the oldest go when one more is archived",
  },
  mam_default_archiving: {
    type: "enum",
    default: "always",
    values: ["always", "never", "roster"],
    scope: "host",
    description:
      "Which conversations an account archives until it sets its own preferences (XEP-0441)",
  },
};

/** An account's archiving preferences (XEP-0441), as stored. */
export interface ArchivePrefs {
  /** What happens to conversations with JIDs in neither list. */
  default: "always" | "never" | "roster";
  /** JIDs whose conversations are always archived. */
  always: string[];
  /** JIDs whose conversations are never archived (wins over `always`). */
  never: string[];
}

/** An error answer to an archive query or preferences request. */
export class RequestError extends Error {
  /** Creates the error with its stanza error condition. */
  constructor(readonly condition: StanzaErrorCondition, message: string) {
    super(message);
  }
}

/**
 * Wraps an archive iq handler: a RequestError or an unknown archive id is answered with its
 * error, and the event counts as handled. The MUC archive shares it.
 */
export function answering(
  handle: (event: StanzaEvent) => void,
): (event: StanzaEvent) => true {
  return (event) => {
    try {
      handle(event);
    } catch (error) {
      if (error instanceof ArchiveItemNotFoundError) {
        event.origin.send(errorReply(event.stanza, "item-not-found", {
          text: `No archived message has the id '${error.id}'`,
        }));
      } else if (error instanceof RequestError) {
        event.origin.send(errorReply(event.stanza, error.condition, { text: error.message }));
      } else {
        throw error;
      }
    }
    return true;
  };
}

/** The metadata answer (XEP-0313 §6): the archive's first and last message, or nothing. */
export function archiveMetadata(stanza: Element, archive: ArchiveStore, user: string): Element {
  const answer = reply(stanza);
  const metadata = answer.c("metadata", { xmlns: NS_MAM });
  const [first] = archive.find(user, { limit: 1 });
  const [last] = archive.find(user, { limit: 1, reverse: true });
  if (first !== undefined && last !== undefined) {
    for (const [name, item] of [["start", first], ["end", last]] as const) {
      metadata.c(name, { id: item.id, timestamp: new Date(item.when).toISOString() });
    }
  }
  return answer;
}

/** What answering one archive query needs besides the query. */
export interface ArchiveQueryContext {
  archive: ArchiveStore;
  /** The archive's owner in the store. */
  user: string;
  /** Results per page without RSM <max/>, and the most a page returns. */
  defaultMax: number;
  pageCap: number;
  /** Sends one result message. */
  send(message: Element): void;
  /**
   * The result's addresses and the archived message to forward (from, to and the message
   * for the `<forwarded/>`), or undefined to skip an item that cannot be read.
   */
  result(item: ArchiveItem): { from: string; to?: string; message: Element } | undefined;
}

/** The later (`last`) or earlier of two archive ids; throws for an unknown one. */
function pick(
  archive: ArchiveStore,
  user: string,
  a: string | undefined,
  b: string | undefined,
  last: boolean,
): string | undefined {
  if (a === undefined || b === undefined || a === b) return a ?? b;
  const found = archive.find(user, { ids: [a, b] });
  for (const id of [a, b]) {
    if (!found.some((item) => item.id === id)) throw new ArchiveItemNotFoundError(id);
  }
  return (last ? found.at(-1) : found[0])!.id;
}

/**
 * Answers a XEP-0313 query (form filter, RSM paging, flip-page): sends each result through
 * `context.send` and returns the iq result with `<fin/>`. Throws RequestError or
 * ArchiveItemNotFoundError for a bad query (see `answering`).
 */
export function answerArchiveQuery(stanza: Element, context: ArchiveQueryContext): Element {
  const { archive, user } = context;
  const query = stanza.firstElement()!;
  const filter = parseFilter(query);
  const page = parsePage(query, context.defaultMax, context.pageCap);
  const selection: ArchiveQuery = {
    start: filter.start,
    end: filter.end,
    with: filter.with?.toString(),
    ids: filter.ids,
    after: pick(archive, user, filter.afterId, undefined, true),
    before: pick(archive, user, filter.beforeId, undefined, false),
  };
  const backwards = page.before !== undefined;
  const paged: ArchiveQuery = {
    ...selection,
    after: pick(archive, user, selection.after, page.after, true),
    before: pick(archive, user, selection.before, page.before || undefined, false),
    reverse: backwards,
  };
  let items = page.max === 0 ? [] : archive.find(user, { ...paged, limit: page.max + 1 });
  const count = archive.count(user, selection);
  const complete = page.max === 0 ? count === 0 : items.length <= page.max;
  items = items.slice(0, page.max);
  if (backwards) items.reverse();

  const sent = page.flip ? [...items].reverse() : items;
  for (const item of sent) {
    const found = context.result(item);
    if (!found) continue;
    const result = new Element("message", { from: found.from, to: found.to });
    result.c("result", { xmlns: NS_MAM, queryid: query.attrs.queryid, id: item.id })
      .c("forwarded", { xmlns: NS_FORWARD })
      .c("delay", { xmlns: NS_DELAY, stamp: new Date(item.when).toISOString() }).up()
      .append(found.message);
    context.send(result);
  }
  const answer = reply(stanza);
  const set = answer.c("fin", { xmlns: NS_MAM, complete: complete ? "true" : "false" })
    .c("set", { xmlns: NS_RSM });
  if (items.length > 0) {
    set.c("first").t(items[0].id);
    set.c("last").t(items.at(-1)!.id);
  }
  set.c("count").t(String(count));
  return answer;
}

/**
 * True when the message belongs in an archive: chat or normal, with a body or a payload
 * clients show, and not marked by XEP-0334 hints as not to be stored. Chat states, receipts
 * and markers on their own carry none of these.
 */
export function isArchivable(stanza: Element): boolean {
  const type = stanza.attrs.type ?? "normal";
  if (type !== "chat" && type !== "normal") return false;
  let shown = false;
  for (const child of stanza.children) {
    if (typeof child === "string") continue;
    if (child.ns === NS_HINTS) {
      if (child.name === "no-store" || child.name === "no-permanent-store") return false;
    } else if (child.name === "body" && child.ns === stanza.ns) {
      shown = true;
    } else if (SHOWN_WITHOUT_BODY.has(child.ns)) {
      shown = true;
    }
  }
  return shown;
}

/** Removes stanza-ids claiming to be set by `by`, which only this server may add (XEP-0359 §5). */
function removeStanzaIdsBy(stanza: Element, by: string): void {
  const forged = stanza.children.some((child) =>
    typeof child !== "string" && child.name === "stanza-id" && child.ns === NS_SID &&
    child.attrs.by === by
  );
  if (!forged) return;
  stanza.children = stanza.children.filter((child) =>
    typeof child === "string" || child.name !== "stanza-id" || child.ns !== NS_SID ||
    child.attrs.by !== by
  );
}

/** The values of the submitted form's fields, by var. */
function formFields(form: Element): Map<string, string[]> {
  const fields = new Map<string, string[]>();
  for (const field of form.getChildren("field", NS_DATA)) {
    const name = field.attrs.var;
    if (name === undefined) throw new RequestError("bad-request", "A form field has no var");
    fields.set(name, field.getChildren("value", NS_DATA).map((value) => value.text()));
  }
  return fields;
}

function singleValue(fields: Map<string, string[]>, name: string): string | undefined {
  const values = fields.get(name);
  if (values === undefined || values.length === 0) return undefined;
  if (values.length > 1) {
    throw new RequestError("bad-request", `The field '${name}' takes one value, found several`);
  }
  return values[0] === "" ? undefined : values[0];
}

function parseDate(fields: Map<string, string[]>, name: string): number | undefined {
  const text = singleValue(fields, name);
  if (text === undefined) return undefined;
  const ms = DATE_TIME.test(text) ? Date.parse(text) : NaN;
  if (Number.isNaN(ms)) {
    throw new RequestError(
      "bad-request",
      `The field '${name}' expected a XEP-0082 date-time such as 2024-01-31T12:00:00Z, found '${text}'`,
    );
  }
  return ms;
}

/** What a query selects, before paging. */
interface Filter {
  start?: number;
  end?: number;
  /** The other party: bare matches every resource; full only that one. */
  with?: JID;
  afterId?: string;
  beforeId?: string;
  ids?: string[];
}

/** The RSM page a query asks for. */
interface PageRequest {
  max: number;
  after?: string;
  /** "" asks for the last page. */
  before?: string;
  flip: boolean;
}

const KNOWN_FIELDS = new Set([
  "FORM_TYPE",
  "with",
  "start",
  "end",
  "before-id",
  "after-id",
  "ids",
  "include-groupchat",
]);

function parseFilter(query: Element): Filter {
  const form = query.getChild("x", NS_DATA);
  if (!form) return {};
  if (form.attrs.type !== undefined && form.attrs.type !== "submit") {
    throw new RequestError(
      "bad-request",
      `Expected a form of type 'submit', found '${form.attrs.type}'`,
    );
  }
  const fields = formFields(form);
  const formType = singleValue(fields, "FORM_TYPE");
  if (formType !== undefined && formType !== NS_MAM) {
    throw new RequestError("bad-request", `Expected FORM_TYPE '${NS_MAM}', found '${formType}'`);
  }
  for (const name of fields.keys()) {
    if (!KNOWN_FIELDS.has(name)) {
      throw new RequestError("bad-request", `The archive does not support the field '${name}'`);
    }
  }
  const filter: Filter = {
    start: parseDate(fields, "start"),
    end: parseDate(fields, "end"),
    afterId: singleValue(fields, "after-id"),
    beforeId: singleValue(fields, "before-id"),
  };
  const withText = singleValue(fields, "with");
  if (withText !== undefined) {
    filter.with = tryParseJid(withText);
    if (!filter.with) {
      throw new RequestError("jid-malformed", `The field 'with' is not a valid JID: '${withText}'`);
    }
  }
  const ids = fields.get("ids");
  if (ids !== undefined && ids.length > MAX_ARCHIVE_IDS) {
    throw new RequestError(
      "policy-violation",
      `The field 'ids' expected at most ${MAX_ARCHIVE_IDS} ids, found ${ids.length}`,
    );
  }
  if (ids !== undefined && ids.length > 0) filter.ids = ids;
  // Understood and checked, but it changes nothing: account archives hold no groupchat
  // messages (the room's own archive has them).
  const groupchat = singleValue(fields, "include-groupchat");
  if (groupchat !== undefined && !["true", "false", "1", "0"].includes(groupchat)) {
    throw new RequestError(
      "bad-request",
      `The field 'include-groupchat' expected a boolean, found '${groupchat}'`,
    );
  }
  return filter;
}

function parsePage(query: Element, defaultMax: number, cap: number): PageRequest {
  const flip = query.getChild("flip-page", NS_MAM) !== undefined;
  const set = query.getChild("set", NS_RSM);
  if (!set) return { max: Math.min(defaultMax, cap), flip };
  let max = defaultMax;
  const maxText = set.getChildText("max", NS_RSM);
  if (maxText !== undefined) {
    if (!/^\d+$/.test(maxText.trim())) {
      throw new RequestError(
        "bad-request",
        `RSM <max/> expected a whole number, found '${maxText}'`,
      );
    }
    max = Number(maxText.trim());
  }
  if (set.getChild("index", NS_RSM)) {
    throw new RequestError("feature-not-implemented", "Paging by RSM <index/> is not supported");
  }
  const after = set.getChildText("after", NS_RSM);
  const beforeEl = set.getChild("before", NS_RSM);
  if (after === "") throw new RequestError("bad-request", "RSM <after/> needs an archive id");
  return { max: Math.min(max, cap), after, before: beforeEl?.text(), flip };
}

/**
 * A host's message archive as a service (`m.service("archive")`): the shell's `archive`
 * commands use it, and so can other modules (a MUC archive, an export) without reaching into
 * this one.
 */
export interface MessageArchive {
  /** The accounts' archives. */
  readonly items: ArchiveStore;
  /**
   * Archives `stanza` for local account `user`, exchanged with `peer`, under its preferences
   * and quota; returns the stanza-id, or undefined when the preferences say no.
   */
  archive(user: string, peer: JID, stanza: Element): string | undefined;
  /** Deletes messages older than `archive_expires_after` now; returns how many. */
  expire(): number;
  /** True when `archive_expires_after` is set (else `expire` keeps everything). */
  expires(): boolean;
}

declare module "../core/modules.ts" {
  interface ModuleServices {
    archive: MessageArchive;
  }
}

/** The archive service of `domain`, when the mam module is loaded there. */
function archiveOf(server: AdminServer, domain: string): MessageArchive | undefined {
  const host = server.hosts.get(domain);
  return host === undefined ? undefined : hostService(host, "archive");
}

/** The host and account a shell argument names, or a CommandError. */
function archiveOwner(
  server: AdminServer,
  text: string | undefined,
): { loaded: MessageArchive; user: string; jid: string } {
  const jid = tryParseJid(text ?? "");
  const loaded = jid?.local ? archiveOf(server, jid.domain) : undefined;
  if (!jid?.local || !loaded) {
    throw new CommandError(
      `Expected an account of a host with the mam module, found '${text ?? ""}'`,
    );
  }
  if (!server.accounts.exists(jid.domain, jid.local)) {
    throw new CommandError(`No account '${jid.bareString()}'`);
  }
  return { loaded, user: jid.local, jid: jid.bareString() };
}

/** The `archive` section of the admin shell. */
const ARCHIVE_COMMANDS: CommandSpec[] = [
  {
    section: "archive",
    name: "count",
    summary: "Messages in an account's archive and their stored size",
    args: [{ name: "jid", kind: "jid" }],
    run: ({ server }, [text]) => {
      const { loaded, user, jid } = archiveOwner(server, text);
      const count = loaded.items.count(user);
      const bytes = loaded.items.bytes(user);
      return {
        message: `${jid}: ${count} message(s), ${bytes} bytes`,
        data: { jid, count, bytes },
      };
    },
  },
  {
    section: "archive",
    name: "delete",
    summary: "Delete an account's whole archive",
    args: [{ name: "jid", kind: "jid" }],
    run: ({ server }, [text]) => {
      const { loaded, user, jid } = archiveOwner(server, text);
      const deleted = loaded.items.delete(user);
      return { message: `Deleted ${deleted} message(s) of ${jid}`, data: { jid, deleted } };
    },
  },
  {
    section: "archive",
    name: "expire",
    summary:
      "Delete archived messages older than archive_expires_after now (every host by default)",
    args: [{ name: "host", kind: "host", optional: true }],
    run: ({ server }, [host]) => {
      const hosts = host === undefined
        ? [...server.hosts.keys()].filter((domain) => archiveOf(server, domain) !== undefined)
        : [host];
      const lines: string[] = [];
      const data: Record<string, number> = {};
      for (const domain of hosts) {
        const loaded = archiveOf(server, domain);
        if (!loaded) throw new CommandError(`The mam module is not loaded on '${domain}'`);
        if (!loaded.expires()) {
          lines.push(`${domain}: archive_expires_after is 0, messages are kept`);
          data[domain] = 0;
          continue;
        }
        data[domain] = loaded.expire();
        lines.push(`${domain}: deleted ${data[domain]} expired message(s)`);
      }
      return { message: lines.join("\n"), data };
    },
  },
];

/** Loads message archive management on a host. */
export default function mam(m: ModuleAPI): void {
  // Archived copies were delivered too: they may wait ARCHIVE_FLUSH_DELAY_MS in memory, so a
  // busy moment's messages share one transaction instead of paying one each.
  const archive = m.openStore("mam", "archive", { writeBehindMs: ARCHIVE_FLUSH_DELAY_MS });
  const prefsStore = m.openStore<ArchivePrefs>("mam_prefs", "keyval");
  const roster = m.openStore<RosterItem>("roster", "map");
  let defaultMax = 0;
  let pageCap = 0;
  let defaultArchiving: ArchivePrefs["default"] = "always";
  let expiresAfterMs = 0;
  let maxItems = 0;
  const readOptions = () => {
    defaultMax = m.option<number>("mam_default_max");
    pageCap = m.option<number>("mam_max_page_size");
    defaultArchiving = m.option<ArchivePrefs["default"]>("mam_default_archiving");
    expiresAfterMs = m.option<number>("archive_expires_after") * 1000;
    maxItems = m.option<number>("archive_max_items");
  };
  readOptions();
  m.hook("config-reloaded", readOptions);

  m.addAccountFeature(NS_MAM);
  m.addAccountFeature(NS_MAM_EXTENDED);
  m.addAccountFeature(NS_MAM_GROUPCHAT_FIELD);
  m.addAccountFeature(NS_SID);

  // Preferences are read for every archived message: keep the accounts' recent ones in memory
  // (set below forgets the account's entry), instead of a store read and a JSON parse each time.
  const prefsCache = new Map<string, ArchivePrefs | null>();
  const PREFS_CACHE_SIZE = 10_000;
  const prefsOf = (user: string): ArchivePrefs => {
    let prefs = prefsCache.get(user);
    if (prefs === undefined) {
      prefs = prefsStore.get(user) ?? null;
      if (prefsCache.size >= PREFS_CACHE_SIZE) {
        prefsCache.delete(prefsCache.keys().next().value!);
      }
      prefsCache.set(user, prefs);
    }
    return prefs ?? { default: defaultArchiving, always: [], never: [] };
  };

  /** XEP-0441: the never list wins, then the always list, then the default. */
  const wanted = (user: string, peer: JID): boolean => {
    const prefs = prefsOf(user);
    const bare = peer.bareString();
    const full = peer.toString();
    if (prefs.never.includes(bare) || prefs.never.includes(full)) return false;
    if (prefs.always.includes(bare) || prefs.always.includes(full)) return true;
    if (prefs.default === "always") return true;
    if (prefs.default === "never") return false;
    const item = roster.get(user, bare);
    return item !== undefined && !item.hidden;
  };

  /** True when the message carries a stanza-id of `user`'s archive that the archive holds. */
  const alreadyArchived = (stanza: Element, user: string, by: string): boolean => {
    const id = stanza.getChildren("stanza-id", NS_SID).find((el) => el.attrs.by === by)?.attrs.id;
    return id !== undefined && archive.find(user, { ids: [id] }).length === 1;
  };

  const store = (user: string, peer: JID, stanza: Element): string => {
    const id = archive.append(user, {
      with: peer.toString(),
      type: stanza.attrs.type ?? "normal",
      payload: serialize(stanza),
    });
    // Per-account quota: the oldest messages make room (the count comes from one row).
    if (maxItems > 0) {
      const over = archive.countUpTo(user, maxItems + 1) - maxItems;
      if (over > 0) archive.delete(user, { limit: over });
    }
    return id;
  };

  /** Deletes every account's messages older than `archive_expires_after`; returns how many. */
  const expire = (now = Date.now()): number => {
    if (expiresAfterMs <= 0) return 0;
    let deleted = 0;
    for (const user of m.server.accounts.list(m.domain)) {
      deleted += archive.delete(user, { end: now - expiresAfterMs - 1 });
    }
    if (deleted > 0) m.log.info("Expired {n} archived messages", { n: deleted });
    return deleted;
  };
  m.addTimer(24 * 3600 * 1000, () => expire(), { repeat: true, label: "archive expiry" });
  // and once soon after start
  m.addTimer(60 * 1000, () => expire(), { label: "archive expiry (after start)" });

  m.provide("archive", {
    items: archive,
    archive: (user, peer, stanza) => wanted(user, peer) ? store(user, peer, stanza) : undefined,
    expire: () => expire(),
    expires: () => expiresAfterMs > 0,
  });
  m.shellCommands(ARCHIVE_COMMANDS);

  // Incoming: archived for the recipient before delivery, so the copy every resource,
  // offline storage and carbons get carries the archive's id.
  const incoming = ({ stanza, origin }: StanzaEvent) => {
    const to = tryParseJid(stanza.attrs.to ?? "");
    if (!to?.local || to.domain !== m.domain) return false;
    // The server routing a message again (stream management's redelivery of what a resource
    // never acknowledged) keeps the id it was archived under: no second copy, no new id.
    if (origin.kind === "internal" && alreadyArchived(stanza, to.local, to.bareString())) {
      return false;
    }
    removeStanzaIdsBy(stanza, to.bareString());
    if (!isArchivable(stanza)) return false;
    const from = tryParseJid(stanza.attrs.from ?? "");
    // A bound resource proves the account exists without a database read per message.
    const exists = m.server.sessions.hasBound(m.domain, to.local) ||
      m.server.accounts.exists(m.domain, to.local);
    if (!from || !exists) return false;
    if (!wanted(to.local, from)) return false;
    const id = store(to.local, from, stanza);
    stanza.c("stanza-id", { xmlns: NS_SID, id, by: to.bareString() });
    return false;
  };
  // Below blocking (1000), so blocked messages are not archived; above everything else.
  m.hook("message/bare", incoming, 500);
  m.hook("message/full", incoming, 500);

  // Outgoing: a local client's message, archived for the sender wherever it goes.
  const outgoing = ({ stanza, origin }: StanzaEvent) => {
    if (origin.kind !== "c2s" || origin.host !== m.domain) return false;
    const user = origin.jid?.local;
    if (user === undefined) return false;
    const to = tryParseJid(stanza.attrs.to ?? "");
    if (!to) return false;
    // To the account's own resources: archived once, as incoming.
    if (to.local === user && to.domain === m.domain) return false;
    removeStanzaIdsBy(stanza, origin.jid!.bareString());
    if (!isArchivable(stanza) || !wanted(user, to)) return false;
    sentIds.set(stanza, store(user, to, stanza));
    return false;
  };
  // The sender's other resources see the message as a sent carbon: with the id it has in the
  // sender's archive, as the recipient's copy carries the id of theirs (XEP-0313 §5.1.2).
  const sentIds = new WeakMap<Element, string>();
  m.hook("carbon-copy", ({ original, copy, direction, account }: CarbonCopyEvent) => {
    const id = direction === "sent" ? sentIds.get(original) : undefined;
    if (id === undefined) return;
    removeStanzaIdsBy(copy, account.bareString());
    copy.c("stanza-id", { xmlns: NS_SID, id, by: account.bareString() });
  });
  m.hook("pre-message/bare", outgoing, 500);
  m.hook("pre-message/full", outgoing, 500);
  m.hook("pre-message/host", outgoing, 500);

  /** The user whose archive an iq from a local client addresses, or an error. */
  const ownerOf = (origin: Session): string => {
    const user = origin.jid?.local;
    if (origin.kind !== "c2s" || origin.host !== m.domain || user === undefined) {
      throw new RequestError("forbidden", "Only the account itself may use its archive");
    }
    return user;
  };

  m.hook(
    `iq-get/self/${NS_MAM}:query`,
    answering(({ stanza, origin }) => {
      ownerOf(origin);
      const answer = reply(stanza);
      answer.c("query", { xmlns: NS_MAM }).append(queryForm());
      origin.send(answer);
    }),
  );

  // Archive metadata (required with #extended): the first and last message, or nothing.
  m.hook(
    `iq-get/self/${NS_MAM}:metadata`,
    answering(({ stanza, origin }) => {
      origin.send(archiveMetadata(stanza, archive, ownerOf(origin)));
    }),
  );

  m.hook(
    `iq-set/self/${NS_MAM}:query`,
    answering(({ stanza, origin }) => {
      const user = ownerOf(origin);
      const owner = origin.jid!.bareString();
      origin.send(answerArchiveQuery(stanza, {
        archive,
        user,
        defaultMax,
        pageCap,
        send: (message) => origin.send(message),
        result: (item) => {
          try {
            return { from: owner, to: origin.jid!.toString(), message: parseElement(item.payload) };
          } catch (error) {
            m.log.error("Skipping unreadable archived message {id} of {user}: {error}", {
              id: item.id,
              user,
              error,
            });
            return undefined;
          }
        },
      }));
    }),
  );

  m.hook(
    `iq-get/self/${NS_MAM}:prefs`,
    answering(({ stanza, origin }) => {
      const answer = reply(stanza);
      answer.append(prefsElement(prefsOf(ownerOf(origin))));
      origin.send(answer);
    }),
  );

  m.hook(
    `iq-set/self/${NS_MAM}:prefs`,
    answering(({ stanza, origin }) => {
      const user = ownerOf(origin);
      const prefs = parsePrefs(stanza.firstElement()!);
      prefsStore.set(user, prefs);
      prefsCache.delete(user);
      const answer = reply(stanza);
      answer.append(prefsElement(prefs));
      origin.send(answer);
    }),
  );

  // Another account's archive and preferences are its own.
  const refuse = answering(() => {
    throw new RequestError("forbidden", "Only the account itself may use its archive");
  });
  m.hook(`iq-get/bare/${NS_MAM}:query`, refuse);
  m.hook(`iq-set/bare/${NS_MAM}:query`, refuse);
  m.hook(`iq-get/bare/${NS_MAM}:prefs`, refuse);
  m.hook(`iq-set/bare/${NS_MAM}:prefs`, refuse);
  m.hook(`iq-get/bare/${NS_MAM}:metadata`, refuse);
}

/** The query form (XEP-0313 §4.1.1 with the #extended fields). */
export function queryForm(): Element {
  const form = new Element("x", { xmlns: NS_DATA, type: "form" });
  form.c("field", { var: "FORM_TYPE", type: "hidden" }).c("value").t(NS_MAM);
  form.c("field", { var: "with", type: "jid-single" });
  form.c("field", { var: "start", type: "text-single" });
  form.c("field", { var: "end", type: "text-single" });
  form.c("field", { var: "before-id", type: "text-single" });
  form.c("field", { var: "after-id", type: "text-single" });
  form.c("field", { var: "ids", type: "text-multi" });
  form.c("field", { var: "include-groupchat", type: "boolean" });
  return form;
}

/** The `<prefs/>` element for stored preferences. */
function prefsElement(prefs: ArchivePrefs): Element {
  const el = new Element("prefs", { xmlns: NS_MAM, default: prefs.default });
  const always = el.c("always");
  for (const jid of prefs.always) always.c("jid").t(jid);
  const never = el.c("never");
  for (const jid of prefs.never) never.c("jid").t(jid);
  return el;
}

/** Reads a `<prefs/>` set request; JIDs are kept in their prepared form. */
function parsePrefs(el: Element): ArchivePrefs {
  const mode = el.attrs.default;
  if (mode !== "always" && mode !== "never" && mode !== "roster") {
    throw new RequestError(
      "bad-request",
      `Expected default='always', 'never' or 'roster', found ${
        mode === undefined ? "none" : `'${mode}'`
      }`,
    );
  }
  const list = (name: string): string[] => {
    const jids: string[] = [];
    for (const item of el.getChild(name, NS_MAM)?.getChildren("jid", NS_MAM) ?? []) {
      const jid = tryParseJid(item.text().trim());
      if (!jid) {
        throw new RequestError("jid-malformed", `'${item.text()}' in <${name}/> is not a JID`);
      }
      if (!jids.includes(jid.toString())) jids.push(jid.toString());
    }
    return jids;
  };
  return { default: mode, always: list("always"), never: list("never") };
}
