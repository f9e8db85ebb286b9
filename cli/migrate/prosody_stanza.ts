// Turns a stanza Prosody stored as a Lua table (util.stanza's preserialize: `name`, `attr`,
// children at 1..n as tables or text) back into an Element. Namespaced attributes, which
// Prosody keys as "NAMESPACE\1name", get the `xml:` prefix or a declared one.

import { Element, type Node } from "../../core/xml/element.ts";
import { LuaTable } from "./lua_table.ts";

const NS_XML = "http://www.w3.org/XML/1998/namespace";
const NAME = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

/** Options for {@link elementFromLua}. */
export interface ElementFromLuaOptions {
  /** Where the table came from (named in errors). */
  where: string;
  /** The namespace an element without `xmlns` is in (default jabber:client, a stanza's). */
  parentNs?: string;
}

/** The table is not a stored stanza. */
export class StoredStanzaError extends Error {}

/** Builds the Element a preserialized stanza table stands for. Throws `StoredStanzaError`. */
export function elementFromLua(table: LuaTable, options: ElementFromLuaOptions): Element {
  return build(table, options.parentNs ?? "jabber:client", options.where, 0);
}

function build(table: LuaTable, parentNs: string, where: string, depth: number): Element {
  if (depth > 100) throw new StoredStanzaError(`${where}: elements nested too deeply`);
  const name = table.string("name");
  if (name === undefined || !NAME.test(name)) {
    throw new StoredStanzaError(
      `${where}: expected a stored stanza with a name, found ${
        name === undefined ? "none" : `'${name}'`
      }`,
    );
  }
  const attr = table.table("attr");
  const el = new Element(name, { xmlns: attr?.string("xmlns") ?? parentNs });
  let prefixes = 0;
  for (const [key, value] of attr?.stringEntries() ?? []) {
    if (key === "xmlns" || typeof value !== "string") continue;
    const separator = key.indexOf("\x01");
    if (separator === -1) {
      if (NAME.test(key) || /^xml:[A-Za-z_][A-Za-z0-9_.-]*$/.test(key)) el.attrs[key] = value;
      continue;
    }
    const ns = key.slice(0, separator);
    const local = key.slice(separator + 1);
    if (!NAME.test(local)) continue;
    if (ns === NS_XML) {
      el.attrs[`xml:${local}`] = value;
    } else {
      const prefix = `ns${++prefixes}`;
      el.attrs[`xmlns:${prefix}`] = ns;
      el.attrs[`${prefix}:${local}`] = value;
    }
  }
  const children: Node[] = [];
  for (const child of table.array()) {
    if (typeof child === "string") {
      children.push(child);
    } else if (child instanceof LuaTable) {
      const built = build(child, el.ns, where, depth + 1);
      built.parent = el;
      children.push(built);
    }
  }
  el.children = children;
  return el;
}

/**
 * The preserialized table of an element (what `elementFromLua` reads back), for stanzas
 * Prosody's SQL storage keeps as XML text where its file storage keeps tables.
 */
export function luaFromElement(el: Element): LuaTable {
  const table = new LuaTable();
  table.entries.set("name", el.name);
  const attr = new LuaTable();
  attr.entries.set("xmlns", el.ns);
  for (const [key, value] of Object.entries(el.attrs)) attr.entries.set(key, value);
  table.entries.set("attr", attr);
  el.children.forEach((child, i) => {
    table.entries.set(i + 1, typeof child === "string" ? child : luaFromElement(child));
  });
  return table;
}
