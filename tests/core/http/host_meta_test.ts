// XEP-0156 over real sockets: host-meta (XRD) and host-meta.json name the WebSocket and BOSH
// endpoints, from http_external_url when set, else from the address the request came to.

import assert from "node:assert/strict";
import { parseElement } from "../../../core/xml/parser.ts";
import { rawRequest } from "../../helpers/http_request.ts";
import { startTestServer } from "../../helpers/test_server.ts";

const REL = "urn:xmpp:alt-connections:websocket";
const REL_BOSH = "urn:xmpp:alt-connections:xbosh";

Deno.test("host-meta and host-meta.json advertise the WebSocket and BOSH URLs of the request's address", async () => {
  const t = await startTestServer({ globalToml: 'http_interfaces = ["127.0.0.1:0"]' });
  try {
    const base = `http://127.0.0.1:${t.server.port("http")}`;
    const host = `localhost:${t.server.port("http")}`;
    const xrd = await rawRequest(`${base}/.well-known/host-meta`, host);
    assert.equal(xrd.status, 200);
    assert.match(xrd.headers, /access-control-allow-origin: \*/);
    const link = parseElement(xrd.body.replace(/^<\?xml[^>]*\?>/, "")).getChild("Link")!;
    assert.equal(link.attrs.rel, REL);
    assert.equal(link.attrs.href, `ws://${host}/xmpp-websocket`);
    const links = parseElement(xrd.body.replace(/^<\?xml[^>]*\?>/, "")).getChildren("Link");
    assert.deepEqual(links.map((l) => l.attrs), [
      { rel: REL, href: `ws://${host}/xmpp-websocket` },
      { rel: REL_BOSH, href: `http://${host}/http-bind` },
    ]);
    const json = await rawRequest(`${base}/.well-known/host-meta.json`, host);
    assert.equal(json.status, 200);
    assert.deepEqual(JSON.parse(json.body), {
      links: [
        { rel: REL, href: `ws://${host}/xmpp-websocket` },
        { rel: REL_BOSH, href: `http://${host}/http-bind` },
      ],
    });
    // Reached by another name (an address the default host answers for): that name is given.
    const byAddress = await rawRequest(`${base}/.well-known/host-meta.json`, "127.0.0.1:5280");
    assert.equal(JSON.parse(byAddress.body).links[0].href, "ws://127.0.0.1:5280/xmpp-websocket");
    const byIpv6 = await rawRequest(`${base}/.well-known/host-meta.json`, "[::1]:5280");
    assert.equal(JSON.parse(byIpv6.body).links[0].href, "ws://[::1]:5280/xmpp-websocket");
  } finally {
    await t.stop();
  }
});

Deno.test("http_external_url sets the advertised scheme, host and path prefix", async () => {
  const t = await startTestServer({
    globalToml: 'http_interfaces = ["127.0.0.1:0"]\n' +
      'http_external_url = "https://chat.example.org/xmpp/"',
  });
  try {
    const base = `http://127.0.0.1:${t.server.port("http")}`;
    const json = await rawRequest(`${base}/.well-known/host-meta.json`, "localhost");
    assert.deepEqual(JSON.parse(json.body).links, [
      { rel: REL, href: "wss://chat.example.org/xmpp/xmpp-websocket" },
      { rel: REL_BOSH, href: "https://chat.example.org/xmpp/http-bind" },
    ]);
  } finally {
    await t.stop();
  }
});

Deno.test("an http_external_url that is not an http(s) URL is a config error", async () => {
  await assert.rejects(
    startTestServer({ globalToml: 'http_external_url = "ftp://example.org"' }),
    /invalid URL 'ftp:\/\/example\.org'/,
  );
});
