# Drives Debian's python3-slixmpp XEP-0060 plugin against Lilt's pubsub.localhost: alice creates
# a node and publishes to it, bob subscribes and receives the notifications (publish and a
# retraction with notify), then reads the node's items back. Prints one JSON line.
#
# Usage: /usr/bin/python3 slixmpp_pubsub_client.py PORT CA_FILE

import asyncio
import logging
import xml.etree.ElementTree as ET

from slixmpp_common import DirectTlsClient, run_scenario, wait_for

logging.basicConfig(level=logging.CRITICAL)

SERVICE = "pubsub.localhost"
NS = "urn:example:news"


class Client(DirectTlsClient):
    def __init__(self, jid, password):
        super().__init__(jid, password, plugins=("xep_0030", "xep_0004", "xep_0060"))
        self.published = []
        self.retracted = []
        self.add_event_handler("pubsub_publish", self.on_publish)
        self.add_event_handler("pubsub_retract", self.on_retract)


    def on_publish(self, msg):
        items = msg["pubsub_event"]["items"]
        item = items["item"]
        payload = item.xml.find(f"{{{NS}}}entry")
        self.published.append({
            "from": str(msg["from"]),
            "node": items["node"],
            "id": item["id"],
            "text": payload.text if payload is not None else None,
        })

    def on_retract(self, msg):
        self.retracted.append(msg["pubsub_event"]["items"]["retract"]["id"])


def entry(text):
    el = ET.Element(f"{{{NS}}}entry")
    el.text = text
    return el


async def scenario():
    alice = Client("alice@localhost/py", "alice-secret")
    bob = Client("bob@localhost/py", "bob-secret")
    alice.start()
    bob.start()
    await asyncio.wait_for(asyncio.gather(alice.ready, bob.ready), 15)

    pubsub_a = alice["xep_0060"]
    pubsub_b = bob["xep_0060"]
    await pubsub_a.create_node(SERVICE, "news")
    subscribed = await pubsub_b.subscribe(SERVICE, "news")
    state = subscribed["pubsub"]["subscription"]["subscription"]

    await pubsub_a.publish(SERVICE, "news", id="first", payload=entry("hello"))
    answer = await pubsub_a.publish(SERVICE, "news", payload=entry("second"))
    generated = answer["pubsub"]["publish"]["item"]["id"]
    await wait_for(lambda: len(bob.published) == 2)

    await pubsub_a.retract(SERVICE, "news", "first", notify=True)
    await wait_for(lambda: len(bob.retracted) == 1)

    items = await pubsub_b.get_items(SERVICE, "news")
    result = {
        "subscription": state,
        "generated_id": generated,
        "published": bob.published,
        "retracted": bob.retracted,
        "items": [item["id"] for item in items["pubsub"]["items"]],
    }
    alice.disconnect()
    bob.disconnect()
    return result


run_scenario(scenario)
