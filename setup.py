"""Builds the hot path's compiled kernels (``operators/kernels/*.pyx``, Cython); the rest
of the package is declared in pyproject.toml.

The kernels are optional: without a C compiler the install goes on and the job runs
their pure-Python references (``operators.kernels.COMPILED`` is then empty, and the job
says so at start-up). Each module is built with the SHA-256 of its source, so a module
left over from an older source is not loaded (``operators.kernels``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from setuptools import Extension, setup


def _extensions() -> list[Extension]:
    try:
        from Cython.Build import cythonize
    except ImportError:  # no Cython in the build environment: the references run
        return []
    here = Path(__file__).parent
    modules = []
    for source in sorted(Path("operators", "kernels").glob("*.pyx")):
        name = source.stem
        digest = hashlib.sha256((here / source).read_bytes()).hexdigest()
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
