// The in-memory XML element every stanza becomes: a small tree with resolved namespaces,
// plus the builder and lookup helpers modules use to read and write stanzas.

/** The namespace stanzas carry on client streams; `jabber:server` ones are treated alike. */
export const NS_CLIENT = "jabber:client";
/** The namespace stanzas carry on server-to-server streams. */
export const NS_SERVER = "jabber:server";

/** A child node: an element or a text run (already unescaped). */
export type Node = Element | string;

/**
 * An XML element with its namespace resolved.
 *
 * `name` is the local name (no prefix); `ns` is the namespace URI the element is in, so
 * `<stream:features>` parses to `name: "features"`, `ns: "http://etherx.jabber.org/streams"`.
 * `attrs` holds the attributes other than the default namespace declaration (`xmlns`).
 *
 * @example
 * ```ts
 * const iq = new Element("iq", { type: "get", id: "p1" })
 *   .c("ping", { xmlns: "urn:xmpp:ping" }).up();
 * ```
 */
export class Element {
  /** Local name (without prefix). */
  name: string;
  /** Namespace URI; children built with `c()` inherit the parent's unless given `xmlns`. */
  ns: string;
  /** Attributes; `xmlns` is never stored here (see `ns`). */
  attrs: Record<string, string>;
  /** Child elements and text runs, in document order. */
  children: Node[];
  /** The element this one was added to with `c()`/`append()`, used by `up()`. */
  parent: Element | undefined;

  /**
   * Creates an element. An `xmlns` attribute sets `ns`; without it `ns` is `jabber:client`
   * for a top-level element (stanza) and the parent's for elements built with `c()`.
   */
  constructor(name: string, attrs?: Record<string, string | undefined>, children?: Node[]) {
    this.name = name;
    this.ns = NS_CLIENT;
    this.attrs = {};
    this.children = children ?? [];
    this.parent = undefined;
    if (attrs) {
      for (const key in attrs) {
        const value = attrs[key];
        if (value === undefined) continue;
        if (key === "xmlns") this.ns = value;
        else this.attrs[key] = value;
      }
    }
  }

  /** Returns an attribute's value, or undefined. `attr("xmlns")` returns `ns`. */
  attr(name: string): string | undefined {
    return name === "xmlns" ? this.ns : this.attrs[name];
  }

  /** Sets (or with undefined, removes) an attribute; returns this element. */
  setAttr(name: string, value: string | undefined): this {
    if (name === "xmlns") {
      if (value !== undefined) this.ns = value;
    } else if (value === undefined) {
      delete this.attrs[name];
    } else {
      this.attrs[name] = value;
    }
    return this;
  }

  /** Adds a child element (inheriting this namespace unless `xmlns` is given) and returns it. */
  c(name: string, attrs?: Record<string, string | undefined>): Element {
    const child = new Element(name, attrs);
    if (!attrs || attrs.xmlns === undefined) child.ns = this.ns;
    child.parent = this;
    this.children.push(child);
    return child;
  }

  /** Appends a text run and returns this element. */
  t(text: string): this {
    if (text !== "") this.children.push(text);
    return this;
  }

  /** Appends existing nodes (elements keep their own `ns`) and returns this element. */
  append(...nodes: Node[]): this {
    for (const node of nodes) {
      if (typeof node !== "string") node.parent = this;
      this.children.push(node);
    }
    return this;
  }

  /** Returns the parent (for builder chains); the element itself at the top. */
  up(): Element {
    return this.parent ?? this;
  }

  /** Returns the root of a builder chain. */
  root(): Element {
    return this.parent ? this.parent.root() : this;
  }

  /** First child element with this local name and (when given) namespace. */
  getChild(name: string, ns?: string): Element | undefined {
    for (const child of this.children) {
      if (
        typeof child !== "string" && child.name === name && (ns === undefined || child.ns === ns)
      ) {
        return child;
      }
    }
    return undefined;
  }

  /** All child elements with this local name and (when given) namespace. */
  getChildren(name: string, ns?: string): Element[] {
    const found: Element[] = [];
    for (const child of this.children) {
      if (
        typeof child !== "string" && child.name === name && (ns === undefined || child.ns === ns)
      ) {
        found.push(child);
      }
    }
    return found;
  }

  /** First child element in a namespace, whatever its name (e.g. an iq payload). */
  getChildByNs(ns: string): Element | undefined {
    for (const child of this.children) {
      if (typeof child !== "string" && child.ns === ns) return child;
    }
    return undefined;
  }

  /** All child elements, without text runs. */
  elements(): Element[] {
    const found: Element[] = [];
    for (const child of this.children) if (typeof child !== "string") found.push(child);
    return found;
  }

  /** First child element, if any (the payload of an iq). */
  firstElement(): Element | undefined {
    for (const child of this.children) if (typeof child !== "string") return child;
    return undefined;
  }

  /** Concatenated text of the direct text children. */
  text(): string {
    let text = "";
    for (const child of this.children) if (typeof child === "string") text += child;
    return text;
  }

  /** Text of the first matching child element, or undefined when there is none. */
  getChildText(name: string, ns?: string): string | undefined {
    return this.getChild(name, ns)?.text();
  }

  /** Removes the child elements with this name (and namespace, when given); returns this. */
  removeChildren(name: string, ns?: string): this {
    this.children = this.children.filter((child) =>
      typeof child === "string" || child.name !== name || (ns !== undefined && child.ns !== ns)
    );
    return this;
  }

  /** A deep copy without the parent link. */
  clone(): Element {
    const copy = new Element(this.name);
    copy.ns = this.ns;
    copy.attrs = { ...this.attrs };
    copy.children = this.children.map((child) => {
      if (typeof child === "string") return child;
      const c = child.clone();
      c.parent = copy;
      return c;
    });
    return copy;
  }

  /** True when this element has the given local name and namespace. */
  is(name: string, ns?: string): boolean {
    return this.name === name && (ns === undefined || this.ns === ns);
  }
}

/** True for the namespaces a top-level stanza may carry (client or server streams). */
export function isStanzaNamespace(ns: string): boolean {
  return ns === NS_CLIENT || ns === NS_SERVER;
}
