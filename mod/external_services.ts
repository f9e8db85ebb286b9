// XEP-0215 external service discovery: tells a host's own users which STUN and TURN servers to
// use for audio and video calls, with short-lived TURN credentials made from a secret shared with
// the TURN server (the TURN REST API scheme that coturn checks with `use-auth-secret`).

import { createHmac } from "node:crypto";
import { isIP } from "node:net";
import type { OptionSpec, TableProblem } from "../core/config_schema.ts";
import type { StanzaEvent } from "../core/hosts.ts";
import { tryParseJid } from "../core/jid.ts";
import { type ModuleAPI, ModuleOptionError } from "../core/modules.ts";
import { Element } from "../core/xml/element.ts";
import { errorReply, reply } from "../core/xml/stanza.ts";

/** The XEP-0215 namespace clients ask. */
export const NS_EXTDISCO = "urn:xmpp:extdisco:2";
/** The namespace of XEP-0215 before version 0.7, still answered for older clients. */
export const NS_EXTDISCO_1 = "urn:xmpp:extdisco:1";

/** The service types this module serves (RFC 7064 and RFC 7065 URI schemes). */
export const SERVICE_TYPES = ["stun", "stuns", "turn", "turns"] as const;

/** One service type. */
export type ServiceType = typeof SERVICE_TYPES[number];

/** One external service as configured. */
export interface ExternalService {
  /** stun, stuns, turn or turns. */
  type: ServiceType;
  /** Host name or IP address clients connect to. */
  host: string;
  /** Port (default 3478, or 5349 for stuns and turns). */
  port: number;
  /** udp or tcp (default udp, or tcp for stuns and turns). */
  transport: "udp" | "tcp";
  /** A label for people. */
  name?: string;
  /** The shared secret for TURN REST API credentials (the service's own, or the host's). */
  secret?: string;
  /** Credentials only on request (`<credentials/>`), not in the services list. */
  restricted: boolean;
}

/** Time-limited credentials for one user at a TURN server. */
export interface TurnCredentials {
  /** "<expiry unix time>:<user>", as the TURN REST API scheme wants it. */
  username: string;
  /** base64(HMAC-SHA1(secret, username)). */
  password: string;
  /** Expiry in seconds since the epoch. */
  expires: number;
}

/** One line for module listings. */
export const description =
  "XEP-0215: STUN/TURN servers for calls, with time-limited TURN credentials (coturn's use-auth-secret)";

const SERVICE_KEYS = ["type", "host", "port", "transport", "name", "restricted", "secret"];

/** Options this module reads. */
export const options: Record<string, OptionSpec> = {
  external_services: {
    type: "table[]",
    default: [],
    scope: "host",
    checkTable: (table) => readService(table).problems,
    description: "STUN/TURN services announced to this host's users (XEP-0215): a list of " +
      '{ type = "stun" | "stuns" | "turn" | "turns", host, port, transport = "udp" | "tcp", ' +
      "name, restricted, secret } tables",
  },
  external_service_secret: {
    type: "string",
    default: "",
    scope: "host",
    description: "Secret shared with the TURN server (coturn's static-auth-secret), for TURN " +
      "services without a secret of their own",
  },
  external_service_ttl: {
    type: "integer",
    default: 86400,
    min: 60,
    max: 2592000,
    scope: "host",
    description: "Seconds TURN credentials stay valid",
  },
};

/** "string \"x\"" or "integer 5": how a found value is named in messages. */
function shown(value: unknown): string {
  if (typeof value === "string") return `string ${JSON.stringify(value)}`;
  if (typeof value === "number") return `number ${value}`;
  if (typeof value === "boolean") return `boolean ${value}`;
  if (Array.isArray(value)) return "an array";
  return value === null || value === undefined ? "nothing" : "a table";
}

/** True for an IP address or a DNS host name (letters, digits, hyphens, dots). */
function isHostName(text: string): boolean {
  if (isIP(text) !== 0) return true;
  if (text.length === 0 || text.length > 253) return false;
  const label = /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$/;
  return text.replace(/\.$/, "").split(".").every((part) => label.test(part));
}

/**
 * Reads one `external_services` table: the service, or the problems found (each naming the key
 * it is about). The secret is the service's own; the host's is applied by the caller.
 *
 * @example
 * ```ts
 * readService({ type: "turn", host: "turn.example.com", secret: "s" }).service?.port; // 3478
 * readService({ type: "tur", host: "x" }).problems[0].key; // "type"
 * ```
 */
export function readService(
  table: Record<string, unknown>,
): { service?: ExternalService; problems: TableProblem[] } {
  const problems: TableProblem[] = [];
  for (const key of Object.keys(table)) {
    if (!SERVICE_KEYS.includes(key)) {
      problems.push({ key, message: `unknown key '${key}' (expected ${SERVICE_KEYS.join(", ")})` });
    }
  }
  const { type, host, port, transport, name, restricted, secret } = table;
  if (type === undefined) {
    problems.push({ message: `'type' is missing (one of ${SERVICE_TYPES.join(", ")})` });
  } else if (!(SERVICE_TYPES as readonly unknown[]).includes(type)) {
    problems.push({
      key: "type",
      message: `'type' must be one of ${SERVICE_TYPES.join(", ")}, found ${shown(type)}`,
    });
  }
  if (host === undefined) {
    problems.push({ message: "'host' is missing (the STUN/TURN server's name or address)" });
  } else if (typeof host !== "string" || !isHostName(host)) {
    problems.push({
      key: "host",
      message: `'host' must be a host name or IP address such as "turn.example.com", found ${
        shown(host)
      }`,
    });
  }
  if (
    port !== undefined &&
    (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535)
  ) {
    problems.push({
      key: "port",
      message: `'port' must be an integer from 1 to 65535, found ${shown(port)}`,
    });
  }
  if (transport !== undefined && transport !== "udp" && transport !== "tcp") {
    problems.push({
      key: "transport",
      message: `'transport' must be "udp" or "tcp", found ${shown(transport)}`,
    });
  }
  if (name !== undefined && (typeof name !== "string" || name === "")) {
    problems.push({
      key: "name",
      message: `'name' must be a non-empty string, found ${shown(name)}`,
    });
  }
  if (restricted !== undefined && typeof restricted !== "boolean") {
    problems.push({
      key: "restricted",
      message: `'restricted' must be true or false, found ${shown(restricted)}`,
    });
  }
  const isTurn = type === "turn" || type === "turns";
  if (secret !== undefined) {
    if (typeof secret !== "string" || secret === "") {
      problems.push({
        key: "secret",
        message: `'secret' must be a non-empty string, found ${shown(secret)}`,
      });
    } else if (!isTurn && (SERVICE_TYPES as readonly unknown[]).includes(type)) {
      problems.push({
        key: "secret",
        message: `'secret' is for turn and turns services; a ${type} service needs no credentials`,
      });
    }
  }
  if (restricted === true && !isTurn && (SERVICE_TYPES as readonly unknown[]).includes(type)) {
    problems.push({
      key: "restricted",
      message: `'restricted' is for services with credentials (turn, turns), not ${type}`,
    });
  }
  if (problems.length > 0) return { problems };
  const serviceType = type as ServiceType;
  const secure = serviceType === "stuns" || serviceType === "turns";
  return {
    service: {
      type: serviceType,
      host: host as string,
      port: (port as number | undefined) ?? (secure ? 5349 : 3478),
      transport: (transport as "udp" | "tcp" | undefined) ?? (secure ? "tcp" : "udp"),
      ...(name !== undefined ? { name: name as string } : {}),
      ...(secret !== undefined ? { secret: secret as string } : {}),
      restricted: restricted === true,
    },
    problems,
  };
}

/**
 * TURN REST API credentials: the username is the expiry time and the user joined by ":", the
 * password base64(HMAC-SHA1(secret, username)), which a TURN server holding the same secret
 * recomputes (coturn: `use-auth-secret` with `static-auth-secret`).
 *
 * @example
 * ```ts
 * turnCredentials("s3cret", "alice@example.com", { ttl: 86400 }).username;
 * // "1767312000:alice@example.com"
 * ```
 */
export function turnCredentials(
  secret: string,
  user: string,
  options: { ttl: number; now?: number },
): TurnCredentials {
  const expires = Math.floor((options.now ?? Date.now()) / 1000) + options.ttl;
  const username = `${expires}:${user}`;
  const password = createHmac("sha1", secret).update(username).digest("base64");
  return { username, password, expires };
}

/** A unix time as an XEP-0082 DateTime in UTC, without fractions of a second. */
function dateTime(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** Answers XEP-0215 queries from this host's users with the configured services. */
export default function externalServices(m: ModuleAPI): void {
  if (m.host.kind !== "local") {
    m.log.debug("Module external_services serves a [[host]]'s users; idle on {host}", {
      host: m.domain,
    });
    return;
  }
  const services = configuredServices(m);
  if (services.length === 0) return;
  const ttl = m.option<number>("external_service_ttl");

  /** Adds the service as a `<service/>` child, with credentials for `user` when given. */
  const addService = (parent: Element, service: ExternalService, user?: string): void => {
    const el = parent.c("service", {
      type: service.type,
      host: service.host,
      port: String(service.port),
      transport: service.transport,
      name: service.name,
    });
    if (service.secret === undefined) return;
    el.attrs.restricted = "1";
    if (user === undefined) return;
    const credentials = turnCredentials(service.secret, user, { ttl });
    el.attrs.username = credentials.username;
    el.attrs.password = credentials.password;
    el.attrs.expires = dateTime(credentials.expires);
  };

  /** The user a query comes from: an account of this host, else an error was sent. */
  const userOf = ({ stanza, origin }: StanzaEvent): string | undefined => {
    const from = tryParseJid(stanza.attrs.from ?? "");
    if (origin.kind === "c2s" && from?.local && from.domain === m.domain) {
      return from.bareString();
    }
    origin.send(errorReply(stanza, "forbidden", {
      text: "External services are offered to accounts of this server only",
    }));
    return undefined;
  };

  const servicesQuery = (event: StanzaEvent): boolean => {
    const user = userOf(event);
    if (user === undefined) return true;
    const query = event.stanza.getChild("services")!;
    const wanted = query.attr("type");
    const answer = reply(event.stanza, { type: "result" });
    const list = answer.c("services", { xmlns: query.ns, type: wanted });
    for (const service of services) {
      if (wanted !== undefined && service.type !== wanted) continue;
      addService(list, service, service.restricted ? undefined : user);
    }
    event.origin.send(answer);
    return true;
  };

  const credentialsQuery = (event: StanzaEvent): boolean => {
    const { stanza, origin } = event;
    const user = userOf(event);
    if (user === undefined) return true;
    const query = stanza.getChild("credentials")!;
    const requested = query.getChildren("service", query.ns);
    const fail = (condition: "bad-request" | "item-not-found", text: string) => {
      origin.send(errorReply(stanza, condition, { text }));
      return true;
    };
    if (requested.length === 0) {
      return fail("bad-request", "Name the service: <service host='...' type='...'/>");
    }
    const answer = reply(stanza, { type: "result" });
    const out = answer.c("credentials", { xmlns: query.ns });
    for (const wanted of requested) {
      const host = wanted.attr("host");
      const type = wanted.attr("type");
      const portText = wanted.attr("port");
      if (!host || !type) return fail("bad-request", "A <service/> needs 'host' and 'type'");
      if (portText !== undefined && !/^\d{1,5}$/.test(portText)) {
        return fail("bad-request", `'port' must be a port number, found '${portText}'`);
      }
      const matching = services.filter((service) =>
        service.host.toLowerCase() === host.toLowerCase() && service.type === type &&
        (portText === undefined || service.port === Number(portText))
      );
      if (matching.length === 0) {
        return fail("item-not-found", `No ${type} service at ${host} is known here`);
      }
      const withCredentials = matching.filter((service) => service.secret !== undefined);
      if (withCredentials.length === 0) {
        return fail("item-not-found", `The ${type} service at ${host} needs no credentials`);
      }
      for (const service of withCredentials) addService(out, service, user);
    }
    origin.send(answer);
    return true;
  };

  m.addFeature(NS_EXTDISCO);
  m.addFeature(NS_EXTDISCO_1);
  m.hook("iq-get/host/urn:xmpp:extdisco:2:services", servicesQuery);
  m.hook("iq-get/host/urn:xmpp:extdisco:2:credentials", credentialsQuery);
  m.hook("iq-get/host/urn:xmpp:extdisco:1:services", servicesQuery);
  m.hook("iq-get/host/urn:xmpp:extdisco:1:credentials", credentialsQuery);
}

/** The host's services, checked; a bad entry or a TURN service without a secret throws. */
function configuredServices(m: ModuleAPI): ExternalService[] {
  const raw = m.option<unknown>("external_services");
  const config = m.server.config;
  const fail = (message: string): never => {
    const line = config.lineOf(m.domain, "external_services");
    const where = line ? `${config.file}:${line}: ` : "";
    throw new ModuleOptionError(
      `${where}Option 'external_services' of module '${m.name}' ${message}`,
    );
  };
  let entries: [string, unknown][];
  if (Array.isArray(raw)) entries = raw.map((entry, i) => [String(i + 1), entry]);
  else if (typeof raw === "object" && raw !== null) {
    entries = Object.entries(raw).map(([key, entry]) => [`'${key}'`, entry]);
  } else return fail(`must be a list of tables, found ${shown(raw)}`);
  const hostSecret = m.option<string>("external_service_secret");
  const services: ExternalService[] = [];
  for (const [label, entry] of entries) {
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      fail(`entry ${label} must be a table, found ${shown(entry)}`);
    }
    const { service, problems } = readService(entry as Record<string, unknown>);
    if (!service) return fail(`entry ${label}: ${problems.map((p) => p.message).join("; ")}`);
    if (service.type === "turn" || service.type === "turns") {
      const secret = service.secret ?? (hostSecret === "" ? undefined : hostSecret);
      if (secret === undefined) {
        fail(
          `entry ${label}: a ${service.type} service needs the secret shared with the TURN ` +
            "server: set external_service_secret (coturn's static-auth-secret) or the entry's 'secret'",
        );
      }
      service.secret = secret;
    }
    services.push(service);
  }
  return services;
}
