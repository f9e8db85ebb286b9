// XEP-0202 Entity Time: the server answers with its clock in UTC and its local offset, which
// clients use to spot clock skew and show the server's local time.

import type { StanzaEvent } from "../core/hosts.ts";
import type { ModuleAPI } from "../core/modules.ts";
import { reply } from "../core/xml/stanza.ts";

const NS_TIME = "urn:xmpp:time";

/** One line for module listings. */
export const description = "XEP-0202: reports the server's time and time zone offset";

/**
 * Formats a time zone offset in minutes east of UTC as XEP-0082 TZD (`+02:00`, `-05:30`);
 * zero is written `+00:00` as XEP-0202 shows.
 *
 * @example
 * ```ts
 * formatTzo(-330); // "-05:30"
 * ```
 */
export function formatTzo(minutesEast: number): string {
  const sign = minutesEast < 0 ? "-" : "+";
  const abs = Math.abs(minutesEast);
  const hours = String(Math.floor(abs / 60)).padStart(2, "0");
  const minutes = String(abs % 60).padStart(2, "0");
  return `${sign}${hours}:${minutes}`;
}

/** Formats a time as XEP-0082 DateTime in UTC, whole seconds, e.g. `2006-12-19T17:58:35Z`. */
export function formatUtc(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** Loads the entity time responder on a host. */
export default function time(m: ModuleAPI): void {
  m.addFeature(NS_TIME);
  m.hook(`iq-get/host/${NS_TIME}:time`, ({ stanza, origin }: StanzaEvent) => {
    const now = new Date();
    const answer = reply(stanza);
    const el = answer.c("time", { xmlns: NS_TIME });
    // getTimezoneOffset() is minutes *behind* UTC, so negate it for the TZD sign.
    el.c("tzo").t(formatTzo(-now.getTimezoneOffset()));
    el.c("utc").t(formatUtc(now));
    origin.send(answer);
    return true;
  });
}
