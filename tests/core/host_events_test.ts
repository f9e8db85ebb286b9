// Host event names are checked by the type system: stanza event names must follow the router's
// scheme (a typo fails `deno check`, which the test suite runs), and a module can declare its own
// events, with their payload types, by augmenting ModuleEvents.

import assert from "node:assert/strict";
import type { ModuleEvents, SessionEvent, StanzaEventName } from "../../core/hosts.ts";
import type { ModuleAPI } from "../../core/modules.ts";
import { startTestServer } from "../helpers/test_server.ts";

/** The payload of the example event this test declares. */
interface GreetingEvent {
  greeting: string;
}

declare module "../../core/hosts.ts" {
  interface ModuleEvents {
    "example-greeting": GreetingEvent;
  }
}

Deno.test("stanza event names follow the router's scheme; typos do not type-check", () => {
  const good: StanzaEventName[] = [
    "pre-message/full",
    "presence/bare",
    "message/offline",
    "iq/host",
    "iq-get/host/urn:xmpp:ping:ping",
    "iq-result/host/some-id",
  ];
  assert.equal(good.length, 6);
  // @ts-expect-error: "hots" is not a to-type
  const typo: StanzaEventName = "iq-get/hots/urn:xmpp:ping:ping";
  // @ts-expect-error: an iq get names its payload as namespace:name
  const noPayload: StanzaEventName = "iq-get/host";
  // @ts-expect-error: there is no "stanza" kind
  const kind: StanzaEventName = "stanza/bare";
  assert.ok(typo && noPayload && kind);
});

Deno.test("a module's own event is typed by augmenting ModuleEvents", async () => {
  const t = await startTestServer({ modules: [] });
  try {
    const host = t.server.hosts.get("localhost")!;
    const heard: string[] = [];
    t.server.modules.register("greeter", {
      default(m: ModuleAPI) {
        m.hook("example-greeting", ({ greeting }: GreetingEvent) => {
          heard.push(greeting);
        });
        // @ts-expect-error: the payload has the declared type
        m.hook("example-greeting", ({ session }: SessionEvent) => session);
      },
    });
    await t.server.modules.load(host, "greeter");
    const payload: ModuleEvents["example-greeting"] = { greeting: "hello" };
    host.events.fire("example-greeting", payload);
    assert.deepEqual(heard, ["hello"]);
  } finally {
    await t.stop();
  }
});
