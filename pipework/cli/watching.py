"""What ``pipework watch`` and ``pipework daemon --watch`` share: the watch
options, checked into a ``WatchPlan``, and the log lines on stderr."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from pipework.cli.commands.common import fail
from pipework.cli.render import error
from pipework.records import Record

STATUS_FILE = "watch/status.json"


class JsonLines(logging.Formatter):
    """One JSON object per log record: time, level, message and the record's
    structured fields (guest, ifname, event, latency_ms...)."""

    FIELDS = ("guest", "ifname", "event", "source", "latency_ms")

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": round(record.created, 3),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        for name in self.FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                data[name] = value
        return json.dumps(data)


def log_to_stderr(log_format: str, debug: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger("pipework")
    root.handlers[:] = [handler]
    root.propagate = False
    root.setLevel(logging.DEBUG if debug else logging.INFO)


def status_path(run_dir: str) -> Path:
    return Path(run_dir) / STATUS_FILE


FileOption = Annotated[
    str | None,
    typer.Option(
        "--file", "-f", help="A topology file (pipework apply's format) declaring attachments."
    ),
]
IntervalOption = Annotated[
    float, typer.Option("--interval", min=1.0, help="Seconds between full reconciliations [30].")
]
LogFormatOption = Annotated[
    str, typer.Option("--log-format", help="Log lines as 'text' or 'json' (on stderr).")
]
ImageLabelsOption = Annotated[
    bool,
    typer.Option(
        "--allow-image-labels", help="Also act on labels a container inherits from its image."
    ),
]
KindsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-kinds",
        help="Link kinds labels may use besides bridge and ovs (comma-separated, repeatable).",
    ),
]
HostOption = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-host",
        help="A host interface labels may name: a parent, an existing bridge (repeatable).",
    ),
]
DirectPhysOption = Annotated[
    bool,
    typer.Option("--allow-direct-phys", help="Let labels use --direct-phys (with --allow-host)."),
]
ForwardOption = Annotated[
    bool, typer.Option("--allow-forward", help="Let labels use --allow-forward.")
]
OptionOption = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-option",
        help="Let labels use: host-ifname, opt, dhcp-options, dhcp-image, force, method (repeatable).",
    ),
]


class WatchPlan(Record):
    """What a watcher follows: the label policy and a topology file's declarations."""

    policy: Any
    declare: Any = None


def watch_plan(
    file: str | None,
    log_format: str,
    *,
    image_labels: bool,
    kinds: list[str] | None,
    hosts: list[str] | None,
    direct_phys: bool,
    forward: bool,
    allowed: list[str] | None,
) -> WatchPlan:
    """The watch options, checked (``watch`` and ``daemon --watch`` share
    them); a bad one is one error line and ``typer.Exit``."""
    if log_format not in ("text", "json"):
        error(f"--log-format takes 'text' or 'json', not {log_format!r}")
        raise typer.Exit(2)
    from pipework.apps.watch_policy import policy_from
    from pipework.engine.errors import PipeworkError

    try:
        policy = policy_from(
            image_labels=image_labels,
            kinds=kinds or [],
            hosts=hosts or [],
            direct_phys=direct_phys,
            forward=forward,
            options=allowed or [],
        )
    except PipeworkError as exc:
        raise fail(exc) from None
    if file is None:
        return WatchPlan(policy)
    from pipework.apps.topology.loader import load
    from pipework.apps.watch import topology_declarations

    try:
        loaded = load(file)
        declare = topology_declarations(loaded)
    except PipeworkError as exc:
        raise fail(exc) from None
    if loaded.topology.links:
        count = len(loaded.topology.links)
        logging.getLogger("pipework").warning(
            "%s: watch keeps its attachments, not its %d link%s between guests "
            "(make them with pipework apply %s)",
            loaded.name, count, "" if count == 1 else "s", file,
            extra={"event": "ignored"},
        )  # fmt: skip
    return WatchPlan(policy, declare)
