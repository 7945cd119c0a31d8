"""Interfaces: the ``pyrv`` command."""

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command Ctrl-C stopped


def run() -> int:
    """The ``pyrv`` command's entry point. It imports the command itself, so that a Ctrl-C
    while the imports run (before any handler is in place) ends quietly with 130, as a
    Ctrl-C later does, rather than with a traceback."""
    try:
        from pyrv.cli.main import main

        return main()
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
