// Tests for server-side SASL: the RFC 5802 and RFC 7677 SCRAM test vectors, full round trips
// against a SCRAM client written here (with and without channel binding), PLAIN, and every
// failure a client or an attacker can provoke.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { AccountStore } from "../../../core/auth/accounts.ts";
import {
  advertisedMechanisms,
  initialUsername,
  isCredentialFailure,
  type SaslContext,
  type SaslFailureReason,
  saslOffer,
  type SaslStep,
  ScramMechanism,
  startMechanism,
} from "../../../core/auth/sasl.ts";
import {
  decodeBase64,
  deriveCredentials,
  downgradeProtectionHash,
  encodeBase64,
  HASH_BYTES,
  utf8,
} from "../../../core/auth/scram.ts";
import { Database } from "../../../core/storage/database.ts";
import { ScramClient, ScramDowngradeError } from "../../helpers/scram_client.ts";

const HOST = "example.com";
const text = (bytes: Uint8Array | undefined) => new TextDecoder().decode(bytes);
const CB_DATA = crypto.getRandomValues(new Uint8Array(32));

function prepUsername(raw: string): string | undefined {
  return /^[^@/\s"&'<>:]+$/u.test(raw) ? raw.toLowerCase() : undefined;
}

async function setup(
  overrides: Partial<SaslContext> = {},
): Promise<{ ctx: SaslContext; database: Database }> {
  const database = Database.open({ path: ":memory:" });
  const accounts = new AccountStore(database, { iterations: 4096 });
  await accounts.create(HOST, "juliet", "r0m30");
  await accounts.create(HOST, "a,b=c", "commas");
  const ctx: SaslContext = {
    host: HOST,
    secure: true,
    allowPlainInsecure: false,
    accounts,
    channelBinding: { type: "tls-server-end-point", data: CB_DATA },
    prepUsername,
    ...overrides,
  };
  return { ctx, database };
}

function expectChallenge(step: SaslStep): string {
  assert.equal(step.kind, "challenge", JSON.stringify(step));
  return text((step as { data: Uint8Array }).data);
}

function expectFailure(step: SaslStep, condition: string): void {
  assert.equal(step.kind, "failure", JSON.stringify(step));
  assert.equal((step as { condition: string }).condition, condition, JSON.stringify(step));
}

async function runScram(
  ctx: SaslContext,
  mechanism: string,
  client: ScramClient,
): Promise<SaslStep> {
  const server = startMechanism(mechanism, ctx);
  assert.ok(server, `${mechanism} starts`);
  const first = await server.step(client.first());
  if (first.kind !== "challenge") return first;
  const result = await server.step(await client.final(text(first.data)));
  if (result.kind === "success") {
    assert.ok(await client.verify(text(result.data)), "server signature verifies");
  }
  return result;
}

Deno.test("mechanisms are advertised by channel binding and transport security", async () => {
  const { ctx, database } = await setup();
  assert.deepEqual(advertisedMechanisms(ctx), [
    "SCRAM-SHA-256-PLUS",
    "SCRAM-SHA-1-PLUS",
    "SCRAM-SHA-256",
    "SCRAM-SHA-1",
    "PLAIN",
  ]);
  const plainText = { ...ctx, secure: false, channelBinding: undefined };
  assert.deepEqual(advertisedMechanisms(plainText), ["SCRAM-SHA-256", "SCRAM-SHA-1"]);
  assert.deepEqual(advertisedMechanisms({ ...plainText, allowPlainInsecure: true }), [
    "SCRAM-SHA-256",
    "SCRAM-SHA-1",
    "PLAIN",
  ]);
  assert.equal(startMechanism("PLAIN", plainText), undefined);
  assert.equal(startMechanism("SCRAM-SHA-256-PLUS", plainText), undefined);
  assert.equal(startMechanism("DIGEST-MD5", ctx), undefined);
  assert.equal(startMechanism("scram-sha-1", ctx), undefined);
  assert.equal(startMechanism("SCRAM-SHA-1-PLUS", ctx)?.name, "SCRAM-SHA-1-PLUS");
  assert.equal(startMechanism("SCRAM-SHA-256", ctx)?.name, "SCRAM-SHA-256");
  database.close();
});

Deno.test("SCRAM-SHA-1 reproduces the RFC 5802 section 5 example", async () => {
  const { ctx, database } = await setup();
  const credentials = await deriveCredentials("pencil", {
    hash: "SHA-1",
    salt: decodeBase64("QSXCR+Q6sek8bf92")!,
    iterations: 4096,
  });
  ctx.accounts.setCredentials(HOST, "user", { "SHA-1": credentials });
  const server = new ScramMechanism(ctx, {
    hash: "SHA-1",
    plus: false,
    serverNonce: "3rfcNHYJY1ZVvWVs7j",
    downgradeProtection: false,
  });
  assert.equal(
    expectChallenge(await server.step(utf8("n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"))),
    "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
  );
  const result = await server.step(utf8(
    "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
  ));
  assert.equal(result.kind, "success");
  assert.equal(result.username, "user");
  assert.equal(text(result.data), "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=");
  expectFailure(await server.step(utf8("more")), "malformed-request");
  database.close();
});

Deno.test("SCRAM-SHA-256 reproduces the RFC 7677 section 3 example", async () => {
  const { ctx, database } = await setup();
  const credentials = await deriveCredentials("pencil", {
    hash: "SHA-256",
    salt: decodeBase64("W22ZaJ0SNY7soEsUEjb6gQ==")!,
    iterations: 4096,
  });
  ctx.accounts.setCredentials(HOST, "user", { "SHA-256": credentials });
  const server = new ScramMechanism(ctx, {
    hash: "SHA-256",
    plus: false,
    serverNonce: "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    downgradeProtection: false,
  });
  assert.equal(
    expectChallenge(await server.step(utf8("n,,n=user,r=rOprNGfwEbeRWgbNEkqO"))),
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
  );
  const result = await server.step(utf8(
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0," +
      "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
  ));
  assert.equal(result.kind, "success");
  assert.equal(text(result.data), "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
  database.close();
});

Deno.test("SCRAM round trips succeed for both hashes, with and without channel binding", async () => {
  const { ctx, database } = await setup();
  for (const hash of ["SHA-1", "SHA-256"] as const) {
    const plain = new ScramClient({ hash, username: "juliet", password: "r0m30" });
    const result = await runScram(ctx, `SCRAM-${hash}`, plain);
    assert.deepEqual(result.kind === "success" && result.username, "juliet");

    const plus = new ScramClient({
      hash,
      username: "Juliet", // prepared by the context
      password: "r0m30",
      gs2: "p=tls-server-end-point,,",
      cbData: CB_DATA,
    });
    assert.equal((await runScram(ctx, `SCRAM-${hash}-PLUS`, plus)).kind, "success");

    // "y" is fine when the server really has no channel binding to offer.
    const noCb = { ...ctx, channelBinding: undefined };
    const yes = new ScramClient({ hash, username: "juliet", password: "r0m30", gs2: "y,," });
    assert.equal((await runScram(noCb, `SCRAM-${hash}`, yes)).kind, "success");
  }
  database.close();
});

/** Base64 of a digest of `text`, with node:crypto (independent of the code under test). */
function base64Digest(hash: "sha1" | "sha256", text: string): string {
  return createHash(hash).update(text, "utf8").digest("base64");
}

/** The attributes of a server-first-message, in order. */
function attributesOf(serverFirst: string): [string, string][] {
  return serverFirst.split(",").map((field) => [field.slice(0, 1), field.slice(2)]);
}

Deno.test("the XEP-0474 hash reproduces the XEP's example", () => {
  // XEP-0474 §6.3: SHA-1 over "SCRAM-SHA-1 RS SCRAM-SHA-1-PLUS US tls-exporter RS
  // tls-server-end-point", whatever order the server listed them in.
  const offer = {
    mechanisms: ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"],
    channelBindings: ["tls-server-end-point", "tls-exporter"],
  };
  assert.equal(downgradeProtectionHash("SHA-1", offer), "G6k/rBLDqgOhRRaCuuatSDFkJ08=");
  // Without XEP-0440 types there is no unit separator at all.
  assert.equal(
    downgradeProtectionHash("SHA-256", { mechanisms: ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"] }),
    base64Digest("sha256", "PLAIN\x1ESCRAM-SHA-1\x1ESCRAM-SHA-256"),
  );
  // Sorting is by octets: upper case before lower case, a prefix before its extensions.
  assert.equal(
    downgradeProtectionHash("SHA-1", {
      mechanisms: ["b", "B", "A-PLUS", "A"],
      channelBindings: [],
    }),
    base64Digest("sha1", "A\x1EA-PLUS\x1EB\x1Eb\x1F"),
  );
});

Deno.test("SCRAM's server-first-message ends with XEP-0474's h over what the stream offers", async () => {
  const { ctx, database } = await setup();
  // Written out by hand from the XEP's rules: sorted mechanisms joined by U+001E, then U+001F
  // and the XEP-0440 types only when they were announced.
  const withCb = "PLAIN\x1ESCRAM-SHA-1\x1ESCRAM-SHA-1-PLUS\x1ESCRAM-SHA-256\x1E" +
    "SCRAM-SHA-256-PLUS\x1Ftls-server-end-point";
  const withoutCb = "PLAIN\x1ESCRAM-SHA-1\x1ESCRAM-SHA-256";
  const cases = [
    { ctx, mechanism: "SCRAM-SHA-256-PLUS", gs2: "p=tls-server-end-point,,", s: withCb },
    { ctx, mechanism: "SCRAM-SHA-1-PLUS", gs2: "p=tls-server-end-point,,", s: withCb },
    { ctx, mechanism: "SCRAM-SHA-256", gs2: "n,,", s: withCb },
    {
      ctx: { ...ctx, channelBinding: undefined },
      mechanism: "SCRAM-SHA-1",
      gs2: "y,,",
      s: withoutCb,
    },
    {
      ctx: { ...ctx, secure: false, channelBinding: undefined },
      mechanism: "SCRAM-SHA-256",
      gs2: "n,,",
      s: "SCRAM-SHA-1\x1ESCRAM-SHA-256",
    },
  ];
  for (const c of cases) {
    const hash = c.mechanism.startsWith("SCRAM-SHA-256") ? "SHA-256" : "SHA-1";
    const client = new ScramClient({
      hash,
      username: "juliet",
      password: "r0m30",
      gs2: c.gs2,
      cbData: c.gs2.startsWith("p=") ? CB_DATA : undefined,
      advertised: saslOffer(c.ctx),
    });
    const server = startMechanism(c.mechanism, c.ctx)!;
    const serverFirst = expectChallenge(await server.step(client.first()));
    // RFC 5802 §7: extensions come after the iteration count, where other clients skip them.
    assert.deepEqual(attributesOf(serverFirst).map(([name]) => name), ["r", "s", "i", "h"]);
    const h = attributesOf(serverFirst)[3][1];
    assert.equal(h, base64Digest(hash === "SHA-256" ? "sha256" : "sha1", c.s), c.mechanism);
    const result = await server.step(await client.final(serverFirst));
    assert.equal(result.kind, "success", c.mechanism);
    assert.equal(client.downgradeCheck, "matched");
  }
  // An unknown user's exchange carries the same h, so it does not stand out.
  const tybalt = startMechanism("SCRAM-SHA-256", ctx)!;
  const first = expectChallenge(await tybalt.step(utf8("n,,n=tybalt,r=abcdef")));
  assert.equal(attributesOf(first)[3][1], base64Digest("sha256", withCb));
  database.close();
});

Deno.test("XEP-0474's h covers the offer the stream remembered, not today's configuration", async () => {
  const { ctx, database } = await setup();
  // The stream advertised no -PLUS; a reload since then turned channel binding on.
  const offer = { mechanisms: ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"] };
  const client = new ScramClient({
    hash: "SHA-256",
    username: "juliet",
    password: "r0m30",
    advertised: offer,
  });
  assert.equal((await runScram({ ...ctx, offer }, "SCRAM-SHA-256", client)).kind, "success");
  assert.equal(client.downgradeCheck, "matched");
  database.close();
});

Deno.test("a client that saw other lists than the server sent stops at XEP-0474's h", async () => {
  const { ctx, database } = await setup();
  // A man in the middle removed the -PLUS mechanisms and the XEP-0440 types.
  for (
    const advertised of [
      { mechanisms: ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"] },
      { mechanisms: advertisedMechanisms(ctx), channelBindings: ["tls-exporter"] },
      { mechanisms: advertisedMechanisms(ctx) }, // the types alone removed
    ]
  ) {
    const client = new ScramClient({
      hash: "SHA-256",
      username: "juliet",
      password: "r0m30",
      advertised,
    });
    const server = startMechanism("SCRAM-SHA-256", ctx)!;
    const serverFirst = expectChallenge(await server.step(client.first()));
    await assert.rejects(client.final(serverFirst), ScramDowngradeError);
    assert.equal(client.downgradeCheck, "mismatch");
  }
  database.close();
});

Deno.test("the client proof signs XEP-0474's h, so removing it on the way fails the login", async () => {
  const { ctx, database } = await setup();
  const client = new ScramClient({ hash: "SHA-256", username: "juliet", password: "r0m30" });
  const server = startMechanism("SCRAM-SHA-256", ctx)!;
  const serverFirst = expectChallenge(await server.step(client.first()));
  // The client got the message without "h" (a man in the middle stripped it to hide a
  // downgrade); its proof then covers a different auth message than the server's.
  const stripped = serverFirst.replace(/,h=[^,]*$/, "");
  assert.notEqual(stripped, serverFirst);
  expectFailure(await server.step(await client.final(stripped)), "not-authorized");
  database.close();
});

Deno.test("SCRAM waits for the client-first message when there is no initial response", async () => {
  const { ctx, database } = await setup();
  const server = startMechanism("SCRAM-SHA-256", ctx)!;
  assert.equal(expectChallenge(await server.step(undefined)), "");
  const client = new ScramClient({ hash: "SHA-256", username: "juliet", password: "r0m30" });
  const serverFirst = expectChallenge(await server.step(client.first()));
  assert.equal((await server.step(await client.final(serverFirst))).kind, "success");
  database.close();
});

Deno.test("SCRAM usernames are decoded from =2C and =3D", async () => {
  const { ctx, database } = await setup();
  const client = new ScramClient({ hash: "SHA-1", username: "a,b=c", password: "commas" });
  const result = await runScram(ctx, "SCRAM-SHA-1", client);
  assert.equal(result.kind === "success" && result.username, "a,b=c");
  database.close();
});

Deno.test("SCRAM rejects a wrong password with not-authorized", async () => {
  const { ctx, database } = await setup();
  const client = new ScramClient({ hash: "SHA-256", username: "juliet", password: "wrong" });
  expectFailure(await runScram(ctx, "SCRAM-SHA-256", client), "not-authorized");
  database.close();
});

Deno.test("SCRAM for an unknown user looks like a real exchange until the proof", async () => {
  const { ctx, database } = await setup();
  const salts: string[] = [];
  for (let i = 0; i < 2; i++) {
    const server = startMechanism("SCRAM-SHA-256", ctx)!;
    const client = new ScramClient({ hash: "SHA-256", username: "tybalt", password: "x" });
    const serverFirst = expectChallenge(await server.step(client.first()));
    const attrs = Object.fromEntries(serverFirst.split(",").map((f) => [f[0], f.slice(2)]));
    assert.equal(decodeBase64(attrs.s)!.length, 16);
    assert.equal(attrs.i, "4096");
    salts.push(attrs.s);
    expectFailure(await server.step(await client.final(serverFirst)), "not-authorized");
  }
  // Deterministic, so a retry cannot tell a fake salt from a stored one.
  assert.equal(salts[0], salts[1]);
  const other = startMechanism("SCRAM-SHA-256", ctx)!;
  const otherFirst = expectChallenge(await other.step(utf8("n,,n=mercutio,r=abc")));
  assert.notEqual(otherFirst.split(",")[1], `s=${salts[0]}`);
  // A syntactically invalid username fails without a challenge.
  const invalid = startMechanism("SCRAM-SHA-256", ctx)!;
  expectFailure(await invalid.step(utf8("n,,n=a@b,r=abc")), "not-authorized");
  database.close();
});

Deno.test("SCRAM detects a channel binding downgrade when configured to", async () => {
  const { ctx, database } = await setup();
  // The client supports channel binding and saw no -PLUS: something stripped it.
  const client = () =>
    new ScramClient({ hash: "SHA-256", username: "juliet", password: "r0m30", gs2: "y,," });
  const strict = { ...ctx, rejectChannelBindingDowngrade: true };
  expectFailure(await runScram(strict, "SCRAM-SHA-256", client()), "not-authorized");
  // By default "y" is accepted: clients whose only binding is tls-unique send it on TLS 1.3.
  assert.equal((await runScram(ctx, "SCRAM-SHA-256", client())).kind, "success");
  database.close();
});

Deno.test("SCRAM channel binding must match the mechanism and the TLS channel", async () => {
  const { ctx, database } = await setup();
  const base = { hash: "SHA-256" as const, username: "juliet", password: "r0m30" };
  // p= on a non-PLUS mechanism.
  expectFailure(
    await runScram(
      ctx,
      "SCRAM-SHA-256",
      new ScramClient({ ...base, gs2: "p=tls-server-end-point,,", cbData: CB_DATA }),
    ),
    "malformed-request",
  );
  // No channel binding on a PLUS mechanism.
  expectFailure(
    await runScram(ctx, "SCRAM-SHA-256-PLUS", new ScramClient({ ...base, gs2: "n,," })),
    "malformed-request",
  );
  expectFailure(
    await runScram(ctx, "SCRAM-SHA-256-PLUS", new ScramClient({ ...base, gs2: "y,," })),
    "malformed-request",
  );
  // A binding type we do not offer.
  expectFailure(
    await runScram(
      ctx,
      "SCRAM-SHA-256-PLUS",
      new ScramClient({ ...base, gs2: "p=tls-unique,,", cbData: CB_DATA }),
    ),
    "malformed-request",
  );
  // Another channel's data (a man in the middle terminating TLS).
  expectFailure(
    await runScram(
      ctx,
      "SCRAM-SHA-256-PLUS",
      new ScramClient({ ...base, gs2: "p=tls-server-end-point,,", cbData: new Uint8Array(32) }),
    ),
    "not-authorized",
  );
  // Binding data sent without the header or with a different header than the first message.
  const server = startMechanism("SCRAM-SHA-1", ctx)!;
  const client = new ScramClient({ ...base, hash: "SHA-1" });
  const serverFirst = expectChallenge(await server.step(client.first()));
  const final = text(await client.final(serverFirst)).replace("c=biws", "c=eSws");
  expectFailure(await server.step(utf8(final)), "not-authorized");
  database.close();
});

Deno.test("SCRAM accepts the user's own bare JID as authzid and nothing else", async () => {
  const { ctx, database } = await setup();
  const base = { hash: "SHA-1" as const, username: "juliet", password: "r0m30" };
  for (const authzid of ["juliet@example.com", "Juliet@EXAMPLE.com"]) {
    const gs2 = `n,a=${authzid},`;
    const result = await runScram(ctx, "SCRAM-SHA-1", new ScramClient({ ...base, gs2 }));
    assert.equal(result.kind === "success" && result.username, "juliet");
  }
  for (const authzid of ["romeo@example.com", "juliet@example.net", "juliet@example.com/r"]) {
    const gs2 = `n,a=${authzid},`;
    expectFailure(
      await runScram(ctx, "SCRAM-SHA-1", new ScramClient({ ...base, gs2 })),
      "invalid-authzid",
    );
  }
  // Channel binding covers the authzid too.
  const plus = new ScramClient({
    ...base,
    gs2: "p=tls-server-end-point,a=juliet@example.com,",
    cbData: CB_DATA,
  });
  assert.equal((await runScram(ctx, "SCRAM-SHA-1-PLUS", plus)).kind, "success");
  database.close();
});

Deno.test("SCRAM fails disabled accounts only after a correct proof", async () => {
  const { ctx, database } = await setup({ isDisabled: (user) => user === "juliet" });
  const right = new ScramClient({ hash: "SHA-256", username: "juliet", password: "r0m30" });
  expectFailure(await runScram(ctx, "SCRAM-SHA-256", right), "account-disabled");
  const wrong = new ScramClient({ hash: "SHA-256", username: "juliet", password: "nope" });
  expectFailure(await runScram(ctx, "SCRAM-SHA-256", wrong), "not-authorized");
  database.close();
});

Deno.test("SCRAM rejects malformed client-first messages", async () => {
  const { ctx, database } = await setup();
  const cases = [
    "",
    "garbage",
    "n,",
    "x,,n=juliet,r=abc",
    "n,,r=abc",
    "n,,n=juliet",
    "n,,n=juliet,r=",
    "n,,n=,r=abc",
    "n,,n=jul=iet,r=abc",
    "n,,n=jul=2Ciet=,r=abc",
    "n,,m=ext,n=juliet,r=abc",
    "n,,n=juliet,r=abc,garbage",
    "n,b=juliet,n=juliet,r=abc",
    "n,a=,n=juliet,r=abc",
    "n,,n=juliet,r=a\u00E9c",
  ];
  for (const message of cases) {
    const server = startMechanism("SCRAM-SHA-256", ctx)!;
    expectFailure(await server.step(utf8(message)), "malformed-request");
    expectFailure(await server.step(utf8(message)), "malformed-request"); // finished
  }
  const server = startMechanism("SCRAM-SHA-256", ctx)!;
  expectFailure(await server.step(new Uint8Array([0x6e, 0x2c, 0x2c, 0xff])), "malformed-request");
  // An empty message after the empty challenge is malformed too.
  const asked = startMechanism("SCRAM-SHA-256", ctx)!;
  expectChallenge(await asked.step(undefined));
  expectFailure(await asked.step(undefined), "malformed-request");
  // Extensions after the nonce are allowed and ignored.
  const withExtension = startMechanism("SCRAM-SHA-256", ctx)!;
  expectChallenge(await withExtension.step(utf8("n,,n=juliet,r=abc,x=1")));
  database.close();
});

Deno.test("SCRAM rejects malformed or mismatched client-final messages", async () => {
  const { ctx, database } = await setup();
  const client = new ScramClient({ hash: "SHA-256", username: "juliet", password: "r0m30" });
  const good = text(
    await (async () => {
      const probe = startMechanism("SCRAM-SHA-256", ctx)!;
      return await client.final(expectChallenge(await probe.step(client.first())));
    })(),
  );
  const [c, r, p] = good.split(",");
  const tampered = decodeBase64(p.slice(2))!;
  tampered[0] ^= 1;
  const cases: Array<[string, string]> = [
    ["", "malformed-request"],
    [`${c},${r}`, "malformed-request"],
    [`${r},${c},${p}`, "malformed-request"],
    [`${c},${r},p=not*base64`, "malformed-request"],
    [`${c},${r},p=${encodeBase64(new Uint8Array(HASH_BYTES["SHA-1"]))}`, "malformed-request"],
    [`c=***,${r},${p}`, "malformed-request"],
    [`${c},${r},garbage,${p}`, "malformed-request"],
    [`${c},r=someone-elses-nonce,${p}`, "not-authorized"],
    [`${c},${r},p=${encodeBase64(tampered)}`, "not-authorized"],
  ];
  for (const [message, condition] of cases) {
    const server = startMechanism("SCRAM-SHA-256", ctx)!;
    // Same client nonce, fresh server nonce: rebuild r= from the new challenge.
    const serverFirst = expectChallenge(await server.step(client.first()));
    const nonce = serverFirst.split(",")[0];
    const final = message.replace(r, nonce);
    expectFailure(await server.step(utf8(final)), condition);
  }
  database.close();
});

Deno.test("PLAIN checks the password against the stored SCRAM keys", async () => {
  const { ctx, database } = await setup();
  const plain = async (message: string, context = ctx) => {
    const server = startMechanism("PLAIN", context)!;
    return await server.step(utf8(message));
  };
  const ok = await plain("\0juliet\0r0m30");
  assert.deepEqual(ok, { kind: "success", username: "juliet" });
  assert.deepEqual(await plain("juliet@example.com\0Juliet\0r0m30"), ok);
  expectFailure(await plain("\0juliet\0wrong"), "not-authorized");
  expectFailure(await plain("\0tybalt\0r0m30"), "not-authorized");
  expectFailure(await plain("\0bad@name\0r0m30"), "not-authorized");
  expectFailure(await plain("romeo@example.com\0juliet\0r0m30"), "invalid-authzid");
  expectFailure(await plain("juliet\0r0m30"), "malformed-request");
  expectFailure(await plain("\0juliet\0"), "malformed-request");
  expectFailure(await plain("\0\0r0m30"), "malformed-request");
  expectFailure(await plain("\0juliet\0r0m30\0extra"), "malformed-request");
  expectFailure(
    await plain("\0juliet\0r0m30", { ...ctx, isDisabled: () => true }),
    "account-disabled",
  );

  // Without an initial response the server asks with an empty challenge.
  const server = startMechanism("PLAIN", ctx)!;
  assert.equal(expectChallenge(await server.step(undefined)), "");
  assert.equal((await server.step(utf8("\0juliet\0r0m30"))).kind, "success");
  expectFailure(await server.step(utf8("\0juliet\0r0m30")), "malformed-request");

  const invalidUtf8 = startMechanism("PLAIN", ctx)!;
  expectFailure(
    await invalidUtf8.step(new Uint8Array([0, 0x6a, 0, 0xc3, 0x28])),
    "malformed-request",
  );
  database.close();
});

function reasonOf(step: SaslStep): SaslFailureReason | undefined {
  return step.kind === "failure" ? step.reason : undefined;
}

Deno.test("failure reasons tell the log what the wire does not, and only guesses count", async () => {
  const { ctx, database } = await setup({ isDisabled: (user) => user === "a,b=c" });
  const scram = (username: string, password: string, gs2?: string) =>
    runScram(
      ctx,
      gs2?.startsWith("p=") ? "SCRAM-SHA-256-PLUS" : "SCRAM-SHA-256",
      new ScramClient({
        hash: "SHA-256",
        username,
        password,
        gs2,
        cbData: gs2?.startsWith("p=") ? CB_DATA : undefined,
      }),
    );
  const cases: [SaslStep, string, boolean][] = [
    [await scram("juliet", "wrong"), "wrong-password", true],
    [await scram("tybalt", "x"), "unknown-user", true],
    [await scram("a@b", "x"), "invalid-username", true],
    [await scram("a,b=c", "commas"), "disabled-account", false],
    [await scram("juliet", "r0m30", "p=tls-unique,,"), "unsupported-channel-binding", false],
    [await scram("juliet", "r0m30", "n,a=romeo@example.com,"), "invalid-authzid", false],
  ];
  for (const [step, reason, counts] of cases) {
    assert.equal(reasonOf(step), reason);
    assert.equal(isCredentialFailure(reasonOf(step)!), counts, reason);
  }
  // On the wire the first three are the same not-authorized.
  for (const [step] of cases.slice(0, 3)) expectFailure(step, "not-authorized");
  // The unsupported type is named, with the one this server has.
  const unsupported = cases[4][0] as { text?: string };
  assert.match(unsupported.text ?? "", /tls-unique .*tls-server-end-point/);

  const plain = (message: string) => startMechanism("PLAIN", ctx)!.step(utf8(message));
  assert.equal(reasonOf(await plain("\0juliet\0wrong")), "wrong-password");
  assert.equal(reasonOf(await plain("\0nobody\0x")), "unknown-user");
  assert.equal(reasonOf(await plain("\0a,b=c\0commas")), "disabled-account");
  database.close();
});

Deno.test("a mechanism knows the username tried, even when it fails early", async () => {
  const { ctx, database } = await setup();
  const plus = startMechanism("SCRAM-SHA-1-PLUS", ctx)!;
  await plus.step(utf8("p=tls-unique,,n=Juliet,r=abc"));
  assert.equal(plus.username, "juliet", "prepared");
  const invalid = startMechanism("SCRAM-SHA-1", ctx)!;
  await invalid.step(utf8("n,,n=a@b,r=abc"));
  assert.equal(invalid.username, "a@b", "as sent when it cannot be prepared");
  const plain = startMechanism("PLAIN", ctx)!;
  await plain.step(utf8("\0Romeo\0x"));
  assert.equal(plain.username, "romeo");

  assert.equal(initialUsername("SCRAM-SHA-256", utf8("y,a=x@y,n=a=2Cb,r=n")), "a,b");
  assert.equal(initialUsername("PLAIN", utf8("\0bob\0pw")), "bob");
  assert.equal(initialUsername("PLAIN", utf8("garbage")), undefined);
  assert.equal(initialUsername("SCRAM-SHA-1", undefined), undefined);
  assert.equal(initialUsername("EXTERNAL", utf8("bob")), undefined);
  database.close();
});
