// Real-time block lists (the XMPP RTBL of xmppbl.org): a pubsub node whose item ids are SHA-256
// hashes of spammers' bare JIDs or domains. The host (or a MUC component) fetches each
// configured list, subscribes to it from its own address, follows additions and retractions
// as they are published, and drops what listed senders send: messages and subscription
// requests to accounts, joins and messages to rooms.

import { createHash } from "node:crypto";
import { CommandError, type CommandSpec } from "../core/admin_commands.ts";
import type { OptionSpec, TableProblem } from "../core/config_schema.ts";
import type { StanzaEvent } from "../core/hosts.ts";
import { type JID, tryParseJid } from "../core/jid.ts";
import { hostService, IqError, type ModuleAPI } from "../core/modules.ts";
import { Element } from "../core/xml/element.ts";
import { errorReply, iq } from "../core/xml/stanza.ts";

const NS_PUBSUB = "http://jabber.org/protocol/pubsub";
const NS_PUBSUB_EVENT = "http://jabber.org/protocol/pubsub#event";
const NS_RSM = "http://jabber.org/protocol/rsm";
/** Before delivery, offline storage, the blocklist's answers and the MUC service. */
const FILTER_PRIORITY = 1100;
/** Items asked for per page when fetching a list (RSM). */
const PAGE_SIZE = 1000;
/** Most items kept per list: a bigger list is cut (and logged) rather than exhausting memory. */
const MAX_ITEMS = 1_000_000;
/** A failed fetch is tried again after this, doubling up to RETRY_MAX_MS. */
const RETRY_MIN_MS = 60_000;
const RETRY_MAX_MS = 3_600_000;
/** Lists are fetched again this often, in case a notification was lost. */
const RESYNC_MS = 6 * 3_600_000;

/** One line for module listings. */
export const description =
  "Real-time block lists (XMPP RTBL): drops stanzas from JIDs and domains a pubsub list names";

/** Checks one `rtbl_services` table. */
function checkService(table: Record<string, unknown>): TableProblem[] {
  const problems: TableProblem[] = [];
  if (typeof table.jid !== "string" || !tryParseJid(table.jid)) {
    problems.push({
      key: "jid",
      message: `'jid' must be the list's pubsub service JID, found ${JSON.stringify(table.jid)}`,
    });
  }
  if (typeof table.node !== "string" || table.node === "") {
    problems.push({
      key: "node",
      message: `'node' must be the list's node name, found ${JSON.stringify(table.node)}`,
    });
  }
  for (const key of Object.keys(table)) {
    if (key !== "jid" && key !== "node") {
      problems.push({ key, message: `Unknown key '${key}' (an RTBL service has jid and node)` });
    }
  }
  return problems;
}

/** Options the module reads. */
export const options: Record<string, OptionSpec> = {
  rtbl_services: {
    type: "table[]",
    default: [],
    scope: "host",
    description: 'Block lists to follow, e.g. [{ jid = "xmppbl.org", node = "muc_bans_sha256" }]',
    checkTable: checkService,
  },
};

/** The lowercase hex SHA-256 of a JID or domain, as RTBL item ids are. */
export function rtblHash(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/** What the shell shows of one followed list. */
export interface RtblListView {
  /** The host or component following it. */
  host: string;
  service: string;
  node: string;
  items: number;
  /** "ok", "fetching" or why the last fetch failed. */
  status: string;
  /** When the list last changed or was fetched (ms since the epoch), if ever. */
  updated: number | undefined;
}

/** Why a JID is blocked: the list and what matched. */
export interface RtblMatch {
  host: string;
  service: string;
  node: string;
  /** "jid": the bare JID's hash (or the JID itself); "domain": the domain's. */
  by: "jid" | "domain";
}

/** What the `rtbl` shell section uses of the module on a host. */
export interface RtblService {
  lists(): RtblListView[];
  /** The lists that name the JID (bare JID or domain). */
  match(jid: JID): RtblMatch[];
  /** Fetches every list again (and subscribes again); resolves when all are done. */
  refresh(): Promise<void>;
}

declare module "../core/modules.ts" {
  interface ModuleServices {
    rtbl: RtblService;
  }
}

/** The services of every host that follows lists. */
function servicesOf(server: Parameters<CommandSpec["run"]>[0]["server"]): RtblService[] {
  const found: RtblService[] = [];
  for (const host of server.hosts.values()) {
    const service = hostService(host, "rtbl");
    if (service) found.push(service);
  }
  return found;
}

/** The `rtbl` section of the admin shell. */
const RTBL_COMMANDS: CommandSpec[] = [
  {
    section: "rtbl",
    name: "list",
    summary: "The real-time block lists followed: service, node, items, status, last update",
    args: [],
    run: ({ server }) => {
      const lists = servicesOf(server).flatMap((s) => s.lists());
      if (lists.length === 0) return { message: "No real-time block lists are configured" };
      return {
        table: {
          columns: ["host", "service", "node", "items", "status", "updated"],
          rows: lists.map((l) => [
            l.host,
            l.service,
            l.node,
            l.items,
            l.status,
            l.updated === undefined ? "never" : new Date(l.updated).toISOString(),
          ]),
        },
        data: lists,
      };
    },
  },
  {
    section: "rtbl",
    name: "test",
    summary: "Whether a JID would be blocked, and by which list",
    args: [{ name: "jid", kind: "jid" }],
    run: ({ server }, [text]) => {
      const jid = tryParseJid(text ?? "");
      if (!jid) throw new CommandError(`Not a JID: '${text ?? ""}'`);
      const matches = servicesOf(server).flatMap((s) => s.match(jid));
      if (matches.length === 0) {
        return { message: `${jid.bareString()} is not blocked`, data: { blocked: false, matches } };
      }
      return {
        message: `${jid.bareString()} is blocked by ${
          matches.map((m) => `${m.service} ${m.node} (${m.by}, on ${m.host})`).join(", ")
        }`,
        data: { blocked: true, matches },
      };
    },
  },
  {
    section: "rtbl",
    name: "refresh",
    summary: "Fetch every real-time block list again now",
    args: [],
    run: async ({ server }) => {
      const services = servicesOf(server);
      await Promise.all(services.map((s) => s.refresh()));
      const lists = services.flatMap((s) => s.lists());
      return {
        message: `Fetched ${lists.length} list${lists.length === 1 ? "" : "s"}: ${
          lists.map((l) => `${l.service} ${l.node} ${l.items} items (${l.status})`).join(", ")
        }`,
        data: lists,
      };
    },
  },
];

/** One list a host follows. */
class FollowedList {
  readonly service: string;
  readonly node: string;
  items = new Set<string>();
  status = "fetching";
  updated: number | undefined;
  /** While a fetch runs: changes notified meanwhile, applied over the fetched items. */
  pending: { id: string; added: boolean }[] | undefined;
  retryMs = RETRY_MIN_MS;
  cancelRetry: (() => void) | undefined;

  constructor(service: string, node: string) {
    this.service = service;
    this.node = node;
  }

  /** Applies a notified addition or retraction. */
  change(id: string, added: boolean): void {
    this.pending?.push({ id, added });
    if (added) {
      if (this.items.size < MAX_ITEMS) this.items.add(id);
    } else this.items.delete(id);
    this.updated = Date.now();
  }
}

/** Loads the block lists of a host or component. */
export default function rtbl(m: ModuleAPI): void {
  const configured = m.option<{ jid: string; node: string }[]>("rtbl_services");
  const lists = (Array.isArray(configured) ? configured : []).flatMap((entry) => {
    const jid = tryParseJid(String(entry?.jid ?? ""));
    return jid && typeof entry.node === "string" && entry.node !== ""
      ? [new FollowedList(jid.toString(), entry.node)]
      : [];
  });
  let unloaded = false;

  /** Asks for one page of a list's items. */
  function pageRequest(list: FollowedList, after: string | undefined): Element {
    const request = iq("get", { from: m.domain, to: list.service });
    const pubsub = request.c("pubsub", { xmlns: NS_PUBSUB });
    pubsub.c("items", { node: list.node });
    const set = pubsub.c("set", { xmlns: NS_RSM });
    set.c("max").t(String(PAGE_SIZE));
    if (after !== undefined) set.c("after").t(after);
    return request;
  }

  /** Subscribes the host's address to the list, then fetches every item (page by page). */
  async function fetchList(list: FollowedList): Promise<void> {
    list.cancelRetry?.();
    list.cancelRetry = undefined;
    list.status = "fetching";
    list.pending = [];
    try {
      // Subscribe first: what is published while the items are fetched is then notified.
      const subscribe = iq("set", { from: m.domain, to: list.service });
      subscribe.c("pubsub", { xmlns: NS_PUBSUB }).c("subscribe", {
        node: list.node,
        jid: m.domain,
      });
      await m.sendIq(subscribe);
      const fetched = new Set<string>();
      let after: string | undefined;
      while (!unloaded) {
        const answer = await m.sendIq(pageRequest(list, after));
        const pubsub = answer.getChild("pubsub", NS_PUBSUB);
        const page = pubsub?.getChild("items")?.getChildren("item") ?? [];
        for (const item of page) {
          if (item.attrs.id !== undefined && fetched.size < MAX_ITEMS) fetched.add(item.attrs.id);
        }
        // A service without RSM sends everything at once, with no <set/>.
        const last = pubsub?.getChild("set", NS_RSM)?.getChildText("last", NS_RSM);
        if (page.length === 0 || last === undefined || last === after) break;
        if (fetched.size >= MAX_ITEMS) {
          m.log.warning(
            "Block list {node} on {service} has more than {max} items; the rest are ignored",
            {
              node: list.node,
              service: list.service,
              max: MAX_ITEMS,
            },
          );
          break;
        }
        after = last;
      }
      for (const { id, added } of list.pending) {
        if (added) fetched.add(id);
        else fetched.delete(id);
      }
      list.items = fetched;
      list.status = "ok";
      list.updated = Date.now();
      list.retryMs = RETRY_MIN_MS;
      m.log.info("Block list {node} on {service}: {count} items", {
        node: list.node,
        service: list.service,
        count: fetched.size,
      });
    } catch (error) {
      if (unloaded) return;
      const reason = error instanceof IqError ? error.condition : String(error);
      list.status = `failed: ${reason}`;
      m.log.warning(
        "Fetching block list {node} on {service} failed ({reason}); again in {seconds} s",
        {
          node: list.node,
          service: list.service,
          reason,
          seconds: list.retryMs / 1000,
        },
      );
      list.cancelRetry = m.addTimer(list.retryMs, () => void fetchList(list), {
        label: `rtbl retry ${list.service} ${list.node}`,
      });
      list.retryMs = Math.min(list.retryMs * 2, RETRY_MAX_MS);
    } finally {
      list.pending = undefined;
    }
  }

  const refresh = async () => {
    await Promise.all(lists.map(fetchList));
  };

  /** The lists that name a JID: by its bare JID or its domain (hashed, or as they are). */
  function matchesOf(jid: JID): RtblMatch[] {
    const found: RtblMatch[] = [];
    if (lists.every((list) => list.items.size === 0)) return found;
    const bare = jid.local === undefined ? undefined : jid.bareString();
    const bareHash = bare === undefined ? undefined : rtblHash(bare);
    const domainHash = rtblHash(jid.domain);
    for (const list of lists) {
      if (list.items.size === 0) continue;
      if (bare !== undefined && (list.items.has(bareHash!) || list.items.has(bare))) {
        found.push({ host: m.domain, service: list.service, node: list.node, by: "jid" });
      } else if (list.items.has(domainHash) || list.items.has(jid.domain)) {
        found.push({ host: m.domain, service: list.service, node: list.node, by: "domain" });
      }
    }
    return found;
  }

  /** True when a stanza's sender is listed (never the server's own hosts, nor the lists). */
  function listedSender(stanza: Element): JID | undefined {
    if (lists.every((list) => list.items.size === 0)) return undefined;
    const from = tryParseJid(stanza.attrs.from ?? "");
    if (!from) return undefined;
    if (from.local === undefined && m.server.hosts.has(from.domain)) return undefined;
    if (lists.some((list) => list.service === from.bareString())) return undefined;
    return matchesOf(from).length > 0 ? from : undefined;
  }

  const drop = (stanza: Element, from: JID) => {
    m.metric("rtbl.dropped").inc();
    m.log.debug("Dropped {kind} from {from}: on a block list", {
      kind: stanza.name,
      from: from.toString(),
    });
  };

  m.provide("rtbl", {
    lists: () =>
      lists.map((list) => ({
        host: m.domain,
        service: list.service,
        node: list.node,
        items: list.items.size,
        status: list.status,
        updated: list.updated,
      })),
    match: matchesOf,
    refresh,
  });
  m.shellCommands(RTBL_COMMANDS);

  // Notifications from a followed list: additions, retractions, a purge or deletion.
  m.hook("message/host", ({ stanza }: StanzaEvent) => {
    const event = stanza.getChild("event", NS_PUBSUB_EVENT);
    if (!event) return false;
    const from = tryParseJid(stanza.attrs.from ?? "")?.bareString();
    const ofService = lists.filter((list) => list.service === from);
    if (ofService.length === 0) return false;
    let ours = false; // events of other nodes of the same service are left to other modules
    for (const child of event.elements()) {
      const list = ofService.find((l) => l.node === child.attrs.node);
      if (!list) continue;
      ours = true;
      if (child.name === "items") {
        for (const item of child.elements()) {
          if (item.attrs.id === undefined) continue;
          if (item.name === "item") list.change(item.attrs.id, true);
          else if (item.name === "retract") list.change(item.attrs.id, false);
        }
      } else if (child.name === "purge" || child.name === "delete") {
        list.items = new Set();
        list.updated = Date.now();
        if (child.name === "delete") list.status = "node deleted";
      }
    }
    return ours;
  }, FILTER_PRIORITY); // before a MUC service answers messages to its own address

  if (m.host.kind === "component") {
    // A room service: listed people cannot join rooms (told so) or write to them.
    m.hook("presence/full", ({ stanza, origin }: StanzaEvent) => {
      if (stanza.attrs.type !== undefined) return false;
      const from = listedSender(stanza);
      if (!from) return false;
      drop(stanza, from);
      origin.send(
        errorReply(stanza, "forbidden", { text: "You are on a block list of this service" }),
      );
      return true;
    }, FILTER_PRIORITY);
    const roomMessage = ({ stanza }: StanzaEvent) => {
      if (stanza.attrs.type === "error") return false;
      const from = listedSender(stanza);
      if (!from) return false;
      drop(stanza, from);
      return true;
    };
    m.hook("message/bare", roomMessage, FILTER_PRIORITY);
    m.hook("message/full", roomMessage, FILTER_PRIORITY);
  } else {
    // Accounts: messages and subscription requests from listed senders are dropped unanswered.
    const toAccount = ({ stanza }: StanzaEvent) => {
      const type = stanza.attrs.type;
      if (stanza.name === "presence" ? type !== "subscribe" : type === "error") return false;
      const from = listedSender(stanza);
      if (!from) return false;
      drop(stanza, from);
      return true;
    };
    m.hook("message/bare", toAccount, FILTER_PRIORITY);
    m.hook("message/full", toAccount, FILTER_PRIORITY);
    m.hook("presence/bare", toAccount, FILTER_PRIORITY);
    m.hook("presence/full", toAccount, FILTER_PRIORITY);
  }

  // Start once the server is up (routes to remote services need federation running).
  if (lists.length > 0) {
    m.addTimer(0, () => void refresh(), { label: "rtbl first fetch" });
    m.addTimer(RESYNC_MS, () => void refresh(), { repeat: true, label: "rtbl resync" });
  }

  m.onUnload(() => {
    unloaded = true;
    for (const list of lists) {
      const unsubscribe = iq("set", { from: m.domain, to: list.service });
      unsubscribe.c("pubsub", { xmlns: NS_PUBSUB }).c("unsubscribe", {
        node: list.node,
        jid: m.domain,
      });
      m.sendIq(unsubscribe).catch(() => {});
    }
  });
}
