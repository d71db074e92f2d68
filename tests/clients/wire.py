"""Namespaces and small XML/base64 helpers shared by the client's commands."""

import base64
import hashlib

from slixmpp.xmlstream.tostring import tostring

NS_CLIENT = "jabber:client"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_VCARD = "vcard-temp"
NS_X_AVATAR = "jabber:x:avatar"
NS_X_UPDATE = "vcard-temp:x:update"
NS_IQ_AVATAR = "jabber:iq:avatar"
NS_STORAGE = "storage:client:avatar"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_PUBSUB_EVENT = "http://jabber.org/protocol/pubsub#event"
NS_DATA = "urn:xmpp:avatar:data"
NS_META = "urn:xmpp:avatar:metadata"
NS_XDATA = "jabber:x:data"
DEFAULT_TIMEOUT = 10.0


class CommandError(Exception):
    """A command that cannot be carried out (bad argument, unreadable file, no reply in time)."""


def q(ns, name):
    """ElementTree's qualified name."""
    return "{%s}%s" % (ns, name)


def split_tag(tag):
    if tag.startswith("{"):
        ns, name = tag[1:].split("}", 1)
        return ns, name
    return "", tag


def sha1_hex(data):
    return hashlib.sha1(data).hexdigest()


def b64(data, wrap=None):
    """Base64 without line breaks, or wrapped every `wrap` chars to exercise lenient readers."""
    text = base64.b64encode(data).decode("ascii")
    if wrap:
        text = "\n".join(text[i:i + wrap] for i in range(0, len(text), wrap))
    return text


def unb64(text):
    # XEP-0153 and XEP-0084: whitespace inside base64 MUST be ignored.
    return base64.b64decode("".join((text or "").split()), validate=False)


def read_file(path):
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise CommandError("cannot read %s: %s" % (path, exc))


def iq_outcome(xml):
    """Type, stanza error condition, app-specific condition and text of an IQ reply element."""
    out = {"iq": xml.get("type"), "condition": None, "app_condition": None, "error_type": None, "text": None}
    err = xml.find(q(NS_CLIENT, "error"))
    if err is not None:
        out["error_type"] = err.get("type")
        for child in err:
            ns, name = split_tag(child.tag)
            if ns == NS_STANZAS and name == "text":
                out["text"] = child.text
            elif ns == NS_STANZAS:
                out["condition"] = name
            else:
                out["app_condition"] = name
    return out


def to_string(xml):
    # slixmpp's serialiser keeps the default namespaces readable (ElementTree would print ns0: prefixes).
    return tostring(xml)
