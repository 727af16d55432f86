"""Run the real `rcahook` entry point in-process, capturing what it prints."""
import sys
import types

from click.testing import CliRunner

from rcahook.cli import main


def rcahook(*args: str, input: str | None = None) -> types.SimpleNamespace:
    """The exit code (error -> exit code mapping included), stdout and stderr of one command."""
    with CliRunner().isolation(input=input) as (out, err, _):
        code = main(list(args))
        sys.stdout.flush()  # the captured streams are buffered text wrappers
        sys.stderr.flush()
    return types.SimpleNamespace(code=code, out=out.getvalue().decode(), err=err.getvalue().decode())
