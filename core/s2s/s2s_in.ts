// An inbound server-to-server stream (RFC 6120): a remote server connects to send us stanzas.
// It must use TLS (by policy), then authenticate each domain pair it sends for, by SASL EXTERNAL
// with a valid certificate (XEP-0178) or by dialback (XEP-0220) where policy allows it.

import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { decodeBase64, decodeUtf8 } from "../auth/scram.ts";
import { type JID, tryParseJid } from "../jid.ts";
import { getLogger } from "../log.ts";
import {
  type PeerCertificateVerdict,
  peerChain,
  verifyPeerCertificate,
} from "../net/peer_certificate.ts";
import { Element, NS_SERVER } from "../xml/element.ts";
import { isStanza, NS_SASL, NS_STREAM, NS_TLS, toClientNamespace } from "../xml/stanza.ts";
import type { S2SContext } from "./context.ts";
import { dialbackKey, NS_DIALBACK, NS_DIALBACK_FEATURE, sameKey } from "./dialback.ts";
import { type S2SAuthMethod, S2SStream } from "./s2s_stream.ts";

/** XEP-0478 stream limits namespace. */
const NS_STREAM_LIMITS = "urn:xmpp:stream-limits:0";

const log = getLogger("s2s");

/**
 * Dialback requests one inbound stream may have waiting for verification at once: each opens
 * (or uses) a link to the claimed domain, so a peer must not start them without bound.
 */
const MAX_PENDING_DIALBACK = 16;

/** One remote domain allowed to send to one local domain on an inbound stream. */
export interface InboundPair {
  /** The remote (originating) domain. */
  remote: string;
  /** The local (receiving) domain. */
  local: string;
  /** How the remote domain authenticated. */
  method: S2SAuthMethod;
}

/** A connection a remote server opened to us. */
export class S2SIn extends S2SStream {
  readonly kind = "s2sin" as const;
  /** Authenticated (remote, local) pairs; stanzas are accepted for these only. */
  readonly pairs: InboundPair[] = [];
  /** The local domain the stream header named. */
  local = "";
  /** The remote domain the stream header named ("" when it gave none). */
  from = "";
  #streamId = "";
  #chain: Uint8Array[] = [];
  #verdicts = new Map<string, PeerCertificateVerdict>();
  /** Dialback requests waiting for the authoritative server's answer. */
  #verifying = 0;

  constructor(socket: Socket, ctx: S2SContext) {
    super(socket, ctx, "s2sin");
  }

  /** Starts reading: at once for STARTTLS ports, after the handshake for direct TLS. */
  async start(directTls: boolean): Promise<void> {
    await this.transport.start(undefined);
    if (directTls) await this.#startTls();
  }

  get remote(): string {
    return this.pairs[0]?.remote ?? this.from;
  }

  /** The stream id we gave the remote server (dialback keys are bound to it). */
  get streamId(): string {
    return this.#streamId;
  }

  /** How the first pair authenticated, if any. */
  get authMethod(): S2SAuthMethod | undefined {
    return this.pairs[0]?.method;
  }

  /** Stanzas "sent" on an inbound stream go out over our own link to their domain. */
  send(stanza: Element): void {
    this.ctx.sendRemote(stanza, this);
  }

  /** Drops the pairs of one local domain; closes the stream when none is left. */
  closePair(remote: string, local: string): boolean {
    const index = this.pairs.findIndex((p) => p.remote === remote && p.local === local);
    if (index < 0) return false;
    this.pairs.splice(index, 1);
    if (this.pairs.length === 0) this.close();
    return true;
  }

  protected onGone(): void {}

  protected sendHeaderBeforeError(): void {
    this.sendHeader({
      id: crypto.randomUUID(),
      from: this.local || undefined,
      to: this.from || undefined,
    });
  }

  /** The certificate's verdict for a remote domain (computed once per domain). */
  verdictFor(remote: string): PeerCertificateVerdict | undefined {
    if (!this.secure) return undefined;
    let verdict = this.#verdicts.get(remote);
    if (!verdict) {
      verdict = verifyPeerCertificate(this.#chain, remote, this.ctx.trust());
      this.#verdicts.set(remote, verdict);
      this.certificate ??= verdict;
    }
    return verdict;
  }

  #refuse(remote: string, local: string, reason: string): void {
    log.warn("Refused {remote} -> {local} (inbound): {reason}", { remote, local, reason });
    this.ctx.refused({ direction: "in", local, remote, reason });
  }

  protected onStreamOpen(header: Element, defaultNs: string | undefined): void {
    const server = this.ctx.server;
    const to = tryParseJid(header.attrs.to ?? "");
    const from = tryParseJid(header.attrs.from ?? "");
    this.#streamId = crypto.randomUUID();
    const local = to && to.local === undefined && to.resource === undefined ? to.domain : "";
    const host = local ? server.hosts.get(local) : undefined;
    if (this.local === "" && host) this.local = local;
    if (from && from.local === undefined && from.resource === undefined) this.from = from.domain;
    this.sendHeader({
      id: this.#streamId,
      from: this.local || undefined,
      to: this.from || undefined,
    });
    if (header.name !== "stream" || header.ns !== NS_STREAM) {
      this.close("invalid-namespace", "The stream root must be <stream:stream>");
      return;
    }
    if (defaultNs !== NS_SERVER) {
      this.close("invalid-namespace", `Server streams use the '${NS_SERVER}' namespace`);
      return;
    }
    if (!host || local !== this.local) {
      this.close("host-unknown", `This server does not serve '${header.attrs.to ?? ""}'`);
      return;
    }
    if (this.from) {
      const refusal = this.ctx.policy.refusal(this.local, this.from);
      if (refusal) {
        this.#refuse(this.from, this.local, refusal);
        this.close("policy-violation", refusal);
        return;
      }
    }
    if (header.attrs.version === undefined || !/^1\.\d+$/.test(header.attrs.version)) {
      // A pre-RFC 6120 server cannot negotiate TLS, which policy normally requires.
      if (this.ctx.policy.requireEncryption(this.local)) {
        this.#refuse(this.from, this.local, "The remote server does not support TLS (no version)");
        this.close("unsupported-version", "This server requires XMPP 1.0 streams with TLS");
      } else if (!this.ctx.policy.dialbackEnabled(this.local)) {
        // Such a server can only authenticate by dialback.
        this.#refuse(this.from, this.local, "The remote server can only use dialback (no version)");
        this.close("unsupported-version", "This server requires XMPP 1.0 streams (no dialback)");
      }
      return; // dialback without features (XEP-0220 §2.1.1 legacy servers)
    }
    this.#sendStreamFeatures();
  }

  #sendStreamFeatures(): void {
    const features = new Element("features", { xmlns: NS_STREAM });
    const requireTls = this.ctx.policy.requireEncryption(this.local);
    if (!this.secure) {
      const starttls = features.c("starttls", { xmlns: NS_TLS });
      if (requireTls) starttls.c("required");
    }
    if (this.pairs.length === 0 && this.secure && this.from) {
      // XEP-0178: EXTERNAL only when the certificate is valid for the domain in 'from'.
      if (this.verdictFor(this.from)?.status === "valid") {
        features.c("mechanisms", { xmlns: NS_SASL }).c("mechanism").t("EXTERNAL");
      }
    }
    if ((this.secure || !requireTls) && this.ctx.policy.dialbackEnabled(this.local)) {
      features.c("dialback", { xmlns: NS_DIALBACK_FEATURE }).c("errors");
    }
    // XEP-0478: what this stream accepts from the remote server.
    const config = this.ctx.config();
    const limits = features.c("limits", { xmlns: NS_STREAM_LIMITS });
    limits.c("max-bytes").t(String(config.get<number>("s2s_stanza_size_limit")));
    limits.c("idle-seconds").t(String(config.get<number>("s2s_idle_timeout")));
    this.sendFeatures(features);
  }

  protected onElement(el: Element): void {
    if (el.ns === NS_TLS && el.name === "starttls") return this.#onStartTls();
    if (el.ns === NS_SASL) return this.#onSasl(el);
    if (el.ns === NS_DIALBACK) {
      if (el.name === "result") return void this.#onDialbackResult(el);
      if (el.name === "verify") return this.#onDialbackVerify(el);
    }
    if (!isStanza(el) || el.ns !== NS_SERVER) {
      this.close("unsupported-stanza-type", `Unexpected element <${el.name}> in '${el.ns}'`);
      return;
    }
    this.#onStanza(el);
  }

  // ---------- TLS ----------

  #onStartTls(): void {
    if (this.secure) {
      this.write(`<failure xmlns='${NS_TLS}'/>`);
      this.close();
      return;
    }
    this.write(`<proceed xmlns='${NS_TLS}'/>`);
    this.transport.flush();
    this.#startTls().catch(() => {});
  }

  async #startTls(): Promise<void> {
    const raw = this.transport.takeSocket();
    let secure: TLSSocket;
    try {
      secure = await this.ctx.tls.upgrade(raw, { expectedServername: this.local || undefined });
    } catch (error) {
      const reason = `TLS handshake failed: ${(error as Error).message}`;
      log.info("TLS with {ip} failed: {reason}", { ip: this.ip, reason });
      this.closeReason = reason;
      this.destroy();
      return;
    }
    if (this.closed) {
      secure.destroy();
      return;
    }
    this.#chain = peerChain(secure);
    this.transport.useTlsSocket(secure);
  }

  // ---------- SASL EXTERNAL (XEP-0178) ----------

  #saslFailure(condition: string, text: string): void {
    const failure = new Element("failure", { xmlns: NS_SASL });
    failure.c(condition);
    failure.c("text", { "xml:lang": "en" }).t(text);
    this.writeElement(failure);
  }

  #onSasl(el: Element): void {
    if (el.name === "abort") {
      this.#saslFailure("aborted", "Authentication aborted");
      return;
    }
    if (el.name !== "auth") {
      this.close("unsupported-stanza-type", `Unexpected SASL element <${el.name}>`);
      return;
    }
    if (this.pairs.length > 0) {
      this.close("policy-violation", "Already authenticated");
      return;
    }
    if (el.attrs.mechanism !== "EXTERNAL") {
      this.#saslFailure("invalid-mechanism", "Only EXTERNAL is offered to servers");
      return;
    }
    const text = el.text().trim();
    let authzid = this.from;
    if (text !== "" && text !== "=") {
      const bytes = decodeBase64(text.replace(/\s+/g, ""));
      const decoded = bytes && decodeUtf8(bytes);
      if (decoded === undefined) {
        this.#saslFailure("incorrect-encoding", "The authorization identity is not base64");
        return;
      }
      authzid = decoded;
    }
    if (!this.secure || authzid === "" || authzid !== this.from) {
      const reason = !this.secure
        ? "SASL EXTERNAL needs TLS"
        : `The authorization identity '${authzid}' is not the stream's 'from' '${this.from}'`;
      this.#saslFailure("invalid-authzid", reason);
      return;
    }
    const refusal = this.ctx.policy.refusal(this.local, authzid);
    const verdict = this.verdictFor(authzid)!;
    if (refusal || verdict.status !== "valid") {
      const reason = refusal ?? verdict.reason;
      this.#refuse(authzid, this.local, reason);
      this.#saslFailure("not-authorized", reason);
      return;
    }
    this.pairs.push({ remote: authzid, local: this.local, method: "sasl-external" });
    this.authenticated = true;
    log.info("{remote} authenticated to {local} by SASL EXTERNAL (inbound {id}, {tls})", {
      remote: authzid,
      local: this.local,
      id: this.id,
      tls: this.tlsVersion,
    });
    this.write(`<success xmlns='${NS_SASL}'/>`);
    this.transport.restart();
  }

  // ---------- dialback (XEP-0220) ----------

  #dialbackAnswer(name: "result" | "verify", attrs: Record<string, string | undefined>): Element {
    return new Element(name, { xmlns: NS_DIALBACK, ...attrs });
  }

  #dialbackError(
    name: "result" | "verify",
    request: Element,
    condition: string,
    type: string,
    text: string,
  ): void {
    const answer = this.#dialbackAnswer(name, {
      from: request.attrs.to,
      to: request.attrs.from,
      id: request.attrs.id,
      type: "error",
    });
    const error = answer.c("error", { type });
    error.c(condition, { xmlns: "urn:ietf:params:xml:ns:xmpp-stanzas" });
    error.c("text", { xmlns: "urn:ietf:params:xml:ns:xmpp-stanzas", "xml:lang": "en" }).t(text);
    this.writeElement(answer);
  }

  async #onDialbackResult(el: Element): Promise<void> {
    const remote = domainOf(el.attrs.from);
    const local = domainOf(el.attrs.to);
    const key = el.text().trim();
    if (!remote || !local || key === "" || el.attrs.type !== undefined) {
      this.close("invalid-xml", "A dialback request needs 'from', 'to' and a key");
      return;
    }
    const host = this.ctx.server.hosts.get(local);
    if (!host) {
      this.#dialbackError("result", el, "item-not-found", "cancel", `Unknown domain '${local}'`);
      return;
    }
    if (!this.secure && this.ctx.policy.requireEncryption(local)) {
      const reason = "Dialback before TLS, and s2s_require_encryption is on";
      this.#refuseDialback(el, "policy-violation", reason);
      return;
    }
    const refusal = this.ctx.policy.refusal(local, remote);
    if (refusal) {
      this.#refuseDialback(el, "not-allowed", refusal);
      return;
    }
    if (!this.ctx.policy.dialbackEnabled(local)) {
      const reason = `Dialback is off for '${local}' (s2s_dialback = false)`;
      this.#refuseDialback(el, "policy-violation", reason);
      return;
    }
    const verdict = this.verdictFor(remote);
    const answer = (type: "valid" | "invalid", method: S2SAuthMethod) => {
      if (this.closed) return;
      this.writeElement(this.#dialbackAnswer("result", { from: local, to: remote, type }));
      if (type === "valid") {
        if (!this.pairs.some((p) => p.remote === remote && p.local === local)) {
          this.pairs.push({ remote, local, method });
        }
        this.authenticated = true;
        log.info("{remote} authenticated to {local} by {method} (inbound {id})", {
          remote,
          local,
          method,
          id: this.id,
        });
      }
    };
    if (verdict?.status === "valid") {
      // The certificate already proves the identity (XEP-0344): no need to call back.
      answer("valid", "dialback-certificate");
      return;
    }
    const rule = this.ctx.policy.certificateRequiredBy(local, remote);
    if (rule !== undefined) {
      const why = verdict ? verdict.reason : "The remote server presented no certificate";
      const reason = `${why}; a valid certificate is required (${rule})`;
      this.#refuseDialback(el, "not-authorized", reason);
      return;
    }
    if (this.#verifying >= MAX_PENDING_DIALBACK) {
      this.close("policy-violation", "Too many dialback requests waiting for verification");
      return;
    }
    let valid: boolean;
    this.#verifying++;
    try {
      valid = await this.ctx.verifyKey(local, remote, this.#streamId, key);
    } catch (error) {
      const reason = `Cannot reach '${remote}' to verify its dialback key: ${
        (error as Error).message
      }`;
      this.#refuse(remote, local, reason);
      this.#dialbackError("result", el, "remote-connection-failed", "cancel", reason);
      return;
    } finally {
      this.#verifying--;
    }
    if (!valid) {
      const reason = `'${remote}' did not confirm the dialback key`;
      this.#refuse(remote, local, reason);
      answer("invalid", "dialback");
      return;
    }
    answer("valid", "dialback");
  }

  /**
   * Refuses a dialback request by policy, logged and listed. When nothing else is authenticated
   * or being verified on this stream, the stream ends with a stream error carrying the reason
   * (as Prosody does: ejabberd logs that reason, where it only reports a dialback error as
   * "unrecognized"): `not-authorized` for a missing or invalid certificate, `policy-violation`
   * otherwise. Else the other pairs stay, and only this one gets a dialback error (XEP-0220 §2.4).
   */
  #refuseDialback(
    request: Element,
    condition: "policy-violation" | "not-authorized" | "not-allowed",
    reason: string,
  ): void {
    this.#refuse(domainOf(request.attrs.from) ?? "", domainOf(request.attrs.to) ?? "", reason);
    if (this.pairs.length === 0 && this.#verifying === 0) {
      this.close(condition === "not-authorized" ? condition : "policy-violation", reason);
      return;
    }
    const type = condition === "not-authorized" ? "auth" : "cancel";
    this.#dialbackError("result", request, condition, type, reason);
  }

  /** We are the authoritative server: is `key` the one we sent as `local` on stream `id`? */
  #onDialbackVerify(el: Element): void {
    const receiving = domainOf(el.attrs.from);
    const originating = domainOf(el.attrs.to);
    const id = el.attrs.id;
    if (!receiving || !originating || !id || el.attrs.type !== undefined) {
      this.close("invalid-xml", "A dialback verification needs 'from', 'to' and 'id'");
      return;
    }
    if (!this.ctx.server.hosts.has(originating)) {
      this.#dialbackError("verify", el, "item-not-found", "cancel", `Unknown '${originating}'`);
      return;
    }
    if (!this.ctx.policy.dialbackEnabled(originating)) {
      // We never send dialback keys for this domain, so none can be ours.
      const reason = `Dialback is off for '${originating}' (s2s_dialback = false)`;
      this.#dialbackError("verify", el, "policy-violation", "cancel", reason);
      return;
    }
    const expected = dialbackKey(this.ctx.secret, receiving, originating, id);
    const type = sameKey(expected, el.text().trim()) ? "valid" : "invalid";
    this.writeElement(
      this.#dialbackAnswer("verify", { from: originating, to: receiving, id, type }),
    );
  }

  // ---------- stanzas ----------

  #onStanza(stanza: Element): void {
    const from = tryParseJid(stanza.attrs.from ?? "");
    const to = tryParseJid(stanza.attrs.to ?? "");
    if (!from || !to) {
      this.close("improper-addressing", "Server stanzas need valid 'from' and 'to' addresses");
      return;
    }
    if (this.pairs.length === 0) {
      this.close("not-authorized", "Authenticate before sending stanzas");
      return;
    }
    if (!this.#allowed(from, to)) {
      this.close(
        "invalid-from",
        `'${from.domain}' is not authenticated to send to '${to.domain}' on this stream`,
      );
      return;
    }
    toClientNamespace(stanza, NS_SERVER);
    this.ctx.server.route(stanza, this);
  }

  #allowed(from: JID, to: JID): boolean {
    for (const pair of this.pairs) {
      if (pair.remote === from.domain && pair.local === to.domain) return true;
    }
    return false;
  }
}

function domainOf(value: string | undefined): string | undefined {
  const jid = tryParseJid(value ?? "");
  return jid && jid.local === undefined && jid.resource === undefined ? jid.domain : undefined;
}
