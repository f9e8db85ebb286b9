// The `dns` section of the admin shell: DNS answers as the running server's resolver sees them
// (its dns_nameservers), to tell a wrong zone from a resolver that sees something else.

import { CommandError, type CommandSpec } from "../../core/admin_commands.ts";
import type { AdminServer } from "../../core/admin_commands.ts";
import { DnsError, Resolver } from "../../core/net/dns.ts";

/** The record types `dns lookup` asks for. */
const LOOKUP_TYPES = ["A", "AAAA", "SRV", "TXT"] as const;

type LookupType = typeof LOOKUP_TYPES[number];

/** The SRV services `dns srv` asks for, with who uses them. */
const XMPP_SERVICES = [
  { label: "_xmpp-client._tcp", service: "client (STARTTLS)" },
  { label: "_xmpps-client._tcp", service: "client (direct TLS)" },
  { label: "_xmpp-server._tcp", service: "server (STARTTLS)" },
  { label: "_xmpps-server._tcp", service: "server (direct TLS)" },
];

const LOOKUP_TIMEOUT_MS = 5000;

/**
 * The resolver the server uses: the federation manager's when federation is on, otherwise one
 * on the same `dns_nameservers`.
 */
function serverResolver(server: AdminServer): Resolver {
  return server.remote?.resolver ?? new Resolver({
    nameservers: server.config.get<string[]>("dns_nameservers"),
    timeoutMs: LOOKUP_TIMEOUT_MS,
  });
}

function nameArg(text: string | undefined): string {
  const name = (text ?? "").trim().replace(/\.$/, "");
  if (name === "" || name.length > 253 || /[\s/@]/.test(name) || name.split(".").includes("")) {
    throw new CommandError(`Expected a DNS name such as "example.org", found '${text ?? ""}'`);
  }
  return name;
}

function typeArg(text: string | undefined): LookupType {
  const type = (text ?? "A").toUpperCase();
  if (!(LOOKUP_TYPES as readonly string[]).includes(type)) {
    throw new CommandError(
      `Unknown record type '${text}': expected one of ${LOOKUP_TYPES.join(", ")}`,
    );
  }
  return type as LookupType;
}

function nameservers(resolver: Resolver): string {
  const servers = resolver.getServers();
  return servers.length > 0 ? servers.join(", ") : "the system's";
}

/** One answer row of `dns lookup`. */
interface LookupRow {
  name: string;
  type: LookupType;
  value: string;
  priority: number | null;
  weight: number | null;
  port: number | null;
}

async function lookup(resolver: Resolver, name: string, type: LookupType): Promise<LookupRow[]> {
  const row = (value: string): LookupRow => ({
    name,
    type,
    value,
    priority: null,
    weight: null,
    port: null,
  });
  switch (type) {
    case "A":
      return (await resolver.ipv4(name)).map(row);
    case "AAAA":
      return (await resolver.ipv6(name)).map(row);
    case "TXT":
      return (await resolver.txt(name)).map(row);
    case "SRV":
      return (await resolver.srv(name)).map((r) => ({
        ...row(r.target),
        priority: r.priority,
        weight: r.weight,
        port: r.port,
      }));
  }
}

/** What a failed lookup means to an operator: no records is an answer, the rest are errors. */
function failure(error: unknown, resolver: Resolver): CommandError {
  const detail = error instanceof Error ? error.message : String(error);
  return new CommandError(`${detail} (nameservers: ${nameservers(resolver)})`);
}

/** The commands of the `dns` section. */
export function dnsCommands(): CommandSpec[] {
  return [
    {
      section: "dns",
      name: "lookup",
      summary: "Look up NAME's records (A, AAAA, SRV or TXT; default A) as the server does",
      args: [{ name: "name", kind: "string" }, { name: "type", kind: "string", optional: true }],
      run: async ({ server }, args) => {
        const name = nameArg(args[0]);
        const type = typeArg(args[1]);
        const resolver = serverResolver(server);
        let rows: LookupRow[];
        try {
          rows = await lookup(resolver, name, type);
        } catch (error) {
          if (error instanceof DnsError && error.kind === "no-records") {
            return {
              message: `No ${type} records for ${name} (nameservers: ${nameservers(resolver)})`,
              data: [],
            };
          }
          throw failure(error, resolver);
        }
        const srv = type === "SRV";
        return {
          table: {
            columns: srv
              ? ["name", "type", "priority", "weight", "port", "target"]
              : ["name", "type", "value"],
            rows: rows.map((r) =>
              srv ? [r.name, r.type, r.priority, r.weight, r.port, r.value] : [
                r.name,
                r.type,
                r.value,
              ]
            ),
          },
        };
      },
    },
    {
      section: "dns",
      name: "srv",
      summary: "Show DOMAIN's client and server SRV records and their targets' addresses",
      args: [{ name: "domain", kind: "host" }],
      run: async ({ server }, args) => {
        const domain = nameArg(args[0]);
        const resolver = serverResolver(server);
        const rows = await Promise.all(XMPP_SERVICES.map(async ({ label, service }) => {
          const name = `${label}.${domain}`;
          try {
            const records = await resolver.srv(name);
            return await Promise.all(records.map(async (r) => ({
              name,
              service,
              priority: r.priority as number | null,
              weight: r.weight as number | null,
              port: r.port as number | null,
              target: r.target,
              addresses: r.target === "." ? "(service not offered)" : await addressesOf(
                resolver,
                r.target,
              ),
            })));
          } catch (error) {
            if (!(error instanceof DnsError)) throw error;
            return [{
              name,
              service,
              priority: null,
              weight: null,
              port: null,
              target: "",
              addresses: error.kind === "no-records" ? "(no records)" : error.message,
            }];
          }
        }));
        const flat = rows.flat();
        return {
          table: {
            columns: ["name", "service", "priority", "weight", "port", "target", "addresses"],
            rows: flat.map((r) => [
              r.name,
              r.service,
              r.priority,
              r.weight,
              r.port,
              r.target,
              r.addresses,
            ]),
          },
        };
      },
    },
  ];
}

/** A target's addresses for display, or why there are none. */
async function addressesOf(resolver: Resolver, target: string): Promise<string> {
  try {
    const { v6, v4 } = await resolver.addresses(target);
    return [...v6, ...v4].join(", ");
  } catch (error) {
    if (error instanceof DnsError && error.kind === "no-records") return "(no A or AAAA)";
    return error instanceof Error ? error.message : String(error);
  }
}
