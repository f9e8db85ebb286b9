# Registers an account with Debian's python3-slixmpp from an invitation URI that `lilt shell
# invite create` printed (XEP-0401/XEP-0445), then logs in on the same stream and reads its
# roster. slixmpp 1.8's xep_0077 plugin has no field for an invite token, so the script sends
# XEP-0445's <preauth/> iq itself from the plugin's `register` event, before the registration
# form, which the plugin's stanza interface fills as usual. Prints one JSON line.
#
# Usage: /usr/bin/python3 slixmpp_invite_client.py PORT CA_FILE URI USERNAME PASSWORD

import logging
import os
import sys
from urllib.parse import unquote

from slixmpp.exceptions import IqError
from slixmpp.xmlstream import ET

from slixmpp_common import DirectTlsClient, run_scenario, wait_for

# SLIXMPP_LOG=DEBUG shows the stream when a run goes wrong.
logging.basicConfig(level=os.environ.get("SLIXMPP_LOG", "CRITICAL"))

URI, USERNAME, PASSWORD = sys.argv[3], sys.argv[4], sys.argv[5]
NS_PARS = "urn:xmpp:pars:0"


def parse_invite(uri):
    """(action, bare JID or domain of the URI, parameters) of an xmpp: invitation URI."""
    if not uri.startswith("xmpp:") or "?" not in uri:
        raise ValueError(f"not an xmpp: URI with a query: {uri!r}")
    path, query = uri[len("xmpp:"):].split("?", 1)
    action, *pairs = query.split(";")
    params = dict(pair.split("=", 1) for pair in pairs)
    return action, unquote(path), params


class InvitedClient(DirectTlsClient):
    """Registers USERNAME with the invite's token when the server offers registration."""

    def __init__(self, jid, password, token):
        super().__init__(jid, password, plugins=("xep_0077",))
        # slixmpp 1.8.3 queues every stanza sent before the session starts until it has (its
        # debug log says "NOT SENT"), the xep_0077 plugin's own registration iqs included, so
        # registration before login would wait for ever. The switch slixmpp's own test
        # harness uses lets them through; it is turned off again once registered.
        self._always_send_everything = True
        self.token = token
        self.steps = []
        self.add_event_handler("register", self.on_register)

    async def on_register(self, _form):
        preauth = self.Iq()
        preauth["type"] = "set"
        preauth["to"] = self.boundjid.domain
        preauth.xml.append(ET.Element(f"{{{NS_PARS}}}preauth", {"token": self.token}))
        try:
            await preauth.send()
            self.steps.append("preauth accepted")
            form = self.Iq()
            form["type"] = "set"
            form["register"]["username"] = self.boundjid.user
            form["register"]["password"] = self.password
            await form.send()
            self.steps.append("registered")
            self._always_send_everything = False
        except IqError as error:
            self.steps.append(f"refused: {error.iq['error']['condition']}")
            self.disconnect()

    async def on_session(self):
        await self.get_roster()


async def scenario():
    action, target, params = parse_invite(URI)
    domain = target.split("@")[-1]
    inviter = target if "@" in target else None
    client = InvitedClient(f"{USERNAME}@{domain}/invited", PASSWORD, params["preauth"])
    client.start()
    started = await wait_for(lambda: client.ready.done() or "refused" in " ".join(client.steps), 20)
    result = {"action": action, "ibr": params.get("ibr"), "steps": client.steps, "started": started}
    if client.ready.done():
        roster = client.client_roster
        if inviter is not None:
            # The inviter's presence is not required; the subscription is what the invite gave.
            result["inviter"] = inviter
            result["subscription"] = roster[inviter]["subscription"] if inviter in roster else None
        result["jid"] = str(client.boundjid.bare)
        client.disconnect()
        await wait_for(lambda: not client.is_connected(), 5)
    return result


run_scenario(scenario)
