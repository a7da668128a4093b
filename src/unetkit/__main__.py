"""`python -m unetkit`: the CLI, for subprocesses that must use this interpreter."""

from unetkit.cli import app

app(prog_name="unetkit")
