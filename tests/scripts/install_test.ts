// Tests for scripts/install and the packaging files it lays out: modes and owners in a
// temporary root, the configuration it writes (valid, never replaced), the systemd unit through
// `systemd-analyze verify`, the sysusers/tmpfiles files through systemd's own tools, the
// logrotate file through logrotate, and the FreeBSD rc.d script's syntax.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const decoder = new TextDecoder();

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(command: string, args: string[], cwd = ROOT): Promise<Run> {
  const output = await new Deno.Command(command, { args, cwd, stdin: "null" }).output();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

async function onPath(program: string): Promise<boolean> {
  return (await run("sh", ["-c", `command -v ${program}`])).code === 0;
}

/** A temporary root with an executable standing in for the compiled binary (a fixture). */
async function withRoot(body: (root: string, binary: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "lilt-install-" });
  const root = `${dir}/root`;
  const binary = `${dir}/lilt-binary`;
  try {
    await Deno.mkdir(root);
    await Deno.writeTextFile(binary, "#!/bin/sh\necho 'test fixture for scripts/install'\n");
    await Deno.chmod(binary, 0o755);
    await body(root, binary);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function install(root: string, binary: string): Promise<Run> {
  return run("bash", [`${ROOT}scripts/install`, "--root", root, "--binary", binary]);
}

async function modeAndOwner(path: string): Promise<string> {
  const info = await Deno.stat(path);
  return `${(info.mode! & 0o7777).toString(8).padStart(4, "0")} ${info.uid}:${info.gid}`;
}

const LILT_UID = 987;
const LILT_GID = 986;

Deno.test("install --root lays out every file with its mode and the target's owners", async () => {
  await withRoot(async (root, binary) => {
    // The target system's own user database decides the ids (as in an image being built).
    await Deno.mkdir(`${root}/etc`);
    await Deno.writeTextFile(
      `${root}/etc/passwd`,
      `root:x:0:0:root:/root:/bin/sh\nlilt:x:${LILT_UID}:${LILT_GID}::/var/lib/lilt:/usr/sbin/nologin\n`,
    );
    await Deno.writeTextFile(`${root}/etc/group`, `root:x:0:\nlilt:x:${LILT_GID}:\n`);
    const result = await install(root, binary);
    assert.equal(result.code, 0, result.stderr);
    const asRoot = Deno.uid() === 0;
    const lilt = asRoot ? `${LILT_UID}:${LILT_GID}` : `${Deno.uid()}:${Deno.gid()}`;
    const rootGroupLilt = asRoot ? `0:${LILT_GID}` : `${Deno.uid()}:${Deno.gid()}`;
    const rootOwned = asRoot ? "0:0" : `${Deno.uid()}:${Deno.gid()}`;
    const expected: Record<string, string> = {
      "/usr/local/bin/lilt": `0755 ${rootOwned}`,
      "/etc/lilt": `0750 ${rootGroupLilt}`,
      "/etc/lilt/lilt.toml": `0640 ${rootGroupLilt}`,
      "/etc/systemd/system/lilt.service": `0644 ${rootOwned}`,
      "/etc/sysusers.d/lilt.conf": `0644 ${rootOwned}`,
      "/etc/tmpfiles.d/lilt.conf": `0644 ${rootOwned}`,
      "/etc/logrotate.d/lilt": `0644 ${rootOwned}`,
      "/var/lib/lilt": `0750 ${lilt}`,
      "/var/log/lilt": `0750 ${lilt}`,
    };
    for (const [path, wanted] of Object.entries(expected)) {
      assert.equal(`${path} ${await modeAndOwner(root + path)}`, `${path} ${wanted}`);
    }
    assert.equal(
      await Deno.readTextFile(`${root}/usr/local/bin/lilt`),
      await Deno.readTextFile(binary),
    );
    assert.equal(
      await Deno.readTextFile(`${root}/etc/systemd/system/lilt.service`),
      await Deno.readTextFile(`${ROOT}packaging/systemd/lilt.service`),
    );
    assert.match(result.stdout, /^installed \/usr\/local\/bin\/lilt \(0755 root:root\)$/m);
    assert.match(result.stdout, /^installed \/etc\/lilt\/lilt\.toml \(0640 root:lilt\)/m);
    assert.match(result.stdout, /^folder \/var\/lib\/lilt \(0750 lilt:lilt\)$/m);
    if (asRoot) assert.doesNotMatch(result.stdout, /owners not set/);
  });
});

Deno.test("the installed configuration passes lilt check config, and a second install keeps it", async () => {
  await withRoot(async (root, binary) => {
    const first = await install(root, binary);
    assert.equal(first.code, 0, first.stderr);
    const config = `${root}/etc/lilt/lilt.toml`;
    const text = await Deno.readTextFile(config);
    assert.match(text, /^data_dir = "\/var\/lib\/lilt"$/m);
    assert.match(text, /^admin_socket = "\/run\/lilt\/lilt\.sock"$/m);
    // Every other line is the example's.
    const example = await Deno.readTextFile(`${ROOT}conf.example.toml`);
    const added = text.split("\n").filter((line) => !example.split("\n").includes(line));
    assert.equal(added.length, 5, added.join("\n"));

    const check = await run(Deno.execPath(), [
      "run",
      "-A",
      "main.ts",
      "check",
      "config",
      "-c",
      config,
    ]);
    assert.equal(check.code, 0, check.stderr);
    assert.match(check.stdout + check.stderr, /lilt\.toml: OK/);

    const edited = text.replace('domain = "localhost"', 'domain = "chat.example.org"');
    await Deno.writeTextFile(config, edited);
    const second = await install(root, binary);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /^kept the existing \/etc\/lilt\/lilt\.toml$/m);
    assert.match(second.stdout, /^updated \/etc\/systemd\/system\/lilt\.service/m);
    assert.equal(await Deno.readTextFile(config), edited);
  });
});

Deno.test("without a lilt user in the target, install lists the owners and systemd sets them", async () => {
  await withRoot(async (root, binary) => {
    const result = await install(root, binary);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^owners not set \(.*\):$/m);
    for (const line of ["root:lilt /etc/lilt/lilt.toml", "lilt:lilt /var/lib/lilt"]) {
      assert.match(result.stdout, new RegExp(`^  ${line}$`, "m"));
    }
    if (Deno.uid() !== 0 || !await onPath("systemd-sysusers")) {
      console.log("skipped the sysusers/tmpfiles part: needs root and systemd's tools");
      return;
    }
    // What the first boot does: systemd-sysusers makes the user, systemd-tmpfiles the owners.
    const sysusers = await run("systemd-sysusers", [
      `--root=${root}`,
      `${root}/etc/sysusers.d/lilt.conf`,
    ]);
    assert.equal(sysusers.code, 0, sysusers.stderr);
    const entry = (await Deno.readTextFile(`${root}/etc/passwd`)).split("\n")
      .find((line) => line.startsWith("lilt:"))!;
    assert.match(entry, /^lilt:x:\d+:\d+:Lilt XMPP server:\/var\/lib\/lilt:\/usr\/sbin\/nologin$/);
    const [, , uid, gid] = entry.split(":");
    const tmpfiles = await run("systemd-tmpfiles", [
      `--root=${root}`,
      "--create",
      `${root}/etc/tmpfiles.d/lilt.conf`,
    ]);
    assert.equal(tmpfiles.code, 0, tmpfiles.stderr);
    assert.equal(await modeAndOwner(`${root}/var/lib/lilt`), `0750 ${uid}:${gid}`);
    assert.equal(await modeAndOwner(`${root}/var/log/lilt`), `0750 ${uid}:${gid}`);
    assert.equal(await modeAndOwner(`${root}/etc/lilt/lilt.toml`), `0640 0:${gid}`);
  });
});

Deno.test("install refuses a missing binary and unknown arguments", async () => {
  await withRoot(async (root) => {
    const missing = await install(root, `${root}/nothing-here`);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^install: no executable Lilt binary at .*nothing-here: build it/);
    const unknown = await run("bash", [`${ROOT}scripts/install`, "--prefix", "/opt"]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown argument '--prefix'/);
    assert.deepEqual([...Deno.readDirSync(root)], []);
  });
});

/** systemd-analyze, installing Debian's systemd package when it is missing and we can. */
async function systemdAnalyze(): Promise<string | undefined> {
  if (await onPath("systemd-analyze")) return undefined;
  if (Deno.uid() !== 0 || !await onPath("apt-get")) {
    return "systemd-analyze is missing and apt-get cannot be run as root here";
  }
  const installed = await run("apt-get", [
    "install",
    "-y",
    "-qq",
    "--no-install-recommends",
    "systemd",
  ]);
  if (installed.code !== 0 || !await onPath("systemd-analyze")) {
    return `apt-get install systemd failed: ${installed.stderr.trim().split("\n").pop()}`;
  }
  return undefined;
}

Deno.test("systemd-analyze verify accepts the installed unit", async () => {
  const unavailable = await systemdAnalyze();
  if (unavailable) {
    console.log(`skipped: ${unavailable}`);
    return;
  }
  await withRoot(async (root, binary) => {
    const result = await install(root, binary);
    assert.equal(result.code, 0, result.stderr);
    // verify checks that ExecStart and ExecReload exist and that the units the service depends
    // on are known, inside --root: give the root this system's units and kill(1).
    const units = ["/usr/lib/systemd/system", "/lib/systemd/system"].find((dir) => {
      try {
        return Deno.statSync(`${dir}/sysinit.target`).isFile;
      } catch {
        return false;
      }
    });
    assert.ok(units, "no sysinit.target in /usr/lib/systemd/system or /lib/systemd/system");
    await Deno.mkdir(`${root}/usr/lib/systemd`, { recursive: true });
    const copied = await run("cp", ["-r", units, `${root}/usr/lib/systemd/system`]);
    assert.equal(copied.code, 0, copied.stderr);
    await Deno.mkdir(`${root}/bin`);
    await Deno.copyFile("/bin/kill", `${root}/bin/kill`);
    await Deno.chmod(`${root}/bin/kill`, 0o755);

    const verify = () => run("systemd-analyze", ["verify", `--root=${root}`, "lilt.service"]);
    const good = await verify();
    // Unknown keys and bad values are only warnings (exit 0): none may be printed either.
    assert.deepEqual([good.code, good.stderr, good.stdout], [0, "", ""]);

    // The same check notices a mistake.
    const unit = `${root}/etc/systemd/system/lilt.service`;
    const text = await Deno.readTextFile(unit);
    await Deno.writeTextFile(unit, text.replace("ProtectSystem=strict", "ProtectSystem=stric"));
    assert.match((await verify()).stderr, /Failed to parse protect system value/);
    await Deno.remove(`${root}/usr/local/bin/lilt`);
    await Deno.writeTextFile(unit, text);
    const noBinary = await verify();
    assert.notEqual(noBinary.code, 0);
    assert.match(noBinary.stderr, /\/usr\/local\/bin\/lilt is not executable/);
  });
});

Deno.test("the unit keeps the hardening and never denies V8 writable executable memory", async () => {
  const unit = await Deno.readTextFile(`${ROOT}packaging/systemd/lilt.service`);
  for (
    const line of [
      "Type=notify",
      "ExecStart=/usr/local/bin/lilt start -c /etc/lilt/lilt.toml",
      "ExecReload=/bin/kill -HUP $MAINPID",
      "User=lilt",
      "ProtectSystem=strict",
      "ProtectHome=true",
      "PrivateTmp=true",
      "NoNewPrivileges=true",
      "ReadWritePaths=/var/lib/lilt /var/log/lilt /run/lilt",
      "RuntimeDirectory=lilt",
      "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
      "AmbientCapabilities=CAP_NET_BIND_SERVICE",
      "Restart=on-failure",
    ]
  ) {
    assert.ok(unit.split("\n").includes(line), `missing: ${line}`);
  }
  assert.doesNotMatch(unit, /^MemoryDenyWriteExecute/m);
  assert.match(unit, /^LimitNOFILE=\d+$/m);
});

Deno.test("logrotate reads the logrotate file", async () => {
  if (!await onPath("logrotate")) {
    console.log("skipped: logrotate is not installed (scripts/install-test-deps installs it)");
    return;
  }
  const dir = await Deno.makeTempDir({ prefix: "lilt-logrotate-" });
  try {
    // This system has no lilt user, which logrotate resolves while reading: root stands in.
    const text = await Deno.readTextFile(`${ROOT}packaging/logrotate/lilt`);
    assert.match(text, /^\tsu lilt lilt$/m);
    await Deno.writeTextFile(`${dir}/lilt`, text.replaceAll(" lilt lilt", " root root"));
    const result = await run("logrotate", ["--debug", "--state", `${dir}/state`, `${dir}/lilt`]);
    assert.equal(result.code, 0, result.stderr);
    assert.doesNotMatch(result.stdout + result.stderr, /^error:/m);
    assert.match(result.stdout + result.stderr, /considering log \/var\/log\/lilt\/\*\.log/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the FreeBSD rc.d script is valid sh with rcvar, reload and the lilt user", async () => {
  const script = `${ROOT}packaging/freebsd/lilt`;
  const syntax = await run("sh", ["-n", script]);
  assert.equal(syntax.code, 0, syntax.stderr);
  assert.equal((await Deno.stat(script)).mode! & 0o111, 0o111);
  const text = await Deno.readTextFile(script);
  for (
    const pattern of [
      /^rcvar=lilt_enable$/m,
      /^: \$\{lilt_user:="lilt"\}$/m,
      /^extra_commands="reload"$/m,
      /^\tkill -HUP /m,
      /\/usr\/local\/libexec\/lilt\/lilt\.js/,
      /start -c \$\{lilt_config\}/,
      /^run_rc_command "\$1"$/m,
    ]
  ) {
    assert.match(text, pattern);
  }
});
