// IP address ranges from the configuration ("192.0.2.7", "10.0.0.0/8", "2001:db8::/32"), matched
// against peer addresses. One implementation for every option that lists addresses: the
// registration block/allow lists, who may read /metrics, which HTTP proxies are trusted.
// IPv4 addresses are compared as IPv4-mapped IPv6, so "::ffff:127.0.0.1" is in "127.0.0.0/8".

import { isIPv4, isIPv6 } from "node:net";

const ALL_BITS = (1n << 128n) - 1n;
const MAPPED_PREFIX = 0xffffn << 32n;

/** One parsed range: the network's bits and the mask over the 128-bit form. */
interface Range {
  bits: bigint;
  mask: bigint;
}

/**
 * An address as a 128-bit number (IPv4 mapped into ::ffff:0:0/96), or undefined when the text
 * is not an address. Brackets and an IPv6 zone ("%eth0") are ignored.
 */
export function addressBits(ip: string): bigint | undefined {
  let text = ip;
  if (text.startsWith("[") && text.endsWith("]")) text = text.slice(1, -1);
  const zone = text.indexOf("%");
  if (zone >= 0) text = text.slice(0, zone);
  if (isIPv4(text)) {
    const v4 = text.split(".").reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
    return MAPPED_PREFIX | v4;
  }
  if (!isIPv6(text)) return undefined;
  const v4Tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4Tail) {
    const bits = addressBits(v4Tail[1])! & 0xffffffffn;
    text = text.slice(0, v4Tail.index) +
      `${(bits >> 16n).toString(16)}:${(bits & 0xffffn).toString(16)}`;
  }
  const [head, tail] = text.includes("::") ? text.split("::") : [text, undefined];
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  const zeros = tail === undefined ? 0 : 8 - left.length - right.length;
  const groups = [...left, ...Array(zeros).fill("0"), ...right];
  return groups.reduce((acc, group) => (acc << 16n) | BigInt(parseInt(group, 16)), 0n);
}

/** Parses "ip" or "ip/prefix"; undefined when the text is neither. */
function parseRange(text: string): Range | undefined {
  const slash = text.indexOf("/");
  const address = slash < 0 ? text : text.slice(0, slash);
  const bits = addressBits(address);
  if (bits === undefined || address.startsWith("[")) return undefined;
  const v4 = isIPv4(address);
  const max = v4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const prefixText = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > max) return undefined;
    prefix = Number(prefixText);
  }
  const full = (v4 ? 96 : 0) + prefix;
  const mask = full === 0 ? 0n : ALL_BITS ^ ((1n << BigInt(128 - full)) - 1n);
  return { bits: bits & mask, mask };
}

/** Whether a configured entry is an address or a range (for option checks). */
export function isAddressRange(text: string): boolean {
  return parseRange(text) !== undefined;
}

/**
 * The message for an option entry that is not an address or range, else undefined: the shape
 * `OptionSpec.check` takes.
 */
export function checkAddressRange(item: string, name: string): string | undefined {
  if (isAddressRange(item)) return undefined;
  return `option '${name}' has an invalid entry '${item}': expected an IPv4 or IPv6 address, ` +
    `optionally with a /prefix length (e.g. "192.0.2.0/24" or "2001:db8::/32")`;
}

/**
 * A set of address ranges.
 *
 * @example
 * ```ts
 * const proxies = AddressRanges.parse(["127.0.0.1", "10.0.0.0/8"]);
 * proxies.includes("::ffff:10.1.2.3"); // true
 * ```
 */
export class AddressRanges {
  readonly #ranges: Range[];

  private constructor(ranges: Range[]) {
    this.#ranges = ranges;
  }

  /** Parses the entries; throws an Error naming the first one that is not a range. */
  static parse(entries: readonly string[]): AddressRanges {
    return new AddressRanges(entries.map((entry) => {
      const range = parseRange(entry);
      if (!range) throw new Error(`'${entry}' is not an IP address or CIDR range`);
      return range;
    }));
  }

  /** True when there are no ranges (nothing is included). */
  get empty(): boolean {
    return this.#ranges.length === 0;
  }

  /** Whether `ip` lies in one of the ranges (false for text that is not an address). */
  includes(ip: string): boolean {
    if (this.#ranges.length === 0) return false;
    const bits = addressBits(ip);
    if (bits === undefined) return false;
    return this.#ranges.some((range) => (bits & range.mask) === range.bits);
  }
}

/**
 * Whether an address is the local machine's (127.0.0.0/8, ::1, IPv4-mapped 127.x, or the name
 * "localhost"): a peer there is this machine or a proxy on it.
 */
export function isLoopbackAddress(ip: string): boolean {
  if (ip === "localhost") return true;
  return LOOPBACK.includes(ip);
}

const LOOPBACK = AddressRanges.parse(["127.0.0.0/8", "::1"]);
