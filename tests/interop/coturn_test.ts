// XEP-0215 credentials against a real Debian coturn started by the test with use-auth-secret: a
// TURN Allocate (RFC 5766) with the username and password Lilt hands out succeeds, the same with
// a wrong secret or with an expired username is refused, so calls through coturn work.

import assert from "node:assert/strict";
import { createHash, createHmac, randomBytes } from "node:crypto";
import { createSocket, type Socket } from "node:dgram";
import { NS_EXTDISCO, turnCredentials } from "../../mod/external_services.ts";
import { RawClient } from "../helpers/raw_client.ts";
import { freePorts, supervise } from "../helpers/supervised_process.ts";
import { startTestServer } from "../helpers/test_server.ts";

const TURNSERVER = "/usr/bin/turnserver";
const SECRET = "interop-static-auth-secret";
const REALM = "lilt.test";

const MAGIC_COOKIE = 0x2112a442;
const ALLOCATE_REQUEST = 0x0003;
const ALLOCATE_SUCCESS = 0x0103;
const ALLOCATE_ERROR = 0x0113;
const ATTR = {
  username: 0x0006,
  messageIntegrity: 0x0008,
  errorCode: 0x0009,
  realm: 0x0014,
  nonce: 0x0015,
  requestedTransport: 0x0019,
  xorRelayedAddress: 0x0016,
};

/** A STUN message's type and attributes (type -> value). */
interface StunMessage {
  type: number;
  transactionId: Uint8Array;
  attributes: Map<number, Uint8Array>;
}

function attribute(type: number, value: Uint8Array): Uint8Array {
  const padded = new Uint8Array(4 + Math.ceil(value.length / 4) * 4);
  const view = new DataView(padded.buffer);
  view.setUint16(0, type);
  view.setUint16(2, value.length);
  padded.set(value, 4);
  return padded;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function header(type: number, length: number, transactionId: Uint8Array): Uint8Array {
  const out = new Uint8Array(20);
  const view = new DataView(out.buffer);
  view.setUint16(0, type);
  view.setUint16(2, length);
  view.setUint32(4, MAGIC_COOKIE);
  out.set(transactionId, 8);
  return out;
}

/**
 * An Allocate request for a UDP relay; with credentials it carries USERNAME, REALM, NONCE and a
 * MESSAGE-INTEGRITY keyed with MD5(username:realm:password) (RFC 5389 §15.4, long-term).
 */
function allocateRequest(
  credentials?: { username: string; password: string; realm: Uint8Array; nonce: Uint8Array },
): { bytes: Uint8Array; transactionId: Uint8Array } {
  const transactionId = new Uint8Array(randomBytes(12));
  const attributes = [attribute(ATTR.requestedTransport, new Uint8Array([17, 0, 0, 0]))];
  if (credentials === undefined) {
    const body = concat(attributes);
    return {
      bytes: concat([header(ALLOCATE_REQUEST, body.length, transactionId), body]),
      transactionId,
    };
  }
  attributes.push(
    attribute(ATTR.username, new TextEncoder().encode(credentials.username)),
    attribute(ATTR.realm, credentials.realm),
    attribute(ATTR.nonce, credentials.nonce),
  );
  const body = concat(attributes);
  // The integrity covers the message with a length that already counts its own attribute.
  const signed = concat([header(ALLOCATE_REQUEST, body.length + 24, transactionId), body]);
  const key = createHash("md5").update(
    `${credentials.username}:${
      new TextDecoder().decode(credentials.realm)
    }:${credentials.password}`,
  ).digest();
  const integrity = new Uint8Array(createHmac("sha1", key).update(signed).digest());
  return {
    bytes: concat([signed, attribute(ATTR.messageIntegrity, integrity)]),
    transactionId,
  };
}

function parseStun(bytes: Uint8Array): StunMessage {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const length = view.getUint16(2);
  assert.equal(view.getUint32(4), MAGIC_COOKIE, "a STUN message");
  const attributes = new Map<number, Uint8Array>();
  for (let at = 20; at + 4 <= 20 + length;) {
    const type = view.getUint16(at);
    const size = view.getUint16(at + 2);
    if (!attributes.has(type)) attributes.set(type, bytes.slice(at + 4, at + 4 + size));
    at += 4 + Math.ceil(size / 4) * 4;
  }
  return { type: view.getUint16(0), transactionId: bytes.slice(8, 20), attributes };
}

function errorCodeOf(message: StunMessage): number | undefined {
  const value = message.attributes.get(ATTR.errorCode);
  return value === undefined ? undefined : value[2] * 100 + value[3];
}

/** Sends a request until its answer arrives (UDP), within `timeoutMs`. */
async function exchange(
  socket: Socket,
  port: number,
  request: { bytes: Uint8Array; transactionId: Uint8Array },
  timeoutMs = 5000,
): Promise<StunMessage> {
  const wanted = Array.from(request.transactionId).join(",");
  return await new Promise<StunMessage>((resolve, reject) => {
    const onMessage = (data: Uint8Array) => {
      const message = parseStun(new Uint8Array(data));
      if (Array.from(message.transactionId).join(",") !== wanted) return;
      done();
      resolve(message);
    };
    const send = () => socket.send(request.bytes, port, "127.0.0.1");
    const resend = setInterval(send, 200);
    const timer = setTimeout(() => {
      done();
      reject(new Error(`No answer from coturn on 127.0.0.1:${port}`));
    }, timeoutMs);
    const done = () => {
      clearInterval(resend);
      clearTimeout(timer);
      socket.off("message", onMessage);
    };
    socket.on("message", onMessage);
    send();
  });
}

/**
 * Allocates a relay with these credentials from a new UDP socket (one allocation per 5-tuple):
 * the final answer, after the 401 that brings the nonce.
 */
async function allocate(port: number, username: string, password: string): Promise<StunMessage> {
  const socket = createSocket("udp4");
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  try {
    const challenge = await exchange(socket, port, allocateRequest());
    assert.equal(challenge.type, ALLOCATE_ERROR);
    assert.equal(errorCodeOf(challenge), 401, "coturn asks for credentials");
    const realm = challenge.attributes.get(ATTR.realm)!;
    const nonce = challenge.attributes.get(ATTR.nonce)!;
    assert.equal(new TextDecoder().decode(realm), REALM);
    return await exchange(socket, port, allocateRequest({ username, password, realm, nonce }));
  } finally {
    socket.close();
  }
}

Deno.test("coturn with use-auth-secret accepts the TURN credentials Lilt hands out", async () => {
  try {
    await Deno.stat(TURNSERVER);
  } catch {
    throw new Error(
      `Debian's coturn is missing (${TURNSERVER}): run scripts/install-test-deps as root ` +
        "(or: sudo apt-get install coturn)",
    );
  }
  const dir = await Deno.makeTempDir({ prefix: "lilt-coturn-" });
  const [port] = freePorts(1);
  const coturn = supervise(
    new Deno.Command(TURNSERVER, {
      args: [
        "-n", // no configuration file: everything is on the command line
        "--listening-ip=127.0.0.1",
        `--listening-port=${port}`,
        "--relay-ip=127.0.0.1",
        "--use-auth-secret",
        `--static-auth-secret=${SECRET}`,
        `--realm=${REALM}`,
        "--no-tls",
        "--no-dtls",
        "--no-cli",
        `--userdb=${dir}/turndb`,
        `--pidfile=${dir}/turnserver.pid`,
        `--log-file=${dir}/turn.log`,
        "--simple-log",
      ],
      stdout: "piped",
      stderr: "piped",
    }).spawn(),
  );
  const lilt = await startTestServer({
    users: { alice: "pw" },
    modules: ["disco", "external_services"],
    globalToml: `external_service_secret = "${SECRET}"
external_services = [{ type = "turn", host = "127.0.0.1", port = ${port}, transport = "udp" }]`,
  });
  try {
    const { client } = await RawClient.login(lilt.port, "alice", "pw");
    client.send(`<iq type='get' id='s' to='localhost'><services xmlns='${NS_EXTDISCO}'/></iq>`);
    const answer = await client.next((el) => el.attrs.id === "s");
    const turn = answer.getChild("services", NS_EXTDISCO)!.getChild("service")!;
    assert.equal(turn.attrs.port, String(port));
    const { username, password } = turn.attrs;

    const granted = await allocate(port, username, password).catch((error) => {
      throw new Error(`${error.message}; coturn printed:\n${coturn.output()}`);
    });
    assert.equal(granted.type, ALLOCATE_SUCCESS, `Allocate refused: ${errorCodeOf(granted)}`);
    assert.ok(granted.attributes.has(ATTR.xorRelayedAddress), "a relayed address");

    // A password made with another secret, and an expired username, are refused by coturn.
    const forged = turnCredentials("another-secret", "alice@localhost", { ttl: 3600 });
    const refused = await allocate(port, forged.username, forged.password);
    assert.equal(refused.type, ALLOCATE_ERROR);
    assert.equal(errorCodeOf(refused), 401);
    const old = turnCredentials(SECRET, "alice@localhost", {
      ttl: 3600,
      now: Date.now() - 7200_000,
    });
    const expired = await allocate(port, old.username, old.password);
    assert.equal(expired.type, ALLOCATE_ERROR);
    assert.equal(errorCodeOf(expired), 401);
    client.close();
  } finally {
    await lilt.stop();
    await coturn.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
