// The xmpp.js side of the RFC 7395 test: xmpp.js with its default settings connects with a
// ws:// URL (its @xmpp/websocket transport), logs in, pings the server and closes. Run as a
// child process by websocket_clients_test.ts. Prints one JSON line.
//
// Usage: deno run -A xmppjs_ws_client.ts HTTP_PORT

import { client, xml } from "@xmpp/client";

const [portText] = Deno.args;
const xmpp = client({
  service: `ws://localhost:${portText}/xmpp-websocket`,
  domain: "localhost",
  username: "alice",
  password: "alice-secret",
  resource: "web",
});
xmpp.on("error", () => {});
const mechanisms: string[] = [];
xmpp.on("send", (el: { name: string; attrs: Record<string, string> }) => {
  if (el.name === "auth" || el.name === "authenticate") mechanisms.push(el.attrs.mechanism);
});

try {
  const jid = await xmpp.start();
  const pong = await xmpp.iqCaller.request(
    xml("iq", { type: "get", to: "localhost" }, xml("ping", { xmlns: "urn:xmpp:ping" })),
  );
  console.log(JSON.stringify({ jid: jid.toString(), mechanisms, pingType: pong.attrs.type }));
  await xmpp.stop();
} catch (error) {
  console.log(JSON.stringify({ error: String(error) }));
  await xmpp.stop().catch(() => {});
}
Deno.exit(0);
