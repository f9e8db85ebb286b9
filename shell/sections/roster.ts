// The `roster` section of the admin shell: show an account's stored roster, and subscribe or
// unsubscribe it to a contact as if the user had sent the presence stanza.

import { CommandError, type CommandSpec } from "../../core/admin_commands.ts";
import type { JID } from "../../core/jid.ts";
import type { AdminServer } from "../../core/admin_commands.ts";
import type { Session } from "../../core/sessions.ts";
import { Element } from "../../core/xml/element.ts";
import { errorCondition } from "../../core/xml/stanza.ts";
import { jidArg } from "./c2s.ts";

/** The account named by a JID argument: a local host and an existing account. */
function accountArg(server: AdminServer, text: string | undefined): JID {
  const jid = jidArg(text, "user JID");
  if (!jid.local || jid.resource !== undefined) {
    throw new CommandError(`'${text}' is not an account address (expected user@host)`);
  }
  const host = server.hosts.get(jid.domain);
  if (!host || host.kind !== "local") throw new CommandError(`No local host '${jid.domain}'`);
  if (!server.accounts.exists(jid.domain, jid.local)) {
    throw new CommandError(`No account '${jid.bareString()}'`);
  }
  return jid;
}

/** The fields of a stored roster entry this section shows (written by the roster module). */
interface RosterItem {
  name?: string;
  groups: string[];
  subscription: string;
  ask?: string;
  approved?: boolean;
  pendingIn?: boolean;
  hidden?: boolean;
}

function rosterStore(server: AdminServer, domain: string) {
  return server.storage.map<RosterItem>(domain, "roster");
}

function pendingOf(item: RosterItem): string {
  const parts = [];
  if (item.ask) parts.push("out");
  if (item.pendingIn) parts.push("in");
  if (item.approved) parts.push("pre-approved");
  return parts.join(",");
}

/**
 * The origin of a subscription stanza the operator sends on a user's behalf: it looks like
 * one of the user's client sessions to the router and the presence module (whose outbound
 * handling only acts for c2s origins), but it is not registered, so nothing is delivered to
 * it; an error the presence module answers with is kept for the command's reply.
 */
class OnBehalfOf implements Session {
  readonly id: string;
  readonly kind = "c2s" as const;
  readonly host: string;
  readonly jid: JID;
  readonly ip = "admin-shell";
  readonly secure = true;
  readonly authenticated = true;
  readonly connectedAt = Date.now();
  readonly lastActivity = Date.now();
  errors: Element[] = [];

  constructor(user: JID) {
    this.jid = user.bare;
    this.host = user.domain;
    this.id = `shell:${user.bareString()}`;
  }

  send(stanza: Element): void {
    if (stanza.attrs.type === "error") this.errors.push(stanza);
  }

  close(): void {}
}

function subscriptionCommand(name: "subscribe" | "unsubscribe", summary: string): CommandSpec {
  return {
    section: "roster",
    name,
    summary,
    args: [{ name: "jid", kind: "jid" }, { name: "contact", kind: "jid" }],
    run: ({ server }, [jid, contactText]) => {
      const user = accountArg(server, jid);
      const contact = jidArg(contactText, "contact JID").bare;
      if (contact.equals(user.bare)) throw new CommandError("A user cannot subscribe to itself");
      if (!server.modules.isLoaded(user.domain, "presence")) {
        throw new CommandError(`The presence module is not loaded on '${user.domain}'`);
      }
      const origin = new OnBehalfOf(user);
      const stanza = new Element("presence", {
        type: name,
        from: user.bareString(),
        to: contact.toString(),
      });
      server.route(stanza, origin);
      const error = origin.errors[0];
      if (error) {
        const text = error.getChild("error")?.getChildText("text");
        throw new CommandError(
          `Refused with ${errorCondition(error) ?? "an error"}${text ? `: ${text}` : ""}`,
        );
      }
      const item = rosterStore(server, user.domain).get(user.local!, contact.toString());
      const state = item && !item.hidden
        ? `${item.subscription}${item.ask ? " (pending out)" : ""}`
        : "not in the roster";
      return {
        message: `Sent ${name} from ${user.bareString()} to ${contact}; now ${state}`,
        data: { subscription: item?.subscription ?? "none", ask: item?.ask ?? null },
      };
    },
  };
}

/** The commands of the `roster` section. */
export function rosterCommands(): CommandSpec[] {
  return [
    {
      section: "roster",
      name: "show",
      summary: "Show an account's roster (pending requests from strangers included)",
      args: [{ name: "jid", kind: "jid" }],
      run: ({ server }, [jid]) => {
        const user = accountArg(server, jid);
        const items = rosterStore(server, user.domain).getAll(user.local!);
        const rows = [...items].map(([contact, item]) => [
          contact,
          item.name ?? "",
          item.hidden ? "-" : item.subscription,
          pendingOf(item),
          item.groups.join(", "),
        ]);
        return {
          table: { columns: ["contact", "name", "subscription", "pending", "groups"], rows },
        };
      },
    },
    subscriptionCommand("subscribe", "Ask for the contact's presence on the user's behalf"),
    subscriptionCommand("unsubscribe", "Cancel the user's subscription to the contact"),
  ];
}
