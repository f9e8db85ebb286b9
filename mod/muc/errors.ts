// Multi-user chat refusals as values: the room logic throws a MucError with the condition
// XEP-0045 gives for the use case, and the module turns it into the error reply.

import type { StanzaErrorCondition, StanzaErrorType } from "../../core/xml/stanza.ts";

/** A request the MUC service refuses, with its RFC 6120 condition and a human-readable text. */
export class MucError extends Error {
  /** The RFC 6120 condition. */
  readonly condition: StanzaErrorCondition;
  /** The error type when XEP-0045 gives another than the condition's usual one. */
  readonly type: StanzaErrorType | undefined;

  constructor(condition: StanzaErrorCondition, text: string, type?: StanzaErrorType) {
    super(text);
    this.name = "MucError";
    this.condition = condition;
    this.type = type;
  }
}
