// One iq request a test expects to succeed, shared by the tests that fill a store over real
// sockets and read it back (storage migrate, the XEP-0227 and Prosody imports).

import assert from "node:assert/strict";
import type { Element } from "../../core/xml/element.ts";
import { serialize } from "../../core/xml/serializer.ts";
import type { RawClient } from "./raw_client.ts";

let counter = 0;

/**
 * Sends an iq of `type` carrying `body` (to `to`, or the account when omitted) and returns its
 * answer, which must be a result: an error answer fails the test, showing the answer.
 *
 * @example
 * ```ts
 * const roster = await iqResult(alice, "get", "<query xmlns='jabber:iq:roster'/>");
 * ```
 */
export async function iqResult(
  client: RawClient,
  type: "get" | "set",
  body: string,
  to?: string,
): Promise<Element> {
  const id = `iq-${++counter}`;
  const toAttr = to === undefined ? "" : ` to='${to}'`;
  client.send(`<iq type='${type}' id='${id}'${toAttr}>${body}</iq>`);
  const answer = await client.next((el) => el.name === "iq" && el.attrs.id === id);
  assert.equal(answer.attrs.type, "result", `iq ${body} failed: ${serialize(answer)}`);
  return answer;
}
