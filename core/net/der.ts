// A minimal DER reader shared by the certificate code: Deno's X509Certificate hides parts of a
// certificate we need (otherName SANs, extendedKeyUsage), so we walk the bytes ourselves.

/** One DER element: its tag byte and where its contents start and end in the buffer. */
export interface Tlv {
  /** The identifier octet (class, constructed bit and tag number; high tag numbers unsupported). */
  tag: number;
  /** Offset of the identifier octet, where the whole element starts. */
  offset: number;
  /** Offset of the first content byte. */
  start: number;
  /** Offset just past the last content byte. */
  end: number;
}

/**
 * Reads the element at `offset`. Throws when the element is truncated, runs past `limit`
 * (default: the end of the buffer) or uses a length form DER does not allow.
 */
export function readTlv(der: Uint8Array, offset: number, limit = der.length): Tlv {
  const tag = der[offset];
  let length = der[offset + 1];
  let start = offset + 2;
  if (tag === undefined || length === undefined) throw new Error("Truncated DER");
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0 || count > 4) throw new Error("Unsupported DER length");
    if (start + count > limit) throw new Error("Truncated DER");
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + der[start + i];
    start += count;
  }
  const end = start + length;
  if (end > limit || end > der.length) throw new Error("Truncated DER");
  return { tag, offset, start, end };
}

/** The elements inside a constructed element, in order. Throws on malformed contents. */
export function readChildren(der: Uint8Array, parent: Tlv): Tlv[] {
  const children: Tlv[] = [];
  let offset = parent.start;
  while (offset < parent.end) {
    const child = readTlv(der, offset, parent.end);
    children.push(child);
    offset = child.end;
  }
  return children;
}

/** Decodes the contents of an OBJECT IDENTIFIER into dotted form ("2.5.29.17"). */
export function decodeOid(bytes: Uint8Array): string {
  const parts: number[] = [];
  let value = 0;
  for (const byte of bytes) {
    value = value * 128 + (byte & 0x7f);
    if (byte & 0x80) continue;
    if (parts.length === 0) {
      const first = value < 80 ? Math.floor(value / 40) : 2;
      parts.push(first, value - first * 40);
    } else {
      parts.push(value);
    }
    value = 0;
  }
  return parts.join(".");
}

const UTF8 = new TextDecoder("utf-8", { fatal: true });
const LATIN1 = new TextDecoder("latin1");

/**
 * Decodes a character string element (UTF8String, PrintableString, IA5String, VisibleString,
 * TeletexString, UniversalString or BMPString, universal or context tagged as `tag` says).
 * Returns undefined for any other tag or for bytes that are not valid in that encoding.
 */
export function decodeString(der: Uint8Array, element: Tlv, tag = element.tag): string | undefined {
  const bytes = der.subarray(element.start, element.end);
  try {
    switch (tag) {
      case 0x0c: // UTF8String
        return UTF8.decode(bytes);
      case 0x13: // PrintableString
      case 0x16: // IA5String
      case 0x1a: // VisibleString
        return bytes.every((byte) => byte < 0x80) ? LATIN1.decode(bytes) : undefined;
      case 0x14: // TeletexString, in practice Latin-1
        return LATIN1.decode(bytes);
      case 0x1e: { // BMPString, UTF-16 big endian
        if (bytes.length % 2 !== 0) return undefined;
        let text = "";
        for (let i = 0; i < bytes.length; i += 2) {
          text += String.fromCharCode(bytes[i] * 256 + bytes[i + 1]);
        }
        return text;
      }
      case 0x1c: { // UniversalString, UTF-32 big endian
        if (bytes.length % 4 !== 0) return undefined;
        let text = "";
        for (let i = 0; i < bytes.length; i += 4) {
          const code = ((bytes[i] << 24) | (bytes[i + 1] << 16) | (bytes[i + 2] << 8) |
            bytes[i + 3]) >>> 0;
          if (code > 0x10ffff) return undefined;
          text += String.fromCodePoint(code);
        }
        return text;
      }
      default:
        return undefined;
    }
  } catch {
    return undefined;
  }
}

/** Decodes a UTCTime (tag 0x17) or GeneralizedTime (tag 0x18) element; throws otherwise. */
export function decodeTime(der: Uint8Array, element: Tlv): Date {
  const text = LATIN1.decode(der.subarray(element.start, element.end));
  const match = element.tag === 0x17
    ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text)
    : element.tag === 0x18
    ? /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(?:\.\d+)?Z$/.exec(text)
    : null;
  if (!match) throw new Error(`Unsupported DER time '${text}'`);
  let year = Number(match[1]);
  if (element.tag === 0x17) year += year < 50 ? 2000 : 1900; // RFC 5280 section 4.1.2.5.1
  const [month, day, hour, minute, second] = match.slice(2).map(Number);
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day); // not Date.UTC, which maps years 0-99 to 19xx
  date.setUTCHours(hour, minute, second);
  if (date.getUTCDate() !== day || date.getUTCMonth() !== month - 1 || hour > 23 || minute > 59) {
    throw new Error(`Invalid DER time '${text}'`);
  }
  return date;
}
