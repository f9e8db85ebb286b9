// A tiny authoritative UDP DNS server on loopback for tests: answers SRV, A, AAAA and TXT questions
// from a table, so resolver and federation tests never touch real DNS or system files.

import * as dgram from "node:dgram";
import { isIPv4, isIPv6 } from "node:net";

/** One SRV answer; a `target` of "." means "service decidedly not available" (RFC 2782). */
export interface SrvAnswer {
  /** Lower is tried first. */
  priority: number;
  /** Relative chance within a priority. */
  weight: number;
  /** TCP port of the service. */
  port: number;
  /** Host name of the target, or "." */
  target: string;
}

/** The records of one name; a name present with no record of the asked type answers NODATA. */
export interface DnsRecords {
  /** SRV records. */
  srv?: SrvAnswer[];
  /** IPv4 addresses (A). */
  a?: string[];
  /** IPv6 addresses (AAAA). */
  aaaa?: string[];
  /** TXT records, each one text (sent as character strings of at most 255 bytes). */
  txt?: string[];
  /** Never answer questions for this name (the resolver times out). */
  silent?: boolean;
  /** Answer SERVFAIL for this name. */
  servfail?: boolean;
}

const TYPE_A = 1;
const TYPE_AAAA = 28;
const TYPE_SRV = 33;
const TYPE_TXT = 16;
const CLASS_IN = 1;
const RCODE_SERVFAIL = 2;
const RCODE_NXDOMAIN = 3;
const RCODE_NOTIMP = 4;

/**
 * A UDP DNS responder on 127.0.0.1 and a free port. Names are matched case-insensitively and
 * without a trailing dot; unknown names answer NXDOMAIN. `records` may be changed at any time.
 *
 * @example
 * ```ts
 * const dns = await startDnsResponder({ "a.test": { a: ["127.0.0.1"] } });
 * resolver.setServers([dns.address]); // "127.0.0.1:<port>"
 * await dns.close();
 * ```
 */
export class DnsResponder {
  /** The table answered from, keyed by lower-case name without trailing dot. */
  readonly records: Map<string, DnsRecords>;
  /** How many questions were received, per "name/TYPE" (e.g. "a.test/AAAA"). */
  readonly queries = new Map<string, number>();
  #socket: dgram.Socket;

  constructor(socket: dgram.Socket, records: Record<string, DnsRecords>) {
    this.#socket = socket;
    this.records = new Map(
      Object.entries(records).map(([name, value]) => [normalizeName(name), value]),
    );
    socket.on("message", (message, remote) => this.#answer(message, remote));
  }

  /** "127.0.0.1:port", the form `Resolver.setServers` and `dns_nameservers` take. */
  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** The UDP port listened on. */
  get port(): number {
    return this.#socket.address().port;
  }

  /** Sets (or replaces) the records of one name. */
  set(name: string, records: DnsRecords): void {
    this.records.set(normalizeName(name), records);
  }

  /** Stops listening. */
  close(): Promise<void> {
    return new Promise((resolve) => this.#socket.close(() => resolve()));
  }

  #answer(message: Uint8Array, remote: dgram.RemoteInfo): void {
    let question;
    try {
      question = parseQuestion(message);
    } catch {
      return; // not worth an answer
    }
    const typeName = question.type === TYPE_A
      ? "A"
      : question.type === TYPE_AAAA
      ? "AAAA"
      : question.type === TYPE_SRV
      ? "SRV"
      : question.type === TYPE_TXT
      ? "TXT"
      : String(question.type);
    const key = `${question.name}/${typeName}`;
    this.queries.set(key, (this.queries.get(key) ?? 0) + 1);
    const entry = this.records.get(question.name);
    if (entry?.silent) return;
    let rcode = 0;
    const answers: Uint8Array[] = [];
    if (entry === undefined) rcode = RCODE_NXDOMAIN;
    else if (entry.servfail) rcode = RCODE_SERVFAIL;
    else if (question.class !== CLASS_IN) rcode = RCODE_NOTIMP;
    else if (question.type === TYPE_A) {
      for (const ip of entry.a ?? []) answers.push(record(TYPE_A, ipv4Bytes(ip)));
    } else if (question.type === TYPE_AAAA) {
      for (const ip of entry.aaaa ?? []) answers.push(record(TYPE_AAAA, ipv6Bytes(ip)));
    } else if (question.type === TYPE_SRV) {
      for (const srv of entry.srv ?? []) answers.push(record(TYPE_SRV, srvBytes(srv)));
    } else if (question.type === TYPE_TXT) {
      for (const text of entry.txt ?? []) answers.push(record(TYPE_TXT, txtBytes(text)));
    }
    const header = new Uint8Array(12);
    const view = new DataView(header.buffer);
    view.setUint16(0, question.id);
    // QR=1, opcode copied, AA=1, RD copied; RA=1, rcode.
    header[2] = 0x80 | (message[2] & 0x78) | 0x04 | (message[2] & 0x01);
    header[3] = 0x80 | rcode;
    view.setUint16(4, 1);
    view.setUint16(6, answers.length);
    const reply = concat([header, question.raw, ...answers]);
    this.#socket.send(reply, remote.port, remote.address);
  }
}

/** Starts a responder answering from `records`. */
export function startDnsResponder(records: Record<string, DnsRecords> = {}): Promise<DnsResponder> {
  const socket = dgram.createSocket("udp4");
  return new Promise((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(0, "127.0.0.1", () => {
      socket.removeListener("error", reject);
      resolve(new DnsResponder(socket, records));
    });
  });
}

function normalizeName(name: string): string {
  return name.toLowerCase().replace(/\.$/, "");
}

interface Question {
  id: number;
  name: string;
  type: number;
  class: number;
  /** The question section as received (name, type, class), echoed in the reply. */
  raw: Uint8Array;
}

function parseQuestion(message: Uint8Array): Question {
  const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
  if (message.length < 12 || view.getUint16(4) < 1) throw new Error("Query has no question");
  const labels: string[] = [];
  let offset = 12;
  for (;;) {
    const length = message[offset];
    if (length === undefined || length > 63) throw new Error("Bad name in question");
    offset += 1;
    if (length === 0) break;
    labels.push(new TextDecoder().decode(message.subarray(offset, offset + length)));
    offset += length;
  }
  if (offset + 4 > message.length) throw new Error("Truncated question");
  return {
    id: view.getUint16(0),
    name: labels.join(".").toLowerCase(),
    type: view.getUint16(offset),
    class: view.getUint16(offset + 2),
    raw: message.slice(12, offset + 4),
  };
}

/** An answer RR whose owner is a pointer to the question name at offset 12. */
function record(type: number, rdata: Uint8Array): Uint8Array {
  const head = new Uint8Array(12);
  const view = new DataView(head.buffer);
  view.setUint16(0, 0xc00c);
  view.setUint16(2, type);
  view.setUint16(4, CLASS_IN);
  view.setUint32(6, 60);
  view.setUint16(10, rdata.length);
  return concat([head, rdata]);
}

function srvBytes(srv: SrvAnswer): Uint8Array {
  const head = new Uint8Array(6);
  const view = new DataView(head.buffer);
  view.setUint16(0, srv.priority);
  view.setUint16(2, srv.weight);
  view.setUint16(4, srv.port);
  return concat([head, nameBytes(srv.target)]);
}

function txtBytes(text: string): Uint8Array {
  const bytes = new TextEncoder().encode(text);
  const parts: Uint8Array[] = [];
  for (let offset = 0; offset < bytes.length || parts.length === 0; offset += 255) {
    const chunk = bytes.subarray(offset, offset + 255);
    parts.push(Uint8Array.of(chunk.length), chunk);
  }
  return concat(parts);
}

function nameBytes(name: string): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const label of normalizeName(name).split(".")) {
    if (label === "") continue;
    const bytes = new TextEncoder().encode(label);
    parts.push(Uint8Array.of(bytes.length), bytes);
  }
  parts.push(Uint8Array.of(0));
  return concat(parts);
}

function ipv4Bytes(ip: string): Uint8Array {
  if (!isIPv4(ip)) throw new Error(`Expected an IPv4 address, found '${ip}'`);
  return Uint8Array.from(ip.split(".").map(Number));
}

function ipv6Bytes(ip: string): Uint8Array {
  if (!isIPv6(ip)) throw new Error(`Expected an IPv6 address, found '${ip}'`);
  const [head, tail] = ip.includes("::") ? ip.split("::") : [ip, undefined];
  const groups = (text: string) => (text === "" ? [] : text.split(":"));
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  // An embedded IPv4 tail ("::ffff:1.2.3.4") counts as two groups.
  const expand = (list: string[]) =>
    list.flatMap((group) => {
      if (!group.includes(".")) return [parseInt(group, 16)];
      const [a, b, c, d] = group.split(".").map(Number);
      return [(a << 8) | b, (c << 8) | d];
    });
  const leftWords = expand(left);
  const rightWords = expand(right);
  const zeros = new Array(8 - leftWords.length - rightWords.length).fill(0);
  const words = [...leftWords, ...zeros, ...rightWords];
  const bytes = new Uint8Array(16);
  const view = new DataView(bytes.buffer);
  words.forEach((word, index) => view.setUint16(index * 2, word));
  return bytes;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
