"""Builds the hot path's compiled kernels (``operators/kernels/*.pyx``, Cython); the rest
of the package is declared in pyproject.toml.

The kernels are optional: without a C compiler the install goes on and the job runs
their pure-Python references (``operators.kernels.COMPILED`` is then empty, and the job
says so at start-up). Each module is built with the SHA-256 of its source and of the
shared ``.pxd`` files beside it (:func:`source_digest`), so a module left over from an
older source is not loaded (``operators.kernels``).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from setuptools import Extension, setup


def source_digest(source: Path) -> str:
    """SHA-256 of a kernel's ``.pyx``, then of each shared ``.pxd`` beside it that it
    cimports, in name order (``operators.kernels._source_digest`` computes the same; a test
    holds them equal). Cython rebuilds a module when a ``.pxd`` it cimports changes, so a
    module's digest changes exactly when it is rebuilt."""
    text = source.read_bytes()
    sha = hashlib.sha256(text)
    for shared in sorted(set(re.findall(rb"operators\.kernels\.(\w+) cimport", text))):
        sha.update((source.parent / f"{shared.decode()}.pxd").read_bytes())
    return sha.hexdigest()


def _extensions() -> list[Extension]:
    try:
        from Cython.Build import cythonize
    except ImportError:  # no Cython in the build environment: the references run
        return []
    here = Path(__file__).parent
    modules = []
    for source in sorted(Path("operators", "kernels").glob("*.pyx")):
        name = source.stem
        digest = source_digest(here / source)
        modules.append(
            Extension(
                f"operators.kernels.{name}",
                [str(source)],
                define_macros=[("KERNEL_SOURCE_DIGEST", f'"{digest}"')],
                # no fused multiply-add: results must equal the references' to the last bit
                extra_compile_args=["-O2", "-ffp-contract=off"],
                optional=True,
            )
        )
    return cythonize(modules, language_level=3, quiet=True)


setup(ext_modules=_extensions())
