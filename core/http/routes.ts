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
  /**
   * The request was encrypted on its way: it was https, or it came from this machine (a TLS
   * proxy in front, or a local client).
   */
  readonly secure: boolean;
  /**
   * The client used https: TLS on our listener, or X-Forwarded-Proto from a trusted proxy (the
   * scheme to put in URLs given back to it).
   */
  readonly https: boolean;
}

/** Per-route options for `HttpRoutes.add`. */
export interface HttpRouteOptions {
  /**
   * Largest request body for this route in bytes, read on each request (replaces the
   * listener's `http_max_body_size`, e.g. for file uploads).
   */
  maxBodyBytes?: () => number;
  /**
   * Who registered the route, for the admin shell's `http routes` (`m.httpRoute` sets the
   * module's name; the server's own routes leave it out).
   */
  owner?: string;
}

/** A registered route: its handler and options. */
export interface HttpRoute {
  readonly handler: HttpHandler;
  readonly options: HttpRouteOptions;
}

/** One route as `HttpRoutes.list` describes it. */
export interface HttpRouteEntry {
  readonly host: string;
  /** Upper case, e.g. "GET". */
  readonly method: string;
  /** The path; a prefix route ends in "/*". */
  readonly path: string;
  /** The module that registered it, when known (see `HttpRouteOptions.owner`). */
  readonly owner: string | undefined;
}

/**
 * Routes by host, then "METHOD path". A path ending in "/*" is a prefix route: it matches
 * every path below that prefix (exact routes win over prefix routes, longer prefixes first).
 */
export class HttpRoutes {
  #byHost = new Map<string, Map<string, HttpRoute>>();

  /**
   * Adds a route; returns the function that removes it. Throws when the host already has a
   * handler for the same method and path (two modules claiming one URL is a config error).
   */
  add(
    host: string,
    method: string,
    path: string,
    handler: HttpHandler,
    options: HttpRouteOptions = {},
  ): () => void {
    if (!path.startsWith("/")) {
      throw new Error(`HTTP route path must start with '/', got '${path}'`);
    }
    if (path.includes("*") && !(path.endsWith("/*") && path.indexOf("*") === path.length - 1)) {
      throw new Error(`HTTP route path may only end in '/*', got '${path}'`);
    }
    const key = `${method.toUpperCase()} ${path}`;
    let routes = this.#byHost.get(host);
    if (!routes) this.#byHost.set(host, routes = new Map());
    if (routes.has(key)) throw new Error(`HTTP route ${key} is already registered on ${host}`);
    const route: HttpRoute = { handler, options };
    routes.set(key, route);
    return () => {
      if (routes.get(key) !== route) return;
      routes.delete(key);
      if (routes.size === 0 && this.#byHost.get(host) === routes) this.#byHost.delete(host);
    };
  }

  /**
   * Every route, sorted by host, then path, then method; only those of `host` when given.
   */
  list(host?: string): HttpRouteEntry[] {
    const entries: HttpRouteEntry[] = [];
    for (const [domain, routes] of this.#byHost) {
      if (host !== undefined && domain !== host) continue;
      for (const [key, route] of routes) {
        const space = key.indexOf(" ");
        entries.push({
          host: domain,
          method: key.slice(0, space),
          path: key.slice(space + 1),
          owner: route.options.owner,
        });
      }
    }
    return entries.sort((a, b) =>
      a.host.localeCompare(b.host) || a.path.localeCompare(b.path) ||
      a.method.localeCompare(b.method)
    );
  }

  /** The handler for a request, or undefined (no such host or route). */
  find(host: string, method: string, path: string): HttpHandler | undefined {
    return this.route(host, method, path)?.handler;
  }

  /** The route for a request (HEAD falls back to GET), or undefined. */
  route(host: string, method: string, path: string): HttpRoute | undefined {
    const routes = this.#byHost.get(host);
    if (!routes) return undefined;
    const upper = method.toUpperCase();
    const found = lookup(routes, upper, path);
    if (found || upper !== "HEAD") return found;
    return lookup(routes, "GET", path);
  }

  /** Whether any route is registered for this host. */
  hasHost(host: string): boolean {
    return this.#byHost.has(host);
  }

  /** Whether any route exists for this host and path (to answer 405 rather than 404). */
  hasPath(host: string, path: string): boolean {
    const routes = this.#byHost.get(host);
    if (!routes) return false;
    for (const key of routes.keys()) {
      if (matches(key.slice(key.indexOf(" ") + 1), path)) return true;
    }
    return false;
  }
}

/** The exact route for METHOD path, else the longest prefix route covering path. */
function lookup(
  routes: Map<string, HttpRoute>,
  method: string,
  path: string,
): HttpRoute | undefined {
  const exact = routes.get(`${method} ${path}`);
  if (exact) return exact;
  for (let slash = path.lastIndexOf("/"); slash >= 0; slash = path.lastIndexOf("/", slash - 1)) {
    const found = slash + 1 < path.length
      ? routes.get(`${method} ${path.slice(0, slash + 1)}*`)
      : undefined;
    if (found) return found;
    if (slash === 0) break;
  }
  return undefined;
}

/** Whether a route pattern (exact or "prefix/*") covers a path. */
function matches(pattern: string, path: string): boolean {
  if (!pattern.endsWith("/*")) return pattern === path;
  const prefix = pattern.slice(0, -1);
  return path.startsWith(prefix) && path.length > prefix.length;
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
