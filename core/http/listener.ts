// One HTTP listener on the platform's server (Deno.serve): it finds the route from the Host
// header and the path, caps request bodies, logs each request, and never lets a handler's
// error escape (500 instead).

import { getLogger } from "../log.ts";
import type { ListenAddress } from "../config_schema.ts";
import type { Listener } from "../net/listener.ts";
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
  /** TLS certificate and key (PEM) for HTTPS; absent for plain HTTP. */
  tls?: { cert: string; key: string };
}

/** Starts an HTTP(S) listener; resolves once bound (rejects with the bind error). */
export async function listenHttp(options: HttpListenOptions): Promise<Listener> {
  const { kind, address, routes } = options;
  const secure = options.tls !== undefined;
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
      ...(options.tls ?? {}),
      onListen: ({ port }) => bound(port),
      onError: (error) => {
        log.warning("HTTP handler failed: {error}", { error: String(error) });
        return new Response("Internal server error\n", { status: 500 });
      },
    }, (request, info) => {
      const ip = info.remoteAddr.hostname;
      return handle(request, { routes, secure, ip, maxBodyBytes: options.maxBodyBytes() });
    });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(`Cannot listen for ${kind} on ${address.host}:${address.port}: ${message}`);
  }
  const port = await listening;
  return {
    kind,
    host: hostname,
    port,
    async close() {
      controller.abort();
      await server.finished.catch(() => {});
    },
  };
}

interface HandleContext {
  routes: HttpRoutes;
  secure: boolean;
  ip: string;
  maxBodyBytes: number;
}

/** Routes one request and logs its outcome. */
async function handle(request: Request, context: HandleContext): Promise<Response> {
  const url = new URL(request.url);
  const host = hostFromHeader(request.headers.get("host"));
  const response = await respond(request, url, host, context);
  log.debug("{ip} {method} {host}{path} -> {status}", {
    ip: context.ip,
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
    return await route.handler(limited, { host, ip: context.ip, secure: context.secure });
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
