// Issue 17, acceptance 3: `lilt cert import` on a certbot-shaped directory, then SIGHUP to a
// running `lilt start` process: a new TLS connection gets the new certificate while a session
// logged in before stays connected. A renewal imported again reloads through the admin socket.

import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import type { TLSSocket } from "node:tls";
import { type LiltProcess, runLilt, startLiltProcess } from "./helpers/lilt_process.ts";
import { RawClient, roundTrip } from "./helpers/raw_client.ts";
import { createTestCa, type IssuedCertificate } from "./helpers/test_ca.ts";
import { testConfigText } from "./helpers/test_server.ts";

function lilt(args: string[], stdin?: string) {
  return runLilt(args, { stdin });
}

/**
 * Writes version `n` of a certbot lineage: `archive/NAME/{cert,chain,fullchain,privkey}N.pem`
 * and the `live/NAME/*.pem` symlinks pointing at them, as `certbot renew` leaves them.
 */
async function certbotVersion(root: string, name: string, n: number, issued: IssuedCertificate) {
  const archive = `${root}/archive/${name}`;
  const live = `${root}/live/${name}`;
  await Deno.mkdir(archive, { recursive: true });
  await Deno.mkdir(live, { recursive: true });
  const files: Record<string, string> = {
    cert: issued.certPem,
    chain: issued.chainPem.slice(issued.certPem.length),
    fullchain: issued.chainPem,
    privkey: issued.keyPem,
  };
  for (const [base, text] of Object.entries(files)) {
    await Deno.writeTextFile(`${archive}/${base}${n}.pem`, text, { mode: 0o600 });
    await Deno.remove(`${live}/${base}.pem`).catch(() => {});
    await Deno.symlink(`../../archive/${name}/${base}${n}.pem`, `${live}/${base}.pem`);
  }
}

/** The SHA-256 fingerprint of the certificate a new direct TLS connection is given. */
async function presented(port: number): Promise<string> {
  const client = await RawClient.connect(port, { tls: true, servername: "localhost" });
  try {
    return (client.socket as TLSSocket).getPeerCertificate().fingerprint256;
  } finally {
    client.close();
  }
}

Deno.test("cert import into a running server: SIGHUP (and the import's own reload) swap the certificate, the old session stays", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lilt-certcli-" });
  const file = `${dir}/lilt.toml`;
  await Deno.writeTextFile(
    file,
    testConfigText(dir, {
      modules: ["ping"],
      extraToml: '[[component]]\ndomain = "chat.example"\nmodules = ["ping"]\n',
    }).replace('level = "warning"', 'level = "info"').replace("console = false", "console = true"),
  );
  let started: LiltProcess | undefined;
  let alice: RawClient | undefined;
  try {
    const added = await lilt(["user", "add", "alice@localhost", "-c", file], "alice-pw\n");
    assert.equal(added.code, 0, added.stderr);
    started = await startLiltProcess(file);
    const tlsPort = Number(/c2s_direct_tls 127\.0\.0\.1:(\d+)/.exec(started.log)![1]);
    const generated = await presented(tlsPort);

    // A session over direct TLS, logged in before anything changes.
    alice = await RawClient.connect(tlsPort, { tls: true });
    await alice.open("localhost");
    await alice.loginPlain("alice", "alice-pw");
    await roundTrip(alice);

    const ca = await createTestCa();
    const first = await ca.issue({ names: ["localhost", "*.localhost"], intermediate: true });
    const letsencrypt = `${dir}/letsencrypt`;
    await certbotVersion(letsencrypt, "localhost", 1, first);

    const imported = await lilt(["cert", "import", letsencrypt, "--no-reload", "-c", file]);
    assert.equal(imported.code, 0, imported.stderr);
    const lines = imported.stdout.trimEnd().split("\n");
    assert.match(
      lines[0],
      new RegExp(
        `^localhost: imported ${letsencrypt}/live/localhost/fullchain\\.pem \\(names ` +
          `localhost, \\*\\.localhost; valid until .*\\) as ${dir}/certs/localhost\\.crt$`,
      ),
    );
    assert.equal(lines[1], "chat.example: not covered: no certificate found names it");
    assert.match(lines[2], /^Not reloading \(--no-reload\): the server takes them on /);
    assert.equal((await Deno.stat(`${dir}/certs/localhost.key`)).mode! & 0o777, 0o600);
    assert.equal(await presented(tlsPort), generated, "nothing changes before the reload");

    started.process.kill("SIGHUP");
    await started.waitFor(/Configuration reloaded/);
    const firstPrint = new X509Certificate(first.certPem).fingerprint256;
    assert.equal(await presented(tlsPort), firstPrint, "a new connection gets the imported one");
    assert.ok(!alice.ended, "the session from before is still connected");
    await roundTrip(alice);

    // certbot renews: the deploy hook's import tells the running server itself.
    const second = await ca.issue({ names: ["localhost"], intermediate: true });
    await certbotVersion(letsencrypt, "localhost", 2, second);
    const renewed = await lilt(["cert", "import", letsencrypt, "-c", file]);
    assert.equal(renewed.code, 0, renewed.stderr);
    assert.match(renewed.stdout, /^localhost: imported .*fullchain\.pem \(names localhost;/m);
    assert.match(renewed.stdout, /^Reloaded the running server's certificates:$/m);
    assert.match(renewed.stdout, /^localhost: new certificate .*localhost\.crt/m);
    assert.equal(await presented(tlsPort), new X509Certificate(second.certPem).fingerprint256);
    await roundTrip(alice);

    const again = await lilt(["cert", "import", letsencrypt, "-c", file]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /^localhost: already up to date from /m);
    assert.doesNotMatch(again.stdout, /Reloaded/, "nothing changed, nothing to reload");

    await Deno.mkdir(`${dir}/empty`);
    const none = await lilt(["cert", "import", `${dir}/empty`, "-c", file]);
    assert.equal(none.code, 1);
    assert.match(
      none.stderr,
      new RegExp(`lilt: no certificate in ${dir}/empty covers any host or component of ${file}`),
    );
    const usage = await lilt(["cert", "import"]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /^Usage: lilt cert import DIR\.\.\./);
  } finally {
    alice?.close();
    await started?.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
