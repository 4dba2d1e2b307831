"""The subcommands of ``pipework``, one module each.

The module ``NAME`` defines ``command``, the typer function of ``pipework
NAME``; cli/registry.py lists the names and cli/app.py registers them. A
command module imports neither cli/app.py nor another command module: what
several share is in commands/common.py, cli/batchrun.py and cli/render.py.
"""
