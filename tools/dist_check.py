"""Check the built distributions as a user gets them: each of dist/'s wheel and sdist installed
into a fresh virtualenv in a temporary folder outside the source tree (dependencies from the
package index, at the versions constraints.txt pins), then `reconcile --version`,
`reconcile-layers --version` and `reconcile validate` of a copy of the example manifest, run
from outside the source tree. Exits 1 naming the first step that fails.

Usage: python tools/dist_check.py DIST_FOLDER
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(command: list[str], *, cwd: Path) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"dist-check: `{' '.join(command)}` failed ({result.returncode}):\n"
                         f"{result.stdout}{result.stderr}")
    return result.stdout


def check(artifact: Path) -> None:
    """Install `artifact` into a fresh virtualenv and run the commands a user would."""
    with tempfile.TemporaryDirectory(prefix="reconcile-dist-check-") as folder:
        work = Path(folder)
        environment = work / "venv"
        venv.EnvBuilder(with_pip=True).create(environment)
        python = environment / "bin" / "python"
        _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
              "-c", str(ROOT / "constraints.txt"), str(artifact)], cwd=work)
        where = _run([str(python), "-c", "import reconciler; print(reconciler.__file__)"],
                     cwd=work)
        if not where.startswith(str(environment)):
            raise SystemExit(f"dist-check: reconciler imported from {where.strip()}, not from "
                             "the fresh virtualenv")
        for name in ("reconcile", "reconcile-layers"):
            printed = _run([str(environment / "bin" / name), "--version"], cwd=work)
            if not printed.startswith("reconcile "):
                raise SystemExit(f"dist-check: `{name} --version` printed {printed!r}")
        project = work / "project"
        project.mkdir()
        shutil.copy(ROOT / "layers.yaml.example", project / "layers.yaml")
        shutil.copytree(ROOT / "examples", project / "examples",
                        ignore=shutil.ignore_patterns(".reconcile"))
        printed = _run([str(environment / "bin" / "reconcile"), "validate"], cwd=project)
        if ": valid:" not in printed:
            raise SystemExit(f"dist-check: validate printed {printed!r}")
        print(f"dist-check: {artifact.name}: installs, runs as reconcile and reconcile-layers, "
              "validates the example")


def main() -> None:
    """Check every wheel and sdist in the folder given (at least one of each)."""
    dist = Path(sys.argv[1] if len(sys.argv) > 1 else "dist").resolve()
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    if not wheels or not sdists:
        raise SystemExit(f"dist-check: {dist} needs a wheel and an sdist (run `make dist`)")
    for artifact in (*wheels, *sdists):
        check(artifact)


if __name__ == "__main__":
    main()
