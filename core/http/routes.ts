// The HTTP routes of each host: modules register a method and path on their host, and the
// HTTP listener finds the handler from the request's Host header (unknown host or route: 404).

/** Handles one HTTP request for a route; may be async. */
export type HttpHandler = (request: Request, info: HttpRequestInfo) => Response | Promise<Response>;

/** What the listener knows about a request besides the Request itself. */
export interface HttpRequestInfo {
  /** The host (domain) the Host header named. */
  readonly host: string;
  /** The peer's IP address. */
  readonly ip: string;
  /** Whether the request came over HTTPS. */
  readonly secure: boolean;
}

/** Routes by host, then "METHOD path". */
export class HttpRoutes {
  #byHost = new Map<string, Map<string, HttpHandler>>();

  /**
   * Adds a route; returns the function that removes it. Throws when the host already has a
   * handler for the same method and path (two modules claiming one URL is a config error).
   */
  add(host: string, method: string, path: string, handler: HttpHandler): () => void {
    if (!path.startsWith("/")) {
      throw new Error(`HTTP route path must start with '/', got '${path}'`);
    }
    const key = `${method.toUpperCase()} ${path}`;
    let routes = this.#byHost.get(host);
    if (!routes) this.#byHost.set(host, routes = new Map());
    if (routes.has(key)) throw new Error(`HTTP route ${key} is already registered on ${host}`);
    routes.set(key, handler);
    return () => {
      if (routes.get(key) !== handler) return;
      routes.delete(key);
      if (routes.size === 0 && this.#byHost.get(host) === routes) this.#byHost.delete(host);
    };
  }

  /** The handler for a request, or undefined (no such host or route). */
  find(host: string, method: string, path: string): HttpHandler | undefined {
    const routes = this.#byHost.get(host);
    if (!routes) return undefined;
    const handler = routes.get(`${method.toUpperCase()} ${path}`);
    if (handler || method.toUpperCase() !== "HEAD") return handler;
    return routes.get(`GET ${path}`);
  }

  /** Whether any route exists for this host and path (to answer 405 rather than 404). */
  hasPath(host: string, path: string): boolean {
    const routes = this.#byHost.get(host);
    if (!routes) return false;
    for (const key of routes.keys()) if (key.slice(key.indexOf(" ") + 1) === path) return true;
    return false;
  }
}

/**
 * The host named by a Host header value: lowercased, port and a trailing dot removed,
 * IPv6 brackets kept out. Undefined when the header is missing or empty.
 */
export function hostFromHeader(value: string | null): string | undefined {
  if (!value) return undefined;
  let host = value.trim().toLowerCase();
  if (host.startsWith("[")) {
    const end = host.indexOf("]");
    return end > 0 ? host.slice(1, end) : undefined;
  }
  const colon = host.indexOf(":");
  if (colon >= 0) host = host.slice(0, colon);
  if (host.endsWith(".")) host = host.slice(0, -1);
  return host || undefined;
}
