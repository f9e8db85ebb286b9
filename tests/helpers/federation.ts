// Starts Lilt servers that federate over loopback for tests: each gets its own domain, a
// certificate from a shared test CA, an s2s listener on an ephemeral port, and SRV records in a
// DNS responder the test owns, so servers find each other without touching system files.

import assert from "node:assert/strict";
import type { DnsResponder } from "./dns_responder.ts";
import { RawClient } from "./raw_client.ts";
import type { TestCa } from "./test_ca.ts";
import { startTestServer, type TestServer, type TestServerOptions } from "./test_server.ts";

/** Options for {@link startFederatingServer}. */
export interface FederatingServerOptions extends Omit<TestServerOptions, "domain"> {
  /** The server's domain. */
  domain: string;
  /** Where the server looks up remote domains, and where its own SRV record is published. */
  dns: DnsResponder;
  /** The CA that issues the server's certificate and that the server trusts. */
  ca: TestCa;
  /** More DNS names for the certificate (the hosts of `extraToml`); it serves every host. */
  extraNames?: string[];
  /** Present a self-signed certificate instead of one from `ca`. */
  selfSigned?: boolean;
  /**
   * Also listen for direct TLS (XEP-0368) and publish it as the preferred
   * `_xmpps-server._tcp` SRV record (STARTTLS stays as a lower-priority `_xmpp-server`).
   */
  directTls?: boolean;
  /** Extra TOML in the global section. */
  globalToml?: string;
}

/** Starts a Lilt server for `domain` with federation on and publishes its SRV record. */
export async function startFederatingServer(
  options: FederatingServerOptions,
): Promise<TestServer> {
  const dir = await Deno.makeTempDir({ prefix: "lilt-s2s-certs-" });
  const names = [options.domain, ...options.extraNames ?? []];
  const issued = options.selfSigned
    ? await options.ca.selfSigned(names)
    : await options.ca.issue({ names });
  const files = await issued.writeTo(dir, options.domain);
  const caFile = `${dir}/ca.pem`;
  await options.ca.writeCa(caFile);
  const server = await startTestServer({
    ...options,
    domain: options.domain,
    globalToml: `s2s_interfaces = ["127.0.0.1:0"]
s2s_direct_tls_interfaces = ${options.directTls ? `["127.0.0.1:0"]` : "[]"}
s2s_ca_files = [${JSON.stringify(caFile)}]
dns_nameservers = [${JSON.stringify(`127.0.0.1:${options.dns.port}`)}]
certificate = ${JSON.stringify(files.certFile)}
key = ${JSON.stringify(files.keyFile)}
${options.globalToml ?? ""}`,
  });
  options.dns.set(`_xmpp-server._tcp.${options.domain}`, {
    srv: [{ priority: 10, weight: 0, port: server.server.port("s2s"), target: options.domain }],
  });
  if (options.directTls) {
    const port = server.server.port("s2s_direct_tls");
    options.dns.set(`_xmpps-server._tcp.${options.domain}`, {
      srv: [{ priority: 0, weight: 0, port, target: options.domain }],
    });
  }
  options.dns.set(options.domain, { a: ["127.0.0.1"] });
  const stop = server.stop;
  server.stop = async () => {
    await stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  return server;
}

/**
 * Logs `user@domain/r` (password "pw") in over STARTTLS, fetches the roster and sends initial
 * presence; resolves once the server reflected it to the resource (RFC 6121 §4.2.2), so the
 * resource is available before anything is sent to it.
 */
export async function online(port: number, user: string, domain: string): Promise<RawClient> {
  const { client } = await RawClient.login(port, user, "pw", "r", domain);
  client.send("<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>");
  await client.next((el) => el.attrs.id === "roster");
  client.send("<presence/>");
  const self = `${user}@${domain}/r`;
  await client.next((el) => el.name === "presence" && el.attrs.from === self && !el.attrs.type);
  return client;
}

/** One side of {@link exchange}: a logged-in client and its bare JID (resource "r"). */
export interface Party {
  client: RawClient;
  bare: string;
}

/**
 * A message each way, then a mutual presence subscription, between users on two federating
 * servers: each side sees the other's request from the bare JID, the approval, and then the
 * other's available presence (the probe after subscribing is answered across the link).
 */
export async function exchange(a: Party, b: Party): Promise<void> {
  for (const [from, to, id] of [[a, b, "x1"], [b, a, "x2"]] as const) {
    from.client.send(
      `<message to='${to.bare}' type='chat' id='${id}'><body>${id}</body></message>`,
    );
    const got = await to.client.next((el) => el.name === "message" && el.attrs.id === id, 10_000);
    assert.equal(got.attrs.from, `${from.bare}/r`);
    assert.equal(got.getChildText("body"), id);
  }
  for (const [asker, owner] of [[a, b], [b, a]] as const) {
    asker.client.send(`<presence to='${owner.bare}' type='subscribe'/>`);
    // The request comes from the bare JID (RFC 6121 §3.1.2); ejabberd addresses it to the
    // full JID of the resource it delivers to.
    await owner.client.next((el) =>
      el.name === "presence" && el.attrs.type === "subscribe" && el.attrs.from === asker.bare
    );
    owner.client.send(`<presence to='${asker.bare}' type='subscribed'/>`);
    await asker.client.next((el) =>
      el.name === "presence" && el.attrs.type === "subscribed" && el.attrs.from === owner.bare
    );
    await asker.client.next((el) =>
      el.name === "presence" && el.attrs.from === `${owner.bare}/r` && !el.attrs.type
    );
  }
}
