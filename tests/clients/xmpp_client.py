#!/usr/bin/python3
"""A scriptable real XMPP client for the avatar-gateway end-to-end tests.

    /usr/bin/python3 xmpp_client.py --jid alice@localhost/res --password pw --host 127.0.0.1 --port N

Rust tests (tests/support/client.rs) start one process per account and drive it with JSON lines on
stdin. Every command gets exactly one JSON line on stdout: {"ok": true, ...} or {"ok": false,
"error": "..."}. Logs go to stderr only, so stdout stays a clean protocol channel. The first line
written is the ready line ({"ok": true, "ready": true, "jid": FULL}) or a failure line, after which
the process exits. Each command has a timeout ("timeout" field, default 10 s) and always answers.
The commands themselves are documented in commands.py.
"""

import argparse
import asyncio
import json
import logging
import sys
import threading

try:
    import slixmpp  # noqa: F401  (imported here only to fail with a clear line)
except ImportError as exc:  # the Rust side turns this line into a loud panic
    print(json.dumps({"ok": False, "error": "slixmpp missing (%s): apt-get install -y python3-slixmpp and run "
                      "with /usr/bin/python3" % exc}), flush=True)
    sys.exit(3)

from commands import COMMANDS  # noqa: E402
from session import Session  # noqa: E402
from wire import DEFAULT_TIMEOUT, CommandError  # noqa: E402


def answer(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def stdin_lines(loop, queue):
    """Blocking stdin reads live in a thread; asyncio's pipe readers do not handle every stdin kind."""
    for line in sys.stdin:
        loop.call_soon_threadsafe(queue.put_nowait, line)
    loop.call_soon_threadsafe(queue.put_nowait, None)  # EOF: the test side is gone


def is_quit(line):
    try:
        return json.loads(line).get("cmd") == "quit"
    except (ValueError, AttributeError):
        return False


async def run_command(session, line):
    try:
        args = json.loads(line)
        name = args["cmd"]
    except (ValueError, KeyError, TypeError) as exc:
        return {"ok": False, "error": "bad command line %r: %s" % (line, exc)}
    handler = COMMANDS.get(name)
    if handler is None:
        return {"ok": False, "cmd": name, "error": "unknown command %r" % name}
    timeout = float(args.get("timeout", DEFAULT_TIMEOUT))
    try:
        # A command with several IQs gets the budget for each, plus slack: the outer bound only stops hangs.
        result = await asyncio.wait_for(handler(session, args, timeout), timeout * 3 + 1)
    except CommandError as exc:
        return {"ok": False, "cmd": name, "error": str(exc)}
    except asyncio.TimeoutError:
        return {"ok": False, "cmd": name, "error": "command timed out after %ss" % (timeout * 3 + 1)}
    except Exception as exc:  # a harness bug must still answer, or the Rust side waits for nothing
        logging.exception("command %s failed", name)
        return {"ok": False, "cmd": name, "error": "%s: %s" % (type(exc).__name__, exc)}
    return dict(result, ok=True, cmd=name)


async def main(opts):
    session = Session(opts.jid, opts.password)
    session.connect_plain(opts.host, opts.port)
    try:
        failure = await asyncio.wait_for(session.ready, opts.connect_timeout)
    except asyncio.TimeoutError:
        failure = "no session within %ss" % opts.connect_timeout
    if failure:
        answer({"ok": False, "error": failure})
        return 1
    answer({"ok": True, "ready": True, "jid": str(session.boundjid)})

    queue = asyncio.Queue()
    threading.Thread(target=stdin_lines, args=(asyncio.get_running_loop(), queue), daemon=True).start()
    while True:
        line = await queue.get()
        if line is None:
            break
        if not line.strip():
            continue
        if is_quit(line):
            answer({"ok": True, "cmd": "quit"})
            break
        answer(await run_command(session, line))
    session.disconnect(wait=1.0)
    await asyncio.sleep(0.2)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--jid", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connect-timeout", type=float, default=DEFAULT_TIMEOUT)
    parser.add_argument("--debug", action="store_true", help="log every stanza to stderr")
    opts = parser.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if opts.debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    sys.exit(asyncio.run(main(opts)))
