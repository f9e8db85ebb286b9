// DNS for federation: SRV lookups ordered per RFC 2782, A/AAAA per family, and the XMPP server
// discovery of RFC 6120 §3.2 with XEP-0368 direct TLS records, over configurable nameservers.

import dns from "node:dns";
import { isIP } from "node:net";

/** Why a lookup failed: no answer in time, no records (NXDOMAIN/NODATA), or another error. */
export type DnsFailureKind = "timeout" | "no-records" | "failed";

/** A failed DNS lookup; `kind` says why, `query` and `type` say what was asked. */
export class DnsError extends Error {
  /** Why the lookup failed. */
  readonly kind: DnsFailureKind;
  /** The name asked for. */
  readonly query: string;
  /** The record type asked for ("SRV", "A", "AAAA", "A/AAAA"). */
  readonly type: string;
  /** The resolver's error code (e.g. "ESERVFAIL"), when there was one. */
  readonly code?: string;

  constructor(kind: DnsFailureKind, query: string, type: string, message: string, code?: string) {
    super(message);
    this.name = "DnsError";
    this.kind = kind;
    this.query = query;
    this.type = type;
    this.code = code;
  }
}

/** No nameserver answered in time (after every try). */
export class DnsTimeoutError extends DnsError {
  constructor(query: string, type: string, code?: string) {
    super("timeout", query, type, `DNS lookup of ${type} records for '${query}' timed out`, code);
    this.name = "DnsTimeoutError";
  }
}

/**
 * The name does not exist or has no records of the type (NXDOMAIN or NODATA). Deno's node:dns
 * reports both, and SERVFAIL too, as ENOTFOUND, so they cannot be told apart.
 */
export class DnsNoRecordsError extends DnsError {
  constructor(query: string, type: string, code?: string) {
    super("no-records", query, type, `No ${type} records for '${query}'`, code);
    this.name = "DnsNoRecordsError";
  }
}

/** One SRV record. `target` is "." when the service is decidedly not available (RFC 2782). */
export interface SrvRecord {
  /** Lower values are tried first. */
  priority: number;
  /** Relative chance among records of the same priority. */
  weight: number;
  /** The service's TCP port. */
  port: number;
  /** The target host name without trailing dot, or "." */
  target: string;
}

/** The addresses of a host by family; either list may be empty, never both. */
export interface HostAddresses {
  /** IPv6 addresses (AAAA), in the order received. */
  v6: string[];
  /** IPv4 addresses (A), in the order received. */
  v4: string[];
  /** The failure of a family that gave no addresses while the other did. */
  errors: { v6?: DnsError; v4?: DnsError };
}

/** Where to try to reach a remote XMPP server, in the order to try. */
export interface ServerTarget {
  /** Host name (or IP literal) to resolve and connect to. */
  host: string;
  /** TCP port. */
  port: number;
  /** true: from `_xmpps-server` (TLS right after connecting); false: STARTTLS later. */
  directTls: boolean;
  /** SRV priority (0 for the fallback target). */
  priority: number;
  /** SRV weight (0 for the fallback target). */
  weight: number;
}

/** The outcome of {@link Resolver.xmppServerTargets}. */
export interface XmppServerTargets {
  /**
   * "srv": targets from SRV records; "fallback": no SRV records, so the domain itself on 5269;
   * "unavailable": the domain says (with a "." target) it offers no server-to-server service.
   */
  source: "srv" | "fallback" | "unavailable";
  /** Targets in the order to try; empty when unavailable. */
  targets: ServerTarget[];
  /** One sentence for logs: why these targets (or none). */
  reason: string;
}

/** Options for {@link Resolver}. */
export interface ResolverOptions {
  /** Nameservers as "ip", "ip:port" or "[ipv6]:port"; empty or absent = the system's. */
  nameservers?: string[];
  /** Milliseconds to wait for one try. Default 5000. */
  timeoutMs?: number;
  /** Tries per nameserver before giving up. Default 2. */
  tries?: number;
  /** Random source in [0, 1) for SRV weight selection. Default Math.random. */
  random?: () => number;
}

/** The default port of server-to-server connections (RFC 6120 §3.2.2). */
export const XMPP_SERVER_PORT = 5269;

const DEFAULT_TIMEOUT_MS = 5000;
const DEFAULT_TRIES = 2;
const NO_RECORD_CODES = new Set(["ENOTFOUND", "ENODATA", "ENONAME"]);

/**
 * Orders SRV records per RFC 2782: priorities ascending; within a priority, repeatedly put the
 * zero-weight records first, take the running sums of the weights, pick a random integer in
 * [0, sum] and select the first record whose running sum is at least that number. When every
 * remaining weight is 0 the pick is uniform (RFC 2782 allows any initial arrangement).
 *
 * @example
 * ```ts
 * orderSrvRecords([{ priority: 10, weight: 60, ... }, { priority: 10, weight: 40, ... }]);
 * ```
 */
export function orderSrvRecords<T extends { priority: number; weight: number }>(
  records: readonly T[],
  random: () => number = Math.random,
): T[] {
  const byPriority = new Map<number, T[]>();
  for (const record of records) {
    const group = byPriority.get(record.priority);
    if (group) group.push(record);
    else byPriority.set(record.priority, [record]);
  }
  const ordered: T[] = [];
  for (const priority of [...byPriority.keys()].sort((a, b) => a - b)) {
    const group = byPriority.get(priority)!;
    const remaining = [
      ...group.filter((record) => record.weight === 0),
      ...group.filter((record) => record.weight !== 0),
    ];
    while (remaining.length > 0) {
      const total = remaining.reduce((sum, record) => sum + record.weight, 0);
      let index: number;
      if (total === 0) {
        index = Math.min(Math.floor(random() * remaining.length), remaining.length - 1);
      } else {
        const pick = Math.min(Math.floor(random() * (total + 1)), total);
        let running = 0;
        index = remaining.findIndex((record) => (running += record.weight) >= pick);
      }
      ordered.push(remaining.splice(index, 1)[0]);
    }
  }
  return ordered;
}

/**
 * A DNS resolver with real timeouts and configurable nameservers (node:dns underneath), which
 * knows how XMPP servers are found. Tests point it at a responder on loopback.
 *
 * @example
 * ```ts
 * const resolver = new Resolver({ nameservers: ["127.0.0.1:5353"], timeoutMs: 1000 });
 * const { targets } = await resolver.xmppServerTargets("example.org");
 * ```
 */
export class Resolver {
  #resolver: dns.promises.Resolver;
  #random: () => number;

  constructor(options: ResolverOptions = {}) {
    this.#resolver = new dns.promises.Resolver({
      timeout: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      tries: options.tries ?? DEFAULT_TRIES,
    });
    this.#random = options.random ?? Math.random;
    if (options.nameservers && options.nameservers.length > 0) {
      this.setServers(options.nameservers);
    }
  }

  /** Uses these nameservers ("ip", "ip:port" or "[ipv6]:port") from now on. */
  setServers(servers: string[]): void {
    this.#resolver.setServers(servers);
  }

  /** The nameservers in use. */
  getServers(): string[] {
    return this.#resolver.getServers();
  }

  /**
   * SRV records of `name` (e.g. "_xmpp-server._tcp.example.org") in RFC 2782 order. Throws
   * DnsNoRecordsError when there are none, DnsTimeoutError when no answer came in time.
   */
  async srv(name: string): Promise<SrvRecord[]> {
    return orderSrvRecords(await this.#lookupSrv(name), this.#random);
  }

  /**
   * IPv6 and IPv4 addresses of `host`, asked in parallel; one family failing does not fail the
   * other. Throws only when neither gives an address (DnsNoRecordsError when both have none). An
   * IP literal is returned as is.
   */
  async addresses(host: string): Promise<HostAddresses> {
    const literal = isIP(host);
    if (literal === 6) return { v6: [host], v4: [], errors: {} };
    if (literal === 4) return { v6: [], v4: [host], errors: {} };
    const [v6, v4] = await Promise.allSettled([
      this.#query(() => this.#resolver.resolve6(host), host, "AAAA"),
      this.#query(() => this.#resolver.resolve4(host), host, "A"),
    ]);
    const result: HostAddresses = {
      v6: v6.status === "fulfilled" ? v6.value : [],
      v4: v4.status === "fulfilled" ? v4.value : [],
      errors: {},
    };
    if (v6.status === "rejected") result.errors.v6 = v6.reason as DnsError;
    if (v4.status === "rejected") result.errors.v4 = v4.reason as DnsError;
    if (result.v6.length > 0 || result.v4.length > 0) return result;
    const errors = [result.errors.v6, result.errors.v4].filter((e): e is DnsError => !!e);
    const serious = errors.find((error) => error.kind !== "no-records");
    if (serious) throw serious;
    throw new DnsNoRecordsError(host, "A or AAAA");
  }

  /**
   * Where to connect for server-to-server traffic to `domain`: `_xmpps-server._tcp` (direct TLS,
   * XEP-0368) and `_xmpp-server._tcp` records mixed into one RFC 2782 order.
   *
   * - A lone "." target in a set means that service is not offered; it is ignored when the other
   *   set has records. When no usable record remains and a "." was seen, the result is
   *   "unavailable" with no targets: RFC 6120 §3.2.1 says abort, XEP-0368 forbids A/AAAA fallback.
   * - When neither lookup gives a record (NXDOMAIN/NODATA), the fallback of RFC 6120 §3.2.2: the
   *   domain itself on port 5269 with STARTTLS.
   * - A lookup that timed out or failed also falls back: RFC 6120 §3.2.1 says an initiating
   *   entity that receives no response to its SRV query SHOULD attempt the fallback process (the
   *   `reason` says so, for logs). If the other lookup did give records, those are used alone.
   */
  async xmppServerTargets(domain: string): Promise<XmppServerTargets> {
    const names = {
      direct: `_xmpps-server._tcp.${domain}`,
      starttls: `_xmpp-server._tcp.${domain}`,
    };
    const [direct, starttls] = await Promise.allSettled([
      this.#lookupSrv(names.direct),
      this.#lookupSrv(names.starttls),
    ]);
    const usable: ServerTarget[] = [];
    const notOffered: string[] = [];
    const failures: DnsError[] = [];
    for (
      const [settled, directTls, name] of [
        [direct, true, names.direct],
        [starttls, false, names.starttls],
      ] as const
    ) {
      if (settled.status === "rejected") {
        failures.push(settled.reason as DnsError);
        continue;
      }
      const real = settled.value.filter((record) => record.target !== ".");
      if (real.length === 0) notOffered.push(name);
      for (const record of real) {
        usable.push({
          host: record.target,
          port: record.port,
          directTls,
          priority: record.priority,
          weight: record.weight,
        });
      }
    }
    if (usable.length > 0) {
      const ignored = failures.filter((error) => error.kind !== "no-records");
      return {
        source: "srv",
        targets: orderSrvRecords(usable, this.#random),
        reason: `SRV records for '${domain}'` +
          (ignored.length > 0 ? ` (${ignored.map((e) => e.message).join("; ")})` : ""),
      };
    }
    if (notOffered.length > 0) {
      return {
        source: "unavailable",
        targets: [],
        reason: `'${domain}' offers no server-to-server service: the SRV target of ` +
          `${notOffered.map((name) => `'${name}'`).join(" and ")} is "."`,
      };
    }
    const why = failures.some((error) => error.kind !== "no-records")
      ? failures.filter((error) => error.kind !== "no-records").map((e) => e.message).join("; ")
      : `no SRV records for '${domain}'`;
    return {
      source: "fallback",
      targets: [{ host: domain, port: XMPP_SERVER_PORT, directTls: false, priority: 0, weight: 0 }],
      reason: `Falling back to '${domain}' on port ${XMPP_SERVER_PORT}: ${why}`,
    };
  }

  /** IPv4 addresses (A records) of `name`; throws a DnsError as {@link srv} does. */
  async ipv4(name: string): Promise<string[]> {
    return await this.#query(() => this.#resolver.resolve4(name), name, "A");
  }

  /** IPv6 addresses (AAAA records) of `name`; throws a DnsError as {@link srv} does. */
  async ipv6(name: string): Promise<string[]> {
    return await this.#query(() => this.#resolver.resolve6(name), name, "AAAA");
  }

  /**
   * TXT records of `name`, each joined from its character strings; throws a DnsError as
   * {@link srv} does.
   */
  async txt(name: string): Promise<string[]> {
    const records = await this.#query(() => this.#resolver.resolveTxt(name), name, "TXT");
    return records.map((chunks) => chunks.join(""));
  }

  /** Stops every outstanding query of this resolver (they fail with a "failed" DnsError). */
  cancel(): void {
    this.#resolver.cancel();
  }

  async #lookupSrv(name: string): Promise<SrvRecord[]> {
    const answers = await this.#query(() => this.#resolver.resolveSrv(name), name, "SRV");
    if (answers.length === 0) throw new DnsNoRecordsError(name, "SRV");
    return answers.map((answer) => ({
      priority: answer.priority,
      weight: answer.weight,
      port: answer.port,
      // node:dns gives the root target "." as "" and strips the trailing dot of others.
      target: answer.name === "" || answer.name === "." ? "." : answer.name.replace(/\.$/, ""),
    }));
  }

  async #query<T>(run: () => Promise<T>, query: string, type: string): Promise<T> {
    try {
      return await run();
    } catch (error) {
      throw classify(error, query, type);
    }
  }
}

function classify(error: unknown, query: string, type: string): DnsError {
  const code = (error as { code?: string }).code;
  if (code === "ETIMEOUT") return new DnsTimeoutError(query, type, code);
  if (code !== undefined && NO_RECORD_CODES.has(code)) {
    return new DnsNoRecordsError(query, type, code);
  }
  const detail = error instanceof Error ? error.message : String(error);
  return new DnsError(
    "failed",
    query,
    type,
    `DNS lookup of ${type} records for '${query}' failed: ${detail}`,
    code,
  );
}
