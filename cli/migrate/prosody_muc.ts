// Reads the persistent rooms of Prosody 0.12's MUC components (the host-wide "persistent" list
// and each room's frozen state in the "config" store) into the rooms Lilt's muc module keeps
// (mod/muc/storage.ts), for `lilt import prosody`.

import { prepDomain, prepLocal, tryParseJid } from "../../core/jid.ts";
import { type ConfigLimits, defaultRoomConfig } from "../../mod/muc/config.ts";
import type { AffiliationRecord, StoredAffiliation, StoredRoom } from "../../mod/muc/storage.ts";
import type { ProsodyStorage } from "./prosody_storage.ts";

/** The MUC store Prosody lists persistent rooms in (host-wide: room JID -> true). */
const PERSISTENT_STORE = "persistent";
/** The store of each room's frozen state, keyed by the room's local part. */
const CONFIG_STORE = "config";
const AFFILIATIONS = new Set<string>(["owner", "admin", "member", "outcast"]);
/** Prosody's history length when a room sets none. */
const PROSODY_HISTORY_LENGTH = 20;

/** One room read from Prosody, for a MUC service configured here. */
export interface ProsodyRoom {
  /** The MUC component's domain. */
  service: string;
  room: StoredRoom;
}

/**
 * Reads the persistent rooms of every Prosody MUC host that is one of `services` (domain ->
 * the limits of Lilt's muc module there); rooms of other MUC hosts are skipped with a warning.
 */
export function readProsodyRooms(
  storage: ProsodyStorage,
  services: Map<string, ConfigLimits>,
  warnings: string[],
): ProsodyRoom[] {
  const rooms: ProsodyRoom[] = [];
  for (const rawHost of storage.hostsWithStore(PERSISTENT_STORE)) {
    const listed = storage.hostKeyval(rawHost, PERSISTENT_STORE);
    const jids = (listed?.stringEntries() ?? []).filter(([, v]) => v === true).map(([k]) => k);
    if (jids.length === 0) continue;
    let service: string;
    try {
      service = prepDomain(rawHost);
    } catch {
      warnings.push(`MUC host '${rawHost}' is not a valid domain; its rooms are skipped`);
      continue;
    }
    const limits = services.get(service);
    if (limits === undefined) {
      warnings.push(
        `MUC host '${service}' (${jids.length} persistent rooms) is not a [[component]] with ` +
          "the muc module here; its rooms are skipped",
      );
      continue;
    }
    for (const jid of jids) {
      const room = readRoom(storage, rawHost, jid, limits, warnings);
      if (room !== undefined) rooms.push({ service, room });
    }
  }
  return rooms;
}

function readRoom(
  storage: ProsodyStorage,
  rawHost: string,
  jid: string,
  limits: ConfigLimits,
  warnings: string[],
): StoredRoom | undefined {
  const at = jid.indexOf("@");
  const rawNode = at === -1 ? "" : jid.slice(0, at);
  let room: string;
  try {
    room = prepLocal(rawNode);
  } catch {
    warnings.push(`room '${jid}' has a name Lilt cannot use; skipped`);
    return undefined;
  }
  const frozen = storage.keyval(rawHost, rawNode, CONFIG_STORE);
  const data = frozen?.table("_data");
  if (frozen === undefined || data === undefined) {
    warnings.push(
      `room '${jid}' is listed as persistent but its configuration is missing; skipped`,
    );
    return undefined;
  }
  const config = defaultRoomConfig(limits);
  config.persistent = true;
  config.name = data.string("name") ?? "";
  config.description = data.string("description") ?? "";
  config.public = data.get("hidden") !== true;
  config.membersOnly = data.get("members_only") === true;
  config.moderated = data.get("moderated") === true;
  config.password = data.string("password") ?? "";
  config.whois = data.string("whois") === "anyone" ? "anyone" : "moderators";
  config.changeSubject = data.get("changesubject") === true;
  config.allowInvites = data.get("allow_member_invites") === true;
  const history = data.number("history_length") ?? PROSODY_HISTORY_LENGTH;
  config.historyLength = Math.max(0, Math.min(Math.trunc(history), limits.maxHistory));
  const archiving = data.get("archiving");
  if (typeof archiving === "boolean") config.archiving = archiving;

  // The subject's author is the occupant JID (room@service/nick) that set it.
  const from = data.string("subject_from");
  const slash = from?.indexOf("/") ?? -1;
  const stored: StoredRoom = {
    room,
    config,
    subject: data.string("subject") ?? "",
    subjectBy: from !== undefined && slash !== -1 ? from.slice(slash + 1) : undefined,
    createdMs: Date.now(),
    affiliations: new Map(),
  };

  // Prosody's newer format keeps affiliations as top-level JID keys, the older one in
  // `_affiliations`; `_affiliation_data` holds reserved nicks.
  const affiliations = frozen.table("_affiliations") ?? frozen;
  const extra = frozen.table("_affiliation_data");
  for (const [key, value] of affiliations.stringEntries()) {
    if (key.startsWith("_") || key === "jid") continue;
    const who = tryParseJid(key);
    if (who === undefined || typeof value !== "string" || !AFFILIATIONS.has(value)) {
      warnings.push(`room '${jid}': affiliation '${String(value)}' of '${key}' left out`);
      continue;
    }
    const record: AffiliationRecord = { affiliation: value as StoredAffiliation };
    const nick = extra?.table(key)?.string("reserved_nickname");
    if (nick !== undefined && nick !== "") record.nick = nick;
    stored.affiliations.set(who.bareString(), record);
  }
  if (![...stored.affiliations.values()].some((r) => r.affiliation === "owner")) {
    warnings.push(`room '${jid}' has no owner; only the service's admins can configure it`);
  }
  return stored;
}
