# Drives Debian's python3-slixmpp XEP-0163 and XEP-0172 plugins against Lilt's PEP: alice and
# bob share presence (slixmpp's own subscription handshake), bob's caps ask for nicknames and
# OMEMO device lists (+notify), alice publishes her nickname through xep_0172 and a device list
# with pubsub#access_model=open through xep_0163, and bob receives both. Prints one JSON line.
#
# Usage: /usr/bin/python3 slixmpp_pep_client.py PORT CA_FILE

import asyncio
import logging
import xml.etree.ElementTree as ET

from slixmpp_common import DirectTlsClient, run_scenario, wait_for

logging.basicConfig(level=logging.CRITICAL)

DEVICES_NODE = "eu.siacs.conversations.axolotl.devicelist"
NS_AXOLOTL = "eu.siacs.conversations.axolotl"


class Client(DirectTlsClient):
    def __init__(self, jid, password):
        super().__init__(
            jid, password, plugins=("xep_0030", "xep_0004", "xep_0060", "xep_0115", "xep_0163",
                                    "xep_0172")
        )
        self.nicks = []
        self.device_lists = []
        self.add_event_handler("user_nick_publish", self.on_nick)
        self.add_event_handler("pubsub_publish", self.on_publish)
        # As an OMEMO plugin does at start: the caps of the first presence ask for device lists.
        self["xep_0163"].add_interest(DEVICES_NODE)

    async def on_session(self):
        await self.get_roster()

    def subscription(self, contact):
        roster = self.client_roster
        return roster[contact]["subscription"] if contact in roster else "none"

    def on_nick(self, msg):
        self.nicks.append({"from": str(msg["from"]), "nick": msg["pubsub_event"]["items"]["item"]["nick"]["nick"]})

    def on_publish(self, msg):
        items = msg["pubsub_event"]["items"]
        if items["node"] != DEVICES_NODE:
            return
        found = items["item"].xml.find(f"{{{NS_AXOLOTL}}}list")
        ids = [d.get("id") for d in found.findall(f"{{{NS_AXOLOTL}}}device")] if found is not None else []
        self.device_lists.append({"from": str(msg["from"]), "ids": ids})


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

    await alice["xep_0172"].publish_nick("Alice in PEP")
    devices = ET.Element(f"{{{NS_AXOLOTL}}}list")
    ET.SubElement(devices, f"{{{NS_AXOLOTL}}}device", id="4242")
    form = alice["xep_0004"].make_form(ftype="submit")
    form.add_field(var="FORM_TYPE", ftype="hidden",
                   value="http://jabber.org/protocol/pubsub#publish-options")
    form.add_field(var="pubsub#access_model", value="open")
    await alice["xep_0060"].publish(None, DEVICES_NODE, id="current", payload=devices,
                                    options=form)

    await wait_for(lambda: bob.nicks and bob.device_lists)
    result = {
        "both": both,
        "nicks": bob.nicks,
        "device_lists": bob.device_lists,
    }
    alice.disconnect()
    bob.disconnect()
    return result


run_scenario(scenario)
