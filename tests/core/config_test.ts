// Tests for configuration loading: defaults and host inheritance on a valid file, and the
// exact file:line messages an operator sees for broken ones.

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  formatProblem,
  indexTomlLines,
  loadConfig,
  type LoadConfigResult,
  parseConfigText,
} from "../../core/config.ts";
import { HOST_OPTIONS, parseListenAddress } from "../../core/config_schema.ts";

const FILE = "/etc/lilt/conf.toml";

function messages(result: LoadConfigResult): string[] {
  return result.problems.map(formatProblem);
}

function load(text: string, options = {}): LoadConfigResult {
  return parseConfigText(text, "conf.toml", options);
}

const VALID = `# Lilt test configuration
data_dir = "./data"
admins = ["admin@localhost"]
modules = ["disco", "ping", "roster", "presence", "message"]
modules_disabled = ["presence"]
scram_iterations = 20000
c2s_interfaces = ["127.0.0.1:0", "[::1]:5222"]

[log]
level = "warning"
file = "logs/lilt.log"
categories = { "lilt.c2s" = "debug" }

[storage]
path = "db/lilt.sqlite"

[[host]]
domain = "localhost"
admins = ["Boss@LocalHost"]
scram_iterations = 50000

[[host]]
domain = "Example.COM"
modules = ["ping", "presence"]
modules_disabled = ["disco"]
c2s_require_encryption = false

[[component]]
domain = "conference.localhost"
module = "muc"
`;

Deno.test("a valid file gives values, defaults and resolved paths", () => {
  const result = parseConfigText(VALID, FILE);
  assert.deepEqual(messages(result), []);
  const config = result.config!;
  assert.equal(config.file, FILE);
  assert.equal(config.dataDir, "/etc/lilt/data");
  assert.deepEqual(config.storage, {
    driver: "sqlite",
    path: "/etc/lilt/data/db/lilt.sqlite",
    key: "",
    key_file: "",
    url: "",
    password: "",
    password_file: "",
    schema: "",
  });
  assert.deepEqual(config.log, {
    level: "warning",
    console: true,
    file: "/etc/lilt/logs/lilt.log",
    categories: { "lilt.c2s": "debug" },
  });
  assert.equal(config.hostDefault("scram_iterations"), 20000);
  assert.equal(config.hostDefault("c2s_stanza_size_limit"), 262144);
  assert.equal(config.hostDefault("c2s_require_encryption"), true);
  assert.equal(config.hostDefault("auth_failure_delay"), 1);
  assert.equal(config.get("data_dir"), "/etc/lilt/data");
  assert.deepEqual(config.get("c2s_interfaces"), ["127.0.0.1:0", "[::1]:5222"]);
  assert.deepEqual(config.get("c2s_direct_tls_interfaces"), ["127.0.0.1:5223"]);
  assert.equal(config.valueOf("no_such_option"), undefined);
});

Deno.test("options are read in their own scope only", () => {
  const config = parseConfigText(VALID, FILE).config!;
  // A host option read as if it were global would ignore every [[host]] value.
  assert.throws(
    // @ts-expect-error: the types refuse a host option here too
    () => config.get("scram_iterations"),
    /'scram_iterations' is set per host: read it with hostOption\(host, 'scram_iterations'\)/,
  );
  assert.throws(
    // @ts-expect-error: and a global option per host
    () => config.hostOption("localhost", "data_dir"),
    /'data_dir' is global/,
  );
  // @ts-expect-error: unknown names are refused
  assert.throws(() => config.get("no_such_option"), /Unknown global option 'no_such_option'/);
  assert.equal(config.valueOf("scram_iterations"), 20000);
  assert.equal(config.valueOf("scram_iterations", "localhost"), 50000);
  assert.equal(config.valueOf("data_dir", "localhost"), "/etc/lilt/data");
});

Deno.test("hosts inherit global options and may override them", () => {
  const config = parseConfigText(VALID, FILE).config!;
  assert.deepEqual(config.hosts.map((h) => [h.domain, h.line]), [["localhost", 17], [
    "example.com",
    22,
  ]]);
  assert.equal(config.hostOption("localhost", "scram_iterations"), 50000);
  assert.equal(config.hostOption("example.com", "scram_iterations"), 20000);
  assert.equal(config.hostOption("example.com", "c2s_require_encryption"), false);
  assert.equal(config.hostOption("localhost", "c2s_require_encryption"), true);
  assert.equal(config.hostOption("localhost", "c2s_idle_timeout"), 900);
  assert.equal(config.valueOf("unknown_thing", "localhost"), undefined);
  // Host lookups accept unprepared domains too.
  assert.equal(config.hostOption("EXAMPLE.com", "c2s_require_encryption"), false);
  // admins: the host's list adds to the global one, and JIDs are prepared.
  assert.deepEqual(config.hostOption("localhost", "admins"), ["admin@localhost", "boss@localhost"]);
  assert.deepEqual(config.hostOption("example.com", "admins"), ["admin@localhost"]);
});

Deno.test("a host's module list replaces the global one and disabled modules are removed", () => {
  const config = parseConfigText(VALID, FILE).config!;
  assert.deepEqual(config.hosts[0].modules, ["disco", "ping", "roster", "message"]);
  assert.deepEqual(config.hosts[1].modules, ["ping"]);
  assert.deepEqual(config.hosts[1].options, {
    modules: ["ping", "presence"],
    modules_disabled: ["disco"],
    c2s_require_encryption: false,
  });
});

Deno.test("components are listed with their modules and line", () => {
  const config = parseConfigText(VALID, FILE).config!;
  assert.deepEqual(config.components, [
    { domain: "conference.localhost", modules: ["muc"], options: {}, line: 28 },
  ]);
  const listed = parseConfigText(
    '[[host]]\ndomain = "localhost"\n[[component]]\ndomain = "svc.localhost"\n' +
      'modules = ["disco", "ping"]\n',
    FILE,
  );
  assert.deepEqual(messages(listed), []);
  assert.deepEqual(listed.config!.components[0].modules, ["disco", "ping"]);
  const both = parseConfigText(
    '[[host]]\ndomain = "localhost"\n[[component]]\ndomain = "svc.localhost"\n' +
      'module = "ping"\nmodules = ["disco"]\n',
    FILE,
  );
  assert.match(messages(both)[0], /either 'module' \(one\) or 'modules' \(a list\), not both/);
});

Deno.test("a minimal file uses the defaults everywhere", () => {
  const result = parseConfigText('[[host]]\ndomain = "localhost"\n', "/srv/lilt.toml");
  assert.deepEqual(messages(result), []);
  const config = result.config!;
  assert.equal(config.dataDir, "/srv/data");
  assert.deepEqual(config.storage, {
    driver: "sqlite",
    path: "/srv/data/lilt.sqlite",
    key: "",
    key_file: "",
    url: "",
    password: "",
    password_file: "",
    schema: "",
  });
  assert.deepEqual(config.log, { level: "info", console: true, file: "", categories: {} });
  assert.deepEqual(config.hosts[0].modules, HOST_OPTIONS.modules.default);
  assert.equal(config.hostDefault("certificate"), "");
  assert.equal(config.hostOption("localhost", "scram_iterations"), 10000);
});

Deno.test("module options are known, validated and read per host", () => {
  const moduleOptions = {
    muc_max_rooms: {
      type: "integer" as const,
      default: 100,
      min: 1,
      scope: "host" as const,
      description: "Rooms per service",
    },
  };
  const good = load(
    'muc_max_rooms = 10\n[[host]]\ndomain = "a"\n[[host]]\ndomain = "b"\nmuc_max_rooms = 20\n',
    { moduleOptions },
  );
  assert.deepEqual(messages(good), []);
  assert.equal(good.config!.valueOf("muc_max_rooms", "a"), 10);
  assert.equal(good.config!.valueOf("muc_max_rooms", "b"), 20);
  assert.equal(good.config!.lineOf("b", "muc_max_rooms"), 6);
  assert.equal(good.config!.lineOf("a", "muc_max_rooms"), 1);
  assert.equal(good.config!.lineOf(undefined, "muc_max_rooms"), 1);
  assert.equal(good.config!.lineOf("a", "nothing"), undefined);

  const defaults = load('[[host]]\ndomain = "a"\n', { moduleOptions });
  assert.equal(defaults.config!.valueOf("muc_max_rooms", "a"), 100);

  const bad = load('[[host]]\ndomain = "a"\nmuc_max_rooms = 0\n', { moduleOptions });
  assert.deepEqual(messages(bad), [
    "conf.toml:3: error: option 'muc_max_rooms' must be at least 1, found 0",
  ]);
});

Deno.test("raw values of undeclared options stay readable with their line", () => {
  const result = load('foo = { a = 1 }\n[[host]]\ndomain = "x"\nbar = "b"\n');
  const config = result.config!;
  assert.deepEqual({ ...config.hostRaw("x", "foo") as object }, { a: 1 });
  assert.equal(config.hostRaw("x", "bar"), "b");
  assert.equal(config.lineOf("x", "bar"), 4);
  assert.equal(config.lineOf("x", "foo"), 1);
});

Deno.test("unknown keys are warnings with a did-you-mean", () => {
  const result = load(
    [
      "c2s_require_encrypton = true",
      "[log]",
      "levle = 'debug'",
      "[storage]",
      "pth = 'x'",
      "[[host]]",
      "domain = 'localhost'",
      "scram_iteration = 5000",
      "completely_different = 1",
    ].join("\n"),
  );
  assert.deepEqual(messages(result), [
    "conf.toml:1: warning: unknown option 'c2s_require_encrypton' (did you mean 'c2s_require_encryption'?)",
    "conf.toml:3: warning: unknown option 'log.levle' (did you mean 'log.level'?)",
    "conf.toml:5: warning: unknown option 'storage.pth' (did you mean 'storage.path'?)",
    "conf.toml:8: warning: unknown option 'scram_iteration' (did you mean 'scram_iterations'?)",
    "conf.toml:9: warning: unknown option 'completely_different'",
  ]);
  assert.ok(result.config, "warnings alone do not stop the load");
});

Deno.test("wrong types and out-of-bounds values are errors at their line", () => {
  const result = load(
    [
      'c2s_stanza_size_limit = "big"', // 1
      "scram_iterations = 1000", // 2
      "auth_failure_delay = 10.5", // 3
      "c2s_require_encryption = 1", // 4
      "c2s_idle_timeout = 1.5", // 5
      "modules = ['ping', 3]", // 6
      "[log]", // 7
      'level = "verbose"', // 8
      "console = 'yes'", // 9
      "[[host]]", // 10
      'domain = "localhost"', // 11
      "c2s_stanza_size_limit = 999999999", // 12
    ].join("\n"),
  );
  assert.deepEqual(messages(result), [
    `conf.toml:1: error: option 'c2s_stanza_size_limit' must be an integer, found string "big"`,
    "conf.toml:2: error: option 'scram_iterations' must be at least 4096, found 1000",
    "conf.toml:3: error: option 'auth_failure_delay' must be at most 10, found 10.5",
    "conf.toml:4: error: option 'c2s_require_encryption' must be true or false, found integer 1",
    "conf.toml:5: error: option 'c2s_idle_timeout' must be an integer, found float 1.5",
    "conf.toml:6: error: option 'modules' must be an array of strings, found integer 3 at index 1",
    "conf.toml:8: error: option 'log.level' must be one of trace, debug, info, warning, error, " +
    `fatal, found string "verbose"`,
    `conf.toml:9: error: option 'log.console' must be true or false, found string "yes"`,
    "conf.toml:12: error: option 'c2s_stanza_size_limit' must be at most 16777216, found 999999999",
  ]);
  assert.equal(result.config, undefined);
});

Deno.test("problems are listed in file order, whole-file problems last", () => {
  const result = load('[log]\nlevel = "loud"\n[storage]\nkey = 1\nscram_iterations = 1\n');
  assert.deepEqual(result.problems.map((p) => p.line), [2, 4, 5, 0]);
});

Deno.test("an enum typo gets a suggestion", () => {
  const result = load('[log]\nlevel = "warn"\n[[host]]\ndomain = "a"\n');
  assert.deepEqual(messages(result), [
    "conf.toml:2: error: option 'log.level' must be one of trace, debug, info, warning, error, " +
    `fatal, found string "warn" (did you mean 'warning'?)`,
  ]);
});

Deno.test("invalid JIDs and listen addresses point at the element's line", () => {
  const result = load(
    [
      "admins = [", // 1
      '  "admin@localhost",', // 2
      '  "a@@b",', // 3
      '  "localhost",', // 4
      "]", // 5
      'c2s_interfaces = ["127.0.0.1:5222", "nowhere"]', // 6
      'c2s_direct_tls_interfaces = ["[::1]:99999"]', // 7
      "[[host]]", // 8
      'domain = "localhost"', // 9
      'admins = ["x@localhost/res"]', // 10
    ].join("\n"),
  );
  assert.deepEqual(messages(result), [
    "conf.toml:3: error: option 'admins' has an invalid JID 'a@@b': more than one '@'",
    `conf.toml:6: error: option 'c2s_interfaces' has an invalid address 'nowhere': expected ` +
    `"host:port" or "[ipv6]:port" with a port from 0 to 65535`,
    `conf.toml:7: error: option 'c2s_direct_tls_interfaces' has an invalid address ` +
    `'[::1]:99999': expected "host:port" or "[ipv6]:port" with a port from 0 to 65535`,
    `conf.toml:10: error: option 'admins' has 'x@localhost/res', expected a bare JID such as ` +
    `"admin@example.com"`,
  ]);
});

Deno.test("host and component sections are checked", () => {
  const result = load(
    [
      "[[host]]", // 1
      'domain = "localhost"', // 2
      "[[host]]", // 3
      'domain = "LocalHost."', // 4
      "[[host]]", // 5
      "scram_iterations = 5000", // 6
      "[[host]]", // 7
      'domain = "user@localhost"', // 8
      "[[host]]", // 9
      'domain = "bad domain"', // 10
      "data_dir = '/x'", // 11
      "[[component]]", // 12
      'domain = "localhost"', // 13
      'module = "muc"', // 14
      "[[component]]", // 15
      'domain = "c.localhost"', // 16
      "[[component]]", // 17
      'domain = "d.localhost"', // 18
      'module = "muc"', // 19
      'secret = "s"', // 20
    ].join("\n"),
  );
  assert.deepEqual(messages(result), [
    "conf.toml:4: error: duplicate domain 'localhost' (already defined at line 2)",
    "conf.toml:5: error: [[host]] section has no 'domain'",
    `conf.toml:8: error: 'domain' must be a bare domain such as "example.com", found 'user@localhost'`,
    "conf.toml:10: error: invalid domain 'bad domain': domainpart contains ' ' (U+0020): " +
    "spaces are not allowed",
    "conf.toml:11: error: option 'data_dir' is global and cannot be set in a [[host]] section",
    "conf.toml:13: error: duplicate domain 'localhost' (already defined at line 2)",
    "conf.toml:15: error: a [[component]] needs 'modules' (internal component) or 'secret' " +
    "(external component)",
    "conf.toml:20: error: a component has either 'modules' (internal) or 'secret' (external), " +
    "not both",
  ]);
});

Deno.test("at least one host is required", () => {
  assert.deepEqual(messages(load('data_dir = "x"\n')), [
    "conf.toml: error: no [[host]] section: at least one virtual host is required",
  ]);
});

Deno.test("storage.key is the passphrase; an empty key means a plain store", () => {
  const keyed = load('[storage]\npath = "x.sqlite"\nkey = "s3cret"\n[[host]]\ndomain = "a"\n');
  assert.deepEqual(messages(keyed), []);
  assert.equal(keyed.config?.storage.key, "s3cret");
  assert.equal(keyed.config?.storage.key_file, "");
  // What the admin shell's `config get storage` shows: that a key is set, not the key.
  assert.deepEqual(keyed.config?.valueOf("storage"), {
    driver: "sqlite",
    path: keyed.config?.storage.path,
    key: "(set, not shown)",
    key_file: "",
  });
  assert.ok(!JSON.stringify(keyed.config?.valueOf("storage", "a")).includes("s3cret"));
  const empty = load('[storage]\nkey = ""\n[[host]]\ndomain = "a"\n');
  assert.deepEqual(messages(empty), []);
  assert.equal(empty.config?.storage.key, "");
});

Deno.test("storage.key_file is read relative to the config file, without its last newline", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lilt-config-key-" });
  try {
    const file = join(dir, "lilt.toml");
    const keyFile = join(dir, "secret.key");
    await Deno.writeTextFile(keyFile, "correct horse\n\n", { mode: 0o600 });
    await Deno.chmod(keyFile, 0o600);
    const text = '[storage]\nkey_file = "secret.key"\n[[host]]\ndomain = "a"\n';
    await Deno.writeTextFile(file, text);
    const loaded = loadConfig(file);
    assert.deepEqual(messages(loaded), []);
    // One trailing newline is the editor's; a second one is part of the key.
    assert.equal(loaded.config?.storage.key, "correct horse\n");
    assert.equal(loaded.config?.storage.key_file, keyFile);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a key file others can read, an empty or missing one, and key with key_file are refused", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lilt-config-key-" });
  try {
    const file = join(dir, "lilt.toml");
    const keyFile = join(dir, "secret.key");
    const write = (storage: string) =>
      Deno.writeTextFile(file, `[storage]\n${storage}\n[[host]]\ndomain = "a"\n`);
    await Deno.writeTextFile(keyFile, "correct horse\n");
    await Deno.chmod(keyFile, 0o640);
    await write('key_file = "secret.key"');
    let loaded = loadConfig(file);
    assert.equal(loaded.config, undefined);
    assert.deepEqual(messages(loaded), [
      `${file}:2: error: storage.key_file '${keyFile}' can be accessed by group or others ` +
      "(mode 0640): run chmod 600 on it",
    ]);
    await Deno.chmod(keyFile, 0o600);
    await write('key = "inline"\nkey_file = "secret.key"');
    loaded = loadConfig(file);
    assert.deepEqual(messages(loaded), [
      `${file}:3: error: set either 'storage.key' or 'storage.key_file', not both ` +
      "(key_file is recommended)",
    ]);
    await Deno.writeTextFile(keyFile, "\n");
    await write('key_file = "secret.key"');
    assert.deepEqual(messages(loadConfig(file)), [
      `${file}:2: error: storage.key_file '${keyFile}' is empty`,
    ]);
    await write('key_file = "nowhere.key"');
    const missing = messages(loadConfig(file));
    assert.equal(missing.length, 1);
    assert.match(missing[0], /:2: error: cannot read storage\.key_file '.*nowhere\.key': /);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("[host] written as a plain table is explained", () => {
  assert.deepEqual(messages(load('[host]\ndomain = "a"\n')), [
    "conf.toml:1: error: 'host' must be written as [[host]] sections (an array of tables), " +
    "found a table",
  ]);
});

Deno.test("certificate and key must be set together", () => {
  const result = load('certificate = "c.pem"\n[[host]]\ndomain = "a"\nkey = "k.pem"\n');
  assert.deepEqual(messages(result), [
    "conf.toml:1: error: 'certificate' is set without 'key' in the top-level options: set both or neither",
    "conf.toml:4: error: 'key' is set without 'certificate' in [[host]] 'a': set both or neither",
  ]);
});

Deno.test("a TOML syntax error reports its line and column", () => {
  assert.deepEqual(messages(load('a = 1\n[log]\nlevel = "info\n')), [
    "conf.toml:3: error: TOML syntax error at column 14: control characters are not allowed " +
    "in strings",
  ]);
  assert.deepEqual(messages(load("[[host]]\ndomain = \n")), [
    "conf.toml:2: error: TOML syntax error at column 10: invalid value",
  ]);
});

Deno.test("a missing file is a problem on line 0", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "missing.toml");
    const result = loadConfig(path);
    assert.equal(result.config, undefined);
    assert.equal(result.problems.length, 1);
    assert.equal(result.problems[0].line, 0);
    assert.match(
      formatProblem(result.problems[0]),
      /^.*missing\.toml: error: cannot read the file/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadConfig reads a file and resolves paths against its folder", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "lilt.toml");
    await Deno.writeTextFile(path, 'data_dir = "state"\n[[host]]\ndomain = "localhost"\n');
    const result = loadConfig(path);
    assert.deepEqual(messages(result), []);
    assert.equal(result.config!.dataDir, join(dir, "state"));
    assert.equal(result.config!.storage.path, join(dir, "state", "lilt.sqlite"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the line index follows tables, arrays of tables, inline tables and strings", () => {
  const index = indexTomlLines(
    [
      'a = """', // 1
      "b = 1", // 2  (inside a string)
      '"""', // 3
      "[log]", // 4
      "categories = {", // 5
      '  "lilt.c2s" = "debug",', // 6
      "  other.x = 'y' }", // 7
      "[[host]] # first", // 8
      "domain = 'one'", // 9
      "list = [1,", // 10
      "  2]", // 11
      "[[host]]", // 12
      "'quoted key' = 2", // 13
      "[host.sub]", // 14
      "k = 'v' # comment with = sign", // 15
    ].join("\n"),
  );
  assert.equal(index.lineOf(["a"]), 1);
  assert.equal(index.lineOf(["b"]), undefined);
  assert.equal(index.lineOf(["log"]), 4);
  assert.equal(index.lineOf(["log", "categories", "lilt.c2s"]), 6);
  assert.equal(index.lineOf(["log", "categories", "other", "x"]), 7);
  assert.equal(index.lineOf(["host", 0]), 8);
  assert.equal(index.lineOf(["host", 0, "domain"]), 9);
  assert.equal(index.lineOf(["host", 0, "list", 1]), 11);
  assert.equal(index.lineOf(["host", 1]), 12);
  assert.equal(index.lineOf(["host", 1, "quoted key"]), 13);
  assert.equal(index.lineOf(["host", 1, "sub", "k"]), 15);
  assert.equal(index.nearestLineOf(["host", 1, "missing"]), 12);
  assert.equal(index.nearestLineOf(["nothing"]), 0);
});

Deno.test("listen addresses accept IPv4, [IPv6], names and '*' with ports 0-65535", () => {
  assert.deepEqual(parseListenAddress("127.0.0.1:5222"), { host: "127.0.0.1", port: 5222 });
  assert.deepEqual(parseListenAddress("[::1]:0"), { host: "::1", port: 0 });
  assert.deepEqual(parseListenAddress("*:5269"), { host: "*", port: 5269 });
  assert.deepEqual(parseListenAddress("localhost:5222"), { host: "localhost", port: 5222 });
  assert.equal(parseListenAddress("::1:5222"), undefined);
  assert.equal(parseListenAddress("127.0.0.1"), undefined);
  assert.equal(parseListenAddress("127.0.0.1:65536"), undefined);
  assert.equal(parseListenAddress("1.2.3:5"), undefined);
  assert.equal(parseListenAddress("[nope]:5"), undefined);
});

Deno.test("storage.driver = postgresql takes a URL without password, a password file and a schema", () => {
  const dir = Deno.makeTempDirSync();
  try {
    Deno.writeTextFileSync(`${dir}/pg_password`, "s3cret\n", { mode: 0o600 });
    Deno.chmodSync(`${dir}/pg_password`, 0o600);
    const good = parseConfigText(
      '[storage]\ndriver = "postgresql"\nurl = "postgresql://lilt@db.example:5432/lilt"\n' +
        'password_file = "pg_password"\nschema = "xmpp"\n[[host]]\ndomain = "a"\n',
      `${dir}/lilt.toml`,
    );
    assert.deepEqual(messages(good), []);
    const storage = good.config!.storage;
    assert.equal(storage.driver, "postgresql");
    assert.equal(storage.url, "postgresql://lilt@db.example:5432/lilt");
    assert.equal(storage.password, "s3cret");
    assert.equal(storage.password_file, `${dir}/pg_password`);
    assert.equal(storage.schema, "xmpp");
    // The shell shows where the data is, never the password.
    const shown = JSON.stringify(good.config!.valueOf("storage"));
    assert.ok(shown.includes("db.example") && !shown.includes("s3cret"));

    const check = (text: string) => messages(parseConfigText(text, `${dir}/lilt.toml`));
    const host = '[[host]]\ndomain = "a"\n';
    assert.match(check('[storage]\ndriver = "mysql"\n' + host)[0], /"sqlite" or "postgresql"/);
    assert.match(check('[storage]\ndriver = "postgresql"\n' + host)[0], /needs storage\.url/);
    assert.match(
      check('[storage]\ndriver = "postgresql"\nurl = "postgresql://u:pw@h/d"\n' + host)[0],
      /must not hold the password/,
    );
    assert.match(
      check('[storage]\ndriver = "postgresql"\nurl = "mysql://h/d"\n' + host)[0],
      /must look like postgresql:\/\//,
    );
    assert.match(check('[storage]\nurl = "postgresql://h/d"\n' + host)[0], /needs storage\.driver/);
    assert.match(
      check('[storage]\ndriver = "postgresql"\nurl = "postgresql://h/d"\nkey = "k"\n' + host)[0],
      /encrypts the embedded store only/,
    );
    assert.match(
      check(
        '[storage]\ndriver = "postgresql"\nurl = "postgresql://h/d"\nschema = "X-1"\n' + host,
      )[0],
      /lower-case SQL name/,
    );
    Deno.chmodSync(`${dir}/pg_password`, 0o644);
    assert.match(
      check(
        '[storage]\ndriver = "postgresql"\nurl = "postgresql://h/d"\npassword_file = "pg_password"\n' +
          host,
      )[0],
      /storage\.password_file .* chmod 600/,
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
