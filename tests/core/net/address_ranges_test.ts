// Address ranges from the configuration: parsing, IPv4/IPv6 matching and IPv4-mapped peers.

import assert from "node:assert/strict";
import {
  addressBits,
  AddressRanges,
  checkAddressRange,
  isAddressRange,
} from "../../../core/net/address_ranges.ts";

Deno.test("address ranges match IPv4, IPv6 and IPv4-mapped peers", () => {
  const ranges = AddressRanges.parse(["127.0.0.1/8", "10.1.2.3", "2001:db8::/32"]);
  assert.ok(ranges.includes("127.5.0.1"));
  assert.ok(ranges.includes("::ffff:127.0.0.1"));
  assert.ok(ranges.includes("10.1.2.3"));
  assert.ok(!ranges.includes("10.1.2.4"));
  assert.ok(ranges.includes("2001:db8:1::5"));
  assert.ok(ranges.includes("[2001:db8::1]"));
  assert.ok(ranges.includes("2001:db8::1%eth0"));
  assert.ok(!ranges.includes("2001:db9::5"));
  assert.ok(!ranges.includes("not an address"));
  assert.ok(!ranges.includes("::1"));
});

Deno.test("address ranges: /0 covers everything of its family, empty covers nothing", () => {
  assert.ok(AddressRanges.parse(["0.0.0.0/0"]).includes("203.0.113.9"));
  assert.ok(!AddressRanges.parse(["0.0.0.0/0"]).includes("2001:db8::1"));
  assert.ok(AddressRanges.parse(["::/0"]).includes("2001:db8::1"));
  const none = AddressRanges.parse([]);
  assert.ok(none.empty);
  assert.ok(!none.includes("127.0.0.1"));
});

Deno.test("address ranges: bad entries are refused with the entry named", () => {
  for (const bad of ["nope", "10.0.0.0/33", "10.0.0.0/", "::/129", "1.2.3", "10.0.0.0/8x"]) {
    assert.ok(!isAddressRange(bad), bad);
    assert.match(checkAddressRange(bad, "some_option")!, /some_option.*invalid entry/);
  }
  assert.throws(() => AddressRanges.parse(["10.0.0.0/8", "bad"]), /'bad' is not an IP address/);
  assert.equal(checkAddressRange("192.0.2.0/24", "x"), undefined);
});

Deno.test("addressBits writes an embedded IPv4 tail like the mapped form", () => {
  assert.equal(addressBits("::ffff:192.0.2.1"), addressBits("192.0.2.1"));
  assert.equal(addressBits("::ffff:c000:201"), addressBits("192.0.2.1"));
});
