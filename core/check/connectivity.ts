// `lilt check connectivity`: whether the running server listens where the configuration says
// (c2s, direct TLS, s2s, components, HTTP, HTTPS), by connecting to each configured address.

import { resolve } from "node:path";
import type { Config } from "../config.ts";
import { isServerRunning } from "../storage/backup.ts";
import { type ConfiguredListener, configuredListeners } from "./listeners.ts";
import type { Problem } from "./problem.ts";

/** Options for {@link checkConnectivity}. */
export interface ConnectivityCheckOptions {
  /** Milliseconds to wait for each connection. Default 3000. */
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 3000;

/** Where to connect to reach a listener: loopback for a wildcard address. */
export function connectAddress(listener: ConfiguredListener): string {
  if (!listener.wildcard) return listener.host;
  return listener.host === "::" ? "::1" : "127.0.0.1";
}

/**
 * Connects to every configured listener of the server running on `config` (its admin socket
 * must answer, else the single problem says it is not running). A listener on port 0 gets a
 * warning (its port changes at each start, so nobody can be told where it is).
 *
 * @example
 * ```ts
 * for (const p of await checkConnectivity(config)) console.error(`${p.level}: ${p.message}`);
 * ```
 */
export async function checkConnectivity(
  config: Config,
  options: ConnectivityCheckOptions = {},
): Promise<Problem[]> {
  const socket = resolve(config.dataDir, config.get<string>("admin_socket"));
  if (!await isServerRunning(socket)) {
    return [{
      level: "error",
      message: `Lilt is not running on ${config.file}: its admin socket ${socket} does not ` +
        "answer; start it with 'lilt start' (or its service) and check again",
    }];
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const results = await Promise.all(
    configuredListeners(config).map(async (listener): Promise<Problem | undefined> => {
      const where = `${listener.option} "${listener.text}"`;
      if (listener.port === 0) {
        return {
          level: "warning",
          message: `${where} listens on a different free port at each start, so clients ` +
            "cannot be told where: set a fixed port",
        };
      }
      const host = connectAddress(listener);
      const failure = await tryConnect(host, listener.port, timeoutMs);
      if (failure === undefined) return undefined;
      const shown = host.includes(":") ? `[${host}]:${listener.port}` : `${host}:${listener.port}`;
      return {
        level: "error",
        message: `Nothing accepts connections on ${shown} (${where}): ${failure}; restart ` +
          "Lilt if this listener was added after it started, and check its log",
      };
    }),
  );
  return results.filter((p): p is Problem => p !== undefined);
}

/** Connects and closes at once; the reason it failed, or undefined when it connected. */
async function tryConnect(
  hostname: string,
  port: number,
  timeoutMs: number,
): Promise<string | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const connecting = Deno.connect({ hostname, port });
  const timeout = new Promise<"timeout">((done) => {
    timer = setTimeout(() => done("timeout"), timeoutMs);
  });
  try {
    const result = await Promise.race([connecting, timeout]);
    if (result === "timeout") {
      // A connection that completes later is closed then.
      connecting.then((conn) => conn.close(), () => {});
      return `no answer within ${timeoutMs / 1000} s`;
    }
    result.close();
    return undefined;
  } catch (e) {
    return e instanceof Deno.errors.ConnectionRefused ? "connection refused" : (e as Error).message;
  } finally {
    clearTimeout(timer);
  }
}
