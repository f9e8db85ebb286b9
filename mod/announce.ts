// Server announcements (Prosody's mod_announce convention): a message to HOST/announce/online
// from a user with `lilt:announce` goes to every available session; the admin shell adds
// `announce online|all|role`, where `all` also stores the message for accounts not online.

import { type CommandContext, CommandError, type CommandSpec } from "../core/admin_commands.ts";
import { roleModelFor } from "../core/auth/roles.ts";
import type { OptionSpec } from "../core/config_schema.ts";
import type { StanzaEvent } from "../core/hosts.ts";
import { tryParseJid } from "../core/jid.ts";
import type { ModuleAPI } from "../core/modules.ts";
import type { Session } from "../core/sessions.ts";
import type { ServerContext } from "../core/context.ts";
import { Element } from "../core/xml/element.ts";
import { serialize } from "../core/xml/serializer.ts";
import { errorReply, isError } from "../core/xml/stanza.ts";
import { presenceOf } from "../core/presence_state.ts";

const NS_DELAY = "urn:xmpp:delay";
const ANNOUNCE_ONLINE = "announce/online";

/** One line for module listings. */
export const description =
  "Announcements to a host's users: HOST/announce/online and the `announce` shell section";

/** Options the module reads (none). */
export const options: Record<string, OptionSpec> = {};

/** What an announcement carries. */
interface Announcement {
  body: string;
  subject?: string;
}

/** The available client sessions of a host (RFC 6121 "available resources"). */
function availableSessions(server: ServerContext, host: string): Session[] {
  return server.sessions.all().filter((s) =>
    s.kind === "c2s" && s.host === host && s.jid?.local !== undefined && presenceOf(s).available
  );
}

function headline(host: string, to: string, announcement: Announcement): Element {
  const message = new Element("message", { from: host, to, type: "headline" });
  if (announcement.subject !== undefined) message.c("subject").t(announcement.subject);
  message.c("body").t(announcement.body);
  return message;
}

/** Sends the announcement to sessions; returns how many got it. */
function sendTo(host: string, sessions: Session[], announcement: Announcement): number {
  for (const session of sessions) {
    session.send(headline(host, session.jid!.toString(), announcement));
  }
  return sessions.length;
}

/** Stores the announcement in the offline archive of each user, as mod/offline.ts does. */
function storeOffline(
  server: ServerContext,
  host: string,
  users: string[],
  announcement: Announcement,
): void {
  const store = server.storage.archive(host, "offline");
  const when = Date.now();
  for (const user of users) {
    const message = headline(host, `${user}@${host}`, announcement);
    message.c("delay", { xmlns: NS_DELAY, from: host, stamp: new Date(when).toISOString() })
      .t("Offline Storage");
    store.append(user, { when, with: host, type: "headline", payload: serialize(message) });
  }
}

function localHost(ctx: CommandContext, host: string): string {
  const found = ctx.server.hosts.get(host);
  if (!found || found.kind !== "local") {
    throw new CommandError(
      `Unknown host '${host}' (hosts: ${[...ctx.server.hosts.keys()].join(", ")})`,
    );
  }
  return host;
}

function text(words: string[]): Announcement {
  const body = words.join(" ").trim();
  if (body === "") throw new CommandError("Expected the announcement text, found nothing");
  return { body };
}

function shellCommands(): CommandSpec[] {
  return [
    {
      section: "announce",
      name: "online",
      summary: "Sends a message to every user online on a host",
      args: [{ name: "host", kind: "host" }, { name: "text", kind: "text", rest: true }],
      run(ctx, [host, ...words]) {
        const domain = localHost(ctx, host ?? "");
        const sent = sendTo(domain, availableSessions(ctx.server, domain), text(words));
        return { message: `Sent to ${sent} sessions`, data: { sent } };
      },
    },
    {
      section: "announce",
      name: "all",
      summary: "Sends a message to every user of a host, stored for those not online",
      args: [{ name: "host", kind: "host" }, { name: "text", kind: "text", rest: true }],
      run(ctx, [host, ...words]) {
        const domain = localHost(ctx, host ?? "");
        const announcement = text(words);
        const sessions = availableSessions(ctx.server, domain);
        const sent = sendTo(domain, sessions, announcement);
        const online = new Set(sessions.map((s) => s.jid!.local!));
        const offline = ctx.server.accounts.list(domain).filter((user) => !online.has(user));
        storeOffline(ctx.server, domain, offline, announcement);
        return {
          message: `Sent to ${sent} sessions, stored for ${offline.length} offline users`,
          data: { sent, stored: offline.length },
        };
      },
    },
    {
      section: "announce",
      name: "role",
      summary: "Sends a message to the users online on a host who have a role",
      args: [
        { name: "host", kind: "host" },
        { name: "role", kind: "role" },
        { name: "text", kind: "text", rest: true },
      ],
      run(ctx, [host, role, ...words]) {
        const domain = localHost(ctx, host ?? "");
        const roles = roleModelFor(ctx.server, domain);
        if (!roles.has(role ?? "")) {
          throw new CommandError(
            `Unknown role '${role}' on ${domain} (roles: ${
              roles.roles().map((r) => r.name).join(", ")
            })`,
          );
        }
        const sessions = availableSessions(ctx.server, domain)
          .filter((s) => roles.roleOf(s.jid!) === role);
        const sent = sendTo(domain, sessions, text(words));
        return { message: `Sent to ${sent} sessions`, data: { sent } };
      },
    },
  ];
}

/** Loads announcements on a host. */
export default function announce(m: ModuleAPI): void {
  // Fail at load, not at the first announcement, when the role options are wrong.
  roleModelFor(m.server, m.domain);

  m.hook("message/host", ({ stanza, origin }: StanzaEvent) => {
    const to = tryParseJid(stanza.attrs.to ?? "");
    if (to?.resource !== ANNOUNCE_ONLINE || to.local !== undefined) return false;
    if (isError(stanza)) return true;
    const from = tryParseJid(stanza.attrs.from ?? "");
    const local = origin.kind === "c2s" && from?.local !== undefined && from.domain === m.domain;
    if (!local || !m.may("lilt:announce", from)) {
      origin.send(errorReply(stanza, "forbidden", {
        text: "Only administrators may send announcements",
      }));
      return true;
    }
    const body = stanza.getChildText("body");
    if (body === undefined || body.trim() === "") {
      origin.send(errorReply(stanza, "bad-request", { text: "An announcement needs a body" }));
      return true;
    }
    const subject = stanza.getChildText("subject");
    const sent = sendTo(m.domain, availableSessions(m.server, m.domain), { body, subject });
    m.log.info("{from} announced to {sent} sessions on {host}", {
      from: from.bareString(),
      sent,
      host: m.domain,
    });
    return true;
  });

  m.shellCommands(shellCommands());
}
