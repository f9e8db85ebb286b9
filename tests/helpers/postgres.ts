// A PostgreSQL server for the tests of the PostgreSQL driver and of servers stored in it: the
// one LILT_TEST_POSTGRES_URL names, or a throwaway cluster (scripts/postgres/cluster) this test
// process starts once and stops when it exits. Each test server gets a schema of its own.

import { fileURLToPath } from "node:url";
import { openPostgres, quoteIdentifier } from "../../core/storage/postgresql.ts";

const CLUSTER_SCRIPT = fileURLToPath(new URL("../../scripts/postgres/cluster", import.meta.url));

let cluster: Promise<string> | undefined;

/**
 * The URL of the PostgreSQL server tests use: LILT_TEST_POSTGRES_URL when set, otherwise a
 * cluster started for this test process (on first call; stopped and removed at exit).
 *
 * @example
 * ```ts
 * const url = await postgresUrl();
 * using schema = freshSchema(url);
 * const db = openPostgres({ url, schema: schema.name });
 * ```
 */
export function postgresUrl(): Promise<string> {
  const named = Deno.env.get("LILT_TEST_POSTGRES_URL");
  if (named) return Promise.resolve(named);
  return cluster ??= startCluster();
}

async function startCluster(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "lilt-postgres-" });
  const started = performance.now();
  const output = await new Deno.Command(CLUSTER_SCRIPT, {
    // Stopped by the cluster script itself once this process is gone, even when it is killed
    // before the unload handler below runs.
    args: ["start", dir, "--owner-pid", String(Deno.pid)],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!output.success) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw new Error(
      `scripts/postgres/cluster start failed (exit ${output.code}): ` +
        new TextDecoder().decode(output.stderr).trim(),
    );
  }
  globalThis.addEventListener("unload", () => {
    new Deno.Command(CLUSTER_SCRIPT, { args: ["stop", dir], stdout: "null", stderr: "null" })
      .outputSync();
  });
  const url = new TextDecoder().decode(output.stdout).trim();
  if (!url.startsWith("postgresql://")) {
    throw new Error(`Expected a postgresql:// URL from scripts/postgres/cluster, found '${url}'`);
  }
  startMs = performance.now() - started;
  return url;
}

let startMs: number | undefined;

/** How long starting this process's cluster took (undefined when none was started). */
export function clusterStartMs(): number | undefined {
  return startMs;
}

let schemas = 0;

/** A schema of its own for one test server; `drop()` removes it and everything in it. */
export interface TestSchema {
  /** The schema's name (for `openPostgres({ schema })`). */
  readonly name: string;
  /** Drops the schema (CASCADE). Idempotent. */
  drop(): void;
  /** Same as `drop()`, for `using`. */
  [Symbol.dispose](): void;
}

/**
 * A unique schema name on the server at `url` (nothing is created: `openPostgres` creates it on
 * first use), with a `drop()` for the end of the test.
 */
export function freshSchema(url: string): TestSchema {
  const random = crypto.getRandomValues(new Uint32Array(1))[0].toString(36);
  const name = `lilt_test_${Deno.pid}_${++schemas}_${random}`;
  let dropped = false;
  const drop = () => {
    if (dropped) return;
    dropped = true;
    const db = openPostgres({ url, applicationName: "lilt-test-cleanup" });
    try {
      db.exec(`DROP SCHEMA IF EXISTS ${quoteIdentifier(name)} CASCADE`);
    } finally {
      db.close();
    }
  };
  return { name, drop, [Symbol.dispose]: drop };
}
