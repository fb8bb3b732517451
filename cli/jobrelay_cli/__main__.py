"""`python -m jobrelay_cli`: the `jobrelay` command."""

from jobrelay_cli.app import app

app(prog_name="jobrelay")
