// XEP-0363 HTTP file upload as a service Lilt hosts itself: load it on a `[[component]]`
// (`upload.HOST`, modules = ["disco", "upload"]). Local accounts ask for a slot over XMPP, PUT
// the file to the slot's URL on Lilt's HTTP listener, and share the GET URL; files live under
// data_dir/uploads and expire after upload_expires_after.

import { join } from "node:path";
import { type AdminServer, CommandError, type CommandSpec } from "../core/admin_commands.ts";
import type { OptionSpec } from "../core/config_schema.ts";
import type { StanzaEvent } from "../core/hosts.ts";
import { tryParseJid } from "../core/jid.ts";
import { hostService, type ModuleAPI } from "../core/modules.ts";
import type { Database } from "../core/storage/database.ts";
import type { Migration } from "../core/storage/migrations.ts";
import { Element } from "../core/xml/element.ts";
import { errorReply, reply } from "../core/xml/stanza.ts";

/** The XEP-0363 namespace. */
export const NS_UPLOAD = "urn:xmpp:http:upload:0";
const NS_DATA = "jabber:x:data";
/** The URL path below which slots live. */
export const UPLOAD_PATH = "/upload/";
/** A slot nobody PUT to is dropped after this long. */
const UNUSED_SLOT_MS = 3600 * 1000;
const DAY_MS = 24 * 3600 * 1000;

/** One line for module listings. */
export const description = "XEP-0363 HTTP file upload service (load on a [[component]])";

/** The module's own tables. */
export const migrations: readonly Migration[] = [
  {
    version: 1,
    description: "upload slots and stored files",
    up(db) {
      db.exec(`
        CREATE TABLE upload_files (
          id TEXT PRIMARY KEY,
          service TEXT NOT NULL,
          owner TEXT NOT NULL,
          filename TEXT NOT NULL,
          size INTEGER NOT NULL,
          content_type TEXT NOT NULL,
          token TEXT NOT NULL,
          created_ms INTEGER NOT NULL,
          expires_ms INTEGER,
          stored INTEGER NOT NULL DEFAULT 0
        ) WITHOUT ROWID;
        CREATE INDEX upload_files_owner ON upload_files (service, owner);
      `);
    },
  },
];
/** The schema the migrations are numbered in. */
export const schema = "upload";

/** Options the module reads. */
export const options: Record<string, OptionSpec> = {
  upload_max_file_size: {
    type: "integer",
    default: 104_857_600,
    min: 1,
    max: 17_179_869_184,
    scope: "host",
    description: "Largest file in bytes an account may upload (XEP-0363 max-file-size)",
  },
  upload_quota: {
    type: "integer",
    default: 0,
    min: 0,
    max: 1_099_511_627_776,
    scope: "host",
    description: "Bytes of uploads (and open slots) one account may hold (0: no limit)",
  },
  upload_daily_limit: {
    type: "integer",
    default: 0,
    min: 0,
    max: 1_099_511_627_776,
    scope: "host",
    description:
      "Bytes one account may request slots for in any 24 hours, rolling (0: no limit); over it a slot request gets resource-constraint with a retry time",
  },
  upload_expires_after: {
    type: "integer",
    default: 2_592_000,
    min: 0,
    max: 315_360_000,
    scope: "host",
    description:
      "Seconds an uploaded file is kept (0: for ever); a daily job and `upload expire` delete older ones",
  },
};

/** One slot or stored file, as the table holds it. */
export interface UploadRecord {
  id: string;
  owner: string;
  filename: string;
  size: number;
  contentType: string;
  createdMs: number;
  expiresMs: number | null;
  stored: boolean;
}

/** What the module offers the admin shell on its component. */
export interface UploadService {
  /** The account's slots and files, oldest first. */
  list(owner: string): UploadRecord[];
  /** Deletes one file (and its row); false when there is none. */
  delete(id: string): Promise<boolean>;
  /** Bytes held by one account, or by all. */
  usage(owner?: string): number;
  /** Deletes expired files and stale slots now; returns how many went. */
  expire(): Promise<number>;
}

declare module "../core/modules.ts" {
  interface ModuleServices {
    upload: UploadService;
  }
}

/** An unguessable URL-safe token. */
function randomToken(bytes: number): string {
  const data = crypto.getRandomValues(new Uint8Array(bytes));
  return btoa(String.fromCharCode(...data)).replaceAll("+", "-").replaceAll("/", "_")
    .replaceAll("=", "");
}

/**
 * A filename safe to put in a URL path and a Content-Disposition header: the last path
 * component, without control characters, at most 200 characters; undefined when nothing
 * usable is left.
 */
export function sanitizeFilename(name: string): string | undefined {
  const base = name.split(/[/\\]/).pop() ?? "";
  // deno-lint-ignore no-control-regex
  const clean = base.replace(/[\u0000-\u001f\u007f"]/g, "").trim().slice(0, 200);
  if (clean === "" || clean === "." || clean === "..") return undefined;
  return clean;
}

/** Types shown in the browser rather than downloaded. */
function inline(type: string): boolean {
  return /^(image\/(png|jpeg|gif|webp)|audio\/|video\/|text\/plain)/.test(type);
}

function rowToRecord(row: Record<string, unknown>): UploadRecord {
  return {
    id: String(row.id),
    owner: String(row.owner),
    filename: String(row.filename),
    size: Number(row.size),
    contentType: String(row.content_type),
    createdMs: Number(row.created_ms),
    expiresMs: row.expires_ms === null ? null : Number(row.expires_ms),
    stored: Number(row.stored) === 1,
  };
}

/** The table's queries for one upload service. */
class UploadStore {
  constructor(private db: Database, private service: string) {}

  insert(record: UploadRecord, token: string): void {
    this.db.prepare(
      `INSERT INTO upload_files (id, service, owner, filename, size, content_type, token,
         created_ms, expires_ms, stored) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)`,
    ).run(
      record.id,
      this.service,
      record.owner,
      record.filename,
      record.size,
      record.contentType,
      token,
      record.createdMs,
      record.expiresMs,
    );
  }

  get(id: string): { record: UploadRecord; token: string } | undefined {
    const row = this.db.prepare("SELECT * FROM upload_files WHERE id = ? AND service = ?")
      .get(id, this.service);
    return row ? { record: rowToRecord(row), token: String(row.token) } : undefined;
  }

  markStored(id: string): void {
    this.db.prepare("UPDATE upload_files SET stored = 1 WHERE id = ? AND service = ?")
      .run(id, this.service);
  }

  remove(id: string): boolean {
    return Number(
      this.db.prepare("DELETE FROM upload_files WHERE id = ? AND service = ?")
        .run(id, this.service).changes,
    ) > 0;
  }

  list(owner: string): UploadRecord[] {
    return this.db.prepare(
      "SELECT * FROM upload_files WHERE service = ? AND owner = ? ORDER BY created_ms, id",
    ).all(this.service, owner).map(rowToRecord);
  }

  usage(owner?: string): number {
    const row = owner === undefined
      ? this.db.prepare("SELECT COALESCE(SUM(size), 0) AS n FROM upload_files WHERE service = ?")
        .get(this.service)
      : this.db.prepare(
        "SELECT COALESCE(SUM(size), 0) AS n FROM upload_files WHERE service = ? AND owner = ?",
      ).get(this.service, owner);
    return Number(row?.n ?? 0);
  }

  /** Sizes and times of an account's slots and files created after `since`, oldest first. */
  createdSince(owner: string, since: number): { createdMs: number; size: number }[] {
    return this.db.prepare(
      `SELECT created_ms, size FROM upload_files WHERE service = ? AND owner = ? AND created_ms > ?
         ORDER BY created_ms`,
    ).all(this.service, owner, since).map((row) => ({
      createdMs: Number(row.created_ms),
      size: Number(row.size),
    }));
  }

  /** Ids of expired files and of slots unused since `staleBefore`. */
  expired(now: number, staleBefore: number): string[] {
    return this.db.prepare(
      `SELECT id FROM upload_files WHERE service = ? AND
         ((expires_ms IS NOT NULL AND expires_ms <= ?) OR (stored = 0 AND created_ms <= ?))`,
    ).all(this.service, now, staleBefore).map((row) => String(row.id));
  }
}

/**
 * When a request for `size` more bytes fits an account's rolling 24-hour `limit` again: the
 * time the oldest slots in the window leave it and free enough bytes; undefined when it fits
 * now. `recent` is the account's slots and files of the last 24 hours, oldest first.
 */
export function dailyLimitRetry(
  recent: readonly { createdMs: number; size: number }[],
  request: { size: number; limit: number },
): number | undefined {
  const used = recent.reduce((sum, entry) => sum + entry.size, 0);
  let excess = used + request.size - request.limit;
  if (excess <= 0) return undefined;
  for (const entry of recent) {
    excess -= entry.size;
    if (excess <= 0) return entry.createdMs + DAY_MS;
  }
  // Only reached when the request alone is over the limit (callers refuse that first).
  return recent.at(-1)!.createdMs + DAY_MS;
}

/** An XEP-0082 DateTime in UTC, rounded up to the next whole second. */
function stamp(ms: number): string {
  return new Date(Math.ceil(ms / 1000) * 1000).toISOString().replace(".000Z", "Z");
}

/** The upload service of a shell argument's component, or a CommandError. */
function serviceOf(server: AdminServer, domain: string): UploadService {
  const host = server.hosts.get(domain);
  const service = host === undefined ? undefined : hostService(host, "upload");
  if (!service) throw new CommandError(`The upload module is not loaded on '${domain}'`);
  return service;
}

/** The `upload` section of the admin shell. */
const UPLOAD_COMMANDS: CommandSpec[] = [
  {
    section: "upload",
    name: "list",
    summary: "An account's uploaded files on an upload component",
    args: [{ name: "service", kind: "host" }, { name: "jid", kind: "jid" }],
    run: ({ server }, [domain, text]) => {
      const jid = tryParseJid(text ?? "");
      if (!jid?.local) throw new CommandError(`Not an account JID: '${text}'`);
      const files = serviceOf(server, domain!).list(jid.bareString());
      const lines = files.map((f) =>
        `${f.id} ${f.filename} ${f.size} bytes ${f.contentType}${
          f.stored ? "" : " (slot, not uploaded)"
        }`
      );
      return {
        message: lines.length ? lines.join("\n") : `${jid.bareString()} has no uploads`,
        data: { jid: jid.bareString(), files },
      };
    },
  },
  {
    section: "upload",
    name: "delete",
    summary: "Delete one uploaded file by its id",
    args: [{ name: "service", kind: "host" }, { name: "id", kind: "string" }],
    run: async ({ server }, [domain, id]) => {
      if (!(await serviceOf(server, domain!).delete(id!))) {
        throw new CommandError(`No upload '${id}' on ${domain}`);
      }
      return { message: `Deleted upload ${id}`, data: { id, deleted: true } };
    },
  },
  {
    section: "upload",
    name: "usage",
    summary: "Bytes held by uploads on a component (or by one account)",
    args: [{ name: "service", kind: "host" }, { name: "jid", kind: "jid", optional: true }],
    run: ({ server }, [domain, text]) => {
      let owner: string | undefined;
      if (text !== undefined) {
        const jid = tryParseJid(text);
        if (!jid?.local) throw new CommandError(`Not an account JID: '${text}'`);
        owner = jid.bareString();
      }
      const bytes = serviceOf(server, domain!).usage(owner);
      return { message: `${owner ?? domain}: ${bytes} bytes`, data: { owner, bytes } };
    },
  },
  {
    section: "upload",
    name: "expire",
    summary: "Delete expired uploads and unused slots on a component now",
    args: [{ name: "service", kind: "host" }],
    run: async ({ server }, [domain]) => {
      const deleted = await serviceOf(server, domain!).expire();
      return { message: `${domain}: deleted ${deleted} upload(s)`, data: { deleted } };
    },
  },
];

/** Loads the HTTP upload service on a component. */
export default function upload(m: ModuleAPI): void {
  if (m.host.kind === "local") {
    m.log.debug("Module upload serves a [[component]] (e.g. upload.{host}); idle on host {host}", {
      host: m.domain,
    });
    return;
  }
  const store = new UploadStore(m.database, m.domain);
  const dir = join(m.server.config.dataDir, "uploads");
  Deno.mkdirSync(dir, { recursive: true });
  const maxSize = () => m.option<number>("upload_max_file_size");
  /** The largest file a slot may be for: a daily limit below the file size limit caps it. */
  const largestFile = () => {
    const daily = m.option<number>("upload_daily_limit");
    return daily > 0 ? Math.min(maxSize(), daily) : maxSize();
  };
  const uploading = new Set<string>();

  m.addIdentity("store", "file", "HTTP File Upload");
  m.addFeature(NS_UPLOAD);
  const form = new Element("x", { xmlns: NS_DATA, type: "result" });
  form.c("field", { var: "FORM_TYPE", type: "hidden" }).c("value").t(NS_UPLOAD);
  form.c("field", { var: "max-file-size" }).c("value").t(String(largestFile()));
  m.addExtension(form);

  /**
   * The base URL slots are under: this component's name (HTTP routes go by the Host header)
   * with http_external_url's scheme, port and path when set, else on the HTTPS (or HTTP)
   * listener.
   */
  const baseUrl = (): string | undefined => {
    const external = m.server.config.get<string>("http_external_url");
    if (external) {
      const url = new URL(external);
      const port = url.port ? `:${url.port}` : "";
      return `${url.protocol}//${m.domain}${port}${url.pathname.replace(/\/+$/, "")}`;
    }
    // Mobile clients refuse plain http upload URLs: the HTTPS listener when there is one.
    for (const scheme of ["https", "http"] as const) {
      try {
        return `${scheme}://${m.domain}:${m.server.port(scheme)}`;
      } catch {
        // No listener of this kind.
      }
    }
    return undefined;
  };

  const removeFile = async (id: string): Promise<void> => {
    await Deno.remove(join(dir, id)).catch(() => {});
    await Deno.remove(join(dir, `${id}.part`)).catch(() => {});
  };

  const service: UploadService = {
    list: (owner) => store.list(owner),
    async delete(id) {
      if (!store.remove(id)) return false;
      await removeFile(id);
      return true;
    },
    usage: (owner) => store.usage(owner),
    async expire() {
      const now = Date.now();
      let count = 0;
      for (const id of store.expired(now, now - UNUSED_SLOT_MS)) {
        if (uploading.has(id)) continue;
        if (store.remove(id)) count++;
        await removeFile(id);
      }
      if (count > 0) m.log.info("Deleted {count} expired upload(s)", { count });
      return count;
    },
  };
  m.provide("upload", service);
  m.shellCommands(UPLOAD_COMMANDS);
  const expireSoon = () => {
    service.expire().catch((error) =>
      m.log.warning("Upload expiry failed: {error}", { error: String(error) })
    );
  };
  m.addTimer(DAY_MS, expireSoon, { repeat: true, label: "upload expiry" });
  m.addTimer(60 * 1000, expireSoon, { label: "upload expiry (after start)" });

  m.hook(`iq-get/host/${NS_UPLOAD}:request`, ({ stanza, origin }: StanzaEvent) => {
    const fail = (condition: Parameters<typeof errorReply>[1], text: string) => {
      origin.send(errorReply(stanza, condition, { text }));
      return true;
    };
    const from = tryParseJid(stanza.attrs.from ?? "");
    if (!from?.local || m.server.hosts.get(from.domain)?.kind !== "local") {
      return fail("not-allowed", "Only accounts of this server may upload files");
    }
    const request = stanza.getChild("request", NS_UPLOAD)!;
    const filename = sanitizeFilename(request.attr("filename") ?? "");
    if (filename === undefined) return fail("bad-request", "The request needs a filename");
    const sizeText = request.attr("size") ?? "";
    const size = /^\d{1,16}$/.test(sizeText) ? Number(sizeText) : NaN;
    if (!Number.isSafeInteger(size) || size < 1) {
      return fail("bad-request", "The size must be a positive number of bytes");
    }
    const dailyLimit = m.option<number>("upload_daily_limit");
    const max = largestFile();
    if (size > max) {
      const out = errorReply(stanza, "not-acceptable", {
        type: "modify",
        text: max === maxSize()
          ? `File too large: the limit is ${max} bytes`
          : `File too large: the daily upload limit is ${max} bytes`,
      });
      out.getChild("error")!.c("file-too-large", { xmlns: NS_UPLOAD })
        .c("max-file-size").t(String(max));
      origin.send(out);
      return true;
    }
    const owner = from.bareString();
    const quota = m.option<number>("upload_quota");
    if (quota > 0 && store.usage(owner) + size > quota) {
      return fail("resource-constraint", `Upload quota of ${quota} bytes exceeded`);
    }
    if (dailyLimit > 0) {
      const now = Date.now();
      const retry = dailyLimitRetry(store.createdSince(owner, now - DAY_MS), {
        size,
        limit: dailyLimit,
      });
      if (retry !== undefined) {
        // XEP-0363 §3.3: a quota that frees up later is a wait error with the time to retry.
        const out = errorReply(stanza, "resource-constraint", {
          type: "wait",
          text: `Daily upload limit of ${dailyLimit} bytes reached; retry at ${stamp(retry)}`,
        });
        out.getChild("error")!.c("retry", { xmlns: NS_UPLOAD, stamp: stamp(retry) });
        origin.send(out);
        return true;
      }
    }
    const type = (request.attr("content-type") ?? "").trim();
    const contentType = /^[\w.+-]+\/[\w.+-]+$/.test(type) ? type : "application/octet-stream";
    const base = baseUrl();
    if (base === undefined) {
      return fail("service-unavailable", "No HTTP listener or http_external_url is configured");
    }
    const id = randomToken(18);
    const token = randomToken(24);
    const now = Date.now();
    const expiresAfter = m.option<number>("upload_expires_after");
    store.insert({
      id,
      owner,
      filename,
      size,
      contentType,
      createdMs: now,
      expiresMs: expiresAfter > 0 ? now + expiresAfter * 1000 : null,
      stored: false,
    }, token);
    const url = `${base}${UPLOAD_PATH}${id}/${encodeURIComponent(filename)}`;
    const answer = reply(stanza, { type: "result" });
    const slot = answer.c("slot", { xmlns: NS_UPLOAD });
    slot.c("put", { url }).c("header", { name: "Authorization" }).t(`Bearer ${token}`);
    slot.c("get", { url });
    origin.send(answer);
    return true;
  });

  const cors = {
    "access-control-allow-origin": "*",
  };
  const text = (status: number, body: string) =>
    new Response(body + "\n", { status, headers: { "content-type": "text/plain", ...cors } });
  const slotOf = (request: Request) => {
    const parts = new URL(request.url).pathname.slice(UPLOAD_PATH.length).split("/");
    return parts.length === 2 ? store.get(parts[0]) : undefined;
  };

  m.httpRoute("OPTIONS", `${UPLOAD_PATH}*`, () =>
    new Response(null, {
      status: 204,
      headers: {
        ...cors,
        "access-control-allow-methods": "GET, HEAD, PUT, OPTIONS",
        "access-control-allow-headers": "Authorization, Content-Type",
        "access-control-max-age": "86400",
      },
    }));

  m.httpRoute("PUT", `${UPLOAD_PATH}*`, async (request) => {
    const found = slotOf(request);
    if (!found) return text(404, "No such upload slot");
    const { record, token } = found;
    const auth = request.headers.get("authorization");
    if (auth === null) return text(401, "Authorization required");
    if (auth !== `Bearer ${token}`) return text(403, "Wrong authorization for this slot");
    if (record.stored || uploading.has(record.id)) return text(409, "This slot was already used");
    const lengthText = request.headers.get("content-length");
    if (lengthText === null || !/^\d+$/.test(lengthText)) {
      return text(400, "Content-Length is required");
    }
    const length = Number(lengthText);
    if (length > record.size) return text(413, `The slot is for ${record.size} bytes`);
    if (length !== record.size) return text(400, `The slot is for ${record.size} bytes`);
    if (!request.body) return text(400, "Missing body");
    uploading.add(record.id);
    const part = join(dir, `${record.id}.part`);
    try {
      let received = 0;
      const file = await Deno.open(part, { write: true, createNew: true });
      await request.body.pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({
          transform(chunk, out) {
            received += chunk.byteLength;
            if (received > record.size) throw new Error("Body longer than Content-Length");
            out.enqueue(chunk);
          },
        }),
      ).pipeTo(file.writable);
      if (received !== record.size) {
        await Deno.remove(part).catch(() => {});
        return text(400, `Received ${received} of ${record.size} bytes`);
      }
      if (!store.get(record.id)) {
        await Deno.remove(part).catch(() => {});
        return text(410, "The slot was deleted during the upload");
      }
      await Deno.rename(part, join(dir, record.id));
      store.markStored(record.id);
      m.log.info("{owner} uploaded {id} ({size} bytes)", {
        owner: record.owner,
        id: record.id,
        size: record.size,
      });
      return new Response(null, { status: 201, headers: cors });
    } catch (error) {
      await Deno.remove(part).catch(() => {});
      if (error instanceof Deno.errors.AlreadyExists) return text(409, "Upload in progress");
      m.log.info("Upload {id} failed: {error}", { id: record.id, error: String(error) });
      return text(400, "The upload did not complete");
    } finally {
      uploading.delete(record.id);
    }
  }, { maxBodyBytes: maxSize });

  m.httpRoute("GET", `${UPLOAD_PATH}*`, async (request) => {
    const found = slotOf(request);
    if (!found?.record.stored) return text(404, "Not found");
    const { record } = found;
    const disposition = `${
      inline(record.contentType) ? "inline" : "attachment"
    }; filename*=UTF-8''${encodeURIComponent(record.filename)}`;
    const headers = {
      ...cors,
      "content-type": record.contentType,
      "content-length": String(record.size),
      "content-disposition": disposition,
      "x-content-type-options": "nosniff",
      "content-security-policy": "default-src 'none'; sandbox",
    };
    if (request.method === "HEAD") return new Response(null, { headers });
    let file: Deno.FsFile;
    try {
      file = await Deno.open(join(dir, record.id), { read: true });
    } catch {
      return text(404, "Not found");
    }
    return new Response(file.readable, { headers });
  });
}
