# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled :func:`operators.dedup.admit`: the same events, the same dead letters and the
same id memory afterwards (``tests/operators/kernels/test_dedup.py``).

The id's 64-bit hash is BLAKE2b with an 8-byte digest, as ``hashlib.blake2b`` computes it
(RFC 7693's reference code below), read little-endian; the payload's prefix is the first
8 bytes of its SHA-256, read big-endian. What is not the usual case (an id that is not
plain UTF-8, a digest under 8 bytes) and everything but the lookup and the append (the
window's eviction, dropping the oldest id at the cap, a duplicate's dead letter) is the
reference's own code, so the two cannot drift apart there. Change one, change both.
"""

from cpython cimport array
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport int64_t, uint8_t, uint64_t

from operators.dedup import _id_hash, duplicate_letter

cdef extern from *:
    """
    #ifndef KERNEL_SOURCE_DIGEST
    #define KERNEL_SOURCE_DIGEST ""
    #endif
    """
    const char* KERNEL_SOURCE_DIGEST

cdef extern from *:
    """
    /* BLAKE2b, unkeyed, 8-byte digest: RFC 7693, Appendix C (public domain), cut to one call. */
    #include <stdint.h>
    #include <string.h>
    #define FS_ROTR64(x, y) (((x) >> (y)) ^ ((x) << (64 - (y))))
    #define FS_G(a, b, c, d, x, y) {                  \\
        v[a] = v[a] + v[b] + x; v[d] = FS_ROTR64(v[d] ^ v[a], 32); \\
        v[c] = v[c] + v[d];     v[b] = FS_ROTR64(v[b] ^ v[c], 24); \\
        v[a] = v[a] + v[b] + y; v[d] = FS_ROTR64(v[d] ^ v[a], 16); \\
        v[c] = v[c] + v[d];     v[b] = FS_ROTR64(v[b] ^ v[c], 63); }
    static const uint64_t fs_blake2b_iv[8] = {
        0x6A09E667F3BCC908ULL, 0xBB67AE8584CAA73BULL, 0x3C6EF372FE94F82BULL, 0xA54FF53A5F1D36F1ULL,
        0x510E527FADE682D1ULL, 0x9B05688C2B3E6C1FULL, 0x1F83D9ABFB41BD6BULL, 0x5BE0CD19137E2179ULL};
    static const uint8_t fs_sigma[12][16] = {
        {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
        {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
        {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
        {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
        {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
        {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
        {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
        {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
        {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
        {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
        {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
        {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3}};
    static void fs_blake2b_compress(uint64_t h[8], const uint8_t block[128], uint64_t t, int last) {
        uint64_t v[16], m[16];
        int i;
        for (i = 0; i < 8; i++) { v[i] = h[i]; v[i + 8] = fs_blake2b_iv[i]; }
        v[12] ^= t;            /* the byte count's low word; its high word stays 0 */
        if (last) v[14] = ~v[14];
        for (i = 0; i < 16; i++) {
            const uint8_t *p = block + 8 * i;
            m[i] = (uint64_t)p[0] | ((uint64_t)p[1] << 8) | ((uint64_t)p[2] << 16) | ((uint64_t)p[3] << 24)
                 | ((uint64_t)p[4] << 32) | ((uint64_t)p[5] << 40) | ((uint64_t)p[6] << 48) | ((uint64_t)p[7] << 56);
        }
        for (i = 0; i < 12; i++) {
            FS_G(0, 4, 8, 12, m[fs_sigma[i][0]], m[fs_sigma[i][1]]);
            FS_G(1, 5, 9, 13, m[fs_sigma[i][2]], m[fs_sigma[i][3]]);
            FS_G(2, 6, 10, 14, m[fs_sigma[i][4]], m[fs_sigma[i][5]]);
            FS_G(3, 7, 11, 15, m[fs_sigma[i][6]], m[fs_sigma[i][7]]);
            FS_G(0, 5, 10, 15, m[fs_sigma[i][8]], m[fs_sigma[i][9]]);
            FS_G(1, 6, 11, 12, m[fs_sigma[i][10]], m[fs_sigma[i][11]]);
            FS_G(2, 7, 8, 13, m[fs_sigma[i][12]], m[fs_sigma[i][13]]);
            FS_G(3, 4, 9, 14, m[fs_sigma[i][14]], m[fs_sigma[i][15]]);
        }
        for (i = 0; i < 8; i++) h[i] ^= v[i] ^ v[i + 8];
    }
    /* The first 8 bytes of BLAKE2b-64(data) as a little-endian word: h[0]. */
    static uint64_t fs_blake2b_8(const uint8_t *data, size_t n) {
        uint64_t h[8];
        uint8_t block[128];
        uint64_t t = 0;
        int i;
        for (i = 0; i < 8; i++) h[i] = fs_blake2b_iv[i];
        h[0] ^= 0x01010000ULL ^ 8;  /* digest length 8, no key, fanout 1, depth 1 */
        while (n > 128) {
            t += 128;
            fs_blake2b_compress(h, data, t, 0);
            data += 128;
            n -= 128;
        }
        memset(block, 0, 128);
        memcpy(block, data, n);
        t += n;
        fs_blake2b_compress(h, block, t, 1);
        return h[0];
    }
    """
    uint64_t fs_blake2b_8(const uint8_t* data, size_t n) nogil

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object unicode, Py_ssize_t* size)
    void PyErr_Clear()

SOURCE_DIGEST = KERNEL_SOURCE_DIGEST.decode()
"""SHA-256 of this file when it was compiled (``operators.kernels`` refuses a stale build)."""


cdef inline int64_t _hash(str event_id) except? -1:
    """``operators.dedup._id_hash``: BLAKE2b-64 of the UTF-8 id, little-endian, signed."""
    cdef Py_ssize_t n
    cdef const char* s = PyUnicode_AsUTF8AndSize(event_id, &n)
    if s == NULL:  # a lone surrogate: the reference encodes it with surrogatepass
        PyErr_Clear()
        return _id_hash(event_id)
    return <int64_t>fs_blake2b_8(<const uint8_t*>s, <size_t>n)


def id_hash(str event_id):
    """:func:`operators.dedup._id_hash` (exposed for the tests)."""
    return _hash(event_id)


cdef inline int64_t _prefix(bytes digest):
    """``int.from_bytes(digest[:8], "big", signed=True)``; digests are 32 bytes."""
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(digest)
    cdef uint64_t v = 0
    cdef int i
    for i in range(8):
        v = (v << 8) | p[i]
    return <int64_t>v


def admit(seen, list batch, double now, config, Py_ssize_t max_value_bytes):
    """:func:`operators.dedup.admit`: the batch with every re-used id replaced by its dead
    letter, and how many there were; new ids are remembered in ``seen``."""
    seen.evict(now, config)
    cdef Py_ssize_t most = config.max_per_shard
    cdef dict digests = seen.digests
    cdef array.array ids = seen.ids, prefixes = seen.prefixes, times = seen.times
    cdef Py_ssize_t head = seen.head, n
    cdef list out = []
    cdef Py_ssize_t dups = 0
    cdef int64_t key, prefix
    cdef bytes digest
    for acc in batch:
        key = _hash(acc.event.event_id)
        found = digests.get(key)
        if found is not None:
            dups += 1
            out.append(duplicate_letter(acc, found, now, max_value_bytes))
            continue
        digest = acc.digest
        prefix = _prefix(digest) if PyBytes_GET_SIZE(digest) >= 8 else int.from_bytes(digest[:8], "big", signed=True)
        digests[key] = prefix
        n = len(times)
        array.resize_smart(ids, n + 1)
        array.resize_smart(prefixes, n + 1)
        array.resize_smart(times, n + 1)
        ids.data.as_longlongs[n] = key
        prefixes.data.as_longlongs[n] = prefix
        times.data.as_doubles[n] = acc.received_at
        if n + 1 - head > most:
            seen._drop_oldest()
            head = seen.head
        out.append(acc)
    return out, dups
