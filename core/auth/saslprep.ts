// Password preparation (PRECIS OpaqueString, RFC 8265 §4.2) so the same password typed on two
// keyboards hashes the same, and control or invisible characters never reach a credential.

/** A password was empty or held a character the OpaqueString profile disallows. */
export class PasswordPrepError extends Error {}

// Spaces other than U+0020 (RFC 8265 §4.2.1 "additional mapping rule").
const NON_ASCII_SPACE = /[\u00A0\u1680\u2000-\u200A\u202F\u205F\u3000]/gu;
// FreeformClass "valid" categories (RFC 8264 §9.11-9.12): letters, marks, digits and other
// numbers, punctuation, symbols and spaces.
const FREEFORM_ALLOWED = /^[\p{L}\p{M}\p{N}\p{P}\p{S}\p{Zs}]$/u;
// Disallowed even when their category would allow them: default-ignorable and noncharacter
// code points (PrecisIgnorableProperties), old Hangul jamo (RFC 5892 §2.9) and the
// DISALLOWED exceptions of RFC 5892 §2.6.
const FREEFORM_DENIED =
  /^[\p{Default_Ignorable_Code_Point}\p{Noncharacter_Code_Point}\u1100-\u11FF\uA960-\uA97C\uD7B0-\uD7C6\uD7CB-\uD7FB\u0640\u07FA\u302E\u302F\u3031-\u3035\u303B]$/u;

/**
 * Prepares a password with the PRECIS OpaqueString profile: non-ASCII spaces become U+0020,
 * the string is NFC-normalised, and control, format, private-use, unassigned and
 * default-ignorable characters are rejected. Throws `PasswordPrepError` when the password is
 * empty or holds a disallowed character.
 *
 * @example
 * ```ts
 * preparePassword("caf\u0065\u0301\u00A0x"); // "café x"
 * ```
 */
export function preparePassword(password: string): string {
  const prepared = password.replace(NON_ASCII_SPACE, " ").normalize("NFC");
  if (prepared.length === 0) throw new PasswordPrepError("Expected a non-empty password");
  for (const char of prepared) {
    const code = char.codePointAt(0)!;
    if (code >= 0x21 && code <= 0x7e) continue; // printable ASCII, the common case
    if (!FREEFORM_ALLOWED.test(char) || FREEFORM_DENIED.test(char)) {
      const hex = code.toString(16).toUpperCase().padStart(4, "0");
      throw new PasswordPrepError(
        `Expected password characters allowed by PRECIS OpaqueString, found U+${hex}`,
      );
    }
  }
  return prepared;
}
