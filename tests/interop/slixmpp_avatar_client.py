# Drives Debian's python3-slixmpp avatar plugins against Lilt's XEP-0398 conversion: alice
# publishes an avatar with xep_0084 (PEP) and bob reads it from her vCard with xep_0054, and bob's
# xep_0153 plugin sees its hash in alice's presence, which her client did not put there; bob sets
# an avatar in his vCard with xep_0153 and alice fetches it from PEP with xep_0084. Prints one
# JSON line.
#
# Usage: /usr/bin/python3 slixmpp_avatar_client.py PORT CA_FILE

import asyncio
import base64
import hashlib
import logging

from slixmpp_common import DirectTlsClient, run_scenario, wait_for

logging.basicConfig(level=logging.CRITICAL)

# A 1x1 PNG and a 2x3 GIF header.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
GIF = base64.b64decode("R0lGODlhAgADAIAAAP///wAAACwAAAAAAgADAAACAoRRADs=")
NS_METADATA = "urn:xmpp:avatar:metadata"
BASE_PLUGINS = ("xep_0030", "xep_0004", "xep_0060", "xep_0115", "xep_0163", "xep_0084", "xep_0054")


def sha1(data):
    return hashlib.sha1(data).hexdigest()


class Client(DirectTlsClient):
    def __init__(self, jid, password, plugins):
        super().__init__(jid, password, plugins=plugins)
        self.presence_hashes = []
        self.add_event_handler("vcard_avatar_update", self.on_avatar_update)

    async def on_session(self):
        await self.get_roster()

    def subscription(self, contact):
        roster = self.client_roster
        return roster[contact]["subscription"] if contact in roster else "none"

    def on_avatar_update(self, pres):
        self.presence_hashes.append(
            {"from": str(pres["from"]), "photo": pres["vcard_temp_update"]["photo"]}
        )


async def scenario():
    # alice has no XEP-0153 plugin: any hash in her presence is the server's.
    alice = Client("alice@localhost/py", "alice-secret", BASE_PLUGINS)
    bob = Client("bob@localhost/py", "bob-secret", BASE_PLUGINS + ("xep_0153",))
    alice.start()
    bob.start()
    await asyncio.wait_for(asyncio.gather(alice.ready, bob.ready), 15)
    alice.send_presence(pto="bob@localhost", ptype="subscribe")
    both = await wait_for(
        lambda: alice.subscription("bob@localhost") == "both"
        and bob.subscription("alice@localhost") == "both"
    )

    # PEP -> vCard.
    await alice["xep_0084"].publish_avatar(PNG)
    await alice["xep_0084"].publish_avatar_metadata(
        {"id": sha1(PNG), "type": "image/png", "bytes": len(PNG)}
    )
    card = (await bob["xep_0054"].get_vcard("alice@localhost", cached=False))["vcard_temp"]
    vcard_photo = {"type": card["PHOTO"]["TYPE"], "sha1": sha1(card["PHOTO"]["BINVAL"])}

    # The XEP-0153 hash in alice's next presence.
    alice.send_presence()
    await wait_for(lambda: any(h["photo"] == sha1(PNG) for h in bob.presence_hashes))

    # vCard -> PEP.
    await bob["xep_0153"].set_avatar(avatar=GIF, mtype="image/gif")
    item = await alice["xep_0084"].retrieve_avatar("bob@localhost", sha1(GIF))
    pep_data = sha1(item["pubsub"]["items"]["item"]["avatar_data"]["value"])
    metadata = await alice["xep_0060"].get_items("bob@localhost", NS_METADATA)
    info = metadata["pubsub"]["items"]["item"].xml.find(f"{{{NS_METADATA}}}metadata/{{{NS_METADATA}}}info")

    result = {
        "both": both,
        "vcard_photo": vcard_photo,
        "presence_hashes": [h for h in bob.presence_hashes if h["photo"]],
        "pep_data_sha1": pep_data,
        "pep_info": dict(info.attrib) if info is not None else None,
    }
    alice.disconnect()
    bob.disconnect()
    return result


run_scenario(scenario)
