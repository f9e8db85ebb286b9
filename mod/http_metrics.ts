// OpenMetrics (Prometheus) exposition at /metrics on the HTTP listener: sessions, routed
// stanzas, authentication results, memory, event-loop lag and uptime, for monitoring systems.
// Only addresses in `metrics_allow` may read it.

import type { OptionSpec } from "../core/config_schema.ts";
import { metricFamilies, type MetricFamily, sampleKey } from "../core/metrics_snapshot.ts";
import { type ModuleAPI, ModuleOptionError } from "../core/modules.ts";
import { AddressRanges, checkAddressRange } from "../core/net/address_ranges.ts";

/** One line for module listings. */
export const description = "OpenMetrics text at /metrics for the addresses in metrics_allow";

/** Options this module reads. */
export const options: Record<string, OptionSpec> = {
  metrics_allow: {
    type: "string[]",
    default: ["127.0.0.1/8", "::1/128"],
    scope: "host",
    check: checkAddressRange,
    description: "IP addresses or CIDR ranges that may read /metrics (others get 403)",
  },
};

/** The content type of the OpenMetrics 1.0 text format. */
export const OPENMETRICS_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/** The content type of the Prometheus text format, for scrapers asking for text/plain. */
export const PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Serves /metrics on this host for the allowed addresses. */
export default function httpMetrics(m: ModuleAPI): void {
  const entries = m.option<string[]>("metrics_allow");
  for (const item of entries) {
    const problem = checkAddressRange(item, "metrics_allow");
    if (problem) throw new ModuleOptionError(`Module '${m.name}' on ${m.domain}: ${problem}`);
  }
  const allowed = AddressRanges.parse(entries);

  m.httpRoute("GET", "/metrics", (request, info) => {
    if (!allowed.includes(info.ip)) {
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
