"""The original tool's grammar, run without typer (the start-up hot path)."""

from __future__ import annotations

from pipework.apps.grammar import parse_legacy
from pipework.cli.options import GlobalOptions
from pipework.cli.registry import COMMANDS
from pipework.cli.render import emit_attachment, error, run_async, setup_logging
from pipework.engine.errors import UnknownHostInterfaceError, UsageError
from pipework.engine.specs import AttachSpec


def did_you_mean(word: str) -> str | None:
    """The subcommand ``word`` may be a typo of (only on an error: difflib costs ~0.6 ms)."""
    import difflib

    matches = difflib.get_close_matches(word, COMMANDS, n=1, cutoff=0.6)
    return matches[0] if matches else None


def run_legacy(args: list[str], options: GlobalOptions) -> int:
    setup_logging(options.debug)
    try:
        spec = parse_legacy(args)
    except UsageError as exc:
        suggestion = did_you_mean(args[0])
        if suggestion:
            error(f"no such command {args[0]!r} (did you mean {suggestion!r}?)")
        else:
            error(str(exc))
        return exc.exit_code
    return run_attach(spec, options)


def run_attach(spec: AttachSpec, options: GlobalOptions) -> int:
    async def attach() -> int:
        from pipework.engine import Engine

        async with Engine() as engine:
            try:
                attachment = await engine.attach(spec)
            except UnknownHostInterfaceError as exc:
                suggestion = did_you_mean(spec.host)
                if suggestion:
                    raise UnknownHostInterfaceError(
                        exc.message, f"or did you mean the command {suggestion!r}?"
                    ) from None
                raise
            # Report now; leaving the engine waits for the (non-blocking)
            # gratuitous ARP to go out once the link is up.
            emit_attachment(attachment, options.json)
        return 0

    return run_async(attach, options.debug)


__all__ = ["run_attach", "run_legacy"]
