// Writes the accounts of a Lilt store as one XEP-0227 (Portable Import/Export Format) file, so
// users can move to another server (or another Lilt) with their passwords, contacts and data.

import { dirname, resolve } from "node:path";
import { AccountStore } from "../../core/auth/accounts.ts";
import { SCRAM_HASHES } from "../../core/auth/scram.ts";
import type { Database } from "../../core/storage/database.ts";
import { Storage } from "../../core/storage/stores.ts";
import { Element } from "../../core/xml/element.ts";
import { parseElement } from "../../core/xml/parser.ts";
import { escapeAttr, serialize } from "../../core/xml/serializer.ts";
import { configForm, NODE_CONFIG_FORM } from "../../mod/pubsub/config.ts";
import { PubsubStore } from "../../mod/pubsub/storage.ts";
import { NS_ROSTER, type RosterItem } from "../../mod/roster_store.ts";
import { NS_MAM } from "../../mod/mam.ts";
import { NS_PUBSUB, NS_PUBSUB_OWNER } from "../../mod/pubsub/protocol.ts";
import {
  NS_BLOCKING,
  NS_DATA,
  NS_DELAY,
  NS_FORWARD,
  NS_PIE,
  NS_PIE_MAM,
  NS_PIE_SCRAM,
  NS_PRIVATE,
} from "./xep227_import.ts";

/** Options for {@link exportXep227}. */
export interface ExportXep227Options {
  /** The account hosts to export, in this order. */
  hosts: string[];
}

/** What {@link exportXep227} wrote. */
export interface ExportXep227Result {
  /** Accounts written, per host. */
  accounts: Map<string, number>;
  /** Stored data that could not be read and was left out, or accounts left out, and why. */
  warnings: string[];
}

/**
 * Writes every account of `options.hosts` to `path` (mode 0600: it holds credential hashes),
 * through a temporary file renamed into place, from one read transaction so the file is a
 * consistent snapshot even while a server writes. Accounts whose deletion is pending are left
 * out. The directory of `path` must exist.
 */
export async function exportXep227(
  database: Database,
  path: string,
  options: ExportXep227Options,
): Promise<ExportXep227Result> {
  const target = resolve(path);
  const directory = dirname(target);
  try {
    if (!(await Deno.stat(directory)).isDirectory) throw new Error("not a directory");
  } catch {
    throw new Error(`Cannot write ${path}: the directory ${directory} does not exist`);
  }
  const temporary = `${target}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  const file = await Deno.open(temporary, { write: true, createNew: true, mode: 0o600 });
  const encoder = new TextEncoder();
  const result: ExportXep227Result = { accounts: new Map(), warnings: [] };
  try {
    const write = (text: string) => writeAll(file, encoder.encode(text));
    // A read transaction sees one snapshot on SQLite (WAL); PostgreSQL's default isolation
    // takes a new snapshot per statement, so the export asks for one for the whole transaction.
    database.db.exec(
      database.dialect === "sqlite" ? "BEGIN" : "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    );
    try {
      write(`<?xml version='1.0' encoding='UTF-8'?>\n<server-data xmlns='${NS_PIE}'>\n`);
      const exporter = new UserExporter(database, result.warnings);
      for (const host of options.hosts) {
        write(`<host jid='${escapeAttr(host)}'>\n`);
        let count = 0;
        for (const info of new AccountStore(database).listInfo(host)) {
          if (info.deletedAt !== undefined) {
            result.warnings.push(
              `${info.username}@${host}: deletion pending (user restore brings it back); not exported`,
            );
            continue;
          }
          write(serialize(exporter.user(host, info.username), NS_PIE) + "\n");
          count++;
        }
        write("</host>\n");
        result.accounts.set(host, count);
      }
      write("</server-data>\n");
    } finally {
      // Only read: ending it by ROLLBACK keeps a failed statement's own error (PostgreSQL
      // refuses the COMMIT of a transaction in which a statement failed).
      if (database.db.isTransaction) database.db.exec("ROLLBACK");
    }
    file.syncSync();
    file.close();
    await Deno.rename(temporary, target);
  } catch (error) {
    try {
      file.close();
    } catch {
      // already closed
    }
    await Deno.remove(temporary).catch(() => {});
    throw error;
  }
  return result;
}

function writeAll(file: Deno.FsFile, bytes: Uint8Array): void {
  let offset = 0;
  while (offset < bytes.length) offset += file.writeSync(bytes.subarray(offset));
}

/** Builds the `<user/>` element of one account from the stores. */
class UserExporter {
  #storage: Storage;
  #accounts: AccountStore;
  #pubsub: PubsubStore | undefined;
  #warnings: string[];

  constructor(database: Database, warnings: string[]) {
    this.#storage = new Storage(database);
    this.#accounts = new AccountStore(database);
    this.#pubsub = database.hasTable("pubsub_nodes") ? new PubsubStore(database) : undefined;
    this.#warnings = warnings;
  }

  user(host: string, user: string): Element {
    const bare = `${user}@${host}`;
    const el = new Element("user", { xmlns: NS_PIE, name: user });
    for (const hash of SCRAM_HASHES) {
      const credentials = this.#accounts.credentials(host, user, hash);
      if (credentials === undefined) continue;
      const scram = el.c("scram-credentials", { xmlns: NS_PIE_SCRAM, mechanism: `SCRAM-${hash}` });
      scram.c("iter-count").t(String(credentials.iterations));
      scram.c("salt").t(base64(credentials.salt));
      scram.c("server-key").t(base64(credentials.serverKey));
      scram.c("stored-key").t(base64(credentials.storedKey));
    }
    this.#roster(el, host, user, bare);
    const vcard = this.#storage.keyval<string>(host, "vcard").get(user);
    if (vcard !== undefined) this.#appendParsed(el, vcard, `${bare}: stored vCard`);
    const fragments = this.#storage.map<string>(host, "private").getAll(user);
    if (fragments.size > 0) {
      const query = el.c("query", { xmlns: NS_PRIVATE });
      for (const [key, text] of fragments) {
        this.#appendParsed(query, text, `${bare}: private XML ${key}`);
      }
    }
    const offline = this.#storage.archive(host, "offline").find(user);
    if (offline.length > 0) {
      const messages = el.c("offline-messages");
      for (const item of offline) {
        this.#appendParsed(messages, item.payload, `${bare}: offline message ${item.id}`);
      }
    }
    const blocked = this.#storage.keyval<string[]>(host, "blocklist").get(user);
    if (Array.isArray(blocked) && blocked.length > 0) {
      const list = el.c("blocklist", { xmlns: NS_BLOCKING });
      for (const jid of blocked) list.c("item", { jid });
    }
    this.#pep(el, bare);
    const archived = this.#storage.archive(host, "mam").find(user);
    if (archived.length > 0) {
      const archive = el.c("archive", { xmlns: NS_PIE_MAM });
      for (const item of archived) {
        const message = this.#parse(item.payload, `${bare}: archived message ${item.id}`);
        if (message === undefined) continue;
        const forwarded = archive.c("result", { xmlns: NS_MAM, id: item.id })
          .c("forwarded", { xmlns: NS_FORWARD });
        forwarded.c("delay", { xmlns: NS_DELAY, stamp: new Date(item.when).toISOString() });
        forwarded.append(message);
      }
    }
    return el;
  }

  #roster(el: Element, host: string, user: string, bare: string): void {
    const entries = this.#storage.map<RosterItem>(host, "roster").getAll(user);
    const visible = [...entries].filter(([, item]) => !item.hidden);
    if (visible.length > 0) {
      const query = el.c("query", { xmlns: NS_ROSTER });
      for (const [jid, item] of visible) {
        const entry = query.c("item", {
          jid,
          name: item.name,
          subscription: item.subscription,
          ask: item.ask,
          approved: item.approved ? "true" : undefined,
        });
        for (const group of item.groups) entry.c("group").t(group);
      }
    }
    // Requests waiting for the user's answer (XEP-0227: presence stanzas beside the roster).
    for (const [jid, item] of entries) {
      if (!item.pendingIn) continue;
      let request = item.pendingStanza === undefined
        ? undefined
        : this.#parse(item.pendingStanza, `${bare}: subscription request from ${jid}`);
      if (request === undefined || request.name !== "presence") {
        request = new Element("presence", { from: jid, to: bare, type: "subscribe" });
      }
      el.append(request);
    }
  }

  #pep(el: Element, bare: string): void {
    const store = this.#pubsub;
    if (store === undefined) return;
    const nodes = store.nodes(bare);
    if (nodes.length === 0) return;
    const owner = el.c("pubsub", { xmlns: NS_PUBSUB_OWNER });
    const items = new Element("pubsub", { xmlns: NS_PUBSUB });
    for (const node of nodes) {
      const form = configForm(node.config, { maxItemsPerNode: 100_000, maxItemBytes: 16_777_216 });
      const submit = new Element("x", { xmlns: NS_DATA, type: "submit" });
      submit.c("field", { var: "FORM_TYPE", type: "hidden" }).c("value").t(NODE_CONFIG_FORM);
      for (const field of form.getChildren("field", NS_DATA)) {
        if (field.attrs.var === "FORM_TYPE") continue;
        const copy = submit.c("field", { var: field.attrs.var });
        for (const value of field.getChildren("value", NS_DATA)) copy.c("value").t(value.text());
      }
      owner.c("configure", { node: node.node }).append(submit);
      const affiliations = store.affiliations(bare, node.node);
      if (affiliations.size > 0) {
        const list = owner.c("affiliations", { node: node.node });
        for (const [jid, affiliation] of affiliations) list.c("affiliation", { jid, affiliation });
      }
      const subscriptions = store.subscriptions(bare, node.node);
      if (subscriptions.length > 0) {
        const list = owner.c("subscriptions", { node: node.node });
        for (const s of subscriptions) {
          list.c("subscription", { jid: s.jid, subscription: s.state, subid: s.subid });
        }
      }
      const stored = store.items(bare, node.node);
      if (stored.length === 0) continue;
      const list = items.c("items", { node: node.node });
      for (const item of stored) {
        const entry = list.c("item", { id: item.itemId, publisher: item.publisher });
        if (item.payload === "") continue;
        this.#appendParsed(entry, item.payload, `${bare}: item ${item.itemId} of ${node.node}`);
      }
    }
    if (items.children.length > 0) el.append(items);
  }

  #appendParsed(parent: Element, text: string, what: string): void {
    const el = this.#parse(text, what);
    if (el !== undefined) parent.append(el);
  }

  #parse(text: string, what: string): Element | undefined {
    try {
      return parseElement(text, { maxStanzaBytes: 64 * 1024 * 1024 });
    } catch (error) {
      this.#warnings.push(`${what} is unreadable (${(error as Error).message}); not exported`);
      return undefined;
    }
  }
}

function base64(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}
