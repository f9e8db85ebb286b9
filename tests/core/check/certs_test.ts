// `checkCertificates` (lilt check certs) on test-CA certificates: a good setup has nothing to
// say; expired, wrong-name, keyless, loose-mode, untrusted, self-signed and uncovered-component
// setups each give one line saying what is wrong and how to fix it.

import assert from "node:assert/strict";
import { checkCertificates } from "../../../core/check/certs.ts";
import { parseConfigText } from "../../../core/config.ts";
import { createSelfSignedCertificate } from "../../../core/net/certificates.ts";
import { TrustStore } from "../../../core/net/peer_certificate.ts";
import { createTestCa, type TestCa } from "../../helpers/test_ca.ts";

const DAY_MS = 24 * 3600_000;
/** Far enough away that expiry is not reported. */
const LATER = () => new Date(Date.now() + 60 * DAY_MS);

interface Setup {
  dir: string;
  ca: TestCa;
  trust: TrustStore;
}

async function withSetup(run: (setup: Setup) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "lilt-checkcerts-" });
  try {
    const ca = await createTestCa({ notAfter: new Date(Date.now() + 90 * DAY_MS) });
    await run({ dir, ca, trust: new TrustStore([ca.caDer]) });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function configOf(dir: string, text: string) {
  const { config, problems } = parseConfigText(
    `data_dir = ${JSON.stringify(`${dir}/data`)}\nmodules = []\n${text}`,
    `${dir}/lilt.toml`,
  );
  if (!config) throw new Error(JSON.stringify(problems));
  return config;
}

function hostWith(domain: string, files: { certFile: string; keyFile: string }): string {
  return `[[host]]\ndomain = "${domain}"\ncertificate = "${files.certFile}"\nkey = "${files.keyFile}"\n`;
}

Deno.test("check certs: a CA-issued chain covering the host and its component is fine", async () => {
  await withSetup(async ({ dir, ca, trust }) => {
    const issued = await ca.issue({
      names: ["example.test", "*.example.test"],
      intermediate: true,
      notAfter: new Date(Date.now() + 60 * DAY_MS),
    });
    const files = await issued.writeTo(dir, "example");
    const config = configOf(
      dir,
      's2s_interfaces = ["127.0.0.1:0"]\n' + hostWith("example.test", files) +
        '[[component]]\ndomain = "muc.example.test"\nmodules = ["ping"]\n',
    );
    assert.deepEqual(await checkCertificates(config, { trust }), []);
  });
});

Deno.test("check certs: expired, wrong name and expiring soon", async () => {
  await withSetup(async ({ dir, ca, trust }) => {
    const now = Date.now();
    const expired = await ca.issue({
      names: ["a.test"],
      notBefore: new Date(now - 90 * DAY_MS),
      notAfter: new Date(now - 2 * DAY_MS),
    });
    const wrongName = await ca.issue({ names: ["elsewhere.test"], notAfter: LATER() });
    const soon = await ca.issue({ names: ["c.test"], notAfter: new Date(now + 5 * DAY_MS) });
    const a = await expired.writeTo(dir, "a");
    const b = await wrongName.writeTo(dir, "b");
    const c = await soon.writeTo(dir, "c");
    const config = configOf(
      dir,
      hostWith("a.test", a) + hostWith("b.test", b) + hostWith("c.test", c),
    );
    const problems = await checkCertificates(config, { trust });
    const expiredOn = new Date(now - 2 * DAY_MS).toISOString().slice(0, 10);
    assert.deepEqual(problems, [
      {
        level: "error",
        message: `a.test: certificate '${a.certFile}' expired on ${expiredOn}: renew it (e.g. ` +
          "certbot renew) and run 'lilt cert import DIR'",
      },
      {
        level: "error",
        message: `b.test: certificate '${b.certFile}' names elsewhere.test, not b.test: get one ` +
          "that includes b.test (certbot -d b.test) and run 'lilt cert import DIR'",
      },
      {
        level: "warning",
        message: `c.test: certificate '${c.certFile}' expires on ${
          new Date(now + 5 * DAY_MS).toISOString().slice(0, 10)
        } (in 5 days): renew it (e.g. certbot renew) and run 'lilt cert import DIR'`,
      },
    ]);
  });
});

Deno.test("check certs: a missing key, a stored certificate without its key, a key readable by others", async () => {
  await withSetup(async ({ dir, ca, trust }) => {
    const issued = await ca.issue({ names: ["a.test", "b.test", "c.test"], notAfter: LATER() });
    const files = await issued.writeTo(dir, "abc");
    await Deno.mkdir(`${dir}/data/certs`, { recursive: true });
    // b.test: only the certificate is in data_dir/certs (the key went missing).
    await Deno.writeTextFile(`${dir}/data/certs/b.test.crt`, issued.chainPem);
    // c.test: a stored pair whose key is world-readable.
    await Deno.writeTextFile(`${dir}/data/certs/c.test.crt`, issued.chainPem);
    await Deno.writeTextFile(`${dir}/data/certs/c.test.key`, issued.keyPem);
    await Deno.chmod(`${dir}/data/certs/c.test.key`, 0o644);
    const config = configOf(
      dir,
      hostWith("a.test", { certFile: files.certFile, keyFile: `${dir}/gone.key` }) +
        '[[host]]\ndomain = "b.test"\n[[host]]\ndomain = "c.test"\n',
    );
    const problems = await checkCertificates(config, { trust });
    assert.deepEqual(problems, [
      {
        level: "error",
        message:
          `a.test: key file '${dir}/gone.key' does not exist: fix the certificate/key options`,
      },
      {
        level: "error",
        message: `b.test: '${dir}/data/certs/b.test.key' is missing beside '${dir}/data/certs/` +
          "b.test.crt': run 'lilt cert import DIR' again (at start Lilt would replace the pair " +
          "with a self-signed one)",
      },
      {
        level: "warning",
        message: `c.test: key file '${dir}/data/certs/c.test.key' can be read by other users ` +
          `(mode 0644): chmod 600 ${dir}/data/certs/c.test.key`,
      },
    ]);
  });
});

Deno.test("check certs: no certificate, a self-signed one, an incomplete chain, an uncovered component (a generated wildcard covers)", async () => {
  await withSetup(async ({ dir, ca, trust }) => {
    const self = await createSelfSignedCertificate("self.test");
    await Deno.mkdir(`${dir}/data/certs`, { recursive: true });
    await Deno.writeTextFile(`${dir}/data/certs/self.test.crt`, self.certPem);
    await Deno.writeTextFile(`${dir}/data/certs/self.test.key`, self.keyPem, { mode: 0o600 });
    const leafOnly = await ca.issue({
      names: ["leaf.test"],
      intermediate: true,
      notAfter: LATER(),
    });
    await Deno.writeTextFile(`${dir}/leaf.crt`, leafOnly.certPem); // cert.pem, not fullchain
    await Deno.writeTextFile(`${dir}/leaf.key`, leafOnly.keyPem, { mode: 0o600 });
    const config = configOf(
      dir,
      's2s_interfaces = ["127.0.0.1:0"]\n[[host]]\ndomain = "none.test"\n' +
        '[[host]]\ndomain = "self.test"\n' +
        hostWith("leaf.test", { certFile: `${dir}/leaf.crt`, keyFile: `${dir}/leaf.key` }) +
        '[[component]]\ndomain = "muc.leaf.test"\nmodules = ["ping"]\n' +
        // Covered by the *.none.test of the certificate generated for none.test at start.
        '[[component]]\ndomain = "muc.none.test"\nmodules = ["ping"]\n',
    );
    const messages = (await checkCertificates(config, { trust })).map((p) =>
      `${p.level}: ${p.message}`
    );
    assert.equal(messages.length, 4, messages.join("\n"));
    assert.equal(
      messages[0],
      "warning: none.test: no certificate: Lilt generates a self-signed one at start, which " +
        "clients do not trust: run 'lilt cert import DIR' (e.g. /etc/letsencrypt) or set " +
        "certificate and key",
    );
    assert.equal(
      messages[1],
      `warning: self.test: certificate '${dir}/data/certs/self.test.crt' is self-signed: ` +
        "clients and remote servers do not trust it; get one from a CA (e.g. Let's Encrypt " +
        "with certbot) and run 'lilt cert import DIR'",
    );
    assert.match(
      messages[2],
      new RegExp(
        `^warning: leaf\\.test: certificate '${dir}/leaf\\.crt' does not chain to a ` +
          "trusted root \\(.*\\): use the full chain \\(certbot's fullchain\\.pem, not cert\\.pem\\)",
      ),
    );
    assert.equal(
      messages[3],
      "error: muc.leaf.test: the component gets leaf.test's certificate, which names " +
        "leaf.test, not muc.leaf.test: add muc.leaf.test (or a wildcard for it) to a " +
        "certificate and run 'lilt cert import DIR'",
    );
  });
});
