// XEP-0377 spam reporting: a client that blocks a JID (XEP-0191) may say why with a <report/>
// inside the block item; the report is kept for the server's operators, who read and clear
// them in the admin shell (`spam reports`, `spam clear`), and counted.

import { type CommandContext, CommandError, type CommandSpec } from "../core/admin_commands.ts";
import type { StanzaEvent } from "../core/hosts.ts";
import { tryParseJid } from "../core/jid.ts";
import type { ModuleAPI } from "../core/modules.ts";
import type { Migration } from "../core/storage/migrations.ts";
import type { Element } from "../core/xml/element.ts";

const NS_BLOCKING = "urn:xmpp:blocking";
/** The current namespace of XEP-0377 (the `reason` attribute form). */
export const NS_REPORTING = "urn:xmpp:reporting:1";
/** The older form (0.2): the reason is a child element `<spam/>` or `<abuse/>`. */
const NS_REPORTING_0 = "urn:xmpp:reporting:0";
const NS_SID = "urn:xmpp:sid:0";
/** Runs before the blocklist module takes the block command (which ignores the report). */
const BEFORE_BLOCKLIST = 100;
/** Longest report text kept (characters); longer texts are cut. */
const MAX_TEXT = 4000;
/** Most stanza ids kept per report. */
const MAX_STANZA_IDS = 20;

/** One line for module listings. */
export const description = "XEP-0377: spam and abuse reports attached to blocks, kept for admins";

/** Loaded with the blocking command, which the reports ride on. */
export const depends = ["blocklist"];

/** The module's table: one row per report (the latest per reporter and reported JID). */
export const migrations: readonly Migration[] = [
  {
    version: 1,
    description: "spam reports",
    up(db) {
      db.exec(`
        CREATE TABLE spam_reports (
          host TEXT NOT NULL,
          reporter TEXT NOT NULL,
          reported TEXT NOT NULL,
          reason TEXT NOT NULL,
          text TEXT,
          stanza_ids TEXT NOT NULL,
          created_ms INTEGER NOT NULL,
          PRIMARY KEY (host, reporter, reported)
        ) WITHOUT ROWID;
        CREATE INDEX spam_reports_created ON spam_reports (created_ms);
      `);
    },
  },
];
/** The schema the migrations are numbered in. */
export const schema = "spam_reports";

/** A report as the shell shows it. */
export interface SpamReport {
  /** The reporting account's bare JID. */
  reporter: string;
  /** The JID reported (as blocked: bare, full or a domain). */
  reported: string;
  /** The reason's URI (`urn:xmpp:reporting:spam`, `urn:xmpp:reporting:abuse`, ...). */
  reason: string;
  /** The reporter's explanation, if any. */
  text: string | undefined;
  /** Stanza ids (XEP-0359) of the offending messages, as `by id`. */
  stanzaIds: { by: string | undefined; id: string }[];
  /** When it was made (ms since the epoch). */
  created: number;
}

/** The report inside one block item, or undefined when the item carries none. */
function reportOf(
  item: Element,
): Omit<SpamReport, "reporter" | "reported" | "created"> | undefined {
  const current = item.getChild("report", NS_REPORTING);
  const old = current ? undefined : item.getChild("report", NS_REPORTING_0);
  const report = current ?? old;
  if (!report) return undefined;
  let reason: string;
  if (current) {
    reason = current.attrs.reason ?? "urn:xmpp:reporting:spam";
  } else {
    reason = old!.getChild("abuse") ? "urn:xmpp:reporting:abuse" : "urn:xmpp:reporting:spam";
  }
  const textElement = report.getChild("text");
  const text = textElement?.text().slice(0, MAX_TEXT) || undefined;
  const stanzaIds = report.getChildren("stanza-id", NS_SID)
    .filter((el) => el.attrs.id !== undefined)
    .slice(0, MAX_STANZA_IDS)
    .map((el) => ({ by: el.attrs.by, id: el.attrs.id! }));
  return { reason: reason.slice(0, 200), text, stanzaIds };
}

interface ReportRow {
  host: string;
  reporter: string;
  reported: string;
  reason: string;
  text: string | null;
  stanza_ids: string;
  created_ms: number;
}

function rowToReport(row: ReportRow): SpamReport {
  let stanzaIds: SpamReport["stanzaIds"] = [];
  try {
    const parsed = JSON.parse(row.stanza_ids);
    if (Array.isArray(parsed)) stanzaIds = parsed;
  } catch {
    // a damaged row shows no ids
  }
  return {
    reporter: row.reporter,
    reported: row.reported,
    reason: row.reason,
    text: row.text ?? undefined,
    stanzaIds,
    created: row.created_ms,
  };
}

/**
 * When `text` names a moment: a duration back from now ("7d", "12h", "30m", "45s", "2w"; a
 * bare number is seconds) or a date ("2026-12-01", an ISO timestamp); undefined otherwise.
 */
export function parseSince(text: string, nowMs = Date.now()): number | undefined {
  const match = /^(\d+)\s*([smhdw]?)$/i.exec(text.trim());
  if (match) {
    const unit = { "": 1, s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[
      match[2].toLowerCase() as "" | "s" | "m" | "h" | "d" | "w"
    ];
    return nowMs - Number(match[1]) * unit * 1000;
  }
  if (!/^\d{4}-\d{2}-\d{2}/.test(text)) return undefined;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? undefined : ms;
}

/** `--since X`, `--since=X` or a bare X: the moment, or a CommandError. */
function sinceArg(args: string[]): number | undefined {
  const words = args.flatMap((arg) => arg.split(/\s+/)).filter((w) => w !== "");
  if (words.length === 0) return undefined;
  let value: string | undefined;
  if (words[0] === "--since") value = words[1];
  else if (words[0].startsWith("--since=")) value = words[0].slice("--since=".length);
  else value = words[0];
  const extra = words[0] === "--since" ? words.slice(2) : words.slice(1);
  if (extra.length > 0) throw new CommandError(`Unexpected argument '${extra[0]}'`);
  const since = value === undefined ? undefined : parseSince(value);
  if (since === undefined) {
    throw new CommandError(
      `Expected a duration (7d, 12h, 30m) or a date (2026-12-01) after --since, found '${
        value ?? ""
      }'`,
    );
  }
  return since;
}

/** The `spam` section's report commands. */
const SPAM_REPORT_COMMANDS: CommandSpec[] = [
  {
    section: "spam",
    name: "reports",
    summary: "Spam and abuse reports users sent with blocks (XEP-0377), newest first",
    args: [{ name: "--since", kind: "text", optional: true, rest: true }],
    run: ({ server }: CommandContext, args) => {
      const since = sinceArg(args) ?? 0;
      const rows = server.database.prepare(
        "SELECT * FROM spam_reports WHERE created_ms >= ? ORDER BY created_ms DESC, reporter",
      ).all(since) as unknown as ReportRow[];
      const reports = rows.map(rowToReport);
      if (reports.length === 0) {
        return { message: since > 0 ? "No spam reports since then" : "No spam reports" };
      }
      return {
        table: {
          columns: ["time", "reporter", "reported", "reason", "stanzas", "text"],
          rows: reports.map((r) => [
            new Date(r.created).toISOString(),
            r.reporter,
            r.reported,
            r.reason.replace(/^urn:xmpp:reporting:/, ""),
            r.stanzaIds.map((s) => s.id).join(" "),
            r.text ?? "",
          ]),
        },
        data: reports,
      };
    },
  },
  {
    section: "spam",
    name: "clear",
    summary: "Delete spam reports: all of them, or those about one JID",
    args: [{ name: "jid", kind: "jid", optional: true }],
    run: ({ server }: CommandContext, [text]) => {
      let removed: number;
      if (text === undefined) {
        removed = Number(server.database.prepare("DELETE FROM spam_reports").run().changes);
      } else {
        const jid = tryParseJid(text);
        if (!jid) throw new CommandError(`Not a JID: '${text}'`);
        removed = Number(
          server.database.prepare("DELETE FROM spam_reports WHERE reported = ?")
            .run(jid.toString()).changes,
        );
      }
      return {
        message: `Deleted ${removed} spam report${removed === 1 ? "" : "s"}`,
        data: { removed },
      };
    },
  },
];

/** Loads spam reporting on a host. */
export default function spamReports(m: ModuleAPI): void {
  m.addFeature(NS_REPORTING);
  m.shellCommands(SPAM_REPORT_COMMANDS);
  const upsertSql =
    `INSERT INTO spam_reports (host, reporter, reported, reason, text, stanza_ids, created_ms)
     VALUES (?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (host, reporter, reported) DO UPDATE SET reason = excluded.reason,
       text = excluded.text, stanza_ids = excluded.stanza_ids, created_ms = excluded.created_ms`;

  // A purged account's own reports go with it (reports about it stay: they are the operator's).
  m.hook("account-purged", ({ user }) => {
    m.database.prepare("DELETE FROM spam_reports WHERE host = ? AND reporter = ?")
      .run(m.domain, `${user}@${m.domain}`);
  });

  // Only a block the blocklist module will accept is recorded: it answers the iq (and refuses
  // one with a malformed item, which then records nothing).
  m.hook(`iq-set/self/${NS_BLOCKING}:block`, ({ stanza, origin }: StanzaEvent) => {
    if (origin.kind !== "c2s" || origin.host !== m.domain || !origin.jid?.local) return false;
    const items = stanza.firstElement()?.getChildren("item", NS_BLOCKING) ?? [];
    const reports: { reported: string; report: NonNullable<ReturnType<typeof reportOf>> }[] = [];
    for (const item of items) {
      const jid = tryParseJid(item.attrs.jid ?? "");
      if (!jid) return false;
      const report = reportOf(item);
      if (report) reports.push({ reported: jid.toString(), report });
    }
    const reporter = origin.jid.bareString();
    const now = Date.now();
    for (const { reported, report } of reports) {
      m.database.prepare(upsertSql).run(
        m.domain,
        reporter,
        reported,
        report.reason,
        report.text ?? null,
        JSON.stringify(report.stanzaIds),
        now,
      );
      m.metric("spam.reports").inc();
      m.log.info("{reporter} reported {reported} ({reason})", {
        reporter,
        reported,
        reason: report.reason,
      });
    }
    return false; // the blocklist module blocks and answers
  }, BEFORE_BLOCKLIST);
}
