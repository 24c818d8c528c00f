"""The layout's one trap: a package named ``platform`` would shadow the standard library."""

import subprocess
import sys
from pathlib import Path


def test_platform_has_no_init(project_root: Path) -> None:
    assert (project_root / "platform" / "bottega" / "__init__.py").exists()
    assert not (project_root / "platform" / "__init__.py").exists()


def test_stdlib_platform_works_from_the_repository_root(project_root: Path) -> None:
    # `python -c` puts the working directory first on sys.path, where platform/ sits.
    code = (
        "import platform, sys; "
        "assert hasattr(platform, 'system'), platform; "
        "sys.stdout.write(platform.system() + ' ' + platform.python_version())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=project_root, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    system, version = done.stdout.split()
    assert system == "Linux"
    assert version.startswith("3.11")


def test_numpy_imports_from_the_repository_root(project_root: Path) -> None:
    # numpy calls platform.machine() at import; a shadowing package breaks it first.
    done = subprocess.run(
        [sys.executable, "-c", "import numpy, bottega.events"],
        cwd=project_root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
