// The XEP-0045 service of one MUC address: its rooms, and what each presence and message sent
// to a room or an occupant does (join, nick change, leave, groupchat, subject, private
// messages). Every refusal is a MucError the module answers; stanzas go out through `send`.

import type { JID } from "../../core/jid.ts";
import { Element } from "../../core/xml/element.ts";
import { errorReply, isError } from "../../core/xml/stanza.ts";
import { type ConfigLimits, defaultRoomConfig, type RoomConfig } from "./config.ts";
import { MucError } from "./errors.ts";
import { NS_MODERATE, NS_OCCUPANT_ID, NS_RETRACT, NS_SID, type RoomArchive } from "./archive.ts";
import {
  AFFILIATION_RANK,
  type HistoryRequest,
  NS_DELAY,
  NS_MUC,
  NS_MUC_USER,
  type Occupant,
  occupantPresence,
  type PresenceOptions,
  Room,
} from "./room.ts";
import type { AffiliationRecord, MucStore } from "./storage.ts";
import { handleInvitations } from "./invite.ts";
import { handleVoiceForm, requestForm } from "./voice.ts";

/** What a MUC service needs from the server around it. */
export interface MucServiceOptions {
  /** The service's address (e.g. `conference.example.org`). */
  domain: string;
  store: MucStore;
  limits: ConfigLimits;
  /** Most rooms the service holds (persistent and temporary). */
  maxRooms: number;
  /** Whether this user may create a room (`muc_room_creation`). */
  mayCreate(actor: JID): boolean;
  /** Routes a stanza from the service or one of its rooms. */
  send(stanza: Element): void;
  /** Most joins one user may make per minute over all rooms (0: no limit). */
  joinsPerMinute?: number;
  /** The clock (ms since the epoch); tests may pass their own. */
  now?: () => number;
  /** The rooms' archive and occupant-id secrets (XEP-0313, XEP-0359, XEP-0421). */
  archive?: RoomArchive;
  /** Called when a room is gone for good, to drop what other parts keep for it (its vCard). */
  onForget?(room: Room): void;
}

/** The rooms of one MUC service and the handling of stanzas sent to them. */
export class MucService {
  readonly domain: string;
  readonly limits: ConfigLimits;
  #options: MucServiceOptions;
  #rooms = new Map<string, Room>();
  /** Recent join times (ms) per bare JID, for the join rate limit. */
  #recentJoins = new Map<string, number[]>();

  constructor(options: MucServiceOptions) {
    this.domain = options.domain;
    this.limits = options.limits;
    this.#options = options;
    for (const stored of options.store.rooms(options.domain)) {
      const room = new Room(
        `${stored.room}@${options.domain}`,
        { ...defaultRoomConfig(options.limits), ...stored.config },
        stored.createdMs,
        stored.affiliations,
      );
      room.subject = stored.subject;
      room.subjectBy = stored.subjectBy;
      this.#rooms.set(stored.room, room);
    }
  }

  /** The room with this local part, if it exists. */
  room(local: string): Room | undefined {
    return this.#rooms.get(local);
  }

  /** Every room of the service. */
  rooms(): Iterable<Room> {
    return this.#rooms.values();
  }

  #now(): number {
    return this.#options.now?.() ?? Date.now();
  }

  /**
   * Creates an unlocked room on the operator's authority (the admin shell), with `owner` as its
   * owner when given; refuses a room that exists or one beyond `maxRooms`.
   */
  createRoom(local: string, config: RoomConfig, owner?: string): Room {
    if (this.#rooms.has(local)) {
      throw new MucError("conflict", `Room '${local}@${this.domain}' already exists`);
    }
    if (this.#rooms.size >= this.#options.maxRooms) {
      throw new MucError("resource-constraint", "This service holds as many rooms as it may");
    }
    const room = new Room(`${local}@${this.domain}`, config, this.#now());
    if (owner !== undefined) room.affiliations.set(owner, { affiliation: "owner" });
    this.#rooms.set(local, room);
    this.persist(room);
    return room;
  }

  /** Writes a persistent room's state (configuration, subject, affiliations). */
  persist(room: Room): void {
    if (!room.config.persistent) return;
    this.#options.store.saveRoom(this.domain, {
      room: room.local,
      config: room.config,
      subject: room.subject,
      subjectBy: room.subjectBy,
      createdMs: room.createdMs,
      affiliations: room.affiliations,
    });
  }

  /** Sets (or with `undefined` removes) a bare JID's affiliation, stored if the room is kept. */
  setAffiliation(room: Room, bare: string, record: AffiliationRecord | undefined): void {
    if (record) room.affiliations.set(bare, record);
    else room.affiliations.delete(bare);
    if (room.config.persistent) {
      this.#options.store.setAffiliation(this.domain, room.local, bare, record);
    }
  }

  /** Forgets the stored state of a room that is no longer persistent (it stays while used). */
  unpersist(room: Room): void {
    this.#options.store.deleteRoom(this.domain, room.local);
    if (room.occupants.size === 0) {
      this.#rooms.delete(room.local);
      this.#options.archive?.forget(room.local);
      this.#options.onForget?.(room);
    }
  }

  /**
   * Removes an occupant against its will (kicked, banned, no longer a member): its resources
   * get `options` with 110, the others `options`.
   */
  expel(room: Room, occupant: Occupant, options: PresenceOptions): void {
    for (const full of occupant.sessions.keys()) {
      this.send(occupantPresence(room, occupant, full, {
        ...options,
        withJid: true,
        statuses: [...(options.statuses ?? []), 110].sort((a, b) => a - b),
      }));
    }
    this.removeOccupant(room, occupant, options);
  }

  /** Removes a room (destroyed, or temporary and empty) from memory and storage. */
  forget(room: Room): void {
    this.#rooms.delete(room.local);
    this.#options.store.deleteRoom(this.domain, room.local);
    this.#options.archive?.forget(room.local);
    this.#options.onForget?.(room);
  }

  /** The rooms' archive, when the service has one. */
  get archive(): RoomArchive | undefined {
    return this.#options.archive;
  }

  /** Whether the room archives its messages (the service has an archive and it is on). */
  archives(room: Room): boolean {
    return this.#options.archive !== undefined && room.config.archiving;
  }

  /** Sends an error reply to a stanza unless it is itself an error. */
  refuse(stanza: Element, error: MucError): void {
    if (isError(stanza)) return;
    this.#options.send(
      errorReply(stanza, error.condition, {
        type: error.type,
        text: error.message,
        includeOriginal: stanza.name !== "iq",
      }),
    );
  }

  /** Routes a stanza from the room. */
  send(stanza: Element): void {
    this.#options.send(stanza);
  }

  /** Sends the presence of `occupant` to every joined resource (own ones get 110). */
  broadcastPresence(room: Room, occupant: Occupant, options: PresenceOptions = {}): void {
    for (const [full, viewer] of room.sessions()) {
      const statuses = [...(options.statuses ?? [])];
      if (viewer === occupant) statuses.push(110);
      this.send(occupantPresence(room, occupant, full, {
        ...options,
        statuses: statuses.sort((a, b) => a - b),
        withJid: viewer === occupant || room.seesJids(viewer),
      }));
    }
  }

  /** A presence to `room@service/nick` (or without a nick, which is always an error). */
  handlePresence(stanza: Element, from: JID, to: JID): void {
    const type = stanza.attrs.type;
    const room = to.local === undefined ? undefined : this.#rooms.get(to.local);
    const full = from.toString();
    const occupant = room?.bySession.get(full);
    if (type === "unavailable" || type === "error") {
      // Leaving a room one is not in needs no answer (an unavailable is never refused).
      if (room && occupant) this.#leave(room, occupant, full, stanza);
      return;
    }
    try {
      if (type !== undefined) {
        throw new MucError("bad-request", `Rooms take no presence of type '${type}'`);
      }
      if (to.resource === undefined || to.resource === "") {
        throw new MucError("jid-malformed", "A nickname is required to enter a room");
      }
      if (room && occupant) {
        if (occupant.nick === to.resource) this.#updatePresence(room, occupant, full, stanza);
        else this.#changeNick(room, occupant, full, to.resource, stanza);
        return;
      }
      this.#join(room, from, to.local!, to.resource, stanza);
    } catch (error) {
      if (!(error instanceof MucError)) throw error;
      this.refuse(stanza, error);
    }
  }

  #join(
    existing: Room | undefined,
    from: JID,
    local: string,
    nick: string,
    stanza: Element,
  ): void {
    const bare = from.bare.toString();
    const full = from.toString();
    this.#checkJoinRate(bare);
    const request = stanza.getChild("x", NS_MUC);
    let room = existing;
    let created = false;
    if (!room) {
      if (!this.#options.mayCreate(from)) {
        throw new MucError("not-allowed", "Room creation is restricted on this service");
      }
      if (this.#rooms.size >= this.#options.maxRooms) {
        throw new MucError("resource-constraint", "This service holds as many rooms as it may");
      }
      room = new Room(`${local}@${this.domain}`, defaultRoomConfig(this.limits), this.#now());
      room.affiliations.set(bare, { affiliation: "owner" });
      // A client without MUC support (no <x/>) cannot configure: it gets an instant room.
      room.locked = request !== undefined;
      created = true;
    }
    const affiliation = room.affiliation(bare);
    if (!created) {
      if (room.locked && affiliation !== "owner") {
        throw new MucError("item-not-found", "This room is not configured yet");
      }
      if (affiliation === "outcast") {
        throw new MucError("forbidden", "You are banned from this room");
      }
      const holder = room.occupants.get(nick);
      if (holder && holder.bare !== bare) {
        throw new MucError("conflict", "That nickname is already in use in this room");
      }
      for (const [jid, record] of room.affiliations) {
        if (record.nick === nick && jid !== bare) {
          throw new MucError("conflict", "That nickname is reserved by another member");
        }
      }
      if (room.config.membersOnly && AFFILIATION_RANK[affiliation] < AFFILIATION_RANK.member) {
        throw new MucError("registration-required", "This room is for members only");
      }
      if (
        room.config.password !== "" && request?.getChildText("password") !== room.config.password
      ) {
        throw new MucError("not-authorized", "This room needs the right password");
      }
      if (
        !holder && room.occupants.size >= room.config.maxUsers &&
        AFFILIATION_RANK[affiliation] < AFFILIATION_RANK.admin
      ) {
        throw new MucError("service-unavailable", "This room is full", "wait");
      }
    }
    if (created) this.#rooms.set(local, room);

    let occupant = room.occupants.get(nick);
    const joiningOccupant = !occupant;
    if (!occupant) {
      occupant = {
        nick,
        bare,
        role: room.defaultRole(affiliation),
        sessions: new Map(),
        presence: stanza,
        occupantId: this.#options.archive?.occupantId(room.local, bare),
      };
      room.occupants.set(nick, occupant);
    }
    occupant.sessions.set(full, stanza);
    occupant.presence = stanza;
    room.bySession.set(full, occupant);

    // §7.2.3: the others' presence first, then the newcomer's own, to everyone.
    for (const other of room.occupants.values()) {
      if (other === occupant) continue;
      this.send(occupantPresence(room, other, full, { withJid: room.seesJids(occupant) }));
    }
    for (const [sessionJid, viewer] of room.sessions()) {
      if (sessionJid === full) continue;
      if (viewer !== occupant && !joiningOccupant) {
        // Another resource joined under a nick the others already see: show its presence.
        this.send(occupantPresence(room, occupant, sessionJid, { withJid: room.seesJids(viewer) }));
        continue;
      }
      this.send(occupantPresence(room, occupant, sessionJid, {
        withJid: viewer === occupant || room.seesJids(viewer),
        statuses: viewer === occupant ? [110] : [],
      }));
    }
    const statuses = [110];
    if (room.config.whois === "anyone") statuses.unshift(100);
    if (this.archives(room)) statuses.push(170);
    if (created) statuses.push(201);
    this.send(occupantPresence(room, occupant, full, { withJid: true, statuses }));

    // §7.2.14 history (from the archive when the room keeps one), then §7.2.15 the subject.
    const wanted = historyRequest(request);
    const history = this.archives(room)
      ? this.#options.archive!.history(room.local, room.config.historyLength, wanted, this.#now())
        .map((entry) => {
          const message = entry.message;
          if (!room.seesJids(occupant)) removeChildren(message, "x", NS_MUC_USER);
          message.c("stanza-id", { xmlns: NS_SID, id: entry.id, by: room.jid });
          return { message, stampMs: entry.stampMs };
        })
      : room.historyFor(wanted, this.#now());
    for (const entry of history) {
      const message = entry.message.clone();
      message.attrs.to = full;
      message.c("delay", {
        xmlns: NS_DELAY,
        from: room.jid,
        stamp: new Date(entry.stampMs).toISOString(),
      });
      this.send(message);
    }
    this.send(this.subjectMessage(room, full));
  }

  /** Counts a join attempt of `bare`, refusing it beyond `joinsPerMinute` in the last minute. */
  #checkJoinRate(bare: string): void {
    const limit = this.#options.joinsPerMinute ?? 0;
    if (limit <= 0) return;
    const now = this.#now();
    const recent = (this.#recentJoins.get(bare) ?? []).filter((t) => now - t < 60_000);
    if (recent.length >= limit) {
      this.#recentJoins.set(bare, recent);
      throw new MucError("policy-violation", "Too many joins; try again in a minute", "wait");
    }
    recent.push(now);
    this.#recentJoins.set(bare, recent);
    if (this.#recentJoins.size > 10_000) {
      // Users who have not joined for a minute need no entry.
      for (const [jid, times] of this.#recentJoins) {
        if (times.every((t) => now - t >= 60_000)) this.#recentJoins.delete(jid);
      }
    }
  }

  /** The message that tells an occupant the subject (empty `<subject/>` when none). */
  subjectMessage(room: Room, to: string): Element {
    const from = room.subjectBy !== undefined ? room.occupantJid(room.subjectBy) : room.jid;
    const message = new Element("message", { from, to, type: "groupchat" });
    message.c("subject").t(room.subject);
    return message;
  }

  #updatePresence(room: Room, occupant: Occupant, full: string, stanza: Element): void {
    occupant.sessions.set(full, stanza);
    occupant.presence = stanza;
    this.broadcastPresence(room, occupant);
  }

  #changeNick(room: Room, occupant: Occupant, full: string, nick: string, stanza: Element): void {
    const holder = room.occupants.get(nick);
    if (holder) throw new MucError("conflict", "That nickname is already in use in this room");
    for (const [jid, record] of room.affiliations) {
      if (record.nick === nick && jid !== occupant.bare) {
        throw new MucError("conflict", "That nickname is reserved by another member");
      }
    }
    // §7.6: unavailable from the old nick with the new one and 303, then the new presence.
    this.broadcastPresence(room, occupant, { type: "unavailable", newNick: nick, statuses: [303] });
    room.occupants.delete(occupant.nick);
    occupant.nick = nick;
    room.occupants.set(nick, occupant);
    occupant.sessions.set(full, stanza);
    occupant.presence = stanza;
    this.broadcastPresence(room, occupant);
  }

  #leave(room: Room, occupant: Occupant, full: string, stanza: Element): void {
    occupant.sessions.delete(full);
    room.bySession.delete(full);
    const remaining = occupant.sessions.size > 0;
    // With other resources under the nick, only the leaving one is told it left.
    if (!remaining) occupant.presence = stanza;
    this.send(occupantPresence(room, occupant, full, {
      type: "unavailable",
      role: "none",
      withJid: true,
      jid: full,
      statuses: [110],
    }));
    if (remaining) {
      occupant.presence = [...occupant.sessions.values()].at(-1)!;
      return;
    }
    this.removeOccupant(room, occupant, { type: "unavailable", role: "none", jid: full });
  }

  /**
   * Takes an occupant out of the room (left, kicked, banned) and tells the remaining ones with
   * `options`; a temporary room that becomes empty goes away.
   */
  removeOccupant(room: Room, occupant: Occupant, options: PresenceOptions): void {
    options = { ...options, jid: options.jid ?? [...occupant.sessions.keys()][0] };
    for (const full of occupant.sessions.keys()) room.bySession.delete(full);
    occupant.sessions.clear();
    room.occupants.delete(occupant.nick);
    this.broadcastPresence(room, occupant, options);
    if (room.occupants.size === 0 && (!room.config.persistent || room.locked)) this.forget(room);
  }

  /** A message to a room's bare JID: groupchat, subject change. */
  handleRoomMessage(stanza: Element, from: JID, room: Room): void {
    if (isError(stanza)) return;
    try {
      const occupant = room.bySession.get(from.toString());
      if (stanza.attrs.type !== "groupchat") {
        // §7.8.2 invitations and declines, §7.13/§8.6 voice requests and their approvals.
        if (stanza.getChild("x", NS_MUC_USER)) return handleInvitations(this, room, stanza, from);
        const form = requestForm(stanza);
        if (form) return handleVoiceForm(this, room, form, from);
        throw new MucError(
          "bad-request",
          "Only groupchat messages, invitations, declines and voice requests go to the room",
        );
      }
      if (!occupant) {
        throw new MucError("not-acceptable", "Only occupants may send messages to the room");
      }
      if (occupant.role !== "moderator" && occupant.role !== "participant") {
        throw new MucError("forbidden", "You have no voice in this room");
      }
      const subject = stanza.getChild("subject");
      if (subject && stanza.getChild("body") === undefined) {
        if (occupant.role !== "moderator" && !room.config.changeSubject) {
          throw new MucError("forbidden", "Only moderators may change the subject of this room");
        }
        room.subject = subject.text();
        room.subjectBy = occupant.nick;
        this.persist(room);
      }
      // Ids only the room may set (XEP-0359 §5, XEP-0421 §4) are removed from what it relays.
      const reflected = stanza.clone();
      reflected.attrs.from = room.occupantJid(occupant.nick);
      delete reflected.attrs.to;
      reflected.children = reflected.children.filter((child) =>
        typeof child === "string" ||
        !((child.name === "stanza-id" && child.ns === NS_SID && child.attrs.by === room.jid) ||
          (child.name === "occupant-id" && child.ns === NS_OCCUPANT_ID))
      );
      if (occupant.occupantId !== undefined) {
        reflected.c("occupant-id", { xmlns: NS_OCCUPANT_ID, id: occupant.occupantId });
      }
      if (this.archives(room) && (subject || stanza.getChild("body") !== undefined)) {
        const id = this.#options.archive!.append(
          room.local,
          reflected,
          [...occupant.sessions.keys()][0] ?? occupant.bare,
          this.#now(),
        );
        reflected.c("stanza-id", { xmlns: NS_SID, id, by: room.jid });
      }
      for (const full of room.bySession.keys()) {
        const copy = reflected.clone();
        copy.attrs.to = full;
        this.send(copy);
      }
      if (!subject && stanza.getChild("body") !== undefined && !this.archives(room)) {
        room.remember(reflected, this.#now());
      }
    } catch (error) {
      if (!(error instanceof MucError)) throw error;
      this.refuse(stanza, error);
    }
  }

  /**
   * XEP-0425: a moderator retracts an archived groupchat message by its stanza-id. The room
   * tells every occupant (a XEP-0424 `<retract/>` with `<moderated/>`), and the archive keeps
   * a tombstone instead of the message. Throws MucError: forbidden for a non-moderator,
   * item-not-found for an id the archive does not hold (or already retracted).
   */
  moderate(room: Room, actor: JID, id: string, reason: string | undefined): void {
    const moderator = room.bySession.get(actor.toString());
    if (moderator?.role !== "moderator") {
      throw new MucError("forbidden", "Only moderators may retract messages of this room");
    }
    const archive = this.#options.archive;
    const found = archive?.find(room.local, id);
    if (!archive || !found || found.message.getChild("retracted", NS_RETRACT)) {
      throw new MucError("item-not-found", `This room's archive has no message with id '${id}'`);
    }
    const moderated = () => {
      const element = new Element("moderated", {
        xmlns: NS_MODERATE,
        by: room.occupantJid(moderator.nick),
      });
      if (moderator.occupantId !== undefined) {
        element.c("occupant-id", { xmlns: NS_OCCUPANT_ID, id: moderator.occupantId });
      }
      return element;
    };
    // The tombstone keeps who sent what when, not what was said (XEP-0425 §5).
    const original = found.message;
    const tombstone = new Element("message", {
      from: original.attrs.from,
      type: "groupchat",
      id: original.attrs.id,
    });
    const occupantId = original.getChild("occupant-id", NS_OCCUPANT_ID);
    if (occupantId) tombstone.append(occupantId.clone());
    const retracted = tombstone.c("retracted", {
      xmlns: NS_RETRACT,
      stamp: new Date(this.#now()).toISOString(),
    });
    retracted.append(moderated());
    if (reason !== undefined) retracted.c("reason").t(reason);
    const realJid = original.getChild("x", NS_MUC_USER);
    if (realJid) tombstone.append(realJid.clone());
    archive.tombstone(room.local, id, tombstone);

    const notice = new Element("message", {
      from: room.jid,
      type: "groupchat",
      id: crypto.randomUUID(),
    });
    const retract = notice.c("retract", { xmlns: NS_RETRACT, id });
    retract.append(moderated());
    if (reason !== undefined) retract.c("reason").t(reason);
    for (const full of room.bySession.keys()) {
      const copy = notice.clone();
      copy.attrs.to = full;
      this.send(copy);
    }
  }

  /** A message to `room@service/nick`: a private message to an occupant (§7.5). */
  handlePrivateMessage(stanza: Element, from: JID, room: Room, nick: string): void {
    if (isError(stanza)) return;
    try {
      const sender = room.bySession.get(from.toString());
      if (!sender) throw new MucError("not-acceptable", "Only occupants may send private messages");
      if (stanza.attrs.type === "groupchat") {
        throw new MucError("bad-request", "Groupchat messages go to the room, not to an occupant");
      }
      const target = room.occupants.get(nick);
      if (!target) throw new MucError("item-not-found", `No occupant '${nick}' in this room`);
      const allow = room.config.allowPm;
      if (
        allow === "none" ||
        (allow === "moderators" && sender.role !== "moderator") ||
        (allow === "participants" && sender.role === "visitor")
      ) {
        throw new MucError("forbidden", "Private messages are not allowed in this room");
      }
      // XEP-0421: private messages carry the sender's occupant id too, never a forged one.
      const relayed = stanza.clone();
      removeChildren(relayed, "occupant-id", NS_OCCUPANT_ID);
      if (sender.occupantId !== undefined) {
        relayed.c("occupant-id", { xmlns: NS_OCCUPANT_ID, id: sender.occupantId });
      }
      for (const full of target.sessions.keys()) {
        const copy = relayed.clone();
        copy.attrs.from = room.occupantJid(sender.nick);
        copy.attrs.to = full;
        if (!copy.getChild("x", NS_MUC_USER)) copy.c("x", { xmlns: NS_MUC_USER });
        this.send(copy);
      }
    } catch (error) {
      if (!(error instanceof MucError)) throw error;
      this.refuse(stanza, error);
    }
  }
}

/** Removes an element's children with this name and namespace. */
function removeChildren(element: Element, name: string, ns: string): void {
  element.children = element.children.filter((child) =>
    typeof child === "string" || child.name !== name || child.ns !== ns
  );
}

/** Reads `<history/>` of a join (XEP-0045 §7.2.14); bad attributes are ignored. */
function historyRequest(x: Element | undefined): HistoryRequest {
  const history = x?.getChild("history");
  if (!history) return {};
  const count = (name: string) => {
    const value = history.attrs[name];
    return value !== undefined && /^\d+$/.test(value) ? Number(value) : undefined;
  };
  const since = history.attrs.since === undefined ? NaN : Date.parse(history.attrs.since);
  return {
    maxChars: count("maxchars"),
    maxStanzas: count("maxstanzas"),
    seconds: count("seconds"),
    sinceMs: Number.isNaN(since) ? undefined : since,
  };
}
