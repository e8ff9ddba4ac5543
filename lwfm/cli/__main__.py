"""``python -m lwfm.cli``: the same as the ``lwfm`` command."""

from . import main

main()
