// The `http` section of the admin shell: the HTTP listeners with the ports they bound, and the
// routes each host serves with the module that registered them, so an operator can see why a
// URL answers 404 (wrong Host, module not loaded) without reading the configuration.

import { type AdminServer, CommandError, type CommandSpec } from "../../core/admin_commands.ts";
import type { HttpRouteEntry } from "../../core/http/routes.ts";
import type { Listener } from "../../core/net/listener.ts";

/** The HTTP(S) listeners among the server's listeners. */
function httpListeners(server: AdminServer): Listener[] {
  return server.listeners.filter((l) => l.kind === "http" || l.kind === "https");
}

/** A host argument: undefined when left out, else a host of this server (or a CommandError). */
function hostArg(server: AdminServer, text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  const host = text.toLowerCase();
  if (!server.hosts.has(host)) throw new CommandError(`'${text}' is not a host of this server`);
  return host;
}

/** Who registered a route, as printed: the module, or `core` for the server's own routes. */
function ownerOf(route: HttpRouteEntry): string {
  return route.owner ?? "core";
}

/**
 * The base URL a host's routes are reached at: `http_external_url`'s scheme, port and path on
 * the host's name when set (routes are found by the Host header), else the first HTTP
 * listener's scheme and port; undefined when there is neither.
 */
function baseUrl(server: AdminServer, host: string): string | undefined {
  const external = server.config.get<string>("http_external_url");
  if (external) {
    const url = new URL(external);
    const port = url.port ? `:${url.port}` : "";
    return `${url.protocol}//${host}${port}${url.pathname.replace(/\/+$/, "")}`;
  }
  const listener = httpListeners(server)[0];
  return listener ? `${listener.kind}://${host}:${listener.port}` : undefined;
}

/** The commands of the `http` section. */
export function httpCommands(): CommandSpec[] {
  return [
    {
      section: "http",
      name: "listeners",
      summary: "The HTTP listeners: kind, address, bound port and TLS",
      args: [],
      run: ({ server }) => ({
        table: {
          columns: ["kind", "address", "port", "tls"],
          rows: httpListeners(server).map((l) => [l.kind, l.host, l.port, l.kind === "https"]),
        },
      }),
    },
    {
      section: "http",
      name: "routes",
      summary: "The HTTP routes of every host (or one): method, path and module",
      args: [{ name: "host", kind: "host", optional: true }],
      run: ({ server }, [text]) => {
        const routes = server.http.list(hostArg(server, text));
        return {
          table: {
            columns: ["host", "method", "path", "module"],
            rows: routes.map((r) => [r.host, r.method, r.path, ownerOf(r)]),
          },
        };
      },
    },
    {
      section: "http",
      name: "list",
      summary: "The HTTP endpoints of every host (or one) as URLs, with their modules",
      args: [{ name: "host", kind: "host", optional: true }],
      run: ({ server }, [text]) => {
        const routes = server.http.list(hostArg(server, text));
        const byHost = new Map<string, HttpRouteEntry[]>();
        for (const route of routes) {
          const list = byHost.get(route.host) ?? [];
          list.push(route);
          byHost.set(route.host, list);
        }
        const data: { host: string; base: string | null; endpoints: unknown[] }[] = [];
        const lines: string[] = [];
        for (const [host, list] of byHost) {
          const base = baseUrl(server, host);
          const endpoints = list.map((r) => ({
            method: r.method,
            path: r.path,
            module: ownerOf(r),
            url: base === undefined ? null : base + r.path,
          }));
          data.push({ host, base: base ?? null, endpoints });
          lines.push(`HTTP endpoints on ${host}:`);
          for (const e of endpoints) {
            lines.push(`  ${e.method} ${e.url ?? e.path} (${e.module})`);
          }
        }
        if (lines.length === 0) {
          lines.push(text === undefined ? "No HTTP routes" : `No HTTP routes on ${text}`);
        }
        if (httpListeners(server).length === 0) {
          lines.push("No HTTP listener is running (http_interfaces is empty)");
        }
        return { message: lines.join("\n"), data };
      },
    },
  ];
}
