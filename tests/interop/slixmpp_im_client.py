# Drives Debian's python3-slixmpp through everyday IM against Lilt over direct TLS: a
# subscription handshake done by slixmpp's own roster logic (auto-authorize and
# auto-subscribe), then an offline message delivered with a delay stamp at the next login.
# Prints one JSON line.
#
# Usage: /usr/bin/python3 slixmpp_im_client.py PORT CA_FILE

import asyncio
import logging

from slixmpp_common import DirectTlsClient, run_scenario, wait_for

logging.basicConfig(level=logging.CRITICAL)



class Client(DirectTlsClient):
    def __init__(self, jid, password):
        super().__init__(jid, password, plugins=("xep_0203",))
        self.inbox = asyncio.Queue()
        self.add_event_handler("message", lambda msg: self.inbox.put_nowait(msg))

    async def on_session(self):
        await self.get_roster()

    def subscription(self, contact):
        roster = self.client_roster
        return roster[contact]["subscription"] if contact in roster else "none"


async def scenario():
    alice = Client("alice@localhost/py", "alice-secret")
    bob = Client("bob@localhost/py", "bob-secret")
    alice.start()
    bob.start()
    await asyncio.wait_for(asyncio.gather(alice.ready, bob.ready), 15)

    alice.send_presence(pto="bob@localhost", ptype="subscribe")
    both = await wait_for(
        lambda: alice.subscription("bob@localhost") == "both"
        and bob.subscription("alice@localhost") == "both"
    )
    result = {
        "both": both,
        "alice_sees": alice.subscription("bob@localhost"),
        "bob_sees": bob.subscription("alice@localhost"),
    }

    alice.disconnect()
    await wait_for(lambda: not alice.is_connected(), 5)
    # Make sure the server has noticed alice is gone before bob writes.
    await asyncio.sleep(0.3)
    bob.send_message(mto="alice@localhost", mbody="while you were away", mtype="chat")
    await asyncio.sleep(0.3)

    again = Client("alice@localhost/again", "alice-secret")
    again.start()
    await asyncio.wait_for(again.ready, 15)
    msg = await asyncio.wait_for(again.inbox.get(), 10)
    delay = msg["delay"]
    result["offline"] = {
        "body": msg["body"],
        "from": str(msg["from"]),
        "delay_from": str(delay["from"]),
        "has_stamp": delay["stamp"] is not None,
    }
    again.disconnect()
    bob.disconnect()
    return result


run_scenario(scenario)
