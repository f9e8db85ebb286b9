// Where `lilt` finds its configuration without -c: the same files from any directory (cron
// starts in /), and the list of paths tried when there is none.

import assert from "node:assert/strict";
import { configCandidates, findConfigFile, SYSTEM_CONFIG } from "../../core/config_search.ts";

Deno.test("the search goes from the caller's directory to Lilt's, /etc, then the examples", () => {
  assert.deepEqual(configCandidates({ cwd: "/", installDir: "/opt/lilt" }), [
    "/lilt.toml",
    "/opt/lilt/lilt.toml",
    SYSTEM_CONFIG,
    "/conf.example.toml",
    "/opt/lilt/conf.example.toml",
  ]);
  // Run from Lilt's own directory: the order `lilt start` always used, without repeats.
  assert.deepEqual(configCandidates({ cwd: "/opt/lilt/", installDir: "/opt/lilt" }), [
    "/opt/lilt/lilt.toml",
    SYSTEM_CONFIG,
    "/opt/lilt/conf.example.toml",
  ]);
});

Deno.test("a file in Lilt's directory is found from elsewhere; none found lists the tries", async () => {
  const install = await Deno.makeTempDir({ prefix: "lilt-install-" });
  const elsewhere = await Deno.makeTempDir({ prefix: "lilt-cwd-" });
  try {
    const none = await findConfigFile({ cwd: elsewhere, installDir: install });
    if (none.found) {
      // Only when this machine has a system-wide configuration.
      assert.equal(none.path, SYSTEM_CONFIG);
    } else {
      assert.deepEqual(none.tried, configCandidates({ cwd: elsewhere, installDir: install }));
    }
    await Deno.writeTextFile(`${install}/conf.example.toml`, "");
    await Deno.writeTextFile(`${install}/lilt.toml`, "");
    assert.deepEqual(await findConfigFile({ cwd: elsewhere, installDir: install }), {
      found: true,
      path: `${install}/lilt.toml`,
    });
    // The caller's own lilt.toml comes first; $LILT_CONFIG wins over everything, as given.
    await Deno.writeTextFile(`${elsewhere}/lilt.toml`, "");
    assert.deepEqual(await findConfigFile({ cwd: elsewhere, installDir: install }), {
      found: true,
      path: `${elsewhere}/lilt.toml`,
    });
    assert.deepEqual(
      await findConfigFile({ env: "custom.toml", cwd: elsewhere, installDir: install }),
      { found: true, path: "custom.toml" },
    );
  } finally {
    await Deno.remove(install, { recursive: true });
    await Deno.remove(elsewhere, { recursive: true });
  }
});
