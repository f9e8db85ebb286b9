// The `server` section of the admin shell: version, uptime, memory, and a shutdown that
// answers the operator before the process goes away.

import type { CommandSpec } from "../../core/admin_commands.ts";
import { getLogger } from "../../core/log.ts";
import type { AdminServer } from "../../core/admin_commands.ts";
import { LILT_NAME, LILT_VERSION } from "../../core/version.ts";

const log = getLogger("shell");

/** What `server shutdown` calls once its reply is on its way: stop the server, then exit. */
export type ShutdownHandler = (
  server: AdminServer,
  reason: string | undefined,
) => void | Promise<void>;

async function exitAfterShutdown(server: AdminServer, reason: string | undefined): Promise<void> {
  await server.shutdown(reason);
  Deno.exit(0);
}

let shutdownHandler: ShutdownHandler = exitAfterShutdown;

/**
 * Replaces what `server shutdown` does after replying (tests stop the server without exiting
 * the process). Returns the previous handler so it can be put back.
 */
export function setShutdownHandler(handler: ShutdownHandler): ShutdownHandler {
  const previous = shutdownHandler;
  shutdownHandler = handler;
  return previous;
}

/** Delay between the reply and the shutdown, so the reply reaches the admin client first. */
const SHUTDOWN_DELAY_MS = 50;

/** "1d 2h 3m 4s" for a number of seconds. */
export function formatDuration(totalSeconds: number): string {
  let rest = Math.max(0, Math.floor(totalSeconds));
  const parts: string[] = [];
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]] as const) {
    if (rest >= size || parts.length > 0) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  parts.push(`${rest}s`);
  return parts.join(" ");
}

function mebibytes(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}

/** The commands of the `server` section. */
export function serverCommands(): CommandSpec[] {
  return [
    {
      section: "server",
      name: "version",
      summary: "Show the server's version",
      args: [],
      run: () => ({
        message: `${LILT_NAME} ${LILT_VERSION} (deno ${Deno.version.deno}, v8 ${Deno.version.v8})`,
        data: { name: LILT_NAME, version: LILT_VERSION, deno: Deno.version.deno },
      }),
    },
    {
      section: "server",
      name: "uptime",
      summary: "Show how long the server has been running",
      args: [],
      run: ({ server }) => {
        const seconds = Math.floor((Date.now() - server.startedAt) / 1000);
        const since = new Date(server.startedAt).toISOString();
        return {
          message: `Up ${formatDuration(seconds)} (since ${since})`,
          data: { seconds, since },
        };
      },
    },
    {
      section: "server",
      name: "memory",
      summary: "Show the process's memory use",
      args: [],
      run: () => {
        // With --v8-flags=--expose-gc the figures are taken after a full collection, so
        // heap_used shows what is still reachable rather than garbage awaiting collection.
        const gc = (globalThis as { gc?: () => void }).gc;
        if (typeof gc === "function") gc();
        const usage = Deno.memoryUsage();
        const rows: [string, string, number][] = [
          ["rss", "resident set size of the process", usage.rss],
          ["heap_total", "JavaScript heap reserved", usage.heapTotal],
          ["heap_used", "JavaScript heap in use", usage.heapUsed],
          ["external", "memory outside the heap (buffers, SQLite)", usage.external],
        ];
        return {
          table: {
            columns: ["kind", "description", "size"],
            rows: rows.map(([kind, description, bytes]) => [kind, description, mebibytes(bytes)]),
          },
          data: {
            ...Object.fromEntries(rows.map(([kind, , bytes]) => [kind, bytes])),
            collected: typeof gc === "function",
          },
        };
      },
    },
    {
      section: "server",
      name: "shutdown",
      summary: "Shut the server down; the reason is sent to every client",
      args: [{ name: "reason", kind: "text", optional: true, rest: true }],
      run: ({ server }, args) => {
        const reason = args.join(" ").trim() || undefined;
        const handler = shutdownHandler;
        // The reply goes out first; the admin client would otherwise see its socket vanish.
        setTimeout(() => {
          Promise.resolve(handler(server, reason)).catch((error) => {
            log.error("Shutdown failed: {error}", { error });
          });
        }, SHUTDOWN_DELAY_MS);
        return {
          message: `Shutting down${reason ? `: ${reason}` : ""}`,
          data: { reason: reason ?? null },
        };
      },
    },
  ];
}
