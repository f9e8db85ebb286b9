# Drives Debian's python3-slixmpp against a Lilt server, verifying the server certificate
# against the test CA: "exchange" and "wrong-password" force SCRAM-SHA-1 over direct TLS
# (XEP-0368); "defaults" logs in with slixmpp's default SASL settings over the transport named
# (starttls or direct-tls) and reports every SASL failure slixmpp saw. Prints one JSON line.
#
# Usage: /usr/bin/python3 slixmpp_client.py PORT CA_FILE exchange|wrong-password
#        /usr/bin/python3 slixmpp_client.py PORT CA_FILE defaults starttls|direct-tls

import asyncio
import json
import logging
import sys

import slixmpp

logging.basicConfig(level=logging.CRITICAL)

PORT = int(sys.argv[1])
CA_FILE = sys.argv[2]
MODE = sys.argv[3]
TRANSPORT = sys.argv[4] if len(sys.argv) > 4 else "direct-tls"


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password, defaults=False):
        if defaults:
            super().__init__(jid, password)
        else:
            super().__init__(jid, password, sasl_mech="SCRAM-SHA-1")
        self.ca_certs = CA_FILE
        self.ready = asyncio.get_event_loop().create_future()
        # Every SASL <failure/> the server sent, with the mechanism it answered.
        self.failures = []
        self.inbox = asyncio.Queue()
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("failed_auth", self.on_failed)
        self.add_event_handler("message", self.on_message)

    async def on_start(self, _event):
        self.send_presence()
        await self.get_roster()
        if not self.ready.done():
            self.ready.set_result("bound")

    def on_failed(self, event):
        mech = self["feature_mechanisms"].mech
        self.failures.append({
            "mechanism": mech.name if mech is not None else None,
            "condition": str(event["condition"]),
            "text": str(event["text"]),
        })
        if MODE == "defaults":
            return  # slixmpp goes on to its next mechanism by itself; count, don't stop
        if not self.ready.done():
            condition = None
            try:
                condition = event["condition"]
            except Exception:
                condition = str(event)
            self.ready.set_result("failed:" + str(condition))

    def on_message(self, msg):
        if msg["body"]:
            self.inbox.put_nowait({"from": str(msg["from"]), "body": msg["body"]})

    def start(self):
        if TRANSPORT == "starttls":
            self.connect(("127.0.0.1", PORT))
        else:
            self.connect(("127.0.0.1", PORT), use_ssl=True, disable_starttls=True)


async def exchange():
    alice = Client("alice@localhost/py", "alice-secret")
    bob = Client("bob@localhost/py", "bob-secret")
    alice.start()
    bob.start()
    states = await asyncio.wait_for(asyncio.gather(alice.ready, bob.ready), 15)
    bob.send_message(mto="alice@localhost", mbody="hello from slixmpp", mtype="chat")
    message = await asyncio.wait_for(alice.inbox.get(), 10)
    mech = alice["feature_mechanisms"].mech
    result = {
        "states": list(states),
        "mechanism": mech.name if mech is not None else None,
        "message": message,
        "jid": str(alice.boundjid),
    }
    alice.disconnect()
    bob.disconnect()
    return result


async def wrong_password():
    eve = Client("alice@localhost/py", "wrong")
    eve.start()
    state = await asyncio.wait_for(eve.ready, 15)
    eve.disconnect()
    return {"state": state}


async def defaults():
    alice = Client("alice@localhost/py", "alice-secret", defaults=True)
    bob = Client("bob@localhost/py", "bob-secret", defaults=True)
    alice.start()
    bob.start()
    states = await asyncio.wait_for(asyncio.gather(alice.ready, bob.ready), 15)
    bob.send_message(mto="alice@localhost", mbody="defaults work", mtype="chat")
    message = await asyncio.wait_for(alice.inbox.get(), 10)
    result = {
        "states": list(states),
        "mechanisms": [c["feature_mechanisms"].mech.name for c in (alice, bob)],
        "failures": alice.failures + bob.failures,
        "tls": [c.socket.version() if hasattr(c.socket, "version") else None
                for c in (alice, bob)],
        "message": message,
    }
    alice.disconnect()
    bob.disconnect()
    return result


async def main():
    scenarios = {"exchange": exchange, "wrong-password": wrong_password, "defaults": defaults}
    try:
        result = await scenarios[MODE]()
    except Exception as error:  # report, don't hang
        result = {"error": repr(error)}
    print(json.dumps(result), flush=True)


asyncio.get_event_loop().run_until_complete(main())
