// Starts a real Lilt server for a test: its own temp data dir, listeners on port 0, quiet
// logging, and accounts created up front. Stop it with `await t.stop()`.

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

/** Builds the TOML text of a test configuration. */
export function testConfigText(dataDir: string, options: TestServerOptions = {}): string {
  const modules = options.modules ?? Object.keys(builtinModules);
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
