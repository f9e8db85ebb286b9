// XEP-0357 push notifications: a mobile client registers its app server (a JID and a node), and
// when a message it would miss arrives (stored offline, queued for its hibernating stream
// management session, or sent to it while it says it is inactive) the server publishes a short
// summary to that app server, which wakes the device through its vendor's push service.

import { CommandError, type CommandSpec } from "../core/admin_commands.ts";
import type { OptionSpec } from "../core/config_schema.ts";
import type { SessionEvent, StanzaEvent } from "../core/hosts.ts";
import { type JID, tryParseJid } from "../core/jid.ts";
import { hostService, type ModuleAPI } from "../core/modules.ts";
import type { Session } from "../core/sessions.ts";
import type { Migration } from "../core/storage/migrations.ts";
import { Element } from "../core/xml/element.ts";
import { parseElement } from "../core/xml/parser.ts";
import { serialize } from "../core/xml/serializer.ts";
import { errorCondition, errorReply, reply } from "../core/xml/stanza.ts";
import type { CsiClientStateEvent, CsiUrgentEvent } from "./csi.ts";
import type { OfflineStoredEvent } from "./offline.ts";
import type { SmacksHibernationEvent } from "./smacks.ts";

/** The XEP-0357 namespace (enable, disable, notification, and the account feature). */
export const NS_PUSH = "urn:xmpp:push:0";
/** FORM_TYPE of the notification's summary form (XEP-0357 §7). */
export const NS_PUSH_SUMMARY = "urn:xmpp:push:summary";
const NS_PUBSUB = "http://jabber.org/protocol/pubsub";
const NS_PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options";
const NS_DATA = "jabber:x:data";
const NS_CARBONS = "urn:xmpp:carbons:2";
const NS_FORWARD = "urn:xmpp:forward:0";

/** Payloads that make a bodiless message worth waking a device for: its content or a call. */
const IMPORTANT_PAYLOADS: ReadonlyArray<readonly [ns: string, name: string]> = [
  ["eu.siacs.conversations.axolotl", "encrypted"], // OMEMO (legacy, XEP-0384 0.3)
  ["urn:xmpp:omemo:2", "encrypted"], // OMEMO
  ["jabber:x:encrypted", "x"], // XEP-0027 OpenPGP
  ["urn:xmpp:openpgp:0", "openpgp"], // XEP-0373
  ["urn:xmpp:jingle-message:0", "propose"], // XEP-0353 call
  ["urn:xmpp:jingle-message:1", "propose"],
];

/** Milliseconds the server waits for the app server's answer before forgetting the publish. */
const PUBLISH_TIMEOUT_MS = 60_000;

/** One line for module listings. */
export const description =
  "XEP-0357: push notifications to a client's app server for messages its device would miss";

/** Options the module reads (applied at once by a reload). */
export const options: Record<string, OptionSpec> = {
  push_notification_with_body: {
    type: "boolean",
    default: false,
    scope: "host",
    description: "Send the message body to the app server (it then reads every message)",
  },
  push_notification_with_sender: {
    type: "boolean",
    default: false,
    scope: "host",
    description: "Send the message's sender to the app server",
  },
  push_notification_important_body: {
    type: "string",
    default: "New Message!",
    scope: "host",
    description:
      "Stand-in body sent when the real one may not be, so iOS shows an alert (empty: none)",
  },
  push_max_registrations: {
    type: "integer",
    default: 5,
    min: 1,
    max: 100,
    scope: "host",
    description: "Push registrations per account; one more replaces the oldest",
  },
  push_throttle_seconds: {
    type: "integer",
    default: 5,
    min: 0,
    max: 3600,
    scope: "host",
    description:
      "Seconds between two notifications to one registration; messages meanwhile go in one",
  },
};

/** The module's table: one row per registration (account, app server JID and node). */
export const migrations: readonly Migration[] = [
  {
    version: 1,
    description: "push registrations",
    up(db) {
      db.exec(`
        CREATE TABLE push_registrations (
          host TEXT NOT NULL,
          user TEXT NOT NULL,
          service TEXT NOT NULL,
          node TEXT NOT NULL,
          resource TEXT NOT NULL,
          publish_options TEXT,
          created_ms INTEGER NOT NULL,
          PRIMARY KEY (host, user, service, node)
        ) WITHOUT ROWID;
      `);
    },
  },
];
/** The schema the migrations are numbered in. */
export const schema = "push";

/** One push registration of an account. */
export interface PushRegistration {
  /** The account's local part. */
  user: string;
  /** The app server's JID. */
  service: string;
  /** The node on the app server ("" when the client gave none). */
  node: string;
  /** The resource of the client that enabled it: its session's absence is what triggers. */
  resource: string;
  /** The publish-options form the client sent, serialized, sent back with every publish. */
  publishOptions: string | undefined;
  created: number;
}

/** What the `push` shell section uses of the module on a host (`m.service("push")`). */
export interface PushService {
  /** An account's registrations, oldest first. */
  registrations(user: string): PushRegistration[];
  /**
   * Removes an account's registrations with an app server (one node, or all of them), or every
   * registration of the account without `service`; returns how many went.
   */
  disable(user: string, service?: string, node?: string): number;
}

declare module "../core/modules.ts" {
  interface ModuleServices {
    push: PushService;
  }
}

/** An account JID argument of the shell, and its host's push service, or a CommandError. */
function accountOf(
  server: Parameters<CommandSpec["run"]>[0]["server"],
  text: string | undefined,
): { user: string; service: PushService; jid: string } {
  const jid = tryParseJid(text ?? "");
  if (!jid?.local) throw new CommandError(`Not an account JID: '${text}'`);
  const host = server.hosts.get(jid.domain);
  const service = host === undefined ? undefined : hostService(host, "push");
  if (!service) throw new CommandError(`The push module is not loaded on '${jid.domain}'`);
  return { user: jid.local, service, jid: jid.bareString() };
}

/** The `push` section of the admin shell. */
const PUSH_COMMANDS: CommandSpec[] = [
  {
    section: "push",
    name: "list",
    summary: "An account's push registrations (app server, node, enabling client, since)",
    args: [{ name: "jid", kind: "jid" }],
    run: ({ server }, [text]) => {
      const { user, service, jid } = accountOf(server, text);
      const registrations = service.registrations(user);
      if (registrations.length === 0) return { message: `${jid} has no push registrations` };
      return {
        table: {
          columns: ["service", "node", "client", "since"],
          rows: registrations.map((r) => [
            r.service,
            r.node,
            r.resource,
            new Date(r.created).toISOString(),
          ]),
        },
        data: { jid, registrations },
      };
    },
  },
  {
    section: "push",
    name: "disable",
    summary: "Remove an account's push registrations (all, an app server's, or one node)",
    args: [
      { name: "jid", kind: "jid" },
      { name: "service", kind: "jid", optional: true },
      { name: "node", kind: "string", optional: true },
    ],
    run: ({ server }, [text, appServer, node]) => {
      const { user, service, jid } = accountOf(server, text);
      let serviceJid: string | undefined;
      if (appServer !== undefined) {
        serviceJid = tryParseJid(appServer)?.toString();
        if (serviceJid === undefined) throw new CommandError(`Not a JID: '${appServer}'`);
      }
      const removed = service.disable(user, serviceJid, node);
      return {
        message: `Removed ${removed} push registration${removed === 1 ? "" : "s"} of ${jid}`,
        data: { jid, removed },
      };
    },
  },
];

/** What a notification says about the message that caused it. */
export interface PushSummary {
  /** The message's sender as it came (`from`). */
  sender: string;
  /** The body text, when the message has one. */
  body: string | undefined;
}

/**
 * Whether a message is worth waking a device for, and what a notification may say about it:
 * a message with a non-empty body, an encrypted payload (OMEMO, OpenPGP) or a call proposal
 * (XEP-0353); a received carbon copy is judged by the message it carries. Chat states,
 * receipts, markers, errors and headlines (PEP events) are not.
 */
export function pushSummaryOf(stanza: Element): PushSummary | undefined {
  if (stanza.name !== "message") return undefined;
  const type = stanza.attrs.type;
  if (type === "error" || type === "headline") return undefined;
  const received = stanza.getChild("received", NS_CARBONS);
  if (received) {
    const inner = received.getChild("forwarded", NS_FORWARD)?.getChild("message");
    return inner ? pushSummaryOf(inner) : undefined;
  }
  if (stanza.getChild("sent", NS_CARBONS)) return undefined; // the user's own message
  const sender = stanza.attrs.from ?? "";
  const body = stanza.getChildText("body");
  if (body !== undefined && body.trim() !== "") return { sender, body };
  for (const [ns, name] of IMPORTANT_PAYLOADS) {
    if (stanza.getChild(name, ns)) return { sender, body: undefined };
  }
  return undefined;
}

/** Notification state of one registration: what waits to be told, and when it was last told. */
interface Pending {
  /** Messages since the device was last back (bound, resumed or active). */
  count: number;
  last: PushSummary | undefined;
  lastSentAt: number;
  /** Sends the throttled notification; set while one waits. */
  timer: (() => void) | undefined;
}

/** A publish waiting for the app server's answer. */
interface InFlight {
  user: string;
  service: string;
  node: string;
  cancelTimeout: () => void;
}

function registrationKey(user: string, service: string, node: string): string {
  return `${user}\n${service}\n${node}`;
}

function rowToRegistration(row: Record<string, unknown>): PushRegistration {
  return {
    user: String(row.user),
    service: String(row.service),
    node: String(row.node),
    resource: String(row.resource),
    publishOptions: row.publish_options === null ? undefined : String(row.publish_options),
    created: Number(row.created_ms),
  };
}

/** The FORM_TYPE of a data form, if it has one. */
function formType(form: Element): string | undefined {
  const field = form.getChildren("field", NS_DATA).find((f) => f.attrs.var === "FORM_TYPE");
  return field?.getChildText("value", NS_DATA);
}

/** Loads push notifications on an account host. */
export default function push(m: ModuleAPI): void {
  const read = () => ({
    withBody: m.option<boolean>("push_notification_with_body"),
    withSender: m.option<boolean>("push_notification_with_sender"),
    importantBody: m.option<string>("push_notification_important_body"),
    maxRegistrations: m.option<number>("push_max_registrations"),
    throttleMs: m.option<number>("push_throttle_seconds") * 1000,
  });
  let settings = read();
  m.hook("config-reloaded", () => {
    settings = read();
  });

  const db = m.database;
  const pending = new Map<string, Pending>();
  const inFlight = new Map<string, InFlight>();

  m.addAccountFeature(NS_PUSH);
  m.provide("push", { registrations: registrationsOf, disable: disableRegistrations });
  m.shellCommands(PUSH_COMMANDS);

  function registrationsOf(user: string): PushRegistration[] {
    return db.prepare(
      "SELECT * FROM push_registrations WHERE host = ? AND user = ? ORDER BY created_ms, service, node",
    ).all(m.domain, user).map(rowToRegistration);
  }

  function removeRegistration(user: string, service: string, node: string): boolean {
    forgetPending(registrationKey(user, service, node));
    return db.prepare(
      "DELETE FROM push_registrations WHERE host = ? AND user = ? AND service = ? AND node = ?",
    ).run(m.domain, user, service, node).changes > 0;
  }

  function disableRegistrations(user: string, service?: string, node?: string): number {
    let removed = 0;
    for (const registration of registrationsOf(user)) {
      if (service !== undefined && registration.service !== service) continue;
      if (node !== undefined && registration.node !== node) continue;
      if (removeRegistration(user, registration.service, registration.node)) removed++;
    }
    return removed;
  }

  function forgetPending(key: string): void {
    const state = pending.get(key);
    state?.timer?.();
    pending.delete(key);
  }

  // <enable/> and <disable/> (XEP-0357 §5, §6): from the account's own client, to its bare JID
  // (or with no 'to'); a client that addresses the server itself is answered the same.
  m.hook("iq-set/self/urn:xmpp:push:0:enable", enable);
  m.hook("iq-set/host/urn:xmpp:push:0:enable", enable);
  m.hook("iq-set/self/urn:xmpp:push:0:disable", disable);
  m.hook("iq-set/host/urn:xmpp:push:0:disable", disable);

  /** True for a client session of an account of this host. */
  function ownClient(origin: Session): boolean {
    return origin.kind === "c2s" && origin.jid?.local !== undefined &&
      origin.jid.domain === m.domain;
  }

  function enable({ stanza, origin }: StanzaEvent): boolean {
    if (!ownClient(origin)) return false;
    const user = origin.jid?.local;
    const resource = origin.jid?.resource;
    if (!user || !resource) {
      origin.send(errorReply(stanza, "not-allowed", { text: "Bind a resource first" }));
      return true;
    }
    const enable = stanza.getChild("enable", NS_PUSH)!;
    const service = parseService(enable.attrs.jid);
    if (typeof service === "string") {
      origin.send(errorReply(stanza, "bad-request", { text: service }));
      return true;
    }
    const node = enable.attrs.node ?? "";
    let publishOptions: string | undefined;
    const form = enable.getChild("x", NS_DATA);
    if (form) {
      if (formType(form) !== NS_PUBLISH_OPTIONS) {
        origin.send(errorReply(stanza, "bad-request", {
          text: `The form in <enable/> must have FORM_TYPE ${NS_PUBLISH_OPTIONS}`,
        }));
        return true;
      }
      publishOptions = serialize(form);
    }
    const serviceJid = service.toString();
    db.transaction(() => {
      db.prepare(
        `INSERT INTO push_registrations
           (host, user, service, node, resource, publish_options, created_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (host, user, service, node) DO UPDATE SET
           resource = excluded.resource, publish_options = excluded.publish_options,
           created_ms = excluded.created_ms`,
      ).run(m.domain, user, serviceJid, node, resource, publishOptions ?? null, Date.now());
      // Bounded: the oldest registrations of the account give way.
      const all = registrationsOf(user);
      for (const old of all.slice(0, Math.max(0, all.length - settings.maxRegistrations))) {
        removeRegistration(old.user, old.service, old.node);
        m.log.info("Push registration {service} {node} of {user} replaced by a newer one", {
          service: old.service,
          node: old.node,
          user,
        });
      }
    });
    forgetPending(registrationKey(user, serviceJid, node));
    m.log.debug("Push enabled for {jid} via {service} {node}", {
      jid: origin.jid?.toString(),
      service: serviceJid,
      node,
    });
    origin.send(reply(stanza));
    return true;
  }

  function disable({ stanza, origin }: StanzaEvent): boolean {
    const user = origin.jid?.local;
    if (!user || !ownClient(origin)) return false;
    const disable = stanza.getChild("disable", NS_PUSH)!;
    const service = parseService(disable.attrs.jid);
    if (typeof service === "string") {
      origin.send(errorReply(stanza, "bad-request", { text: service }));
      return true;
    }
    disableRegistrations(user, service.toString(), disable.attrs.node);
    origin.send(reply(stanza));
    return true;
  }

  /** The app server JID of an enable or disable, or why it is not acceptable. */
  function parseService(value: string | undefined): JID | string {
    if (value === undefined || value === "") {
      return "The 'jid' attribute (the app server's JID) is required";
    }
    const jid = tryParseJid(value);
    if (!jid) return `The 'jid' attribute '${value}' is not a valid JID`;
    return jid;
  }

  // Triggers. Offline storage: the account has no available resource, so every device counts.
  m.hook("offline-message-stored", ({ user, stanza, redelivered }: OfflineStoredEvent) => {
    // A message stream management delivers again was seen (and notified) when it first came.
    if (redelivered) return;
    const summary = pushSummaryOf(stanza);
    if (!summary) return;
    for (const registration of registrationsOf(user)) notify(registration, summary);
  });

  // A hibernating session: what it had not acknowledged, then each stanza queued for it.
  m.hook("smacks-hibernating", ({ session, stanzas }: SmacksHibernationEvent) => {
    for (const stanza of stanzas) notifySession(session, stanza);
  });
  m.hook("smacks-queued-while-hibernating", ({ session, stanzas }: SmacksHibernationEvent) => {
    for (const stanza of stanzas) notifySession(session, stanza);
  });
  // An inactive client (CSI) whose app may be suspended with its connection open.
  m.hook("csi-urgent", ({ session, stanza }: CsiUrgentEvent) => {
    notifySession(session, stanza);
  });

  // The device is back: what it has not seen is on its way, so counting starts over.
  m.hook("resource-bind", ({ session }: SessionEvent) => deviceBack(session));
  m.hook("transport-attached", ({ session }: SessionEvent) => deviceBack(session));
  m.hook("csi-client-state", ({ session, inactive }: CsiClientStateEvent) => {
    if (!inactive) deviceBack(session);
  });

  m.hook("account-purged", ({ user }) => {
    for (const registration of registrationsOf(user)) {
      forgetPending(registrationKey(user, registration.service, registration.node));
    }
    db.prepare("DELETE FROM push_registrations WHERE host = ? AND user = ?").run(m.domain, user);
  });

  // The app server's answer comes to the account's bare JID; only the awaited ones are taken.
  m.hook("iq/bare", ({ stanza }: StanzaEvent) => {
    const type = stanza.attrs.type;
    if (type !== "result" && type !== "error") return false;
    const id = stanza.attrs.id;
    const flight = id === undefined ? undefined : inFlight.get(id);
    if (!flight || !sameJid(stanza.attrs.from, flight.service)) return false;
    inFlight.delete(id!);
    flight.cancelTimeout();
    if (type === "error") appServerRefused(flight, stanza);
    return true;
  }, 10);

  m.onUnload(() => {
    for (const state of pending.values()) state.timer?.();
    pending.clear();
    for (const flight of inFlight.values()) flight.cancelTimeout();
    inFlight.clear();
  });

  function sameJid(a: string | undefined, b: string): boolean {
    return tryParseJid(a ?? "")?.toString() === b;
  }

  function registrationsOfSession(session: Session): PushRegistration[] {
    const jid = session.jid;
    if (!jid?.local || jid.resource === undefined || jid.domain !== m.domain) return [];
    return registrationsOf(jid.local).filter((r) => r.resource === jid.resource);
  }

  function notifySession(session: Session, stanza: Element): void {
    const summary = pushSummaryOf(stanza);
    if (!summary) return;
    for (const registration of registrationsOfSession(session)) notify(registration, summary);
  }

  function deviceBack(session: Session): void {
    for (const registration of registrationsOfSession(session)) {
      const key = registrationKey(registration.user, registration.service, registration.node);
      const state = pending.get(key);
      if (!state) continue;
      state.timer?.();
      state.timer = undefined;
      state.count = 0;
      state.last = undefined;
    }
  }

  /**
   * Counts a message for a registration and notifies its app server: at once when the last
   * notification is older than the throttle, else once the throttle has passed (one
   * notification then tells of every message since, with the latest one's summary).
   */
  function notify(registration: PushRegistration, summary: PushSummary): void {
    const key = registrationKey(registration.user, registration.service, registration.node);
    let state = pending.get(key);
    if (!state) {
      state = { count: 0, last: undefined, lastSentAt: -Infinity, timer: undefined };
      pending.set(key, state);
    }
    state.count++;
    state.last = summary;
    if (state.timer) return;
    const wait = state.lastSentAt + settings.throttleMs - Date.now();
    if (wait <= 0) {
      publish(registration, state);
      return;
    }
    const waiting = state;
    waiting.timer = m.addTimer(wait, () => {
      waiting.timer = undefined;
      // Still registered? (disabled, replaced or refused meanwhile: nothing to send)
      const current = registrationsOf(registration.user).find((r) =>
        r.service === registration.service && r.node === registration.node
      );
      if (current && pending.get(key) === waiting && waiting.count > 0) {
        publish(current, waiting);
      }
    }, { label: "notification after the throttle" });
  }

  /** Sends the notification (XEP-0357 §7) as a pubsub publish from the account's bare JID. */
  function publish(registration: PushRegistration, state: Pending): void {
    state.lastSentAt = Date.now();
    const id = `push-${crypto.randomUUID()}`;
    const iq = new Element("iq", {
      type: "set",
      id,
      from: `${registration.user}@${m.domain}`,
      to: registration.service,
    });
    const pubsub = iq.c("pubsub", { xmlns: NS_PUBSUB });
    const item = pubsub.c("publish", { node: registration.node || undefined }).c("item");
    const form = item.c("notification", { xmlns: NS_PUSH }).c("x", {
      xmlns: NS_DATA,
      type: "submit",
    });
    const field = (name: string, value: string) =>
      form.c("field", { var: name }).c("value").t(value);
    field("FORM_TYPE", NS_PUSH_SUMMARY);
    field("message-count", String(state.count));
    const last = state.last;
    if (last && settings.withSender && last.sender !== "") {
      field("last-message-sender", last.sender);
    }
    const body = last && settings.withBody && last.body !== undefined
      ? last.body
      : settings.importantBody;
    if (body !== "") field("last-message-body", body);
    if (registration.publishOptions !== undefined) {
      try {
        pubsub.c("publish-options").append(parseElement(registration.publishOptions));
      } catch (error) {
        m.log.error("Unreadable publish-options of push registration {service}: {error}", {
          service: registration.service,
          error,
        });
      }
    }
    const flight: InFlight = {
      user: registration.user,
      service: registration.service,
      node: registration.node,
      // No answer in time: the app server may be slow or unreachable; the registration stays.
      cancelTimeout: m.addTimer(PUBLISH_TIMEOUT_MS, () => {
        inFlight.delete(id);
        m.log.info("Push app server {service} did not answer notification {id}", {
          service: registration.service,
          id,
        });
      }, { label: "app server answer timeout" }),
    };
    inFlight.set(id, flight);
    m.metric("push.sent").inc();
    m.send(iq);
  }

  /**
   * An error from the app server: the device is gone, the node unknown or the server refuses
   * (XEP-0357 §8), so the registration is removed. Only a `wait` error (try later) keeps it.
   */
  function appServerRefused(flight: InFlight, stanza: Element): void {
    const condition = errorCondition(stanza) ?? "undefined-condition";
    const type = stanza.getChild("error")?.attrs.type;
    if (type === "wait") {
      m.log.info("Push app server {service} asked to wait ({condition})", {
        service: flight.service,
        condition,
      });
      return;
    }
    if (removeRegistration(flight.user, flight.service, flight.node)) {
      m.metric("push.disabled").inc();
      m.log.info(
        "Push registration {service} {node} of {user} removed: the app server answered {condition}",
        { service: flight.service, node: flight.node, user: flight.user, condition },
      );
    }
  }
}
