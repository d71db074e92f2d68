"""The slixmpp session: connection, and everything recorded from incoming stanzas.

Only the stream, SASL, roster and IQ id matching of slixmpp are used; payloads are
read and written as raw ElementTree so the tests see and control every wire detail.
"""

import asyncio
import base64
import hashlib
import logging
import xml.etree.ElementTree as ET

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from wire import (DEFAULT_TIMEOUT, NS_CLIENT, NS_IQ_AVATAR, NS_META, NS_PUBSUB_EVENT, NS_X_AVATAR, NS_X_UPDATE,
                  CommandError, b64, q)

log = logging.getLogger("xmpp_client")


def _version(text):
    """(major, minor) of a version string such as "1.8.3" or "1.10.0"; unknown parts count as 0."""
    parts = []
    for piece in text.split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit()) if piece else ""
        parts.append(int(digits) if digits else 0)
    return tuple(parts + [0] * (2 - len(parts)))


# Probed once: the connect() API changed in 1.9 (see Session.connect_plain). Every other call used here (handlers,
# matchers, Iq.send(timeout=), reply(clear=True), send_raw, get_roster, disconnect(wait=)) is the same in 1.8.3 and
# 1.10.0; avatar payloads are built as raw XML, never through the xep_0054/0084/0153 plugins, whose metadata
# width/height types differ between versions.
SLIXMPP_VERSION = _version(getattr(slixmpp, "__version__", "0"))

NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_CAPS = "http://jabber.org/protocol/caps"
CAPS_NODE = "urn:avatar-gateway:e2e-client"  # any URI naming the software (XEP-0115)
IDENTITY = ("client", "pc", "avatar-gateway e2e client")
# What a XEP-0084 observer advertises: PEP pushes the metadata node only to contacts with +notify (XEP-0163).
FEATURES = sorted([NS_DISCO_INFO, NS_CAPS, NS_META, NS_META + "+notify", NS_X_UPDATE, NS_X_AVATAR, NS_IQ_AVATAR])


def caps_ver():
    """XEP-0115 §5.1 verification string for IDENTITY and FEATURES (no forms)."""
    text = "%s/%s//%s<" % IDENTITY + "".join(f + "<" for f in FEATURES)
    return base64.b64encode(hashlib.sha1(text.encode()).digest()).decode()


def caps_element():
    return ET.Element(q(NS_CAPS, "c"), {"hash": "sha-1", "node": CAPS_NODE, "ver": caps_ver()})


def presence_record(pres):
    """What a test asserts on: the XEP-0008 and XEP-0153 children, told apart from their absence."""
    xml = pres.xml
    rec = {"from": str(pres["from"]), "type": xml.get("type") or "available", "show": None,
           "x_avatar": None, "x_avatar_element": False, "x_update": None, "x_update_element": False}
    show = xml.find(q(NS_CLIENT, "show"))
    if show is not None:
        rec["show"] = show.text
    xa = xml.find(q(NS_X_AVATAR, "x"))
    if xa is not None:
        rec["x_avatar_element"] = True
        h = xa.find(q(NS_X_AVATAR, "hash"))
        rec["x_avatar"] = (h.text or "").strip() if h is not None else ""
    xu = xml.find(q(NS_X_UPDATE, "x"))
    if xu is not None:
        rec["x_update_element"] = True
        photo = xu.find(q(NS_X_UPDATE, "photo"))
        rec["x_update"] = (photo.text or "").strip() if photo is not None else None
    return rec


class Session(slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        # Loopback tests run without TLS; Prosody offers SCRAM anyway, PLAIN is only the fallback.
        self["feature_mechanisms"].unencrypted_plain = True
        self.ready = asyncio.get_event_loop().create_future()
        self.presences = {}  # bare JID -> presence records, oldest first
        self.presence_seq = 0  # bumps on every presence, so waiters can ask for "newer than"
        self.pep_events = []  # pubsub#event notifications, oldest first
        self.avatar = None  # (bytes, mimetype|None, wrap) answered on jabber:iq:avatar; None = not serving
        self.avatar_error = None  # a stanza error condition to answer instead of data
        self.served = []  # from-JIDs of the jabber:iq:avatar gets answered with data
        self.avatar_source = None  # when set, answers every jabber:iq:avatar get itself (the flood command)
        self.add_event_handler("session_start", self.on_session_start)
        self.add_event_handler("failed_auth", lambda _: self.fail("authentication failed"))
        self.add_event_handler("connection_failed", lambda e: self.fail("connection failed: %s" % e))
        self.add_event_handler("disconnected", lambda _: self.fail("disconnected before the session started"))
        self.add_event_handler("presence", self.on_presence)
        # Not the "message" event: slixmpp raises it only for messages with a <body/>, and PEP pushes have none.
        self.register_handler(Callback("pep", MatchXPath("{%s}message/{%s}event" % (NS_CLIENT, NS_PUBSUB_EVENT)),
                                       self.on_pep_event))
        # Registered from the start so that, before serve_iq_avatar, the client answers service-unavailable like a
        # client without XEP-0008 (slixmpp alone would say feature-not-implemented).
        self.register_handler(Callback("iq:avatar", MatchXPath("{%s}iq/{%s}query" % (NS_CLIENT, NS_IQ_AVATAR)),
                                       self.on_iq_avatar))
        # The server asks what the caps hash in a "notify" presence means before pushing PEP events.
        self.register_handler(Callback("disco#info", MatchXPath("{%s}iq/{%s}query" % (NS_CLIENT, NS_DISCO_INFO)),
                                       self.on_disco_info))

    def connect_plain(self, host, port):
        """Connects to host:port without TLS, whichever slixmpp this is.

        slixmpp 1.9 changed connect(): 1.8.3 (Debian bookworm) takes an address tuple and TLS keywords, while
        1.9 and later (1.10.0 in trixie) take (host, port) and read three switches instead, where the 1.8 form
        raises TypeError. Loopback test servers offer no TLS, so only the plaintext path may be tried.
        """
        if SLIXMPP_VERSION >= (1, 9):
            self.enable_plaintext = True
            self.enable_starttls = False
            self.enable_direct_tls = False
            return self.connect(host, port)
        return self.connect((host, port), use_ssl=False, force_starttls=False, disable_starttls=True)

    def fail(self, why):
        if not self.ready.done():
            self.ready.set_result(why)

    async def on_session_start(self, _event):
        try:
            await self.get_roster(timeout=DEFAULT_TIMEOUT)
        except (IqError, IqTimeout) as exc:
            log.warning("roster get failed: %s", exc)
        # No initial presence: each test decides what the first presence carries (x_avatar, x_update).
        if not self.ready.done():
            self.ready.set_result(None)

    def on_presence(self, pres):
        rec = presence_record(pres)
        self.presence_seq += 1
        rec["seq"] = self.presence_seq
        self.presences.setdefault(pres["from"].bare, []).append(rec)
        log.info("presence %s", rec)

    def on_pep_event(self, msg):
        event = msg.xml.find(q(NS_PUBSUB_EVENT, "event"))
        for items in event.findall(q(NS_PUBSUB_EVENT, "items")):
            for item in items.findall(q(NS_PUBSUB_EVENT, "item")):
                rec = {"seq": len(self.pep_events) + 1, "from": str(msg["from"]), "to": str(msg["to"]),
                       "node": items.get("node"), "item_id": item.get("id"), "publisher": item.get("publisher")}
                meta = item.find(q(NS_META, "metadata"))
                if meta is not None:
                    rec["infos"] = [dict(info.attrib) for info in meta.findall(q(NS_META, "info"))]
                self.pep_events.append(rec)
                log.info("pep event %s", rec)

    def on_iq_avatar(self, iq):
        if self.avatar_source is not None and iq["type"] == "get":
            self.avatar_source(iq)
        elif iq["type"] != "get":
            self.reply_error(iq, "bad-request", "modify")
        elif self.avatar_error is not None:
            self.reply_error(iq, self.avatar_error, "cancel")
        elif self.avatar is None:
            self.reply_error(iq, "service-unavailable", "cancel")
        else:
            data, mimetype, wrap = self.avatar
            reply = iq.reply(clear=True)
            query = ET.Element(q(NS_IQ_AVATAR, "query"))
            el = ET.SubElement(query, q(NS_IQ_AVATAR, "data"))
            if mimetype is not None:  # Vacuum-IM omits mimetype: None reproduces that
                el.set("mimetype", mimetype)
            el.text = b64(data, wrap)
            reply.append(query)
            reply.send()
            self.served.append(str(iq["from"]))

    def on_disco_info(self, iq):
        if iq["type"] != "get":
            return
        node = iq.xml.find(q(NS_DISCO_INFO, "query")).get("node")
        reply = iq.reply(clear=True)
        query = ET.Element(q(NS_DISCO_INFO, "query"), {"node": node} if node else {})
        category, itype, name = IDENTITY
        ET.SubElement(query, q(NS_DISCO_INFO, "identity"), {"category": category, "type": itype, "name": name})
        for feature in FEATURES:
            ET.SubElement(query, q(NS_DISCO_INFO, "feature"), {"var": feature})
        reply.append(query)
        reply.send()

    def reply_error(self, iq, condition, etype):
        reply = iq.reply(clear=True)
        reply["error"]["condition"] = condition
        reply["error"]["type"] = etype
        reply.send()

    async def send_iq(self, itype, to, payload, timeout):
        """Sends one IQ with one payload element; returns the raw reply element, errors included."""
        iq = self.Iq()
        iq["type"] = itype
        if to:
            iq["to"] = to
        iq.append(payload)
        try:
            reply = await iq.send(timeout=timeout)
        except IqError as exc:
            reply = exc.iq
        except IqTimeout:
            raise CommandError("no reply to the %s IQ to %s within %ss" % (itype, to or "own account", timeout))
        return reply.xml
