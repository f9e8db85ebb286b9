// Reads a XEP-0227 (Portable Import/Export Format) file into plain AccountData objects and
// writes them into Lilt's store in one transaction: a file with any error writes nothing.
// Data the format allows but Lilt has no place for is reported as a warning, not dropped silently.

import type { ScramCredentials, ScramHash } from "../../core/auth/accounts.ts";
import { HASH_BYTES } from "../../core/auth/scram.ts";
import { prepDomain, prepLocal, tryParseJid } from "../../core/jid.ts";
import type { Database } from "../../core/storage/database.ts";
import { type Element, NS_CLIENT } from "../../core/xml/element.ts";
import { NS_MAM } from "../../mod/mam.ts";
import { applyConfigFields, formFields, NODE_CONFIG_FORM } from "../../mod/pubsub/config.ts";
import { PubsubError } from "../../mod/pubsub/errors.ts";
import { NS_PUBSUB, NS_PUBSUB_OWNER } from "../../mod/pubsub/protocol.ts";
import type { Affiliation, SubscriptionState } from "../../mod/pubsub/storage.ts";
import { NS_ROSTER, type Subscription } from "../../mod/roster_store.ts";
import {
  type AccountData,
  type ArchivedMessage,
  type HostAccount,
  importAccounts,
  type ImportSummary,
  pepDefaultConfig,
  type PepNodeData,
  type RosterEntry,
} from "./account_import.ts";
import { readXmlDocument, type XmlDocument } from "./xml_document.ts";

/** The XEP-0227 namespace (version 1.1). */
export const NS_PIE = "urn:xmpp:pie:0";
/** The namespace of the format's first versions, still read. */
export const NS_PIE_OLD = "http://www.xmpp.org/extensions/xep-0227.html#ns";
/** SCRAM credentials of an account. */
export const NS_PIE_SCRAM = "urn:xmpp:pie:0#scram";
/** An account's message archive. */
export const NS_PIE_MAM = "urn:xmpp:pie:0#mam";

// The namespaces of the data XEP-0227 carries that no core module exports (shared with
// xep227_export.ts).
export const NS_PRIVATE = "jabber:iq:private";
export const NS_VCARD = "vcard-temp";
export const NS_BLOCKING = "urn:xmpp:blocking";
export const NS_DATA = "jabber:x:data";
export const NS_FORWARD = "urn:xmpp:forward:0";
export const NS_DELAY = "urn:xmpp:delay";

const SUBSCRIPTIONS = new Set<string>(["none", "to", "from", "both"]);
const AFFILIATIONS = new Set<string>(["owner", "publisher", "publish-only", "member", "outcast"]);
/** The widest limits Lilt's PEP options allow; a node's own values are checked against them. */
const PEP_LIMITS = { maxItemsPerNode: 100_000, maxItemBytes: 16_777_216 };

/** The mechanism names of `<scram-credentials/>` Lilt keeps credentials for. */
const MECHANISMS: Record<string, ScramHash> = {
  "SCRAM-SHA-1": "SHA-1",
  "SCRAM-SHA-256": "SHA-256",
};

/** The file does not follow XEP-0227 (or is not XML): nothing was imported. */
export class Xep227FormatError extends Error {}

/** One `<host/>` of the file with its accounts. */
export interface Xep227Host {
  host: string;
  /** Where the `<host/>` element starts (file:line). */
  where: string;
  accounts: AccountData[];
}

/** What {@link readXep227} found. */
export interface Xep227Data {
  hosts: Xep227Host[];
  /** Data that was left out, each with file:line. */
  warnings: string[];
}

/**
 * Reads a XEP-0227 file (following XIncludes) into account data. Throws `Xep227FormatError`
 * (or `XmlDocumentError` for XML that is not well-formed) naming file:line and what is wrong.
 */
export async function readXep227(path: string): Promise<Xep227Data> {
  const doc = await readXmlDocument(path);
  return new Reader(doc).read();
}

/** Options for {@link importXep227}. */
export interface ImportXep227Options {
  /** The hosts this server serves; a file naming another host is refused. */
  hosts: string[];
  /** PBKDF2 iterations for a host's accounts that come with a plaintext password. */
  iterations: (host: string) => number;
  /** Replace existing accounts instead of skipping them. */
  overwrite?: boolean;
}

/** What {@link importXep227} did. */
export interface ImportXep227Result extends ImportSummary {
  /** Warnings from reading the file and from writing accounts. */
  warnings: string[];
}

/**
 * Reads `path` and imports every account in one transaction. Throws before writing anything
 * when the file is malformed or names a host that is not configured.
 */
export async function importXep227(
  database: Database,
  path: string,
  options: ImportXep227Options,
): Promise<ImportXep227Result> {
  const data = await readXep227(path);
  const unknown = data.hosts.filter((h) => !options.hosts.includes(h.host));
  if (unknown.length > 0) {
    throw new Xep227FormatError(
      unknown.map((h) =>
        `${h.where}: host '${h.host}' is not served here (configured: ` +
        `${options.hosts.join(", ")}); add a [[host]] for it or remove it from the file`
      ).join("\n"),
    );
  }
  const accounts: HostAccount[] = data.hosts.flatMap((h) =>
    h.accounts.map((account) => ({ host: h.host, account }))
  );
  const summary = await importAccounts(database, accounts, options);
  const warnings = [...data.warnings];
  for (const { outcome } of summary.results) {
    if (outcome.status === "imported") warnings.push(...outcome.warnings);
  }
  return { ...summary, warnings };
}

/** Walks the document, collecting accounts and warnings. */
class Reader {
  #doc: XmlDocument;
  #warnings: string[] = [];

  constructor(doc: XmlDocument) {
    this.#doc = doc;
  }

  read(): Xep227Data {
    const root = this.#doc.root;
    if (root.name !== "server-data" || (root.ns !== NS_PIE && root.ns !== NS_PIE_OLD)) {
      this.#fail(
        root,
        `expected the root <server-data xmlns='${NS_PIE}'/>, found <${root.name} ` +
          `xmlns='${root.ns}'/>`,
      );
    }
    const hosts: Xep227Host[] = [];
    const seen = new Set<string>();
    for (const child of root.elements()) {
      if (child.name !== "host" || child.ns !== root.ns) {
        this.#ignore(child, "under <server-data/>");
        continue;
      }
      const host = this.#host(child, root.ns);
      if (seen.has(host.host)) this.#fail(child, `host '${host.host}' appears twice`);
      seen.add(host.host);
      hosts.push(host);
    }
    return { hosts, warnings: this.#warnings };
  }

  #host(el: Element, ns: string): Xep227Host {
    const jid = el.attrs.jid;
    if (jid === undefined || jid === "") this.#fail(el, "<host/> has no 'jid' attribute");
    let host: string;
    try {
      host = prepDomain(jid);
    } catch (error) {
      this.#fail(el, `<host jid='${jid}'/>: ${(error as Error).message}`);
    }
    const accounts: AccountData[] = [];
    const seen = new Set<string>();
    for (const child of el.elements()) {
      if (child.name !== "user" || child.ns !== ns) {
        this.#ignore(child, `under <host jid='${host}'/>`);
        continue;
      }
      const account = this.#user(child, host);
      if (seen.has(account.username)) {
        this.#fail(child, `user '${account.username}' appears twice in host '${host}'`);
      }
      seen.add(account.username);
      accounts.push(account);
    }
    return { host, where: this.#doc.where(el), accounts };
  }

  #user(el: Element, host: string): AccountData {
    const name = el.attrs.name;
    if (name === undefined || name === "") this.#fail(el, "<user/> has no 'name' attribute");
    let username: string;
    try {
      username = prepLocal(name);
    } catch (error) {
      this.#fail(el, `<user name='${name}'/>: ${(error as Error).message}`);
    }
    const bare = `${username}@${host}`;
    const account: AccountData = { username };
    if (el.attrs.password !== undefined) account.password = el.attrs.password;
    for (const child of el.elements()) {
      switch (`{${child.ns}}${child.name}`) {
        case `{${NS_PIE_SCRAM}}scram-credentials`:
          this.#scram(child, account, bare);
          break;
        case `{${NS_ROSTER}}query`:
          account.roster = this.#roster(child, bare);
          break;
        case `{${NS_CLIENT}}presence`:
          this.#pending(child, account, bare);
          break;
        case `{${NS_VCARD}}vCard`:
          account.vcard = child;
          break;
        case `{${NS_PRIVATE}}query`:
          account.privateXml = child.elements();
          break;
        case `{${el.ns}}offline-messages`:
          account.offlineMessages = this.#offline(child, bare);
          break;
        case `{${NS_BLOCKING}}blocklist`:
          account.blocklist = this.#blocklist(child, bare);
          break;
        case `{${NS_PUBSUB_OWNER}}pubsub`:
          this.#pepOwner(child, account, bare);
          break;
        case `{${NS_PUBSUB}}pubsub`:
          this.#pepItems(child, account, bare);
          break;
        case `{${NS_PIE_MAM}}archive`:
          account.archive = this.#archive(child, bare);
          break;
        default:
          this.#ignore(child, `of ${bare}`);
      }
    }
    return account;
  }

  #scram(el: Element, account: AccountData, bare: string): void {
    const mechanism = el.attrs.mechanism ?? "";
    const hash = MECHANISMS[mechanism];
    if (hash === undefined) {
      this.#warn(
        el,
        `${bare}: credentials for '${mechanism}' are left out (Lilt keeps ` +
          "SCRAM-SHA-1 and SCRAM-SHA-256)",
      );
      return;
    }
    const field = (name: string): { text: string; at: Element } => {
      const child = el.getChild(name, NS_PIE_SCRAM);
      const text = child?.text().trim();
      if (child === undefined || text === undefined || text === "") {
        this.#fail(el, `${bare}: <scram-credentials mechanism='${mechanism}'/> has no <${name}/>`);
      }
      return { text, at: child };
    };
    const bytes = (name: string, size?: number): Uint8Array => {
      const { text, at } = field(name);
      let decoded: Uint8Array;
      try {
        decoded = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
      } catch {
        this.#fail(at, `${bare}: <${name}/> of ${mechanism} is not base64`);
      }
      if (size !== undefined && decoded.length !== size) {
        this.#fail(
          at,
          `${bare}: <${name}/> of ${mechanism} has ${decoded.length} bytes, expected ${size}`,
        );
      }
      return decoded;
    };
    const count = field("iter-count");
    const countText = count.text;
    const iterations = /^[0-9]{1,9}$/.test(countText) ? Number(countText) : 0;
    if (iterations < 1) {
      this.#fail(count.at, `${bare}: <iter-count/> '${countText}' is not a positive integer`);
    }
    const credentials: ScramCredentials = {
      salt: bytes("salt"),
      iterations,
      storedKey: bytes("stored-key", HASH_BYTES[hash]),
      serverKey: bytes("server-key", HASH_BYTES[hash]),
    };
    if (credentials.salt.length === 0) this.#fail(el, `${bare}: <salt/> is empty`);
    account.scram = { ...account.scram, [hash]: credentials };
  }

  #roster(el: Element, bare: string): RosterEntry[] {
    const entries: RosterEntry[] = [];
    const seen = new Set<string>();
    for (const item of el.elements()) {
      if (item.name !== "item" || item.ns !== NS_ROSTER) {
        this.#ignore(item, `in the roster of ${bare}`);
        continue;
      }
      const jid = tryParseJid(item.attrs.jid ?? "");
      if (jid === undefined || jid.resource !== undefined) {
        this.#warn(
          item,
          `${bare}: roster item '${item.attrs.jid ?? ""}' is not a bare JID; left out`,
        );
        continue;
      }
      const contact = jid.bareString();
      if (seen.has(contact)) {
        this.#warn(item, `${bare}: roster item ${contact} appears twice; the first is kept`);
        continue;
      }
      seen.add(contact);
      let subscription = item.attrs.subscription ?? "none";
      if (!SUBSCRIPTIONS.has(subscription)) {
        this.#warn(
          item,
          `${bare}: roster item ${contact} has subscription '${subscription}'; ` +
            "imported as 'none'",
        );
        subscription = "none";
      }
      entries.push({
        jid: contact,
        name: item.attrs.name,
        subscription: subscription as Subscription,
        ask: item.attrs.ask === "subscribe",
        approved: item.attrs.approved === "true" || item.attrs.approved === "1",
        groups: item.getChildren("group", NS_ROSTER).map((group) => group.text()),
      });
    }
    return entries;
  }

  #pending(el: Element, account: AccountData, bare: string): void {
    const from = tryParseJid(el.attrs.from ?? "");
    if (el.attrs.type !== "subscribe" || from === undefined) {
      this.#ignore(el, `of ${bare} (only subscription requests with a 'from' are kept)`);
      return;
    }
    (account.pendingIn ??= []).push({ from: from.bareString(), stanza: el });
  }

  #offline(el: Element, bare: string): Element[] {
    const messages: Element[] = [];
    for (const message of el.elements()) {
      if (message.name !== "message" || message.ns !== NS_CLIENT) {
        this.#ignore(message, `in the offline messages of ${bare}`);
        continue;
      }
      messages.push(message);
    }
    return messages;
  }

  #blocklist(el: Element, bare: string): string[] {
    const jids: string[] = [];
    for (const item of el.getChildren("item", NS_BLOCKING)) {
      const jid = tryParseJid(item.attrs.jid ?? "");
      if (jid === undefined) {
        this.#warn(item, `${bare}: blocked '${item.attrs.jid ?? ""}' is not a JID; left out`);
        continue;
      }
      jids.push(jid.toString());
    }
    return jids;
  }

  #node(account: AccountData, name: string): PepNodeData {
    account.pep ??= [];
    let node = account.pep.find((n) => n.node === name);
    if (node === undefined) {
      node = { node: name, config: pepDefaultConfig(), items: [] };
      account.pep.push(node);
    }
    return node;
  }

  #pepOwner(el: Element, account: AccountData, bare: string): void {
    for (const child of el.elements()) {
      const name = child.attrs.node;
      if (name === undefined || name === "") {
        this.#fail(child, `${bare}: <${child.name}/> of a PEP node has no 'node' attribute`);
      }
      if (child.name === "configure") {
        const node = this.#node(account, name);
        const form = child.getChild("x", NS_DATA);
        if (form === undefined) continue;
        const fields = formFields(form);
        const formType = fields.get("FORM_TYPE")?.[0];
        if (formType !== undefined && formType !== NODE_CONFIG_FORM) {
          this.#fail(form, `${bare}: node '${name}' has a form of type '${formType}'`);
        }
        // One field at a time: a value Lilt cannot take (another server's empty or larger
        // value) keeps Lilt's default for that option instead of stopping the import.
        for (const [field, values] of fields) {
          if (field === "FORM_TYPE") continue;
          try {
            node.config = applyConfigFields(node.config, new Map([[field, values]]), PEP_LIMITS);
          } catch (error) {
            if (!(error instanceof PubsubError)) throw error;
            this.#warn(form, `${bare}: node '${name}': ${error.message}; Lilt's default is kept`);
          }
        }
      } else if (child.name === "affiliations") {
        const node = this.#node(account, name);
        node.affiliations ??= new Map();
        for (const item of child.getChildren("affiliation", NS_PUBSUB_OWNER)) {
          const jid = tryParseJid(item.attrs.jid ?? "");
          const affiliation = item.attrs.affiliation ?? "";
          if (affiliation === "none") continue;
          if (jid === undefined || !AFFILIATIONS.has(affiliation)) {
            this.#warn(
              item,
              `${bare}: affiliation '${affiliation}' of '${item.attrs.jid ?? ""}' ` +
                `to node '${name}' left out`,
            );
            continue;
          }
          node.affiliations.set(jid.bareString(), affiliation as Affiliation);
        }
      } else if (child.name === "subscriptions") {
        const node = this.#node(account, name);
        node.subscriptions ??= [];
        for (const item of child.getChildren("subscription", NS_PUBSUB_OWNER)) {
          const jid = tryParseJid(item.attrs.jid ?? "");
          const state = item.attrs.subscription ?? "subscribed";
          if (state === "none") continue;
          if (jid === undefined || (state !== "subscribed" && state !== "pending")) {
            this.#warn(
              item,
              `${bare}: subscription '${state}' of '${item.attrs.jid ?? ""}' ` +
                `to node '${name}' left out`,
            );
            continue;
          }
          node.subscriptions.push({
            jid: jid.toString(),
            state: state as SubscriptionState,
            subid: item.attrs.subid,
          });
        }
      } else {
        this.#ignore(child, `in the PEP nodes of ${bare}`);
      }
    }
  }

  #pepItems(el: Element, account: AccountData, bare: string): void {
    for (const items of el.elements()) {
      const name = items.attrs.node;
      if (items.name !== "items" || name === undefined || name === "") {
        this.#ignore(items, `in the PEP items of ${bare}`);
        continue;
      }
      const node = this.#node(account, name);
      for (const item of items.getChildren("item", NS_PUBSUB)) {
        const id = item.attrs.id;
        if (id === undefined || id === "") {
          this.#fail(item, `${bare}: an item of node '${name}' has no 'id'`);
        }
        const payloads = item.elements();
        if (payloads.length > 1) {
          this.#fail(item, `${bare}: item '${id}' of node '${name}' has more than one payload`);
        }
        const publisher = tryParseJid(item.attrs.publisher ?? "")?.toString();
        node.items.push({ id, payload: payloads[0], publisher });
      }
    }
  }

  #archive(el: Element, bare: string): ArchivedMessage[] {
    const entries: ArchivedMessage[] = [];
    for (const result of el.elements()) {
      const forwarded = result.getChild("forwarded", NS_FORWARD);
      const message = forwarded?.getChild("message", NS_CLIENT);
      if (result.name !== "result" || result.ns !== NS_MAM || message === undefined) {
        this.#ignore(result, `in the archive of ${bare}`);
        continue;
      }
      const stamp = forwarded!.getChild("delay", NS_DELAY)?.attrs.stamp;
      const when = stamp === undefined ? NaN : Date.parse(stamp);
      if (!Number.isFinite(when) || when < 0) {
        this.#fail(result, `${bare}: archived message has no valid <delay stamp=.../>`);
      }
      const from = tryParseJid(message.attrs.from ?? "");
      const to = tryParseJid(message.attrs.to ?? "");
      const outgoing = from === undefined || from.bareString() === bare;
      const peer = outgoing ? to : from;
      if (peer === undefined) {
        this.#warn(result, `${bare}: archived message without the other party left out`);
        continue;
      }
      entries.push({ id: result.attrs.id, when, with: peer.toString(), message });
    }
    return entries;
  }

  #ignore(el: Element, where: string): void {
    this.#warn(el, `<${el.name} xmlns='${el.ns}'/> ${where} is not imported`);
  }

  #warn(el: Element, message: string): void {
    this.#warnings.push(`${this.#doc.where(el)}: ${message}`);
  }

  #fail(el: Element, message: string): never {
    throw new Xep227FormatError(`${this.#doc.where(el)}: ${message}`);
  }
}
