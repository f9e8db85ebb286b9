# Drives Debian's python3-slixmpp stream management (its xep_0198 plugin, default settings)
# against Lilt over direct TLS: alice enables resumption, her TCP connection is cut without a
# closing tag, bob writes to her while she is away, and she resumes on a new connection. The
# message must arrive exactly once. Prints one JSON line.
#
# Usage: /usr/bin/python3 slixmpp_resume_client.py PORT CA_FILE

import asyncio
import logging

from slixmpp_common import DirectTlsClient, run_scenario, wait_for

logging.basicConfig(level=logging.CRITICAL)



class Client(DirectTlsClient):
    def __init__(self, jid, password, managed):
        super().__init__(jid, password, plugins=("xep_0198",) if managed else ())
        self.events = []
        self.bodies = []
        self.add_event_handler("sm_enabled", lambda _e: self.events.append("sm_enabled"))
        self.add_event_handler("session_resumed", lambda _e: self.events.append("resumed"))
        self.add_event_handler("sm_failed", lambda _e: self.events.append("sm_failed"))
        self.add_event_handler("disconnected", lambda _e: self.events.append("disconnected"))
        self.add_event_handler("message", lambda msg: self.bodies.append(str(msg["body"])))

    async def on_session(self):
        self.events.append("session_start")
        await self.get_roster()


async def scenario():
    alice = Client("alice@localhost/phone", "alice-secret", managed=True)
    bob = Client("bob@localhost/py", "bob-secret", managed=False)
    alice.start()
    bob.start()
    await asyncio.wait_for(asyncio.gather(alice.ready, bob.ready), 15)
    sm = alice.plugin["xep_0198"]
    enabled = await wait_for(lambda: sm.sm_id is not None)

    bob.send_message(mto="alice@localhost/phone", mbody="before the cut", mtype="chat")
    await wait_for(lambda: "before the cut" in alice.bodies)

    # The network goes away: no closing tag, the server only sees the connection drop.
    alice.transport.abort()
    await wait_for(lambda: "disconnected" in alice.events)
    await asyncio.sleep(0.5)
    bob.send_message(mto="alice@localhost/phone", mbody="while you were away", mtype="chat")
    await asyncio.sleep(0.3)

    alice.start()
    resumed = await wait_for(lambda: "resumed" in alice.events or "sm_failed" in alice.events)
    await wait_for(lambda: "while you were away" in alice.bodies, 5)
    await asyncio.sleep(1.0)  # a second copy would arrive by now

    result = {
        "enabled": enabled,
        "resumed": resumed and "resumed" in alice.events,
        "events": alice.events,
        "bodies": alice.bodies,
        "session_starts": alice.events.count("session_start"),
    }
    alice.disconnect()
    bob.disconnect()
    await asyncio.sleep(0.2)
    return result


run_scenario(scenario)
