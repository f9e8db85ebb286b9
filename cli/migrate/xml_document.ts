// Reads a whole XML document from disk into Lilt's Element tree, remembering where each element
// started, so an import can say "file:line: what is wrong". Unlike the stream parser it accepts
// what export files contain (XML declaration, comments, CDATA) and follows XInclude.

import { dirname, isAbsolute, resolve } from "node:path";
import { SaxesParser } from "saxes";
import { Element } from "../../core/xml/element.ts";

/** The XInclude namespace (W3C XML Inclusions 1.0). */
export const NS_XINCLUDE = "http://www.w3.org/2001/XInclude";

/** Nested includes followed before the document is refused. */
const MAX_INCLUDE_DEPTH = 8;

/** A document read by {@link readXmlDocument}. */
export interface XmlDocument {
  /** The root element, with every `<xi:include/>` replaced by what it names. */
  root: Element;
  /** Where `el` starts, as `file:line`. */
  where(el: Element): string;
}

/** The file is not well-formed XML, or an include cannot be followed. */
export class XmlDocumentError extends Error {}

/**
 * Reads and parses `path`. Relative `href` includes without `parse` or `xpointer` are followed
 * (paths relative to the including file), as XEP-0227 requires of an importing server; other
 * includes, cycles and nesting deeper than eight files are errors. No external entity or DTD is
 * ever loaded: only XML's predefined entities are known.
 */
export async function readXmlDocument(path: string): Promise<XmlDocument> {
  const positions = new WeakMap<Element, string>();
  const root = await readFile(resolve(path), positions, []);
  return {
    root,
    where: (el) => positions.get(el) ?? path,
  };
}

async function readFile(
  path: string,
  positions: WeakMap<Element, string>,
  including: string[],
): Promise<Element> {
  if (including.includes(path)) {
    throw new XmlDocumentError(`${including.at(-1)}: the include of ${path} makes a cycle`);
  }
  if (including.length >= MAX_INCLUDE_DEPTH) {
    throw new XmlDocumentError(
      `${including.at(-1)}: includes nest deeper than ${MAX_INCLUDE_DEPTH} files`,
    );
  }
  let text: string;
  try {
    const bytes = await Deno.readFile(path);
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (error) {
    const reason = error instanceof Deno.errors.NotFound
      ? "no such file"
      : error instanceof TypeError
      ? "not valid UTF-8"
      : (error as Error).message;
    const from = including.length > 0 ? `${including.at(-1)}: ` : "";
    throw new XmlDocumentError(`${from}cannot read ${path}: ${reason}`);
  }
  const root = parseText(text, path, positions);
  await expandIncludes(root, path, positions, [...including, path]);
  return root;
}

function parseText(text: string, path: string, positions: WeakMap<Element, string>): Element {
  const parser = new SaxesParser({ xmlns: true, position: true, fileName: path });
  const stack: Element[] = [];
  let root: Element | undefined;
  let failure: Error | undefined;
  parser.on("error", (error) => {
    failure ??= error;
  });
  parser.on("opentag", (tag) => {
    const attrs: Record<string, string> = {};
    for (const [name, attribute] of Object.entries(tag.attributes)) {
      if (name !== "xmlns") attrs[name] = attribute.value;
    }
    const el = new Element(tag.local, attrs);
    el.ns = tag.uri;
    positions.set(el, `${path}:${parser.line}`);
    const parent = stack.at(-1);
    if (parent) {
      parent.children.push(el);
      el.parent = parent;
    } else {
      root = el;
    }
    stack.push(el);
  });
  parser.on("closetag", () => {
    stack.pop();
  });
  const addText = (data: string) => {
    const parent = stack.at(-1);
    if (parent) parent.children.push(data);
  };
  parser.on("text", addText);
  parser.on("cdata", addText);
  parser.on("doctype", () => {
    failure ??= parser.makeError("a DOCTYPE is not allowed in an export file");
  });
  try {
    parser.write(text).close();
  } catch (error) {
    failure ??= error as Error;
  }
  if (failure !== undefined) throw new XmlDocumentError(failure.message);
  if (root === undefined) throw new XmlDocumentError(`${path}: no root element`);
  return root;
}

async function expandIncludes(
  el: Element,
  path: string,
  positions: WeakMap<Element, string>,
  including: string[],
): Promise<void> {
  for (let i = 0; i < el.children.length; i++) {
    const child = el.children[i];
    if (typeof child === "string") continue;
    if (child.ns !== NS_XINCLUDE) {
      await expandIncludes(child, path, positions, including);
      continue;
    }
    if (child.name !== "include") continue;
    const at = positions.get(child) ?? path;
    const href = child.attrs.href;
    if (href === undefined || href === "") {
      throw new XmlDocumentError(`${at}: <include/> without href is not supported`);
    }
    if (child.attrs.parse !== undefined && child.attrs.parse !== "xml") {
      throw new XmlDocumentError(`${at}: <include parse='${child.attrs.parse}'/> is not supported`);
    }
    if (child.attrs.xpointer !== undefined) {
      throw new XmlDocumentError(`${at}: <include xpointer=.../> is not supported`);
    }
    if (isAbsolute(href) || /^[A-Za-z][A-Za-z0-9+.-]*:/.test(href)) {
      throw new XmlDocumentError(
        `${at}: include '${href}' is not a relative path (only relative includes are followed)`,
      );
    }
    const target = resolve(dirname(path), decodeURIComponent(href));
    const included = await readFile(target, positions, including);
    included.parent = el;
    el.children[i] = included;
  }
}
