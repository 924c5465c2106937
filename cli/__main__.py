"""``python -m cli``: the same as the ``faas`` console script."""

from cli.main import main

main()
