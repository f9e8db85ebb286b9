// `importCertificates` on certbot-shaped trees and loose PEM directories made with the test CA:
// which certificate each host and component gets, where it is written, with which modes, and
// what is reported for the domains nothing covers.

import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { describeOutcome, importCertificates } from "../../core/cert_import.ts";
import { parseConfigText } from "../../core/config.ts";
import { describeCertificate, loadOrCreateCertificate } from "../../core/net/certificates.ts";
import { createTestCa, type IssuedCertificate } from "../helpers/test_ca.ts";

const DAY_MS = 24 * 3600_000;

async function configFor(dir: string, extra = "") {
  await Deno.mkdir(`${dir}/data`, { recursive: true });
  const text = `data_dir = ${JSON.stringify(`${dir}/data`)}
modules = []
[[host]]
domain = "example.test"
${extra}
[[host]]
domain = "other.test"
[[component]]
domain = "muc.example.test"
modules = ["ping"]
`;
  const { config, problems } = parseConfigText(text, `${dir}/lilt.toml`);
  if (!config) throw new Error(JSON.stringify(problems));
  return config;
}

/** Lays out `<root>/archive/NAME/*1.pem` and the `live/NAME/*.pem` symlinks, as certbot does. */
async function certbotLineage(root: string, name: string, issued: IssuedCertificate) {
  const archive = `${root}/archive/${name}`;
  const live = `${root}/live/${name}`;
  await Deno.mkdir(archive, { recursive: true });
  await Deno.mkdir(live, { recursive: true });
  const chain = issued.chainPem.slice(issued.certPem.length);
  const files: Record<string, string> = {
    cert: issued.certPem,
    chain,
    fullchain: issued.chainPem,
    privkey: issued.keyPem,
  };
  for (const [base, text] of Object.entries(files)) {
    await Deno.writeTextFile(`${archive}/${base}1.pem`, text, { mode: 0o600 });
    await Deno.symlink(`../../archive/${name}/${base}1.pem`, `${live}/${base}.pem`);
  }
  await Deno.writeTextFile(`${live}/README`, "This directory contains your keys.\n");
}

Deno.test("cert import takes certbot's live fullchain and key for a host and a wildcard for its component", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lilt-certimport-" });
  try {
    const ca = await createTestCa();
    const host = await ca.issue({ names: ["example.test"], intermediate: true });
    const wildcard = await ca.issue({ names: ["*.example.test"], intermediate: true });
    await certbotLineage(`${dir}/le`, "example.test", host);
    await certbotLineage(`${dir}/le`, "wild.example.test", wildcard);
    // An older certificate in archive/ is not looked at: only live/ is read.
    await Deno.writeTextFile(`${dir}/le/archive/example.test/cert0.pem`, "garbage");
    const config = await configFor(dir);

    const { outcomes } = await importCertificates(config, [`${dir}/le`]);
    const byDomain = Object.fromEntries(outcomes.map((o) => [o.domain, o]));
    assert.deepEqual(outcomes.map((o) => [o.domain, o.kind, o.status]), [
      ["example.test", "host", "imported"],
      ["other.test", "host", "missing"],
      ["muc.example.test", "component", "imported"],
    ]);
    assert.equal(byDomain["example.test"].source, `${dir}/le/live/example.test/fullchain.pem`);
    assert.equal(byDomain["example.test"].sourceKey, `${dir}/le/live/example.test/privkey.pem`);
    assert.equal(byDomain["other.test"].reason, "no certificate found names it");
    assert.match(describeOutcome(byDomain["other.test"]), /^other\.test: not covered: /);
    assert.match(
      describeOutcome(byDomain["example.test"]),
      new RegExp(
        `^example\\.test: imported .*fullchain\\.pem \\(names example\\.test; valid ` +
          `until \\d{4}-\\d\\d-\\d\\d, \\d+ days left\\) as ${dir}/data/certs/example\\.test\\.crt$`,
      ),
    );

    const crt = `${dir}/data/certs/example.test.crt`;
    assert.equal(
      await Deno.readTextFile(crt),
      host.chainPem,
      "the full chain, as certbot wrote it",
    );
    assert.equal(await Deno.readTextFile(`${dir}/data/certs/example.test.key`), host.keyPem);
    assert.equal((await Deno.stat(`${dir}/data/certs/example.test.key`)).mode! & 0o777, 0o600);
    assert.equal((await Deno.stat(`${dir}/data/certs`)).mode! & 0o777, 0o700);
    const muc = await Deno.readTextFile(`${dir}/data/certs/muc.example.test.crt`);
    assert.equal(muc, wildcard.chainPem);

    // The server's loader takes the imported pair as it is (no self-signed stand-in).
    const loaded = await loadOrCreateCertificate("example.test", { dataDir: `${dir}/data` });
    assert.equal(loaded.generated, false);
    assert.equal(loaded.selfSigned, false);
    assert.equal(loaded.certPem, host.chainPem);

    const again = await importCertificates(config, [`${dir}/le`]);
    assert.deepEqual(again.outcomes.map((o) => o.status), ["unchanged", "missing", "unchanged"]);
    assert.match(describeOutcome(again.outcomes[0]), /^example\.test: already up to date from /);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cert import in loose PEM files: keys found by public key, the latest valid leaf, its chain completed", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lilt-certimport-" });
  try {
    const ca = await createTestCa();
    const now = Date.now();
    const soon = await ca.issue({
      names: ["example.test"],
      intermediate: true,
      notAfter: new Date(now + 5 * DAY_MS),
    });
    const later = await ca.issue({
      names: ["example.test", "muc.example.test"],
      intermediate: true,
      notAfter: new Date(now + 6 * DAY_MS),
    });
    const expired = await ca.issue({
      names: ["example.test"],
      notBefore: new Date(now - 30 * DAY_MS),
      notAfter: new Date(now - DAY_MS),
    });
    const keyless = await ca.issue({ names: ["other.test"] });
    const pems = `${dir}/pems`;
    await Deno.mkdir(`${pems}/keys`, { recursive: true });
    await Deno.writeTextFile(`${pems}/soon.crt`, soon.chainPem);
    await Deno.writeTextFile(`${pems}/later-leaf-only.crt`, later.certPem);
    await Deno.writeTextFile(
      `${pems}/intermediate.pem`,
      later.chainPem.slice(later.certPem.length),
    );
    await Deno.writeTextFile(`${pems}/expired.crt`, expired.chainPem + expired.keyPem);
    await Deno.writeTextFile(`${pems}/other.crt`, keyless.certPem);
    await Deno.writeTextFile(`${pems}/keys/one`, soon.keyPem);
    await Deno.writeTextFile(`${pems}/keys/two`, later.keyPem);
    await Deno.writeTextFile(`${pems}/notes.txt`, "not a PEM file\n");
    const config = await configFor(dir);

    const { outcomes, skipped } = await importCertificates(config, [pems]);
    assert.deepEqual(skipped, []);
    const [host, other, muc] = outcomes;
    assert.equal(host.status, "imported");
    assert.equal(host.source, `${pems}/later-leaf-only.crt`, "the latest expiry wins");
    assert.equal(host.sourceKey, `${pems}/keys/two`);
    const written = await Deno.readTextFile(`${dir}/data/certs/example.test.crt`);
    const blocks = written.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)!;
    assert.equal(blocks.length, 2, "the intermediate from the other file is appended");
    assert.equal(
      new X509Certificate(blocks[1]).fingerprint256,
      new X509Certificate(later.chainPem.slice(later.certPem.length)).fingerprint256,
    );
    describeCertificate("example.test", {
      certPem: written,
      keyPem: await Deno.readTextFile(`${dir}/data/certs/example.test.key`),
    });
    assert.equal(other.status, "missing");
    assert.match(other.reason!, /^no private key found for the certificate\(s\) that name it/);
    assert.equal(muc.status, "imported", "a component named in the SANs");

    // Only the expired certificate names the host: nothing usable.
    const onlyExpired = `${dir}/expired-only`;
    await Deno.mkdir(onlyExpired);
    await Deno.writeTextFile(`${onlyExpired}/e.pem`, expired.chainPem + expired.keyPem);
    const none = await importCertificates(await configFor(`${dir}/second`), [onlyExpired]);
    assert.equal(none.outcomes[0].status, "missing");
    assert.match(none.outcomes[0].reason!, /expired or not yet valid/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cert import says a configured certificate wins, and refuses a missing directory", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lilt-certimport-" });
  try {
    const ca = await createTestCa();
    const issued = await ca.issue({ names: ["example.test"] });
    await certbotLineage(`${dir}/le`, "example.test", issued);
    const config = await configFor(dir, `certificate = "/etc/ssl/x.crt"\nkey = "/etc/ssl/x.key"`);
    const { outcomes } = await importCertificates(config, [`${dir}/le`]);
    assert.equal(outcomes[0].status, "imported");
    assert.equal(outcomes[0].configured, "/etc/ssl/x.crt");
    assert.match(
      describeOutcome(outcomes[0]),
      /; but '\/etc\/ssl\/x\.crt' is configured as its certificate and wins: remove certificate and key/,
    );
    await assert.rejects(
      importCertificates(config, [`${dir}/nowhere`]),
      new RegExp(`Cannot read directory '${dir}/nowhere': `),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "cert import as root gives the files to data_dir's owner, and refuses a missing data_dir",
  ignore: Deno.uid() !== 0,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "lilt-certimport-" });
    try {
      const ca = await createTestCa();
      await certbotLineage(
        `${dir}/le`,
        "example.test",
        await ca.issue({ names: ["example.test"] }),
      );
      const config = await configFor(dir);
      await Deno.chown(`${dir}/data`, 65534, 65534); // the server's own user, e.g. lilt
      const { outcomes } = await importCertificates(config, [`${dir}/le`]);
      assert.equal(outcomes[0].status, "imported");
      for (const path of ["certs", "certs/example.test.crt", "certs/example.test.key"]) {
        const info = await Deno.stat(`${dir}/data/${path}`);
        assert.deepEqual([info.uid, info.gid], [65534, 65534], path);
      }

      await Deno.remove(`${dir}/data`, { recursive: true });
      await assert.rejects(
        importCertificates(config, [`${dir}/le`]),
        new RegExp(`^Error: The data directory '${dir}/data' does not exist: create it owned by`),
      );
      await assert.rejects(Deno.stat(`${dir}/data`), Deno.errors.NotFound, "not created");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
