// The SASL fuzz target: runs mutated PLAIN and SCRAM exchanges against the server mechanisms
// (core/auth/sasl.ts, scram.ts) over an in-memory account store, and checks that no step throws,
// that every answer is a well-formed step, and that success comes only with the right password
// or a valid SCRAM proof, for the account's own identity.
//
// An input is the mechanism name on its first line, then one client message per line ("<none>"
// for an absent initial response). In messages, {nonce} becomes the nonce of the server's last
// challenge, {cbind} the base64 channel binding the server expects, and {proof} (after ",p=")
// the client proof for the real password, so mutants reach the checks behind them.

import { AccountStore } from "../../core/auth/accounts.ts";
import {
  initialUsername,
  type SaslContext,
  type SaslStep,
  startMechanism,
} from "../../core/auth/sasl.ts";
import { preparePassword } from "../../core/auth/saslprep.ts";
import {
  decodeBase64,
  decodeSaslName,
  encodeBase64,
  encodeSaslName,
  hmac,
  saltPassword,
  type ScramHash,
  utf8,
  xor,
} from "../../core/auth/scram.ts";
import { parseJid, prepLocal } from "../../core/jid.ts";
import { Database } from "../../core/storage/database.ts";
import { FuzzFinding, type FuzzTarget } from "./target.ts";

const HOST = "example.com";
const USER = "juliet";
const PASSWORD = "r0m30";
const CB_DATA = new Uint8Array(32).fill(7);

let ctx: SaslContext | undefined;
const saltedPasswords = new Map<string, Uint8Array>();

async function context(): Promise<SaslContext> {
  if (ctx !== undefined) return ctx;
  const database = Database.open({ path: ":memory:" });
  const accounts = new AccountStore(database, { iterations: 4096 });
  await accounts.create(HOST, USER, PASSWORD);
  ctx = {
    host: HOST,
    secure: true,
    allowPlainInsecure: false,
    accounts,
    channelBinding: { type: "tls-server-end-point", data: CB_DATA },
    rejectChannelBindingDowngrade: true,
    prepUsername(raw) {
      try {
        return prepLocal(raw);
      } catch {
        return undefined;
      }
    },
  };
  return ctx;
}

/** SaltedPassword for the real password with the salt and count a server-first named. */
async function saltedPassword(hash: ScramHash, salt: string, iterations: number) {
  const key = `${hash} ${salt} ${iterations}`;
  let salted = saltedPasswords.get(key);
  if (salted === undefined) {
    const saltBytes = decodeBase64(salt);
    if (saltBytes === undefined || iterations < 1 || iterations > 100_000) return undefined;
    salted = await saltPassword(PASSWORD, { hash, salt: saltBytes, iterations });
    if (saltedPasswords.size < 64) saltedPasswords.set(key, salted);
  }
  return salted;
}

function field(message: string, name: string): string | undefined {
  return message.split(",").find((f) => f.startsWith(`${name}=`))?.slice(name.length + 1);
}

/** The client proof for the real password, or undefined when the exchange cannot have one. */
async function expectedProof(
  hash: ScramHash,
  clientFirst: string,
  serverFirst: string,
  withoutProof: string,
): Promise<Uint8Array | undefined> {
  const salt = field(serverFirst, "s");
  const iterations = Number(field(serverFirst, "i"));
  if (salt === undefined || !Number.isInteger(iterations)) return undefined;
  const salted = await saltedPassword(hash, salt, iterations);
  if (salted === undefined) return undefined;
  const headerEnd = clientFirst.indexOf(",", clientFirst.indexOf(",") + 1);
  const bare = clientFirst.slice(headerEnd + 1);
  const clientKey = hmac(hash, salted, utf8("Client Key"));
  const storedKey = new Uint8Array(await crypto.subtle.digest(hash, clientKey));
  const signature = hmac(hash, storedKey, utf8(`${bare},${serverFirst},${withoutProof}`));
  return xor(clientKey, signature);
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

function checkStep(step: SaslStep): void {
  const ok = step.kind === "challenge"
    ? step.data instanceof Uint8Array
    : step.kind === "success"
    ? typeof step.username === "string"
    : step.kind === "failure" && typeof step.condition === "string" &&
      typeof step.reason === "string";
  if (!ok) throw new FuzzFinding("bad-step", `malformed step ${JSON.stringify(step)}`);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Throws unless an authzid names the account itself. */
function checkAuthzid(authzid: string, what: string): void {
  if (authzid === "") return;
  let bare: string | undefined;
  try {
    bare = parseJid(authzid).bareString();
  } catch {
    bare = undefined;
  }
  if (bare !== `${USER}@${HOST}` || authzid.includes("/")) {
    throw new FuzzFinding(
      "auth-bypass",
      `${what} succeeded with authzid ${JSON.stringify(authzid)}`,
    );
  }
}

/** The SASL target. */
export const saslTarget: FuzzTarget = {
  name: "sasl",
  maxLength: 2048,
  dictionary: [
    "\n",
    ",",
    "=",
    "n,,",
    "y,,",
    "p=tls-server-end-point,,",
    "p=tls-exporter,,",
    "p=",
    "a=",
    "n=",
    "r=",
    "c=",
    "p=",
    "m=",
    "x=",
    "=2C",
    "=3D",
    "=",
    "==",
    "\0",
    "{nonce}",
    "{cbind}",
    "{proof}",
    "juliet",
    "juliet@example.com",
    "JULIET@EXAMPLE.COM.",
    "romeo@example.com",
    "juliet@example.com/balcony",
    "r0m30",
    "<none>",
    "SCRAM-SHA-1",
    "SCRAM-SHA-256",
    "SCRAM-SHA-256-PLUS",
    "PLAIN",
    "biws",
    "AAAA",
  ],
  async check(input: string): Promise<string> {
    const lines = input.split("\n");
    const mechanismName = lines[0];
    const sasl = await context();
    const messages = lines.slice(1, 6);
    let mechanism;
    try {
      mechanism = startMechanism(mechanismName, sasl);
    } catch (error) {
      throw new FuzzFinding("exception", `startMechanism threw ${describe(error)}`);
    }
    if (mechanism === undefined) return "unknown mechanism";
    const hash: ScramHash = mechanismName.startsWith("SCRAM-SHA-256") ? "SHA-256" : "SHA-1";
    let clientFirst = "";
    let lastChallenge = "";
    const outcomes: string[] = [];
    for (let i = 0; i < messages.length; i++) {
      let message = messages[i];
      const nonce = field(lastChallenge, "r") ?? "";
      message = message.replaceAll("{nonce}", nonce);
      if (message.includes("{cbind}")) {
        const header = utf8(
          clientFirst.slice(0, clientFirst.indexOf(",", clientFirst.indexOf(",") + 1) + 1),
        );
        const cb = new Uint8Array(
          header.length + (mechanismName.endsWith("-PLUS") ? CB_DATA.length : 0),
        );
        cb.set(header);
        if (mechanismName.endsWith("-PLUS")) cb.set(CB_DATA, header.length);
        message = message.replaceAll("{cbind}", encodeBase64(cb));
      }
      const proofAt = message.lastIndexOf(",p=");
      if (message.includes("{proof}") && proofAt >= 0) {
        const proof = await expectedProof(
          hash,
          clientFirst,
          lastChallenge,
          message.slice(0, proofAt),
        );
        message = message.replaceAll("{proof}", proof ? encodeBase64(proof) : "");
      }
      const bytes = message === "<none>" ? undefined : utf8(message);
      if (i === 0) {
        clientFirst = message;
        try {
          initialUsername(mechanismName, bytes);
        } catch (error) {
          throw new FuzzFinding("exception", `initialUsername threw ${describe(error)}`);
        }
      }
      let step: SaslStep;
      try {
        step = await mechanism.step(bytes);
      } catch (error) {
        throw new FuzzFinding("exception", `step ${i + 1} threw ${describe(error)}`);
      }
      checkStep(step);
      if (step.kind === "challenge") {
        lastChallenge = new TextDecoder().decode(step.data);
        outcomes.push("challenge");
        continue;
      }
      if (step.kind === "failure") {
        outcomes.push(step.reason);
        break;
      }
      // Success: only for the account itself, with its password or a valid proof.
      if (step.username !== USER) {
        throw new FuzzFinding("auth-bypass", `success for ${JSON.stringify(step.username)}`);
      }
      if (mechanismName === "PLAIN") {
        const [authzid, , password] = (message ?? "").split("\0");
        let prepared: string | undefined;
        try {
          prepared = preparePassword(password ?? "");
        } catch {
          prepared = undefined;
        }
        if (prepared !== PASSWORD) {
          throw new FuzzFinding(
            "auth-bypass",
            `PLAIN succeeded with password ${JSON.stringify(password)}`,
          );
        }
        checkAuthzid(authzid, "PLAIN");
      } else {
        const at = message.lastIndexOf(",p=");
        const sent = at < 0 ? undefined : decodeBase64(message.slice(at + 3));
        const expected = at < 0
          ? undefined
          : await expectedProof(hash, clientFirst, lastChallenge, message.slice(0, at));
        if (sent === undefined || expected === undefined || !sameBytes(sent, expected)) {
          throw new FuzzFinding("auth-bypass", `${mechanismName} succeeded without a valid proof`);
        }
        const authzidField = clientFirst.split(",")[1] ?? "";
        checkAuthzid(
          authzidField.startsWith("a=") ? decodeSaslName(authzidField.slice(2)) ?? "" : "",
          mechanismName,
        );
      }
      outcomes.push("success");
      break;
    }
    // The saslname escaping round-trips for whatever the messages hold.
    for (const message of messages) {
      if (message === "") continue;
      const decoded = decodeSaslName(encodeSaslName(message));
      if (decoded !== message) {
        throw new FuzzFinding(
          "round-trip",
          `decodeSaslName(encodeSaslName(x)) is ${JSON.stringify(decoded)}`,
        );
      }
    }
    return `${mechanismName.slice(0, 12)} ${outcomes.join(" > ")}`;
  },
};
