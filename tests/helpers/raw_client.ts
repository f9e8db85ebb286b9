// A wire-level XMPP client for tests: sends raw XML, parses what the server sends with our
// own stream parser, and can do STARTTLS and PLAIN login so tests assert on exact stanzas.

import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import type { Element } from "../../core/xml/element.ts";
import { StreamParser } from "../../core/xml/parser.ts";
import { type DowngradeCheck, ScramClient, ScramDowngradeError } from "./scram_client.ts";

/** Namespace of stream-level elements. */
export const NS_STREAM = "http://etherx.jabber.org/streams";

/** The stanza error condition of an error stanza (e.g. "service-unavailable"), if any. */
export { errorCondition as conditionOf } from "../../core/xml/stanza.ts";

/** A ping round trip: everything the server did for this client's earlier stanzas is done. */
export async function roundTrip(client: RawClient): Promise<void> {
  const id = `ping-${crypto.randomUUID()}`;
  client.send(`<iq type='get' id='${id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
  await client.next((el) => el.attrs.id === id);
}

/** How `open` and `starttls` open a stream. */
export interface OpenOptions {
  /** The content namespace; "jabber:server" also declares the dialback prefix. */
  ns?: string;
  /** A 'from' attribute (servers name themselves). */
  from?: string;
}

/** A client certificate for `starttls` (a server presenting itself for SASL EXTERNAL). */
export interface ClientCertificate {
  /** PEM certificate (chain). */
  cert: string;
  /** PEM private key. */
  key: string;
}

/** Options for `RawClient.connect`. */
export interface RawClientOptions {
  /** Connect with direct TLS (XEP-0368). */
  tls?: boolean;
  servername?: string;
  /** The own address of a STARTTLS client's socket (on Linux any of 127/8 reaches the server). */
  localAddress?: string;
}

/** A test client speaking raw XML over a real socket. */
export class RawClient {
  socket: Socket | TLSSocket;
  /** Every element received, in order (stanzas and stream-level elements). */
  received: Element[] = [];
  /** Raw text received (for asserting exact bytes). */
  text = "";
  headers: Element[] = [];
  closedByServer = false;
  ended = false;
  #parser: StreamParser;
  #waiters: (() => void)[] = [];
  #taken = new Set<number>();
  #firstUntaken = 0;

  private constructor(socket: Socket | TLSSocket) {
    this.socket = socket;
    this.#parser = new StreamParser({
      streamOpen: (header) => {
        this.headers.push(header);
        this.#wake();
      },
      stanza: (el) => {
        this.received.push(el);
        this.#wake();
      },
      streamClose: () => {
        this.closedByServer = true;
        this.#wake();
      },
      error: () => {},
    }, { maxStanzaBytes: 10_000_000 });
    this.#attach(socket);
  }

  #attach(socket: Socket | TLSSocket): void {
    socket.on("data", (chunk: Uint8Array) => {
      this.text += new TextDecoder().decode(chunk);
      this.#parser.feed(chunk);
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      this.ended = true;
      this.#wake();
    });
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  /** Connects to 127.0.0.1:port. */
  static connect(port: number, options: RawClientOptions = {}): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      if (options.tls) {
        const socket = tlsConnect({
          host: "127.0.0.1",
          port,
          servername: options.servername ?? "localhost",
          rejectUnauthorized: false,
          ALPNProtocols: ["xmpp-client"],
        }, () => resolve(new RawClient(socket)));
        socket.once("error", reject);
      } else {
        const socket = netConnect(
          { host: "127.0.0.1", port, localAddress: options.localAddress },
          () => resolve(new RawClient(socket)),
        );
        socket.once("error", reject);
      }
    });
  }

  /** Sends raw text. */
  send(text: string | Uint8Array): void {
    this.socket.write(text);
  }

  /** Waits until `check` returns a value (re-checked on every received element). */
  async waitUntil<T>(check: () => T | undefined, timeoutMs = 5000, what = "condition"): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const value = check();
      if (value !== undefined) return value;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `Timed out waiting for ${what}; received so far: ${this.text.slice(-2000)}`,
        );
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /**
   * Returns the first received element matching `match` that no earlier `next` call
   * returned (elements skipped over stay available to later calls).
   */
  next(match: (el: Element) => boolean = () => true, timeoutMs = 5000): Promise<Element> {
    return this.waitUntil(
      () => {
        for (let i = this.#firstUntaken; i < this.received.length; i++) {
          if (this.#taken.has(i) || !match(this.received[i])) continue;
          this.#taken.add(i);
          while (this.#taken.has(this.#firstUntaken)) this.#firstUntaken++;
          return this.received[i];
        }
        return undefined;
      },
      timeoutMs,
      "a matching element",
    );
  }

  /** Waits for the server to close the stream or the connection. */
  waitClosed(timeoutMs = 5000): Promise<true> {
    return this.waitUntil(
      () => (this.closedByServer || this.ended) ? true : undefined,
      timeoutMs,
      "close",
    );
  }

  /** Sends a stream header and returns the features that follow. */
  async open(to = "localhost", options: OpenOptions = {}): Promise<Element> {
    const headers = this.headers.length;
    const ns = options.ns ?? "jabber:client";
    const db = ns === "jabber:server" ? ` xmlns:db='jabber:server:dialback'` : "";
    const from = options.from ? ` from='${options.from}'` : "";
    this.send(
      `<?xml version='1.0'?><stream:stream to='${to}'${from} version='1.0' xmlns='${ns}' ` +
        `xmlns:stream='${NS_STREAM}'${db}>`,
    );
    await this.waitUntil(() => this.headers.length > headers ? true : undefined, 5000, "header");
    return await this.next((el) => el.name === "features" && el.ns === NS_STREAM);
  }

  /** Performs STARTTLS on the current stream and opens a new stream; returns its features. */
  async starttls(
    to = "localhost",
    options: OpenOptions & { certificate?: ClientCertificate } = {},
  ): Promise<Element> {
    this.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    await this.next((el) => el.name === "proceed");
    const raw = this.socket as Socket;
    raw.removeAllListeners("data");
    raw.removeAllListeners("close");
    const secure = await new Promise<TLSSocket>((resolve, reject) => {
      const s = tlsConnect(
        {
          socket: raw,
          servername: to,
          rejectUnauthorized: false,
          cert: options.certificate?.cert,
          key: options.certificate?.key,
        },
        () => resolve(s),
      );
      s.once("error", reject);
    });
    this.socket = secure;
    this.#parser.reset();
    this.#attach(secure);
    return await this.open(to, options);
  }

  /** Expects a new stream from the server (after SASL success). */
  restart(): void {
    this.#parser.reset();
  }

  /** SASL PLAIN login, new stream, resource bind; returns the bound full JID. */
  async loginPlain(
    user: string,
    password: string,
    resource = "test",
    domain = "localhost",
  ): Promise<string> {
    const token = btoa(`\0${user}\0${password}`);
    this.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${token}</auth>`);
    const outcome = await this.next((el) => el.name === "success" || el.name === "failure");
    if (outcome.name !== "success") throw new Error("PLAIN login failed");
    this.#parser.reset();
    await this.open(domain);
    this.send(
      `<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>` +
        `<resource>${resource}</resource></bind></iq>`,
    );
    const bound = await this.next((el) => el.name === "iq" && el.attrs.id === "bind1");
    return bound.getChild("bind")!.getChildText("jid")!;
  }

  /** The mechanisms and XEP-0440 channel-binding types of the last stream features received. */
  advertisedSasl(): { mechanisms: string[]; channelBindings?: string[] } {
    const features = this.received.findLast((el) => el.name === "features" && el.ns === NS_STREAM);
    const mechanisms = features?.getChild("mechanisms", "urn:ietf:params:xml:ns:xmpp-sasl")
      ?.getChildren("mechanism").map((el) => el.text()) ?? [];
    const cb = features?.getChild("sasl-channel-binding", "urn:xmpp:sasl-cb:0");
    if (cb === undefined) return { mechanisms };
    return {
      mechanisms,
      channelBindings: cb.getChildren("channel-binding").map((el) => el.attrs.type ?? ""),
    };
  }

  /**
   * SCRAM login (optionally -PLUS with tls-server-end-point computed from the certificate
   * the server presented, or with another GS2 header such as "y,,"); resolves with the
   * outcome element, whether the server signature verified and what came of XEP-0474's hash
   * checked against the last features received. When that hash differs the client aborts,
   * as the XEP requires, and the outcome is the server's answer to `<abort/>`. Does not
   * restart the stream.
   */
  async scram(
    user: string,
    password: string,
    options: { hash?: "SHA-1" | "SHA-256"; plus?: boolean; cbData?: Uint8Array; gs2?: string } = {},
  ): Promise<{ outcome: Element; verified: boolean; downgradeCheck: DowngradeCheck }> {
    const hash = options.hash ?? "SHA-256";
    let cbData = options.cbData;
    if (options.plus && !cbData) {
      const der = (this.socket as TLSSocket).getPeerCertificate().raw;
      cbData = new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(der)));
    }
    const client = new ScramClient({
      hash,
      username: user,
      password,
      gs2: options.gs2 ?? (options.plus ? "p=tls-server-end-point,," : "n,,"),
      cbData,
      advertised: this.advertisedSasl(),
    });
    const mechanism = `SCRAM-${hash}${options.plus ? "-PLUS" : ""}`;
    const b64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes));
    this.send(
      `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='${mechanism}'>${
        b64(client.first())
      }</auth>`,
    );
    let step = await this.next((el) => ["challenge", "success", "failure"].includes(el.name));
    if (step.name === "challenge") {
      let final: Uint8Array | undefined;
      try {
        final = await client.final(atob(step.text()));
      } catch (error) {
        if (!(error instanceof ScramDowngradeError)) throw error;
      }
      this.send(
        final === undefined
          ? "<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
          : `<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>${b64(final)}</response>`,
      );
      step = await this.next((el) => el.name === "success" || el.name === "failure");
    }
    const verified = step.name === "success" && client.verify(atob(step.text()));
    return { outcome: step, verified, downgradeCheck: client.downgradeCheck ?? "absent" };
  }

  /** Connects, STARTTLS, PLAIN login and bind in one go. */
  static async login(
    port: number,
    user: string,
    password: string,
    resource = "test",
    domain = "localhost",
  ) {
    const client = await RawClient.connect(port);
    await client.open(domain);
    await client.starttls(domain);
    const jid = await client.loginPlain(user, password, resource, domain);
    return { client, jid };
  }

  /** Closes the stream politely and the socket. */
  close(): void {
    try {
      this.socket.write("</stream:stream>");
    } catch {
      // already closed
    }
    this.socket.end();
    this.socket.destroy();
  }
}
