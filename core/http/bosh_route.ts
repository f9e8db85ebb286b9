// The XEP-0206 endpoint: `POST /http-bind` carries BOSH `<body/>` wrappers. A body without a
// `sid` creates a session (a BoshTransport handed to the same C2SSession as TCP streams); the
// others go to their session by sid. OPTIONS answers CORS preflights for web clients, GET a
// short page saying what the URL is for.

import { getLogger } from "../log.ts";
import { type C2SDeps, C2SSession } from "../net/c2s.ts";
import { NO_RECEIVER } from "../net/transport.ts";
import { BoshTransport, NS_HTTPBIND, validRid, xboshAttr } from "../net/bosh_transport.ts";
import { DEFAULT_XML_LIMITS, parseElement, XmlStreamError } from "../xml/parser.ts";
import type { Element } from "../xml/element.ts";
import type { StreamErrorCondition } from "../xml/stanza.ts";
import type { HttpHandler } from "./routes.ts";

const log = getLogger("http");

/** The path clients find through XEP-0156 and post to. */
export const BOSH_PATH = "/http-bind";

/** Bytes a request body may carry beyond one stanza of the largest allowed size. */
const BODY_OVERHEAD_BYTES = 16384;

/** The live BOSH sessions of a server, by sid (shared by every host's route). */
export class BoshSessions {
  #bySid = new Map<string, BoshTransport>();

  /** The session with this sid, if it is still live. */
  get(sid: string): BoshTransport | undefined {
    return this.#bySid.get(sid);
  }

  /** Registers a new session. */
  add(transport: BoshTransport): void {
    this.#bySid.set(transport.sid, transport);
  }

  /** Forgets a session (it ended). */
  delete(sid: string): void {
    this.#bySid.delete(sid);
  }

  /** How many sessions are live. */
  get size(): number {
    return this.#bySid.size;
  }

  /**
   * Ends every session's stream with a stream error (server shutdown): the requests they hold
   * get the terminate body, and the sessions are gone.
   */
  closeAll(condition: StreamErrorCondition, text?: string): void {
    for (const transport of [...this.#bySid.values()]) {
      transport.close(condition, text);
      transport.destroy();
    }
  }

  /** Ends every session at once (server shutdown), answering the requests they hold. */
  destroyAll(): void {
    for (const transport of [...this.#bySid.values()]) transport.destroy();
    this.#bySid.clear();
  }
}

/** The handlers of the BOSH path: POST (the protocol), OPTIONS (CORS preflight) and GET. */
export interface BoshHandlers {
  post: HttpHandler;
  options: HttpHandler;
  get: HttpHandler;
  /** The body size limit of the POST route (one full-size stanza and its wrapper). */
  maxBodyBytes: () => number;
}

/** Builds the BOSH handlers of one host; `sessions` is the server-wide registry. */
export function boshHandlers(deps: C2SDeps, sessions: BoshSessions): BoshHandlers {
  const config = deps.server.config;

  /** CORS headers for a request's Origin; undefined when that origin is not allowed. */
  function cors(request: Request): Record<string, string> | undefined {
    const origins = config.get<string[]>("bosh_origins");
    const origin = request.headers.get("origin");
    const headers = {
      "access-control-allow-methods": "GET, POST, OPTIONS",
      "access-control-allow-headers": "Content-Type",
      "access-control-max-age": "86400",
    };
    if (origins.length === 0) return { ...headers, "access-control-allow-origin": "*" };
    if (origin === null) return headers;
    if (!origins.includes(origin)) return undefined;
    return { ...headers, "access-control-allow-origin": origin, vary: "Origin" };
  }

  function refused(request: Request, ip: string): Response {
    const origin = request.headers.get("origin");
    log.info("BOSH request from {ip} refused: origin {origin} is not allowed", { ip, origin });
    return new Response(`Origin '${origin}' is not allowed\n`, {
      status: 403,
      headers: { "content-type": "text/plain" },
    });
  }

  return {
    maxBodyBytes: () =>
      Math.max(
        config.get<number>("http_max_body_size"),
        config.hostDefault<number>("c2s_stanza_size_limit") + BODY_OVERHEAD_BYTES,
      ),

    options(request, info) {
      const headers = cors(request);
      if (!headers) return refused(request, info.ip);
      return new Response(null, { status: 204, headers });
    },

    get(request, info) {
      const headers = cors(request);
      if (!headers) return refused(request, info.ip);
      return new Response(
        "This is an XMPP over BOSH endpoint (XEP-0206): point a BOSH client at this URL.\n",
        { headers: { ...headers, "content-type": "text/plain; charset=utf-8" } },
      );
    },

    async post(request, info) {
      const headers = cors(request);
      if (!headers) return refused(request, info.ip);
      const reply = (status: number, body: string) =>
        new Response(body, {
          status,
          headers: { ...headers, "content-type": "text/xml; charset=utf-8" },
        });
      const text = await request.text();
      let body: Element;
      try {
        body = parseElement(text, {
          maxStanzaBytes: Number.MAX_SAFE_INTEGER,
          // The body wrapper is one level above the stanzas it carries.
          maxDepth: DEFAULT_XML_LIMITS.maxDepth + 1,
        });
      } catch (error) {
        if (!(error instanceof XmlStreamError)) throw error;
        log.debug("Malformed BOSH body from {ip}: {message}", {
          ip: info.ip,
          message: error.message,
        });
        return reply(400, terminateBody("bad-request"));
      }
      if (body.name !== "body" || body.ns !== NS_HTTPBIND) {
        return reply(400, terminateBody("bad-request"));
      }
      if (!validRid(body.attrs.rid)) return reply(400, terminateBody("bad-request"));
      const sid = body.attrs.sid;
      if (sid !== undefined) {
        const session = sessions.get(sid);
        // XEP-0124 §17.2: a terminal condition comes as a terminate body with 200 (the 404 of
        // §17.1 is for legacy clients, which an unknown sid gives no way to tell apart).
        if (!session) return reply(200, terminateBody("item-not-found"));
        if (session.secure && !info.secure) {
          // XEP-0124 (security): a secure session's requests all come encrypted. The session
          // itself stays, or anyone could end it with a plain request.
          return new Response("This BOSH session must be used over HTTPS\n", {
            status: 403,
            headers: { ...headers, "content-type": "text/plain" },
          });
        }
        const response = await session.request(body);
        return reply(response.status, response.body);
      }
      return await create(body, info.ip, info.secure, reply);
    },
  };

  /** A session creation request: the session parameters are negotiated and the stream opens. */
  async function create(
    body: Element,
    ip: string,
    secure: boolean,
    reply: (status: number, body: string) => Response,
  ): Promise<Response> {
    const legacy = body.attrs.ver === undefined;
    const wait = optionalCount(body.attrs.wait);
    const hold = optionalCount(body.attrs.hold);
    if (wait === null || hold === null) {
      return reply(legacy ? 400 : 200, terminateBody("bad-request"));
    }
    if (!body.attrs.to) return reply(200, terminateBody("improper-addressing"));
    const maxWait = config.get<number>("bosh_max_wait");
    const transport: BoshTransport = new BoshTransport(NO_RECEIVER, Number(body.attrs.rid), {
      sid: crypto.randomUUID(),
      ip,
      secure,
      wait: Math.min(wait ?? maxWait, maxWait),
      hold: hold === 0 ? 0 : 1,
      inactivity: config.get<number>("bosh_max_inactivity"),
      polling: config.get<number>("bosh_max_polling"),
      legacy,
      maxStanzaBytes: config.hostDefault("c2s_stanza_size_limit"),
      onEnd: () => sessions.delete(transport.sid),
    });
    sessions.add(transport);
    new C2SSession(transport, deps);
    log.debug("BOSH session {sid} from {ip} for {to} (xmpp:version {version})", {
      sid: transport.sid,
      ip,
      to: body.attrs.to,
      version: xboshAttr(body, "version") ?? "-",
    });
    const response = await transport.create(body);
    return reply(response.status, response.body);
  }
}

/** A `type='terminate'` body with a binding condition. */
function terminateBody(condition: string): string {
  return `<body xmlns='${NS_HTTPBIND}' type='terminate' condition='${condition}'/>`;
}

/** A non-negative integer attribute: undefined when absent, null when not a number. */
function optionalCount(value: string | undefined): number | undefined | null {
  if (value === undefined) return undefined;
  if (!/^\d{1,9}$/.test(value)) return null;
  return Number(value);
}
