"""``pipework watch``: the long-running reconciler, and ``--status``."""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any

import typer

from pipework.cli.commands.common import options
from pipework.cli.render import emit, error, run_async
from pipework.cli.watching import (
    DirectPhysOption,
    FileOption,
    ForwardOption,
    HostOption,
    ImageLabelsOption,
    IntervalOption,
    KindsOption,
    LogFormatOption,
    OptionOption,
    log_to_stderr,
    status_path,
    watch_plan,
)


def command(
    ctx: typer.Context,
    file: FileOption = None,
    once: Annotated[
        bool, typer.Option("--once", help="Reconcile the running guests, then exit.")
    ] = False,
    interval: IntervalOption = 30.0,
    log_format: LogFormatOption = "text",
    status: Annotated[
        bool, typer.Option("--status", help="Show what the running watcher manages, and exit.")
    ] = False,
    allow_image_labels: ImageLabelsOption = False,
    allow_kinds: KindsOption = None,
    allow_host: HostOption = None,
    allow_direct_phys: DirectPhysOption = False,
    allow_forward: ForwardOption = False,
    allow_option: OptionOption = None,
) -> None:
    """Attach what guests' labels declare whenever they start; clean up when they die."""
    opts = options(ctx)
    if status:
        raise typer.Exit(show_status(opts.json))
    log_to_stderr(log_format if log_format in ("text", "json") else "text", opts.debug)
    plan = watch_plan(
        file,
        log_format,
        image_labels=allow_image_labels,
        kinds=allow_kinds,
        hosts=allow_host,
        direct_phys=allow_direct_phys,
        forward=allow_forward,
        allowed=allow_option,
    )
    raise typer.Exit(
        run_async(
            lambda: _watch(once=once, interval=interval, declare=plan.declare, policy=plan.policy),
            opts.debug,
        )
    )


async def _watch(*, once: bool, interval: float, declare: Any = None, policy: Any = None) -> int:
    import signal

    import anyio

    from pipework.apps.watch import watching
    from pipework.engine import Engine

    async with (
        Engine() as engine,
        watching(
            engine,
            interval=interval,
            declare=declare,
            policy=policy,
            status_file=None if once else status_path(engine.config.run_dir),
        ) as watcher,
    ):
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
