// A room's configuration and its `muc#roomconfig` data form (XEP-0045 §10.2 and §15.5.3): the
// owner reads the form, submits it, and the room keeps the parsed values (stored as JSON).

import { tryParseJid } from "../../core/jid.ts";
import { Element } from "../../core/xml/element.ts";
import { MucError } from "./errors.ts";

const NS_DATA = "jabber:x:data";
/** FORM_TYPE of the room configuration form. */
export const ROOM_CONFIG_FORM = "http://jabber.org/protocol/muc#roomconfig";

/** Who may see occupants' real JIDs (`muc#roomconfig_whois`). */
export type Whois = "moderators" | "anyone";
/** Who may send private messages (`muc#roomconfig_allowpm`). */
export type AllowPm = "anyone" | "participants" | "moderators" | "none";

/** A room's configuration, as stored (JSON) and used by the room. */
export interface RoomConfig {
  name: string;
  description: string;
  persistent: boolean;
  public: boolean;
  membersOnly: boolean;
  moderated: boolean;
  /** The password when the room is password-protected; "" when not. */
  password: string;
  whois: Whois;
  /** Most occupants; 0 means no limit of the room's own (the service's still applies). */
  maxUsers: number;
  /** Whether participants (not only moderators) may change the subject. */
  changeSubject: boolean;
  allowPm: AllowPm;
  /** Whether members (not only admins and owners) may invite others to a members-only room. */
  allowInvites: boolean;
  /** Messages kept for newcomers (0 keeps none). */
  historyLength: number;
  /** Whether the room archives its messages (XEP-0313, `muc#roomconfig_enablearchiving`). */
  archiving: boolean;
}

/** Limits a room's configuration must respect. */
export interface ConfigLimits {
  /** The service's most occupants per room. */
  maxOccupants: number;
  /** The most history a room may keep. */
  maxHistory: number;
  /** Whether new rooms archive their messages (`muc_log_by_default`; default true). */
  archiveByDefault?: boolean;
}

/** The configuration of a new room. */
export function defaultRoomConfig(limits: ConfigLimits): RoomConfig {
  return {
    name: "",
    description: "",
    persistent: false,
    public: true,
    membersOnly: false,
    moderated: false,
    password: "",
    whois: "moderators",
    maxUsers: limits.maxOccupants,
    changeSubject: false,
    allowPm: "anyone",
    allowInvites: false,
    historyLength: Math.min(20, limits.maxHistory),
    archiving: limits.archiveByDefault ?? true,
  };
}

const MAXUSERS_CHOICES = [5, 10, 20, 30, 50, 100, 200, 500, 1000];

/** The bare JIDs holding the owner and admin affiliations, shown in the form (§10.2). */
export interface AffiliationLists {
  owners: string[];
  admins: string[];
}

/** The configuration form with the room's current values (XEP-0045 Example 165). */
export function roomConfigForm(
  config: RoomConfig,
  limits: ConfigLimits,
  lists?: AffiliationLists,
): Element {
  const form = new Element("x", { xmlns: NS_DATA, type: "form" });
  form.c("title").t("Configuration of the room");
  form.c("instructions").t("Complete this form to change the room's configuration");
  const field = (
    type: string,
    variable: string,
    label: string,
    values: string[],
    options?: [string, string][],
  ) => {
    const el = form.c("field", { type, var: variable, label: label || undefined });
    for (const value of values) el.c("value").t(value);
    for (const [optionValue, optionLabel] of options ?? []) {
      el.c("option", { label: optionLabel }).c("value").t(optionValue);
    }
  };
  const bool = (value: boolean) => value ? "1" : "0";
  field("hidden", "FORM_TYPE", "", [ROOM_CONFIG_FORM]);
  field("text-single", "muc#roomconfig_roomname", "Name", [config.name]);
  field("text-single", "muc#roomconfig_roomdesc", "Description", [config.description]);
  field("boolean", "muc#roomconfig_persistentroom", "Make the room persistent", [
    bool(config.persistent),
  ]);
  field("boolean", "muc#roomconfig_publicroom", "List the room in the directory", [
    bool(config.public),
  ]);
  field("boolean", "muc#roomconfig_membersonly", "Make the room members-only", [
    bool(config.membersOnly),
  ]);
  field("boolean", "muc#roomconfig_moderatedroom", "Make the room moderated", [
    bool(config.moderated),
  ]);
  field("boolean", "muc#roomconfig_passwordprotectedroom", "Password required to enter", [
    bool(config.password !== ""),
  ]);
  field("text-private", "muc#roomconfig_roomsecret", "Password", [config.password]);
  field("list-single", "muc#roomconfig_whois", "Who may discover real JIDs", [config.whois], [
    ["moderators", "Moderators only"],
    ["anyone", "Anyone"],
  ]);
  const choices = MAXUSERS_CHOICES.filter((n) => n < limits.maxOccupants);
  field(
    "list-single",
    "muc#roomconfig_maxusers",
    "Maximum number of occupants",
    [String(config.maxUsers)],
    [...choices, limits.maxOccupants].map((n) => [String(n), String(n)]),
  );
  field("boolean", "muc#roomconfig_changesubject", "Allow occupants to change the subject", [
    bool(config.changeSubject),
  ]);
  field("list-single", "muc#roomconfig_allowpm", "Who may send private messages", [
    config.allowPm,
  ], [
    ["anyone", "Anyone"],
    ["participants", "Participants"],
    ["moderators", "Moderators"],
    ["none", "Nobody"],
  ]);
  field("boolean", "muc#roomconfig_allowinvites", "Let members invite others", [
    bool(config.allowInvites),
  ]);
  field("text-single", "muc#roomconfig_historylength", "Messages of history sent to newcomers", [
    String(config.historyLength),
  ]);
  field("boolean", "muc#roomconfig_enablearchiving", "Archive the room's messages", [
    bool(config.archiving),
  ]);
  if (lists) {
    field("jid-multi", "muc#roomconfig_roomowners", "Room owners", lists.owners);
    field("jid-multi", "muc#roomconfig_roomadmins", "Room admins", lists.admins);
  }
  return form;
}

/**
 * Reads the owners and admins lists of a submitted form (`muc#roomconfig_roomowners`,
 * `muc#roomconfig_roomadmins`); a list left out of the form is undefined. Empty values are
 * skipped; a value that is not a valid bare JID is a `bad-request`.
 */
export function readAffiliationLists(form: Element): Partial<AffiliationLists> {
  const lists: Partial<AffiliationLists> = {};
  for (const field of form.getChildren("field", NS_DATA)) {
    const variable = field.attrs.var;
    const key = variable === "muc#roomconfig_roomowners"
      ? "owners"
      : variable === "muc#roomconfig_roomadmins"
      ? "admins"
      : undefined;
    if (key === undefined) continue;
    const jids = new Set<string>();
    for (const value of field.getChildren("value", NS_DATA).map((v) => v.text().trim())) {
      if (value === "") continue;
      const jid = tryParseJid(value);
      if (!jid || !jid.isBare()) {
        throw new MucError(
          "bad-request",
          `Field '${variable}' expects bare JIDs, found '${value}'`,
        );
      }
      jids.add(jid.toString());
    }
    lists[key] = [...jids];
  }
  return lists;
}

function parseBoolean(variable: string, value: string): boolean {
  if (value === "1" || value === "true") return true;
  if (value === "0" || value === "false") return false;
  throw new MucError("bad-request", `Field '${variable}' expects a boolean, found '${value}'`);
}

function parseCount(variable: string, value: string, max: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n > max) {
    throw new MucError(
      "not-acceptable",
      `Field '${variable}' expects a whole number up to ${max}, found '${value}'`,
    );
  }
  return n;
}

/**
 * Applies a submitted form to a configuration and returns the new one; fields left out keep
 * their values (XEP-0045 §10.2). Throws `MucError` for a wrong FORM_TYPE or a bad value.
 */
export function applyRoomConfigForm(
  current: RoomConfig,
  form: Element,
  limits: ConfigLimits,
): RoomConfig {
  const next: RoomConfig = { ...current };
  let passwordProtected: boolean | undefined;
  for (const field of form.getChildren("field", NS_DATA)) {
    const variable = field.attrs.var;
    const values = field.getChildren("value", NS_DATA).map((v) => v.text());
    const value = values[0] ?? "";
    switch (variable) {
      case "FORM_TYPE":
        if (value !== ROOM_CONFIG_FORM) {
          throw new MucError("bad-request", `Expected FORM_TYPE ${ROOM_CONFIG_FORM}`);
        }
        break;
      case "muc#roomconfig_roomname":
        next.name = value;
        break;
      case "muc#roomconfig_roomdesc":
        next.description = value;
        break;
      case "muc#roomconfig_persistentroom":
        next.persistent = parseBoolean(variable, value);
        break;
      case "muc#roomconfig_publicroom":
        next.public = parseBoolean(variable, value);
        break;
      case "muc#roomconfig_membersonly":
        next.membersOnly = parseBoolean(variable, value);
        break;
      case "muc#roomconfig_moderatedroom":
        next.moderated = parseBoolean(variable, value);
        break;
      case "muc#roomconfig_passwordprotectedroom":
        passwordProtected = parseBoolean(variable, value);
        break;
      case "muc#roomconfig_roomsecret":
        next.password = value;
        break;
      case "muc#roomconfig_whois":
        if (value !== "moderators" && value !== "anyone") {
          throw new MucError("not-acceptable", `Field '${variable}' has no option '${value}'`);
        }
        next.whois = value;
        break;
      case "muc#roomconfig_maxusers":
        next.maxUsers = value === "none" || value === "0"
          ? limits.maxOccupants
          : parseCount(variable, value, limits.maxOccupants);
        break;
      case "muc#roomconfig_changesubject":
        next.changeSubject = parseBoolean(variable, value);
        break;
      case "muc#roomconfig_allowpm":
        if (!["anyone", "participants", "moderators", "none"].includes(value)) {
          throw new MucError("not-acceptable", `Field '${variable}' has no option '${value}'`);
        }
        next.allowPm = value as AllowPm;
        break;
      case "muc#roomconfig_allowinvites":
        next.allowInvites = parseBoolean(variable, value);
        break;
      case "muc#roomconfig_historylength":
      case "muc#maxhistoryfetch":
        next.historyLength = parseCount(variable, value, limits.maxHistory);
        break;
      case "muc#roomconfig_enablearchiving":
      case "muc#roomconfig_enablelogging":
        next.archiving = parseBoolean(variable, value);
        break;
      default:
        // Fields of later increments or other servers' forms are ignored, as XEP-0004 allows.
        break;
    }
  }
  if (passwordProtected === false) next.password = "";
  if (passwordProtected === true && next.password === "") {
    throw new MucError("not-acceptable", "A password-protected room needs a password");
  }
  return next;
}
