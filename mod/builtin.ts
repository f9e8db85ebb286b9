// The table of modules shipped with Lilt: the names operators list in `modules = [...]`.

import type { ModuleTable } from "../core/modules.ts";
import * as announce from "./announce.ts";
import * as blocklist from "./blocklist.ts";
import * as block_strangers from "./block_strangers.ts";
import * as bookmarks from "./bookmarks.ts";
import * as caps from "./caps.ts";
import * as carbons from "./carbons.ts";
import * as contact_info from "./contact_info.ts";
import * as csi from "./csi.ts";
import * as disco from "./disco.ts";
import * as external_services from "./external_services.ts";
import * as http_metrics from "./http_metrics.ts";
import * as invites from "./invites.ts";
import * as last from "./last.ts";
import * as mam from "./mam.ts";
import * as muc from "./muc.ts";
import * as offline from "./offline.ts";
import * as pep from "./pep.ts";
import * as ping from "./ping.ts";
import * as presence from "./presence.ts";
import * as private_xml from "./private.ts";
import * as pubsub from "./pubsub.ts";
import * as push from "./push.ts";
import * as register from "./register.ts";
import * as roster from "./roster.ts";
import * as rtbl from "./rtbl.ts";
import * as smacks from "./smacks.ts";
import * as spam_reports from "./spam_reports.ts";
import * as time from "./time.ts";
import * as upload from "./upload.ts";
import * as vcard from "./vcard.ts";
import * as vcard_pep from "./vcard_pep.ts";
import * as version from "./version.ts";

/** Built-in modules by name. */
export const builtinModules: ModuleTable = {
  announce,
  blocklist,
  block_strangers,
  bookmarks,
  caps,
  carbons,
  contact_info,
  csi,
  disco,
  external_services,
  http_metrics,
  invites,
  last,
  mam,
  muc,
  offline,
  pep,
  ping,
  presence,
  private: private_xml,
  pubsub,
  push,
  register,
  roster,
  rtbl,
  smacks,
  spam_reports,
  time,
  upload,
  vcard,
  vcard_pep,
  version,
};
