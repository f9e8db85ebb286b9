// Sending an iq from one of the server's hosts and waiting for its answer: modules do it through
// `ModuleAPI.sendIq`, the admin shell for `xmpp ping`.

import type { ServerContext } from "./context.ts";
import type { Host } from "./hosts.ts";
import type { Element } from "./xml/element.ts";
import { errorCondition } from "./xml/stanza.ts";

/** Error thrown by {@link requestIq} when the answer is an error or never comes. */
export class IqError extends Error {
  /** The error stanza, when there was one. */
  readonly stanza: Element | undefined;
  /**
   * Its condition (e.g. "service-unavailable"), "remote-server-timeout" on timeout, or the
   * reason given when the request was abandoned (e.g. "module-unloaded").
   */
  readonly condition: string;
  constructor(condition: string, stanza?: Element) {
    super(`The iq failed with ${condition}`);
    this.condition = condition;
    this.stanza = stanza;
  }
}

/** Options for {@link requestIq}. */
export interface RequestIqOptions {
  /** Milliseconds to wait for the answer. Default 30000. */
  timeoutMs?: number;
  /** Abandons the request: it rejects with an IqError whose condition is the abort reason. */
  signal?: AbortSignal;
}

/**
 * Routes an iq get/set from `host` (its `from` defaults to the host) and resolves with the
 * result stanza; rejects with {@link IqError} on an error reply, after the timeout, or when
 * abandoned. The answer is caught as it reaches the host (`iq-result/host/<id>`), so the iq's
 * `id` must be set and unique.
 */
export function requestIq(
  server: ServerContext,
  host: Host,
  stanza: Element,
  options: RequestIqOptions = {},
): Promise<Element> {
  if (!stanza.attrs.from) stanza.attrs.from = host.domain;
  const id = stanza.attrs.id;
  return new Promise<Element>((resolve, reject) => {
    const finish = () => {
      offResult();
      offError();
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", abandon);
    };
    const abandon = () => {
      finish();
      reject(new IqError(String(options.signal?.reason ?? "abandoned")));
    };
    const offResult = host.events.on(`iq-result/host/${id}`, ({ stanza: answer }) => {
      finish();
      resolve(answer);
      return true;
    });
    const offError = host.events.on(`iq-error/host/${id}`, ({ stanza: answer }) => {
      finish();
      reject(new IqError(errorCondition(answer) ?? "undefined-condition", answer));
      return true;
    });
    const timer = setTimeout(() => {
      finish();
      reject(new IqError("remote-server-timeout"));
    }, options.timeoutMs ?? 30_000);
    options.signal?.addEventListener("abort", abandon);
    server.route(stanza, server.hostSession(host.domain));
  });
}
