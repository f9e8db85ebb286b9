// How long a XEP-0313 query of one page takes from a big archive: a Lilt server (in this process)
// whose account holds N archived messages (default 1,000,000) answers pages of 50 over TLS,
// measured at the client: the newest page, a page in the middle (after-id), the oldest, a page
// filtered by `with`, and one by time. Prints a small table and one JSON line.
//
// Usage: scripts/deno run -A scripts/bench/mam_query.ts [--messages=1000000] [--queries=20]

import { parseArgs } from "node:util";
import { RawClient } from "../../tests/helpers/raw_client.ts";
import { startTestServer } from "../../tests/helpers/test_server.ts";

const NS_MAM = "urn:xmpp:mam:2";
const PAGE = 50;

const { values } = parseArgs({
  args: Deno.args,
  options: {
    messages: { type: "string", default: "1000000" },
    queries: { type: "string", default: "20" },
  },
});
const total = Number(values.messages);
const queries = Number(values.queries);

const t = await startTestServer({
  modules: ["disco", "roster", "presence", "mam"],
  users: { alice: "pw" },
});
try {
  // Fill alice's archive: a conversation with 10 contacts, one message a second, oldest first.
  const archive = t.server.storage.archive("localhost", "mam");
  const start = Date.now() - total * 1000;
  const ids: string[] = [];
  const t0 = performance.now();
  const CHUNK = 10_000;
  for (let done = 0; done < total; done += CHUNK) {
    t.server.database.transaction(() => {
      for (let i = done; i < Math.min(total, done + CHUNK); i++) {
        const peer = `contact${i % 10}@localhost`;
        const id = archive.append("alice", {
          with: peer,
          when: start + i * 1000,
          type: "chat",
          payload: `<message xmlns='jabber:client' from='${peer}/r' to='alice@localhost/r' ` +
            `type='chat' id='m${i}'><body>Message number ${i} of the archive</body></message>`,
        });
        if (i % 1000 === 0) ids.push(id);
      }
    });
  }
  const fillSeconds = (performance.now() - t0) / 1000;
  console.error(`[mam_query] archived ${total} messages in ${fillSeconds.toFixed(1)} s`);

  const { client } = await RawClient.login(t.port, "alice", "pw", "bench");
  const iso = (ms: number) => new Date(ms).toISOString();
  const field = (name: string, value: string) =>
    `<field var='${name}'><value>${value}</value></field>`;
  const form = (fields: string) =>
    `<x xmlns='jabber:x:data' type='submit'>${field("FORM_TYPE", NS_MAM)}${fields}</x>`;
  const rsm = (inner: string) =>
    `<set xmlns='http://jabber.org/protocol/rsm'><max>${PAGE}</max>${inner}</set>`;
  const kinds: Record<string, () => string> = {
    "newest page (`<before/>`)": () => form("") + rsm("<before/>"),
    "oldest page": () => form("") + rsm(""),
    "page after an id in the middle": () =>
      form("") + rsm(`<after>${ids[Math.floor(ids.length / 2)]}</after>`),
    "page with one contact (newest)": () =>
      form(field("with", "contact3@localhost")) + rsm("<before/>"),
    "page from a start time in the middle": () =>
      form(field("start", iso(start + Math.floor(total / 2) * 1000))) + rsm(""),
  };
  const rows: { kind: string; p50_ms: number; max_ms: number; results: number }[] = [];
  for (const [kind, body] of Object.entries(kinds)) {
    const times: number[] = [];
    let results = 0;
    for (let q = 0; q < queries; q++) {
      const qid = `q${q}`;
      const before = client.received.length;
      const t1 = performance.now();
      client.send(
        `<iq type='set' id='${qid}'><query xmlns='${NS_MAM}' queryid='${qid}'>${body()}</query></iq>`,
      );
      const fin = await client.next((el) => el.attrs.id === qid, 30_000);
      times.push(performance.now() - t1);
      if (fin.attrs.type !== "result") throw new Error(`${kind}: ${fin.toString()}`);
      results = client.received.slice(before).filter((el) => el.name === "message").length;
    }
    times.sort((a, b) => a - b);
    rows.push({
      kind,
      p50_ms: times[Math.floor(times.length / 2)],
      max_ms: times[times.length - 1],
      results,
    });
  }
  client.close();
  console.log(
    `| query of ${PAGE} from ${total} archived messages | p50 (ms) | max (ms) | results |`,
  );
  console.log("|---|---:|---:|---:|");
  for (const r of rows) {
    console.log(`| ${r.kind} | ${r.p50_ms.toFixed(1)} | ${r.max_ms.toFixed(1)} | ${r.results} |`);
  }
  const line = JSON.stringify({
    bench: "mam_query",
    date: new Date().toISOString(),
    messages: total,
    page: PAGE,
    queries,
    fill_seconds: fillSeconds,
    rows,
  });
  console.log(line);
  const saved = new URL(
    `results/${new Date().toISOString().replaceAll(":", "-").replace(".", "-")}-mam-query.json`,
    import.meta.url,
  );
  // Indented like scripts/bench/run's saved runs (what deno fmt expects).
  await Deno.writeTextFile(saved, JSON.stringify(JSON.parse(line), null, 2) + "\n");
} finally {
  await t.stop();
}
