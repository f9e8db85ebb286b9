// Unit tests of the login throttle's arithmetic on a given clock: free failures, doubling and
// capped delays, the three counts and which attempts each holds back, one attempt at a time
// for a throttled key, forgetting, and how addresses are keyed.

import { strict as assert } from "node:assert";
import {
  AuthThrottle,
  type AuthThrottleOptions,
  throttleAddress,
  ThrottleAttempt,
  type ThrottleWait,
} from "../../../core/auth/throttle.ts";
import { formatProblem, parseConfigText } from "../../../core/config.ts";

const OPTIONS: AuthThrottleOptions = {
  maxFailures: 3,
  addressFailures: 10,
  accountFailures: 10,
  delayMs: 1000,
  maxDelayMs: 4000,
  windowMs: 60_000,
};

function started(result: ThrottleAttempt | ThrottleWait): ThrottleAttempt {
  assert.ok(result instanceof ThrottleAttempt, `held back: ${JSON.stringify(result)}`);
  return result;
}

function held(result: ThrottleAttempt | ThrottleWait): ThrottleWait {
  assert.ok(!(result instanceof ThrottleAttempt), "expected the attempt to be held back");
  return result as ThrottleWait;
}

/** Fails one attempt of `account` from `ip` at `now`; it must be allowed to start. */
function fail(throttle: AuthThrottle, ip: string, account: string, now: number): void {
  started(throttle.tryStart(ip, account, now)).failed(now);
}

Deno.test("after the free failures each attempt waits a doubling delay, capped", () => {
  const throttle = new AuthThrottle(OPTIONS);
  let now = 1_000_000;
  for (let i = 0; i < 3; i++) fail(throttle, "192.0.2.1", "alice", now);
  const expected = [1000, 2000, 4000, 4000, 4000];
  for (const delay of expected) {
    const wait = held(throttle.tryStart("192.0.2.1", "alice", now));
    assert.equal(wait.scope, "address+account");
    assert.equal(wait.ms, delay);
    now += delay - 1;
    held(throttle.tryStart("192.0.2.1", "alice", now));
    now += 1;
    fail(throttle, "192.0.2.1", "alice", now);
  }
});

Deno.test("an address that never failed for the account is not held back by the account's count", () => {
  const throttle = new AuthThrottle(OPTIONS);
  const now = 1_000_000;
  // Guesses from many addresses, each within its own allowance.
  for (let i = 1; i <= 12; i++) fail(throttle, `198.51.100.${i}`, "alice", now);
  const wait = held(throttle.tryStart("198.51.100.1", "alice", now));
  assert.equal(wait.scope, "account");
  assert.equal(wait.failures, 12);
  // The real user from an address of its own starts at once, and gets in.
  started(throttle.tryStart("203.0.113.9", "alice", now)).succeeded();
  // Another account from a guessing address is not held back by alice's count either.
  started(throttle.tryStart("198.51.100.1", "bob", now)).released();
});

Deno.test("one address failing for many accounts is held back by the address's count", () => {
  const throttle = new AuthThrottle(OPTIONS);
  const now = 1_000_000;
  for (let i = 0; i < 10; i++) fail(throttle, "192.0.2.1", `user${i}`, now);
  const wait = held(throttle.tryStart("192.0.2.1", "user99", now));
  assert.equal(wait.scope, "address");
  assert.equal(wait.ms, 1000);
  started(throttle.tryStart("192.0.2.2", "user99", now)).released();
  started(throttle.tryStart("192.0.2.1", "user99", now + 1000)).released();
});

Deno.test("a right password forgets its address's failures for the account, not the others", () => {
  const throttle = new AuthThrottle({ ...OPTIONS, addressFailures: 4 });
  let now = 1_000_000;
  for (let i = 0; i < 3; i++) fail(throttle, "192.0.2.1", "alice", now);
  now += 1000;
  started(throttle.tryStart("192.0.2.1", "alice", now)).succeeded();
  // alice's own count from here is gone; the address's (3 failures + none) stays.
  fail(throttle, "192.0.2.1", "bob", now);
  const wait = held(throttle.tryStart("192.0.2.1", "carol", now));
  assert.equal(wait.scope, "address");
  assert.equal(wait.failures, 4);
  const rows = throttle.entries(now);
  assert.ok(!rows.some((r) => r.key === "192.0.2.1 alice"), JSON.stringify(rows));
  assert.ok(rows.some((r) => r.scope === "account" && r.key === "alice" && r.failures === 3));
});

Deno.test("concurrent attempts of a throttled key start one at a time", () => {
  const throttle = new AuthThrottle(OPTIONS);
  const now = 1_000_000;
  // Within the allowance, concurrent attempts start until the allowance is used up.
  const first = [0, 1, 2].map(() => started(throttle.tryStart("192.0.2.1", "alice", now)));
  const wait = held(throttle.tryStart("192.0.2.1", "alice", now));
  assert.equal(wait.ms, undefined, "waits for a running attempt, not for a delay");
  for (const attempt of first) attempt.failed(now);
  const later = now + 1000;
  const one = started(throttle.tryStart("192.0.2.1", "alice", later));
  assert.equal(held(throttle.tryStart("192.0.2.1", "alice", later)).ms, undefined);
  // A step without a verdict (a SCRAM challenge) counts nothing and lets the next one start.
  one.released();
  started(throttle.tryStart("192.0.2.1", "alice", later)).failed(later);
  assert.equal(held(throttle.tryStart("192.0.2.1", "alice", later)).ms, 2000);
});

Deno.test("an attempt without failures leaves no count behind", () => {
  const throttle = new AuthThrottle(OPTIONS);
  started(throttle.tryStart("192.0.2.1", "alice", 0)).succeeded();
  started(throttle.tryStart("192.0.2.1", "bob", 0)).released();
  const running = started(throttle.tryStart("192.0.2.1", "carol", 0));
  assert.equal(throttle.size, 3, "a running attempt is counted under its three keys");
  running.released();
  assert.equal(throttle.size, 0);
});

Deno.test("counts are forgotten a window after the last failure", () => {
  const throttle = new AuthThrottle(OPTIONS);
  const now = 1_000_000;
  for (let i = 0; i < 5; i++) fail(throttle, "192.0.2.1", "alice", now + i * 4000);
  const last = now + 16_000;
  held(throttle.tryStart("192.0.2.1", "alice", last + 1));
  assert.equal(throttle.entries(last + 59_999).length, 3);
  started(throttle.tryStart("192.0.2.1", "alice", last + 60_000)).released();
  assert.deepEqual(throttle.entries(last + 60_000), []);
});

Deno.test("clear forgets an address's or an account's counts", () => {
  const throttle = new AuthThrottle(OPTIONS);
  const now = 1_000_000;
  for (let i = 0; i < 3; i++) fail(throttle, "192.0.2.1", "alice", now);
  fail(throttle, "192.0.2.2", "bob", now);
  assert.equal(throttle.clear("192.0.2.1"), 2);
  started(throttle.tryStart("192.0.2.1", "alice", now)).released();
  assert.deepEqual(throttle.entries(now).map((r) => r.key).sort(), [
    "192.0.2.2",
    "192.0.2.2 bob",
    "alice",
    "bob",
  ]);
  assert.equal(throttle.clear("bob"), 2);
  assert.deepEqual(throttle.entries(now).map((r) => r.key).sort(), ["192.0.2.2", "alice"]);
});

Deno.test("IPv6 addresses are counted by their /64, IPv4-mapped ones as IPv4", () => {
  assert.equal(throttleAddress("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
  assert.equal(throttleAddress("2001:0db8:0001:0002:ffff:1:2:3"), "2001:db8:1:2::/64");
  assert.equal(throttleAddress("2001:db8::1"), "2001:db8:0:0::/64");
  assert.equal(throttleAddress("::1"), "0:0:0:0::/64");
  assert.equal(throttleAddress("::ffff:192.0.2.7"), "192.0.2.7");
  assert.equal(throttleAddress("192.0.2.7"), "192.0.2.7");
  assert.equal(throttleAddress("fe80::1%eth0"), "fe80:0:0:0::/64");
  // Not an address (a test transport's label): counted as it is.
  assert.equal(throttleAddress("1:2:3"), "1:2:3");

  const throttle = new AuthThrottle(OPTIONS);
  for (let i = 0; i < 3; i++) fail(throttle, `2001:db8:1:2::${i + 1}`, "alice", 0);
  assert.equal(
    held(throttle.tryStart("2001:db8:1:2:ffff::9", "alice", 0)).scope,
    "address+account",
  );
});

Deno.test("admit waits out a delay, refuses a wait longer than allowed, and stops for a closed client", async () => {
  const throttle = new AuthThrottle({ ...OPTIONS, maxFailures: 1, delayMs: 20, maxDelayMs: 20 });
  fail(throttle, "192.0.2.1", "alice", Date.now());
  const waits: ThrottleWait[] = [];
  const admitted = await throttle.admit("192.0.2.1", "alice", { onWait: (w) => waits.push(w) });
  assert.equal(admitted.kind, "admitted");
  assert.equal(waits.length, 1);
  assert.equal(waits[0].scope, "address+account");
  if (admitted.kind === "admitted") admitted.attempt.failed();

  const refused = await throttle.admit("192.0.2.1", "alice", { maxWaitMs: 5 });
  assert.equal(refused.kind, "refused");

  const abandoned = await throttle.admit("192.0.2.1", "alice", { abandoned: () => true });
  assert.equal(abandoned.kind, "abandoned");
});

Deno.test("an attempt waiting for a running one starts when that one is settled", async () => {
  const throttle = new AuthThrottle({ ...OPTIONS, maxFailures: 1 });
  const running = started(throttle.tryStart("192.0.2.1", "alice", Date.now()));
  const waiting = throttle.admit("192.0.2.1", "alice", { maxWaitMs: 60_000 });
  running.succeeded();
  const admission = await waiting;
  assert.equal(admission.kind, "admitted");
  if (admission.kind === "admitted") admission.attempt.released();
});

Deno.test("throttle options out of bounds are errors at their line", () => {
  const text = [
    "auth_throttle_max_failures = 0",
    "auth_throttle_address_failures = 'many'",
    "auth_throttle_account_failures = 1.5",
    "auth_throttle_delay = -1",
    "auth_throttle_max_delay = 601",
    "auth_throttle_window = 0",
    "[[host]]",
    'domain = "localhost"',
  ].join("\n");
  const result = parseConfigText(text, "conf.toml");
  assert.equal(result.config, undefined);
  assert.deepEqual(result.problems.map(formatProblem), [
    "conf.toml:1: error: option 'auth_throttle_max_failures' must be at least 1, found 0",
    `conf.toml:2: error: option 'auth_throttle_address_failures' must be an integer, found string "many"`,
    "conf.toml:3: error: option 'auth_throttle_account_failures' must be an integer, found float 1.5",
    "conf.toml:4: error: option 'auth_throttle_delay' must be at least 0, found -1",
    "conf.toml:5: error: option 'auth_throttle_max_delay' must be at most 600, found 601",
    "conf.toml:6: error: option 'auth_throttle_window' must be at least 1, found 0",
  ]);
});
