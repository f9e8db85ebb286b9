// `lilt check dns`: whether the DNS of each host (and, with federation, each component) leads
// clients and remote servers to this server's addresses and configured ports, asked through the
// resolver the server itself uses (dns_nameservers). Each problem names the record that fixes it.

import { isIP } from "node:net";
import type { Config } from "../config.ts";
import { DnsError, Resolver, type SrvRecord } from "../net/dns.ts";
import { federationConfigured } from "../s2s/policy.ts";
import { type ConfiguredListener, configuredListeners, type ListenerKind } from "./listeners.ts";
import type { Problem } from "./problem.ts";

/** Options for {@link checkDns}. */
export interface DnsCheckOptions {
  /** The resolver to ask; default one on the configuration's `dns_nameservers`. */
  resolver?: Resolver;
  /**
   * Addresses that also count as this server's: the public address of a server behind NAT
   * (`lilt check dns --address 203.0.113.5`).
   */
  addresses?: string[];
  /**
   * The machine's own addresses, which wildcard listeners ("*:5222") accept on; default from
   * `Deno.networkInterfaces()`.
   */
  machineAddresses?: string[];
}

/** One XMPP SRV service and the listeners it must point at. */
interface SrvService {
  /** The SRV label, e.g. "_xmpp-client._tcp". */
  label: string;
  /** The listeners that serve it. */
  kind: ListenerKind;
  /** Who looks the record up, for messages. */
  who: string;
  /** The port used when there is no SRV record (RFC 6120 §3.2.2); none for direct TLS. */
  fallbackPort?: number;
}

const CLIENT_SERVICES: SrvService[] = [
  { label: "_xmpp-client._tcp", kind: "c2s", who: "clients", fallbackPort: 5222 },
  { label: "_xmpps-client._tcp", kind: "c2s_direct_tls", who: "clients (direct TLS)" },
];

const SERVER_SERVICES: SrvService[] = [
  { label: "_xmpp-server._tcp", kind: "s2s", who: "remote servers", fallbackPort: 5269 },
  { label: "_xmpps-server._tcp", kind: "s2s_direct_tls", who: "remote servers (direct TLS)" },
];

const CHECK_TIMEOUT_MS = 3000;
const TTL = 3600;

/** What the check of one domain's SRV records found. */
interface SrvOutcome {
  problems: Problem[];
  /** True when the service is served and, lacking SRV records, reached at the domain itself. */
  usesFallback: boolean;
}

/**
 * Checks the DNS of every host (A/AAAA, the client SRV records, and the server SRV records when
 * the host federates) and, when federation is on, that every component can be found by remote
 * servers. The problems come in configuration order, one line each with the fix.
 *
 * @example
 * ```ts
 * const problems = await checkDns(config, { addresses: ["203.0.113.5"] });
 * ```
 */
export async function checkDns(config: Config, options: DnsCheckOptions = {}): Promise<Problem[]> {
  const resolver = options.resolver ?? new Resolver({
    nameservers: config.get<string[]>("dns_nameservers"),
    timeoutMs: CHECK_TIMEOUT_MS,
    tries: 2,
  });
  const ours = new OwnAddresses(
    configuredListeners(config),
    options.addresses ?? [],
    options.machineAddresses ?? machineAddresses(),
  );
  const federation = federationConfigured(config);
  const http = ours.listeners.some((l) => l.kind === "http" || l.kind === "https");
  const problems: Problem[] = [];
  for (const host of config.hosts) {
    const federates = federation && config.hostOption<boolean>(host.domain, "s2s");
    const services = [...CLIENT_SERVICES, ...SERVER_SERVICES];
    const outcomes = await Promise.all(
      services.map((service) =>
        checkSrv(resolver, ours, host.domain, service, {
          served: ours.ports(service.kind).length > 0 &&
            (CLIENT_SERVICES.includes(service) || federates),
          target: host.domain,
          why: CLIENT_SERVICES.includes(service) ? undefined : HOST_S2S_OFF,
        })
      ),
    );
    problems.push(
      ...await checkOwnAddress(resolver, ours, host.domain, {
        needed: outcomes.some((o) => o.usesFallback) || http,
        reason: http && !outcomes.some((o) => o.usesFallback)
          ? `HTTP requests for ${host.domain} go to it`
          : `without SRV records ${host.domain} itself is connected to`,
      }),
    );
    for (const outcome of outcomes) problems.push(...outcome.problems);
  }
  if (!federation) return problems;
  for (const component of config.components) {
    const outcomes = await Promise.all(
      SERVER_SERVICES.map((service) =>
        checkSrv(resolver, ours, component.domain, service, {
          served: ours.ports(service.kind).length > 0,
          target: parentHost(config, component.domain),
        })
      ),
    );
    const usesFallback = outcomes.some((o) => o.usesFallback);
    if (usesFallback) {
      problems.push(
        ...await checkOwnAddress(resolver, ours, component.domain, {
          needed: true,
          reason: `remote servers reach component ${component.domain} through it (it has no ` +
            "_xmpp-server._tcp SRV record)",
          component: true,
          srvHint: srvRecord(`_xmpp-server._tcp.${component.domain}`, {
            port: ours.ports("s2s")[0] ?? 5269,
            target: parentHost(config, component.domain),
          }),
        }),
      );
    }
    for (const outcome of outcomes) problems.push(...outcome.problems);
  }
  return problems;
}

/** Why a host's server SRV records lead nowhere while the server federates, and the fix. */
const HOST_S2S_OFF = "s2s = false for this host: remove the record, or set s2s = true";

/** The host a component's domain sits under (its SRV target by default), else the first host. */
function parentHost(config: Config, domain: string): string {
  const parent = config.hosts.find((h) => domain.endsWith(`.${h.domain}`));
  return (parent ?? config.hosts[0])?.domain ?? domain;
}

/** The addresses that count as this server's, per kind of listener. */
class OwnAddresses {
  readonly listeners: ConfiguredListener[];
  #extra: string[];
  #machine: string[];

  constructor(listeners: ConfiguredListener[], extra: string[], machine: string[]) {
    this.listeners = listeners;
    this.#extra = extra.map(normalizeIp);
    this.#machine = machine.map(normalizeIp);
  }

  /** Distinct configured ports of a kind of listener (port 0 left out: it is not fixed). */
  ports(kind: ListenerKind): number[] {
    const ports = this.listeners.filter((l) => l.kind === kind && l.port !== 0).map((l) => l.port);
    return [...new Set(ports)];
  }

  /**
   * Where listeners of `kind` accept connections: their addresses, or the machine's for a
   * wildcard, plus the given public ones; every kind's when `kind` is undefined.
   */
  of(kind?: ListenerKind): string[] {
    const set = new Set(this.#extra);
    for (const listener of this.listeners) {
      if (kind !== undefined && listener.kind !== kind) continue;
      if (listener.wildcard) this.#machine.forEach((ip) => set.add(ip));
      else if (isIP(listener.host)) set.add(normalizeIp(listener.host));
    }
    return [...set];
  }

  /** True when `kind` has a listener on a host name, whose addresses cannot be compared. */
  hasNamedListener(kind?: ListenerKind): boolean {
    return this.listeners.some((l) =>
      (kind === undefined || l.kind === kind) && !l.wildcard && !isIP(l.host)
    );
  }

  /** The address to suggest in a record: a given public one first, then a non-loopback one. */
  suggestion(kind?: ListenerKind): string {
    const all = this.of(kind);
    return this.#extra[0] ?? all.find((ip) => !isLocalOnly(ip)) ?? all[0] ?? "192.0.2.1";
  }
}

/** The machine's interface addresses (IPv6 scope suffixes removed). */
function machineAddresses(): string[] {
  try {
    return Deno.networkInterfaces().map((i) => i.address.replace(/%.*$/, ""));
  } catch {
    return [];
  }
}

function normalizeIp(ip: string): string {
  if (isIP(ip) !== 6) return ip;
  try {
    return new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  } catch {
    return ip.toLowerCase();
  }
}

function isLocalOnly(ip: string): boolean {
  return ip.startsWith("127.") || ip === "::1" || ip.toLowerCase().startsWith("fe80:");
}

function addressRecord(name: string, ip: string): string {
  return `"${name}. ${TTL} IN ${isIP(ip) === 6 ? "AAAA" : "A"} ${ip}"`;
}

function srvRecord(name: string, record: { port: number; target: string }, p = 0, w = 5): string {
  return `"${name}. ${TTL} IN SRV ${p} ${w} ${record.port} ${record.target}."`;
}

function error(message: string): Problem {
  return { level: "error", message };
}

function warning(message: string): Problem {
  return { level: "warning", message };
}

function lookupFailure(e: unknown, what: string): Problem {
  const detail = e instanceof Error ? e.message : String(e);
  return error(
    `Cannot look up ${what}: ${detail}; check dns_nameservers and that the zone's nameservers ` +
      "answer",
  );
}

function natHint(): string {
  return "correct the record, or if this server is behind NAT name its public address with " +
    "--address";
}

/** Checks one SRV service of one domain. */
async function checkSrv(
  resolver: Resolver,
  ours: OwnAddresses,
  domain: string,
  service: SrvService,
  context: { served: boolean; target: string; why?: string },
): Promise<SrvOutcome> {
  const name = `${service.label}.${domain}`;
  const ports = ours.ports(service.kind);
  const option = ours.listeners.find((l) => l.kind === service.kind)?.option ??
    `${service.kind}_interfaces`;
  const outcome: SrvOutcome = { problems: [], usesFallback: false };
  let records: SrvRecord[];
  try {
    records = await resolver.srv(name);
  } catch (e) {
    if (!(e instanceof DnsError) || e.kind !== "no-records") {
      outcome.problems.push(lookupFailure(e, `the SRV records of ${name}`));
      return outcome;
    }
    if (!context.served) return outcome;
    const suggested = srvRecord(name, { port: ports[0], target: context.target });
    if (service.fallbackPort === undefined) {
      outcome.problems.push(warning(
        `${name} has no SRV record, so ${service.who} will not find port ${ports.join(", ")} ` +
          `(XEP-0368): add ${suggested}`,
      ));
    } else if (!ports.includes(service.fallbackPort)) {
      outcome.problems.push(error(
        `${name} has no SRV record, so ${service.who} try ${domain}:${service.fallbackPort}, ` +
          `but Lilt listens on port ${ports.join(", ")} (${option}): add ${suggested}`,
      ));
    } else {
      outcome.usesFallback = true;
    }
    return outcome;
  }
  const real = records.filter((r) => r.target !== ".");
  if (!context.served) {
    if (real.length > 0) {
      const why = (ours.ports(service.kind).length > 0 ? context.why : undefined) ??
        `Lilt has no ${option}: remove the record, or set ${option}`;
      outcome.problems.push(warning(
        `${name} points ${service.who} at ${
          real.map((r) => `${r.target}:${r.port}`).join(", ")
        } but ${why}`,
      ));
    }
    return outcome;
  }
  if (real.length === 0) {
    outcome.problems.push(error(
      `${name} says the service is not offered (target ".") but Lilt listens on port ` +
        `${ports.join(", ")} (${option}): replace it with ${
          srvRecord(name, { port: ports[0], target: context.target })
        }`,
    ));
    return outcome;
  }
  const expected = ours.of(service.kind);
  const targetChecks = await Promise.all(real.map(async (record) => {
    const found: Problem[] = [];
    if (!ports.includes(record.port)) {
      found.push(error(
        `${name} points at ${record.target}:${record.port} but Lilt listens for ` +
          `${service.who} on port ${ports.join(", ")} (${option}): change it to ${
            srvRecord(
              name,
              { port: ports[0], target: record.target },
              record.priority,
              record.weight,
            )
          }`,
      ));
    }
    found.push(...await checkTarget(resolver, ours, record.target, name, service.kind, expected));
    return found;
  }));
  outcome.problems.push(...targetChecks.flat());
  return outcome;
}

/** Checks that an SRV target resolves to addresses where the service listens. */
async function checkTarget(
  resolver: Resolver,
  ours: OwnAddresses,
  target: string,
  from: string,
  kind: ListenerKind,
  expected: string[],
): Promise<Problem[]> {
  let found: string[];
  try {
    const addresses = await resolver.addresses(target);
    found = [...addresses.v6, ...addresses.v4].map(normalizeIp);
  } catch (e) {
    if (e instanceof DnsError && e.kind === "no-records") {
      return [error(
        `${target} (the target of ${from}) has no A or AAAA record: add ${
          addressRecord(target, ours.suggestion(kind))
        }`,
      )];
    }
    return [lookupFailure(e, `the addresses of ${target} (the target of ${from})`)];
  }
  if (ours.hasNamedListener(kind) || expected.length === 0) return [];
  const foreign = found.filter((ip) => !expected.includes(ip));
  if (foreign.length === 0) return [];
  const listing = `this server's are ${expected.join(", ")}`;
  if (foreign.length === found.length) {
    return [error(
      `${target} (the target of ${from}) resolves to ${foreign.join(", ")}, not to this ` +
        `server (${listing}): ${natHint()}`,
    )];
  }
  return foreign.map((ip) =>
    warning(
      `${target} (the target of ${from}) also resolves to ${ip}, which is not this server ` +
        `(${listing}): connections there fail; remove that record, or if it is this server's ` +
        "public address behind NAT name it with --address",
    )
  );
}

/** Checks the A/AAAA records of a host or component domain itself. */
async function checkOwnAddress(
  resolver: Resolver,
  ours: OwnAddresses,
  domain: string,
  context: {
    needed: boolean;
    reason: string;
    component?: boolean;
    srvHint?: string;
  },
): Promise<Problem[]> {
  let found: string[];
  try {
    const addresses = await resolver.addresses(domain);
    found = [...addresses.v6, ...addresses.v4].map(normalizeIp);
  } catch (e) {
    if (!(e instanceof DnsError) || e.kind !== "no-records") {
      return [lookupFailure(e, `the addresses of ${domain}`)];
    }
    const record = addressRecord(domain, ours.suggestion());
    if (context.component) {
      return [error(
        `Component ${domain} cannot be found by remote servers: it has no _xmpp-server._tcp ` +
          `SRV record and no A or AAAA record; add ${context.srvHint} or ${record}`,
      )];
    }
    if (context.needed) {
      return [error(`${domain} has no A or AAAA record (${context.reason}): add ${record}`)];
    }
    return [warning(
      `${domain} has no A or AAAA record; its SRV records lead to the server, but clients ` +
        `that skip SRV do not: add ${record}`,
    )];
  }
  if (!context.needed || ours.hasNamedListener()) return [];
  const expected = ours.of();
  if (expected.length === 0 || found.some((ip) => expected.includes(ip))) return [];
  return [error(
    `${domain} resolves to ${found.join(", ")}, not to this server (this server's are ` +
      `${expected.join(", ")}) while ${context.reason}: ${natHint()}`,
  )];
}
