// Publish-subscribe failures as values: a stanza error condition plus the pubsub-specific child
// XEP-0060 names for each use case, thrown by the engine and turned into the error reply here.

import { Element } from "../../core/xml/element.ts";
import { errorReply, type StanzaErrorCondition } from "../../core/xml/stanza.ts";

/** Namespace of the pubsub-specific error children (XEP-0060 §14.6). */
export const NS_PUBSUB_ERRORS = "http://jabber.org/protocol/pubsub#errors";

/**
 * A request the pubsub engine refuses, with the condition XEP-0060 gives for it: e.g.
 * `new PubsubError("not-allowed", "closed-node")`, or for an optional feature Lilt lacks
 * `new PubsubError("feature-not-implemented", "unsupported", { feature: "multi-subscribe" })`.
 */
export class PubsubError extends Error {
  /** The RFC 6120 condition. */
  readonly condition: StanzaErrorCondition;
  /** The `pubsub#errors` child (e.g. "precondition-not-met"), if the use case names one. */
  readonly pubsubCondition: string | undefined;
  /** The `feature` attribute of an `<unsupported/>` child. */
  readonly feature: string | undefined;

  constructor(
    condition: StanzaErrorCondition,
    pubsubCondition?: string,
    options: { feature?: string; text?: string } = {},
  ) {
    super(
      options.text ??
        `Pubsub request failed with ${condition}${pubsubCondition ? ` (${pubsubCondition})` : ""}`,
    );
    this.condition = condition;
    this.pubsubCondition = pubsubCondition;
    this.feature = options.feature;
    this.#text = options.text;
  }

  #text: string | undefined;

  /** The human-readable text sent with the error, if any. */
  get text(): string | undefined {
    return this.#text;
  }
}

/** The error reply to an iq for a {@link PubsubError}. */
export function pubsubErrorReply(stanza: Element, error: PubsubError): Element {
  const answer = errorReply(stanza, error.condition, { text: error.text });
  if (error.pubsubCondition !== undefined) {
    const child = new Element(error.pubsubCondition, {
      xmlns: NS_PUBSUB_ERRORS,
      feature: error.feature,
    });
    answer.getChild("error")!.append(child);
  }
  return answer;
}
