// `lilt check config` and `lilt start` as an operator runs them on configurations that promise
// more than they do: a database key file others can read, certificates that cannot serve their host, and options a
// running server applies only when it restarts.

import assert from "node:assert/strict";
import { runLilt, startLiltProcess } from "./helpers/lilt_process.ts";
import { testConfigText, TESTING_ON_POSTGRESQL } from "./helpers/test_server.ts";
import { createTestCa } from "./helpers/test_ca.ts";

const DAY_MS = 24 * 3600_000;

function lilt(args: string[]) {
  return runLilt(args);
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "lilt-config-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

// A key file encrypts the embedded store's file; a PostgreSQL store has no such key.
Deno.test("check config and start refuse a key file others can read, and write nothing", {
  ignore: TESTING_ON_POSTGRESQL,
}, () =>
  withDir(async (dir) => {
    const file = `${dir}/lilt.toml`;
    await Deno.writeTextFile(`${dir}/store.key`, "correct horse\n");
    await Deno.chmod(`${dir}/store.key`, 0o644);
    await Deno.writeTextFile(
      file,
      testConfigText(dir) + '\n[storage]\npath = "lilt.sqlite"\nkey_file = "store.key"\n',
    );
    const line = (await Deno.readTextFile(file)).split("\n").indexOf('key_file = "store.key"') + 1;
    const expected = new RegExp(
      `${file}:${line}: error: storage.key_file '${dir}/store.key' can be accessed by group or ` +
        "others \\(mode 0644\\): run chmod 600 on it",
    );
    const checked = await lilt(["check", "config", "-c", file]);
    assert.equal(checked.code, 1);
    assert.match(checked.stderr, expected);
    const started = await lilt(["start", "-c", file]);
    assert.equal(started.code, 1);
    assert.match(started.stderr, expected);
    // Nothing was written: no store under a key the operator cannot keep secret.
    await assert.rejects(Deno.stat(`${dir}/lilt.sqlite`), Deno.errors.NotFound);
  }));

Deno.test("check config loads each certificate: missing, mismatched, wrong host, expiring", () =>
  withDir(async (dir) => {
    const ca = await createTestCa({ notAfter: new Date(Date.now() + 400 * DAY_MS) });
    await (await ca.issue({
      names: ["good.example"],
      notAfter: new Date(Date.now() + 200 * DAY_MS),
    })).writeTo(dir, "good");
    await (await ca.issue({
      names: ["soon.example"],
      notAfter: new Date(Date.now() + 10 * DAY_MS + 3600_000),
    })).writeTo(dir, "soon");
    await (await ca.issue({ names: ["other.example"] })).writeTo(dir, "other");
    await Deno.writeTextFile(`${dir}/garbage.crt`, "not a certificate\n");
    const host = (domain: string, cert: string, key: string) =>
      `[[host]]\ndomain = "${domain}"\ncertificate = "${cert}"\nkey = "${key}"\n`;
    const file = `${dir}/lilt.toml`;
    const text = testConfigText(dir, { domain: "good.example" })
      .replace('domain = "good.example"', `domain = "good.example"\ncertificate = "good.crt"`)
      .replace(`certificate = "good.crt"`, `certificate = "good.crt"\nkey = "good.key"`) +
      host("soon.example", "soon.crt", "soon.key") +
      host("wrong.example", "other.crt", "other.key") +
      host("mismatch.example", "good.crt", "other.key") +
      host("missing.example", "nowhere.crt", "other.key") +
      host("garbage.example", "garbage.crt", "other.key");
    await Deno.writeTextFile(file, text);
    const lines = text.split("\n");
    const lineOf = (domain: string) => lines.indexOf(`domain = "${domain}"`) + 2;

    const result = await lilt(["check", "config", "-c", file]);
    assert.equal(result.code, 1, result.stderr);
    const out = result.stderr;
    assert.doesNotMatch(out, /good\.example/);
    assert.match(
      out,
      new RegExp(
        `${file}:${lineOf("soon.example")}: warning: certificate file '${dir}/soon.crt' for ` +
          "'soon.example' expires on \\S+ \\(in 10 days\\): renew it",
      ),
    );
    assert.match(
      out,
      new RegExp(
        `${file}:${lineOf("wrong.example")}: error: certificate file '${dir}/other.crt' does ` +
          "not cover host 'wrong.example': expected it among its names, found other.example",
      ),
    );
    assert.match(
      out,
      new RegExp(
        `${file}:${lineOf("mismatch.example")}: error: private key file '${dir}/other.key' ` +
          `does not match certificate file '${dir}/good.crt'`,
      ),
    );
    assert.match(
      out,
      new RegExp(
        `${file}:${lineOf("missing.example")}: error: cannot read certificate file ` +
          `'${dir}/nowhere.crt' for missing.example: file not found`,
      ),
    );
    assert.match(
      out,
      new RegExp(
        `${file}:${lineOf("garbage.example")}: error: cannot parse certificate file ` +
          `'${dir}/garbage.crt'`,
      ),
    );
    // A pair good for more than 30 days and its host alone is fine.
    await Deno.writeTextFile(
      file,
      testConfigText(dir) + host("good.example", "good.crt", "good.key"),
    );
    const fine = await lilt(["check", "config", "-c", file]);
    assert.equal(fine.code, 0, fine.stderr);
    assert.equal(fine.stderr, "");
  }));

Deno.test("check config names the options a running server applies only on restart", () =>
  withDir(async (dir) => {
    const file = `${dir}/lilt.toml`;
    const text = testConfigText(dir).replace('level = "warning"', 'level = "info"')
      .replace("console = false", "console = true");
    await Deno.writeTextFile(file, text);
    const server = await startLiltProcess(file);
    try {
      // Unchanged: nothing to say.
      const same = await lilt(["check", "config", "-c", file]);
      assert.equal(same.code, 0, same.stderr);
      assert.equal(same.stderr, "");

      await Deno.writeTextFile(
        file,
        text.replace(
          'c2s_interfaces = ["127.0.0.1:0"]',
          'c2s_interfaces = ["127.0.0.1:0", "[::1]:0"]',
        )
          .replace("auth_failure_delay = 0", "auth_failure_delay = 1"),
      );
      const changed = await lilt(["check", "config", "-c", file]);
      assert.equal(changed.code, 0, changed.stderr);
      assert.equal(
        changed.stderr,
        `${file}:3: warning: 'c2s_interfaces' differs from the running server's value and ` +
          "takes effect only when it restarts (config reload keeps the running value)\n",
      );
    } finally {
      await server.stop();
    }
  }));
