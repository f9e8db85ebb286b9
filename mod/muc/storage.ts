// The multi-user chat tables: persistent rooms and their affiliations, the only state of a MUC
// service that outlives a restart (occupants and the message history are in memory).

import type { Database } from "../../core/storage/database.ts";
import type { Migration } from "../../core/storage/migrations.ts";
import type { RoomConfig } from "./config.ts";

/** The module's schema, numbered for the muc module alone (see `ModuleFile.migrations`). */
export const MUC_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: "muc persistent rooms and affiliations",
    up(db) {
      db.exec(`
        CREATE TABLE muc_rooms (
          service TEXT NOT NULL,
          room TEXT NOT NULL,
          config TEXT NOT NULL,
          subject TEXT NOT NULL DEFAULT '',
          subject_by TEXT,
          created_ms INTEGER NOT NULL,
          PRIMARY KEY (service, room)
        ) WITHOUT ROWID;

        CREATE TABLE muc_affiliations (
          service TEXT NOT NULL,
          room TEXT NOT NULL,
          jid TEXT NOT NULL,
          affiliation TEXT NOT NULL,
          reason TEXT,
          nick TEXT,
          PRIMARY KEY (service, room, jid)
        ) WITHOUT ROWID;
      `);
    },
  },
];

/** The affiliations of XEP-0045 §5.2 that are stored ("none" is the absence of a row). */
export type StoredAffiliation = "owner" | "admin" | "member" | "outcast";

/** One affiliation as stored: a bare JID's standing in a room. */
export interface AffiliationRecord {
  affiliation: StoredAffiliation;
  /** Why it was given (shown in the admin list, e.g. a ban's reason). */
  reason?: string;
  /** The nick the member reserved (XEP-0045 §7.10). */
  nick?: string;
}

/** One persistent room as stored. */
export interface StoredRoom {
  /** The room's local part. */
  room: string;
  config: RoomConfig;
  subject: string;
  /** The nick that set the subject, if an occupant did. */
  subjectBy?: string;
  createdMs: number;
  affiliations: Map<string, AffiliationRecord>;
}

/** Reads and writes the muc tables of one database, for any number of MUC services. */
export class MucStore {
  #db: Database;

  constructor(database: Database) {
    this.#db = database;
  }

  /** Every persistent room of a service, with its affiliations. */
  rooms(service: string): StoredRoom[] {
    const rooms = new Map<string, StoredRoom>();
    for (
      const row of this.#db.prepare(
        "SELECT room, config, subject, subject_by, created_ms FROM muc_rooms WHERE service = ?",
      ).all(service)
    ) {
      rooms.set(String(row.room), {
        room: String(row.room),
        config: JSON.parse(String(row.config)),
        subject: String(row.subject),
        subjectBy: row.subject_by === null ? undefined : String(row.subject_by),
        createdMs: Number(row.created_ms),
        affiliations: new Map(),
      });
    }
    for (
      const row of this.#db.prepare(
        "SELECT room, jid, affiliation, reason, nick FROM muc_affiliations WHERE service = ?",
      ).all(service)
    ) {
      rooms.get(String(row.room))?.affiliations.set(String(row.jid), {
        affiliation: String(row.affiliation) as StoredAffiliation,
        reason: row.reason === null ? undefined : String(row.reason),
        nick: row.nick === null ? undefined : String(row.nick),
      });
    }
    return [...rooms.values()];
  }

  /** Writes a room with all its affiliations (when it becomes persistent, or is changed). */
  saveRoom(service: string, room: StoredRoom): void {
    this.#db.transaction(() => {
      this.#db.prepare(
        `INSERT INTO muc_rooms (service, room, config, subject, subject_by, created_ms)
         VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (service, room) DO UPDATE SET config = excluded.config,
           subject = excluded.subject, subject_by = excluded.subject_by`,
      ).run(
        service,
        room.room,
        JSON.stringify(room.config),
        room.subject,
        room.subjectBy ?? null,
        room.createdMs,
      );
      this.#db.prepare("DELETE FROM muc_affiliations WHERE service = ? AND room = ?")
        .run(service, room.room);
      for (const [jid, record] of room.affiliations) {
        this.setAffiliation(service, room.room, jid, record);
      }
    });
  }

  /** Stores one affiliation of a persistent room; `undefined` removes it ("none"). */
  setAffiliation(
    service: string,
    room: string,
    jid: string,
    record: AffiliationRecord | undefined,
  ): void {
    if (!record) {
      this.#db.prepare("DELETE FROM muc_affiliations WHERE service = ? AND room = ? AND jid = ?")
        .run(service, room, jid);
      return;
    }
    this.#db.prepare(
      `INSERT INTO muc_affiliations (service, room, jid, affiliation, reason, nick)
       VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (service, room, jid) DO UPDATE SET affiliation = excluded.affiliation,
         reason = excluded.reason, nick = excluded.nick`,
    ).run(service, room, jid, record.affiliation, record.reason ?? null, record.nick ?? null);
  }

  /** Forgets a room and its affiliations (destroyed, or no longer persistent). */
  deleteRoom(service: string, room: string): void {
    this.#db.transaction(() => {
      this.#db.prepare("DELETE FROM muc_affiliations WHERE service = ? AND room = ?")
        .run(service, room);
      this.#db.prepare("DELETE FROM muc_rooms WHERE service = ? AND room = ?").run(service, room);
    });
  }

  /** How many persistent rooms a service holds. */
  count(service: string): number {
    const row = this.#db.prepare("SELECT count(*) AS n FROM muc_rooms WHERE service = ?")
      .get(service);
    return Number(row?.n ?? 0);
  }
}
