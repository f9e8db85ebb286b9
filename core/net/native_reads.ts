// Reads of the TCP handle beneath a Deno TLS socket. Pausing Deno's node:tls socket stops only
// its plaintext events: the TCP handle beneath goes on reading and decrypting into memory, and
// resuming hands all of it over in one chunk. Backpressure on TLS (read rate limits, the HTTPS
// relay) therefore stops and restarts that handle too.

import type { Socket } from "node:net";

/** The read switch of a socket's native TCP handle. */
export interface NativeReads {
  readStart(): number;
  readStop(): number;
}

/**
 * The TCP handle beneath a Deno TLS socket that wraps an accepted socket. Undefined for a plain
 * socket, or on a runtime that does not expose it (an internal of Deno's node:tls: pausing the
 * TLS socket is then all that can be done).
 */
export function nativeReads(socket: Socket): NativeReads | undefined {
  const handle = (socket as unknown as { _handle?: { _nativeTcpHandle?: Partial<NativeReads> } })
    ._handle?._nativeTcpHandle;
  return typeof handle?.readStart === "function" && typeof handle.readStop === "function"
    ? handle as NativeReads
    : undefined;
}
