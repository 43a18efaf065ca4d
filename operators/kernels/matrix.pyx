# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled model matrix of a scored batch: the matrix :func:`operators.features.feature_matrix`
gives for the batch's features and events, to the last bit
(``tests/operators/kernels/test_matrix.py``).

The reference reads each row through an ``attrgetter`` and has NumPy convert a list of
tuples; here one ``msgspec.structs.astuple`` per row gives every field, and each value
goes straight into the ``float32`` matrix as the reference converts it (``float()``, then
rounded to ``float32``; None is NaN). Change one, change both.
"""

import numpy as np
from libc.math cimport NAN
from msgspec.structs import astuple

from operators.features import Features, _plain_column, attribute_value, is_risk_feature

cdef extern from *:
    """
    #ifndef KERNEL_SOURCE_DIGEST
    #define KERNEL_SOURCE_DIGEST ""
    #endif
    """
    const char* KERNEL_SOURCE_DIGEST

SOURCE_DIGEST = KERNEL_SOURCE_DIGEST.decode()
"""SHA-256 of this file when it was compiled (``operators.kernels`` refuses a stale build)."""

cdef dict _FIELD = {name: i for i, name in enumerate(Features.__struct_fields__)}
cdef Py_ssize_t _RISK = _FIELD["risk"]

DEF PLAIN = 0
DEF NOVELTY = 1
DEF RISK = 2
DEF ATTRIBUTE = 3


cdef inline double _value(object value):
    """``float(value)`` as the reference's ``float64`` array takes it; None is NaN."""
    if value is None:
        return NAN
    return <double>value


def featured_matrix(batch, columns):
    """The ``float32`` model matrix of ``batch`` (``Featured`` items) over ``columns``:
    ``feature_matrix([f.features ...], [f.accepted.event ...], columns)``."""
    cdef list items = batch if type(batch) is list else list(batch)
    cdef Py_ssize_t n = len(items), m = len(columns), i, j
    matrix = np.empty((n, m), dtype=np.float32)
    if n == 0 or m == 0:
        return matrix
    cdef float[:, ::1] out = matrix
    cdef list names = list(columns)
    cdef int[::1] kind = np.empty(m, dtype=np.intc)
    cdef Py_ssize_t[::1] field = np.zeros(m, dtype=np.intp)
    for j in range(m):
        name = names[j]
        if name.startswith("attr:"):
            kind[j] = ATTRIBUTE
        elif is_risk_feature(name):
            kind[j] = RISK
        else:
            kind[j] = NOVELTY if name == "device_novelty" else PLAIN
            attribute = _plain_column(name)
            if attribute not in _FIELD:
                raise AttributeError(f"'Features' object has no attribute {attribute!r}")
            field[j] = _FIELD[attribute]
    cdef tuple values
    cdef dict risk
    cdef double x
    for i in range(n):
        item = items[i]
        values = astuple(item.features)
        risk = values[_RISK]
        for j in range(m):
            if kind[j] == PLAIN:
                x = _value(values[field[j]])
            elif kind[j] == NOVELTY:
                x = 1.0 - _value(values[field[j]])
            elif kind[j] == RISK:
                x = _value(risk.get(names[j]))
            else:
                x = attribute_value(item.accepted.event, names[j])
            out[i, j] = <float>x
    return matrix
