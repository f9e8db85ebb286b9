// The server's metrics as named families with labels, read in one place so /metrics
// (mod/http_metrics.ts) and the shell's `stats show` give the same names and values, whether
// or not the http_metrics module is loaded.

import type { EventLoopLag } from "./event_loop_lag.ts";
import type { Metrics } from "./metrics.ts";
import { S2SStream } from "./s2s/s2s_stream.ts";
import type { SessionManager } from "./sessions.ts";

/** What the snapshot reads of the running server. */
export interface MetricsSource {
  readonly metrics: Metrics;
  readonly sessions: SessionManager;
  readonly database: { readonly transactionStats: { count: number; seconds: number } };
  /** When the server started (ms epoch). */
  readonly startedAt: number;
  readonly loopLag: EventLoopLag;
}

/** The OpenMetrics type of a family. */
export type MetricType = "counter" | "gauge" | "summary";

/** One sample of a family: its name is the family's name plus `suffix`. */
export interface FamilySample {
  /** "" for a gauge, "_total" for a counter, "_count"/"_sum" for a summary. */
  suffix: string;
  labels?: Record<string, string>;
  value: number;
}

/** One metric family, as /metrics exposes it. */
export interface MetricFamily {
  name: string;
  type: MetricType;
  help: string;
  /** The OpenMetrics unit (the name ends in `_<unit>`). */
  unit?: string;
  samples: FamilySample[];
}

/** One sample with its full name (as a scraper sees it) and its family's type and help. */
export interface MetricSample {
  /** The sample name, e.g. `lilt_stanzas_total`. */
  name: string;
  labels: Record<string, string>;
  value: number;
  type: MetricType;
  help: string;
}

/** The stanza kinds counted by direction. */
const STANZA_KINDS = ["message", "presence", "iq"];

/** The families /metrics exposes, read now. */
export function metricFamilies(source: MetricsSource): MetricFamily[] {
  const counters = source.metrics.snapshot();
  const kinds: Record<string, number> = { c2s: 0, s2sin: 0, s2sout: 0, component: 0 };
  const remoteDomains = new Set<string>();
  for (const session of source.sessions.all()) {
    if (session.kind in kinds) kinds[session.kind]++;
    if (session instanceof S2SStream) remoteDomains.add(session.remote);
  }
  const transactions = source.database.transactionStats;
  const memory = Deno.memoryUsage();
  return [
    {
      name: "lilt_sessions",
      type: "gauge",
      help: "Connected sessions by kind",
      samples: Object.entries(kinds).map(([kind, value]) => ({
        suffix: "",
        labels: { kind },
        value,
      })),
    },
    {
      name: "lilt_s2s_links",
      type: "gauge",
      help: "Remote domains with at least one s2s stream",
      samples: [{ suffix: "", value: remoteDomains.size }],
    },
    {
      name: "lilt_stanzas",
      type: "counter",
      help: "Stanzas by direction (in: routed; out: written to streams) and kind",
      samples: [
        ...STANZA_KINDS.map((kind) => ({
          suffix: "_total",
          labels: { direction: "in", kind },
          value: counters[`stanzas.${kind}`] ?? 0,
        })),
        ...STANZA_KINDS.map((kind) => ({
          suffix: "_total",
          labels: { direction: "out", kind },
          value: counters[`stanzas_out.${kind}`] ?? 0,
        })),
      ],
    },
    {
      name: "lilt_auth_successes",
      type: "counter",
      help: "Successful client logins",
      samples: [{ suffix: "_total", value: counters["c2s.logins"] ?? 0 }],
    },
    {
      name: "lilt_auth_failures",
      type: "counter",
      help: "Failed client and component authentications",
      samples: [
        { suffix: "_total", labels: { kind: "c2s" }, value: counters["c2s.auth_failures"] ?? 0 },
        {
          suffix: "_total",
          labels: { kind: "component" },
          value: counters["component.auth_failures"] ?? 0,
        },
      ],
    },
    {
      name: "lilt_auth_throttled",
      type: "counter",
      help: "Client logins held back by the login throttle: made to wait, or refused after " +
        "waiting too long",
      samples: [
        {
          suffix: "_total",
          labels: { outcome: "delayed" },
          value: counters["c2s.auth_delayed"] ?? 0,
        },
        {
          suffix: "_total",
          labels: { outcome: "refused" },
          value: counters["c2s.auth_throttled"] ?? 0,
        },
      ],
    },
    {
      name: "lilt_storage_transaction_seconds",
      type: "summary",
      help: "Time of committed database transactions (batched writes, archive flushes)",
      unit: "seconds",
      samples: [
        { suffix: "_count", value: transactions.count },
        { suffix: "_sum", value: transactions.seconds },
      ],
    },
    {
      name: "lilt_process_resident_memory_bytes",
      type: "gauge",
      help: "Resident set size",
      unit: "bytes",
      samples: [{ suffix: "", value: memory.rss }],
    },
    {
      name: "lilt_process_heap_used_bytes",
      type: "gauge",
      help: "JavaScript heap in use",
      unit: "bytes",
      samples: [{ suffix: "", value: memory.heapUsed }],
    },
    {
      name: "lilt_event_loop_lag_seconds",
      type: "gauge",
      help: "How late a periodic timer last fired",
      unit: "seconds",
      samples: [{ suffix: "", value: source.loopLag.lastSeconds }],
    },
    {
      name: "lilt_uptime_seconds",
      type: "gauge",
      help: "Seconds since the server started",
      unit: "seconds",
      samples: [{ suffix: "", value: (Date.now() - source.startedAt) / 1000 }],
    },
  ];
}

/** Every sample of the families, in order, with its full name, labels, type and help. */
export function metricSamples(families: MetricFamily[]): MetricSample[] {
  return families.flatMap((family) =>
    family.samples.map((sample) => ({
      name: family.name + sample.suffix,
      labels: sample.labels ?? {},
      value: sample.value,
      type: family.type,
      help: family.help,
    }))
  );
}

/** A sample's name with its labels as a scraper writes them: `name{a="x",b="y"}`. */
export function sampleKey(name: string, labels: Record<string, string> | undefined): string {
  const entries = Object.entries(labels ?? {});
  if (entries.length === 0) return name;
  return `${name}{${entries.map(([k, v]) => `${k}="${v}"`).join(",")}}`;
}
