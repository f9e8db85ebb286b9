// Starts a real Lilt server for a test: its own temp data dir, listeners on port 0, quiet
// logging, and accounts created up front. Stop it with `await t.stop()`.

import { createHash } from "node:crypto";
import { AccountStore } from "../../core/auth/accounts.ts";
import { type Config, parseConfigText } from "../../core/config.ts";
import { Server } from "../../core/server.ts";
import { builtinModules } from "../../mod/builtin.ts";

/** Options for `startTestServer`. */
export interface TestServerOptions {
  /** Extra TOML appended to the global section (before [log]). */
  globalToml?: string;
  /** Extra TOML inside the [[host]] "localhost" table. */
  hostToml?: string;
  /** Extra TOML appended at the end of the file (more [[host]] or [[component]] sections). */
  extraToml?: string;
  /** The domain of the [[host]] section (default "localhost"). */
  domain?: string;
  /** Accounts to create: "user" -> password, on the host. */
  users?: Record<string, string>;
  /** Modules for every host (default: all built-in modules). */
  modules?: string[];
  /**
   * Reuse this data directory (e.g. to restart a server on the data a previous one left);
   * it is then not deleted by `stop()`. Accounts in `users` that already exist are kept.
   */
  dataDir?: string;
}

/** A running test server. */
export interface TestServer {
  server: Server;
  config: Config;
  dataDir: string;
  /** STARTTLS port. */
  port: number;
  /** Direct TLS port. */
  tlsPort: number;
  stop(): Promise<void>;
}

/** True when the suite runs against PostgreSQL (LILT_TEST_STORAGE=postgresql, issue 19). */
export const TESTING_ON_POSTGRESQL = Deno.env.get("LILT_TEST_STORAGE") === "postgresql";

/**
 * The `[storage]` table of a test server's configuration: none (the embedded store under
 * `dataDir`), or with LILT_TEST_STORAGE=postgresql a schema of its own, named after `dataDir`
 * (a server restarted on the same data finds it again), in the cluster at
 * LILT_TEST_POSTGRES_URL (scripts/test starts one). A test that writes its own `[storage]`
 * table keeps it.
 */
export function testStorageToml(dataDir: string, otherToml = ""): string {
  if (!TESTING_ON_POSTGRESQL || /^\[storage\]/m.test(otherToml)) return "";
  const url = Deno.env.get("LILT_TEST_POSTGRES_URL");
  if (!url) {
    throw new Error(
      "LILT_TEST_STORAGE=postgresql needs LILT_TEST_POSTGRES_URL: run the tests with " +
        "scripts/test, which starts a PostgreSQL cluster (scripts/postgres/cluster)",
    );
  }
  const schema = `t_${createHash("sha256").update(dataDir).digest("hex").slice(0, 24)}`;
  return `[storage]\ndriver = "postgresql"\nurl = ${JSON.stringify(url)}\nschema = "${schema}"\n`;
}

/** Builds the TOML text of a test configuration. */
export function testConfigText(dataDir: string, options: TestServerOptions = {}): string {
  const modules = options.modules ?? Object.keys(builtinModules);
  const storage = testStorageToml(
    dataDir,
    `${options.globalToml ?? ""}\n${options.hostToml ?? ""}\n${options.extraToml ?? ""}`,
  );
  return `data_dir = ${JSON.stringify(dataDir)}
modules = ${JSON.stringify(modules)}
c2s_interfaces = ["127.0.0.1:0"]
c2s_direct_tls_interfaces = ["127.0.0.1:0"]
scram_iterations = 4096
auth_failure_delay = 0
${options.globalToml ?? ""}
[log]
level = "warning"
console = false

${storage}
[[host]]
domain = ${JSON.stringify(options.domain ?? "localhost")}
${options.hostToml ?? ""}
${options.extraToml ?? ""}
`;
}

/** Starts a server on ephemeral ports with a fresh data directory. */
export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const ownDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? await Deno.makeTempDir({ prefix: "lilt-test-" });
  const text = testConfigText(dataDir, options);
  const { config, problems } = parseConfigText(text, `${dataDir}/test.toml`);
  if (!config) throw new Error(`Test config invalid: ${JSON.stringify(problems)}`);
  const server = await Server.start(config, { modules: builtinModules, configureLogging: false });
  const accounts: AccountStore = server.accounts;
  for (const [user, password] of Object.entries(options.users ?? {})) {
    const domain = options.domain ?? "localhost";
    if (!accounts.exists(domain, user)) await accounts.create(domain, user, password);
  }
  return {
    server,
    config,
    dataDir,
    port: server.port("c2s"),
    tlsPort: server.port("c2s_direct_tls"),
    async stop() {
      await server.shutdown();
      if (ownDir) await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    },
  };
}
