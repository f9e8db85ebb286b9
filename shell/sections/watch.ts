// The `watch` section of the admin shell: live log records and live stanzas, streamed to the
// operator until the command is cancelled.

import { CommandError, type CommandSpec } from "../../core/admin_commands.ts";
import { addLogWatcher, formatLogRecord, type LogRecord } from "../../core/log.ts";
import { type JID, tryParseJid } from "../../core/jid.ts";
import type { Session } from "../../core/sessions.ts";
import type { Element } from "../../core/xml/element.ts";
import { serialize } from "../../core/xml/serializer.ts";
import { jidArg } from "./c2s.ts";

/** Resolves when the signal aborts (at once if it already has). */
function untilAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) =>
    signal.addEventListener("abort", () => resolve(), { once: true })
  );
}

const LEVELS = ["trace", "debug", "info", "warning", "error", "fatal"];

/** "c2s" and "lilt.c2s" name the same category (loggers live under "lilt"). */
function categoryPrefix(text: string): string[] {
  const parts = text.split(".").filter((p) => p !== "");
  return parts[0] === "lilt" ? parts : ["lilt", ...parts];
}

/** True when `jid` falls under `target`: the same host, bare JID or full JID. */
function covers(target: JID, jid: JID | undefined): boolean {
  if (!jid || jid.domain !== target.domain) return false;
  if (target.local === undefined) return true;
  if (jid.local !== target.local) return false;
  return target.resource === undefined || jid.resource === target.resource;
}

/** Splits `stanzas TARGET [--with JID]` (also `--with=JID`). */
function stanzaArgs(joined: string[]): { target: JID; with?: JID } {
  // The admin socket joins the words of the trailing `rest` argument, so over the socket
  // "--with JID" arrives as one word.
  const args = joined.flatMap((arg) => {
    const match = /^--with\s+(.+)$/s.exec(arg);
    return match ? ["--with", match[1]] : [arg];
  });
  let target: string | undefined;
  let withJid: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--with") {
      withJid = args[++i];
      if (withJid === undefined) throw new CommandError("Expected a JID after --with");
    } else if (arg.startsWith("--with=")) withJid = arg.slice("--with=".length);
    else if (target === undefined) target = arg;
    else throw new CommandError(`Unexpected argument '${arg}'`);
  }
  return {
    target: jidArg(target, "JID or host to watch"),
    with: withJid === undefined ? undefined : jidArg(withJid, "JID after --with"),
  };
}

/** The commands of the `watch` section. */
export function watchCommands(): CommandSpec[] {
  return [
    {
      section: "watch",
      name: "log",
      summary: "Follow log records live (default level debug), optionally of one category",
      args: [
        { name: "level", kind: "level", optional: true },
        { name: "category", kind: "string", optional: true },
      ],
      stream: true,
      run: async (ctx, [level = "debug", category]) => {
        if (!LEVELS.includes(level)) {
          throw new CommandError(
            `Unknown log level '${level}': expected one of ${LEVELS.join(", ")}`,
          );
        }
        const prefix = category === undefined ? undefined : categoryPrefix(category);
        const stop = addLogWatcher((record: LogRecord) => {
          if (prefix && !prefix.every((part, i) => record.category[i] === part)) return;
          ctx.emit({
            time: new Date(record.timestamp).toISOString(),
            level: record.level,
            category: record.category.join("."),
            line: formatLogRecord(record).trimEnd(),
          });
        }, level);
        try {
          await untilAborted(ctx.signal);
        } finally {
          stop();
        }
        return {};
      },
    },
    {
      section: "watch",
      name: "stanzas",
      summary: "Follow stanzas routed to or from a JID or host (--with JID: only with that peer)",
      args: [
        { name: "target", kind: "jid" },
        { name: "with", kind: "string", optional: true, rest: true },
      ],
      stream: true,
      run: async (ctx, args) => {
        const { target, with: peer } = stanzaArgs(args);
        const stop = ctx.server.router.observe((stanza: Element, origin: Session) => {
          const from = tryParseJid(stanza.attrs.from ?? "") ?? origin.jid;
          const to = tryParseJid(stanza.attrs.to ?? "") ??
            (origin.host ? tryParseJid(origin.host) : undefined);
          const outgoing = covers(target, from);
          const incoming = covers(target, to);
          if (!outgoing && !incoming) return;
          if (peer && !(outgoing && covers(peer, to)) && !(incoming && covers(peer, from))) return;
          ctx.emit({
            time: new Date().toISOString(),
            direction: outgoing ? "out" : "in",
            from: from?.toString() ?? null,
            to: to?.toString() ?? null,
            xml: serialize(stanza),
          });
        });
        try {
          await untilAborted(ctx.signal);
        } finally {
          stop();
        }
        return {};
      },
    },
  ];
}
