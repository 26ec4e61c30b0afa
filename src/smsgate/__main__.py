"""``python -m smsgate``: the same as the ``smsgate`` command."""

from smsgate.cli import main

main()
