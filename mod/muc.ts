// XEP-0045 multi-user chat as a service Lilt hosts itself: load it on a `[[component]]`
// (`conference.HOST`, modules = ["disco", "muc"]). The rooms and their logic live in mod/muc/;
// this file wires presence, messages and iqs, disco, and the service's policy and limits.

import type { OptionSpec } from "../core/config_schema.ts";
import type { StanzaEvent } from "../core/hosts.ts";
import { type JID, tryParseJid } from "../core/jid.ts";
import type { ModuleAPI } from "../core/modules.ts";
import type { Element } from "../core/xml/element.ts";
import { errorReply, reply } from "../core/xml/stanza.ts";
import type { ConfigLimits } from "./muc/config.ts";
import { handleAdminQuery, NS_MUC_ADMIN } from "./muc/admin.ts";
import { MucError } from "./muc/errors.ts";
import { handleOwnerQuery, NS_MUC_OWNER } from "./muc/owner.ts";
import { IqRelay } from "./muc/iq_relay.ts";
import { NS_MUC_REQUEST } from "./muc/voice.ts";
import { NS_MUC, type Room } from "./muc/room.ts";
import { MucService } from "./muc/service.ts";
import { MUC_MIGRATIONS, MucStore } from "./muc/storage.ts";
import { NS_MODERATE, NS_OCCUPANT_ID, NS_SID, RoomArchive } from "./muc/archive.ts";
import { ARCHIVE_FLUSH_DELAY_MS } from "../core/storage/archive_store.ts";
import {
  answerArchiveQuery,
  answering,
  archiveMetadata,
  NS_MAM,
  NS_MAM_EXTENDED,
  queryForm,
  RequestError,
} from "./mam.ts";
import { AFFILIATION_RANK, NS_MUC_USER } from "./muc/room.ts";
import { MucOperator } from "./muc/operator.ts";
import { MUC_COMMANDS } from "./muc/shell.ts";
import {
  handleRegisterQuery,
  NS_REGISTER,
  RESERVED_NICK_NODE,
  reservedNickInfo,
} from "./muc/register.ts";
import { handleVcardQuery, NS_VCARD, RoomAvatars } from "./muc/avatar.ts";

const NS_INFO = "http://jabber.org/protocol/disco#info";
const NS_ITEMS = "http://jabber.org/protocol/disco#items";
const NS_DATA = "jabber:x:data";
const NS_PING = "urn:xmpp:ping";
/** The most messages a room may keep for newcomers. */
export const MAX_HISTORY = 100;
/** Results per page of a room archive query without RSM <max/>, and the most a page holds. */
const ARCHIVE_PAGE = 50;
const ARCHIVE_PAGE_CAP = 250;

/** One line for module listings. */
export const description = "XEP-0045 multi-user chat service (load on a [[component]])";

/** The module's own tables. */
export const migrations = MUC_MIGRATIONS;
/** The module's schema name (its migrations are numbered on their own). */
export const schema = "muc";

/** Options the module reads. */
export const options: Record<string, OptionSpec> = {
  muc_room_creation: {
    type: "enum",
    default: "local",
    values: ["local", "admins", "anyone"],
    scope: "host",
    description:
      "Who may create rooms: accounts of this server's hosts (local), their admins, or anyone",
  },
  muc_max_rooms: {
    type: "integer",
    default: 10_000,
    min: 1,
    max: 10_000_000,
    scope: "host",
    description: "Most rooms one MUC service may hold",
  },
  muc_max_occupants: {
    type: "integer",
    default: 200,
    min: 1,
    max: 100_000,
    scope: "host",
    description: "Most occupants a room may have (the default and the cap of its maxusers)",
  },
  muc_log_by_default: {
    type: "boolean",
    default: true,
    scope: "host",
    description:
      "Whether new rooms archive their messages (XEP-0313; owners change it with muc#roomconfig_enablearchiving)",
  },
  muc_joins_per_minute: {
    type: "integer",
    default: 30,
    min: 0,
    max: 100_000,
    scope: "host",
    description: "Most room joins one user may attempt per minute (0: no limit)",
  },
};

/** Loads the multi-user chat service on a component. */
export default function muc(m: ModuleAPI): void {
  // Rooms are addresses of a service domain; on a host they would shadow accounts.
  if (m.host.kind === "local") {
    m.log.debug("Module muc serves a [[component]] (e.g. conference.{host}); idle on host {host}", {
      host: m.domain,
    });
    return;
  }
  const creation = m.option<"local" | "admins" | "anyone">("muc_room_creation");
  const limits: ConfigLimits = {
    maxOccupants: m.option<number>("muc_max_occupants"),
    maxHistory: MAX_HISTORY,
    archiveByDefault: m.option<boolean>("muc_log_by_default"),
  };
  const isLocalAccount = (jid: JID) =>
    jid.local !== undefined && m.server.hosts.get(jid.domain)?.kind === "local";
  const isAdmin = (jid: JID) => {
    const bare = jid.bare.toString();
    if (jid.local === undefined) return false;
    if (m.hostOption("admins").includes(bare)) return true;
    return m.server.hosts.get(jid.domain)?.kind === "local" &&
      m.server.config.hostOption(jid.domain, "admins").includes(bare);
  };
  // Room avatars (XEP-0486): each room's vCard, stored by the service.
  const avatars = new RoomAvatars(m.openStore<string>("muc_room_vcards", "keyval"));
  const service = new MucService({
    domain: m.domain,
    store: new MucStore(m.database),
    limits,
    maxRooms: m.option<number>("muc_max_rooms"),
    mayCreate: (actor) =>
      creation === "anyone" || (creation === "local" && isLocalAccount(actor)) || isAdmin(actor),
    send: (stanza) => m.send(stanza),
    joinsPerMinute: m.option<number>("muc_joins_per_minute"),
    // Every room's messages, owned by the room's node; relayed copies exist, so the write may
    // wait ARCHIVE_FLUSH_DELAY_MS and share a transaction.
    archive: new RoomArchive(
      m.openStore("muc", "archive", { writeBehindMs: ARCHIVE_FLUSH_DELAY_MS }),
      m.openStore<string>("muc_occupant_id_secrets", "keyval"),
    ),
    onForget: (room) => avatars.forget(room),
  });

  // The admin shell's `muc` section acts on rooms through this service.
  m.provide("muc", new MucOperator(service));
  m.shellCommands(MUC_COMMANDS);

  m.addIdentity("conference", "text", "Chatrooms");
  m.addFeature(NS_MUC);
  m.addFeature(NS_VCARD);

  const sender = (stanza: Element) => tryParseJid(stanza.attrs.from ?? "");
  const target = (stanza: Element) => tryParseJid(stanza.attrs.to ?? "");
  const noRoom = (stanza: Element, origin: StanzaEvent["origin"]) => {
    if (stanza.attrs.type === "error" || stanza.attrs.type === "result") return;
    origin.send(errorReply(stanza, "item-not-found", { text: "No such room on this service" }));
  };

  const presence = ({ stanza }: StanzaEvent) => {
    const from = sender(stanza);
    const to = target(stanza);
    if (!from || !to) return true;
    service.handlePresence(stanza, from, to);
    return true;
  };
  m.hook("presence/bare", presence);
  m.hook("presence/full", presence);

  m.hook("message/bare", ({ stanza, origin }: StanzaEvent) => {
    const from = sender(stanza);
    const room = service.room(target(stanza)?.local ?? "");
    if (!from || !room) {
      noRoom(stanza, origin);
      return true;
    }
    service.handleRoomMessage(stanza, from, room);
    return true;
  });
  m.hook("message/full", ({ stanza, origin }: StanzaEvent) => {
    const from = sender(stanza);
    const to = target(stanza);
    const room = service.room(to?.local ?? "");
    if (!from || !to?.resource || !room) {
      noRoom(stanza, origin);
      return true;
    }
    service.handlePrivateMessage(stanza, from, room, to.resource);
    return true;
  });

  // Iqs to occupants: XEP-0410 self-pings are answered by the service (a client that is not
  // joined learns it from not-acceptable); other queries go to the target occupant (§7.7).
  const relay = new IqRelay();
  m.hook("iq/full", ({ stanza, origin }: StanzaEvent) => {
    const type = stanza.attrs.type;
    if (type !== "get" && type !== "set") {
      const answer = relay.answer(stanza);
      if (answer) m.send(answer);
      return true;
    }
    const to = target(stanza);
    const room = service.room(to?.local ?? "");
    const from = sender(stanza);
    if (!room || !to?.resource || !from) {
      noRoom(stanza, origin);
      return true;
    }
    const asker = room.bySession.get(from.toString());
    if (!asker) {
      origin.send(errorReply(stanza, "not-acceptable", { text: "You are not in this room" }));
      return true;
    }
    const targetOccupant = room.occupants.get(to.resource);
    if (!targetOccupant) {
      origin.send(errorReply(stanza, "item-not-found", { text: "No such occupant" }));
      return true;
    }
    if (asker.nick === to.resource && stanza.getChild("ping", NS_PING) && type === "get") {
      origin.send(reply(stanza));
      return true;
    }
    m.send(relay.forward(room, stanza, asker, from.toString(), targetOccupant));
    return true;
  });
  // A room that does not exist answers nothing but item-not-found.
  m.hook("iq/bare", ({ stanza, origin }: StanzaEvent) => {
    if (service.room(target(stanza)?.local ?? "")) return false;
    noRoom(stanza, origin);
    return true;
  });

  /** Runs a room request, answering a MucError with its error reply. */
  const answer = (event: StanzaEvent, handle: (room: Room, actor: JID) => Element): true => {
    const { stanza, origin } = event;
    const room = service.room(target(stanza)?.local ?? "");
    const actor = sender(stanza);
    if (!room || !actor) {
      noRoom(stanza, origin);
      return true;
    }
    try {
      origin.send(handle(room, actor));
    } catch (error) {
      if (!(error instanceof MucError)) throw error;
      origin.send(errorReply(stanza, error.condition, { type: error.type, text: error.message }));
    }
    return true;
  };

  // The owner's configuration form and room destruction (§10).
  const owner = (event: StanzaEvent) =>
    answer(event, (room, actor) => handleOwnerQuery(service, room, event.stanza, actor));
  m.hook(`iq-get/bare/${NS_MUC_OWNER}:query`, owner);
  m.hook(`iq-set/bare/${NS_MUC_OWNER}:query`, owner);

  // Roles and affiliations: kick, ban, voice, membership, admins, owners (§8, §9, §10.3–10.7).
  const admin = (event: StanzaEvent) =>
    answer(event, (room, actor) => handleAdminQuery(service, room, event.stanza, actor));
  m.hook(`iq-get/bare/${NS_MUC_ADMIN}:query`, admin);
  m.hook(`iq-set/bare/${NS_MUC_ADMIN}:query`, admin);

  // Registration with a room and reserved nicks (§7.10).
  const register = (event: StanzaEvent) =>
    answer(event, (room, actor) => handleRegisterQuery(service, room, event.stanza, actor));
  m.hook(`iq-get/bare/${NS_REGISTER}:query`, register);
  m.hook(`iq-set/bare/${NS_REGISTER}:query`, register);

  // The room's vCard, which carries its avatar (XEP-0486): anyone reads, owners set.
  const vcard = (event: StanzaEvent) =>
    answer(
      event,
      (room, actor) =>
        handleVcardQuery(avatars, room, event.stanza, actor, { send: (s) => m.send(s) }),
    );
  m.hook(`iq-get/bare/${NS_VCARD}:vCard`, vcard);
  m.hook(`iq-set/bare/${NS_VCARD}:vCard`, vcard);

  // The room's archive (XEP-0313 §5.1.2): members-only rooms show it to members and above,
  // other rooms to their occupants and to anyone when public; banned users never.
  const archiveReader = (stanza: Element) => {
    const room = service.room(target(stanza)?.local ?? "");
    const actor = sender(stanza);
    if (!room || !actor) throw new RequestError("item-not-found", "No such room on this service");
    if (!service.archives(room)) {
      throw new RequestError("service-unavailable", "This room does not archive its messages");
    }
    const rank = AFFILIATION_RANK[room.affiliation(actor.bare.toString())];
    const occupant = room.bySession.get(actor.toString());
    const allowed = rank > AFFILIATION_RANK.outcast &&
      (room.config.membersOnly
        ? rank >= AFFILIATION_RANK.member
        : occupant !== undefined || rank >= AFFILIATION_RANK.member || room.config.public);
    if (!allowed) {
      throw new RequestError(
        "forbidden",
        room.config.membersOnly
          ? "Only members may read this room's archive"
          : "Only occupants may read this room's archive",
      );
    }
    return { room, actor, seesJids: room.seesJids(occupant) };
  };
  m.hook(
    `iq-get/bare/${NS_MAM}:query`,
    answering(({ stanza, origin }) => {
      archiveReader(stanza);
      const answer = reply(stanza);
      answer.c("query", { xmlns: NS_MAM }).append(queryForm());
      origin.send(answer);
    }),
  );
  m.hook(
    `iq-get/bare/${NS_MAM}:metadata`,
    answering(({ stanza, origin }) => {
      const { room } = archiveReader(stanza);
      origin.send(archiveMetadata(stanza, service.archive!.items, room.local));
    }),
  );
  m.hook(
    `iq-set/bare/${NS_MAM}:query`,
    answering(({ stanza, origin }) => {
      const { room, actor, seesJids } = archiveReader(stanza);
      const archive = service.archive!;
      origin.send(answerArchiveQuery(stanza, {
        archive: archive.items,
        user: room.local,
        defaultMax: ARCHIVE_PAGE,
        pageCap: ARCHIVE_PAGE_CAP,
        send: (message) => origin.send(message),
        result: (item) => {
          const read = archive.read(item);
          if (!read) {
            m.log.error("Skipping unreadable archived message {id} of room {room}", {
              id: item.id,
              room: room.jid,
            });
            return undefined;
          }
          const message = read.message;
          if (!seesJids) {
            message.children = message.children.filter((child) =>
              typeof child === "string" || child.name !== "x" || child.ns !== NS_MUC_USER
            );
          }
          return { from: room.jid, to: actor.toString(), message };
        },
      }));
    }),
  );

  // XEP-0425: a moderator retracts a message by the stanza-id the room gave it.
  m.hook(
    `iq-set/bare/${NS_MODERATE}:moderate`,
    (event: StanzaEvent) =>
      answer(event, (room, actor) => {
        const moderate = event.stanza.firstElement()!;
        const id = moderate.attrs.id;
        if (id === undefined || id === "") {
          throw new MucError("bad-request", "<moderate/> needs the id of the message to retract");
        }
        if (!moderate.getChild("retract", "urn:xmpp:message-retract:1")) {
          throw new MucError("bad-request", "Only retraction (<retract/>) is supported");
        }
        service.moderate(room, actor, id, moderate.getChildText("reason"));
        return reply(event.stanza);
      }),
  );

  // A room's disco#info (XEP-0045 §6.4) and items (§6.5).
  m.hook(`iq-get/bare/${NS_INFO}:query`, (event: StanzaEvent) =>
    answer(event, (room, actor) => {
      const node = event.stanza.firstElement()?.attrs.node;
      if (node === RESERVED_NICK_NODE) return reservedNickInfo(event.stanza, room, actor);
      if (node !== undefined) {
        throw new MucError("item-not-found", "Rooms have no disco nodes");
      }
      return roomInfo(event.stanza, room, service.archives(room), avatars.hashes(room));
    }), 10);
  m.hook(`iq-get/bare/${NS_ITEMS}:query`, (event: StanzaEvent) =>
    answer(event, () => {
      const result = reply(event.stanza);
      result.c("query", { xmlns: NS_ITEMS });
      return result;
    }), 10);

  // The service's items: its public rooms (§6.3), each named with its occupant count
  // ("lounge (3)").
  m.hook(`iq-get/host/${NS_ITEMS}:query`, ({ stanza, origin }: StanzaEvent) => {
    if (stanza.firstElement()?.attrs.node !== undefined) return false;
    const result = reply(stanza);
    const query = result.c("query", { xmlns: NS_ITEMS });
    for (const room of service.rooms()) {
      if (!room.config.public || room.locked) continue;
      query.c("item", {
        jid: room.jid,
        name: `${room.config.name || room.local} (${room.occupants.size})`,
      });
    }
    origin.send(result);
    return true;
  }, 10);
}

/** A room's disco#info: identity, the `muc_*` features of its configuration, muc#roominfo. */
function roomInfo(
  stanza: Element,
  room: Room,
  archives: boolean,
  avatarHashes: string[],
): Element {
  const result = reply(stanza);
  const query = result.c("query", { xmlns: NS_INFO });
  const config = room.config;
  query.c("identity", { category: "conference", type: "text", name: config.name || room.local });
  const features = [
    NS_MUC,
    `${NS_MUC}#self-ping-optimization`,
    config.public ? "muc_public" : "muc_hidden",
    config.persistent ? "muc_persistent" : "muc_temporary",
    config.membersOnly ? "muc_membersonly" : "muc_open",
    config.moderated ? "muc_moderated" : "muc_unmoderated",
    config.password !== "" ? "muc_passwordprotected" : "muc_unsecured",
    config.whois === "anyone" ? "muc_nonanonymous" : "muc_semianonymous",
    NS_OCCUPANT_ID,
    NS_MODERATE,
    NS_REGISTER,
    NS_VCARD,
    NS_MUC_REQUEST,
  ];
  if (archives) features.push(NS_MAM, NS_MAM_EXTENDED, NS_SID);
  for (const feature of features) query.c("feature", { var: feature });
  const form = query.c("x", { xmlns: NS_DATA, type: "result" });
  const field = (variable: string, value: string, type?: string) =>
    form.c("field", { var: variable, type }).c("value").t(value);
  field("FORM_TYPE", "http://jabber.org/protocol/muc#roominfo", "hidden");
  field("muc#roomconfig_roomname", config.name);
  field("muc#roominfo_description", config.description);
  field("muc#roominfo_occupants", String(room.occupants.size));
  field("muc#roominfo_subject", room.subject);
  field("muc#roominfo_subjectmod", config.changeSubject ? "1" : "0", "boolean");
  if (avatarHashes.length > 0) {
    // XEP-0486: present only when the room has an avatar.
    const hashes = form.c("field", { var: "muc#roominfo_avatarhash", type: "text-multi" });
    for (const hash of avatarHashes) hashes.c("value").t(hash);
  }
  return result;
}
