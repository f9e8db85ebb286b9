// XEP-0077 In-Band Registration: account creation before login (off unless the operator allows
// it, throttled per address and server-wide, optionally only with an invite from mod/invites.ts),
// and password change and account removal for logged-in users.

import { isIPv6 } from "node:net";
import { deleteAccount } from "../core/auth/account_lifecycle.ts";
import {
  AccountExistsError,
  AccountNotFoundError,
  AccountTombstonedError,
} from "../core/auth/accounts.ts";
import { PasswordPrepError } from "../core/auth/saslprep.ts";
import type { OptionSpec } from "../core/config_schema.ts";
import type { StanzaEvent } from "../core/hosts.ts";
import { prepLocal, tryParseJid } from "../core/jid.ts";
import { AddressRanges, checkAddressRange, isAddressRange } from "../core/net/address_ranges.ts";
import { hostService, type ModuleAPI, ModuleOptionError } from "../core/modules.ts";
import type { Session } from "../core/sessions.ts";
import type { Element } from "../core/xml/element.ts";
import { NS_IBR_TOKEN, NS_INVITE_LEGACY } from "./invites.ts";
import {
  errorReply,
  type ErrorReplyOptions,
  reply,
  type StanzaErrorCondition,
} from "../core/xml/stanza.ts";

const NS_REGISTER = "jabber:iq:register";
/** Stream feature namespace (XEP-0077 §8). */
const NS_REGISTER_FEATURE = "http://jabber.org/features/iq-register";

/** One line for module listings. */
export const description =
  "XEP-0077: in-band registration (when allowed), password change and account removal";

/** The options this module reads (host-scoped: a [[host]] may override the global value). */
export const options: Record<string, OptionSpec> = {
  allow_registration: {
    type: "boolean",
    default: false,
    scope: "host",
    description: "Let anyone create an account in-band (XEP-0077) before logging in",
  },
  min_seconds_between_registrations: {
    type: "integer",
    default: 300,
    min: 0,
    max: 604800,
    scope: "host",
    description:
      "Seconds between two in-band registrations from one IPv4 address or IPv6 /64; 0 = no limit",
  },
  registration_blocklist: {
    type: "string[]",
    default: [],
    scope: "host",
    check: checkAddressRange,
    description: "IP addresses or CIDR ranges that may not register in-band",
  },
  registration_allowlist: {
    type: "string[]",
    default: [],
    scope: "host",
    check: checkAddressRange,
    description: "IP addresses or CIDR ranges that register without the time limit",
  },
  max_registrations_per_hour: {
    type: "integer",
    default: 0,
    min: 0,
    max: 1_000_000,
    scope: "global",
    description:
      "In-band registrations the whole server accepts in any hour, rolling, all hosts together; 0 = no limit",
  },
  registration_requires_invite: {
    type: "boolean",
    default: false,
    scope: "host",
    description:
      "In-band registration only with an invite token (XEP-0445) from `lilt shell invite create` (module invites)",
  },
};

const HOUR_MS = 3600 * 1000;

/**
 * When the last hour's in-band registrations happened, per server: the hourly limit spans all
 * the hosts of a server, whose register modules each see this through their own server.
 */
const serverRegistrations = new WeakMap<object, number[]>();

/**
 * Counts a registration on `server` now within `limit` per rolling hour: returns a function
 * that takes it back (the registration failed), or the milliseconds to wait when the hour's
 * registrations reached the limit.
 */
function takeHourlySlot(server: object, limit: number, now = Date.now()): (() => void) | number {
  let times = serverRegistrations.get(server);
  if (!times) serverRegistrations.set(server, times = []);
  while (times.length > 0 && times[0] <= now - HOUR_MS) times.shift();
  if (times.length >= limit) return times[times.length - limit] + HOUR_MS - now;
  times.push(now);
  const taken = times;
  return () => {
    const index = taken.lastIndexOf(now);
    if (index >= 0) taken.splice(index, 1);
  };
}

/** The eight 16-bit groups of an IPv6 address, as lowercase hex without leading zeros. */
function ipv6Groups(address: string): string[] {
  let text = address.toLowerCase();
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number);
    text = text.slice(0, v4.index) +
      `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split("::");
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  const zeros = tail === undefined ? [] : Array(8 - left.length - right.length).fill("0");
  return [...left, ...zeros, ...right].map((group) => parseInt(group, 16).toString(16));
}

/**
 * The key registrations are counted under: an IPv4 address (also when written IPv4-mapped),
 * or an IPv6 /64, since one subscriber usually holds a whole /64.
 */
function throttleKey(ip: string): string {
  const address = ip.replace(/%.*$/, "");
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1];
  if (!isIPv6(address)) return address;
  return `${ipv6Groups(address).slice(0, 4).join(":")}::/64`;
}

/** When each address last registered, to space registrations out. */
class RegistrationThrottle {
  #last = new Map<string, number>();

  /** Milliseconds `key` must still wait before registering again (0: it may now). */
  waitMs(key: string, intervalMs: number, now = Date.now()): number {
    const last = this.#last.get(key);
    return last === undefined ? 0 : Math.max(0, last + intervalMs - now);
  }

  /**
   * Counts a registration for `key` now (before the account exists, so that parallel
   * attempts see it); returns a function that takes it back if the registration fails.
   */
  record(key: string, intervalMs: number, now = Date.now()): () => void {
    for (const [other, when] of this.#last) {
      if (when + intervalMs <= now) this.#last.delete(other);
    }
    const previous = this.#last.get(key);
    this.#last.set(key, now);
    return () => {
      if (this.#last.get(key) !== now) return;
      if (previous === undefined) this.#last.delete(key);
      else this.#last.set(key, previous);
    };
  }
}

/** The registration policy of a host, rebuilt when the configuration is reloaded. */
interface Policy {
  allowRegistration: boolean;
  intervalMs: number;
  blocklist: AddressRanges;
  allowlist: AddressRanges;
  /** Server-wide registrations per rolling hour (0: no limit). */
  maxPerHour: number;
  /** Only a session that presented an invite token may register. */
  requiresInvite: boolean;
  /** A password may be sent in the clear only when SASL PLAIN may be too. */
  allowPlainInsecure: boolean;
  requireEncryption: boolean;
}

function addressList(m: ModuleAPI, name: string): AddressRanges {
  const entries = m.option<string[]>(name);
  const bad = entries.find((item) => !isAddressRange(item));
  if (bad !== undefined) {
    const line = m.server.config.lineOf(m.domain, name);
    const where = line ? `${m.server.config.file}:${line}: ` : "";
    throw new ModuleOptionError(
      `${where}Option '${name}' of module '${m.name}' expected IP addresses or CIDR ranges, ` +
        `found '${bad}'`,
    );
  }
  return AddressRanges.parse(entries);
}

function readPolicy(m: ModuleAPI): Policy {
  return {
    allowRegistration: m.option<boolean>("allow_registration"),
    intervalMs: m.option<number>("min_seconds_between_registrations") * 1000,
    blocklist: addressList(m, "registration_blocklist"),
    allowlist: addressList(m, "registration_allowlist"),
    maxPerHour: m.option<number>("max_registrations_per_hour"),
    requiresInvite: m.option<boolean>("registration_requires_invite"),
    allowPlainInsecure: m.hostOption("allow_unencrypted_plain_auth"),
    requireEncryption: m.hostOption("c2s_require_encryption"),
  };
}

/** A reply to a stanza sent before authentication: the client has no address yet. */
function unaddressed(stanza: Element): Element {
  delete stanza.attrs.from;
  delete stanza.attrs.to;
  return stanza;
}

/** The text of a field, undefined when it is missing or empty. */
function fieldText(query: Element, name: string): string | undefined {
  const text = query.getChild(name, NS_REGISTER)?.text();
  return text === undefined || text === "" ? undefined : text;
}

function minutes(ms: number): string {
  const n = Math.ceil(ms / 60_000);
  return n === 1 ? "a minute" : `${n} minutes`;
}

/** Loads in-band registration on a host. */
export default function register(m: ModuleAPI): void {
  const throttle = new RegistrationThrottle();
  let current = readPolicy(m); // throws on a bad option, so the module fails to load
  // A reload brings the new settings; the throttle's memory of recent registrations stays.
  m.hook("config-reloaded", () => {
    try {
      current = readPolicy(m);
    } catch (error) {
      m.log.error("Keeping the previous registration settings: {error}", {
        error: (error as Error).message,
      });
    }
  });

  /** The policy of the configuration in force. */
  function policy(): Policy {
    return current;
  }

  /** The password would travel encrypted, or the operator accepts clear-text passwords. */
  function passwordChannelSafe(session: Session, p: Policy): boolean {
    return session.secure || p.allowPlainInsecure;
  }

  m.addFeature(NS_REGISTER);

  m.hook("stream-features", ({ session, features }) => {
    if (session.authenticated) return;
    const p = policy();
    if (!p.allowRegistration || p.blocklist.includes(session.ip)) return;
    // Before TLS the core serves no stanzas when encryption is required.
    if (!session.secure && p.requireEncryption) return;
    if (!passwordChannelSafe(session, p)) return;
    features.c("register", { xmlns: NS_REGISTER_FEATURE });
    // XEP-0445 §3: invite tokens are accepted here (and under XEP-0401's earlier namespace).
    if (hostService(m.host, "invites")) {
      features.c("register", { xmlns: NS_IBR_TOKEN });
      features.c("register", { xmlns: NS_INVITE_LEGACY });
    }
  });

  // ---------- before authentication: create an account (XEP-0077 §3.1) ----------

  m.hook("unauthenticated-stanza", ({ session, stanza }) => {
    const type = stanza.attrs.type;
    const query = stanza.getChild("query", NS_REGISTER);
    if (stanza.name !== "iq" || !query || (type !== "get" && type !== "set")) return false;
    const to = stanza.attrs.to === undefined ? undefined : tryParseJid(stanza.attrs.to);
    if (to && (to.local !== undefined || to.resource !== undefined || to.domain !== m.domain)) {
      return false;
    }
    const fail = (condition: StanzaErrorCondition, options?: ErrorReplyOptions) =>
      session.send(unaddressed(errorReply(stanza, condition, options)));
    if (!stanza.attrs.id || stanza.elements().length !== 1) {
      fail("bad-request", { text: "An iq get/set needs an id and one payload" });
      return true;
    }
    const p = policy();
    if (!p.allowRegistration) {
      fail("service-unavailable", { text: "This server does not offer in-band registration" });
      return true;
    }
    if (p.blocklist.includes(session.ip)) {
      fail("forbidden", { text: "Registration from your address is not allowed" });
      return true;
    }
    if (!passwordChannelSafe(session, p)) {
      fail("not-authorized", { text: "Use TLS before sending a password" });
      return true;
    }
    if (type === "get") {
      const form = unaddressed(reply(stanza));
      const q = form.c("query", { xmlns: NS_REGISTER });
      q.c("instructions").t("Choose a username and password for your new account.");
      q.c("username");
      q.c("password");
      session.send(form);
      return true;
    }
    if (query.getChild("remove", NS_REGISTER)) {
      // §3.2: an entity that has not logged in has no registration to cancel.
      fail("unexpected-request", { text: "Log in before removing your account" });
      return true;
    }
    // The iq is answered (success or error) whatever happens: taken once the work is done.
    return createAccount(session, stanza, query, p, fail).then(() => true);
  });

  async function createAccount(
    session: Session,
    stanza: Element,
    query: Element,
    p: Policy,
    fail: (condition: StanzaErrorCondition, options?: ErrorReplyOptions) => void,
  ): Promise<void> {
    const rawUsername = fieldText(query, "username");
    const password = fieldText(query, "password");
    if (rawUsername === undefined || password === undefined) {
      // §3.1: every field of the form is required, and an empty password counts as missing.
      fail("not-acceptable", { text: "Both a username and a password are required" });
      return;
    }
    let username: string;
    try {
      username = prepLocal(rawUsername);
    } catch (error) {
      fail("jid-malformed", { text: `The username cannot be used: ${(error as Error).message}` });
      return;
    }
    const accounts = m.server.accounts;
    if (accounts.exists(m.domain, username)) {
      fail("conflict", { text: "This username is already taken" });
      return;
    }
    const invites = hostService(m.host, "invites");
    const invite = invites?.presented(session);
    if (p.requiresInvite && !invite) {
      m.metric("register.refused_without_invite").inc();
      fail("not-allowed", {
        text: invites
          ? "Registration on this server needs an invite: present its token first (XEP-0445)"
          : "Registration on this server needs an invite, and none can be checked now",
      });
      return;
    }
    const key = throttleKey(session.ip);
    const undos: (() => void)[] = [];
    const undo = () => undos.forEach((fn) => fn());
    if (p.maxPerHour > 0) {
      const slot = takeHourlySlot(m.server, p.maxPerHour);
      if (typeof slot === "number") {
        m.metric("register.throttled_server").inc();
        m.log.warning(
          "Registration from {ip} refused: the server-wide limit of {limit} per hour is reached",
          {
            ip: session.ip,
            limit: p.maxPerHour,
          },
        );
        fail("resource-constraint", {
          type: "wait",
          text: `This server accepts at most ${p.maxPerHour} registrations per hour; ` +
            `try again in ${minutes(slot)}`,
        });
        return;
      }
      undos.push(slot);
    }
    // An invite vouches for the registration: no per-address spacing (a reusable invite may
    // bring several people behind one address).
    if (!invite && p.intervalMs > 0 && !p.allowlist.includes(session.ip)) {
      const wait = throttle.waitMs(key, p.intervalMs);
      if (wait > 0) {
        undo();
        m.metric("register.throttled_address").inc();
        fail("resource-constraint", {
          type: "wait",
          text: `Too many registrations from your address; try again in ${minutes(wait)}`,
        });
        return;
      }
      undos.push(throttle.record(key, p.intervalMs));
    }
    const claim = invite ? invites!.claim(session) : undefined;
    if (invite && !claim) {
      undo();
      fail("not-allowed", { text: "The invite was used up meanwhile" });
      return;
    }
    if (claim) undos.push(claim.release);
    try {
      await accounts.create(m.domain, username, password);
    } catch (error) {
      undo();
      if (error instanceof AccountExistsError || error instanceof AccountTombstonedError) {
        fail("conflict", { text: "This username is already taken" });
      } else if (error instanceof PasswordPrepError) {
        fail("not-acceptable", { text: `The password cannot be used: ${error.message}` });
      } else {
        m.log.error("Cannot register {user}@{host}: {error}", {
          user: username,
          host: m.domain,
          error,
        });
        fail("internal-server-error");
      }
      return;
    }
    m.log.info("Registered {user}@{host} in-band from {ip}{how}", {
      user: username,
      host: m.domain,
      ip: session.ip,
      how: claim ? ` with invite ${claim.invite.token}` : "",
    });
    if (claim) {
      try {
        invites!.welcome(claim.invite, username);
      } catch (error) {
        m.log.error("Cannot subscribe {user}@{host} to its inviter: {error}", {
          user: username,
          host: m.domain,
          error,
        });
      }
    }
    session.send(unaddressed(reply(stanza)));
  }

  // ---------- after authentication: account management (XEP-0077 §3.2, §3.3) ----------

  /** The account a stanza acts on: the sender's, when it is a user of this host. */
  function accountOf(origin: Session): string | undefined {
    const jid = origin.jid;
    if (origin.kind !== "c2s" || !jid?.local || jid.domain !== m.domain) return undefined;
    return jid.local;
  }

  function onGet({ stanza, origin }: StanzaEvent): boolean {
    const username = accountOf(origin);
    if (username === undefined) return false;
    const answer = reply(stanza);
    const query = answer.c("query", { xmlns: NS_REGISTER });
    query.c("registered");
    query.c("instructions").t(
      "You are registered. Send a new password to change it, or <remove/> to delete the account.",
    );
    query.c("username").t(username);
    query.c("password");
    origin.send(answer);
    return true;
  }

  function onSet({ stanza, origin }: StanzaEvent): boolean | Promise<boolean> {
    const username = accountOf(origin);
    if (username === undefined) return false;
    const query = stanza.getChild("query", NS_REGISTER)!;
    if (query.getChild("remove", NS_REGISTER)) {
      if (query.elements().length !== 1) {
        origin.send(errorReply(stanza, "bad-request", {
          text: "<remove/> must be the only element of the query",
        }));
        return true;
      }
      removeAccount(stanza, origin, username);
      return true;
    }
    return changePassword(stanza, origin, username, query).then(() => true);
  }

  /**
   * §3.2: answer, then delete the account like an operator's `user delete` does: with the
   * host's `deletion_grace_period` it is disabled and purged later (restorable until then),
   * with 0 it is purged at once. Every session of the account is closed.
   */
  function removeAccount(stanza: Element, origin: Session, username: string): void {
    origin.send(reply(stanza));
    const outcome = deleteAccount(m.server, m.domain, username);
    m.log.info("Account {user}@{host} removed in-band ({state})", {
      user: username,
      host: m.domain,
      state: outcome.state,
    });
  }

  /** §3.3: a new password for the sender's own account. */
  async function changePassword(
    stanza: Element,
    origin: Session,
    username: string,
    query: Element,
  ): Promise<void> {
    const fail = (condition: StanzaErrorCondition, options?: ErrorReplyOptions) =>
      origin.send(errorReply(stanza, condition, options));
    const p = policy();
    if (!passwordChannelSafe(origin, p)) {
      fail("not-authorized", { text: "Passwords are only changed over TLS" });
      return;
    }
    const rawUsername = fieldText(query, "username");
    const password = fieldText(query, "password");
    if (rawUsername === undefined || password === undefined) {
      // An empty password never replaces the current one.
      fail("bad-request", { text: "A password change needs a username and a new password" });
      return;
    }
    let named: string | undefined;
    try {
      named = prepLocal(rawUsername);
    } catch {
      named = undefined;
    }
    if (named !== username) {
      fail("forbidden", { text: "You can only change the password of your own account" });
      return;
    }
    try {
      await m.server.accounts.setPassword(m.domain, username, password);
    } catch (error) {
      if (error instanceof PasswordPrepError) {
        fail("not-acceptable", { text: `The password cannot be used: ${error.message}` });
      } else if (error instanceof AccountNotFoundError) {
        fail("registration-required", { text: "The account no longer exists" });
      } else {
        m.log.error("Cannot change the password of {user}@{host}: {error}", {
          user: username,
          host: m.domain,
          error,
        });
        fail("internal-server-error");
      }
      return;
    }
    m.log.info("Password of {user}@{host} changed in-band", { user: username, host: m.domain });
    origin.send(reply(stanza));
  }

  m.hook(`iq-get/self/${NS_REGISTER}:query`, onGet);
  m.hook(`iq-set/self/${NS_REGISTER}:query`, onSet);
  // A client may address the server explicitly (to='example.com') for the same requests.
  m.hook(`iq-get/host/${NS_REGISTER}:query`, onGet);
  m.hook(`iq-set/host/${NS_REGISTER}:query`, onSet);
}
