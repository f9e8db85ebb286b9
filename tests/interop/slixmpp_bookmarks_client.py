# Drives Debian's python3-slixmpp against Lilt's XEP-0402 #compat: one of alice's clients keeps
# bookmarks the XEP-0048 way through slixmpp's xep_0048 plugin (private XML, XEP-0049), another
# the XEP-0402 way through xep_0060 with `urn:xmpp:bookmarks:1+notify` in its caps. The modern
# client is notified of the legacy client's rooms; the legacy client reads the room the modern
# one published, from private XML and from the legacy PEP node (xep_0223). Prints one JSON line.
#
# Usage: /usr/bin/python3 slixmpp_bookmarks_client.py PORT CA_FILE

import asyncio
import logging
import xml.etree.ElementTree as ET

from slixmpp_common import DirectTlsClient, run_scenario, wait_for

logging.basicConfig(level=logging.CRITICAL)

BOOKMARKS = "urn:xmpp:bookmarks:1"


class Legacy(DirectTlsClient):
    def __init__(self):
        super().__init__("alice@localhost/legacy", "alice-secret",
                         plugins=("xep_0030", "xep_0004", "xep_0060", "xep_0049", "xep_0223",
                                  "xep_0048"))


class Modern(DirectTlsClient):
    def __init__(self):
        super().__init__("alice@localhost/modern", "alice-secret",
                         plugins=("xep_0030", "xep_0004", "xep_0060", "xep_0115", "xep_0163"))
        self.notified = []
        self.add_event_handler("pubsub_publish", self.on_publish)
        self["xep_0163"].add_interest(BOOKMARKS)
        # Resolves when the server asks for this client's caps (disco#info of NODE#VER).
        self.caps_asked = asyncio.get_event_loop().create_future()
        self.add_filter("in", self._watch_caps_query)

    def _watch_caps_query(self, stanza):
        query = stanza.xml.find("{http://jabber.org/protocol/disco#info}query")
        if (stanza.xml.tag.endswith("iq") and stanza.xml.get("type") == "get" and
                query is not None and "#" in query.get("node", "") and
                not self.caps_asked.done()):
            self.caps_asked.set_result(True)
        return stanza

    def on_publish(self, msg):
        items = msg["pubsub_event"]["items"]
        if items["node"] == BOOKMARKS:
            self.notified.append(items["item"]["id"])


def conferences(storage):
    found = [{"jid": str(c["jid"]), "nick": c["nick"], "autojoin": c["autojoin"],
              "password": c["password"]} for c in storage["conferences"]]
    return sorted(found, key=lambda c: c["jid"])


async def scenario():
    legacy = Legacy()
    modern = Modern()
    legacy.start()
    modern.start()
    await asyncio.wait_for(asyncio.gather(legacy.ready, modern.ready), 15)
    # The server learns the modern client's +notify from its caps; a round trip after the
    # server's caps query makes sure the answer was read before anything is published.
    try:
        await asyncio.wait_for(asyncio.shield(modern.caps_asked), 5)
    except asyncio.TimeoutError:
        pass  # caps the server had cached need no query
    await modern["xep_0030"].get_info(jid="localhost")

    # The legacy client stores two rooms in private XML.
    storage = legacy["xep_0048"].stanza.Bookmarks()
    storage.add_conference("tea@muc.localhost", "Alice", name="Tea", autojoin=True,
                           password="secret")
    storage.add_conference("board@muc.localhost", "Al", name="Board")
    await legacy["xep_0048"].set_bookmarks(storage, method="xep_0049")
    await wait_for(lambda: len(modern.notified) >= 2)
    notified = sorted(modern.notified)

    # The modern client publishes a third room as XEP-0402 says.
    conference = ET.Element(f"{{{BOOKMARKS}}}conference", name="Orchard", autojoin="true")
    ET.SubElement(conference, f"{{{BOOKMARKS}}}nick").text = "JC"
    form = modern["xep_0004"].make_form(ftype="submit")
    form.add_field(var="FORM_TYPE", ftype="hidden",
                   value="http://jabber.org/protocol/pubsub#publish-options")
    form.add_field(var="pubsub#persist_items", value="true")
    form.add_field(var="pubsub#max_items", value="max")
    form.add_field(var="pubsub#send_last_published_item", value="never")
    form.add_field(var="pubsub#access_model", value="whitelist")
    await modern["xep_0060"].publish(None, BOOKMARKS, id="orchard@muc.localhost",
                                     payload=conference, options=form)

    private = await legacy["xep_0048"].get_bookmarks(method="xep_0049")
    pep = await legacy["xep_0048"].get_bookmarks(method="xep_0223")
    pep_storage = pep["pubsub"]["items"]["item"]["payload"]
    legacy_pep = sorted(
        c.get("jid") for c in pep_storage.findall("{storage:bookmarks}conference")
    ) if pep_storage is not None else []

    result = {
        "notified": notified,
        "private": conferences(private["private"]["bookmarks"]),
        "legacy_pep": legacy_pep,
    }
    legacy.disconnect()
    modern.disconnect()
    return result


run_scenario(scenario)
