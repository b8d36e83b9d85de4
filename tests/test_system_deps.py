"""Tests that need a system program skip, naming the Debian package, when it is missing."""

from __future__ import annotations

from conftest import needs_program


def test_a_missing_program_skips_with_the_package_to_install() -> None:
    mark = needs_program("mgsim-no-such-program", "mgsim-no-such-package")
    assert mark.name == "skipif" and mark.args == (True,)
    assert mark.kwargs["reason"] == (
        "mgsim-no-such-program is not installed (apt-get install mgsim-no-such-package)"
    )
    assert needs_program("sh", "dash").args == (False,)  # present: the test runs
