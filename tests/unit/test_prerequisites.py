import sys
from pathlib import Path

import pytest

from bottega.errors import PrerequisiteMissing
from bottega.stack.services import java_too_old
from bottega.stack.spec import Prerequisite


def fake_java(tmp_path: Path, version_line: str) -> str:
    exe = tmp_path / "java"
    exe.write_text(f"#!{sys.executable}\nimport sys\nsys.stderr.write({version_line!r})\n")
    exe.chmod(0o755)
    return str(exe)


@pytest.mark.parametrize(
    ("line", "ok"),
    [
        ('openjdk version "17.0.15" 2025-04-15\n', True),
        ('openjdk version "21" 2023-09-19\n', True),
        ('openjdk version "11.0.2" 2019-01-15\n', False),
        ('java version "1.8.0_401"\n', False),
    ],
)
def test_java_version_is_checked(tmp_path: Path, line: str, ok: bool) -> None:
    problem = java_too_old(fake_java(tmp_path, line))
    assert (problem is None) is ok
    if not ok:
        assert problem and "too old" in problem


def test_a_missing_executable_raises_with_the_install_line() -> None:
    prerequisite = Prerequisite(
        "prometheus",
        "install it: apt-get install -y prometheus",
        executables=("no-such-binary-anywhere",),
    )
    with pytest.raises(PrerequisiteMissing) as info:
        prerequisite.require()
    assert str(info.value) == ("prometheus is missing (install it: apt-get install -y prometheus)")


def test_a_failing_check_makes_it_unusable(tmp_path: Path) -> None:
    prerequisite = Prerequisite(
        "java", "install Java 17+", paths=(tmp_path,), check=lambda found: f"{found} is too old"
    )
    assert prerequisite.locate() == str(tmp_path)
    with pytest.raises(PrerequisiteMissing, match="too old"):
        prerequisite.require()
