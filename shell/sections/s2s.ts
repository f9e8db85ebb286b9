// The `s2s` and `xmpp` sections of the admin shell: federation links with how each side
// authenticated, the recent refusals with their exact reasons, closing links, and pinging a
// remote server through the real routing path.

import { CommandError, type CommandSpec } from "../../core/admin_commands.ts";
import { IqError, requestIq } from "../../core/iq.ts";
import type { S2SManager } from "../../core/s2s/manager.ts";
import type { AdminServer } from "../../core/admin_commands.ts";
import { Element } from "../../core/xml/element.ts";
import { jidArg } from "./c2s.ts";

const NS_PING = "urn:xmpp:ping";
const NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";
const PING_TIMEOUT_MS = 30_000;

function federation(server: AdminServer): S2SManager {
  if (!server.remote) {
    throw new CommandError("Federation is off on this server (no s2s_interfaces)");
  }
  return server.remote;
}

function domainArg(text: string | undefined, what: string): string {
  const jid = jidArg(text, what);
  if (jid.local !== undefined || jid.resource !== undefined) {
    throw new CommandError(`Expected a domain for the ${what}, found '${text}'`);
  }
  return jid.domain;
}

function localHost(server: AdminServer, text: string | undefined): string {
  const domain = domainArg(text, "local host");
  if (!server.hosts.has(domain)) {
    throw new CommandError(`'${domain}' is not a host of this server`);
  }
  return domain;
}

let pingCounter = 0;

/**
 * Sends an XEP-0199 ping from `local` to `remote` and waits for the answer: the round trip in
 * ms, or a CommandError with the error condition and the reason (e.g. why the link failed).
 */
async function ping(server: AdminServer, local: string, remote: string): Promise<number> {
  const iq = new Element("iq", {
    type: "get",
    id: `lilt-shell-ping-${++pingCounter}`,
    from: local,
    to: remote,
  });
  iq.c("ping", { xmlns: NS_PING });
  const started = performance.now();
  try {
    await requestIq(server, server.hosts.get(local)!, iq, { timeoutMs: PING_TIMEOUT_MS });
  } catch (error) {
    if (!(error instanceof IqError)) throw error;
    if (!error.stanza) {
      throw new CommandError(`No answer from '${remote}' within ${PING_TIMEOUT_MS / 1000} s`);
    }
    // A server that does not implement XEP-0199 still answered over a working link: that
    // is a round trip. The same conditions from our own policy or routing are failures.
    const answeredRemotely = (error.condition === "service-unavailable" ||
      error.condition === "feature-not-implemented") &&
      federation(server).links().some((l) =>
        l.direction === "out" && l.local === local && l.remote === remote && l.state === "ready"
      );
    if (!answeredRemotely) {
      const text = error.stanza.getChild("error")?.getChildText("text", NS_STANZAS);
      throw new CommandError(
        `Ping to '${remote}' failed: ${error.condition}${text ? ` (${text})` : ""}`,
      );
    }
  }
  return performance.now() - started;
}

function ago(ms: number): string {
  const seconds = Math.round((Date.now() - ms) / 1000);
  return seconds < 60 ? `${seconds} s ago` : `${Math.round(seconds / 60)} min ago`;
}

/** The commands of the `s2s` and `xmpp` sections. */
export function s2sCommands(): CommandSpec[] {
  return [
    {
      section: "s2s",
      name: "show",
      summary: "Show server-to-server links (optionally of one local or remote domain) and " +
        "recent refusals",
      args: [{ name: "domain", kind: "host", optional: true }],
      run: ({ server }, [filter]) => {
        const columns = [
          "local",
          "remote",
          "direction",
          "state",
          "auth",
          "tls",
          "certificate",
          "idle",
          "address",
        ];
        if (!server.remote) {
          return {
            message: "Federation is off on this server (no s2s_interfaces)",
            table: { columns, rows: [] },
            data: { links: [], refusals: [] },
          };
        }
        const domain = filter === undefined ? undefined : domainArg(filter, "domain");
        const matches = (l: { local: string; remote: string }) =>
          domain === undefined || l.local === domain || l.remote === domain;
        const links = server.remote.links().filter(matches);
        const refusals = server.remote.refusals().filter(matches);
        const rows = links.map((l) => [
          l.local,
          l.remote,
          l.direction,
          l.queued > 0 ? `${l.state} (${l.queued} queued)` : l.state,
          l.auth || "-",
          l.tls || "none",
          l.certificate || "-",
          `${l.idle} s`,
          l.address,
        ]);
        // Why a certificate is not valid can be a long sentence: a line of its own.
        const details = links.map((l) =>
          l.certificateReason ? `certificate: ${l.certificateReason}` : null
        );
        const lines = refusals.map((r) =>
          `  ${ago(r.at)} ${r.direction === "in" ? "from" : "to"} ${r.remote || "?"} ` +
          `(${r.local}): ${r.reason}`
        );
        return {
          message: lines.length > 0 ? `Recent refusals and failures:\n${lines.join("\n")}` : "",
          table: { columns, rows, details },
          data: { links, refusals },
        };
      },
    },
    {
      section: "s2s",
      name: "close",
      summary: "Close the links between a local host and a remote server (both directions)",
      args: [{ name: "from", kind: "host" }, { name: "to", kind: "string" }],
      run: ({ server }, [from, to]) => {
        const local = domainArg(from, "local host");
        const remote = domainArg(to, "remote host");
        const count = server.remote ? server.remote.close(local, remote) : 0;
        if (count === 0) throw new CommandError(`No such link from '${local}' to '${remote}'`);
        return { message: `Closed ${count} link(s) between ${local} and ${remote}` };
      },
    },
    {
      section: "s2s",
      name: "closeall",
      summary: "Close every server-to-server link of a local host",
      args: [{ name: "host", kind: "host" }],
      run: ({ server }, [host]) => {
        const local = localHost(server, host);
        const count = federation(server).closeAll(local);
        return { message: `Closed ${count} link(s) of ${local}` };
      },
    },
    {
      section: "xmpp",
      name: "ping",
      summary: "Ping a remote server from a local host (XEP-0199); shows the round trip or " +
        "why it failed",
      args: [{ name: "local", kind: "host" }, { name: "remote", kind: "string" }],
      run: async ({ server }, [from, to]) => {
        const local = localHost(server, from);
        const remote = domainArg(to, "remote host");
        federation(server);
        const ms = await ping(server, local, remote);
        const link = server.remote?.links().find((l) =>
          l.direction === "out" && l.local === local && l.remote === remote
        );
        const how = link ? ` (${link.auth || link.state}, ${link.tls || "no TLS"})` : "";
        return {
          message: `Pong from ${remote} in ${ms.toFixed(1)} ms${how}`,
          data: { remote, ms, auth: link?.auth ?? "", tls: link?.tls ?? "" },
        };
      },
    },
  ];
}
