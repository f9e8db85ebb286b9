// TCP listeners for the configured interfaces ("127.0.0.1:5222", "[::1]:5222", "*:5222"),
// reporting the port actually bound so tests can listen on port 0.

import { createServer, type Server as NetServer, type Socket } from "node:net";
import type { ListenAddress } from "../config_schema.ts";

/** A running listener. */
export interface Listener {
  /** What it serves ("c2s", "c2s_direct_tls", ...). */
  readonly kind: string;
  readonly host: string;
  /** The bound port (the real one when 0 was configured). */
  readonly port: number;
  /** Stops accepting; existing connections stay. */
  close(): Promise<void>;
  /**
   * Connections this listener accepted that are still open (the shell's `debug handles`);
   * absent where the platform does not tell (Deno.serve serving loopback HTTP directly).
   */
  connections?(): Promise<number>;
}

/** Starts listening; resolves once bound (rejects with the bind error, e.g. EADDRINUSE). */
export function listen(
  kind: string,
  address: ListenAddress,
  onSocket: (socket: Socket) => void,
): Promise<Listener> {
  return new Promise((resolve, reject) => {
    const server: NetServer = createServer({ noDelay: true }, onSocket);
    server.once("error", (error) => {
      reject(
        new Error(
          `Cannot listen for ${kind} on ${address.host}:${address.port}: ${error.message}`,
        ),
      );
    });
    // "*" means every address: "::" accepts IPv4 too on a dual-stack system.
    const host = address.host === "*" ? "::" : address.host;
    server.listen({ host, port: address.port, backlog: 1024 }, () => {
      server.removeAllListeners("error");
      server.on("error", () => {});
      const bound = server.address();
      const port = typeof bound === "object" && bound ? bound.port : address.port;
      resolve({
        kind,
        host,
        port,
        close: () => new Promise<void>((done) => server.close(() => done())),
        // The server's own count: sockets leave it when destroyed, whoever listens to them.
        connections: () =>
          new Promise<number>((done) => server.getConnections((_error, count) => done(count))),
      });
    });
  });
}
