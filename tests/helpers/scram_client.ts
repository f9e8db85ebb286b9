// A SCRAM client for tests (RFC 5802 §3 and §7, RFC 5929 channel binding): drives the
// server's mechanisms in unit tests and on the wire, and checks the server signature and, given
// what the server advertised, XEP-0474's downgrade-protection hash.

import assert from "node:assert/strict";
import {
  decodeBase64,
  digest,
  encodeBase64,
  encodeSaslName,
  hmac,
  saltPassword,
  type ScramHash,
  utf8,
  xor,
} from "../../core/auth/scram.ts";

/** Options for `ScramClient`. */
export interface ScramClientOptions {
  hash: ScramHash;
  username: string;
  password: string;
  /** GS2 header, e.g. "n,," or "p=tls-server-end-point,,". */
  gs2?: string;
  /** Channel binding data (for p=...). */
  cbData?: Uint8Array;
  nonce?: string;
  /**
   * What the client saw advertised (mechanisms, and XEP-0440 channel-binding types when the
   * features had them): `final` then checks the server's XEP-0474 `h` against it.
   */
  advertised?: { mechanisms: readonly string[]; channelBindings?: readonly string[] };
}

/**
 * What the client made of XEP-0474's `h`: it matched what the client saw advertised, the
 * server sent none, or it differs (the lists were changed on the way; `final` throws).
 */
export type DowngradeCheck = "matched" | "absent" | "mismatch";

/** Thrown by `ScramClient.final` when the server's `h` does not match what the client saw. */
export class ScramDowngradeError extends Error {
  constructor(expected: string, found: string) {
    super(`Expected downgrade-protection hash ${expected}, found ${found}`);
    this.name = "ScramDowngradeError";
  }
}

/**
 * XEP-0474's hash computed the client's way, separately from the server's code: the mechanisms
 * sorted (names are ASCII, so code-unit order is octet order) and joined by U+001E, then, when
 * channel-binding types were announced, U+001F and the sorted types joined by U+001E.
 */
export function expectedDowngradeHash(
  hash: ScramHash,
  advertised: NonNullable<ScramClientOptions["advertised"]>,
): string {
  let text = [...advertised.mechanisms].sort().join("\x1E");
  if (advertised.channelBindings) {
    text += "\x1F" + [...advertised.channelBindings].sort().join("\x1E");
  }
  return encodeBase64(digest(hash, utf8(text)));
}

/** The client side of one SCRAM exchange. */
export class ScramClient {
  #o: ScramClientOptions;
  #gs2: string;
  #nonce: string;
  #firstBare: string;
  #authMessage = "";
  #serverKey = new Uint8Array();
  /** The XEP-0474 outcome of the last `final`; undefined when no `advertised` was given. */
  downgradeCheck: DowngradeCheck | undefined;

  constructor(options: ScramClientOptions) {
    this.#o = options;
    this.#gs2 = options.gs2 ?? "n,,";
    this.#nonce = options.nonce ?? encodeBase64(crypto.getRandomValues(new Uint8Array(12)));
    this.#firstBare = `n=${encodeSaslName(options.username)},r=${this.#nonce}`;
  }

  /** client-first-message. */
  first(): Uint8Array {
    return utf8(this.#gs2 + this.#firstBare);
  }

  /**
   * client-final-message for a server-first-message. Throws `ScramDowngradeError` when the
   * server's XEP-0474 hash differs from the one computed from `advertised`.
   */
  async final(serverFirst: string): Promise<Uint8Array> {
    const attrs = Object.fromEntries(serverFirst.split(",").map((f) => [f[0], f.slice(2)]));
    assert.ok(attrs.r.startsWith(this.#nonce), "server nonce extends ours");
    const hash = this.#o.hash;
    if (this.#o.advertised) {
      const expected = expectedDowngradeHash(hash, this.#o.advertised);
      if (attrs.h === undefined) this.downgradeCheck = "absent";
      else if (attrs.h === expected) this.downgradeCheck = "matched";
      else {
        this.downgradeCheck = "mismatch";
        throw new ScramDowngradeError(expected, attrs.h);
      }
    }
    const salted = await saltPassword(this.#o.password, {
      hash,
      salt: decodeBase64(attrs.s)!,
      iterations: Number(attrs.i),
    });
    const clientKey = hmac(hash, salted, utf8("Client Key"));
    const storedKey = digest(hash, clientKey);
    this.#serverKey = hmac(hash, salted, utf8("Server Key"));
    const cbind = new Uint8Array([...utf8(this.#gs2), ...(this.#o.cbData ?? [])]);
    const withoutProof = `c=${encodeBase64(cbind)},r=${attrs.r}`;
    this.#authMessage = `${this.#firstBare},${serverFirst},${withoutProof}`;
    const signature = hmac(hash, storedKey, utf8(this.#authMessage));
    return utf8(`${withoutProof},p=${encodeBase64(xor(clientKey, signature))}`);
  }

  /** True when server-final-message carries the right server signature. */
  verify(serverFinal: string): boolean {
    const signature = hmac(this.#o.hash, this.#serverKey, utf8(this.#authMessage));
    return serverFinal === `v=${encodeBase64(signature)}`;
  }
}
