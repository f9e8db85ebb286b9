# The slixmpp side of the mixed-client room test: alice (Debian's python3-slixmpp XEP-0045
# plugin) creates and configures a room, sets its subject and says one thing, prints
# {"ready": true} so the test starts xmpp.js, then waits for xmpp.js's "Bob" to join and talk,
# answers, and waits for Bob to leave. Prints one JSON line at the end.
#
# Usage: /usr/bin/python3 slixmpp_muc_host.py PORT CA_FILE

import asyncio
import json
import logging

from slixmpp import JID

from slixmpp_common import DirectTlsClient, run_scenario, wait_for

logging.basicConfig(level=logging.CRITICAL)

ROOM = JID("mixed@conference.localhost")


class Client(DirectTlsClient):
    def __init__(self, jid, password):
        super().__init__(jid, password, plugins=("xep_0030", "xep_0004", "xep_0045", "xep_0203"))
        self.messages = []
        self.joined = []
        self.left = []
        self.add_event_handler("groupchat_message", self.on_message)
        self.add_event_handler(f"muc::{ROOM}::got_online", self.on_online)
        self.add_event_handler(f"muc::{ROOM}::got_offline", self.on_offline)

    def on_message(self, msg):
        if msg["body"]:
            self.messages.append({"from": str(msg["from"]), "body": msg["body"]})

    def on_online(self, presence):
        self.joined.append(str(presence["from"]))

    def on_offline(self, presence):
        self.left.append(str(presence["from"]))


async def scenario():
    alice = Client("alice@localhost/py", "alice-secret")
    alice.start()
    await asyncio.wait_for(alice.ready, 15)
    muc = alice["xep_0045"]
    created, _, _, _ = await muc.join_muc_wait(ROOM, "Alice", timeout=10)
    form = await muc.get_room_config(ROOM)
    form["type"] = "submit"
    await muc.set_room_config(ROOM, form)
    muc.set_subject(ROOM, "Mixed clients")
    alice.send_message(mto=ROOM, mbody="before xmpp.js", mtype="groupchat")
    await wait_for(lambda: len(alice.messages) == 1)
    print(json.dumps({"ready": True}), flush=True)

    bob = f"{ROOM}/Bob"
    heard = await wait_for(lambda: any(m["from"] == bob for m in alice.messages), 30)
    if heard:
        alice.send_message(mto=ROOM, mbody="hello from slixmpp", mtype="groupchat")
    await wait_for(lambda: bob in alice.left, 30)
    result = {
        "created_codes": sorted(created["muc"]["status_codes"]),
        "joined": [j for j in alice.joined if j != f"{ROOM}/Alice"],
        "heard": [m for m in alice.messages if m["from"] == bob],
        "left": alice.left,
    }
    alice.disconnect()
    return result


run_scenario(scenario)
