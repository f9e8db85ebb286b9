// The RFC 7395 endpoint: upgrades `GET /xmpp-websocket` with the `xmpp` subprotocol to a
// WebSocket and hands it, as a WebSocketTransport, to the same client session as TCP streams.

import { getLogger } from "../log.ts";
import { type C2SDeps, C2SSession } from "../net/c2s.ts";
import { WebSocketTransport } from "../net/websocket_transport.ts";
import { NO_RECEIVER } from "../net/transport.ts";
import type { HttpHandler } from "./routes.ts";

const log = getLogger("http");

/** The path clients find through XEP-0156 and connect to. */
export const WEBSOCKET_PATH = "/xmpp-websocket";

/** Seconds without traffic before the platform pings the peer (and drops it without a pong). */
const IDLE_PING_SECONDS = 60;

/**
 * The route handler that accepts RFC 7395 client connections (encrypted when the request was:
 * HTTPS, a TLS proxy on loopback, or a trusted proxy saying https).
 */
export function websocketHandler(deps: C2SDeps): HttpHandler {
  return (request, info) => {
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return plain(426, "This endpoint speaks WebSocket (RFC 7395)", { upgrade: "websocket" });
    }
    const offered = (request.headers.get("sec-websocket-protocol") ?? "")
      .split(",").map((p) => p.trim());
    if (!offered.includes("xmpp")) {
      return plain(400, "The WebSocket subprotocol must be 'xmpp' (RFC 7395)");
    }
    const origins = deps.server.config.get<string[]>("websocket_origins");
    const origin = request.headers.get("origin");
    if (origins.length > 0 && origin !== null && !origins.includes(origin)) {
      log.info("WebSocket from {ip} refused: origin {origin} is not allowed", {
        ip: info.ip,
        origin,
      });
      return plain(403, `Origin '${origin}' is not allowed`);
    }
    const { socket, response } = Deno.upgradeWebSocket(request, {
      protocol: "xmpp",
      idleTimeout: IDLE_PING_SECONDS,
    });
    const transport = new WebSocketTransport(socket, NO_RECEIVER, {
      ip: info.ip,
      secure: info.secure,
      maxStanzaBytes: deps.server.config.hostDefault("c2s_stanza_size_limit"),
    });
    new C2SSession(transport, deps);
    return response;
  };
}

function plain(status: number, body: string, headers: Record<string, string> = {}): Response {
  return new Response(body + "\n", {
    status,
    headers: { "content-type": "text/plain", ...headers },
  });
}
