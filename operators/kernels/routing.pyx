# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled :func:`operators.routing.split_lists`: the same parcels with the same items in
the same order (``tests/operators/kernels/test_routing.py``).

The CRC-32 is zlib's (IEEE 802.3, reflected, table-driven) over the key's UTF-8; a key
that is not plain UTF-8 (a lone surrogate) takes the reference's ``shard_index``.
Change one, change both.
"""

from libc.stdint cimport uint32_t

from operators.routing import shard_index as _shard_index

cdef extern from *:
    """
    #ifndef KERNEL_SOURCE_DIGEST
    #define KERNEL_SOURCE_DIGEST ""
    #endif
    """
    const char* KERNEL_SOURCE_DIGEST

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object unicode, Py_ssize_t* size)
    void PyErr_Clear()

SOURCE_DIGEST = KERNEL_SOURCE_DIGEST.decode()
"""SHA-256 of this file when it was compiled (``operators.kernels`` refuses a stale build)."""

cdef uint32_t _TABLE[256]


cdef void _fill_table() noexcept:
    cdef uint32_t c
    cdef int i, k
    for i in range(256):
        c = i
        for k in range(8):
            c = (c >> 1) ^ 0xEDB88320u if c & 1 else c >> 1
        _TABLE[i] = c


_fill_table()


cdef inline uint32_t _crc32(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    cdef uint32_t c = 0xFFFFFFFFu
    cdef Py_ssize_t i
    for i in range(n):
        c = _TABLE[(c ^ p[i]) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFFu


cdef inline Py_ssize_t _index(str key, Py_ssize_t count) except -1:
    """:func:`operators.routing.shard_index`."""
    cdef Py_ssize_t n
    cdef const char* s = PyUnicode_AsUTF8AndSize(key, &n)
    if s == NULL:  # a lone surrogate: the reference encodes it with surrogatepass
        PyErr_Clear()
        return _shard_index(key, count)
    return _crc32(<const unsigned char*>s, n) % <uint32_t>count


def shard_index(str key, Py_ssize_t shards):
    """:func:`operators.routing.shard_index` (exposed for the tests)."""
    if shards <= 0:
        return _shard_index(key, shards)  # the reference raises as it does
    return _index(key, shards)


def split_lists(lists, key_of, shards, parcel):
    """:func:`operators.routing.split_lists`."""
    cdef Py_ssize_t count = len(shards)
    cdef dict parts = {}
    if count <= 0:
        from operators.routing import split_lists as reference

        return reference(lists, key_of, shards, parcel)
    for items in lists:
        for item in items:
            key = key_of(item)
            shard = "" if key is None else shards[_index(key, count)]
            part = parts.get(shard)
            if part is None:
                part = parts[shard] = parcel()
            part.append(item)
    return list(parts.items())
