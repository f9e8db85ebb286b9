// What server-to-server streams need from the federation manager, kept as an interface so the
// stream classes and the manager do not import each other.

import type { Config } from "../config.ts";
import type { ServerContext } from "../context.ts";
import type { LoadedCertificate } from "../net/certificates.ts";
import type { Resolver } from "../net/dns.ts";
import type { TrustStore } from "../net/peer_certificate.ts";
import type { TlsContexts } from "../net/tls.ts";
import type { Session } from "../sessions.ts";
import type { Element } from "../xml/element.ts";
import type { S2SPolicy } from "./policy.ts";

/** One refused or failed federation attempt, kept for `s2s show`. */
export interface S2SRefusal {
  /** When it happened (ms epoch). */
  at: number;
  /** "in": a remote server connected to us; "out": we connected to it. */
  direction: "in" | "out";
  /** The local domain. */
  local: string;
  /** The remote domain ("" when it never said). */
  remote: string;
  /** The exact reason, as logged. */
  reason: string;
}

/** Services and callbacks the manager gives each stream. */
export interface S2SContext {
  /** The running server. */
  readonly server: ServerContext;
  /** The configuration in force. */
  config(): Config;
  /** Federation policy (reads the configuration in force). */
  readonly policy: S2SPolicy;
  /** Server-side TLS that asks remote servers for their certificate. */
  readonly tls: TlsContexts;
  /** Trust anchors for remote certificates. */
  trust(): TrustStore;
  /** The dialback secret (XEP-0185). */
  readonly secret: string;
  /** The certificate presented for a local domain (outbound TLS client certificate). */
  certificateFor(local: string): LoadedCertificate | undefined;
  /** DNS for SRV and address lookups. */
  readonly resolver: Resolver;
  /**
   * Asks the authoritative server of `remote` whether `key` is the dialback key it sent on
   * the stream `streamId` we opened for `local` (XEP-0220 §2.1.3).
   */
  verifyKey(local: string, remote: string, streamId: string, key: string): Promise<boolean>;
  /** Sends a stanza to a remote domain (error replies to stanzas from remote servers). */
  sendRemote(stanza: Element, origin: Session): void;
  /** Records a refusal or failure (also logged by the caller). */
  refused(refusal: Omit<S2SRefusal, "at">): void;
}
