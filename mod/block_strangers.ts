// Blocking strangers: an account that turns it on (or every account, with the host option
// `block_strangers`) only receives messages and subscription requests from people it knows:
// its roster, people it shares a room with, people it wrote to first, and its own server.
// Spam from unknown senders is dropped without an answer, so it learns nothing from it.

import { CommandError, type CommandSpec } from "../core/admin_commands.ts";
import type { OptionSpec } from "../core/config_schema.ts";
import type { StanzaEvent } from "../core/hosts.ts";
import { type JID, tryParseJid } from "../core/jid.ts";
import { hostService, type ModuleAPI } from "../core/modules.ts";
import { errorReply, reply } from "../core/xml/stanza.ts";
import type { RosterItem } from "./roster_store.ts";
// For the `muc` service's type (rooms a user is in), declared beside the MUC operator.
import type {} from "./muc/operator.ts";

/** The namespace of the per-account toggle clients get and set (a Lilt extension). */
export const NS_BLOCK_STRANGERS = "urn:lilt:block-strangers:0";
/** After the blocklist (1000), before delivery and offline storage. */
const FILTER_PRIORITY = 900;
/** Most people one account's recent-outgoing memory holds (the oldest go first). */
const MAX_RECENT_PER_ACCOUNT = 1000;
/** Most remembered verdicts per account (a flood from many senders pushes out the oldest). */
const MAX_VERDICTS_PER_ACCOUNT = 256;
/** How long a sender found in an account's roster or rooms stays known without a new check. */
const VERDICT_KNOWN_MS = 60_000;
/** How long a sender in none of the account's rooms stays out of them without a new scan. */
const VERDICT_STRANGER_MS = 10_000;
/** Accounts whose setting is kept in memory; the cache starts over past this. */
const MAX_CACHED_SETTINGS = 10_000;

/** One line for module listings. */
export const description =
  "Drops messages and subscription requests from senders an account does not know";

/** Options the module reads. */
export const options: Record<string, OptionSpec> = {
  block_strangers: {
    type: "boolean",
    default: false,
    scope: "host",
    description:
      "Block strangers for every account of the host (each account may still turn it on or off)",
  },
  block_strangers_reply_window: {
    type: "integer",
    default: 86_400,
    min: 0,
    max: 30 * 86_400,
    scope: "host",
    description:
      "Seconds during which someone an account wrote to (or sent presence to) may write back",
  },
};

/** An account's own choice: on, off, or the host's default when unset. */
export type StrangerSetting = "on" | "off" | "default";

/** What the `spam strangers` shell command uses of the module on a host. */
export interface BlockStrangersService {
  /** The account's own choice. */
  setting(user: string): StrangerSetting;
  /** Whether strangers are blocked for the account now (its choice, else the host's). */
  enabled(user: string): boolean;
  /** Records the account's choice. */
  set(user: string, setting: StrangerSetting): void;
}

declare module "../core/modules.ts" {
  interface ModuleServices {
    block_strangers: BlockStrangersService;
  }
}

/** The `spam strangers` shell command. */
const STRANGER_COMMANDS: CommandSpec[] = [
  {
    section: "spam",
    name: "strangers",
    summary: "Show or set whether an account blocks strangers (on, off, default)",
    args: [
      { name: "jid", kind: "jid" },
      { name: "setting", kind: "string", optional: true },
    ],
    run: ({ server }, [text, setting]) => {
      const jid = tryParseJid(text ?? "");
      if (!jid?.local || jid.resource !== undefined) {
        throw new CommandError(`Expected an account address (user@host), found '${text ?? ""}'`);
      }
      const host = server.hosts.get(jid.domain);
      const service = host === undefined ? undefined : hostService(host, "block_strangers");
      if (!service) {
        throw new CommandError(`The block_strangers module is not loaded on '${jid.domain}'`);
      }
      if (!server.accounts.exists(jid.domain, jid.local)) {
        throw new CommandError(`No account ${jid.bareString()}`);
      }
      if (setting !== undefined) {
        if (setting !== "on" && setting !== "off" && setting !== "default") {
          throw new CommandError(`Expected on, off or default, found '${setting}'`);
        }
        service.set(jid.local, setting);
      }
      const own = service.setting(jid.local);
      const enabled = service.enabled(jid.local);
      return {
        message: `${jid.bareString()} ${enabled ? "blocks" : "does not block"} strangers (${
          own === "default" ? "the host's default" : "its own setting"
        })`,
        data: { jid: jid.bareString(), setting: own, enabled },
      };
    },
  },
];

/** Loads stranger blocking on a host. */
export default function blockStrangers(m: ModuleAPI): void {
  const hostDefault = m.option<boolean>("block_strangers");
  const replyWindowMs = m.option<number>("block_strangers_reply_window") * 1000;
  const settings = m.openStore<StrangerSetting>("block_strangers", "keyval");
  const rosters = m.openStore<RosterItem>("roster", "map");
  const cache = new Map<string, StrangerSetting>();
  /** Per account: bare JIDs it wrote to, with when that stops counting (ms). */
  const recent = new Map<string, Map<string, number>>();
  /**
   * Per account: senders found in its roster or rooms (until when, ms), or in none of its rooms
   * (minus until when), so the checks do not run for every stanza of a busy sender.
   */
  const verdicts = new Map<string, Map<string, number>>();

  /** Records `value` for (user, bare), newest last, at most `limit` per user. */
  function remember(
    map: Map<string, Map<string, number>>,
    user: string,
    bare: string,
    value: number,
    limit = MAX_RECENT_PER_ACCOUNT,
  ) {
    let people = map.get(user);
    if (!people) {
      people = new Map();
      map.set(user, people);
    }
    people.delete(bare); // re-inserted last: the map's order is oldest first
    people.set(bare, value);
    if (people.size > limit) people.delete(people.keys().next().value!);
  }

  const settingOf = (user: string): StrangerSetting => {
    let setting = cache.get(user);
    if (setting === undefined) {
      const stored = settings.get(user);
      setting = stored === "on" || stored === "off" ? stored : "default";
      if (cache.size >= MAX_CACHED_SETTINGS) cache.clear();
      cache.set(user, setting);
    }
    return setting;
  };
  const enabledFor = (user: string): boolean => {
    const setting = settingOf(user);
    return setting === "default" ? hostDefault : setting === "on";
  };
  const set = (user: string, setting: StrangerSetting) => {
    settings.set(user, setting === "default" ? undefined : setting);
    cache.set(user, setting);
  };

  m.provide("block_strangers", { setting: settingOf, enabled: enabledFor, set });
  m.shellCommands(STRANGER_COMMANDS);
  m.addAccountFeature(NS_BLOCK_STRANGERS);
  // Accounts can be deleted and created again: a login reads the stored setting again.
  m.hook("resource-bind", ({ session }) => {
    if (session.jid?.local) cache.delete(session.jid.local);
  });

  /** True when `from` may write to `user` although strangers are blocked. */
  function known(user: string, from: JID): boolean {
    const served = m.server.hosts.get(from.domain);
    // The server itself, its hosts, and the components it serves (rooms, pubsub, gateways).
    if (served && (from.local === undefined || served.kind === "component")) return true;
    if (from.local === user && from.domain === m.domain) return true;
    const bare = from.bareString();
    const now = Date.now();
    const until = recent.get(user)?.get(bare);
    if (until !== undefined && until > now) return true;
    // A sender found in the roster or a shared room stays known for VERDICT_KNOWN_MS (a contact
    // just removed may still write for that long). The roster is read again for every other
    // stanza, so an added contact counts at once; the room scan, which walks every room of the
    // server's MUC services, runs once per VERDICT_STRANGER_MS for a sender in none of them.
    const verdict = verdicts.get(user)?.get(bare);
    if (verdict !== undefined && verdict > now) return true;
    const item = rosters.get(user, bare);
    if (item && !item.hidden) {
      remember(verdicts, user, bare, now + VERDICT_KNOWN_MS, MAX_VERDICTS_PER_ACCOUNT);
      return true;
    }
    if (verdict !== undefined && -verdict > now) return false;
    const inRoom = sharesRoom(user, bare);
    const value = inRoom ? now + VERDICT_KNOWN_MS : -(now + VERDICT_STRANGER_MS);
    remember(verdicts, user, bare, value, MAX_VERDICTS_PER_ACCOUNT);
    return inRoom;
  }

  function sharesRoom(user: string, bare: string): boolean {
    const own = `${user}@${m.domain}`;
    for (const host of m.server.hosts.values()) {
      if (host.kind !== "component") continue;
      if (hostService(host, "muc")?.sharesRoom(own, bare)) return true;
    }
    return false;
  }

  const inbound = ({ stanza }: StanzaEvent) => {
    const type = stanza.attrs.type;
    // Presence other than a subscription request carries nothing a stranger could use to
    // spam; errors are answers.
    if (stanza.name === "presence" ? type !== "subscribe" : type === "error") return false;
    const to = tryParseJid(stanza.attrs.to ?? "");
    if (!to?.local || to.domain !== m.domain || !enabledFor(to.local)) return false;
    const from = tryParseJid(stanza.attrs.from ?? "");
    if (!from || known(to.local, from)) return false;
    m.metric("block_strangers.dropped").inc();
    m.log.debug("Dropped {kind} from stranger {from} to {to}", {
      kind: stanza.name,
      from: from.toString(),
      to: to.bareString(),
    });
    return true; // dropped: an error would tell the sender the account exists
  };
  m.hook("message/bare", inbound, FILTER_PRIORITY);
  m.hook("message/full", inbound, FILTER_PRIORITY);
  m.hook("presence/bare", inbound, FILTER_PRIORITY);
  m.hook("presence/full", inbound, FILTER_PRIORITY);

  // Someone an account writes to (a message, directed presence such as a room join, a
  // subscription request) may write back for a while. Only kept for accounts that block.
  const outbound = ({ stanza, origin }: StanzaEvent) => {
    if (origin.kind !== "c2s" || origin.host !== m.domain) return false;
    const user = origin.jid?.local;
    if (!user || !enabledFor(user)) return false;
    const type = stanza.attrs.type;
    if (type === "error" || type === "unavailable" || type === "unsubscribed") return false;
    const to = tryParseJid(stanza.attrs.to ?? "");
    if (!to) return false;
    const bare = to.bareString();
    if (recent.get(user)?.get(bare) === undefined) verdicts.get(user)?.delete(bare);
    remember(recent, user, bare, Date.now() + replyWindowMs);
    return false;
  };
  m.hook("pre-message/bare", outbound);
  m.hook("pre-message/full", outbound);
  m.hook("pre-presence/bare", outbound);
  m.hook("pre-presence/full", outbound);

  // Forget entries that ran out (verdicts last seconds, so this runs every minute).
  m.addTimer(60_000, () => {
    const now = Date.now();
    for (const map of [recent, verdicts]) {
      for (const [user, people] of map) {
        for (const [bare, until] of people) if (Math.abs(until) <= now) people.delete(bare);
        if (people.size === 0) map.delete(user);
      }
    }
  }, { repeat: true, label: "block_strangers recent-contact expiry" });

  // The account's own toggle: <block-strangers enabled='true|false'/> (absent: the host's).
  m.hook(`iq-get/self/${NS_BLOCK_STRANGERS}:block-strangers`, ({ stanza, origin }) => {
    const user = origin.kind === "c2s" && origin.host === m.domain ? origin.jid?.local : undefined;
    if (!user) {
      origin.send(errorReply(stanza, "not-allowed"));
      return true;
    }
    const answer = reply(stanza);
    delete answer.attrs.from;
    const setting = settingOf(user);
    answer.c("block-strangers", {
      xmlns: NS_BLOCK_STRANGERS,
      enabled: String(enabledFor(user)),
      source: setting === "default" ? "host" : "account",
    });
    origin.send(answer);
    return true;
  });
  m.hook(`iq-set/self/${NS_BLOCK_STRANGERS}:block-strangers`, ({ stanza, origin }) => {
    const user = origin.kind === "c2s" && origin.host === m.domain ? origin.jid?.local : undefined;
    if (!user) {
      origin.send(errorReply(stanza, "not-allowed"));
      return true;
    }
    const enabled = stanza.firstElement()!.attrs.enabled;
    if (enabled !== undefined && enabled !== "true" && enabled !== "false") {
      origin.send(
        errorReply(stanza, "bad-request", {
          text:
            `Expected enabled='true' or 'false' (or none for the host's default), found '${enabled}'`,
        }),
      );
      return true;
    }
    set(user, enabled === undefined ? "default" : enabled === "true" ? "on" : "off");
    const answer = reply(stanza);
    delete answer.attrs.from;
    origin.send(answer);
    return true;
  });
}
