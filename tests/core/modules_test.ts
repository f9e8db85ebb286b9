// Loading and unloading modules at runtime: everything a module registered (hooks, disco
// entries, timers, pending iqs) is gone after unload, and the module can be loaded again.

import assert from "node:assert/strict";
import type { IqError, ModuleAPI } from "../../core/modules.ts";
import type { Migration } from "../../core/storage/migrations.ts";
import { parseConfigText } from "../../core/config.ts";
import { startTestServer, testConfigText } from "../helpers/test_server.ts";
import { Element } from "../../core/xml/element.ts";
import { RawClient } from "../helpers/raw_client.ts";

Deno.test("unloading every built-in module leaves no hooks or disco entries behind", async () => {
  const t = await startTestServer({ users: { alice: "pw" } });
  try {
    const host = t.server.hosts.get("localhost")!;
    const loaded = t.server.modules.loaded("localhost");
    assert.ok(loaded.length >= 4);
    assert.ok(host.events.size > 0);
    // Dependents first (pep needs caps, presence, ...): the reverse of the load order.
    for (const name of [...loaded].reverse()) {
      assert.equal(t.server.modules.unload(host, name), true);
    }
    assert.equal(host.events.size, 0, `left: ${host.events.eventNames().join(", ")}`);
    assert.deepEqual(host.disco.features(), []);
    assert.deepEqual(host.disco.identities(), []);
    assert.deepEqual(host.accountDisco.features(), []);
    assert.deepEqual(host.accountDisco.identities(), []);
    for (const name of loaded) await t.server.modules.load(host, name);
    assert.deepEqual(t.server.modules.loaded("localhost"), loaded);
    // And the reloaded modules work on the wire.
    const { client } = await RawClient.login(t.port, "alice", "pw");
    client.send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    assert.equal((await client.next((el) => el.attrs.id === "p")).attrs.type, "result");
    client.close();
  } finally {
    await t.stop();
  }
});

Deno.test("a module's timers, hooks and pending iqs are cleared on unload", async () => {
  const t = await startTestServer();
  try {
    const host = t.server.hosts.get("localhost")!;
    const before = host.events.size;
    let ticks = 0;
    let pendingIq: Promise<unknown> | undefined;
    t.server.modules.register("testmod", {
      default(m: ModuleAPI) {
        m.hook("message/bare", () => true, 10);
        m.hook("resource-bind", () => {});
        m.addFeature("urn:example:test");
        m.addIdentity("automation", "test");
        m.addTimer(5, () => ticks++, { repeat: true });
        m.addTimer(60_000, () => ticks++);
        // Nobody answers this iq (it comes back as an error the module awaits).
        pendingIq = m.sendIq(
          new Element("iq", { type: "get", to: "nobody@localhost/x" })
            .c("query", { xmlns: "urn:example:never-answered" }).root(),
          60_000,
        ).catch((e: IqError) => e.condition);
      },
    });
    await t.server.modules.load(host, "testmod");
    assert.ok(host.disco.features().includes("urn:example:test"));
    assert.ok(host.events.size > before);
    await new Promise((r) => setTimeout(r, 40));
    assert.ok(ticks > 0);
    assert.equal(t.server.modules.unload(host, "testmod"), true);
    const after = ticks;
    await new Promise((r) => setTimeout(r, 40));
    assert.equal(ticks, after, "the repeating timer stopped");
    assert.equal(host.events.size, before);
    assert.ok(!host.disco.features().includes("urn:example:test"));
    assert.equal(await pendingIq, "service-unavailable");
  } finally {
    await t.stop();
  }
});

Deno.test("a module whose load throws leaves nothing behind", async () => {
  const t = await startTestServer();
  try {
    const host = t.server.hosts.get("localhost")!;
    const before = host.events.size;
    t.server.modules.register("broken", {
      default(m: ModuleAPI) {
        m.hook("message/bare", () => true);
        m.addFeature("urn:example:broken");
        m.addTimer(10, () => {}, { repeat: true });
        throw new Error("boom");
      },
    });
    await assert.rejects(() => t.server.modules.load(host, "broken"), /boom/);
    assert.equal(host.events.size, before);
    assert.ok(!host.disco.features().includes("urn:example:broken"));
    assert.equal(t.server.modules.isLoaded("localhost", "broken"), false);
  } finally {
    await t.stop();
  }
});

Deno.test("after a reload, modules see changed options: told by config-reloaded or reloaded", async () => {
  const t = await startTestServer({ modules: ["disco"], hostToml: "greeting = 'hello'" });
  try {
    const host = t.server.hosts.get("localhost")!;
    const loads: string[] = [];
    const told: string[][] = [];
    const options = {
      greeting: { type: "string", default: "", scope: "host", description: "A test option" },
    } as const;
    // Caches an option read while loading, and does not listen for reloads.
    t.server.modules.register("caching", {
      options,
      default(m: ModuleAPI) {
        loads.push(`caching:${m.optionString("greeting", "")}`);
      },
    });
    // Caches too, but re-reads on config-reloaded, so it keeps its state.
    t.server.modules.register("following", {
      default(m: ModuleAPI) {
        let greeting = m.optionString("greeting", "");
        loads.push(`following:${greeting}`);
        m.hook("config-reloaded", ({ changed }) => {
          greeting = m.optionString("greeting", "");
          told.push([greeting, ...changed]);
        });
      },
    });
    // Reads nothing while loading: nothing to redo.
    t.server.modules.register("reader", {
      default(m: ModuleAPI) {
        loads.push("reader");
        m.hook("message/bare", () => m.optionBoolean("unrelated", false));
      },
    });
    for (const name of ["caching", "following", "reader"]) await t.server.modules.load(host, name);

    const reread = async (hostToml: string) => {
      const modules = ["disco", "caching", "following", "reader"];
      const text = testConfigText(t.dataDir, { modules, hostToml });
      const { config, problems } = parseConfigText(text, t.config.file);
      assert.ok(config, JSON.stringify(problems));
      return await t.server.reload(config);
    };
    const report = await reread("greeting = 'bonjour'\nc2s_idle_timeout = 60");
    assert.deepEqual(loads, ["caching:hello", "following:hello", "reader", "caching:bonjour"]);
    assert.deepEqual(told, [["bonjour", "modules", "c2s_idle_timeout", "greeting"]]);
    assert.deepEqual(report.modules, [
      { module: "caching", host: "localhost", options: ["greeting"] },
    ]);
    assert.ok(t.server.modules.isLoaded("localhost", "caching"));

    // Nothing the modules read changed: nobody is reloaded, everybody is told.
    await reread("greeting = 'bonjour'");
    assert.equal(loads.length, 4);
    assert.deepEqual(told[1], ["bonjour", "c2s_idle_timeout"]);
  } finally {
    await t.stop();
  }
});

Deno.test("m.option reads a declared option with its declared default and bounds", async () => {
  const t = await startTestServer({ hostToml: "example_limit = 7\nexample_too_big = 500" });
  try {
    const host = t.server.hosts.get("localhost")!;
    const seen: unknown[] = [];
    const spec = { type: "integer", min: 1, max: 100, scope: "host", description: "" } as const;
    t.server.modules.register("declaring", {
      options: {
        example_limit: { ...spec, default: 10 },
        example_unset: { ...spec, default: 10 },
        example_too_big: { ...spec, default: 10 },
        example_flag: { type: "boolean", default: true, scope: "host", description: "" },
      },
      default(m: ModuleAPI) {
        seen.push(m.option("example_limit"), m.option("example_unset"), m.option("example_flag"));
        assert.throws(() => m.option("example_undeclared"), /does not declare/);
        assert.throws(() => m.option("example_too_big"), /expected a number from 1 to 100/);
      },
    });
    await t.server.modules.load(host, "declaring");
    assert.deepEqual(seen, [7, 10, true]);
  } finally {
    await t.stop();
  }
});

/** The payload of the example service this test's modules share. */
interface Counter {
  next(): number;
}

declare module "../../core/modules.ts" {
  interface ModuleServices {
    "example-counter": Counter;
  }
}

Deno.test("depends loads what a module needs first; provide/service share an object", async () => {
  const t = await startTestServer({ modules: ["disco"] });
  try {
    const host = t.server.hosts.get("localhost")!;
    const order: string[] = [];
    t.server.modules.register("counter", {
      default(m: ModuleAPI) {
        order.push("counter");
        let n = 0;
        m.provide("example-counter", { next: () => ++n });
      },
    });
    t.server.modules.register("user_of_counter", {
      depends: ["counter"],
      default(m: ModuleAPI) {
        order.push("user");
        const counter = m.service("example-counter");
        assert.equal(counter.next(), 1);
        assert.equal(counter.next(), 2);
      },
    });
    t.server.modules.register("second_counter", {
      default(m: ModuleAPI) {
        m.provide("example-counter", { next: () => 0 });
      },
    });
    await t.server.modules.load(host, "user_of_counter");
    assert.deepEqual(order, ["counter", "user"]);
    assert.deepEqual(t.server.modules.withDependencies(["user_of_counter"]), [
      "counter",
      "user_of_counter",
    ]);
    // One provider per service.
    await assert.rejects(() => t.server.modules.load(host, "second_counter"), /already does/);
    // The provider cannot go while its user is loaded, unless its users go with it.
    assert.throws(() => t.server.modules.unload(host, "counter"), /needed by 'user_of_counter'/);
    assert.equal(t.server.modules.unload(host, "counter", { cascade: true }), true);
    assert.equal(t.server.modules.isLoaded("localhost", "user_of_counter"), false);
    assert.equal(host.services.size, 0);
    // A cycle is refused with the path.
    t.server.modules.register("a_cycle", { depends: ["b_cycle"], default() {} });
    t.server.modules.register("b_cycle", { depends: ["a_cycle"], default() {} });
    assert.throws(
      () => t.server.modules.withDependencies(["a_cycle"]),
      /a_cycle -> b_cycle -> a_cycle/,
    );
  } finally {
    await t.stop();
  }
});

Deno.test("a module's own migrations run once, in order, and a failing or too new one stops its load", async () => {
  const t = await startTestServer({ modules: ["disco"] });
  try {
    const host = t.server.hosts.get("localhost")!;
    const db = t.server.database;
    const version = (name: string) =>
      (db.prepare("SELECT version FROM module_schema WHERE module = ?").get(name) as
        | { version: number }
        | undefined)?.version;
    let runs = 0;
    const steps: Migration[] = [
      {
        version: 1,
        description: "notes",
        up(c) {
          runs++;
          c.exec("CREATE TABLE notes_items (id INTEGER PRIMARY KEY, text TEXT NOT NULL)");
        },
      },
    ];
    t.server.modules.register("notes", { migrations: steps, default() {} });
    await t.server.modules.load(host, "notes");
    assert.equal(version("notes"), 1);
    t.server.modules.unload(host, "notes");
    await t.server.modules.load(host, "notes");
    assert.equal(runs, 1, "applied once per database");
    // A second module sharing those tables names the same schema and finds them up to date.
    t.server.modules.register("notes_reader", { schema: "notes", migrations: steps, default() {} });
    await t.server.modules.load(host, "notes_reader");
    assert.equal(runs, 1);
    assert.equal(version("notes_reader"), undefined);

    // A failing step undoes itself, names the module, and the module does not load.
    t.server.modules.register("broken", {
      migrations: [
        {
          version: 1,
          description: "half a table",
          up(c) {
            c.exec("CREATE TABLE broken_items (id INTEGER PRIMARY KEY)");
            c.exec("INSERT INTO no_such_table VALUES (1)");
          },
        },
      ],
      default() {},
    });
    await assert.rejects(
      () => t.server.modules.load(host, "broken"),
      /Module 'broken': Migration 1 \(half a table\) failed: .*no_such_table/,
    );
    assert.equal(t.server.modules.isLoaded("localhost", "broken"), false);
    assert.equal(version("broken"), undefined);
    assert.equal(db.hasTable("broken_items"), false, "the failed step's table is rolled back");

    // Tables written by a newer release of a module are not touched by an older one.
    db.prepare("INSERT INTO module_schema (module, version) VALUES ('newer', 3)").run();
    t.server.modules.register("newer", {
      migrations: [{ version: 1, description: "first", up() {} }],
      default() {},
    });
    await assert.rejects(
      () => t.server.modules.load(host, "newer"),
      /module 'newer': its tables are at version 3 but this module knows up to 1/,
    );
  } finally {
    await t.stop();
  }
});
