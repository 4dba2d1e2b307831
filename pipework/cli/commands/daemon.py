"""``pipework daemon``: the resident engine (pipework/daemon/service.py).

It serves the ``pipework`` and ``pipework-cni`` commands and the API on
``RUN_DIR/pipework.sock`` (docs/API.md), supervises kept DHCP clients, and,
with ``--watch``, does what ``pipework watch`` does, with the same options.
"""

from __future__ import annotations

import traceback
from typing import Annotated, Any

import typer

from pipework.cli.commands.common import fail, options
from pipework.cli.render import error
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
    group: Annotated[
        str | None,
        typer.Option("--group", help="A group whose members may use the socket too (mode 0660)."),
    ] = None,
    watch: Annotated[
        bool,
        typer.Option("--watch", help="Also do what pipework watch does (its options below)."),
    ] = False,
    dhcp_interval: Annotated[
        float,
        typer.Option(
            "--dhcp-interval", min=1.0, help="Seconds between checks of kept DHCP clients [10]."
        ),
    ] = 10.0,
    file: FileOption = None,
    interval: IntervalOption = 30.0,
    log_format: LogFormatOption = "text",
    allow_image_labels: ImageLabelsOption = False,
    allow_kinds: KindsOption = None,
    allow_host: HostOption = None,
    allow_direct_phys: DirectPhysOption = False,
    allow_forward: ForwardOption = False,
    allow_option: OptionOption = None,
) -> None:
    """Serve pipework commands and the API from one warm process (docs/API.md)."""
    opts = options(ctx)
    if file is not None and not watch:
        error("--file is a watch option: add --watch")
        raise typer.Exit(2)
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
    from pipework.daemon.service import Settings, serve
    from pipework.engine.errors import PipeworkError

    async def watching(engine: Any) -> None:
        from pipework.apps.watch import watching

        async with watching(
            engine,
            interval=interval,
            declare=plan.declare,
            policy=plan.policy,
            status_file=status_path(engine.config.run_dir),
        ) as watcher:
            await watcher.run()

    settings = Settings(group, watching if watch else None, dhcp_interval)
    try:
        code = serve(settings)
    except PipeworkError as exc:
        if opts.debug:
            traceback.print_exc()
        raise fail(exc) from None
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)
