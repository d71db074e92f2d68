"""One coroutine per JSON command. Each takes (session, args, timeout) and returns the reply dict
(without "ok", which the dispatcher adds). Raise CommandError for a command that cannot be done;
a stanza error from the server is a *result* ({"iq": "error", "condition": ...}), not a failure.
"""

import asyncio
import struct
import xml.etree.ElementTree as ET

from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatcherId

from imageinfo import image_info, sniff
from session import caps_element
from wire import (NS_CLIENT, NS_DATA, NS_IQ_AVATAR, NS_META, NS_PUBSUB, NS_STORAGE, NS_VCARD, NS_X_AVATAR,
                  NS_X_UPDATE, NS_XDATA, CommandError, b64, iq_outcome, q, read_file, sha1_hex, to_string, unb64)

LEGACY_NAMESPACES = (NS_STORAGE, NS_IQ_AVATAR)


def load_image(args):
    """(bytes, mimetype) of args["file"], or (None, None) when the file is null; the type defaults to the sniffed one."""
    path = args.get("file")
    if path is None:
        return None, None
    data = read_file(path)
    mimetype = args["mimetype"] if "mimetype" in args else sniff(data)
    return data, mimetype


async def wait_until(predicate, timeout):
    """Polls `predicate` (cheap: it scans in-memory records) until it holds or `timeout` passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


# ----- presence --------------------------------------------------------------------------------------------------

async def presence(s, args, _timeout):
    pres = s.Presence()
    for key in ("to", "type"):
        if args.get(key):
            pres[key] = args[key]
    if args.get("show"):
        pres["show"] = args["show"]
    if args.get("status"):
        pres["status"] = args["status"]
    xa = args.get("x_avatar")
    if xa is not None:  # "" = <x/> (avatar disabled, XEP-0008); a hash = <x><hash>…
        x = ET.Element(q(NS_X_AVATAR, "x"))
        if xa != "":
            ET.SubElement(x, q(NS_X_AVATAR, "hash")).text = xa
        pres.append(x)
    xu = args.get("x_update")
    if xu is not None or args.get("x_update_no_photo"):
        # "" = <photo/> (no avatar, XEP-0153); x_update_no_photo = bare <x/> (not ready to advertise).
        x = ET.Element(q(NS_X_UPDATE, "x"))
        if xu is not None:
            ET.SubElement(x, q(NS_X_UPDATE, "photo")).text = xu or None
        pres.append(x)
    if args.get("notify"):  # XEP-0115 caps announcing urn:xmpp:avatar:metadata+notify
        pres.append(caps_element())
    pres.send()
    return {"sent": to_string(pres.xml)}


async def wait_presence(s, args, timeout):
    """The last presence from a bare JID, once it matches the optional conditions.

    Conditions: "x_avatar"/"x_update" (exact values, null included, when the key is given), "type",
    "after" (a seq: only presences newer than it count).
    """
    jid = args["jid"]
    after = args.get("after", 0)

    def match():
        recs = [r for r in s.presences.get(jid, []) if r["seq"] > after]
        if not recs:
            return None
        last = recs[-1]
        for key in ("x_avatar", "x_update", "type"):
            if key in args and last[key] != args[key]:
                return None
        return last

    if not await wait_until(match, timeout):
        seen = s.presences.get(jid, [])
        raise CommandError("no matching presence from %s within %ss (last seen: %s; did this client send its own "
                           "initial presence?)" % (jid, timeout, seen[-1] if seen else "none"))
    rec = dict(match())
    rec["count"] = len(s.presences.get(jid, []))
    return rec


# ----- XEP-0008 --------------------------------------------------------------------------------------------------

async def serve_iq_avatar(s, args, _timeout):
    data, mimetype = load_image(args)
    s.avatar = None if data is None else (data, mimetype, args.get("wrap"))
    s.avatar_error = args.get("error")
    return {"sha1": sha1_hex(data) if data is not None else None}


async def served(s, _args, _timeout):
    return {"count": len(s.served), "from": list(s.served)}


async def storage_set(s, args, timeout):
    data, mimetype = load_image(args)
    query = ET.Element(q(NS_STORAGE, "query"))
    if data is not None:  # null file = an empty <query/>, to see how a clear is answered
        el = ET.SubElement(query, q(NS_STORAGE, "data"))
        if mimetype is not None:
            el.set("mimetype", mimetype)
        el.text = b64(data, args.get("wrap"))
    reply = await s.send_iq("set", s.boundjid.bare, query, timeout)
    out = iq_outcome(reply)
    out["type"] = out["iq"]
    out["sha1"] = sha1_hex(data) if data is not None else None
    return out


async def get_legacy(s, args, timeout):
    ns = args["ns"]
    if ns not in LEGACY_NAMESPACES:
        raise CommandError("ns must be one of %s" % (LEGACY_NAMESPACES,))
    reply = await s.send_iq("get", args["jid"], ET.Element(q(ns, "query")), timeout)
    out = iq_outcome(reply)
    out.update({"type": out["iq"], "mimetype": None, "sha1": None, "bytes": None, "width": None, "height": None,
                "sniffed": None, "has_data": False, "xml": to_string(reply)})
    data_el = reply.find("%s/%s" % (q(ns, "query"), q(ns, "data")))
    if data_el is not None:
        out["has_data"] = True
        out["mimetype"] = data_el.get("mimetype")
        if "".join((data_el.text or "").split()):
            data = unb64(data_el.text)
            out["sha1"] = sha1_hex(data)
            out.update(image_info(data))
    return out


# ----- vCard (XEP-0054) --------------------------------------------------------------------------------------------

def vcard_facts(vcard):
    out = {"vcard": vcard is not None, "photo": False, "photo_sha1": None, "type": None, "extval": None,
           "binval_len": None, "other_fields": []}
    if vcard is None:
        return out
    out["other_fields"] = [child.tag.split("}")[-1] for child in vcard if child.tag != q(NS_VCARD, "PHOTO")]
    photo = vcard.find(q(NS_VCARD, "PHOTO"))
    if photo is not None:
        out["photo"] = True
        for key, name in (("type", "TYPE"), ("extval", "EXTVAL")):
            el = photo.find(q(NS_VCARD, name))
            out[key] = el.text if el is not None else None
        binval = photo.find(q(NS_VCARD, "BINVAL"))
        if binval is not None and "".join((binval.text or "").split()):
            data = unb64(binval.text)
            out["photo_sha1"] = sha1_hex(data)
            out["binval_len"] = len(data)
    return out


async def get_vcard(s, args, timeout):
    reply = await s.send_iq("get", args.get("jid"), ET.Element(q(NS_VCARD, "vCard")), timeout)
    out = iq_outcome(reply)
    out.update(vcard_facts(reply.find(q(NS_VCARD, "vCard"))))
    return out


async def set_vcard_photo(s, args, timeout):
    """Read-modify-write of the own vCard (XEP-0054 has no partial update); other fields are kept."""
    reply = await s.send_iq("get", None, ET.Element(q(NS_VCARD, "vCard")), timeout)
    current = reply.find(q(NS_VCARD, "vCard")) if reply.get("type") == "result" else None
    vcard = ET.Element(q(NS_VCARD, "vCard"))
    for child in list(current) if current is not None else []:
        if child.tag != q(NS_VCARD, "PHOTO") and not (args.get("fn") and child.tag == q(NS_VCARD, "FN")):
            vcard.append(child)
    if args.get("fn"):
        ET.SubElement(vcard, q(NS_VCARD, "FN")).text = args["fn"]
    path = args.get("file")
    data = read_file(path) if path is not None else None
    if data is not None or args.get("extval"):
        photo = ET.SubElement(vcard, q(NS_VCARD, "PHOTO"))
        # "type" absent = sniffed, null = no TYPE element (seen in the wild), else that text.
        ptype = args["type"] if "type" in args else (sniff(data) if data is not None else None)
        if ptype is not None:
            ET.SubElement(photo, q(NS_VCARD, "TYPE")).text = ptype
        if args.get("extval"):
            ET.SubElement(photo, q(NS_VCARD, "EXTVAL")).text = args["extval"]
        else:
            ET.SubElement(photo, q(NS_VCARD, "BINVAL")).text = b64(data, args.get("wrap"))
    out = iq_outcome(await s.send_iq("set", None, vcard, timeout))
    out["previous"] = iq_outcome(reply)["iq"]
    out["sha1"] = sha1_hex(data) if data is not None else None
    return out


# ----- XEP-0084 -----------------------------------------------------------------------------------------------------

def publish_payload(node, item_id, payload, access):
    pubsub = ET.Element(q(NS_PUBSUB, "pubsub"))
    publish = ET.SubElement(pubsub, q(NS_PUBSUB, "publish"), {"node": node})
    item = ET.SubElement(publish, q(NS_PUBSUB, "item"), {"id": item_id} if item_id else {})
    item.append(payload)
    if access:  # publish-options are preconditions: a mismatch on an existing node is a conflict
        options = ET.SubElement(pubsub, q(NS_PUBSUB, "publish-options"))
        form = ET.SubElement(options, q(NS_XDATA, "x"), {"type": "submit"})
        for var, value in (("FORM_TYPE", "http://jabber.org/protocol/pubsub#publish-options"),
                           ("pubsub#access_model", access)):
            field = ET.SubElement(form, q(NS_XDATA, "field"), {"var": var})
            ET.SubElement(field, q(NS_XDATA, "value")).text = value
    return pubsub


async def publish_pep(s, args, timeout):
    data, mimetype = load_image(args)
    access = args.get("access")
    out = {"sha1": None, "data": None}
    meta = ET.Element(q(NS_META, "metadata"))
    if data is not None:
        digest = sha1_hex(data)
        out["sha1"] = digest
        # XEP-0084: data first, metadata only once the data is there.
        el = ET.Element(q(NS_DATA, "data"))
        el.text = b64(data, args.get("wrap"))
        out["data"] = iq_outcome(await s.send_iq("set", None, publish_payload(NS_DATA, digest, el, access), timeout))
        if out["data"]["iq"] != "result":  # no metadata pointing at data that is not there
            out["iq"] = out["data"]["iq"]
            return out
        info = image_info(data)
        # All attribute values are strings on the wire (the 1.8.3 plugin trips over ints).
        attrs = {"id": digest, "bytes": str(len(data)), "type": mimetype or "image/png"}
        if info["width"] is not None:
            attrs.update(width=str(info["width"]), height=str(info["height"]))
        ET.SubElement(meta, q(NS_META, "info"), attrs)
        for extra in args.get("extra_infos") or []:
            ET.SubElement(meta, q(NS_META, "info"), {k: str(v) for k, v in extra.items()})
    reply = await s.send_iq("set", None, publish_payload(NS_META, out["sha1"], meta, access), timeout)
    out["metadata"] = iq_outcome(reply)
    out["iq"] = out["metadata"]["iq"]
    return out


async def get_items(s, jid, node, item_id, timeout):
    pubsub = ET.Element(q(NS_PUBSUB, "pubsub"))
    items = ET.SubElement(pubsub, q(NS_PUBSUB, "items"), {"node": node})
    if item_id:
        ET.SubElement(items, q(NS_PUBSUB, "item"), {"id": item_id})
    else:
        items.set("max_items", "1")
    reply = await s.send_iq("get", jid, pubsub, timeout)
    found = reply.findall("%s/%s/%s" % (q(NS_PUBSUB, "pubsub"), q(NS_PUBSUB, "items"), q(NS_PUBSUB, "item")))
    return iq_outcome(reply), found


async def get_pep(s, args, timeout):
    """Metadata as a subscriber sees it, then the data item named by the metadata item id (XEP-0084 §4.2)."""
    jid = args.get("jid")
    outcome, items = await get_items(s, jid, NS_META, None, timeout)
    out = dict(outcome, id=None, infos=[], empty=None, data_sha1=None, data_outcome=None)
    if not items:
        return out
    item = items[-1]
    out["id"] = item.get("id")
    meta = item.find(q(NS_META, "metadata"))
    out["infos"] = [dict(i.attrib) for i in meta.findall(q(NS_META, "info"))] if meta is not None else []
    out["empty"] = not out["infos"]
    if out["id"] and not out["empty"]:
        data_outcome, data_items = await get_items(s, jid, NS_DATA, out["id"], timeout)
        out["data_outcome"] = data_outcome
        data_el = data_items[0].find(q(NS_DATA, "data")) if data_items else None
        if data_el is not None:
            out["data_sha1"] = sha1_hex(unb64(data_el.text))
    return out


async def wait_pep_event(s, args, timeout):
    """The last pubsub#event item from a JID's node (default: avatar metadata), newer than "after" (a seq)."""
    jid, node, after = args["jid"], args.get("node", NS_META), args.get("after", 0)

    def match():
        recs = [e for e in s.pep_events if e["seq"] > after and e["node"] == node and e["from"].split("/")[0] == jid]
        if "item_id" in args:
            recs = [e for e in recs if e["item_id"] == args["item_id"]]
        return recs[-1] if recs else None

    if not await wait_until(match, timeout):
        raise CommandError("no %s event from %s within %ss (%d events seen)" % (node, jid, timeout, len(s.pep_events)))
    return dict(match())


# ----- escape hatch ------------------------------------------------------------------------------------------------

async def raw_iq(s, args, timeout):
    """Any IQ payload as XML text ({"type":"get","to":JID,"payload":"<query xmlns='…'/>"}); returns the raw reply."""
    try:
        payload = ET.fromstring(args["payload"])
    except ET.ParseError as exc:
        raise CommandError("payload is not XML: %s" % exc)
    reply = await s.send_iq(args.get("type", "get"), args.get("to"), payload, timeout)
    return dict(iq_outcome(reply), xml=to_string(reply))


# ----- raw XML text (attacks slixmpp's element builder cannot express, or too slow to build) ------------------------

async def raw_send(s, args, _timeout):
    """Writes `xml` to the stream as it is ({"xml": "<message to='…'>…</message>"}): thousands of nested elements,
    forged wrappers. Nothing is awaited."""
    s.send_raw(args["xml"])
    return {"sent": len(args["xml"])}


def shallow_outcome(xml):
    """iq_outcome plus the reply's XML without its payload: a reply may echo a payload too deep to serialise."""
    out = iq_outcome(xml)
    head = ET.Element(xml.tag, dict(xml.attrib))
    err = xml.find(q(NS_CLIENT, "error"))
    if err is not None:
        head.append(err)
    out["xml"] = to_string(head)
    out["from"] = xml.get("from")
    return out


async def raw_iq_text(s, args, timeout):
    """Writes an IQ given as XML text ({"xml": "<iq type='set' id='ID' …>…</iq>", "id": "ID"}) and waits for the
    reply with that id: `iq`, `condition`, `error_type`, `from`, `xml` (the reply without its payload)."""
    loop = asyncio.get_running_loop()
    reply = loop.create_future()
    name = "raw-iq-%s" % args["id"]

    def on_reply(stanza):
        if not reply.done() and stanza.xml.get("type") in ("result", "error"):
            reply.set_result(stanza.xml)

    s.register_handler(Callback(name, MatcherId(args["id"]), on_reply))
    try:
        s.send_raw(args["xml"])
        xml = await asyncio.wait_for(reply, timeout)
    except asyncio.TimeoutError:
        raise CommandError("no reply to IQ %s within %ss" % (args["id"], timeout))
    finally:
        s.remove_handler(name)
    return shallow_outcome(xml)


# ----- flood (fairness) ----------------------------------------------------------------------------------------------

def jpeg_variant(jpeg, i):
    """`jpeg` with a COM segment naming `i` after SOI: the same pixels (the same decoding cost), another SHA-1."""
    tag = b"flood variant %d" % i
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(tag) + 2) + tag + jpeg[2:]


async def flood(s, args, _timeout):
    """Starts, in the background, `rate` presences a second for `seconds` s, in `bursts` bursts a second (default
    20), the i-th advertising the XEP-0008 hash of variant i of the JPEG `file` (see jpeg_variant). Every
    jabber:iq:avatar get is answered with a variant that matches what some gateway asks for, so that it must really
    decode it: `serve` "oldest" (the oldest advertised variant not served yet: right for a gateway that fetches
    every hash in turn) or "latest" (the last advertised: right, between bursts, for a gateway that fetches only the
    last hash it saw). `flood_wait` waits for the end and reports."""
    if getattr(s, "flood_task", None) is not None and not s.flood_task.done():
        raise CommandError("a flood is already running")
    jpeg = read_file(args["file"])
    rate, seconds, bursts = float(args.get("rate", 200)), float(args.get("seconds", 3)), float(args.get("bursts", 20))
    serve = args.get("serve", "oldest")
    if serve not in ("oldest", "latest"):
        raise CommandError("serve must be oldest or latest")
    stats = {"presences": 0, "served": 0}
    unserved = []  # advertised variant numbers, oldest first

    def answer(iq):
        i = unserved.pop(0) if serve == "oldest" and unserved else max(stats["presences"] - 1, 0)
        body = b64(jpeg_variant(jpeg, i))
        s.send_raw("<iq type='result' id='%s' to='%s'><query xmlns='%s'><data mimetype='image/jpeg'>%s</data>"
                   "</query></iq>" % (iq["id"], iq["from"], NS_IQ_AVATAR, body))
        stats["served"] += 1

    async def run():
        loop = asyncio.get_running_loop()
        start = loop.time()
        batch = max(1, int(rate / bursts))
        while loop.time() - start < seconds:
            for _ in range(batch):
                i = stats["presences"]
                s.send_raw("<presence><x xmlns='%s'><hash>%s</hash></x></presence>"
                           % (NS_X_AVATAR, sha1_hex(jpeg_variant(jpeg, i))))
                unserved.append(i)
                stats["presences"] += 1
            await asyncio.sleep(batch / rate)
        stats["elapsed"] = loop.time() - start

    s.avatar_source = answer
    s.flood_stats = stats
    s.flood_task = asyncio.ensure_future(run())
    return {"started": True, "sha1_first": sha1_hex(jpeg_variant(jpeg, 0))}


async def flood_wait(s, _args, timeout):
    """Waits for the flood to end: `presences` sent, fetches `served`, `elapsed` seconds."""
    task = getattr(s, "flood_task", None)
    if task is None:
        raise CommandError("no flood started")
    await asyncio.wait_for(asyncio.shield(task), timeout)
    return dict(s.flood_stats)


COMMANDS = {
    "presence": presence,
    "wait_presence": wait_presence,
    "serve_iq_avatar": serve_iq_avatar,
    "served": served,
    "storage_set": storage_set,
    "get_legacy": get_legacy,
    "get_vcard": get_vcard,
    "set_vcard_photo": set_vcard_photo,
    "publish_pep": publish_pep,
    "get_pep": get_pep,
    "wait_pep_event": wait_pep_event,
    "raw_iq": raw_iq,
    "raw_send": raw_send,
    "raw_iq_text": raw_iq_text,
    "flood": flood,
    "flood_wait": flood_wait,
}
