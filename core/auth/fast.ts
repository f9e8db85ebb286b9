// XEP-0484 FAST: tokens a client gets after a password login and uses to log in again in one
// round trip, with the HT-* SASL mechanisms (draft-schmaus-kitten-sasl-ht). A token belongs to
// one account, one client installation (the SASL2 user-agent id) and one mechanism; it expires,
// is rotated (the previous one stays valid until the new one is used) and is dropped when the
// account's password changes or the account is disabled or deleted (accounts.ts does that).

import type { Database } from "../storage/database.ts";
import type { SaslContext, SaslMechanism, SaslStep } from "./sasl.ts";
import { decodeUtf8, encodeBase64, hmac, timingSafeEqual, utf8 } from "./scram.ts";

/** The token mechanisms offered: without channel binding, and bound to the TLS certificate. */
export const FAST_MECHANISMS = ["HT-SHA-256-ENDP", "HT-SHA-256-NONE"] as const;

/** One of {@link FAST_MECHANISMS}. */
export type FastMechanismName = typeof FAST_MECHANISMS[number];

/** Bytes of randomness in a token. */
const TOKEN_BYTES = 32;

/** A token handed to a client. */
export interface IssuedToken {
  token: string;
  expiresAt: number;
}

interface TokenRow {
  mechanism: string;
  token: string;
  expires_ms: number;
  prev_token: string | null;
  prev_expires_ms: number | null;
}

/** The FAST mechanisms a stream may offer (ENDP only where channel binding data exists). */
export function fastMechanisms(ctx: SaslContext): FastMechanismName[] {
  return ctx.channelBinding ? [...FAST_MECHANISMS] : ["HT-SHA-256-NONE"];
}

/** Stored FAST tokens, one current (and maybe one previous) per account and client. */
export class FastTokens {
  #db: Database;

  constructor(db: Database) {
    this.#db = db;
  }

  /**
   * Issues a new token for the client `agent`; the one it had stays valid until the new one is
   * used (a client that misses the answer can still log in).
   */
  issue(
    host: string,
    user: string,
    agent: string,
    mechanism: FastMechanismName,
    lifetimeMs: number,
    now = Date.now(),
  ): IssuedToken {
    const token = encodeBase64(crypto.getRandomValues(new Uint8Array(TOKEN_BYTES)));
    const expiresAt = now + lifetimeMs;
    const old = this.#row(host, user, agent);
    this.#db.prepare(
      `INSERT INTO fast_tokens
         (host, user, agent, mechanism, token, expires_ms, prev_token, prev_expires_ms)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (host, user, agent) DO UPDATE SET mechanism = excluded.mechanism,
         token = excluded.token, expires_ms = excluded.expires_ms,
         prev_token = excluded.prev_token, prev_expires_ms = excluded.prev_expires_ms`,
    ).run(
      host,
      user,
      agent,
      mechanism,
      token,
      expiresAt,
      old && old.mechanism === mechanism && old.expires_ms > now ? old.token : null,
      old && old.mechanism === mechanism && old.expires_ms > now ? old.expires_ms : null,
    );
    return { token, expiresAt };
  }

  /**
   * Checks a client's proof against its live tokens. Returns the one that matched and which it
   * is: "current" (the previous one, if any, is then dropped: the client has the new one) or
   * "previous"; undefined when none did.
   */
  verify(
    host: string,
    user: string,
    agent: string,
    mechanism: FastMechanismName,
    proof: (token: string) => boolean,
    now = Date.now(),
  ): { which: "current" | "previous"; token: string; expiresAt: number } | undefined {
    const row = this.#row(host, user, agent);
    if (!row || row.mechanism !== mechanism) return undefined;
    if (row.expires_ms > now && proof(row.token)) {
      if (row.prev_token !== null) {
        this.#db.prepare(
          "UPDATE fast_tokens SET prev_token = NULL, prev_expires_ms = NULL WHERE host = ? AND user = ? AND agent = ?",
        ).run(host, user, agent);
      }
      return { which: "current", token: row.token, expiresAt: row.expires_ms };
    }
    if (
      row.prev_token !== null && (row.prev_expires_ms ?? 0) > now && proof(row.prev_token)
    ) {
      return { which: "previous", token: row.prev_token, expiresAt: row.prev_expires_ms! };
    }
    return undefined;
  }

  /** Drops the tokens of one client (`<fast invalidate='true'/>`). */
  invalidate(host: string, user: string, agent: string): void {
    this.#db.prepare("DELETE FROM fast_tokens WHERE host = ? AND user = ? AND agent = ?")
      .run(host, user, agent);
  }

  /** How many clients of an account hold a token (for the shell and tests). */
  count(host: string, user: string, now = Date.now()): number {
    const row = this.#db.prepare(
      "SELECT count(*) AS n FROM fast_tokens WHERE host = ? AND user = ? AND expires_ms > ?",
    ).get(host, user, now) as { n: number };
    return row.n;
  }

  #row(host: string, user: string, agent: string): TokenRow | undefined {
    return this.#db.prepare(
      `SELECT mechanism, token, expires_ms, prev_token, prev_expires_ms FROM fast_tokens
       WHERE host = ? AND user = ? AND agent = ?`,
    ).get(host, user, agent) as TokenRow | undefined;
  }
}

/** What an HT exchange needs beyond the SASL context. */
export interface HtOptions {
  tokens: FastTokens;
  /** The client installation (SASL2 user-agent id) the token must belong to. */
  agent: string;
}

/**
 * The server side of HT-SHA-256-NONE / -ENDP: one message from the client, `authcid NUL
 * HMAC(token, "Initiator" || cb-data)`, answered on success with HMAC(token, "Responder" ||
 * cb-data) so the client knows the server had the token too.
 */
export class HtMechanism implements SaslMechanism {
  readonly name: FastMechanismName;
  username: string | undefined;
  /** Which stored token the client proved, once it succeeded. */
  matched: "current" | "previous" | undefined;
  #ctx: SaslContext;
  #options: HtOptions;
  #done = false;

  constructor(name: FastMechanismName, ctx: SaslContext, options: HtOptions) {
    this.name = name;
    this.#ctx = ctx;
    this.#options = options;
  }

  step(input: Uint8Array | undefined): Promise<SaslStep> {
    return Promise.resolve(this.#step(input));
  }

  #step(input: Uint8Array | undefined): SaslStep {
    if (this.#done) return malformed("The authentication exchange is already finished");
    this.#done = true;
    if (input === undefined) return malformed("HT needs an initial response");
    const nul = input.indexOf(0);
    if (nul <= 0) return malformed("Expected the username, a NUL byte and the token's HMAC");
    const raw = decodeUtf8(input.subarray(0, nul));
    if (raw === undefined) return malformed("The username is not UTF-8");
    const proof = input.subarray(nul + 1);
    const username = this.#ctx.prepUsername(raw);
    this.username = username ?? raw;
    if (username === undefined) {
      return { kind: "failure", condition: "not-authorized", reason: "invalid-username" };
    }
    const cbData = this.name === "HT-SHA-256-ENDP"
      ? this.#ctx.channelBinding?.data
      : new Uint8Array(0);
    if (cbData === undefined) {
      return {
        kind: "failure",
        condition: "malformed-request",
        text: "No channel binding data on this stream",
        reason: "unsupported-channel-binding",
      };
    }
    const { tokens, agent } = this.#options;
    const verified = tokens.verify(
      this.#ctx.host,
      username,
      agent,
      this.name,
      (token) => timingSafeEqual(htProof(token, "Initiator", cbData), proof),
    );
    if (!verified) {
      const known = this.#ctx.accounts.exists(this.#ctx.host, username);
      return {
        kind: "failure",
        condition: "not-authorized",
        reason: known ? "wrong-password" : "unknown-user",
      };
    }
    if (this.#ctx.isDisabled?.(username)) {
      return {
        kind: "failure",
        condition: "not-authorized",
        text: "Account disabled",
        reason: "disabled-account",
      };
    }
    this.matched = verified.which;
    return { kind: "success", username, data: htProof(verified.token, "Responder", cbData) };
  }
}

/** HMAC-SHA-256(token, label || cb-data), as the HT mechanisms define it. */
export function htProof(token: string, label: "Initiator" | "Responder", cbData: Uint8Array) {
  const message = new Uint8Array(label.length + cbData.length);
  message.set(utf8(label), 0);
  message.set(cbData, label.length);
  return hmac("SHA-256", utf8(token), message);
}

function malformed(text: string): SaslStep {
  return { kind: "failure", condition: "malformed-request", text, reason: "malformed-request" };
}
