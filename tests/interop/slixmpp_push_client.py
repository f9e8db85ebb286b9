# Drives Debian's python3-slixmpp through XEP-0357 push notifications the way a mobile client meets
# them: alice's client (slixmpp's xep_0198 stream management, default settings) enables push on an
# app server, which is a slixmpp ComponentXMPP (XEP-0114) at push.localhost; her connection is cut
# without a closing tag, bob writes to her bare JID, and the app server must receive the publish
# with the summary form. Debian's slixmpp 1.8 has no xep_0357 plugin, so the <enable/> is built
# with slixmpp's stanza API. Prints one JSON line.
#
# Usage: /usr/bin/python3 slixmpp_push_client.py PORT CA_FILE COMPONENT_PORT

import asyncio
import logging
import sys

from slixmpp import ComponentXMPP
from slixmpp.xmlstream import ET
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from slixmpp_common import DirectTlsClient, run_scenario, wait_for

logging.basicConfig(level=logging.CRITICAL)

COMPONENT_PORT = int(sys.argv[3])
NS_PUSH = "urn:xmpp:push:0"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_DATA = "jabber:x:data"


class AppServer(ComponentXMPP):
    """An app server that records each notification publish and accepts it."""

    def __init__(self):
        super().__init__("push.localhost", "s3cret", "127.0.0.1", COMPONENT_PORT)
        self.publishes = []
        self.ready = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", self._started)
        self.register_handler(Callback(
            "push publish",
            MatchXPath(f"{{jabber:component:accept}}iq/{{{NS_PUBSUB}}}pubsub"),
            self._publish,
        ))

    def _started(self, _event):
        if not self.ready.done():
            self.ready.set_result(True)

    def _publish(self, iq):
        pubsub = iq.xml.find(f"{{{NS_PUBSUB}}}pubsub")
        publish = pubsub.find(f"{{{NS_PUBSUB}}}publish")
        notification = publish.find(f"{{{NS_PUBSUB}}}item/{{{NS_PUSH}}}notification")
        fields = {}
        for field in notification.iter(f"{{{NS_DATA}}}field"):
            fields[field.get("var")] = field.findtext(f"{{{NS_DATA}}}value")
        options = {}
        publish_options = pubsub.find(f"{{{NS_PUBSUB}}}publish-options")
        if publish_options is not None:
            for field in publish_options.iter(f"{{{NS_DATA}}}field"):
                options[field.get("var")] = field.findtext(f"{{{NS_DATA}}}value")
        self.publishes.append({
            "from": iq["from"].full,
            "type": iq["type"],
            "node": publish.get("node"),
            "fields": fields,
            "options": options,
        })
        iq.reply(clear=True).send()


class Client(DirectTlsClient):
    def __init__(self, jid, password, managed):
        super().__init__(jid, password, plugins=("xep_0198",) if managed else ())
        self.events = []
        self.add_event_handler("disconnected", lambda _e: self.events.append("disconnected"))

    async def on_session(self):
        await self.get_roster()


def enable_push(client):
    """The XEP-0357 <enable/> with a publish-options form carrying the app's secret."""
    iq = client.make_iq_set()
    enable = ET.Element(f"{{{NS_PUSH}}}enable", {"jid": "push.localhost", "node": "slix-node"})
    form = ET.SubElement(enable, f"{{{NS_DATA}}}x", {"type": "submit"})
    for var, value in (("FORM_TYPE", "http://jabber.org/protocol/pubsub#publish-options"),
                       ("secret", "app-secret")):
        field = ET.SubElement(form, f"{{{NS_DATA}}}field", {"var": var})
        ET.SubElement(field, f"{{{NS_DATA}}}value").text = value
    iq.append(enable)
    return iq.send(timeout=10)


async def scenario():
    app = AppServer()
    app.connect()
    await asyncio.wait_for(app.ready, 15)

    alice = Client("alice@localhost/phone", "alice-secret", managed=True)
    bob = Client("bob@localhost/py", "bob-secret", managed=False)
    alice.start()
    bob.start()
    await asyncio.wait_for(asyncio.gather(alice.ready, bob.ready), 15)
    sm = alice.plugin["xep_0198"]
    enabled = await wait_for(lambda: sm.sm_id is not None)
    answer = await enable_push(alice)

    # The phone loses its network: no closing tag, the session hibernates on the server.
    alice.transport.abort()
    await wait_for(lambda: "disconnected" in alice.events)
    await asyncio.sleep(0.5)
    bob.send_message(mto="alice@localhost", mbody="wake up", mtype="chat")
    await wait_for(lambda: len(app.publishes) > 0, 10)

    result = {
        "sm_enabled": enabled,
        "enable_type": answer["type"],
        "publishes": app.publishes,
    }
    bob.disconnect()
    app.disconnect()
    await asyncio.sleep(0.2)
    return result


run_scenario(scenario)
