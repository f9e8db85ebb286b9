// The `debug` section of the admin shell: what explains a slow or swelling server to an
// operator: event-loop lag (`loop`), open connections and file descriptors by kind (`handles`),
// the process's memory as V8 and Deno report it (`memory`) and the scheduled timers with who set
// them (`timers`, as Prosody's `debug:timers()`).

import v8 from "node:v8";
import type { AdminServer, CommandSpec } from "../../core/admin_commands.ts";
import { LAG_SAMPLE_INTERVAL_MS, LAG_WINDOW_MS } from "../../core/event_loop_lag.ts";
import { C2SSession } from "../../core/net/c2s.ts";
import { archiveWriteBehind } from "../../core/storage/archive_store.ts";
import { formatDuration } from "./server.ts";

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

/** "500 ms" below a second, else "1d 0h 0m 0s". */
function period(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : formatDuration(Math.round(ms / 1000));
}

/** Timers with the same owner, host, purpose and period, counted, with the soonest due. */
interface TimerGroup {
  owner: string;
  host: string | null;
  label: string;
  every_ms: number | null;
  pending: number;
  next_due_in_ms: number;
}

/** The pending timers grouped (a thousand clients' ack timers are one row). */
function timerGroups(server: AdminServer): TimerGroup[] {
  const now = Date.now();
  const groups = new Map<string, TimerGroup>();
  for (const timer of server.timers.list()) {
    const key = JSON.stringify([timer.owner, timer.host, timer.label, timer.everyMs]);
    const dueIn = Math.max(0, timer.dueAt - now);
    const group = groups.get(key);
    if (group) {
      group.pending++;
      group.next_due_in_ms = Math.min(group.next_due_in_ms, dueIn);
    } else {
      groups.set(key, {
        owner: timer.owner,
        host: timer.host,
        label: timer.label,
        every_ms: timer.everyMs,
        pending: 1,
        next_due_in_ms: dueIn,
      });
    }
  }
  // The core's own first, then by module, host and how soon they are due.
  const rank = (group: TimerGroup) => group.owner === "core" ? 0 : 1;
  return [...groups.values()].sort((a, b) =>
    rank(a) - rank(b) || a.owner.localeCompare(b.owner) ||
    (a.host ?? "").localeCompare(b.host ?? "") || a.next_due_in_ms - b.next_due_in_ms
  );
}

/** What Deno does not let the server count, said once in `debug handles`. */
const NOT_COUNTED = "Deno 2 has no list of open resources or timers (Deno.resources() was " +
  "removed): timers are those modules and the core set through the server (debug timers); " +
  "the platform's own are not counted";

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
        rows.push(["timers", "set through the server", server.timers.size]);
        return {
          table: { columns: ["kind", "detail", "open"], rows },
          data: {
            listeners,
            c2s,
            s2s: { in: others.s2sin, out: others.s2sout },
            components: others.component,
            file_descriptors: descriptors ?? null,
            timers: server.timers.size,
            note: NOT_COUNTED,
          },
        };
      },
    },
    {
      section: "debug",
      name: "timers",
      summary: "Show scheduled timers: who set them, for what, how often, when next due; " +
        "the archive write-behind queue",
      args: [],
      run: ({ server }) => {
        const groups = timerGroups(server);
        const archive = archiveWriteBehind(server.database);
        const archiveDueIn = archive.flushDueAt === null
          ? null
          : Math.max(0, archive.flushDueAt - Date.now());
        const lag = server.loopLag;
        const rows: (string | number)[][] = [
          [
            "core",
            "",
            "event-loop lag sampler",
            lag.running ? period(LAG_SAMPLE_INTERVAL_MS) : "stopped",
            lag.running ? 1 : 0,
            "-",
          ],
          [
            "core",
            "",
            `archive write-behind (${archive.queued} items queued)`,
            "when queued",
            archiveDueIn === null ? 0 : 1,
            archiveDueIn === null ? "-" : period(archiveDueIn),
          ],
          ...groups.map((g) => [
            g.owner,
            g.host ?? "",
            g.label,
            g.every_ms === null ? "once" : period(g.every_ms),
            g.pending,
            period(g.next_due_in_ms),
          ]),
        ];
        return {
          table: { columns: ["owner", "host", "what", "every", "pending", "next due"], rows },
          data: {
            timers: groups,
            loop_sampler: { every_ms: LAG_SAMPLE_INTERVAL_MS, running: lag.running },
            archive_write_behind: { queued: archive.queued, flush_due_in_ms: archiveDueIn },
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
