import shutil
from pathlib import Path

import pytest

import operators.kernels as kernels
from operators import features


def test_every_kernel_is_compiled_where_a_compiler_is():
    """CI builds with a compiler: a kernel that did not compile, or a stale build, fails
    here rather than slowing the job down unnoticed."""
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler on this machine: the references run")
    sources = sorted(p.stem for p in Path(kernels.__file__).parent.glob("*.pyx"))
    assert {"profile", "windows", "verdicts"} <= set(sources)
    k = kernels.describe()
    assert (sorted(k["compiled"]), k["stale"], k["unavailable"]) == (sources, [], [])


def test_the_dispatch_picks_the_compiled_kernel_or_the_reference():
    if "profile" in kernels.COMPILED:
        assert kernels.update_profile is not features.update_profile
        assert kernels.update_profile.__module__ == "operators.kernels.profile"
    else:
        assert kernels.update_profile is features.update_profile
