"""The `zoo` command's entry point (also `python -m zoo`).

Kept apart from zoo.cli so that Ctrl-C while typer, rich and zoo are still being imported ends
as quietly as Ctrl-C later on, and so that SIGTERM (sent by `kill`, `timeout`, Slurm and
Kubernetes) is handled as Ctrl-C is: the lock released, finished results kept, exit 130.
"""

import sys


def _terminate(signum, frame):
    raise KeyboardInterrupt


def main() -> None:
    try:
        import signal  # here, not above: it takes longer to import than the rest of zoo's start

        signal.signal(signal.SIGTERM, _terminate)
        from zoo.cli import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        sys.exit(130)
    cli_main()


if __name__ == "__main__":
    main()
