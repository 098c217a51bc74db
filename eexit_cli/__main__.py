"""Entry point of ``eexit`` and ``python -m eexit_cli``.

Kept free of heavy imports: numpy, h5py, click and rich load inside :func:`main`, so
that Ctrl-C while they load ends with the documented one line and exit code 130
rather than a traceback.
"""

import sys


def main() -> None:
    try:
        from eexit_cli.cli.main import main as run
    except KeyboardInterrupt:
        sys.stderr.write("eexit: error: interrupted; nothing was written\n")
        sys.exit(130)
    run()


if __name__ == "__main__":  # pragma: no cover
    main()
