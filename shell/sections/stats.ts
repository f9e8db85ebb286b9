// The `stats` section of the admin shell: `show` lists the metrics /metrics exposes, by the
// same names and labels (read through core/metrics_snapshot.ts, so the http_metrics module need
// not be loaded); `counters` lists the server's internal counters by their dotted names, with
// live session counts and a storage latency probe.

import type { CommandSpec } from "../../core/admin_commands.ts";
import type { AdminServer } from "../../core/admin_commands.ts";
import { metricFamilies, metricSamples, sampleKey } from "../../core/metrics_snapshot.ts";
import { presenceOf } from "../../core/presence_state.ts";

/** A `*` glob (anchored), or a plain substring when the pattern has no `*`. */
function matcher(pattern: string | undefined): (name: string) => boolean {
  if (!pattern) return () => true;
  if (!pattern.includes("*")) return (name) => name.includes(pattern);
  const source = pattern.split("*").map((part) => part.replace(/[.+?^${}()|[\]\\]/g, "\\$&"))
    .join(".*");
  const regex = new RegExp(`^${source}$`);
  return (name) => regex.test(name);
}

/** Milliseconds a trivial read of the accounts table takes (one indexed lookup). */
function storageLatencyMs(server: AdminServer): number {
  const start = performance.now();
  server.database.prepare("SELECT 1 FROM accounts WHERE host = ? AND user = ?")
    .get("", "");
  return Math.round((performance.now() - start) * 1000) / 1000;
}

/** Every value `stats counters` reports, by name. */
export function collectStats(server: AdminServer): Record<string, number> {
  const sessions = server.sessions.all().filter((s) => s.kind !== "internal");
  const values: Record<string, number> = {
    ...server.metrics.snapshot(),
    "sessions.c2s": sessions.filter((s) => s.kind === "c2s").length,
    "sessions.authenticated": sessions.filter((s) => s.authenticated).length,
    "sessions.available": sessions.filter((s) => presenceOf(s).available).length,
    "storage.latency_ms": storageLatencyMs(server),
  };
  return Object.fromEntries(Object.entries(values).sort(([a], [b]) => a.localeCompare(b)));
}

/** The commands of the `stats` section. */
export function statsCommands(): CommandSpec[] {
  return [
    {
      section: "stats",
      name: "show",
      summary: "Show the metrics /metrics exposes, by the same names and labels " +
        "(FILTER: substring or glob of name{labels})",
      args: [{ name: "filter", kind: "string", optional: true }],
      run: ({ server }, [filter]) => {
        const matches = matcher(filter);
        const samples = metricSamples(metricFamilies(server)).filter((sample) =>
          matches(sample.name) || matches(sampleKey(sample.name, sample.labels))
        );
        if (samples.length === 0 && filter) {
          return { message: `No metric matches '${filter}'`, data: [] };
        }
        return {
          table: {
            columns: ["name", "labels", "value", "type"],
            rows: samples.map((sample) => [
              sample.name,
              Object.entries(sample.labels).map(([k, v]) => `${k}="${v}"`).join(","),
              sample.value,
              sample.type,
            ]),
          },
          data: samples,
        };
      },
    },
    {
      section: "stats",
      name: "counters",
      summary: "Show the internal counters (module counters too), session counts and storage " +
        "latency by dotted name (PATTERN: substring or glob)",
      args: [{ name: "pattern", kind: "string", optional: true }],
      run: ({ server }, [pattern]) => {
        const matches = matcher(pattern);
        const data = Object.fromEntries(
          Object.entries(collectStats(server)).filter(([name]) => matches(name)),
        );
        return {
          table: { columns: ["name", "value"], rows: Object.entries(data) },
          data,
        };
      },
    },
  ];
}
