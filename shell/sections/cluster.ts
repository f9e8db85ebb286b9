// The admin shell's `cluster` section: the nodes serving these domains (core/cluster/), each
// one's client sessions and when it was last heard from, this node marked. On a single node it
// says so.

import type { CommandSpec } from "../../core/admin_commands.ts";

/** The commands of the `cluster` section. */
export function clusterCommands(): CommandSpec[] {
  return [
    {
      section: "cluster",
      name: "show",
      summary: "Show the cluster's nodes, their sessions and last heartbeat (this node: *)",
      args: [],
      run: ({ server }) => {
        const cluster = server.cluster;
        if (!cluster) {
          return {
            message: "This server is a single node (no [cluster] table in the configuration)",
            data: { nodes: [] },
          };
        }
        const now = Date.now();
        const nodes = cluster.status();
        return {
          table: {
            columns: ["node", "this", "last heartbeat", "pid", "sessions", "listeners"],
            rows: nodes.map((n) => [
              n.name,
              n.self ? "*" : "",
              n.self ? "now" : `${((now - n.lastHeartbeat) / 1000).toFixed(1)} s ago`,
              n.pid,
              n.sessions.length,
              n.listeners.join(", "),
            ]),
            details: nodes.map((n) => n.sessions.length > 0 ? n.sessions.join("\n    ") : null),
          },
          data: {
            node: cluster.node,
            nodes: nodes.map((n) => ({ ...n, lastHeartbeatAgoMs: now - n.lastHeartbeat })),
          },
        };
      },
    },
  ];
}
