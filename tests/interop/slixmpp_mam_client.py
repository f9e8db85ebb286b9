# Drives Debian's python3-slixmpp XEP-0313 plugin against Lilt: bob and alice chat, then alice
# pages through her archive forwards and backwards (XEP-0059 RSM, three messages a page), and
# the archive ids are compared with the XEP-0359 stanza-ids her messages arrived with.
# Prints one JSON line.
#
# Usage: /usr/bin/python3 slixmpp_mam_client.py PORT CA_FILE

import asyncio
import logging

import slixmpp
from slixmpp_common import DirectTlsClient, run_scenario, wait_for

logging.basicConfig(level=logging.CRITICAL)

PAGE = 3


class Client(DirectTlsClient):
    def __init__(self, jid, password):
        super().__init__(jid, password, plugins=("xep_0059", "xep_0313", "xep_0359"))
        self.inbox = []
        self.add_event_handler("message", self.on_message)

    def on_message(self, msg):
        if msg["body"]:
            self.inbox.append(msg)


async def pages(client, reverse):
    """Every page of the archive of the conversation with bob, as (ids, bodies) lists."""
    out = []
    iterator = client["xep_0313"].retrieve(
        with_jid=slixmpp.JID("bob@localhost"),
        iterator=True,
        reverse=reverse,
        rsm={"max": PAGE},
    )
    async for page in iterator:
        results = page["mam"]["results"]
        out.append({
            "ids": [r["mam_result"]["id"] for r in results],
            "bodies": [r["mam_result"]["forwarded"]["stanza"]["body"] for r in results],
        })
    return out


async def scenario():
    alice = Client("alice@localhost/py", "alice-secret")
    bob = Client("bob@localhost/py", "bob-secret")
    alice.start()
    bob.start()
    await asyncio.wait_for(asyncio.gather(alice.ready, bob.ready), 15)

    for n in range(1, 6):
        bob.send_message(mto="alice@localhost", mbody=f"bob {n}", mtype="chat")
        await wait_for(lambda: len(alice.inbox) == n)
        alice.send_message(mto="bob@localhost", mbody=f"alice {n}", mtype="chat")
        await wait_for(lambda: len(bob.inbox) == n)

    forward = await pages(alice, reverse=False)
    backward = await pages(alice, reverse=True)
    result = {
        "delivered": [m["body"] for m in alice.inbox],
        "stanza_ids": [
            m["stanza_id"]["id"] if m["stanza_id"]["by"] == "alice@localhost" else None
            for m in alice.inbox
        ],
        "forward": forward,
        "backward": backward,
    }
    alice.disconnect()
    bob.disconnect()
    return result


run_scenario(scenario)
