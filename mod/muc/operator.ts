// What the MUC module offers other code on its component as the `muc` service (the admin shell's
// `muc` section): reading rooms and acting on them as the service's operator, through the same
// room logic as an owner or moderator, so occupants see the same presences and status codes.

import { Element } from "../../core/xml/element.ts";
import { operatorSetAffiliation } from "./admin.ts";
import { NS_SID } from "./archive.ts";
import { defaultRoomConfig, type RoomConfig } from "./config.ts";
import { MucError } from "./errors.ts";
import { destroyRoom } from "./owner.ts";
import type { Affiliation, Role, Room } from "./room.ts";
import type { MucService } from "./service.ts";

/** One occupant as the operator sees it. */
export interface OccupantView {
  nick: string;
  role: Role;
  affiliation: Affiliation;
  /** The real bare JID. */
  jid: string;
  /** Each joined resource's full JID. */
  sessions: string[];
}

/** A room's state as the operator sees it. */
export interface RoomView {
  jid: string;
  config: RoomConfig;
  subject: string;
  /** The nick that set the subject, when an occupant did. */
  subjectBy: string | undefined;
  createdMs: number;
  locked: boolean;
  occupants: OccupantView[];
  /** Affiliations other than "none": bare JID, affiliation, reserved nick, reason. */
  affiliations: { jid: string; affiliation: Affiliation; nick?: string; reason?: string }[];
  /** Groupchat messages kept for newcomers. */
  historyLength: number;
}

/** What `createRoom` may set. */
export interface CreateRoomOptions {
  /** The bare JID of the room's owner (none: only the operator manages it). */
  owner?: string;
  /** Kept across restarts and when empty (default true). */
  persistent?: boolean;
}

/** What a destroyed room's occupants are told (XEP-0045 §10.9). */
export interface DestroyOptions {
  reason?: string;
  /** An alternate venue's room JID. */
  alternate?: string;
}

/**
 * The operator's view of one MUC service: rooms and actions on them. Refusals are MucErrors
 * (no such room, last owner, service full).
 */
export class MucOperator {
  readonly #service: MucService;

  constructor(service: MucService) {
    this.#service = service;
  }

  /** The service's address. */
  get domain(): string {
    return this.#service.domain;
  }

  /** The local parts of every room, sorted, with occupant counts. */
  rooms(): { room: string; jid: string; name: string; occupants: number; persistent: boolean }[] {
    return [...this.#service.rooms()].map((room) => ({
      room: room.local,
      jid: room.jid,
      name: room.config.name,
      occupants: room.occupants.size,
      persistent: room.config.persistent,
    })).sort((a, b) => a.room.localeCompare(b.room));
  }

  /**
   * True when two real bare JIDs are both occupants of one room of this service (the
   * `block_strangers` module lets such people message each other).
   */
  sharesRoom(a: string, b: string): boolean {
    for (const room of this.#service.rooms()) {
      let seenA = false;
      let seenB = false;
      for (const occupant of room.occupants.values()) {
        if (occupant.bare === a) seenA = true;
        if (occupant.bare === b) seenB = true;
        if (seenA && seenB) return true;
      }
    }
    return false;
  }

  /** A room's configuration, subject, occupants and affiliations. */
  room(local: string): RoomView {
    const room = this.#room(local);
    return {
      jid: room.jid,
      config: { ...room.config },
      subject: room.subject,
      subjectBy: room.subjectBy,
      createdMs: room.createdMs,
      locked: room.locked,
      occupants: [...room.occupants.values()].map((occupant) => ({
        nick: occupant.nick,
        role: occupant.role,
        affiliation: room.affiliation(occupant.bare),
        jid: occupant.bare,
        sessions: [...occupant.sessions.keys()],
      })).sort((a, b) => a.nick.localeCompare(b.nick)),
      affiliations: [...room.affiliations].map(([jid, record]) => ({
        jid,
        affiliation: record.affiliation,
        nick: record.nick,
        reason: record.reason,
      })).sort((a, b) => a.jid.localeCompare(b.jid)),
      historyLength: room.history.length,
    };
  }

  /** Creates an unlocked room (persistent unless told otherwise). */
  createRoom(local: string, options: CreateRoomOptions = {}): RoomView {
    const config = { ...defaultRoomConfig(this.#service.limits) };
    config.persistent = options.persistent ?? true;
    this.#service.createRoom(local, config, options.owner);
    return this.room(local);
  }

  /** Destroys a room: its occupants get unavailable with `<destroy/>` (§10.9). */
  destroyRoom(local: string, options: DestroyOptions = {}): void {
    const room = this.#room(local);
    const destroy = new Element("destroy", { jid: options.alternate });
    if (options.reason !== undefined) destroy.c("reason").t(options.reason);
    destroyRoom(this.#service, room, destroy);
  }

  /**
   * Sets a bare JID's affiliation ("none" removes it); its occupants get the new role or are
   * removed (banned: 301; no longer a member of a members-only room: 321). A room keeps at
   * least one owner.
   */
  setAffiliation(local: string, bare: string, affiliation: Affiliation, reason?: string): void {
    const room = this.#room(local);
    if (room.affiliation(bare) === "owner" && affiliation !== "owner") {
      const owners = [...room.affiliations.values()].filter((r) => r.affiliation === "owner");
      if (owners.length === 1) throw new MucError("conflict", "A room keeps at least one owner");
    }
    operatorSetAffiliation(this.#service, room, bare, affiliation, reason);
  }

  /** Kicks the occupant with this nick (status 307 to all, with the reason). */
  kick(local: string, nick: string, reason?: string): void {
    const room = this.#room(local);
    const occupant = room.occupants.get(nick);
    if (!occupant) throw new MucError("item-not-found", `No occupant '${nick}' in ${room.jid}`);
    occupant.role = "none";
    this.#service.expel(room, occupant, {
      type: "unavailable",
      role: "none",
      statuses: [307],
      reason,
    });
  }

  /**
   * Sends a groupchat message from the room's own JID to every occupant, archived (with its
   * stanza-id) or kept in the history like an occupant's message; returns how many resources it
   * went to.
   */
  say(local: string, body: string): number {
    const room = this.#room(local);
    const message = new Element("message", { from: room.jid, type: "groupchat" });
    message.c("body").t(body);
    const archive = this.#service.archives(room) ? this.#service.archive : undefined;
    if (archive) {
      const id = archive.append(room.local, message, room.jid, Date.now());
      message.c("stanza-id", { xmlns: NS_SID, id, by: room.jid });
    }
    let sent = 0;
    for (const full of room.bySession.keys()) {
      const copy = message.clone();
      copy.attrs.to = full;
      this.#service.send(copy);
      sent++;
    }
    if (!archive) room.remember(message, Date.now());
    return sent;
  }

  #room(local: string): Room {
    const room = this.#service.room(local);
    if (!room) {
      throw new MucError("item-not-found", `No room '${local}@${this.#service.domain}'`);
    }
    return room;
  }
}

declare module "../../core/modules.ts" {
  interface ModuleServices {
    muc: MucOperator;
  }
}
