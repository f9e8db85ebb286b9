// How long joining a big archived room takes (issue 15: 1,000 occupants, 100,000 archived
// messages, join with history under 100 ms): a Lilt server (in this process) with
// conference.localhost holds one persistent archived room whose archive is filled through the
// store, then `--occupants` clients join it over STARTTLS, then one more client joins and leaves
// it `--joins` times per history request, timed at the client from sending the join presence to
// receiving the subject (the end of the join sequence: occupants' presence, own presence,
// history, subject). Prints a small table and one JSON line, saved under results/.
//
// Usage: scripts/deno run -A scripts/bench/muc_join.ts [--messages=100000] [--occupants=1000]
//        [--joins=20]

import { parseArgs } from "node:util";
import { RawClient } from "../../tests/helpers/raw_client.ts";
import { startTestServer } from "../../tests/helpers/test_server.ts";

const NS_MUC = "http://jabber.org/protocol/muc";
const NS_MUC_USER = "http://jabber.org/protocol/muc#user";
const ROOM = "bench@conference.localhost";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    messages: { type: "string", default: "100000" },
    occupants: { type: "string", default: "1000" },
    joins: { type: "string", default: "20" },
  },
});
const total = Number(values.messages);
const occupantCount = Number(values.occupants);
const joins = Number(values.joins);

const users: Record<string, string> = { joiner: "pw" };
for (let i = 0; i < occupantCount; i++) users[`u${i}`] = "pw";

const t = await startTestServer({
  modules: ["disco", "roster", "presence"],
  users,
  extraToml: `[[component]]
domain = "conference.localhost"
modules = ["disco", "muc"]
muc_max_occupants = ${occupantCount + 10}
muc_joins_per_minute = 0
`,
});
const clients: RawClient[] = [];
try {
  // Logs in `count` clients from `first`, a few at a time, and has each join the room.
  const joinOccupants = async (first: number, count: number) => {
    const BATCH = 25;
    for (let b = first; b < first + count; b += BATCH) {
      await Promise.all(
        Array.from({ length: Math.min(BATCH, first + count - b) }, async (_, k) => {
          const i = b + k;
          const { client } = await RawClient.login(t.port, `u${i}`, "pw", "bench");
          clients.push(client);
          client.send(`<presence to='${ROOM}/u${i}'><x xmlns='${NS_MUC}'/></presence>`);
          await client.next(
            (el) => el.name === "message" && el.getChild("subject") !== undefined,
            60_000,
          );
        }),
      );
    }
  };

  // The owner creates the room and makes it persistent (archiving is on by default).
  await joinOccupants(0, 1);
  const owner = clients[0];
  owner.send(
    `<iq type='set' id='cfg' to='${ROOM}'><query xmlns='${NS_MUC}#owner'>` +
      `<x xmlns='jabber:x:data' type='submit'>` +
      `<field var='FORM_TYPE'><value>${NS_MUC}#roomconfig</value></field>` +
      `<field var='muc#roomconfig_persistentroom'><value>1</value></field>` +
      `</x></query></iq>`,
  );
  const configured = await owner.next((el) => el.attrs.id === "cfg", 30_000);
  if (configured.attrs.type !== "result") throw new Error(`config: ${configured.toString()}`);

  // Fill the room's archive as the room stores its messages: reflected (from the occupant JID,
  // no `to`) with the sender's real JID; 100 senders, one message a second, oldest first.
  const archive = t.server.storage.archive("conference.localhost", "muc");
  const t0 = performance.now();
  const start = Date.now() - total * 1000;
  const CHUNK = 10_000;
  for (let done = 0; done < total; done += CHUNK) {
    t.server.database.transaction(() => {
      for (let i = done; i < Math.min(total, done + CHUNK); i++) {
        const nick = `u${i % 100}`;
        archive.append("bench", {
          with: `${ROOM}/${nick}`,
          when: start + i * 1000,
          type: "groupchat",
          payload: `<message xmlns='jabber:client' from='${ROOM}/${nick}' type='groupchat' ` +
            `id='m${i}'><body>Message number ${i} of the room</body>` +
            `<x xmlns='${NS_MUC_USER}'><item jid='${nick}@localhost/bench'/></x></message>`,
        });
      }
    });
  }
  const fillSeconds = (performance.now() - t0) / 1000;
  console.error(`[muc_join] archived ${total} messages in ${fillSeconds.toFixed(1)} s`);

  const t1 = performance.now();
  await joinOccupants(1, occupantCount - 1);
  const occupantSeconds = (performance.now() - t1) / 1000;
  console.error(`[muc_join] ${occupantCount} occupants joined in ${occupantSeconds.toFixed(1)} s`);

  const { client } = await RawClient.login(t.port, "joiner", "pw", "bench");
  const kinds: Record<string, string> = {
    "`<history maxstanzas='20'/>`": `<history maxstanzas='20'/>`,
    "default history (no `<history/>`)": "",
    "`<history maxstanzas='0'/>` (no history)": `<history maxstanzas='0'/>`,
  };
  // The kinds take turns, so a slower phase of the run (GC, the machine's other load) falls on
  // all of them alike.
  const samples = new Map(
    Object.keys(kinds).map((kind) => [kind, {
      times: [] as number[],
      history: 0,
      presences: 0,
    }]),
  );
  let n = 0;
  for (let j = 0; j < joins; j++) {
    for (const [kind, history] of Object.entries(kinds)) {
      const sample = samples.get(kind)!;
      const nick = `J${n++}`;
      const before = client.received.length;
      const t2 = performance.now();
      client.send(`<presence to='${ROOM}/${nick}'><x xmlns='${NS_MUC}'>${history}</x></presence>`);
      await client.next(
        (el) => el.name === "message" && el.getChild("subject") !== undefined,
        30_000,
      );
      sample.times.push(performance.now() - t2);
      const answer = client.received.slice(before);
      const error = answer.find((el) => el.attrs.type === "error");
      if (error) throw new Error(`${kind}: ${error.toString()}`);
      sample.history = answer.filter((el) => el.name === "message" && el.getChild("body")).length;
      sample.presences = answer.filter((el) => el.name === "presence").length;
      client.send(`<presence to='${ROOM}/${nick}' type='unavailable'/>`);
      await client.next(
        (el) =>
          el.name === "presence" && el.attrs.type === "unavailable" &&
          el.attrs.from === `${ROOM}/${nick}`,
        30_000,
      );
    }
  }
  const rows = [...samples].map(([kind, { times, history, presences }]) => {
    // Which join (0 = the kind's first) was the slowest: a cold first join shows here.
    const slowest = times.indexOf(Math.max(...times));
    times.sort((a, b) => a - b);
    return {
      kind,
      p50_ms: times[Math.floor(times.length / 2)],
      max_ms: times[times.length - 1],
      slowest_join: slowest,
      history,
      presences,
    };
  });
  client.close();
  console.log(
    `| join of a room with ${occupantCount} occupants and ${total} archived messages ` +
      `| p50 (ms) | max (ms) | history | presences |`,
  );
  console.log("|---|---:|---:|---:|---:|");
  for (const r of rows) {
    console.log(
      `| ${r.kind} | ${r.p50_ms.toFixed(1)} | ${r.max_ms.toFixed(1)} | ${r.history} | ` +
        `${r.presences} |`,
    );
  }
  const line = JSON.stringify({
    bench: "muc_join",
    date: new Date().toISOString(),
    messages: total,
    occupants: occupantCount,
    joins,
    transport: "STARTTLS",
    fill_seconds: fillSeconds,
    occupant_join_seconds: occupantSeconds,
    rows,
  });
  console.log(line);
  const saved = new URL(
    `results/${new Date().toISOString().replaceAll(":", "-").replace(".", "-")}-muc-join.json`,
    import.meta.url,
  );
  // Indented like scripts/bench/run's saved runs (what deno fmt expects).
  await Deno.writeTextFile(saved, JSON.stringify(JSON.parse(line), null, 2) + "\n");
} finally {
  for (const c of clients) c.close();
  await t.stop();
}
