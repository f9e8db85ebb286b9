// Server-side SASL for c2s (RFC 6120 §6): which mechanisms a stream may offer, and the SCRAM
// (RFC 5802, RFC 7677, with tls-server-end-point channel binding from RFC 5929 and XEP-0474
// downgrade protection) and PLAIN exchanges, each a small state machine fed the decoded bytes of
// <auth/> and <response/>.
// A failure also carries its reason for the log and the login throttle, never for the client.

import type { AccountStore } from "./accounts.ts";
import {
  decodeBase64,
  decodeSaslName,
  decodeUtf8,
  digest,
  downgradeProtectionHash,
  encodeBase64,
  fakeSalt,
  HASH_BYTES,
  hmac,
  type SaslOffer,
  type ScramCredentials,
  type ScramHash,
  timingSafeEqual,
  utf8,
  xor,
} from "./scram.ts";

/** The SASL failure conditions of RFC 6120 §6.5. */
export type SaslFailure =
  | "aborted"
  | "account-disabled"
  | "credentials-expired"
  | "encryption-required"
  | "incorrect-encoding"
  | "invalid-authzid"
  | "invalid-mechanism"
  | "malformed-request"
  | "mechanism-too-weak"
  | "not-authorized"
  | "temporary-auth-failure";

/**
 * Why an exchange failed, for the server's log and the login throttle. It is never sent: on the
 * wire an unknown user and a wrong password are the same `not-authorized`.
 */
export type SaslFailureReason =
  /** The proof or password did not match the stored credentials. */
  | "wrong-password"
  /** No such account (the exchange ran against fake credentials). */
  | "unknown-user"
  /** The username is not a valid JID localpart, so no account can have it. */
  | "invalid-username"
  /** The account exists but has no credentials for this mechanism's hash. */
  | "no-credentials"
  /** The credentials were right but the account may not log in. */
  | "disabled-account"
  /** The authorization identity names someone else. */
  | "invalid-authzid"
  /** A -PLUS client asked for a channel binding type this server cannot compute. */
  | "unsupported-channel-binding"
  /** The client saw no -PLUS although it was offered ('y' flag, RFC 5802 §6). */
  | "channel-binding-downgrade"
  /** The channel binding data or GS2 header does not match this TLS channel. */
  | "channel-binding-mismatch"
  /** The message broke the mechanism's syntax or order. */
  | "malformed-request";

/** What the server answers to one client message. */
export type SaslStep =
  | { kind: "challenge"; data: Uint8Array }
  | { kind: "success"; username: string; data?: Uint8Array }
  | { kind: "failure"; condition: SaslFailure; text?: string; reason: SaslFailureReason };

const CREDENTIAL_FAILURES: ReadonlySet<SaslFailureReason> = new Set([
  "wrong-password",
  "unknown-user",
  "invalid-username",
  "no-credentials",
]);

/**
 * Whether a failure is a rejected credential (a password guess), which the login throttle
 * counts and `auth_failure_delay` slows down. Syntax, channel binding and authorization
 * failures are not: the password was never checked, and the client may retry at once with
 * another mechanism on the same stream (RFC 6120 §6.4.5).
 */
export function isCredentialFailure(reason: SaslFailureReason): boolean {
  return CREDENTIAL_FAILURES.has(reason);
}

/** What a mechanism needs to know about the stream it runs on. */
export interface SaslContext {
  /** The host the client authenticates to. */
  host: string;
  /** Whether TLS is active on the stream. */
  secure: boolean;
  /** Offer PLAIN without TLS (configuration; for tests and loopback setups). */
  allowPlainInsecure: boolean;
  /** Where credentials come from. */
  accounts: AccountStore;
  /**
   * Channel binding data for the -PLUS mechanisms. Present only when the stream offers them:
   * on TLS, and only where the operator has said the clients read XEP-0440 (a client that
   * does not assumes tls-unique, which this server cannot compute, and fails).
   */
  channelBinding?: { type: "tls-server-end-point"; data: Uint8Array };
  /**
   * Fail a client that sends the GS2 flag "y" (it supports channel binding but believes we
   * do not) while -PLUS is offered: RFC 5802's downgrade detection. When -PLUS is not offered
   * "y" is the right answer and always accepted.
   */
  rejectChannelBindingDowngrade?: boolean;
  /**
   * What the stream advertised when it sent its features (the mechanisms of the SASL profile
   * in use, and the XEP-0440 types), which SCRAM's XEP-0474 hash covers. A stream remembers it
   * because a reload may change what `advertisedMechanisms` would say before the client
   * authenticates; when absent, `saslOffer(ctx)` is used.
   */
  offer?: SaslOffer;
  /** Prepares a username as a JID localpart; undefined when it is not a valid one. */
  prepUsername(raw: string): string | undefined;
  /** Whether an (existing, prepared) account may not log in. */
  isDisabled?(username: string): boolean;
}

/** One running SASL exchange. */
export interface SaslMechanism {
  /** The mechanism name as advertised. */
  readonly name: string;
  /**
   * The username the client gave, once the exchange has seen it: prepared when it is a valid
   * localpart, as sent otherwise. For the log only.
   */
  readonly username: string | undefined;
  /**
   * Processes the next client message: the initial response (undefined when the client sent
   * none) and then each response. After success or failure the exchange is over.
   */
  step(input: Uint8Array | undefined): Promise<SaslStep>;
}

/**
 * The mechanisms to offer on a stream, strongest first. A SCRAM hash is offered when every
 * account of the host has keys for it (imported SCRAM-SHA-1-only accounts would fail
 * SCRAM-SHA-256, and clients do not retry with another mechanism); when neither hash is held by
 * all accounts, both are offered.
 */
export function advertisedMechanisms(ctx: SaslContext): string[] {
  const held = ctx.accounts.scramHashesOfAll(ctx.host);
  const sha256 = held.has("SHA-256") || held.size === 0;
  const sha1 = held.has("SHA-1") || held.size === 0;
  const names: string[] = [];
  if (ctx.channelBinding !== undefined) {
    if (sha256) names.push("SCRAM-SHA-256-PLUS");
    if (sha1) names.push("SCRAM-SHA-1-PLUS");
  }
  if (sha256) names.push("SCRAM-SHA-256");
  if (sha1) names.push("SCRAM-SHA-1");
  if (ctx.secure || ctx.allowPlainInsecure) names.push("PLAIN");
  return names;
}

/**
 * What a stream with this context advertises: `advertisedMechanisms` in order, and the XEP-0440
 * channel-binding type exactly when -PLUS is offered.
 */
export function saslOffer(ctx: SaslContext): SaslOffer {
  const mechanisms = advertisedMechanisms(ctx);
  return ctx.channelBinding === undefined
    ? { mechanisms }
    : { mechanisms, channelBindings: [ctx.channelBinding.type] };
}

/** Starts the mechanism `name` if it may be used on this stream; undefined = invalid-mechanism. */
export function startMechanism(name: string, ctx: SaslContext): SaslMechanism | undefined {
  if (!advertisedMechanisms(ctx).includes(name)) return undefined;
  if (name === "PLAIN") return new PlainMechanism(ctx);
  const hash: ScramHash = name.startsWith("SCRAM-SHA-256") ? "SHA-256" : "SHA-1";
  return new ScramMechanism(ctx, { hash, plus: name.endsWith("-PLUS") });
}

function fail(reason: SaslFailureReason, condition: SaslFailure, text?: string): SaslStep {
  return text === undefined
    ? { kind: "failure", condition, reason }
    : { kind: "failure", condition, text, reason };
}

function malformed(text: string): SaslStep {
  return fail("malformed-request", "malformed-request", text);
}

function finished(): SaslStep {
  return malformed("The authentication exchange is already finished");
}

/**
 * The username in a mechanism's initial response, without starting the mechanism: what the
 * login throttle counts the attempt under, and the log line of an attempt refused before it
 * runs. Undefined when the
 * mechanism is unknown or the response carries no username.
 */
export function initialUsername(
  mechanism: string,
  input: Uint8Array | undefined,
): string | undefined {
  const message = input === undefined ? undefined : decodeUtf8(input);
  if (message === undefined) return undefined;
  if (mechanism === "PLAIN") {
    const parts = message.split("\0");
    return parts.length === 3 && parts[1] !== "" ? parts[1] : undefined;
  }
  if (mechanism.startsWith("HT-")) {
    // XEP-0484: the username, a NUL byte, then the token's HMAC
    const nul = message.indexOf("\0");
    return nul > 0 ? message.slice(0, nul) : undefined;
  }
  if (!mechanism.startsWith("SCRAM-")) return undefined;
  // gs2-cbind-flag "," [authzid] "," then client-first-message-bare
  const headerEnd = message.indexOf(",", message.indexOf(",") + 1);
  return headerEnd < 0 ? undefined : scramUsername(message.slice(headerEnd + 1));
}

/** The decoded `n=` username of a SCRAM client-first-message-bare; undefined when absent. */
function scramUsername(clientFirstBare: string): string | undefined {
  const field = clientFirstBare.split(",")[0];
  return field.startsWith("n=") ? decodeSaslName(field.slice(2)) : undefined;
}

/**
 * Whether `authzid` names the authenticated user's own bare JID (Lilt does not let one user
 * act for another). The domain compares case-insensitively; the localpart after preparation.
 */
function authzidMatches(authzid: string, username: string, ctx: SaslContext): boolean {
  if (authzid === `${username}@${ctx.host}`) return true;
  const at = authzid.indexOf("@");
  if (at <= 0 || authzid.includes("/")) return false;
  const domain = authzid.slice(at + 1).replace(/\.$/, "").toLowerCase();
  return domain === ctx.host.toLowerCase() && ctx.prepUsername(authzid.slice(0, at)) === username;
}

/** Options for `ScramMechanism`. */
export interface ScramMechanismOptions {
  /** SCRAM-SHA-1 or SCRAM-SHA-256. */
  hash: ScramHash;
  /** The -PLUS variant (channel binding required). */
  plus: boolean;
  /** Fixed server nonce part, for test vectors only; random otherwise. */
  serverNonce?: string;
  /**
   * Send XEP-0474's `h` attribute (default true). False only to reproduce the RFC 5802 and
   * RFC 7677 examples, which predate it.
   */
  downgradeProtection?: boolean;
}

const NONCE = /^[\x21-\x2B\x2D-\x7E]+$/;
const SERVER_NONCE_BYTES = 18;

/**
 * The server side of SCRAM-SHA-1/-256 and their -PLUS variants. An unknown user gets a
 * deterministic fake salt and fails only at the proof, so the exchange does not reveal
 * which accounts exist.
 */
export class ScramMechanism implements SaslMechanism {
  /** The mechanism name, e.g. "SCRAM-SHA-256-PLUS". */
  readonly name: string;
  /** The username the client gave (see {@link SaslMechanism.username}). */
  username: string | undefined;
  #ctx: SaslContext;
  #hash: ScramHash;
  #plus: boolean;
  #serverNonce: string | undefined;
  #downgradeProtection: boolean;
  #state: "initial" | "asked" | "first-sent" | "finished" = "initial";
  // Filled by the first message:
  #gs2Header = "";
  #clientFirstBare = "";
  #serverFirst = "";
  #nonce = "";
  #username = "";
  #credentials: ScramCredentials | undefined;

  /** Prepares an exchange on the stream described by `ctx`. */
  constructor(ctx: SaslContext, options: ScramMechanismOptions) {
    this.#ctx = ctx;
    this.#hash = options.hash;
    this.#plus = options.plus;
    this.#serverNonce = options.serverNonce;
    this.#downgradeProtection = options.downgradeProtection ?? true;
    this.name = `SCRAM-${options.hash}${options.plus ? "-PLUS" : ""}`;
  }

  /**
   * Processes client-first, then client-final. The work is synchronous (stored keys, HMACs):
   * the promise only keeps the mechanism interface shared with future async mechanisms.
   */
  step(input: Uint8Array | undefined): Promise<SaslStep> {
    return Promise.resolve(this.#step(input));
  }

  #step(input: Uint8Array | undefined): SaslStep {
    switch (this.#state) {
      case "initial":
        if (input === undefined) {
          this.#state = "asked";
          return { kind: "challenge", data: new Uint8Array(0) };
        }
        return this.#finish(this.#clientFirst(input));
      case "asked":
        return this.#finish(this.#clientFirst(input ?? new Uint8Array(0)));
      case "first-sent":
        return this.#finish(this.#clientFinal(input ?? new Uint8Array(0)));
      case "finished":
        return finished();
    }
  }

  #finish(step: SaslStep): SaslStep {
    this.#state = step.kind === "challenge" ? "first-sent" : "finished";
    return step;
  }

  #clientFirst(input: Uint8Array): SaslStep {
    const message = decodeUtf8(input);
    if (message === undefined) return malformed("Expected UTF-8 text");
    // gs2-header = gs2-cbind-flag "," [ authzid ] ","
    const flagEnd = message.indexOf(",");
    const headerEnd = flagEnd < 0 ? -1 : message.indexOf(",", flagEnd + 1);
    if (headerEnd < 0) return malformed("Expected a GS2 header");
    const flag = message.slice(0, flagEnd);
    const authzidField = message.slice(flagEnd + 1, headerEnd);
    this.#gs2Header = message.slice(0, headerEnd + 1);
    this.#clientFirstBare = message.slice(headerEnd + 1);
    // Known early so that every failure below can be logged with it.
    const rawUsername = scramUsername(this.#clientFirstBare);
    const username = rawUsername === undefined ? undefined : this.#ctx.prepUsername(rawUsername);
    this.username = username ?? rawUsername;

    if (flag === "n" || flag === "y") {
      if (this.#plus) return malformed(`Expected channel binding with ${this.name}`);
      if (
        flag === "y" && this.#ctx.channelBinding !== undefined &&
        this.#ctx.rejectChannelBindingDowngrade
      ) {
        // The client supports channel binding and thinks we do not: someone removed the -PLUS
        // mechanisms on the way (RFC 5802 §6).
        return fail(
          "channel-binding-downgrade",
          "not-authorized",
          "Channel binding is supported; possible downgrade attack",
        );
      }
    } else if (flag.startsWith("p=")) {
      if (!this.#plus) return malformed(`Expected no channel binding with ${this.name}`);
      if (flag !== "p=tls-server-end-point") {
        // Not a credential failure: the client may retry at once without channel binding.
        return fail(
          "unsupported-channel-binding",
          "malformed-request",
          `Channel binding type ${flag.slice(2)} is not supported; ` +
            "this server supports tls-server-end-point (XEP-0440)",
        );
      }
    } else {
      return malformed("Expected a channel binding flag of n, y or p=");
    }

    let authzid: string | undefined;
    if (authzidField !== "") {
      authzid = authzidField.startsWith("a=") ? decodeSaslName(authzidField.slice(2)) : undefined;
      if (authzid === undefined) return malformed("Expected a=authzid");
    }

    // client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
    const fields = this.#clientFirstBare.split(",");
    if (fields[0]?.startsWith("m=")) {
      return malformed("Mandatory SCRAM extensions are not supported");
    }
    if (fields.length < 2 || !fields[0].startsWith("n=") || !fields[1].startsWith("r=")) {
      return malformed("Expected n=username,r=nonce");
    }
    if (rawUsername === undefined) return malformed("Expected a valid username");
    const clientNonce = fields[1].slice(2);
    if (!NONCE.test(clientNonce)) return malformed("Expected a printable nonce");
    if (!fields.slice(2).every((field) => /^[A-Za-z]=/.test(field))) {
      return malformed("Expected attribute=value extensions");
    }

    if (username === undefined) return fail("invalid-username", "not-authorized");
    if (authzid !== undefined && !authzidMatches(authzid, username, this.#ctx)) {
      return fail("invalid-authzid", "invalid-authzid");
    }
    this.#username = username;

    const ctx = this.#ctx;
    // Computed for every user so a known one does not answer measurably faster.
    const fake = fakeSalt(`${this.#hash}\0${ctx.host}\0${username}`);
    this.#credentials = ctx.accounts.credentials(ctx.host, username, this.#hash);
    const salt = this.#credentials?.salt ?? fake;
    const iterations = this.#credentials?.iterations ?? ctx.accounts.iterationsFor(ctx.host);
    const serverNonce = this.#serverNonce ??
      encodeBase64(crypto.getRandomValues(new Uint8Array(SERVER_NONCE_BYTES)));
    this.#nonce = clientNonce + serverNonce;
    // XEP-0474: "h" goes where RFC 5802 §7 allows extensions in server-first-message (after
    // the iteration count), so a client that does not know it skips it; the client proof signs
    // it, so a man in the middle cannot change it.
    this.#serverFirst = `r=${this.#nonce},s=${encodeBase64(salt)},i=${iterations}`;
    if (this.#downgradeProtection) {
      this.#serverFirst += `,h=${downgradeProtectionHash(this.#hash, ctx.offer ?? saslOffer(ctx))}`;
    }
    return { kind: "challenge", data: utf8(this.#serverFirst) };
  }

  #clientFinal(input: Uint8Array): SaslStep {
    const message = decodeUtf8(input);
    if (message === undefined) return malformed("Expected UTF-8 text");
    // client-final-message = channel-binding "," nonce ["," extensions] "," proof
    const proofAt = message.lastIndexOf(",p=");
    if (proofAt < 0) return malformed("Expected a client proof");
    const withoutProof = message.slice(0, proofAt);
    const proof = decodeBase64(message.slice(proofAt + 3));
    const fields = withoutProof.split(",");
    if (
      proof === undefined || proof.length !== HASH_BYTES[this.#hash] || fields.length < 2 ||
      !fields[0].startsWith("c=") || !fields[1].startsWith("r=") ||
      !fields.slice(2).every((field) => /^[A-Za-z]=/.test(field))
    ) {
      return malformed("Expected c=binding,r=nonce,p=proof");
    }
    const binding = decodeBase64(fields[0].slice(2));
    if (binding === undefined) return malformed("Expected base64 channel binding");
    if (!timingSafeEqual(binding, this.#expectedBinding())) {
      return fail("channel-binding-mismatch", "not-authorized", "Channel binding does not match");
    }
    if (fields[1].slice(2) !== this.#nonce) {
      return fail("malformed-request", "not-authorized", "Nonce does not match");
    }

    const hash = this.#hash;
    const authMessage = utf8(`${this.#clientFirstBare},${this.#serverFirst},${withoutProof}`);
    const credentials = this.#credentials;
    // An unknown user runs the same computation against a key no proof can match.
    const storedKey = credentials?.storedKey ?? new Uint8Array(HASH_BYTES[hash]);
    const clientSignature = hmac(hash, storedKey, authMessage);
    const clientKey = xor(proof, clientSignature);
    const valid = timingSafeEqual(digest(hash, clientKey), storedKey);
    if (credentials === undefined) {
      const exists = this.#ctx.accounts.exists(this.#ctx.host, this.#username);
      return fail(exists ? "no-credentials" : "unknown-user", "not-authorized");
    }
    if (!valid) return fail("wrong-password", "not-authorized");
    if (this.#ctx.isDisabled?.(this.#username)) {
      return fail("disabled-account", "account-disabled");
    }
    const serverSignature = hmac(hash, credentials.serverKey, authMessage);
    return {
      kind: "success",
      username: this.#username,
      data: utf8(`v=${encodeBase64(serverSignature)}`),
    };
  }

  /** cbind-input: the GS2 header, followed by the channel binding data with -PLUS. */
  #expectedBinding(): Uint8Array {
    const header = utf8(this.#gs2Header);
    const data = this.#plus ? this.#ctx.channelBinding?.data : undefined;
    if (data === undefined) return header;
    const out = new Uint8Array(header.length + data.length);
    out.set(header);
    out.set(data, header.length);
    return out;
  }
}

/** SASL PLAIN (RFC 4616): authzid NUL authcid NUL password, checked against the SCRAM keys. */
class PlainMechanism implements SaslMechanism {
  readonly name = "PLAIN";
  username: string | undefined;
  #ctx: SaslContext;
  #state: "initial" | "asked" | "finished" = "initial";

  constructor(ctx: SaslContext) {
    this.#ctx = ctx;
  }

  async step(input: Uint8Array | undefined): Promise<SaslStep> {
    if (this.#state === "finished") return finished();
    if (input === undefined && this.#state === "initial") {
      this.#state = "asked";
      return { kind: "challenge", data: new Uint8Array(0) };
    }
    this.#state = "finished";
    return await this.#check(input ?? new Uint8Array(0));
  }

  async #check(input: Uint8Array): Promise<SaslStep> {
    const message = decodeUtf8(input);
    const parts = message?.split("\0");
    if (parts === undefined || parts.length !== 3 || parts[1] === "" || parts[2] === "") {
      if (parts !== undefined && parts.length === 3 && parts[1] !== "") this.username = parts[1];
      return malformed("Expected authzid NUL authcid NUL password");
    }
    const [authzid, authcid, password] = parts;
    const ctx = this.#ctx;
    const username = ctx.prepUsername(authcid);
    this.username = username ?? authcid;
    if (username === undefined) return fail("invalid-username", "not-authorized");
    if (authzid !== "" && !authzidMatches(authzid, username, ctx)) {
      return fail("invalid-authzid", "invalid-authzid");
    }
    if (!await ctx.accounts.verifyPassword(ctx.host, username, password)) {
      const exists = ctx.accounts.exists(ctx.host, username);
      return fail(exists ? "wrong-password" : "unknown-user", "not-authorized");
    }
    if (ctx.isDisabled?.(username)) return fail("disabled-account", "account-disabled");
    return { kind: "success", username };
  }
}
