// The admin shell's `muc` section (like Prosody 13's `muc:*` commands): an operator lists and
// inspects the rooms of a MUC component and acts on them (create, destroy, affiliations, kick,
// a message from the room) through the module's `muc` service, so occupants see the usual effects.

import { type AdminServer, CommandError, type CommandSpec } from "../../core/admin_commands.ts";
import { tryParseJid } from "../../core/jid.ts";
import { hostService } from "../../core/modules.ts";
import { MucError } from "./errors.ts";
import type { MucOperator } from "./operator.ts";
import type { Affiliation } from "./room.ts";

const AFFILIATIONS: readonly Affiliation[] = ["owner", "admin", "member", "outcast", "none"];

/** The `muc` service of a component, or a CommandError saying why there is none. */
function serviceAt(server: AdminServer, domain: string): MucOperator {
  const host = server.hosts.get(domain);
  const service = host === undefined ? undefined : hostService(host, "muc");
  if (!service) throw new CommandError(`No MUC service at '${domain}'`);
  return service;
}

/** A room argument (`room@service`): its service and local part. */
function roomAt(server: AdminServer, address: string | undefined): [MucOperator, string] {
  const jid = tryParseJid(address ?? "");
  if (!jid || jid.local === undefined || jid.resource !== undefined) {
    throw new CommandError(`Expected a room JID (room@service), found '${address ?? ""}'`);
  }
  return [serviceAt(server, jid.domain), jid.local];
}

/** Runs an operation on the service; a MucError becomes a CommandError. */
function operated<T>(fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    if (!(error instanceof MucError)) throw error;
    throw new CommandError(error.message);
  }
}

/** A bare JID argument, or a CommandError. */
function bareJid(value: string | undefined, what: string): string {
  const jid = tryParseJid(value ?? "");
  if (!jid || jid.local === undefined) {
    throw new CommandError(`Expected ${what} (user@host), found '${value ?? ""}'`);
  }
  return jid.bareString();
}

/** Optional free text: undefined when absent or empty. */
function optionalText(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === "" ? undefined : value;
}

const ROOM_ARG = { name: "room", kind: "jid" } as const;

/** The `muc` section of the admin shell; mod/muc.ts registers it. */
export const MUC_COMMANDS: CommandSpec[] = [
  {
    section: "muc",
    name: "list",
    summary: "The rooms of a MUC service (or of every one) with their occupant counts",
    args: [{ name: "service", kind: "host", optional: true }],
    run: ({ server }, [only]) => {
      const services: MucOperator[] = [];
      if (only !== undefined) services.push(serviceAt(server, only));
      else {
        for (const host of server.hosts.values()) {
          const service = hostService(host, "muc");
          if (service) services.push(service);
        }
      }
      const rooms = services.flatMap((service) =>
        service.rooms().map((room) => ({
          jid: room.jid,
          name: room.name,
          occupants: room.occupants,
          persistent: room.persistent,
        }))
      ).sort((a, b) => a.jid.localeCompare(b.jid));
      return {
        table: {
          columns: ["room", "name", "occupants", "persistent"],
          rows: rooms.map((r) => [r.jid, r.name, r.occupants, r.persistent]),
        },
        data: rooms,
      };
    },
  },
  {
    section: "muc",
    name: "room",
    summary: "A room: configuration, subject, occupants (roles, affiliations), affiliations",
    args: [ROOM_ARG],
    run: ({ server }, [address]) => {
      const [service, local] = roomAt(server, address);
      const view = operated(() => service.room(local));
      const { password, ...shown } = view.config;
      const config = { ...shown, passwordProtected: password !== "" };
      const lines = [
        `Room ${view.jid}${view.locked ? " (locked, awaiting configuration)" : ""}`,
        `Created ${new Date(view.createdMs).toISOString()}`,
        `Subject: ${view.subject === "" ? "(none)" : view.subject}` +
        (view.subjectBy !== undefined ? ` (set by ${view.subjectBy})` : ""),
        "Configuration:",
        ...Object.entries(config).map(([key, value]) => `  ${key}: ${value}`),
        `Occupants (${view.occupants.length}):`,
        ...view.occupants.map((o) => `  ${o.nick}: ${o.role}, ${o.affiliation} (${o.jid})`),
        `Affiliations (${view.affiliations.length}):`,
        ...view.affiliations.map((a) =>
          `  ${a.jid}: ${a.affiliation}${a.nick ? ` (nick ${a.nick})` : ""}` +
          (a.reason ? ` reason: ${a.reason}` : "")
        ),
      ];
      return {
        message: lines.join("\n"),
        data: {
          jid: view.jid,
          created: new Date(view.createdMs).toISOString(),
          locked: view.locked,
          subject: view.subject,
          subject_by: view.subjectBy ?? null,
          config,
          occupants: view.occupants,
          affiliations: view.affiliations,
        },
      };
    },
  },
  {
    section: "muc",
    name: "occupants",
    summary: "The occupants of a room with their roles and affiliations",
    args: [ROOM_ARG],
    run: ({ server }, [address]) => {
      const [service, local] = roomAt(server, address);
      const { occupants } = operated(() => service.room(local));
      return {
        table: {
          columns: ["nick", "role", "affiliation", "jid"],
          rows: occupants.map((o) => [o.nick, o.role, o.affiliation, o.jid]),
        },
        data: occupants,
      };
    },
  },
  {
    section: "muc",
    name: "affiliations",
    summary: "The affiliations of a room (owners, admins, members, outcasts)",
    args: [ROOM_ARG],
    run: ({ server }, [address]) => {
      const [service, local] = roomAt(server, address);
      const { affiliations } = operated(() => service.room(local));
      return {
        table: {
          columns: ["jid", "affiliation", "nick", "reason"],
          rows: affiliations.map((a) => [a.jid, a.affiliation, a.nick ?? "", a.reason ?? ""]),
        },
        data: affiliations,
      };
    },
  },
  {
    section: "muc",
    name: "create",
    summary: "Create a persistent, unlocked room, with an optional owner",
    args: [ROOM_ARG, { name: "owner", kind: "jid", optional: true }],
    run: ({ server }, [address, owner]) => {
      const [service, local] = roomAt(server, address);
      const ownerJid = owner === undefined ? undefined : bareJid(owner, "an owner's JID");
      const view = operated(() => service.createRoom(local, { owner: ownerJid }));
      return {
        message: `Created room ${view.jid}` + (ownerJid ? ` owned by ${ownerJid}` : ""),
        data: { jid: view.jid, owner: ownerJid ?? null, persistent: view.config.persistent },
      };
    },
  },
  {
    section: "muc",
    name: "destroy",
    summary: "Destroy a room; occupants are told, with an alternate venue (or -) and a reason",
    args: [ROOM_ARG, { name: "alternate", kind: "jid", optional: true }, {
      name: "reason",
      kind: "text",
      optional: true,
      rest: true,
    }],
    run: ({ server }, [address, alternate, reason]) => {
      const [service, local] = roomAt(server, address);
      let venue: string | undefined;
      if (alternate !== undefined && alternate !== "-") {
        const jid = tryParseJid(alternate);
        if (!jid || jid.local === undefined || jid.resource !== undefined) {
          throw new CommandError(
            `Expected an alternate room JID (room@service) or -, found '${alternate}'`,
          );
        }
        venue = jid.toString();
      }
      const why = optionalText(reason);
      const occupants = operated(() => service.room(local)).occupants.length;
      operated(() => service.destroyRoom(local, { alternate: venue, reason: why }));
      const jid = `${local}@${service.domain}`;
      return {
        message: `Destroyed room ${jid} (${occupants} occupant(s) told)`,
        data: { jid, alternate: venue ?? null, reason: why ?? null, occupants },
      };
    },
  },
  {
    section: "muc",
    name: "set_affiliation",
    summary: "Set a JID's affiliation with a room (owner, admin, member, outcast, none)",
    args: [ROOM_ARG, { name: "jid", kind: "jid" }, { name: "affiliation", kind: "string" }, {
      name: "reason",
      kind: "text",
      optional: true,
      rest: true,
    }],
    run: ({ server }, [address, who, affiliation, reason]) => {
      const [service, local] = roomAt(server, address);
      const jid = bareJid(who, "a JID");
      if (!AFFILIATIONS.includes(affiliation as Affiliation)) {
        throw new CommandError(
          `Expected an affiliation (${AFFILIATIONS.join(", ")}), found '${affiliation ?? ""}'`,
        );
      }
      const why = optionalText(reason);
      operated(() => service.setAffiliation(local, jid, affiliation as Affiliation, why));
      const room = `${local}@${service.domain}`;
      return {
        message: `${jid} is now ${affiliation} of ${room}`,
        data: { room, jid, affiliation },
      };
    },
  },
  {
    section: "muc",
    name: "kick",
    summary: "Kick an occupant by nick, with an optional reason (status 307)",
    args: [ROOM_ARG, { name: "nick", kind: "string" }, {
      name: "reason",
      kind: "text",
      optional: true,
      rest: true,
    }],
    run: ({ server }, [address, nick, reason]) => {
      const [service, local] = roomAt(server, address);
      if (nick === undefined || nick === "") throw new CommandError("Expected a nick");
      const why = optionalText(reason);
      operated(() => service.kick(local, nick, why));
      const room = `${local}@${service.domain}`;
      return {
        message: `Kicked ${nick} from ${room}`,
        data: { room, nick, reason: why ?? null },
      };
    },
  },
  {
    section: "muc",
    name: "say",
    summary: "Send a groupchat message from the room itself to its occupants",
    args: [ROOM_ARG, { name: "text", kind: "text", rest: true }],
    run: ({ server }, [address, text]) => {
      const [service, local] = roomAt(server, address);
      if (text === undefined || text.trim() === "") {
        throw new CommandError("Expected the message text");
      }
      const delivered = operated(() => service.say(local, text));
      const room = `${local}@${service.domain}`;
      return {
        message: `Sent to ${delivered} occupant resource(s) of ${room}`,
        data: { room, delivered },
      };
    },
  },
];
