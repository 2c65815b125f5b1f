#!/usr/bin/env python3
"""Pack the stand-in ``convex-local-backend`` into one executable file.

The file is a zip (convex_local_backend.py, the Docker stand-in's server.py and the
version) behind a prefix that makes it executable, so a test can copy it to a host like
upstream's single precompiled binary:

* ``--elf``: the prefix is launcher/main.go built with ``go build`` (the Go toolchain is
  needed). The file is then a real ELF executable that runs ``python3`` on itself: while
  it runs, writing over it fails with ETXTBSY ("text file busy"), as for upstream's binary.
* otherwise ``#!/usr/bin/env python3`` (a Python zip application): no Go needed, but a
  running copy can be overwritten in place, which the real binary cannot.

The build is reproducible: the same sources, version (and Go toolchain) give the same
bytes, hence the same SHA-256; two versions give two different files.

    python3 tests/standins/host/build_binary.py [--elf] --version V --out DIR/convex-local-backend

prints "<sha256>  <path>". ``--version ''`` bakes no version in: the stand-in then answers
/version with CONVEX_RELEASE_VERSION_DEV or "unknown", as upstream's release builds do.
Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
SOURCES = {
    "convex_local_backend.py": HERE / "convex_local_backend.py",
    "standin_server.py": HERE.parent / "backend" / "server.py",
}
SHEBANG = b"#!/usr/bin/env python3\n"
MAIN = ("import sys\nimport convex_local_backend\n\n"
        "sys.exit(convex_local_backend.main())\n")
# The pinned releases (tests/standins/build.sh DEFAULT_TAGS): an older and a newer one.
DEFAULT_VERSIONS = ("4d3b0a5de955a258e70e3813bbff486051d88820",
                    "652b828b5129e6cdbcaa3c20efa8d116d09ff3bf")


def build_launcher() -> bytes:
    """The ELF prefix: launcher/main.go, built with the Go toolchain (stdlib only)."""
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("the Go toolchain (`go`) is needed to build the ELF launcher")
    with tempfile.TemporaryDirectory(prefix="convex-standin-launcher-") as tmp:
        shutil.copy(HERE / "launcher" / "main.go", tmp)
        env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false",
               "GO111MODULE": "off"}
        done = subprocess.run([go, "build", "-trimpath", "-ldflags=-s -w -buildid=",
                               "-o", "launcher", "main.go"], cwd=tmp, env=env,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"go build of the launcher failed:\n{done.stderr}")
        return Path(tmp, "launcher").read_bytes()


def binary_bytes(version: Optional[str], launcher: Optional[bytes] = None) -> bytes:
    members = {
        "__main__.py": MAIN,
        "_standin_build.py": f"VERSION = {version or None!r}\n",
    }
    for name, path in SOURCES.items():
        members[name] = path.read_text(encoding="utf-8")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, members[name].encode("utf-8"))
    return (SHEBANG if launcher is None else launcher) + buffer.getvalue()


def build(version: Optional[str], out: "str | os.PathLike[str]",
          launcher: Optional[bytes] = None) -> str:
    """Write the executable to `out` (mode 0755); return its SHA-256 (hex). With
    `launcher` (build_launcher()'s bytes) it is an ELF file, else a Python zip app."""
    data = binary_bytes(version, launcher)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o755)
    tmp.replace(out)
    return hashlib.sha256(data).hexdigest()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", required=True, dest="standin_version",
                        help="version string to bake in ('' for none)")
    parser.add_argument("--out", required=True, help="path of the executable to write")
    parser.add_argument("--elf", action="store_true",
                        help="a real ELF executable (builds launcher/main.go with go)")
    args = parser.parse_args(argv)
    launcher = build_launcher() if args.elf else None
    print(f"{build(args.standin_version, args.out, launcher)}  {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
