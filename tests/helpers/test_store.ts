// Opens the store a test server (or a `lilt` command run with testConfigText's configuration)
// uses for a data directory: the embedded file, or with LILT_TEST_STORAGE=postgresql that
// directory's own schema, so a test reads and seeds what the server reads on either engine.

import { parseConfigText } from "../../core/config.ts";
import { Database, storageOptions } from "../../core/storage/database.ts";
import { testConfigText } from "./test_server.ts";

/** Opens (creating and migrating if needed) the store of the test configuration for `dataDir`. */
export function openTestStore(dataDir: string): Database {
  const { config, problems } = parseConfigText(testConfigText(dataDir), `${dataDir}/test.toml`);
  if (!config) throw new Error(`Test config invalid: ${JSON.stringify(problems)}`);
  return Database.open(storageOptions(config.storage));
}
