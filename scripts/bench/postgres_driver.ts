// Measures the PostgreSQL driver (core/storage/postgresql.ts) on this machine's loopback: the
// round trip of the key-value store's prepared SELECT, and a 1,000-row INSERT in one
// transaction, with node:sqlite on a file beside it for scale (issue 19).
//
// Usage: scripts/deno run -A scripts/bench/postgres_driver.ts [--lookups=10000] [--rows=1000]
//   [--batches=20]
// Uses LILT_TEST_POSTGRES_URL when set, else starts a throwaway cluster (scripts/postgres/cluster).

import { parseArgs } from "node:util";
import { DatabaseSync } from "node:sqlite";
import type { SqlConnection } from "../../core/storage/connection.ts";
import { migrate } from "../../core/storage/migrations.ts";
import { openPostgres } from "../../core/storage/postgresql.ts";
import { clusterStartMs, freshSchema, postgresUrl } from "../../tests/helpers/postgres.ts";

const { values: opts } = parseArgs({
  args: Deno.args,
  options: {
    lookups: { type: "string", default: "10000" },
    rows: { type: "string", default: "1000" },
    batches: { type: "string", default: "20" },
  },
});
const LOOKUPS = Number(opts.lookups);
const ROWS = Number(opts.rows);
const BATCHES = Number(opts.batches);
const USERS = 1000;

const SELECT = "SELECT value FROM kv WHERE host = ? AND user = ? AND store = ?";
const INSERT = "INSERT INTO kv (host, user, store, value) VALUES (?, ?, ?, ?) " +
  "ON CONFLICT (host, user, store) DO UPDATE SET value = excluded.value";

interface Figures {
  lookup_us: { p50: number; p99: number; mean: number };
  insert_batch_ms: { p50: number; min: number; max: number };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

function round(x: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

function measure(db: SqlConnection): Figures {
  const fill = db.prepare(INSERT);
  db.exec("BEGIN");
  for (let u = 0; u < USERS; u++) fill.run("example.com", `user${u}`, "vcard", `{"n":${u}}`);
  db.exec("COMMIT");
  const select = db.prepare(SELECT);
  for (let k = 0; k < 1000; k++) select.get("example.com", `user${k % USERS}`, "vcard");
  const times: number[] = new Array(LOOKUPS);
  for (let k = 0; k < LOOKUPS; k++) {
    const user = `user${(k * 7919) % USERS}`;
    const started = performance.now();
    const row = select.get("example.com", user, "vcard");
    times[k] = (performance.now() - started) * 1000;
    if (row === undefined) throw new Error(`Expected a row for ${user}`);
  }
  times.sort((a, b) => a - b);
  const batches: number[] = [];
  for (let b = 0; b < BATCHES; b++) {
    const started = performance.now();
    db.exec("BEGIN");
    for (let r = 0; r < ROWS; r++) fill.run("example.com", `batch${b}-${r}`, "vcard", `{"r":${r}}`);
    db.exec("COMMIT");
    batches.push(performance.now() - started);
  }
  batches.sort((a, b) => a - b);
  return {
    lookup_us: {
      p50: round(percentile(times, 0.5)),
      p99: round(percentile(times, 0.99)),
      mean: round(times.reduce((a, b) => a + b, 0) / times.length),
    },
    insert_batch_ms: {
      p50: round(percentile(batches, 0.5)),
      min: round(batches[0]),
      max: round(batches[batches.length - 1]),
    },
  };
}

const url = await postgresUrl();
const schema = freshSchema(url);
const postgres = openPostgres({ url, schema: schema.name });
let pg: Figures;
try {
  migrate(postgres);
  pg = measure(postgres);
} finally {
  postgres.close();
  schema.drop();
}

const dir = await Deno.makeTempDir({ prefix: "lilt-bench-sqlite-" });
let sqlite: Figures;
try {
  const db = new DatabaseSync(`${dir}/lilt.sqlite`);
  db.exec("PRAGMA journal_mode = WAL");
  db.exec("PRAGMA synchronous = NORMAL");
  migrate(db);
  sqlite = measure(db);
  db.close();
} finally {
  await Deno.remove(dir, { recursive: true });
}

const startMs = clusterStartMs();
console.log(`                         PostgreSQL (libpq, loopback)   node:sqlite (WAL file)`);
console.log(
  `kv SELECT p50 / p99 µs   ${pg.lookup_us.p50} / ${pg.lookup_us.p99}`.padEnd(56) +
    `${sqlite.lookup_us.p50} / ${sqlite.lookup_us.p99}`,
);
console.log(
  `${ROWS}-row INSERT tx ms     ${pg.insert_batch_ms.p50} (min ${pg.insert_batch_ms.min})`
    .padEnd(56) + `${sqlite.insert_batch_ms.p50} (min ${sqlite.insert_batch_ms.min})`,
);
if (startMs !== undefined) console.log(`cluster start: ${Math.round(startMs)} ms`);
console.log(JSON.stringify({
  postgresql: pg,
  sqlite,
  lookups: LOOKUPS,
  rows: ROWS,
  batches: BATCHES,
  cluster_start_ms: startMs === undefined ? null : Math.round(startMs),
}));
