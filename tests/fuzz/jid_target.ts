// The JID fuzz target: parses mutated addresses with core/jid.ts and checks that a failure is
// always a JidError, that preparation is idempotent (a prepared JID parses to itself, each part
// prepares to itself) and that parseJid and tryParseJid agree.

import {
  JID,
  JidError,
  parseJid,
  prepDomain,
  prepLocal,
  prepResource,
  tryParseJid,
} from "../../core/jid.ts";
import { FuzzFinding, type FuzzTarget, shape } from "./target.ts";

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

function parse(input: string, what: string): JID | JidError {
  try {
    return parseJid(input);
  } catch (error) {
    if (error instanceof JidError) return error;
    throw new FuzzFinding("exception", `parseJid (${what}) threw ${describe(error)}`);
  }
}

function samePart(prep: (s: string) => string, part: string | undefined, name: string): void {
  if (part === undefined) return;
  let again: string;
  try {
    again = prep(part);
  } catch (error) {
    throw new FuzzFinding(
      "idempotence",
      `the prepared ${name} ${JSON.stringify(part)} fails preparation: ${describe(error)}`,
    );
  }
  if (again !== part) {
    throw new FuzzFinding(
      "idempotence",
      `preparing the prepared ${name} ${JSON.stringify(part)} gives ${JSON.stringify(again)}`,
    );
  }
}

/** The JID parser target. */
export const jidTarget: FuzzTarget = {
  name: "jid",
  maxLength: 3500,
  dictionary: [
    "@",
    "/",
    ".",
    "..",
    "[",
    "]",
    "[::1]",
    "[v6::ff]",
    "127.0.0.1",
    "1.2.3.256",
    "xn--",
    "xn--nxasmq6b",
    "xn--a",
    "juliet",
    "example.com",
    "balcony",
    "\u00df",
    "\u03c2",
    "\u0130",
    "\u212a",
    "\u1e9e",
    "\u2160",
    "\u0345",
    "\u0627\u0644",
    "\u05d0",
    "\u200c",
    "\u200d",
    "\u3002",
    "\uff0e",
    "\uff20",
    "\ufe6b",
    "\u2100",
    "a".repeat(63),
    "a".repeat(64),
    "\u00e9".repeat(600),
    "\ud800",
  ],
  check(input: string): string {
    const result = parse(input, "input");
    let tryResult: JID | undefined;
    try {
      tryResult = tryParseJid(input);
    } catch (error) {
      throw new FuzzFinding("exception", `tryParseJid threw ${describe(error)}`);
    }
    if ((result instanceof JidError) !== (tryResult === undefined)) {
      throw new FuzzFinding("disagreement", "parseJid and tryParseJid disagree");
    }
    if (result instanceof JidError) return `error ${shape(result.reason)}`;
    if (tryResult?.toString() !== result.toString()) {
      throw new FuzzFinding("disagreement", "parseJid and tryParseJid give different JIDs");
    }
    const text = result.toString();
    const again = parse(text, "prepared JID");
    if (again instanceof JidError) {
      throw new FuzzFinding(
        "idempotence",
        `the prepared JID ${JSON.stringify(text)} does not parse: ${again.message}`,
      );
    }
    if (!again.equals(result) || again.toString() !== text) {
      throw new FuzzFinding(
        "idempotence",
        `the prepared JID ${JSON.stringify(text)} parses to ${JSON.stringify(again.toString())}`,
      );
    }
    samePart(prepLocal, result.local, "localpart");
    samePart(prepDomain, result.domain, "domainpart");
    samePart(prepResource, result.resource, "resourcepart");
    const bare = parse(result.bareString(), "bare JID");
    if (bare instanceof JidError || !bare.equals(result.bare)) {
      throw new FuzzFinding(
        "idempotence",
        `the bare JID of ${JSON.stringify(text)} does not parse to itself`,
      );
    }
    return `ok ${result.local === undefined ? "-" : "l"}${
      result.resource === undefined ? "-" : "r"
    } ` +
      `${/^\[|^\d/.test(result.domain) ? "ip" : /[^ -~]/.test(text) ? "uni" : "ascii"}`;
  },
};
