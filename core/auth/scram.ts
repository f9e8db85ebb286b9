// SCRAM building blocks (RFC 5802, RFC 7677): credential derivation with PBKDF2 through
// WebCrypto, HMAC and hash helpers (node:crypto), and the attribute encodings both the account store and the
// SASL mechanisms need, including XEP-0474's downgrade-protection hash.

import { createHash, createHmac } from "node:crypto";

/** The hash functions Lilt keeps SCRAM credentials for. */
export type ScramHash = "SHA-1" | "SHA-256";

/** Every hash credentials are derived for, strongest first. */
export const SCRAM_HASHES: readonly ScramHash[] = ["SHA-256", "SHA-1"];

/** What the server stores per hash instead of a password (RFC 5802 §3). */
export interface ScramCredentials {
  /** Random salt for PBKDF2. */
  salt: Uint8Array;
  /** PBKDF2 iteration count. */
  iterations: number;
  /** H(HMAC(SaltedPassword, "Client Key")): verifies client proofs. */
  storedKey: Uint8Array;
  /** HMAC(SaltedPassword, "Server Key"): signs the server-final message. */
  serverKey: Uint8Array;
}

/** Options for `deriveCredentials`. */
export interface DeriveCredentialsOptions {
  /** The hash function (and PBKDF2 PRF). */
  hash: ScramHash;
  /** The salt; a random 16-byte one when absent. */
  salt?: Uint8Array;
  /** PBKDF2 iteration count. */
  iterations: number;
}

/** Output size in bytes of each hash. */
export const HASH_BYTES: Readonly<Record<ScramHash, number>> = { "SHA-1": 20, "SHA-256": 32 };

const SALT_BYTES = 16;
const encoder = new TextEncoder();

/** Encodes UTF-8 text (helper shared by SCRAM callers). */
export function utf8(text: string): Uint8Array<ArrayBuffer> {
  return encoder.encode(text);
}

const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Decodes UTF-8 bytes; undefined when they are not valid UTF-8. */
export function decodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return utf8Decoder.decode(bytes);
  } catch {
    return undefined;
  }
}

/** SaltedPassword = PBKDF2(password, salt, iterations) (RFC 5802 §3, `Hi`). */
export async function saltPassword(
  preparedPassword: string,
  options: Required<DeriveCredentialsOptions>,
): Promise<Uint8Array<ArrayBuffer>> {
  const key = await crypto.subtle.importKey("raw", utf8(preparedPassword), "PBKDF2", false, [
    "deriveBits",
  ]);
  const bits = await crypto.subtle.deriveBits(
    {
      name: "PBKDF2",
      hash: options.hash,
      salt: new Uint8Array(options.salt),
      iterations: options.iterations,
    },
    key,
    HASH_BYTES[options.hash] * 8,
  );
  return new Uint8Array(bits);
}

/**
 * Derives the stored SCRAM credentials for an already prepared password (see
 * `preparePassword`). Async because PBKDF2 runs in WebCrypto.
 */
export async function deriveCredentials(
  preparedPassword: string,
  options: DeriveCredentialsOptions,
): Promise<ScramCredentials> {
  const salt = options.salt ?? crypto.getRandomValues(new Uint8Array(SALT_BYTES));
  const { hash, iterations } = options;
  const salted = await saltPassword(preparedPassword, { hash, salt, iterations });
  const clientKey = hmac(hash, salted, utf8("Client Key"));
  const serverKey = hmac(hash, salted, utf8("Server Key"));
  return { salt, iterations, storedKey: digest(hash, clientKey), serverKey };
}

/** node:crypto's name for each hash. */
const NODE_HASH: Readonly<Record<ScramHash, string>> = { "SHA-1": "sha1", "SHA-256": "sha256" };

/**
 * HMAC(key, data) with `hash`. Synchronous node:crypto: a login needs three of these and a
 * digest, and WebCrypto's import-then-sign costs several times more per call.
 */
export function hmac(hash: ScramHash, key: Uint8Array, data: Uint8Array): Uint8Array<ArrayBuffer> {
  return toArray(createHmac(NODE_HASH[hash], key).update(data).digest());
}

/** H(data) with `hash` (synchronous node:crypto). */
export function digest(hash: ScramHash, data: Uint8Array): Uint8Array<ArrayBuffer> {
  return toArray(createHash(NODE_HASH[hash]).update(data).digest());
}

function toArray(buffer: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(buffer.length);
  out.set(buffer);
  return out;
}

/** Byte-wise XOR of two equally long arrays. */
export function xor(a: Uint8Array, b: Uint8Array): Uint8Array<ArrayBuffer> {
  if (a.length !== b.length) {
    throw new RangeError(`Expected equally long inputs to xor, found ${a.length} and ${b.length}`);
  }
  const out = new Uint8Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] ^ b[i];
  return out;
}

/** Compares two byte arrays in time that depends only on their lengths. */
export function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

// Per-process secret for fake salts: stable while the server runs, so repeated attempts for a
// missing user see the same salt, and unknowable, so the salt does not reveal the user is
// missing.
const fakeSaltSecret = crypto.getRandomValues(new Uint8Array(32));

/**
 * A salt for an account that does not exist: deterministic for `key` (e.g. hash, host and
 * username) within this process, indistinguishable from a random salt outside it.
 */
export function fakeSalt(key: string): Uint8Array<ArrayBuffer> {
  return hmac("SHA-256", fakeSaltSecret, utf8(key)).slice(0, SALT_BYTES);
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Standard base64 with padding. */
export function encodeBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** Strict base64 decoding (padding required, no whitespace); undefined when malformed. */
export function decodeBase64(text: string): Uint8Array<ArrayBuffer> | undefined {
  if (!BASE64.test(text)) return undefined;
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

/**
 * What a stream advertised for SASL: the mechanisms of the SASL profile the client
 * authenticates with, and the channel-binding types announced per XEP-0440 (absent when the
 * stream announced none). The input of the XEP-0474 downgrade-protection hash.
 */
export interface SaslOffer {
  /** The mechanism names as advertised. */
  mechanisms: readonly string[];
  /** The XEP-0440 channel-binding types; undefined when `<sasl-channel-binding/>` was not sent. */
  channelBindings?: readonly string[];
}

// XEP-0474's delimiters: characters XML 1.0 cannot carry, so no advertised name holds them.
const SSDP_VALUE_DELIMITER = "\x1E";
const SSDP_LIST_DELIMITER = "\x1F";

/** Sorts strings by their UTF-8 bytes: the "i;octet" collation of RFC 4790 §9.3. */
function sortOctets(names: readonly string[]): string[] {
  return names.map((name) => ({ name, bytes: utf8(name) }))
    .sort((a, b) => compareBytes(a.bytes, b.bytes))
    .map((entry) => entry.name);
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    if (a[i] !== b[i]) return a[i] - b[i];
  }
  return a.length - b.length;
}

/**
 * The XEP-0474 (SASL SCRAM Downgrade Protection) value for the `h` attribute of a
 * server-first-message: the base64 digest, with the SCRAM mechanism's own hash, of the
 * advertised mechanisms sorted by octets and joined by U+001E, followed (only when XEP-0440
 * types were announced) by U+001F and the sorted channel-binding types joined by U+001E.
 *
 * @example
 * ```ts
 * downgradeProtectionHash("SHA-1", {
 *   mechanisms: ["SCRAM-SHA-1", "SCRAM-SHA-1-PLUS"],
 *   channelBindings: ["tls-server-end-point", "tls-exporter"],
 * }); // "G6k/rBLDqgOhRRaCuuatSDFkJ08=" (the XEP's example)
 * ```
 */
export function downgradeProtectionHash(hash: ScramHash, offer: SaslOffer): string {
  let text = sortOctets(offer.mechanisms).join(SSDP_VALUE_DELIMITER);
  if (offer.channelBindings !== undefined) {
    text += SSDP_LIST_DELIMITER + sortOctets(offer.channelBindings).join(SSDP_VALUE_DELIMITER);
  }
  return encodeBase64(digest(hash, utf8(text)));
}

/** Escapes a name for SCRAM's `n=`/`a=` attributes ("," to "=2C", "=" to "=3D"). */
export function encodeSaslName(name: string): string {
  return name.replaceAll("=", "=3D").replaceAll(",", "=2C");
}

/** Unescapes a SCRAM `saslname`; undefined when it holds a bare "=" or ",", or is empty. */
export function decodeSaslName(text: string): string | undefined {
  if (text.length === 0 || text.includes(",")) return undefined;
  if (/=(?!2C|3D)/.test(text)) return undefined;
  return text.replace(/=(2C|3D)/g, (_, code) => code === "2C" ? "," : "=");
}
