// XEP-0156 discovery over HTTP: `/.well-known/host-meta` (XRD) and `host-meta.json` tell web
// clients where this host's RFC 7395 WebSocket and XEP-0206 BOSH endpoints are.

import { escapeAttr } from "../xml/serializer.ts";
import { hostFromHeader, type HttpHandler, type HttpRequestInfo } from "./routes.ts";
import { WEBSOCKET_PATH } from "./websocket_route.ts";
import { BOSH_PATH } from "./bosh_route.ts";

/** The XEP-0156 link relation of a WebSocket endpoint. */
export const REL_WEBSOCKET = "urn:xmpp:alt-connections:websocket";
/** The XEP-0156 link relation of a BOSH endpoint. */
export const REL_BOSH = "urn:xmpp:alt-connections:xbosh";

/**
 * The WebSocket URL to advertise: from `externalUrl` (http -> ws, https -> wss, its path kept
 * as a prefix) when set, else from the address the request came to (its Host header).
 */
export function websocketUrl(externalUrl: string, request: Request, info: HttpRequestInfo): string {
  if (externalUrl !== "") {
    const base = new URL(externalUrl);
    const scheme = base.protocol === "https:" ? "wss:" : "ws:";
    const prefix = base.pathname.replace(/\/+$/, "");
    return `${scheme}//${base.host}${prefix}${WEBSOCKET_PATH}`;
  }
  // The name the client reached us by (a served host, or an address the default host answers
  // for); its port only when it names one.
  const header = request.headers.get("host") ?? "";
  const port = /:(\d{1,5})$/.exec(header)?.[1];
  const name = hostFromHeader(header) ?? info.host;
  const host = name.includes(":") ? `[${name}]` : name;
  return `${info.https ? "wss" : "ws"}://${host}${port ? `:${port}` : ""}${WEBSOCKET_PATH}`;
}

/**
 * The BOSH URL to advertise: like {@link websocketUrl}, with the http or https scheme kept.
 */
export function boshUrl(externalUrl: string, request: Request, info: HttpRequestInfo): string {
  const ws = new URL(websocketUrl(externalUrl, request, info));
  const scheme = ws.protocol === "wss:" ? "https:" : "http:";
  const prefix = ws.pathname.slice(0, -WEBSOCKET_PATH.length);
  return `${scheme}//${ws.host}${prefix}${BOSH_PATH}`;
}

/** The two host-meta handlers, reading the external URL at each request (it reloads live). */
export function hostMetaHandlers(
  externalUrl: () => string,
): { xrd: HttpHandler; json: HttpHandler } {
  // XEP-0156 §3.2: web clients on other origins must be able to read these documents.
  const headers = (type: string) => ({ "content-type": type, "access-control-allow-origin": "*" });
  return {
    xrd: (request, info) => {
      const href = websocketUrl(externalUrl(), request, info);
      const bosh = boshUrl(externalUrl(), request, info);
      const body = "<?xml version='1.0' encoding='utf-8'?>\n" +
        "<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n" +
        `  <Link rel='${REL_WEBSOCKET}' href='${escapeAttr(href)}'/>\n` +
        `  <Link rel='${REL_BOSH}' href='${escapeAttr(bosh)}'/>\n` +
        "</XRD>\n";
      return new Response(body, { headers: headers("application/xrd+xml; charset=utf-8") });
    },
    json: (request, info) => {
      const href = websocketUrl(externalUrl(), request, info);
      const bosh = boshUrl(externalUrl(), request, info);
      const links = [{ rel: REL_WEBSOCKET, href }, { rel: REL_BOSH, href: bosh }];
      const body = JSON.stringify({ links }) + "\n";
      return new Response(body, { headers: headers("application/json") });
    },
  };
}
