// Drives the real xmpp.js client (npm:@xmpp/client) against a Lilt server; run as a child
// process by clients_test.ts so DENO_CERT can make it trust the test CA. Prints one JSON line.
// "exchange" and "wrong-password" add SCRAM-SHA-256 over STARTTLS; "defaults" changes nothing
// in xmpp.js and connects with the URL scheme given (xmpp: STARTTLS, xmpps: direct TLS).
//
// Usage: deno run -A xmppjs_client.ts PORT exchange|wrong-password
//        deno run -A xmppjs_client.ts PORT defaults xmpp|xmpps

import { client, xml } from "@xmpp/client";

const encoder = new TextEncoder();

function b64(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes));
}

async function hmac(
  key: Uint8Array<ArrayBuffer>,
  data: Uint8Array<ArrayBuffer>,
): Promise<Uint8Array<ArrayBuffer>> {
  const k = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
  ]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", k, data));
}

/**
 * SCRAM-SHA-256 (RFC 7677) for the saslmechanisms factory xmpp.js uses: xmpp.js 0.14 ships
 * only SCRAM-SHA-1, so the test adds this client side implementation and prefers it.
 */
class ScramSha256 {
  name = "SCRAM-SHA-256";
  clientFirst = true;
  #stage = "initial";
  #nonce = "";
  #firstBare = "";
  #serverFirst = "";
  serverSignature = "";

  async response(cred: { username: string; password: string }): Promise<string> {
    if (this.#stage === "initial") {
      this.#nonce = b64(crypto.getRandomValues(new Uint8Array(18)));
      this.#firstBare = `n=${
        cred.username.replace(/=/g, "=3D").replace(/,/g, "=2C")
      },r=${this.#nonce}`;
      this.#stage = "challenge";
      return `n,,${this.#firstBare}`;
    }
    if (this.#stage === "challenge") {
      const attrs = Object.fromEntries(
        this.#serverFirst.split(",").map((p) => [p[0], p.slice(2)]),
      );
      if (!attrs.r?.startsWith(this.#nonce)) throw new Error("Server nonce does not extend ours");
      const salt = Uint8Array.from(atob(attrs.s), (c) => c.charCodeAt(0));
      const base = await crypto.subtle.importKey(
        "raw",
        encoder.encode(cred.password),
        "PBKDF2",
        false,
        [
          "deriveBits",
        ],
      );
      const salted = new Uint8Array(
        await crypto.subtle.deriveBits(
          { name: "PBKDF2", hash: "SHA-256", salt, iterations: Number(attrs.i) },
          base,
          256,
        ),
      );
      const clientKey = await hmac(salted, encoder.encode("Client Key"));
      const storedKey = new Uint8Array(await crypto.subtle.digest("SHA-256", clientKey));
      const withoutProof = `c=${btoa("n,,")},r=${attrs.r}`;
      const authMessage = encoder.encode(`${this.#firstBare},${this.#serverFirst},${withoutProof}`);
      const signature = await hmac(storedKey, authMessage);
      const proof = clientKey.map((b, i) => b ^ signature[i]);
      const serverKey = await hmac(salted, encoder.encode("Server Key"));
      this.serverSignature = b64(await hmac(serverKey, authMessage));
      this.#stage = "final";
      return `${withoutProof},p=${b64(proof)}`;
    }
    return "";
  }

  challenge(chal: string): this {
    if (this.#stage === "challenge") this.#serverFirst = chal;
    return this;
  }
}

function makeClient(port: number, username: string, password: string, resource: string) {
  const xmpp = client({
    service: `xmpp://127.0.0.1:${port}`,
    domain: "localhost",
    username,
    password,
    resource,
  });
  // Prefer SCRAM-SHA-256 over the built-in SCRAM-SHA-1, and record what was negotiated.
  const factory = xmpp.saslFactory as unknown as {
    _mechs: { name: string; mech: unknown }[];
    create(names: string[]): unknown;
  };
  const Mech = function () {
    return new ScramSha256();
  } as unknown as { prototype: { name: string } };
  Mech.prototype.name = "SCRAM-SHA-256";
  factory._mechs.unshift({ name: "SCRAM-SHA-256", mech: Mech });
  const used: string[] = [];
  const create = factory.create.bind(factory);
  factory.create = (names: string[]) => {
    const mech = create(names) as { name: string } | null;
    if (mech) used.push(mech.name);
    return mech;
  };
  xmpp.on("error", () => {});
  return { xmpp, used };
}

async function exchange(port: number): Promise<unknown> {
  const alice = makeClient(port, "alice", "alice-secret", "laptop");
  const bob = makeClient(port, "bob", "bob-secret", "phone");
  const received = new Promise<{ from: string; body: string }>((resolve) => {
    alice.xmpp.on(
      "stanza",
      (
        stanza: {
          is(n: string): boolean;
          attrs: Record<string, string>;
          getChildText(n: string): string;
        },
      ) => {
        if (stanza.is("message") && stanza.getChildText("body")) {
          resolve({ from: stanza.attrs.from, body: stanza.getChildText("body") });
        }
      },
    );
  });
  const aliceJid = await alice.xmpp.start();
  await alice.xmpp.send(xml("presence"));
  const bobJid = await bob.xmpp.start();
  await bob.xmpp.send(xml("presence"));
  await bob.xmpp.send(
    xml("message", { to: "alice@localhost", type: "chat" }, xml("body", {}, "hello from xmpp.js")),
  );
  const timeout = new Promise<never>((_, reject) =>
    setTimeout(() => reject(new Error("no message within 10 s")), 10_000)
  );
  const message = await Promise.race([received, timeout]);
  const ping = await alice.xmpp.iqCaller.request(
    xml("iq", { type: "get", to: "localhost" }, xml("ping", { xmlns: "urn:xmpp:ping" })),
  );
  await alice.xmpp.stop();
  await bob.xmpp.stop();
  return {
    aliceJid: aliceJid.toString(),
    bobJid: bobJid.toString(),
    mechanisms: [...alice.used, ...bob.used],
    message,
    pingType: ping.attrs.type,
    secure: true,
  };
}

async function wrongPassword(port: number): Promise<unknown> {
  const eve = makeClient(port, "alice", "not-the-password", "x");
  try {
    await eve.xmpp.start();
    await eve.xmpp.stop();
    return { condition: "none" };
  } catch (error) {
    await eve.xmpp.stop().catch(() => {});
    return { condition: (error as { condition?: string }).condition ?? String(error) };
  }
}

/** Every SASL failure the server sent, and the mechanisms xmpp.js picked by itself. */
function watchSasl(xmpp: ReturnType<typeof client>) {
  const failures: string[] = [];
  xmpp.on("element", (el: { name: string; attrs: Record<string, string>; toString(): string }) => {
    if (el.name === "failure" && el.attrs.xmlns === "urn:ietf:params:xml:ns:xmpp-sasl") {
      failures.push(el.toString());
    }
  });
  // Records what the factory chose without changing its order or contents.
  const factory = xmpp.saslFactory as unknown as { create(names: string[]): unknown };
  const create = factory.create.bind(factory);
  const used: string[] = [];
  factory.create = (names: string[]) => {
    const mech = create(names) as { name: string } | null;
    if (mech) used.push(mech.name);
    return mech;
  };
  return { failures, used };
}

async function defaults(port: number, scheme: string): Promise<unknown> {
  // Direct TLS checks the certificate against the host of the URL: name it, not the address.
  const service = scheme === "xmpps" ? `xmpps://localhost:${port}` : `xmpp://127.0.0.1:${port}`;
  const logins = [];
  for (const [username, password] of [["alice", "alice-secret"], ["bob", "bob-secret"]]) {
    const xmpp = client({ service, domain: "localhost", username, password, resource: "js" });
    xmpp.on("error", () => {});
    const seen = watchSasl(xmpp);
    const jid = await xmpp.start();
    const secure = (xmpp.socket as unknown as { socket?: { encrypted?: boolean } })?.socket
      ?.encrypted === true;
    await xmpp.stop();
    logins.push({ jid: jid.toString(), mechanisms: seen.used, failures: seen.failures, secure });
  }
  return { logins };
}

const [portText, mode, scheme] = Deno.args;
const port = Number(portText);
const result = mode === "defaults"
  ? await defaults(port, scheme)
  : mode === "wrong-password"
  ? await wrongPassword(port)
  : await exchange(port);
console.log(JSON.stringify(result));
Deno.exit(0);
