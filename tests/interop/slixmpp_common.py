# What the slixmpp client scripts share: a client that logs in over direct TLS with the test's
# CA, polling for a condition inside asyncio, and running a scenario that prints one JSON line.
# The scripts take PORT and CA_FILE as their first two arguments.


import asyncio
import sys

import slixmpp

PORT = int(sys.argv[1])
CA_FILE = sys.argv[2]


class DirectTlsClient(slixmpp.ClientXMPP):
    """A client with the given plugins; `ready` resolves once its session started and it
    sent its presence (after `on_session`, which subclasses extend)."""

    def __init__(self, jid, password, plugins=()):
        super().__init__(jid, password)
        self.ca_certs = CA_FILE
        for plugin in plugins:
            self.register_plugin(plugin)
        self.ready = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", self._started)

    async def on_session(self):
        """Runs when a session starts, before the presence."""

    async def _started(self, _event):
        await self.on_session()
        self.send_presence()
        if not self.ready.done():
            self.ready.set_result(True)

    def start(self):
        self.connect(("127.0.0.1", PORT), use_ssl=True, disable_starttls=True)


async def wait_for(check, seconds=10):
    """Polls check() every 50 ms; True once it holds, False after `seconds`."""
    for _ in range(int(seconds * 20)):
        if check():
            return True
        await asyncio.sleep(0.05)
    return False


def run_scenario(scenario, seconds=60):
    """Runs scenario() and prints its result as one JSON line (an error as {"error": ...})."""
    import json

    try:
        result = asyncio.get_event_loop().run_until_complete(
            asyncio.wait_for(scenario(), seconds)
        )
    except Exception as error:  # noqa: BLE001 - reported to the test as JSON
        result = {"error": f"{type(error).__name__}: {error}"}
    print(json.dumps(result), flush=True)
