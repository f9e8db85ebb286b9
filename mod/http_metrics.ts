// OpenMetrics (Prometheus) exposition at /metrics on the HTTP listener: sessions, routed
// stanzas, authentication results, memory, event-loop lag and uptime, for monitoring systems.
// Only addresses in `metrics_allow` may read it.

import { isIPv4, isIPv6 } from "node:net";
import type { OptionSpec } from "../core/config_schema.ts";
import { metricFamilies, type MetricFamily, sampleKey } from "../core/metrics_snapshot.ts";
import { type ModuleAPI, ModuleOptionError } from "../core/modules.ts";

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

/** The content type of the Prometheus text format, for scrapers asking for text/plain. */
export const PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8";

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

  m.httpRoute("GET", "/metrics", (request, info) => {
    if (!allowed.some((match) => match(info.ip))) {
      return new Response("Forbidden\n", {
        status: 403,
        headers: { "content-type": "text/plain" },
      });
    }
    const prometheus = wantsPrometheusText(request.headers.get("accept"));
    return new Response(render(metricFamilies(m.server), prometheus), {
      headers: { "content-type": prometheus ? PROMETHEUS_TYPE : OPENMETRICS_TYPE },
    });
  });
}

/** The format a scraper asked for: OpenMetrics unless it asks for text/plain only. */
export function wantsPrometheusText(accept: string | null): boolean {
  if (!accept) return false;
  const types = accept.toLowerCase().split(",").map((part) => part.split(";")[0].trim());
  return !types.includes("application/openmetrics-text") && types.includes("text/plain");
}

/**
 * The families as text: OpenMetrics 1.0 (family names without `_total`, UNIT lines, `# EOF`)
 * or the Prometheus text format 0.0.4 (a counter's TYPE names its `_total` sample, no UNIT).
 */
function render(families: MetricFamily[], prometheus: boolean): string {
  const lines: string[] = [];
  for (const family of families) {
    const typed = prometheus && family.type === "counter" ? `${family.name}_total` : family.name;
    lines.push(`# TYPE ${typed} ${family.type}`, `# HELP ${typed} ${family.help}`);
    if (family.unit && !prometheus) lines.push(`# UNIT ${family.name} ${family.unit}`);
    for (const sample of family.samples) {
      lines.push(`${sampleKey(family.name + sample.suffix, sample.labels)} ${sample.value}`);
    }
  }
  if (!prometheus) lines.push("# EOF");
  return lines.join("\n") + "\n";
}
