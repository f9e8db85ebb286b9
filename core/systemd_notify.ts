// Tells systemd how the service is doing (sd_notify(3)): READY=1 once the listeners are open,
// so a unit of Type=notify starts its dependents only then, and STOPPING=1 on shutdown.
// Without NOTIFY_SOCKET in the environment (not started by systemd) nothing is sent.

import { UnixDatagramSender } from "./unix_datagram.ts";

/**
 * Sends `state` (newline-separated VAR=VALUE assignments such as "READY=1") to the socket in
 * NOTIFY_SOCKET. Returns undefined when it was sent or there is no such socket, else why not.
 *
 * @example
 * ```ts
 * const problem = notifySystemd("READY=1\nSTATUS=Serving example.com");
 * if (problem) console.error(`lilt: ${problem}`);
 * ```
 */
export function notifySystemd(state: string): string | undefined {
  const path = Deno.env.get("NOTIFY_SOCKET");
  if (!path) return undefined;
  let socket: UnixDatagramSender;
  try {
    socket = new UnixDatagramSender(path);
  } catch (error) {
    return `cannot notify systemd at NOTIFY_SOCKET=${path}: ${(error as Error).message}`;
  }
  try {
    const problem = socket.send(new TextEncoder().encode(state));
    return problem ? `cannot notify systemd at NOTIFY_SOCKET=${path}: ${problem}` : undefined;
  } finally {
    socket.close();
  }
}
