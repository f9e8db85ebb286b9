// The pubsub services modules offer each other (module API `provide`/`service`): the hosted
// service of a pubsub component, and each account's PEP service on an account host. The admin
// shell's pubsub section and later modules (bookmarks, avatars) reach nodes through these.

import type { PubsubService } from "./service.ts";

/** What mod/pubsub.ts provides on its component as `pubsub`. */
export interface HostedPubsub {
  /** The component's one service. */
  readonly service: PubsubService;
}

/** What mod/pep.ts provides on an account host as `pep`. */
export interface PersonalEventing {
  /** The PEP service of account `user` of this host (its address is the bare JID). */
  serviceOf(user: string): PubsubService;
  /** The accounts of this host that have at least one PEP node, sorted. */
  users(): string[];
}

declare module "../../core/modules.ts" {
  interface ModuleServices {
    pubsub: HostedPubsub;
    pep: PersonalEventing;
  }
}
