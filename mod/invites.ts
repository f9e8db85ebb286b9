// Invitations (XEP-0401 easy onboarding, XEP-0445 pre-authenticated registration, XEP-0379
// mutual subscription): the operator creates a token with `invite create`, hands out the
// `xmpp:` URI, and a client presents the token with <preauth/> before registering in-band. An
// account created that way is subscribed both ways with the inviting account, if there is one.
// `registration_requires_invite` (mod/register.ts) makes a token the only way in.

import { type AdminServer, CommandError, type CommandSpec } from "../core/admin_commands.ts";
import type { OptionSpec } from "../core/config_schema.ts";
import type { AccountPurgedEvent, StanzaEvent, UnauthenticatedStanzaEvent } from "../core/hosts.ts";
import { prepLocal, tryParseJid } from "../core/jid.ts";
import { hostService, type ModuleAPI } from "../core/modules.ts";
import type { Session } from "../core/sessions.ts";
import type { Database } from "../core/storage/database.ts";
import type { Migration } from "../core/storage/migrations.ts";
import { Element } from "../core/xml/element.ts";
import { errorReply, reply } from "../core/xml/stanza.ts";
import {
  hasFrom,
  hasTo,
  MAX_ROSTER_SIZE_OPTION,
  maxRosterSize,
  type RosterItem,
  Rosters,
} from "./roster_store.ts";

/** The XEP-0379 namespace of the <preauth/> element (also used by XEP-0445). */
export const NS_PARS = "urn:xmpp:pars:0";
/** XEP-0445 stream feature: this server accepts registration tokens. */
export const NS_IBR_TOKEN = "urn:xmpp:ibr-token:0";
/** The feature namespace of XEP-0401's earlier versions, which some clients still look for. */
export const NS_INVITE_LEGACY = "urn:xmpp:invite";
const DAY_MS = 24 * 3600 * 1000;

/** One line for module listings. */
export const description =
  "XEP-0401/XEP-0445 invitations: tokens for in-band registration, with mutual subscription to the inviter";

/** The module's own table. */
export const migrations: readonly Migration[] = [
  {
    version: 1,
    description: "invitation tokens",
    up(db) {
      db.exec(`
        CREATE TABLE invites (
          token TEXT PRIMARY KEY,
          host TEXT NOT NULL,
          inviter TEXT,
          reusable INTEGER NOT NULL,
          created_ms INTEGER NOT NULL,
          expires_ms INTEGER NOT NULL,
          uses INTEGER NOT NULL DEFAULT 0
        ) WITHOUT ROWID;
        CREATE INDEX invites_host ON invites (host, expires_ms);
      `);
    },
  },
];
/** The schema the migrations are numbered in. */
export const schema = "invites";

/** Options the module reads. */
export const options: Record<string, OptionSpec> = {
  invite_expires_after: {
    type: "integer",
    default: 604_800,
    min: 60,
    max: 31_536_000,
    scope: "host",
    description:
      "Seconds an invite stays valid when `invite create` gives no --expires (default a week)",
  },
  // The inviter's roster limit applies to the contact an invite adds.
  max_roster_size: MAX_ROSTER_SIZE_OPTION,
};

/** One invitation, as the table holds it. */
export interface Invite {
  token: string;
  /** The host an account is registered on with it. */
  host: string;
  /** The local account the new one becomes a contact of (both ways); absent: account only. */
  inviter?: string;
  /** Usable for any number of registrations until it expires (else once). */
  reusable: boolean;
  createdMs: number;
  expiresMs: number;
  /** Registrations made with it. */
  uses: number;
}

/** What `create` takes. */
export interface CreateInviteOptions {
  /** A local account of the host: the new account is subscribed with it both ways. */
  inviter?: string;
  reusable?: boolean;
  /** Validity in milliseconds (default: the host's `invite_expires_after`). */
  ttlMs?: number;
}

/** A registration's hold on an invite, taken before the account is created. */
export interface InviteClaim {
  invite: Invite;
  /** Gives the use back (the registration failed). */
  release(): void;
}

/** What the module offers registration and the admin shell on its host. */
export interface InviteService {
  /** Stores a new invite with a fresh random token. */
  create(options?: CreateInviteOptions): Invite;
  /** The invites still usable (not expired, not used up), oldest first. */
  pending(): Invite[];
  /** Deletes an invite; false when the host has none with this token. */
  revoke(token: string): boolean;
  /**
   * The invite the session presented with <preauth/>, while it can still be used. Its expiry
   * was checked when it was presented and is not checked again (XEP-0445 §4).
   */
  presented(session: Session): Invite | undefined;
  /** Counts a registration against the session's invite; undefined when it has none usable. */
  claim(session: Session): InviteClaim | undefined;
  /** After `username` was registered with `invite`: the mutual subscription with the inviter. */
  welcome(invite: Invite, username: string): void;
}

declare module "../core/modules.ts" {
  interface ModuleServices {
    invites: InviteService;
  }
}

/** The `xmpp:` URI of an invite (XEP-0401 and XEP-0445 forms). */
export function inviteUri(invite: Invite): string {
  if (invite.inviter === undefined) {
    return `xmpp:${invite.host}?register;preauth=${invite.token}`;
  }
  const local = encodeURIComponent(invite.inviter);
  return `xmpp:${local}@${invite.host}?roster;preauth=${invite.token};ibr=y`;
}

/** A token: 18 random bytes in base64url (24 characters, no padding). */
function newToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(18));
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_");
}

/** Tokens this module issues; anything else is refused without a lookup. */
const TOKEN_SHAPE = /^[A-Za-z0-9_-]{1,64}$/;

function rowToInvite(row: Record<string, unknown>): Invite {
  return {
    token: String(row.token),
    host: String(row.host),
    inviter: row.inviter === null ? undefined : String(row.inviter),
    reusable: Number(row.reusable) === 1,
    createdMs: Number(row.created_ms),
    expiresMs: Number(row.expires_ms),
    uses: Number(row.uses),
  };
}

/** The invites of one host in the module's table. */
class InviteStore {
  #db: Database;
  #host: string;

  constructor(db: Database, host: string) {
    this.#db = db;
    this.#host = host;
  }

  insert(invite: Invite): void {
    this.#db.prepare(
      `INSERT INTO invites (token, host, inviter, reusable, created_ms, expires_ms, uses)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      invite.token,
      this.#host,
      invite.inviter ?? null,
      invite.reusable ? 1 : 0,
      invite.createdMs,
      invite.expiresMs,
      invite.uses,
    );
  }

  get(token: string): Invite | undefined {
    const row = this.#db.prepare("SELECT * FROM invites WHERE token = ? AND host = ?")
      .get(token, this.#host);
    return row ? rowToInvite(row) : undefined;
  }

  /** Invites still usable at `now`. */
  pending(now: number): Invite[] {
    return this.#db.prepare(
      `SELECT * FROM invites WHERE host = ? AND expires_ms > ? AND (reusable = 1 OR uses = 0)
       ORDER BY created_ms, token`,
    ).all(this.#host, now).map(rowToInvite);
  }

  /** One more use, if the invite has one left (expiry aside); true when taken. */
  use(token: string): boolean {
    return Number(
      this.#db.prepare(
        `UPDATE invites SET uses = uses + 1
         WHERE token = ? AND host = ? AND (reusable = 1 OR uses = 0)`,
      ).run(token, this.#host).changes,
    ) > 0;
  }

  unuse(token: string): void {
    this.#db.prepare(
      "UPDATE invites SET uses = uses - 1 WHERE token = ? AND host = ? AND uses > 0",
    ).run(token, this.#host);
  }

  remove(token: string): boolean {
    return Number(
      this.#db.prepare("DELETE FROM invites WHERE token = ? AND host = ?")
        .run(token, this.#host).changes,
    ) > 0;
  }

  removeInviter(user: string): void {
    this.#db.prepare("DELETE FROM invites WHERE host = ? AND inviter = ?").run(this.#host, user);
  }

  /**
   * Deletes invites expired for a day (used single-use ones included); a session that
   * presented a token just before it expired may still register with it meanwhile.
   */
  prune(now: number): number {
    return Number(
      this.#db.prepare(
        `DELETE FROM invites WHERE host = ? AND expires_ms <= ?`,
      ).run(this.#host, now - DAY_MS).changes,
    );
  }
}

/** True when `invite` may still register an account (expiry aside). */
function hasUseLeft(invite: Invite): boolean {
  return invite.reusable || invite.uses === 0;
}

/**
 * Parses a duration such as "7d", "12h", "90m", "45s" or "2w" (a bare number is seconds) into
 * milliseconds; undefined when the text is not one.
 */
export function parseInviteDuration(text: string): number | undefined {
  const match = /^(\d{1,9})([smhdw]?)$/i.exec(text.trim());
  if (!match) return undefined;
  const unit = { "": 1, s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[
    match[2].toLowerCase() as "" | "s" | "m" | "h" | "d" | "w"
  ];
  const ms = Number(match[1]) * unit * 1000;
  return ms > 0 ? ms : undefined;
}

/** What `invite create`'s words ask for. */
interface CreateRequest {
  host: string;
  inviter?: string;
  reusable: boolean;
  ttlMs?: number;
}

/** Splits `invite create HOST|--user JID [--reusable] [--expires DURATION]`. */
function parseCreateArgs(joined: string | undefined): CreateRequest {
  // The admin socket joins the words of the trailing `rest` argument.
  const words = (joined ?? "").split(/\s+/).filter((w) => w !== "");
  let host: string | undefined;
  let user: string | undefined;
  let reusable = false;
  let ttlMs: number | undefined;
  for (let i = 0; i < words.length; i++) {
    const word = words[i];
    const [flag, inline] = word.startsWith("--") && word.includes("=")
      ? [word.slice(0, word.indexOf("=")), word.slice(word.indexOf("=") + 1)]
      : [word, undefined];
    const value = () => {
      const next = inline ?? words[++i];
      if (next === undefined) throw new CommandError(`Expected a value after ${flag}`);
      return next;
    };
    if (flag === "--reusable") reusable = true;
    else if (flag === "--expires") {
      const text = value();
      ttlMs = parseInviteDuration(text);
      if (ttlMs === undefined) {
        throw new CommandError(
          `Expected a duration such as 7d, 12h, 90m or 45s after --expires, found '${text}'`,
        );
      }
    } else if (flag === "--user") user = value();
    else if (flag.startsWith("--")) {
      throw new CommandError(
        `Unknown option '${flag}': expected --reusable, --expires DURATION or --user JID`,
      );
    } else if (host === undefined) {
      const jid = tryParseJid(word);
      if (!jid || jid.local !== undefined || jid.resource !== undefined) {
        throw new CommandError(`Expected a host, found '${word}'`);
      }
      host = jid.domain;
    } else throw new CommandError(`Unexpected argument '${word}'`);
  }
  let inviter: string | undefined;
  if (user !== undefined) {
    const jid = tryParseJid(user);
    if (!jid?.local || jid.resource !== undefined) {
      throw new CommandError(`Expected an account JID after --user, found '${user}'`);
    }
    if (host !== undefined && host !== jid.domain) {
      throw new CommandError(`The inviting account ${jid.bareString()} is not on '${host}'`);
    }
    host = jid.domain;
    inviter = jid.local;
  }
  if (host === undefined) {
    throw new CommandError("Expected a host, or --user JID (the inviting account)");
  }
  return { host, inviter, reusable, ttlMs };
}

function serviceOf(server: AdminServer, domain: string): InviteService {
  const host = server.hosts.get(domain);
  if (!host) throw new CommandError(`No host '${domain}'`);
  const service = hostService(host, "invites");
  if (!service) throw new CommandError(`The invites module is not loaded on '${domain}'`);
  return service;
}

/** Every host's invite service, for commands that take no host. */
function allServices(server: AdminServer): [string, InviteService][] {
  const found: [string, InviteService][] = [];
  for (const [domain, host] of server.hosts) {
    const service = hostService(host, "invites");
    if (service) found.push([domain, service]);
  }
  return found;
}

function isoDate(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** How an invite is shown and returned as data. */
function inviteData(invite: Invite) {
  return {
    token: invite.token,
    host: invite.host,
    inviter: invite.inviter === undefined ? null : `${invite.inviter}@${invite.host}`,
    reusable: invite.reusable,
    uses: invite.uses,
    created: isoDate(invite.createdMs),
    expires: isoDate(invite.expiresMs),
    uri: inviteUri(invite),
  };
}

/** The `invite` section of the admin shell. */
const INVITE_COMMANDS: CommandSpec[] = [
  {
    section: "invite",
    name: "create",
    summary:
      "Create an invite and print its xmpp: URI: HOST (an account) or --user JID (an account that becomes JID's contact), [--reusable] [--expires DURATION]",
    args: [{ name: "host|options", kind: "host", rest: true }],
    run: ({ server }, [words]) => {
      const request = parseCreateArgs(words);
      const service = serviceOf(server, request.host);
      if (request.inviter !== undefined && !server.accounts.exists(request.host, request.inviter)) {
        throw new CommandError(`No account ${request.inviter}@${request.host}`);
      }
      const invite = service.create(request);
      const data = inviteData(invite);
      return { message: data.uri, data };
    },
  },
  {
    section: "invite",
    name: "list",
    summary: "Invites still usable (on one host, or on all)",
    args: [{ name: "host", kind: "host", optional: true }],
    run: ({ server }, [domain]) => {
      const services = domain === undefined ? allServices(server) : [[
        domain,
        serviceOf(server, domain),
      ] as [string, InviteService]];
      const invites = services.flatMap(([, service]) => service.pending()).map(inviteData);
      return {
        table: {
          columns: ["token", "host", "inviter", "reusable", "uses", "expires"],
          rows: invites.map((i) => [i.token, i.host, i.inviter, i.reusable, i.uses, i.expires]),
          details: invites.map((i) => i.uri),
        },
        data: invites,
      };
    },
  },
  {
    section: "invite",
    name: "revoke",
    summary: "Delete an invite by its token: it can no longer register an account",
    args: [{ name: "token", kind: "string" }],
    run: ({ server }, [token]) => {
      for (const [domain, service] of allServices(server)) {
        if (service.revoke(token!)) {
          return { message: `Revoked invite ${token} on ${domain}`, data: { token, host: domain } };
        }
      }
      throw new CommandError(`No invite '${token}'`);
    },
  },
];

/** Loads invitations on a host. */
export default function invites(m: ModuleAPI): void {
  if (m.host.kind !== "local") {
    m.log.debug("Module invites serves [[host]] sections; idle on component {host}", {
      host: m.domain,
    });
    return;
  }
  const store = new InviteStore(m.database, m.domain);
  const rosters = new Rosters(m);
  /** The token each session presented with <preauth/>. */
  const presentedTokens = new WeakMap<Session, string>();

  const service: InviteService = {
    create(options = {}) {
      const now = Date.now();
      const ttlMs = options.ttlMs ?? m.option<number>("invite_expires_after") * 1000;
      const invite: Invite = {
        token: newToken(),
        host: m.domain,
        inviter: options.inviter === undefined ? undefined : prepLocal(options.inviter),
        reusable: options.reusable ?? false,
        createdMs: now,
        expiresMs: now + ttlMs,
        uses: 0,
      };
      store.insert(invite);
      m.log.info("Invite {token} created on {host} (inviter {inviter}, expires {expires})", {
        token: invite.token,
        host: m.domain,
        inviter: invite.inviter ?? "none",
        expires: isoDate(invite.expiresMs),
      });
      return invite;
    },
    pending: () => store.pending(Date.now()),
    revoke(token) {
      const removed = store.remove(token);
      if (removed) m.log.info("Invite {token} revoked on {host}", { token, host: m.domain });
      return removed;
    },
    presented(session) {
      const token = presentedTokens.get(session);
      if (token === undefined) return undefined;
      const invite = store.get(token);
      return invite && hasUseLeft(invite) ? invite : undefined;
    },
    claim(session) {
      const invite = service.presented(session);
      if (!invite || !store.use(invite.token)) return undefined;
      let released = false;
      return {
        invite: { ...invite, uses: invite.uses + 1 },
        release: () => {
          if (released) return;
          released = true;
          store.unuse(invite.token);
        },
      };
    },
    welcome(invite, username) {
      m.metric("invites.used").inc();
      if (invite.inviter === undefined || invite.inviter === username) return;
      if (!m.server.accounts.exists(m.domain, invite.inviter)) return;
      subscribeBoth(invite.inviter, username);
    },
  };
  m.provide("invites", service);
  m.shellCommands(INVITE_COMMANDS);

  /**
   * XEP-0379's goal: each account subscribed to the other's presence. Both rosters are local,
   * so the items are written directly (with roster pushes to the inviter's resources) instead
   * of exchanging subscription stanzas. An inviter whose roster is full gets no new item.
   */
  function subscribeBoth(inviter: string, username: string): void {
    const inviterJid = `${inviter}@${m.domain}`;
    const newJid = `${username}@${m.domain}`;
    const limit = maxRosterSize(m);
    const existing = rosters.get(inviter, newJid);
    if ((!existing || existing.hidden) && rosters.visibleAtLeast(inviter, limit)) {
      m.log.warning(
        "Roster of {inviter} is full ({limit} items): {user} registered with its invite " +
          "without the mutual subscription",
        { inviter: inviterJid, limit, user: newJid },
      );
      return;
    }
    const both = (item: RosterItem | undefined): RosterItem => ({
      name: item?.name,
      groups: item?.groups ?? [],
      subscription: "both",
    });
    rosters.update(inviter, newJid, both(existing));
    rosters.update(username, inviterJid, both(rosters.get(username, inviterJid)));
    m.log.info("{user} registered with an invite from {inviter}: subscribed both ways", {
      user: newJid,
      inviter: inviterJid,
    });
  }

  // XEP-0445 §4: a client presents its token before registering.
  m.hook("unauthenticated-stanza", ({ session, stanza }: UnauthenticatedStanzaEvent) => {
    const preauth = stanza.getChild("preauth", NS_PARS);
    if (stanza.name !== "iq" || !preauth) return false;
    const to = stanza.attrs.to === undefined ? undefined : tryParseJid(stanza.attrs.to);
    if (to && (to.local !== undefined || to.resource !== undefined || to.domain !== m.domain)) {
      return false;
    }
    const answer = (out: Element) => {
      delete out.attrs.from;
      delete out.attrs.to;
      session.send(out);
      return true;
    };
    if (stanza.attrs.type !== "set" || !stanza.attrs.id || stanza.elements().length !== 1) {
      return answer(errorReply(stanza, "bad-request", {
        text: "Send <preauth/> alone in an iq of type set with an id",
      }));
    }
    const token = preauth.attrs.token ?? "";
    const invite = TOKEN_SHAPE.test(token) ? store.get(token) : undefined;
    if (!invite || !hasUseLeft(invite) || invite.expiresMs <= Date.now()) {
      presentedTokens.delete(session);
      m.metric("invites.refused").inc();
      m.log.info("Invite token refused from {ip}: {reason}", {
        ip: session.ip,
        reason: !invite ? "unknown" : !hasUseLeft(invite) ? "used" : "expired",
      });
      return answer(errorReply(stanza, "item-not-found", {
        text: "The invite token is invalid, expired or already used",
      }));
    }
    presentedTokens.set(session, token);
    return answer(reply(stanza));
  });

  /**
   * XEP-0379: a subscription request that carries a contact invite's token is approved for
   * the inviter, and the inviter asks back, so that both end up subscribed. Runs before the
   * presence module, which then finds the request pre-approved (RFC 6121 §3.4) and answers it;
   * anything else (no token, a wrong one, a full roster) leaves the request to the user.
   */
  m.hook("presence/bare", ({ stanza }: StanzaEvent) => {
    const preauth = stanza.getChild("preauth", NS_PARS);
    if (stanza.attrs.type !== "subscribe" || !preauth) return false;
    const to = tryParseJid(stanza.attrs.to ?? "");
    const from = tryParseJid(stanza.attrs.from ?? "");
    const token = preauth.attrs.token ?? "";
    if (!to?.local || !from || !TOKEN_SHAPE.test(token)) return false;
    const inviter = to.local;
    const contact = from.bare.toString();
    const invite = store.get(token);
    if (
      !invite || invite.inviter !== inviter || !hasUseLeft(invite) ||
      invite.expiresMs <= Date.now() || contact === to.bare.toString()
    ) {
      m.log.info("Subscription request from {contact} to {user} with an unusable invite token", {
        contact,
        user: to.bare.toString(),
      });
      return false;
    }
    const item = rosters.get(inviter, contact);
    if (item && hasFrom(item.subscription)) return false; // already subscribed: nothing to do
    if ((!item || item.hidden) && rosters.visibleAtLeast(inviter, maxRosterSize(m))) return false;
    if (!store.use(token)) return false;
    const changed: RosterItem = { ...(item ?? { subscription: "none", groups: [] }) };
    delete changed.hidden;
    changed.approved = true;
    const askBack = !hasTo(changed.subscription) && !changed.ask;
    if (askBack) changed.ask = "subscribe";
    rosters.update(inviter, contact, changed);
    m.metric("invites.used").inc();
    m.log.info("{contact} subscribed to {user} with an invite: approved, asked back", {
      contact,
      user: to.bare.toString(),
    });
    if (askBack) {
      m.send(new Element("presence", { type: "subscribe", from: to.bare.toString(), to: contact }));
    }
    return false;
  }, 10);

  m.hook("account-purged", ({ user }: AccountPurgedEvent) => {
    store.removeInviter(user);
  });

  m.addTimer(DAY_MS, () => {
    const pruned = store.prune(Date.now());
    if (pruned > 0) {
      m.log.debug("Pruned {n} expired invites on {host}", { n: pruned, host: m.domain });
    }
  }, { repeat: true, label: "invite expiry" });
}
