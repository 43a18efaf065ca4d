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


def _setup_source_digest():
    """setup.py's ``source_digest``, taken from its source (importing setup.py would build)."""
    import ast
    import hashlib
    import re

    setup_py = Path(kernels.__file__).parents[2] / "setup.py"
    tree = ast.parse(setup_py.read_text())
    (fn,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "source_digest"]
    scope = {"hashlib": hashlib, "Path": Path, "re": re}
    exec(compile(ast.Module([fn], []), str(setup_py), "exec"), scope)
    return scope["source_digest"]


def test_the_build_and_the_loader_digest_a_kernel_alike(tmp_path):
    """The digest setup.py compiles in is the one the loader checks, and a change to a
    shared ``.pxd`` changes the digest of the kernels that cimport it, not the others'."""
    build = _setup_source_digest()
    for source in Path(kernels.__file__).parent.glob("*.pyx"):
        assert build(source) == kernels._source_digest(source)
    (tmp_path / "a.pyx").write_text("from operators.kernels._shared cimport y\n")
    (tmp_path / "b.pyx").write_text("x = 1\n")
    (tmp_path / "_shared.pxd").write_text("cdef int y\n")
    before = [kernels._source_digest(tmp_path / n) for n in ("a.pyx", "b.pyx")]
    (tmp_path / "_shared.pxd").write_text("cdef int y, z\n")
    after = [kernels._source_digest(tmp_path / n) for n in ("a.pyx", "b.pyx")]
    assert before[0] != after[0] == build(tmp_path / "a.pyx")
    assert before[1] == after[1] == build(tmp_path / "b.pyx")
