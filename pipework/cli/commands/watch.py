"""``pipework watch``: the long-running reconciler, and ``--status``."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from pipework.cli.commands.common import fail, options
from pipework.cli.render import emit, error, run_async

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


def _log_to_stderr(log_format: str, debug: bool) -> None:
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


def command(
    ctx: typer.Context,
    file: Annotated[
        str | None,
        typer.Option(
            "--file", "-f", help="A topology file (pipework apply's format) declaring attachments."
        ),
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Reconcile the running guests, then exit.")
    ] = False,
    interval: Annotated[
        float,
        typer.Option("--interval", min=1.0, help="Seconds between full reconciliations [30]."),
    ] = 30.0,
    log_format: Annotated[
        str, typer.Option("--log-format", help="Log lines as 'text' or 'json' (on stderr).")
    ] = "text",
    status: Annotated[
        bool, typer.Option("--status", help="Show what the running watcher manages, and exit.")
    ] = False,
    allow_image_labels: Annotated[
        bool,
        typer.Option(
            "--allow-image-labels",
            help="Also act on labels a container inherits from its image.",
        ),
    ] = False,
    allow_kinds: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-kinds",
            help="Link kinds labels may use besides bridge and ovs (comma-separated, repeatable).",
        ),
    ] = None,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            help="A host interface labels may name: a parent, an existing bridge (repeatable).",
        ),
    ] = None,
    allow_direct_phys: Annotated[
        bool,
        typer.Option(
            "--allow-direct-phys", help="Let labels use --direct-phys (with --allow-host)."
        ),
    ] = False,
    allow_forward: Annotated[
        bool, typer.Option("--allow-forward", help="Let labels use --allow-forward.")
    ] = False,
    allow_option: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-option",
            help="Let labels use: host-ifname, opt, dhcp-options, dhcp-image, force, method (repeatable).",
        ),
    ] = None,
) -> None:
    """Attach what guests' labels declare whenever they start; clean up when they die."""
    opts = options(ctx)
    if log_format not in ("text", "json"):
        error(f"--log-format takes 'text' or 'json', not {log_format!r}")
        raise typer.Exit(2)
    if status:
        raise typer.Exit(show_status(opts.json))
    from pipework.apps.watch_policy import policy_from
    from pipework.engine.errors import PipeworkError

    try:
        policy = policy_from(
            image_labels=allow_image_labels,
            kinds=allow_kinds or [],
            hosts=allow_host or [],
            direct_phys=allow_direct_phys,
            forward=allow_forward,
            options=allow_option or [],
        )
    except PipeworkError as exc:
        raise fail(exc) from None
    declare = None
    if file is not None:
        from pipework.apps.topology.loader import load
        from pipework.apps.watch import topology_declarations

        try:
            loaded = load(file)
            declare = topology_declarations(loaded)
        except PipeworkError as exc:
            raise fail(exc) from None
    _log_to_stderr(log_format, opts.debug)
    if file is not None and loaded.topology.links:
        count = len(loaded.topology.links)
        logging.getLogger("pipework").warning(
            "%s: watch keeps its attachments, not its %d link%s between guests "
            "(make them with pipework apply %s)",
            loaded.name, count, "" if count == 1 else "s", file,
            extra={"event": "ignored"},
        )  # fmt: skip
    raise typer.Exit(
        run_async(
            lambda: _watch(once=once, interval=interval, declare=declare, policy=policy),
            opts.debug,
        )
    )


async def _watch(*, once: bool, interval: float, declare: Any = None, policy: Any = None) -> int:
    import signal

    import anyio

    from pipework.apps.watch import Watcher
    from pipework.engine import Engine
    from pipework.engine.errors import UsageError
    from pipework.engine.plugins import event_sources

    async with Engine() as engine:
        unknown = sorted(policy.kinds - set(engine.kinds)) if policy is not None else []
        if unknown:
            raise UsageError(
                f"--allow-kinds: no link backend named {', '.join(unknown)}",
                f"known kinds: {', '.join(engine.kinds)}",
            )
        sources = event_sources(engine.plugin_manager, engine.config)
        watcher = Watcher(
            engine,
            sources,
            declare=declare,
            interval=interval,
            status_path=None if once else status_path(engine.config.run_dir),
            policy=policy,
        )
        try:
            if once:
                failures = await watcher.run_once()
                return 1 if failures else 0
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(watcher.run)
                    async for signum in signals:
                        logging.getLogger("pipework.watch").info(
                            "%s: stopping; attachments stay in place",
                            signal.Signals(signum).name,
                            extra={"event": "stopped"},
                        )
                        tg.cancel_scope.cancel()
                        break
            return 0
        finally:
            for source in sources:
                with anyio.CancelScope(shield=True):
                    await source.aclose()
            if watcher.status_path is not None:
                watcher.status_path.unlink(missing_ok=True)


def show_status(json_output: bool) -> int:
    import os

    from pipework.apps.watch import read_status
    from pipework.engine.engine import DEFAULT_RUN_DIR

    run_dir = os.environ.get("PIPEWORK_RUN_DIR") or DEFAULT_RUN_DIR
    data = read_status(status_path(run_dir))
    if data is None:
        error(f"no watcher is running (no live status in {status_path(run_dir)})")
        return 1
    lines = [
        f"watcher pid {data['pid']}, up {time.time() - float(data['started']):.0f} s; "
        + ", ".join(f"{name}: {state}" for name, state in data["sources"].items())
    ]
    for key, guest in data["guests"].items():
        for ifname, att in guest["attachments"].items():
            what = (
                f"failed: {att.get('error')}"
                if att.get("status") == "failed"
                else f"{att.get('kind')} {att.get('host')} {', '.join(att.get('addresses') or []) or 'no address'}"
            )
            lines.append(f"  {guest['name']} ({key[:12]}) {ifname}: {what}")
        for ifname, reason in (guest.get("refused") or {}).items():
            lines.append(f"  {guest['name']} ({key[:12]}) {ifname}: refused: {reason}")
    emit(data, json_output, "\n".join(lines))
    return 0
