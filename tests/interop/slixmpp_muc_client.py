# Drives Debian's python3-slixmpp XEP-0045 plugin against Lilt's conference.localhost: alice
# creates a room, configures it with the form the service sends, sets the subject and talks;
# bob joins and receives the subject and the history, sends a message, reads the room's
# archive with the XEP-0313 plugin (two messages a page), and is kicked.
# Prints one JSON line.
#
# Usage: /usr/bin/python3 slixmpp_muc_client.py PORT CA_FILE

import asyncio
import logging

from slixmpp import JID

from slixmpp_common import DirectTlsClient, run_scenario, wait_for

logging.basicConfig(level=logging.CRITICAL)

ROOM = JID("interop@conference.localhost")


class Client(DirectTlsClient):
    def __init__(self, jid, password):
        super().__init__(jid, password, plugins=(
            "xep_0030", "xep_0004", "xep_0045", "xep_0203", "xep_0059", "xep_0313", "xep_0359",
        ))
        self.messages = []
        self.self_presences = []
        self.add_event_handler("groupchat_message", self.on_message)
        self.add_event_handler(f"muc::{ROOM}::self-presence", self.on_self)

    def on_message(self, msg):
        if msg["body"]:
            self.messages.append({"from": str(msg["from"]), "body": msg["body"]})

    def on_self(self, presence):
        self.self_presences.append({
            "type": presence["type"],
            "codes": sorted(presence["muc"]["status_codes"]),
            "role": presence["muc"]["role"],
        })


async def scenario():
    alice = Client("alice@localhost/py", "alice-secret")
    bob = Client("bob@localhost/py", "bob-secret")
    alice.start()
    bob.start()
    await asyncio.wait_for(asyncio.gather(alice.ready, bob.ready), 15)
    muc_a = alice["xep_0045"]
    muc_b = bob["xep_0045"]

    created, _, _, _ = await muc_a.join_muc_wait(ROOM, "Alice", timeout=10)
    form = await muc_a.get_room_config(ROOM)
    form["type"] = "submit"
    form.get_fields()["muc#roomconfig_roomname"]["value"] = "Interop"
    await muc_a.set_room_config(ROOM, form)
    muc_a.set_subject(ROOM, "Testing slixmpp")
    alice.send_message(mto=ROOM, mbody="first", mtype="groupchat")
    alice.send_message(mto=ROOM, mbody="second", mtype="groupchat")
    await wait_for(lambda: len(alice.messages) == 2)

    joined, subject, occupants, history = await muc_b.join_muc_wait(
        ROOM, "Bob", maxstanzas=10, timeout=10
    )
    bob.send_message(mto=ROOM, mbody="hello from bob", mtype="groupchat")
    await wait_for(lambda: any(m["body"] == "hello from bob" for m in alice.messages))

    archive = []
    async for page in bob["xep_0313"].retrieve(jid=ROOM, iterator=True, rsm={"max": 2}):
        archive.append([
            {
                "id": r["mam_result"]["id"],
                "from": str(r["mam_result"]["forwarded"]["stanza"]["from"]),
                "body": r["mam_result"]["forwarded"]["stanza"]["body"],
            }
            for r in page["mam"]["results"]
        ])

    await muc_a.set_role(ROOM, "Bob", "none", reason="Testing kicks")
    await wait_for(lambda: any(p["type"] == "unavailable" for p in bob.self_presences))

    result = {
        "created_codes": sorted(created["muc"]["status_codes"]),
        "joined_codes": sorted(joined["muc"]["status_codes"]),
        "subject": subject["subject"],
        "occupants": [str(p["from"]) for p in occupants],
        "history": [m["body"] for m in history],
        "history_ids": [m["stanza_id"]["id"] for m in history],
        "archive": archive,
        "alice_got": [m for m in alice.messages if m["from"] == f"{ROOM}/Bob"],
        "bob_self": bob.self_presences,
    }
    alice.disconnect()
    bob.disconnect()
    return result


run_scenario(scenario)
