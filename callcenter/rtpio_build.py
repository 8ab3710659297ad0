"""Build the RTP engine's batch I/O helper (callcenter/_rtpio.c) in place, next to its source.

    python -m callcenter.rtpio_build          # or: python callcenter/rtpio_build.py

Run by .ci/setup-venv.sh. It calls the C compiler directly with the interpreter's own flags
(sysconfig), so it needs nothing but a compiler and the Python headers. If either is missing
or the build fails it says so and exits 0: the engine then uses its pure Python path
(callcenter.rtpio logs which path it runs). Rebuilds only when the source is newer.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "_rtpio.c"


def target() -> Path:
    return HERE / ("_rtpio" + sysconfig.get_config_var("EXT_SUFFIX"))


def build(force: bool = False) -> tuple[bool, str]:
    """Compile the helper; (built or up to date, what happened)."""
    out = target()
    if not sys.platform.startswith("linux"):
        return False, f"not built: {sys.platform} has no epoll (the pure Python path is used)"
    if not force and out.exists() and out.stat().st_mtime >= SOURCE.stat().st_mtime:
        return True, f"up to date: {out.name}"
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").exists():
        return False, f"not built: no Python.h in {include} (the pure Python path is used)"
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")[:1] or ["cc"]
    tmp = out.with_suffix(out.suffix + ".tmp")
    cmd = [*cc, "-shared", "-fPIC", "-O2", "-Wall", "-std=c99", "-D_GNU_SOURCE", f"-I{include}",
           str(SOURCE), "-o", str(tmp)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"not built: {exc} (the pure Python path is used)"
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        return False, f"not built: {shlex.join(cmd)} failed:\n{proc.stderr.strip()}\n(the pure Python path is used)"
    os.replace(tmp, out)  # atomic: a running process keeps the file it loaded
    return True, f"built {out.name}"


def main() -> int:
    ok, what = build(force="--force" in sys.argv)
    if not ok:
        # A helper left from an older source must not run against this one.
        target().unlink(missing_ok=True)
    print(f"rtpio: {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
