// OpenMetrics (Prometheus) exposition at /metrics on the HTTP listener: sessions, routed
// stanzas, authentication results, memory, event-loop lag and uptime, for monitoring systems.
// Only addresses in `metrics_allow` may read it.

import { isIPv4, isIPv6 } from "node:net";
import type { OptionSpec } from "../core/config_schema.ts";
import { type ModuleAPI, ModuleOptionError } from "../core/modules.ts";
import { S2SStream } from "../core/s2s/s2s_stream.ts";

/** One line for module listings. */
export const description = "OpenMetrics text at /metrics for the addresses in metrics_allow";

/** Options this module reads. */
export const options: Record<string, OptionSpec> = {
  metrics_allow: {
    type: "string[]",
    default: ["127.0.0.1/8", "::1/128"],
    scope: "host",
    check: checkAllow,
    description: "IP addresses or CIDR ranges that may read /metrics (others get 403)",
  },
};

/** The message for a `metrics_allow` entry that is not an address or range, else undefined. */
function checkAllow(item: string, name: string): string | undefined {
  try {
    parseAllow(item);
    return undefined;
  } catch {
    return `option '${name}' has an invalid entry '${item}': expected an IPv4 or IPv6 ` +
      `address, optionally with a /prefix length (e.g. "10.0.0.0/8")`;
  }
}

/** The content type of the OpenMetrics 1.0 text format. */
export const OPENMETRICS_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/** An IP address as a 128-bit number (IPv4 mapped into ::ffff:0:0/96), or undefined. */
function ipBits(ip: string): bigint | undefined {
  if (ip.startsWith("[") && ip.endsWith("]")) ip = ip.slice(1, -1);
  if (isIPv4(ip)) {
    const v4 = ip.split(".").reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
    return (0xffffn << 32n) | v4;
  }
  if (!isIPv6(ip)) return undefined;
  let text = ip;
  const v4Tail = text.match(/(\d+\.\d+\.\d+\.\d+)$/);
  if (v4Tail) {
    const bits = ipBits(v4Tail[1])! & 0xffffffffn;
    text = text.slice(0, -v4Tail[1].length) +
      `${(bits >> 16n).toString(16)}:${(bits & 0xffffn).toString(16)}`;
  }
  const [head, tail] = text.includes("::") ? text.split("::") : [text, undefined];
  const headParts = head ? head.split(":") : [];
  const tailParts = tail ? tail.split(":") : [];
  const zeros = tail === undefined ? 0 : 8 - headParts.length - tailParts.length;
  const parts = [...headParts, ...Array(zeros).fill("0"), ...tailParts];
  return parts.reduce((acc, part) => (acc << 16n) | BigInt(parseInt(part, 16)), 0n);
}

/** A matcher for one `metrics_allow` entry ("ip" or "ip/prefix"); throws on bad text. */
export function parseAllow(entry: string): (ip: string) => boolean {
  const [address, prefixText] = entry.split("/");
  const bits = ipBits(address);
  if (bits === undefined) throw new Error(`metrics_allow: '${entry}' is not an IP address`);
  const v4 = isIPv4(address);
  const max = v4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (!/^\d+$/.test(prefixText ?? "0") || prefix > max) {
    throw new Error(`metrics_allow: '${entry}' has a bad prefix length`);
  }
  const full = (v4 ? 96 : 0) + prefix;
  const mask = full === 0 ? 0n : ((1n << 128n) - 1n) ^ ((1n << BigInt(128 - full)) - 1n);
  return (ip) => {
    const candidate = ipBits(ip);
    return candidate !== undefined && (candidate & mask) === (bits & mask);
  };
}

/** Serves /metrics on this host for the allowed addresses. */
export default function httpMetrics(m: ModuleAPI): void {
  const entries = m.option<string[]>("metrics_allow");
  for (const item of entries) {
    const problem = checkAllow(item, "metrics_allow");
    if (problem) throw new ModuleOptionError(`Module '${m.name}' on ${m.domain}: ${problem}`);
  }
  const allowed = entries.map(parseAllow);
  // Event-loop lag: how late a 500 ms timer fires, kept as the last measurement.
  let lagSeconds = 0;
  let expected = performance.now() + 500;
  m.addTimer(500, () => {
    const now = performance.now();
    lagSeconds = Math.max(0, now - expected) / 1000;
    expected = now + 500;
  }, { repeat: true });

  m.httpRoute("GET", "/metrics", (_request, info) => {
    if (!allowed.some((match) => match(info.ip))) {
      return new Response("Forbidden\n", {
        status: 403,
        headers: { "content-type": "text/plain" },
      });
    }
    return new Response(render(m, lagSeconds), { headers: { "content-type": OPENMETRICS_TYPE } });
  });
}

function render(m: ModuleAPI, lagSeconds: number): string {
  const server = m.server;
  const counters = server.metrics.snapshot();
  const lines: string[] = [];
  const family = (name: string, type: string, help: string, unit?: string) => {
    lines.push(`# TYPE ${name} ${type}`, `# HELP ${name} ${help}`);
    if (unit) lines.push(`# UNIT ${name} ${unit}`);
  };
  const kinds: Record<string, number> = { c2s: 0, s2sin: 0, s2sout: 0, component: 0 };
  const remoteDomains = new Set<string>();
  for (const session of server.sessions.all()) {
    if (session.kind in kinds) kinds[session.kind]++;
    if (session instanceof S2SStream) remoteDomains.add(session.remote);
  }
  family("lilt_sessions", "gauge", "Connected sessions by kind");
  for (const [kind, n] of Object.entries(kinds)) lines.push(`lilt_sessions{kind="${kind}"} ${n}`);
  family("lilt_s2s_links", "gauge", "Remote domains with at least one s2s stream");
  lines.push(`lilt_s2s_links ${remoteDomains.size}`);
  family("lilt_stanzas", "counter", "Stanzas routed by kind");
  for (const kind of ["message", "presence", "iq"]) {
    lines.push(`lilt_stanzas_total{kind="${kind}"} ${counters[`stanzas.${kind}`] ?? 0}`);
  }
  family("lilt_auth_successes", "counter", "Successful client logins");
  lines.push(`lilt_auth_successes_total ${counters["c2s.logins"] ?? 0}`);
  family("lilt_auth_failures", "counter", "Failed client and component authentications");
  lines.push(
    `lilt_auth_failures_total{kind="c2s"} ${counters["c2s.auth_failures"] ?? 0}`,
    `lilt_auth_failures_total{kind="component"} ${counters["component.auth_failures"] ?? 0}`,
  );
  const transactions = server.database.transactionStats;
  family(
    "lilt_storage_transaction_seconds",
    "summary",
    "Time of committed database transactions (batched writes, archive flushes)",
    "seconds",
  );
  lines.push(
    `lilt_storage_transaction_seconds_count ${transactions.count}`,
    `lilt_storage_transaction_seconds_sum ${transactions.seconds}`,
  );
  const memory = Deno.memoryUsage();
  family("lilt_process_resident_memory_bytes", "gauge", "Resident set size", "bytes");
  lines.push(`lilt_process_resident_memory_bytes ${memory.rss}`);
  family("lilt_process_heap_used_bytes", "gauge", "JavaScript heap in use", "bytes");
  lines.push(`lilt_process_heap_used_bytes ${memory.heapUsed}`);
  family("lilt_event_loop_lag_seconds", "gauge", "How late a periodic timer last fired", "seconds");
  lines.push(`lilt_event_loop_lag_seconds ${lagSeconds}`);
  family("lilt_uptime_seconds", "gauge", "Seconds since the server started", "seconds");
  lines.push(`lilt_uptime_seconds ${(Date.now() - server.startedAt) / 1000}`);
  lines.push("# EOF");
  return lines.join("\n") + "\n";
}
