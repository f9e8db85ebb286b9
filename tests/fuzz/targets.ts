// The fuzz targets by name, for the fuzzer's command line (scripts/fuzz) and its worker.

import { configTarget } from "./config_target.ts";
import { jidTarget } from "./jid_target.ts";
import { saslTarget } from "./sasl_target.ts";
import type { FuzzTarget } from "./target.ts";
import { xmlTarget } from "./xml_target.ts";

/** Every target, in the order `--target all` runs them. */
export const TARGETS: Readonly<Record<string, FuzzTarget>> = {
  xml: xmlTarget,
  jid: jidTarget,
  sasl: saslTarget,
  config: configTarget,
};
