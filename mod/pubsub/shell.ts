// The admin shell's `pubsub` section (like Prosody 13's `pubsub:*` commands): an operator
// browses and manages the nodes of a pubsub component or of an account's PEP, acting as the
// service's operator (owner of every node) through the engine, so notifications still go out.

import { type AdminServer, CommandError, type CommandSpec } from "../../core/admin_commands.ts";
import { type JID, tryParseJid } from "../../core/jid.ts";
import { hostService } from "../../core/modules.ts";
import { serialize } from "../../core/xml/serializer.ts";
import { configForm, formFields } from "./config.ts";
import { PubsubError } from "./errors.ts";
import type { PubsubService } from "./service.ts";
import "./services.ts";

const AFFILIATIONS = ["owner", "publisher", "publish-only", "member", "outcast", "none"];

/**
 * The pubsub service at a shell argument: a component's hosted service (`pubsub.localhost`) or
 * an account's PEP service (`alice@localhost`), or a CommandError saying why there is none.
 */
export function pubsubServiceAt(server: AdminServer, address: string | undefined): PubsubService {
  const jid = tryParseJid(address ?? "");
  if (!jid || jid.resource !== undefined) {
    throw new CommandError(
      `Expected a pubsub service address (a pubsub component or an account's bare JID), ` +
        `found '${address ?? ""}'`,
    );
  }
  const host = server.hosts.get(jid.domain);
  if (jid.local === undefined) {
    const hosted = host === undefined ? undefined : hostService(host, "pubsub");
    if (!hosted) throw new CommandError(`No pubsub service at '${jid.domain}'`);
    return hosted.service;
  }
  const pep = host === undefined ? undefined : hostService(host, "pep");
  if (!pep) throw new CommandError(`The pep module is not loaded on '${jid.domain}'`);
  if (!server.accounts.exists(jid.domain, jid.local)) {
    throw new CommandError(`No account '${jid.bareString()}'`);
  }
  return pep.serviceOf(jid.local);
}

/** Runs an operation as the service's operator on an existing node; engine refusals read well. */
function onNode<T>(
  server: AdminServer,
  address: string | undefined,
  node: string | undefined,
  operation: (service: PubsubService, actor: JID, node: string) => T,
): T {
  const service = pubsubServiceAt(server, address);
  if (node === undefined || node === "") throw new CommandError("Expected a node name");
  if (!service.findNode(node)) throw new CommandError(`No node '${node}' at ${service.jid}`);
  return operated(service, (actor) => operation(service, actor, node));
}

/** Runs `fn` with the service's operator rights; a PubsubError becomes a CommandError. */
function operated<T>(service: PubsubService, fn: (actor: JID) => T): T {
  try {
    return service.asOperator(fn);
  } catch (error) {
    if (!(error instanceof PubsubError)) throw error;
    const reason = error.text ?? `${error.condition}` +
        (error.pubsubCondition ? ` (${error.pubsubCondition})` : "");
    throw new CommandError(`${service.jid} refused: ${reason}`);
  }
}

/** A node's configuration as `pubsub#` fields: one value, or a list for multi-valued fields. */
function configValues(service: PubsubService, node: string): Record<string, string | string[]> {
  const form = configForm(service.findNode(node)!.config, service.limits);
  const multi = new Set(
    form.getChildren("field").filter((field) => field.attrs.type === "text-multi")
      .map((field) => field.attrs.var),
  );
  const values: Record<string, string | string[]> = {};
  for (const [name, list] of formFields(form)) {
    if (name === "FORM_TYPE") continue;
    values[name] = multi.has(name) ? list : list[0] ?? "";
  }
  return values;
}

function text(value: string | string[]): string {
  return Array.isArray(value) ? value.join(", ") : value;
}

const SERVICE_ARG = { name: "service", kind: "jid" } as const;
const NODE_ARG = { name: "node", kind: "string" } as const;

/** The `pubsub` section of the admin shell; mod/pubsub.ts and mod/pep.ts both register it. */
export const PUBSUB_COMMANDS: CommandSpec[] = [
  {
    section: "pubsub",
    name: "list_services",
    summary: "Pubsub components and accounts with PEP nodes (every host, or one)",
    args: [{ name: "host", kind: "host", optional: true }],
    run: ({ server }, [only]) => {
      if (only !== undefined && !server.hosts.has(only)) {
        throw new CommandError(`No host or component '${only}'`);
      }
      const rows: [string, string, number][] = [];
      for (const [domain, host] of server.hosts) {
        if (only !== undefined && domain !== only) continue;
        const hosted = hostService(host, "pubsub");
        if (hosted) rows.push([domain, "pubsub", hosted.service.nodes().length]);
        const pep = hostService(host, "pep");
        for (const user of pep?.users() ?? []) {
          rows.push([`${user}@${domain}`, "pep", pep!.serviceOf(user).nodes().length]);
        }
      }
      rows.sort((a, b) => a[0].localeCompare(b[0]));
      return {
        table: { columns: ["service", "kind", "nodes"], rows },
        data: rows.map(([service, kind, nodes]) => ({ service, kind, nodes })),
      };
    },
  },
  {
    section: "pubsub",
    name: "list_nodes",
    summary: "The nodes of a pubsub service or of an account's PEP",
    args: [SERVICE_ARG],
    run: ({ server }, [address]) => {
      const service = pubsubServiceAt(server, address);
      const nodes = service.nodes().map((node) => ({
        node: node.node,
        title: node.config.title,
        access_model: node.config.accessModel,
        created: new Date(node.createdMs).toISOString(),
      }));
      return {
        table: {
          columns: ["node", "title", "access_model", "created"],
          rows: nodes.map((n) => [n.node, n.title, n.access_model, n.created]),
        },
        data: nodes,
      };
    },
  },
  {
    section: "pubsub",
    name: "get_node_config",
    summary: "A node's configuration (pubsub# options), or one option's value",
    args: [SERVICE_ARG, NODE_ARG, { name: "option", kind: "string", optional: true }],
    run: ({ server }, [address, node, option]) =>
      onNode(server, address, node, (service, _actor, name) => {
        const values = configValues(service, name);
        if (option !== undefined) {
          const key = option.startsWith("pubsub#") ? option : `pubsub#${option}`;
          if (!(key in values)) {
            throw new CommandError(
              `Unknown node option '${option}'; expected one of ${Object.keys(values).join(", ")}`,
            );
          }
          return { message: `${key} = ${text(values[key])}`, data: { [key]: values[key] } };
        }
        return {
          table: {
            columns: ["option", "value"],
            rows: Object.entries(values).map(([key, value]) => [key, text(value)]),
          },
          data: values,
        };
      }),
  },
  {
    section: "pubsub",
    name: "set_node_config_option",
    summary: "Change one option of a node's configuration (a list option takes a,b,c)",
    args: [SERVICE_ARG, NODE_ARG, { name: "option", kind: "string" }, {
      name: "value",
      kind: "text",
      rest: true,
    }],
    run: ({ server }, [address, node, option, value]) =>
      onNode(server, address, node, (service, actor, name) => {
        const before = configValues(service, name);
        const key = option?.startsWith("pubsub#") ? option : `pubsub#${option ?? ""}`;
        if (option === undefined || !(key in before)) {
          throw new CommandError(
            `Unknown node option '${option ?? ""}'; expected one of ` +
              Object.keys(before).join(", "),
          );
        }
        if (value === undefined) throw new CommandError(`Expected a value for ${key}`);
        const values = Array.isArray(before[key])
          ? value.split(",").map((part) => part.trim()).filter((part) => part !== "")
          : [value];
        service.configure(actor, name, new Map([[key, values]]));
        const after = configValues(service, name)[key];
        return {
          message: `${key} = ${text(after)} for node '${name}' at ${service.jid}`,
          data: { service: service.jid, node: name, [key]: after },
        };
      }),
  },
  {
    section: "pubsub",
    name: "node_affiliations",
    summary: "Every affiliation with a node",
    args: [SERVICE_ARG, NODE_ARG],
    run: ({ server }, [address, node]) =>
      onNode(server, address, node, (service, actor, name) => {
        const affiliations = service.nodeAffiliations(actor, name)
          .sort((a, b) => a[0].localeCompare(b[0]));
        return {
          table: { columns: ["jid", "affiliation"], rows: affiliations },
          data: Object.fromEntries(affiliations),
        };
      }),
  },
  {
    section: "pubsub",
    name: "set_affiliation",
    summary: "Set a JID's affiliation with a node (owner, publisher, publish-only, member, " +
      "outcast, none)",
    args: [SERVICE_ARG, NODE_ARG, { name: "jid", kind: "jid" }, {
      name: "affiliation",
      kind: "string",
    }],
    run: ({ server }, [address, node, who, affiliation]) => {
      const jid = tryParseJid(who ?? "");
      if (!jid) throw new CommandError(`Expected a JID, found '${who ?? ""}'`);
      if (!AFFILIATIONS.includes(affiliation ?? "")) {
        throw new CommandError(
          `Expected an affiliation (${AFFILIATIONS.join(", ")}), found '${affiliation ?? ""}'`,
        );
      }
      return onNode(server, address, node, (service, actor, name) => {
        service.setNodeAffiliations(actor, name, [{ jid, affiliation }]);
        const bare = jid.bareString();
        return {
          message: `${bare} is now ${affiliation} of node '${name}' at ${service.jid}`,
          data: { service: service.jid, node: name, jid: bare, affiliation },
        };
      });
    },
  },
  {
    section: "pubsub",
    name: "list_items",
    summary: "The items of a node, oldest first",
    args: [SERVICE_ARG, NODE_ARG],
    run: ({ server }, [address, node]) =>
      onNode(server, address, node, (service, actor, name) => {
        const items = service.items(actor, name).map((item) => ({
          id: item.id,
          publisher: item.publisher,
          published: new Date(item.publishedMs).toISOString(),
        }));
        return {
          table: {
            columns: ["id", "publisher", "published"],
            rows: items.map((i) => [i.id, i.publisher, i.published]),
          },
          data: items,
        };
      }),
  },
  {
    section: "pubsub",
    name: "get_item",
    summary: "One item of a node, with its payload XML",
    args: [SERVICE_ARG, NODE_ARG, { name: "id", kind: "string" }],
    run: ({ server }, [address, node, id]) =>
      onNode(server, address, node, (service, actor, name) => {
        const [item] = id ? service.items(actor, name, { ids: [id] }) : [];
        if (!item) throw new CommandError(`No item '${id ?? ""}' in node '${name}'`);
        const payload = item.payload === undefined ? "" : serialize(item.payload, "");
        const published = new Date(item.publishedMs).toISOString();
        return {
          message: `${item.id} by ${item.publisher} at ${published}\n${payload}`,
          data: { id: item.id, publisher: item.publisher, published, payload },
        };
      }),
  },
  {
    section: "pubsub",
    name: "delete_item",
    summary: "Delete an item of a node, notifying subscribers of the retraction",
    args: [SERVICE_ARG, NODE_ARG, { name: "id", kind: "string" }],
    run: ({ server }, [address, node, id]) =>
      onNode(server, address, node, (service, actor, name) => {
        if (!id || service.items(actor, name, { ids: [id] }).length === 0) {
          throw new CommandError(`No item '${id ?? ""}' in node '${name}'`);
        }
        service.retract(actor, name, id, true);
        return {
          message: `Deleted item '${id}' of node '${name}' at ${service.jid}`,
          data: { service: service.jid, node: name, id },
        };
      }),
  },
  {
    section: "pubsub",
    name: "delete_all_items",
    summary: "Purge a node: delete all its items (subscribers are told when it notifies " +
      "retractions)",
    args: [SERVICE_ARG, NODE_ARG],
    run: ({ server }, [address, node]) =>
      onNode(server, address, node, (service, actor, name) => {
        const deleted = service.items(actor, name).length;
        service.purge(actor, name);
        return {
          message: `Deleted ${deleted} item(s) of node '${name}' at ${service.jid}`,
          data: { service: service.jid, node: name, deleted },
        };
      }),
  },
  {
    section: "pubsub",
    name: "delete_node",
    summary: "Delete a node and its items (subscribers are told when it notifies deletion)",
    args: [SERVICE_ARG, NODE_ARG],
    run: ({ server }, [address, node]) =>
      onNode(server, address, node, (service, actor, name) => {
        service.delete(actor, name);
        return {
          message: `Deleted node '${name}' at ${service.jid}`,
          data: { service: service.jid, node: name },
        };
      }),
  },
  {
    section: "pubsub",
    name: "create_node",
    summary: "Create a node with the default configuration, owned by the service's address",
    args: [SERVICE_ARG, NODE_ARG],
    run: ({ server }, [address, node]) => {
      const service = pubsubServiceAt(server, address);
      if (node === undefined || node === "") throw new CommandError("Expected a node name");
      if (service.findNode(node)) {
        throw new CommandError(`Node '${node}' already exists at ${service.jid}`);
      }
      const name = operated(service, (actor) => service.create(actor, node));
      return {
        message: `Created node '${name}' at ${service.jid}`,
        data: { service: service.jid, node: name },
      };
    },
  },
];
