"""``python -m functional_metarl``: the ``functional-metarl`` command line (see :mod:`functional_metarl.cli`)."""

from .cli import main_exit

if __name__ == "__main__":
    main_exit()
