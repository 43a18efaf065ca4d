# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled traversal of an isolation forest (``models.isolation_forest.ForestArrays._score``):
the same path lengths, bit for bit (``tests/operators/kernels/test_forest.py``).

The reference moves every row one level down every tree per NumPy call; here each tree
is walked row by row while its few kilobytes of nodes sit in the CPU's cache, and a walk
stops at its leaf. The per-row sum adds the trees in the same order as the reference.
"""

from libc.math cimport isnan
from libc.stdint cimport int64_t

cdef extern from *:
    """
    #ifndef KERNEL_SOURCE_DIGEST
    #define KERNEL_SOURCE_DIGEST ""
    #endif
    """
    const char* KERNEL_SOURCE_DIGEST

SOURCE_DIGEST = KERNEL_SOURCE_DIGEST.decode()
"""SHA-256 of this file when it was compiled (``operators.kernels`` refuses a stale build)."""


def path_lengths(
    const float[:, ::1] x,
    const int64_t[::1] right,
    const int64_t[::1] feature,
    const float[::1] threshold,
    const double[::1] leaf_value,
    const int64_t[::1] roots,
    Py_ssize_t depth,
    double[::1] out,
):
    """Add to ``out`` (one per row, zeros) the leaf value each row of ``x`` reaches in every
    tree, tree after tree: from tree ``t``'s
    root ``roots[t]``, at most ``depth`` steps of ``node = right[node] + (x[row,
    feature[node]] <= threshold[node])``; a leaf has a NaN threshold and points at itself."""
    cdef Py_ssize_t rows = x.shape[0], cols = x.shape[1], nodes = right.shape[0]
    cdef Py_ssize_t t, r, level
    cdef int64_t node, f
    if out.shape[0] != rows:
        raise ValueError("out: one value per row")
    for t in range(roots.shape[0]):
        if not 0 <= roots[t] < nodes:
            raise ValueError(f"isolation forest tree {t}: root out of range")
        for r in range(rows):
            node = roots[t]
            for level in range(depth):
                if isnan(threshold[node]):
                    break
                f = feature[node]
                if f < 0 or f >= cols or right[node] < 0 or right[node] + 1 >= nodes:
                    raise ValueError(f"isolation forest node {node}: feature or child out of range")
                node = right[node] + (x[r, f] <= threshold[node])
            out[r] += leaf_value[node]
