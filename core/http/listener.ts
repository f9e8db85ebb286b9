// One HTTP(S) listener on the platform's server (Deno.serve): it finds the route from the Host
// header and the path, caps request bodies, believes X-Forwarded-For only from trusted proxies,
// logs each request, and never lets a handler's error escape (500 instead). HTTPS, and plain
// HTTP on an address other machines reach, come through the front (front.ts): node:tls for SNI
// with every host's certificate, and header and idle deadlines the platform server lacks.

import { getLogger } from "../log.ts";
import type { ListenAddress } from "../config_schema.ts";
import { listen, type Listener } from "../net/listener.ts";
import { type AddressRanges, isLoopbackAddress } from "../net/address_ranges.ts";
import type { TlsContexts } from "../net/tls.ts";
import { type FrontPeer, type FrontTimeouts, HttpFront } from "./front.ts";
import { hostFromHeader, type HttpRoutes } from "./routes.ts";

const log = getLogger("http");

/** Options for `listenHttp`. */
export interface HttpListenOptions {
  /** "http" or "https" (the listener kind shown in logs and `port()`). */
  kind: string;
  address: ListenAddress;
  routes: HttpRoutes;
  /** Largest request body in bytes; larger ones get 413. */
  maxBodyBytes: () => number;
  /**
   * The host whose routes answer a request whose Host header names no host with routes (an IP
   * address, a name only the proxy knows); undefined: such requests get 404.
   */
  defaultHost: () => string | undefined;
  /** Peers whose X-Forwarded-For and X-Forwarded-Proto headers are believed. */
  trustedProxies: () => AddressRanges;
  /** Header and idle deadlines of connections that come through the front. */
  timeouts: () => FrontTimeouts;
  /** TLS (SNI picks each host's certificate) for HTTPS; absent for plain HTTP. */
  tls?: TlsContexts;
}

/** Who sent a request: from its connection, then from trusted proxies' headers. */
export interface Peer {
  /** The client's address. */
  ip: string;
  /** The client used https (TLS on our listener, or so a trusted proxy says). */
  https: boolean;
  /** The connection comes from this machine (a local proxy or client). */
  local: boolean;
  front?: FrontPeer;
}

/**
 * Starts an HTTP(S) listener; resolves once bound (rejects with the bind error). Plain HTTP on
 * loopback (behind a reverse proxy, or local clients) is served by the platform server directly;
 * everything else comes through the front.
 */
export async function listenHttp(options: HttpListenOptions): Promise<Listener> {
  const { kind, address } = options;
  const fronted = options.tls !== undefined || !isLoopbackAddress(address.host);
  if (!fronted) {
    const direct = await serve(options, address, (info) => ({
      ip: info.remoteAddr.hostname,
      https: false,
      local: isLoopbackAddress(info.remoteAddr.hostname),
    }));
    return { kind, host: direct.hostname, port: direct.port, close: direct.close };
  }
  const front = new HttpFront({ kind, tls: options.tls, timeouts: options.timeouts });
  const backend = await serve(options, { host: "127.0.0.1", port: 0 }, (info) => {
    const peer = front.peer(info.remoteAddr.port);
    return peer
      ? { ip: peer.ip, https: peer.secure, local: isLoopbackAddress(peer.ip), front: peer }
      : undefined;
  });
  front.backendPort = backend.port;
  let outer: Listener;
  try {
    outer = await listen(kind, address, (socket) => front.accept(socket));
  } catch (error) {
    await backend.close();
    throw error;
  }
  return {
    kind,
    host: outer.host,
    port: outer.port,
    connections: () => outer.connections?.() ?? Promise.resolve(front.connections),
    async close() {
      // Stop accepting at once; the outer listener is done when its last connection is.
      const stopped = outer.close();
      await backend.close();
      front.closeAll();
      await stopped;
    },
  };
}

interface Served {
  hostname: string;
  port: number;
  close(): Promise<void>;
}

/** Runs the platform server on one address; `peerOf` says who a connection is (or refuses it). */
async function serve(
  options: HttpListenOptions,
  address: ListenAddress,
  peerOf: (info: Deno.ServeHandlerInfo<Deno.NetAddr>) => Peer | undefined,
): Promise<Served> {
  const { kind, routes } = options;
  const hostname = address.host === "*" ? "::" : address.host;
  const controller = new AbortController();
  let bound!: (port: number) => void;
  const listening = new Promise<number>((resolve) => bound = resolve);
  let server: Deno.HttpServer;
  try {
    server = Deno.serve({
      hostname,
      port: address.port,
      signal: controller.signal,
      onListen: ({ port }) => bound(port),
      onError: (error) => {
        log.warning("HTTP handler failed: {error}", { error: String(error) });
        return new Response("Internal server error\n", { status: 500 });
      },
    }, (request, info) => {
      const peer = peerOf(info);
      // A connection to the backend that did not come through the front (another local
      // process found its port): refused, since its address is unknown.
      if (!peer) return text(421, "Connect through the server's HTTP(S) listener");
      peer.front?.requestStarted();
      const context: HandleContext = {
        routes,
        defaultHost: options.defaultHost,
        peer: forwardedPeer(request, peer, options.trustedProxies()),
        maxBodyBytes: options.maxBodyBytes(),
      };
      const response = handle(request, context);
      if (peer.front) {
        const front = peer.front;
        response.then((r) => {
          if (r.status === 101) front.requestEnded(true);
          else {info.completed.then(() =>
              front.requestEnded(false), () =>
              front.requestEnded(false));}
        }, () => front.requestEnded(false));
      }
      return response;
    });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(`Cannot listen for ${kind} on ${address.host}:${address.port}: ${message}`);
  }
  const port = await listening;
  return {
    hostname,
    port,
    async close() {
      controller.abort();
      await server.finished.catch(() => {});
    },
  };
}

/**
 * The client behind trusted proxies: X-Forwarded-For is read right to left, skipping trusted
 * proxies, and the first other address is the client; X-Forwarded-Proto "https" from a trusted
 * proxy makes the request an https one. Headers from anyone else are ignored.
 */
export function forwardedPeer(request: Request, peer: Peer, trusted: AddressRanges): Peer {
  if (!trusted.includes(peer.ip)) return peer;
  let ip = peer.ip;
  const forwardedFor = request.headers.get("x-forwarded-for");
  if (forwardedFor) {
    const hops = forwardedFor.split(",").map((hop) => hop.trim()).filter((hop) => hop !== "");
    for (let i = hops.length - 1; i >= 0; i--) {
      ip = stripPort(hops[i]);
      if (!trusted.includes(ip)) break;
    }
  }
  const proto = request.headers.get("x-forwarded-proto")?.split(",")[0].trim().toLowerCase();
  return { ...peer, ip, https: peer.https || proto === "https" };
}

/** "192.0.2.1:4711" -> "192.0.2.1", "[2001:db8::1]:80" -> "2001:db8::1"; bare IPv6 kept. */
function stripPort(hop: string): string {
  if (hop.startsWith("[")) {
    const end = hop.indexOf("]");
    return end > 0 ? hop.slice(1, end) : hop;
  }
  const colon = hop.indexOf(":");
  return colon >= 0 && colon === hop.lastIndexOf(":") ? hop.slice(0, colon) : hop;
}

interface HandleContext {
  routes: HttpRoutes;
  defaultHost: () => string | undefined;
  peer: Peer;
  maxBodyBytes: number;
}

/** Routes one request and logs its outcome. */
async function handle(request: Request, context: HandleContext): Promise<Response> {
  const url = new URL(request.url);
  const named = hostFromHeader(request.headers.get("host"));
  const host = named === undefined || context.routes.hasHost(named)
    ? named
    : context.defaultHost() ?? named;
  const response = await respond(request, url, host, context);
  log.debug("{ip} {method} {host}{path} -> {status}", {
    ip: context.peer.ip,
    method: request.method,
    host: host ?? "-",
    path: url.pathname,
    status: response.status,
  });
  return response;
}

async function respond(
  request: Request,
  url: URL,
  host: string | undefined,
  context: HandleContext,
): Promise<Response> {
  if (!host) return text(400, "Missing Host header");
  const route = context.routes.route(host, request.method, url.pathname);
  if (!route) {
    if (context.routes.hasPath(host, url.pathname)) return text(405, "Method not allowed");
    return text(404, "Not found");
  }
  const maxBodyBytes = route.options.maxBodyBytes?.() ?? context.maxBodyBytes;
  const length = Number(request.headers.get("content-length") ?? "0");
  if (!Number.isFinite(length) || length > maxBodyBytes) {
    return text(413, `Request body larger than ${maxBodyBytes} bytes`);
  }
  const limited = request.body && !request.headers.has("content-length")
    ? new Request(request.url, {
      method: request.method,
      headers: request.headers,
      body: capped(request.body, maxBodyBytes),
    })
    : request;
  try {
    const { peer } = context;
    return await route.handler(limited, {
      host,
      ip: peer.ip,
      https: peer.https,
      // A request from loopback counts as encrypted: a TLS proxy on this machine, or a local
      // client whose traffic never leaves it.
      secure: peer.https || peer.local,
    });
  } catch (error) {
    if (error instanceof BodyTooLarge) {
      return text(413, `Request body larger than ${maxBodyBytes} bytes`);
    }
    log.warning("HTTP handler for {method} {host}{path} failed: {error}", {
      method: request.method,
      host,
      path: url.pathname,
      error: error instanceof Error ? error.message : String(error),
    });
    return text(500, "Internal server error");
  }
}

/** Thrown into a body stream that grew past the limit. */
class BodyTooLarge extends Error {}

/** A body stream that errors once more than `max` bytes went through. */
function capped(body: ReadableStream<Uint8Array>, max: number): ReadableStream<Uint8Array> {
  let total = 0;
  return body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, out) {
        total += chunk.byteLength;
        if (total > max) throw new BodyTooLarge(`Request body larger than ${max} bytes`);
        out.enqueue(chunk);
      },
    }),
  );
}

function text(status: number, body: string): Response {
  return new Response(body + "\n", { status, headers: { "content-type": "text/plain" } });
}
