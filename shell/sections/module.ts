// The `module` section of the admin shell: which modules run where, and loading, unloading
// or reloading one at runtime (until the next configuration reload decides again).

import { CommandError, type CommandSpec } from "../../core/admin_commands.ts";
import type { Host } from "../../core/hosts.ts";
import type { AdminServer } from "../../core/admin_commands.ts";

/** The named host, or every host when `domain` is undefined. */
function hostsFor(server: AdminServer, domain: string | undefined): Host[] {
  if (domain === undefined) return [...server.hosts.values()];
  const host = server.hosts.get(domain);
  if (!host) {
    throw new CommandError(`No host '${domain}' (hosts: ${[...server.hosts.keys()].join(", ")})`);
  }
  return [host];
}

function requireKnown(server: AdminServer, name: string | undefined): string {
  if (!name) throw new CommandError("Expected a module name");
  if (!server.modules.file(name)) {
    throw new CommandError(
      `Unknown module '${name}' (available: ${server.modules.available().join(", ")})`,
    );
  }
  return name;
}

/** Runs `action` per host, collecting "host: outcome" lines; fails when every host failed. */
async function perHost(
  hosts: Host[],
  action: (host: Host) => Promise<string | undefined>,
): Promise<{ done: string[]; lines: string[] }> {
  const done: string[] = [];
  const lines: string[] = [];
  let failures = 0;
  for (const host of hosts) {
    try {
      const outcome = await action(host);
      if (outcome === undefined) continue;
      done.push(host.domain);
      lines.push(`${host.domain}: ${outcome}`);
    } catch (error) {
      failures++;
      lines.push(`${host.domain}: ${(error as Error).message}`);
    }
  }
  if (failures > 0 && done.length === 0) throw new CommandError(lines.join("\n"));
  return { done, lines };
}

const MODULE_ARG = { name: "module", kind: "module" } as const;
const HOST_ARG = { name: "host", kind: "host", optional: true } as const;

/** The commands of the `module` section. */
export function moduleCommands(): CommandSpec[] {
  return [
    {
      section: "module",
      name: "list",
      summary: "List the modules loaded on a host (every host when none is given)",
      args: [HOST_ARG],
      run: ({ server }, [domain]) => {
        const rows: string[][] = [];
        for (const host of hostsFor(server, domain)) {
          for (const name of server.modules.loaded(host.domain)) {
            rows.push([host.domain, name, server.modules.file(name)?.description ?? ""]);
          }
        }
        return { table: { columns: ["host", "module", "description"], rows } };
      },
    },
    {
      section: "module",
      name: "info",
      summary: "Show a module's description, options and where it is loaded",
      args: [MODULE_ARG, HOST_ARG],
      run: ({ server }, [module, domain]) => {
        const name = requireKnown(server, module);
        const file = server.modules.file(name)!;
        const hosts = hostsFor(server, domain).map((h) => h.domain);
        const loadedOn = hosts.filter((h) => server.modules.isLoaded(h, name));
        const options = Object.keys(file.options ?? {}).sort();
        return {
          table: {
            columns: ["host", "loaded"],
            rows: hosts.map((h) => [h, server.modules.isLoaded(h, name)]),
          },
          message: `${name}: ${file.description ?? "(no description)"}` +
            (options.length > 0 ? `\noptions: ${options.join(", ")}` : ""),
          data: { module: name, description: file.description ?? null, options, loadedOn },
        };
      },
    },
    {
      section: "module",
      name: "load",
      summary: "Load a module on a host (every host when none is given)",
      args: [MODULE_ARG, HOST_ARG],
      run: async ({ server }, [module, domain]) => {
        const name = requireKnown(server, module);
        const { done, lines } = await perHost(hostsFor(server, domain), async (host) => {
          if (server.modules.isLoaded(host.domain, name)) {
            if (domain !== undefined) throw new Error(`'${name}' is already loaded`);
            return undefined;
          }
          await server.modules.load(host, name);
          return "loaded";
        });
        return {
          message: lines.length > 0 ? lines.join("\n") : `'${name}' was already loaded everywhere`,
          data: { module: name, hosts: done },
        };
      },
    },
    {
      section: "module",
      name: "unload",
      summary: "Unload a module from a host (every host when none is given)",
      args: [MODULE_ARG, HOST_ARG],
      run: async ({ server }, [module, domain]) => {
        const name = requireKnown(server, module);
        const { done, lines } = await perHost(hostsFor(server, domain), (host) => {
          if (!server.modules.unload(host, name)) {
            if (domain !== undefined) throw new Error(`'${name}' is not loaded`);
            return Promise.resolve(undefined);
          }
          return Promise.resolve("unloaded");
        });
        if (done.length === 0) throw new CommandError(`'${name}' is not loaded on any host`);
        return { message: lines.join("\n"), data: { module: name, hosts: done } };
      },
    },
    {
      section: "module",
      name: "reload",
      summary: "Unload and load a module again where it is loaded",
      args: [MODULE_ARG, HOST_ARG],
      run: async ({ server }, [module, domain]) => {
        const name = requireKnown(server, module);
        const { done, lines } = await perHost(hostsFor(server, domain), async (host) => {
          // Modules that depend on it go down with it and come back after it.
          const dependents = server.modules.dependentsOf(host.domain, name);
          if (!server.modules.unload(host, name, { cascade: true })) {
            if (domain !== undefined) throw new Error(`'${name}' is not loaded`);
            return undefined;
          }
          await server.modules.load(host, name);
          for (const dependent of dependents) await server.modules.load(host, dependent);
          return dependents.length > 0 ? `reloaded (with ${dependents.join(", ")})` : "reloaded";
        });
        if (done.length === 0) throw new CommandError(`'${name}' is not loaded on any host`);
        return { message: lines.join("\n"), data: { module: name, hosts: done } };
      },
    },
  ];
}
