// The xmpp.js side of the RFC 7395 test: xmpp.js with its default settings connects with the
// ws:// or wss:// URL it is given (its @xmpp/websocket transport), logs in, pings the server,
// and exchanges a message with a second xmpp.js client connected over TCP (STARTTLS). Run as a
// child process by websocket_clients_test.ts (DENO_CERT makes it trust the test CA). Prints one
// JSON line.
//
// Usage: deno run -A xmppjs_ws_client.ts WEBSOCKET_URL TCP_PORT

import { client, xml } from "@xmpp/client";

const [url, tcpPortText] = Deno.args;

/** The bits of an xmpp.js element this script reads. */
interface Stanza {
  name: string;
  attrs: Record<string, string>;
  getChildText(name: string): string | null;
}

const web = client({
  service: url,
  domain: "localhost",
  username: "alice",
  password: "alice-secret",
  resource: "web",
});
const tcp = client({
  service: `xmpp://localhost:${tcpPortText}`,
  domain: "localhost",
  username: "bob",
  password: "bob-secret",
  resource: "tcp",
});
for (const c of [web, tcp]) c.on("error", () => {});
const mechanisms: string[] = [];
web.on("send", (el: { name: string; attrs: Record<string, string> }) => {
  if (el.name === "auth" || el.name === "authenticate") mechanisms.push(el.attrs.mechanism);
});

/** The next chat message `c` receives with a body. */
// deno-lint-ignore no-explicit-any
function nextMessage(c: any): Promise<Stanza> {
  return new Promise((resolve) => {
    const listener = (stanza: Stanza) => {
      if (stanza.name !== "message" || stanza.getChildText("body") === null) return;
      c.removeListener("stanza", listener);
      resolve(stanza);
    };
    c.on("stanza", listener);
  });
}

try {
  const jid = await web.start();
  const pong = await web.iqCaller.request(
    xml("iq", { type: "get", to: "localhost" }, xml("ping", { xmlns: "urn:xmpp:ping" })),
  );
  await tcp.start();
  await web.send(xml("presence"));
  await tcp.send(xml("presence"));
  const atTcp = nextMessage(tcp);
  await web.send(xml("message", { to: "bob@localhost", type: "chat" }, xml("body", {}, "to tcp")));
  const fromWeb = await atTcp;
  const atWeb = nextMessage(web);
  await tcp.send(
    xml("message", { to: jid.toString(), type: "chat" }, xml("body", {}, "to web")),
  );
  const fromTcp = await atWeb;
  console.log(JSON.stringify({
    jid: jid.toString(),
    mechanisms,
    pingType: pong.attrs.type,
    tcpGot: { from: fromWeb.attrs.from, body: fromWeb.getChildText("body") },
    webGot: { from: fromTcp.attrs.from, body: fromTcp.getChildText("body") },
  }));
  await Promise.all([web.stop(), tcp.stop()]);
} catch (error) {
  console.log(JSON.stringify({ error: String(error) }));
  await Promise.all([web.stop().catch(() => {}), tcp.stop().catch(() => {})]);
}
Deno.exit(0);
