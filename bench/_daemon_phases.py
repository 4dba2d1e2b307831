"""One ``pipework`` command line served by the daemon, with the client's phases noted.

    python _daemon_phases.py OUT.json ARG...

Does what the console script does (``pipework.cli.main``: import
``pipework.cli``, ``run(args)``, ``os._exit``) with thin wrappers around
``client.open_stream`` (the request, until the daemon's response head) and
``client._relay`` (until the worker's exit frame), which note the time
(CLOCK_MONOTONIC, shared with the parent, which notes spawn and exit).
Run by bench/daemon.py; the marks go to OUT.json.
"""

from __future__ import annotations

import time

marks = {"start": time.monotonic()}

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

import pipework.cli as cli  # noqa: E402

marks["cli_imported"] = time.monotonic()
from pipework import client  # noqa: E402

marks["client_imported"] = time.monotonic()

open_stream, relay = client.open_stream, client._relay


def timed_open(*args: Any, **kwargs: Any) -> client.Response:
    marks["request"] = time.monotonic()
    response = open_stream(*args, **kwargs)
    marks["head"] = time.monotonic()
    return response


def timed_relay(response: client.Response) -> int:
    code = relay(response)
    marks["exit_frame"] = time.monotonic()
    return code


client.open_stream = timed_open  # type: ignore[assignment]
client._relay = timed_relay
code = cli.run(sys.argv[2:])
marks["end"] = time.monotonic()
with open(sys.argv[1], "w") as out:
    json.dump(marks, out)
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
