// XEP-0363 on the `upload.localhost` component over real sockets: slot requests and their
// refusals over XMPP, PUT and GET over HTTP (raw sockets, since the Host header must name the
// component, and curl when installed), expiry and the shell section.

import assert from "node:assert/strict";
import * as net from "node:net";
import * as tls from "node:tls";
import type { Element } from "../../core/xml/element.ts";
import { serialize } from "../../core/xml/serializer.ts";
import { dailyLimitRetry } from "../../mod/upload.ts";
import { RawClient, roundTrip } from "../helpers/raw_client.ts";
import { startTestServer, type TestServer } from "../helpers/test_server.ts";

const NS = "urn:xmpp:http:upload:0";
const SERVICE = "upload.localhost";

async function world(extra = ""): Promise<{ t: TestServer; alice: RawClient }> {
  const t = await startTestServer({
    users: { alice: "pw" },
    globalToml: 'http_interfaces = ["127.0.0.1:0"]\nhttp_max_body_size = 1024',
    extraToml: `[[component]]\ndomain = "${SERVICE}"\nmodules = ["disco", "upload"]\n${extra}`,
  });
  const alice = (await RawClient.login(t.port, "alice", "pw", "a")).client;
  alice.send("<presence/>");
  await roundTrip(alice);
  return { t, alice };
}

let counter = 0;
async function iq(client: RawClient, payload: string, type = "get"): Promise<Element> {
  const id = `u${++counter}`;
  client.send(`<iq type='${type}' id='${id}' to='${SERVICE}'>${payload}</iq>`);
  return await client.next((el) => el.name === "iq" && el.attrs.id === id);
}

function slotRequest(filename: string, size: number, type = "text/plain"): string {
  return `<request xmlns='${NS}' filename='${filename}' size='${size}' content-type='${type}'/>`;
}

interface Slot {
  put: string;
  get: string;
  auth: string;
}

function slotOf(answer: Element): Slot {
  assert.equal(answer.attrs.type, "result", serialize(answer));
  const slot = answer.getChild("slot", NS)!;
  const put = slot.getChild("put")!;
  return {
    put: put.attr("url")!,
    get: slot.getChild("get")!.attr("url")!,
    auth: put.getChild("header")!.text(),
  };
}

/** One HTTP/1.1 request over a raw socket to 127.0.0.1, with the URL's host as Host. */
async function http(
  url: string,
  method: string,
  headers: Record<string, string> = {},
  body?: Uint8Array,
): Promise<{ status: number; headers: Headers; body: Uint8Array }> {
  const { host, port, pathname } = new URL(url);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(port) });
  let head = `${method} ${pathname} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n`;
  for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
  await conn.write(new TextEncoder().encode(head + "\r\n"));
  if (body) await conn.write(body);
  const raw = new Uint8Array(await new Response(conn.readable).arrayBuffer());
  const text = new TextDecoder("latin1").decode(raw);
  const end = text.indexOf("\r\n\r\n");
  const lines = text.slice(0, end).split("\r\n");
  const out = new Headers();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    out.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  let rest = raw.slice(end + 4);
  if (out.get("transfer-encoding") === "chunked") {
    const chunks: number[] = [];
    let text = new TextDecoder("latin1").decode(rest);
    let offset = 0;
    while (true) {
      const line = text.indexOf("\r\n", offset);
      const size = parseInt(text.slice(offset, line), 16);
      if (!size) break;
      chunks.push(...rest.slice(line + 2, line + 2 + size));
      offset = line + 2 + size + 2;
    }
    rest = new Uint8Array(chunks);
    text = "";
  }
  return { status: Number(lines[0].slice(9, 12)), headers: out, body: rest };
}

Deno.test("disco#info shows store/file, the feature and max-file-size", async () => {
  const { t, alice } = await world("upload_max_file_size = 5000");
  try {
    const info = await iq(alice, "<query xmlns='http://jabber.org/protocol/disco#info'/>");
    const query = info.getChild("query")!;
    const identity = query.getChild("identity")!;
    assert.deepEqual([identity.attrs.category, identity.attrs.type], ["store", "file"]);
    assert.ok(query.getChildren("feature").some((f) => f.attrs.var === NS));
    const field = query.getChild("x", "jabber:x:data")!.getChildren("field")
      .find((f) => f.attrs.var === "max-file-size")!;
    assert.equal(field.getChildText("value"), "5000");
  } finally {
    alice.close();
    await t.stop();
  }
});

Deno.test("a slot takes one PUT of the exact size; GET returns the bytes and headers", async () => {
  const { t, alice } = await world();
  try {
    // Larger than http_max_body_size: the upload route has its own limit.
    const bytes = new Uint8Array(3000).map((_, i) => i % 251);
    const slot = slotOf(await iq(alice, slotRequest("../a b.png", bytes.length, "image/png")));
    assert.match(slot.put, /^http:\/\/upload\.localhost:\d+\/upload\/[\w-]{20,}\/a%20b\.png$/);
    assert.equal(slot.get, slot.put);
    const length = { "content-length": String(bytes.length) };
    assert.equal((await http(slot.put, "PUT", length, bytes)).status, 401);
    const wrong = { ...length, authorization: "Bearer nope" };
    assert.equal((await http(slot.put, "PUT", wrong, bytes)).status, 403);
    const auth = { authorization: slot.auth };
    const short = await http(
      slot.put,
      "PUT",
      { ...auth, "content-length": "10" },
      bytes.slice(0, 10),
    );
    assert.equal(short.status, 400);
    const long = await http(
      slot.put,
      "PUT",
      { ...auth, "content-length": "5000" },
      new Uint8Array(5000),
    );
    assert.equal(long.status, 413);
    assert.equal((await http(slot.get, "GET")).status, 404);
    const chunked = await http(
      slot.put,
      "PUT",
      { ...auth, "transfer-encoding": "chunked" },
      new TextEncoder().encode("3\r\nabc\r\n0\r\n\r\n"),
    );
    assert.equal(chunked.status, 400);
    const put = await http(slot.put, "PUT", { ...auth, ...length }, bytes);
    assert.equal(put.status, 201);
    assert.equal((await http(slot.put, "PUT", { ...auth, ...length }, bytes)).status, 409);
    const got = await http(slot.get, "GET");
    assert.equal(got.status, 200);
    assert.deepEqual(got.body, bytes);
    assert.equal(got.headers.get("content-type"), "image/png");
    assert.equal(got.headers.get("access-control-allow-origin"), "*");
    assert.match(got.headers.get("content-disposition")!, /^inline; filename\*=UTF-8''a%20b\.png$/);
    const head = await http(slot.get, "HEAD");
    assert.equal(head.headers.get("content-length"), "3000");
    const preflight = await http(slot.put, "OPTIONS");
    assert.equal(preflight.status, 204);
    assert.match(preflight.headers.get("access-control-allow-headers")!, /Authorization/);
    assert.match(preflight.headers.get("access-control-allow-methods")!, /PUT/);
  } finally {
    alice.close();
    await t.stop();
  }
});

/**
 * Sends a PUT's headers and only the first KiB of its body, and resolves with the status of the
 * answer, which must come while the rest of the body is still unsent (a server that waited
 * for the body would leave this test waiting).
 */
function answerToFirstBytes(
  url: string,
  target: { port: number; secure: boolean },
  headers: Record<string, string>,
): Promise<number> {
  const { host, hostname, pathname } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = target.secure
      ? tls.connect({
        host: "127.0.0.1",
        port: target.port,
        servername: hostname,
        rejectUnauthorized: false,
      })
      : net.connect({ host: "127.0.0.1", port: target.port });
    let head = `PUT ${pathname} HTTP/1.1\r\nHost: ${host}\r\n`;
    for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
    socket.once(target.secure ? "secureConnect" : "connect", () => {
      socket.write(head + "\r\n");
      socket.write(new Uint8Array(1024));
    });
    let text = "";
    socket.on("data", (data: Uint8Array) => {
      text += new TextDecoder().decode(data);
      if (text.includes("\r\n\r\n")) {
        socket.destroy();
        resolve(Number(text.slice(9, 12)));
      }
    });
    socket.once("error", reject);
    socket.once("close", () => reject(new Error(`Closed without an answer: '${text}'`)));
  });
}

Deno.test("unauthorized and oversized PUTs are answered before the body is sent", async () => {
  const t = await startTestServer({
    users: { alice: "pw" },
    globalToml: 'http_interfaces = ["127.0.0.1:0"]\nhttps_interfaces = ["127.0.0.1:0"]',
    extraToml: `[[component]]\ndomain = "${SERVICE}"\nmodules = ["disco", "upload"]\n` +
      "upload_max_file_size = 60000000\n",
  });
  const alice = (await RawClient.login(t.port, "alice", "pw", "a")).client;
  try {
    const big = slotOf(await iq(alice, slotRequest("big.bin", 50_000_000)));
    const small = slotOf(await iq(alice, slotRequest("small.bin", 1000)));
    assert.match(big.put, /^https:/, "slot URLs are on the HTTPS listener");
    const over = { "content-length": "50000000", authorization: small.auth };
    const overMax = { "content-length": "70000000", authorization: big.auth };
    for (const secure of [false, true]) {
      const target = { port: t.server.port(secure ? "https" : "http"), secure };
      const length = { "content-length": "50000000" };
      assert.equal(await answerToFirstBytes(big.put, target, length), 401);
      const wrong = { ...length, authorization: "Bearer nope" };
      assert.equal(await answerToFirstBytes(big.put, target, wrong), 403);
      // Above the slot's size, and above upload_max_file_size (the listener's check).
      assert.equal(await answerToFirstBytes(small.put, target, over), 413);
      assert.equal(await answerToFirstBytes(big.put, target, overMax), 413);
    }
    // The refusals used up nothing: the slot still takes its file.
    const httpUrl = small.put.replace(
      /^https:\/\/([^:/]+):\d+/,
      `http://$1:${t.server.port("http")}`,
    );
    const bytes = new Uint8Array(1000).fill(7);
    const put = await http(httpUrl, "PUT", {
      authorization: small.auth,
      "content-length": "1000",
    }, bytes);
    assert.equal(put.status, 201);
  } finally {
    alice.close();
    await t.stop();
  }
});

Deno.test("curl uploads and downloads through a slot", async (test) => {
  const curl = await new Deno.Command("curl", { args: ["--version"], stdout: "null" }).output()
    .catch(() => undefined);
  if (!curl?.success) {
    await test.step({ name: "curl is not installed", ignore: true, fn: () => {} });
    return;
  }
  const { t, alice } = await world();
  try {
    const file = await Deno.makeTempFile({ dir: t.dataDir });
    await Deno.writeTextFile(file, "hello from curl\n");
    const slot = slotOf(await iq(alice, slotRequest("note.txt", 16)));
    const resolve = `${SERVICE}:${new URL(slot.put).port}:127.0.0.1`;
    const put = await new Deno.Command("curl", {
      args: [
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--resolve",
        resolve,
        "-T",
        file,
        "-H",
        `Authorization: ${slot.auth}`,
        slot.put,
      ],
    }).output();
    assert.equal(new TextDecoder().decode(put.stdout), "201");
    const get = await new Deno.Command("curl", {
      args: ["-s", "--resolve", resolve, slot.get],
    }).output();
    assert.equal(new TextDecoder().decode(get.stdout), "hello from curl\n");
  } finally {
    alice.close();
    await t.stop();
  }
});

Deno.test("with http_external_url, slot URLs keep its scheme, port and path on the component's name", async () => {
  const t = await startTestServer({
    users: { alice: "pw" },
    globalToml:
      'http_interfaces = ["127.0.0.1:0"]\nhttp_external_url = "https://chat.example:8443/x/"',
    extraToml: `[[component]]\ndomain = "${SERVICE}"\nmodules = ["disco", "upload"]\n`,
  });
  const alice = (await RawClient.login(t.port, "alice", "pw", "a")).client;
  try {
    const slot = slotOf(await iq(alice, slotRequest("f.txt", 3)));
    assert.match(slot.put, /^https:\/\/upload\.localhost:8443\/x\/upload\/[\w-]+\/f\.txt$/);
  } finally {
    alice.close();
    await t.stop();
  }
});

Deno.test("slot refusals: too large, over quota, bad size, no filename", async () => {
  const { t, alice } = await world("upload_max_file_size = 1000\nupload_quota = 1500");
  try {
    const big = await iq(alice, slotRequest("big.bin", 1001));
    const tooLarge = big.getChild("error")!.getChild("file-too-large", NS)!;
    assert.equal(tooLarge.getChildText("max-file-size"), "1000");
    assert.ok(big.getChild("error")!.getChild("not-acceptable"));
    slotOf(await iq(alice, slotRequest("one.bin", 1000)));
    const quota = await iq(alice, slotRequest("two.bin", 600));
    assert.ok(quota.getChild("error")!.getChild("resource-constraint"));
    const bad = await iq(alice, slotRequest("x.bin", -3));
    assert.ok(bad.getChild("error")!.getChild("bad-request"));
    const noName = await iq(alice, `<request xmlns='${NS}' filename='' size='5'/>`);
    assert.ok(noName.getChild("error")!.getChild("bad-request"));
  } finally {
    alice.close();
    await t.stop();
  }
});

Deno.test("upload_daily_limit refuses slots past the rolling 24 hours with a retry stamp", async () => {
  const { t, alice } = await world("upload_daily_limit = 1000");
  try {
    const info = await iq(alice, "<query xmlns='http://jabber.org/protocol/disco#info'/>");
    const field = info.getChild("query")!.getChild("x", "jabber:x:data")!.getChildren("field")
      .find((f) => f.attrs.var === "max-file-size")!;
    assert.equal(field.getChildText("value"), "1000", "the daily limit caps max-file-size");
    const before = Date.now();
    slotOf(await iq(alice, slotRequest("one.bin", 600)));
    slotOf(await iq(alice, slotRequest("two.bin", 300)));
    const after = Date.now();
    // 900 bytes used: 200 more would pass 1000.
    const refused = await iq(alice, slotRequest("three.bin", 200));
    const error = refused.getChild("error")!;
    assert.equal(error.attrs.type, "wait");
    assert.ok(error.getChild("resource-constraint"));
    const retry = Date.parse(error.getChild("retry", NS)!.attr("stamp")!);
    // Freeing 100 bytes takes the first slot leaving the window, 24 h after it was made.
    assert.ok(retry >= before + 86_400_000 - 1000 && retry <= after + 86_400_000 + 1000);
    // What still fits is granted.
    slotOf(await iq(alice, slotRequest("four.bin", 100)));
    // A file larger than the daily limit can never fit: file-too-large, not a retry.
    const huge = await iq(alice, slotRequest("huge.bin", 1001));
    assert.equal(
      huge.getChild("error")!.getChild("file-too-large", NS)!.getChildText("max-file-size"),
      "1000",
    );
    // Once slots are more than 24 hours old they no longer count.
    t.server.database.prepare("UPDATE upload_files SET created_ms = created_ms - 86400001").run();
    slotOf(await iq(alice, slotRequest("five.bin", 1000)));
  } finally {
    alice.close();
    await t.stop();
  }
});

Deno.test("the retry time is when enough of the oldest bytes leave the window", () => {
  const day = 86_400_000;
  const recent = [{ createdMs: 1000, size: 300 }, { createdMs: 2000, size: 300 }, {
    createdMs: 3000,
    size: 300,
  }];
  assert.equal(dailyLimitRetry(recent, { size: 100, limit: 1000 }), undefined);
  assert.equal(dailyLimitRetry(recent, { size: 200, limit: 1000 }), 1000 + day);
  assert.equal(dailyLimitRetry(recent, { size: 500, limit: 1000 }), 2000 + day);
  assert.equal(dailyLimitRetry([], { size: 10, limit: 1000 }), undefined);
});

/** Runs an `upload` shell command the way the admin socket does. */
async function shell(t: TestServer, name: string, ...args: string[]) {
  const spec = t.server.commands.get("upload", name)!;
  return await spec.run(
    { server: t.server, emit: () => {}, signal: new AbortController().signal },
    args,
  );
}

/** Requests a slot and uploads `size` bytes through it; returns the slot. */
async function uploaded(alice: RawClient, name: string, size: number): Promise<Slot> {
  const slot = slotOf(await iq(alice, slotRequest(name, size)));
  const put = await http(slot.put, "PUT", {
    authorization: slot.auth,
    "content-length": String(size),
  }, new Uint8Array(size));
  assert.equal(put.status, 201);
  return slot;
}

Deno.test("shell: list, usage and delete an account's uploads", async () => {
  const { t, alice } = await world();
  try {
    const slot = await uploaded(alice, "a.txt", 40);
    await uploaded(alice, "b.txt", 2);
    const listed = await shell(t, "list", SERVICE, "alice@localhost");
    const files = (listed.data as { files: { id: string; filename: string }[] }).files;
    assert.deepEqual(files.map((f) => f.filename), ["a.txt", "b.txt"]);
    assert.deepEqual((await shell(t, "usage", SERVICE, "alice@localhost")).data, {
      owner: "alice@localhost",
      bytes: 42,
    });
    const id = new URL(slot.get).pathname.split("/")[2];
    assert.equal(files[0].id, id);
    await shell(t, "delete", SERVICE, id);
    assert.equal((await http(slot.get, "GET")).status, 404);
    await assert.rejects(shell(t, "delete", SERVICE, id), /No upload/);
    assert.deepEqual((await shell(t, "usage", SERVICE)).data, { owner: undefined, bytes: 2 });
    await assert.rejects(shell(t, "usage", "localhost"), /not loaded/);
  } finally {
    alice.close();
    await t.stop();
  }
});

Deno.test("expiry deletes the file and its row once expires_ms has passed", async () => {
  const { t, alice } = await world();
  try {
    const slot = await uploaded(alice, "old.txt", 5);
    const kept = await uploaded(alice, "new.txt", 7);
    const id = new URL(slot.get).pathname.split("/")[2];
    assert.ok(Deno.statSync(`${t.dataDir}/uploads/${id}`).isFile);
    t.server.database.prepare("UPDATE upload_files SET expires_ms = 1 WHERE id = ?").run(id);
    assert.deepEqual((await shell(t, "expire", SERVICE)).data, { deleted: 1 });
    assert.equal((await http(slot.get, "GET")).status, 404);
    assert.throws(() => Deno.statSync(`${t.dataDir}/uploads/${id}`), Deno.errors.NotFound);
    const row = t.server.database.prepare("SELECT id FROM upload_files WHERE id = ?").get(id);
    assert.equal(row, undefined);
    assert.equal((await http(kept.get, "GET")).status, 200);
  } finally {
    alice.close();
    await t.stop();
  }
});
