// The `debug` section of the admin shell: what explains a slow or swelling server to an
// operator: event-loop lag (`loop`), open connections and file descriptors by kind (`handles`)
// and the process's memory as V8 and Deno report it (`memory`).

import v8 from "node:v8";
import type { AdminServer, CommandSpec } from "../../core/admin_commands.ts";
import { LAG_SAMPLE_INTERVAL_MS, LAG_WINDOW_MS } from "../../core/event_loop_lag.ts";
import { C2SSession } from "../../core/net/c2s.ts";

/** Milliseconds with three decimals, from seconds. */
function milliseconds(seconds: number): number {
  return Math.round(seconds * 1_000_000) / 1000;
}

function mebibytes(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}

/** Open file descriptors by what they point at, read from /proc (Linux only). */
export interface DescriptorCounts {
  total: number;
  sockets: number;
  files: number;
  pipes: number;
  /** epoll, eventfd, timerfd, /dev entries and the like. */
  other: number;
  /** The soft limit on open files (`Max open files` in /proc/self/limits), if readable. */
  limit: number | null;
}

/**
 * The process's open file descriptors by kind, or undefined where /proc/self/fd cannot be
 * read (FreeBSD without linprocfs, a sandbox without --allow-read on /proc).
 */
export function openDescriptors(): DescriptorCounts | undefined {
  const counts: DescriptorCounts = {
    total: 0,
    sockets: 0,
    files: 0,
    pipes: 0,
    other: 0,
    limit: null,
  };
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync("/proc/self/fd")];
  } catch {
    return undefined;
  }
  for (const entry of entries) {
    let target: string;
    try {
      target = Deno.readLinkSync(`/proc/self/fd/${entry.name}`);
    } catch {
      continue; // closed since the listing (the listing's own descriptor, for one)
    }
    counts.total++;
    if (target.startsWith("socket:")) counts.sockets++;
    else if (target.startsWith("pipe:")) counts.pipes++;
    else if (target.startsWith("/") && !target.startsWith("/dev/")) counts.files++;
    else counts.other++;
  }
  try {
    const limits = Deno.readTextFileSync("/proc/self/limits");
    const line = limits.split("\n").find((l) => l.startsWith("Max open files"));
    const soft = line?.slice("Max open files".length).trim().split(/\s+/)[0];
    if (soft && /^\d+$/.test(soft)) counts.limit = Number(soft);
  } catch {
    // no limits file: the limit stays unknown
  }
  return counts;
}

/** Client sessions by the transport they are on; `detached` ones wait for resumption. */
function c2sByTransport(server: AdminServer): Record<string, number> {
  const counts: Record<string, number> = {
    tcp: 0,
    "direct-tls": 0,
    websocket: 0,
    bosh: 0,
    detached: 0,
  };
  for (const session of server.sessions.all()) {
    if (!(session instanceof C2SSession)) continue;
    const kind = session.transport ? session.transportKind : "detached";
    counts[kind] = (counts[kind] ?? 0) + 1;
  }
  return counts;
}

/** Sessions of the other kinds (server-to-server in and out, components). */
function otherSessions(server: AdminServer): Record<"s2sin" | "s2sout" | "component", number> {
  const counts = { s2sin: 0, s2sout: 0, component: 0 };
  for (const session of server.sessions.all()) {
    if (session.kind in counts) counts[session.kind as keyof typeof counts]++;
  }
  return counts;
}

/** What Deno does not let the server count, said once in `debug handles`. */
const NOT_COUNTED = "Deno 2 has no list of open resources or timers (Deno.resources() was " +
  "removed): timers are not counted";

/** The commands of the `debug` section. */
export function debugCommands(): CommandSpec[] {
  return [
    {
      section: "debug",
      name: "loop",
      summary: "Show event-loop lag: how late a periodic timer fired last, and at most over " +
        "the last minute",
      args: [],
      run: ({ server }) => {
        const lag = server.loopLag;
        const data = {
          last_ms: milliseconds(lag.lastSeconds),
          max_ms_last_minute: milliseconds(lag.maxSeconds),
          interval_ms: LAG_SAMPLE_INTERVAL_MS,
          window_seconds: LAG_WINDOW_MS / 1000,
          samples: lag.samples,
          sampling: lag.running,
        };
        return {
          table: {
            columns: ["measure", "value", "meaning"],
            rows: [
              ["last", `${data.last_ms} ms`, "how late the latest sample fired"],
              [
                "max",
                `${data.max_ms_last_minute} ms`,
                `largest lag over the last ${data.window_seconds} s`,
              ],
              ["interval", `${data.interval_ms} ms`, "the sampling timer's period"],
              ["samples", data.samples, "samples taken since the server started"],
            ],
          },
          data,
        };
      },
    },
    {
      section: "debug",
      name: "handles",
      summary: "Show open connections by kind (listeners, client transports, s2s, " +
        "components) and open file descriptors",
      args: [],
      run: async ({ server }) => {
        const rows: (string | number)[][] = [];
        const listeners = await Promise.all(server.listeners.map(async (l) => ({
          kind: l.kind,
          host: l.host,
          port: l.port,
          connections: l.connections ? await l.connections() : null,
        })));
        for (const l of listeners) {
          rows.push([
            "listener",
            `${l.kind} ${l.host}:${l.port}`,
            l.connections ?? "not counted (served by Deno.serve directly)",
          ]);
        }
        const c2s = c2sByTransport(server);
        for (const [transport, count] of Object.entries(c2s)) rows.push(["c2s", transport, count]);
        const others = otherSessions(server);
        rows.push(["s2s", "in", others.s2sin], ["s2s", "out", others.s2sout]);
        rows.push(["component", "connected", others.component]);
        const descriptors = openDescriptors();
        if (descriptors) {
          for (const kind of ["sockets", "files", "pipes", "other"] as const) {
            rows.push(["fd", kind, descriptors[kind]]);
          }
          rows.push([
            "fd",
            descriptors.limit === null ? "total" : `total (limit ${descriptors.limit})`,
            descriptors.total,
          ]);
        } else {
          rows.push(["fd", "total", "not available (no /proc/self/fd)"]);
        }
        rows.push(["timers", "", "not counted (Deno 2 does not list them)"]);
        return {
          table: { columns: ["kind", "detail", "open"], rows },
          data: {
            listeners,
            c2s,
            s2s: { in: others.s2sin, out: others.s2sout },
            components: others.component,
            file_descriptors: descriptors ?? null,
            timers: null,
            note: NOT_COUNTED,
          },
        };
      },
    },
    {
      section: "debug",
      name: "memory",
      summary: "Show memory: resident set, JavaScript heap (used, reserved, limit), memory " +
        "outside the heap",
      args: [],
      run: () => {
        const usage = Deno.memoryUsage();
        const heap = v8.getHeapStatistics();
        const rows: [string, string, number | null][] = [
          ["rss", "resident set size of the process", usage.rss],
          ["heap_used", "JavaScript heap in use", usage.heapUsed],
          ["heap_total", "JavaScript heap reserved", usage.heapTotal],
          ["heap_limit", "largest the JavaScript heap may grow", heap.heap_size_limit],
          ["external", "outside the heap: buffers, array buffers, SQLite", usage.external],
          ["malloced", "V8's own allocations outside the heap", heap.malloced_memory],
          [
            "array_buffers",
            "not reported apart by Deno 2.9.6 (counted in external)",
            null,
          ],
        ];
        return {
          table: {
            columns: ["kind", "description", "size"],
            rows: rows.map((
              [kind, description, bytes],
            ) => [kind, description, bytes === null ? "-" : mebibytes(bytes)]),
          },
          data: Object.fromEntries(rows.map(([kind, , bytes]) => [kind, bytes])),
        };
      },
    },
  ];
}
