/*
 * What demo_producer and demo_consumer agree on: the header at the start of
 * every payload, the pattern the producer fills payloads with, and the
 * checksum the consumer computes over every byte.
 */
#ifndef VOXSHM_DEMO_COMMON_H
#define VOXSHM_DEMO_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define DEMO_MAGIC 0x314f4d4544584f56ull /* "VOXDEMO1" */
/* Flag: the last payload of a phase; over the plain socket the consumer
 * answers it with one byte, so the producer knows all were checked. */
#define DEMO_LAST 1ull

/* The first 64 bytes of every payload. `checksum` covers the bytes after
 * the header; `len` is the whole payload, header included. */
typedef struct demo_header {
    uint64_t magic;
    uint64_t seq;
    uint64_t len;
    uint64_t checksum;
    uint64_t flags;
    uint64_t reserved[3];
} demo_header;

#define DEMO_HEADER_LEN ((size_t)sizeof(demo_header))

/* The checksum: a Fletcher-style pair of running sums over the 64-bit words,
 * in four independent lanes so that the compiler can vectorize it, then
 * mixed into 64 bits. Any single changed byte changes it, and so does data
 * that is stale (from another payload), shifted or swapped, except by
 * negligible chance. It runs at about the speed of memory. */
typedef struct demo_sum {
    uint64_t a[4], b[4];
} demo_sum;

static inline uint64_t demo_load(const uint8_t *p) {
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

static inline uint64_t demo_mix(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

/* Adds the bytes after the last whole 32-byte block, and finishes. */
static inline uint64_t demo_finish(demo_sum *s, const uint8_t *p, size_t i, size_t len) {
    for (; i < len; i++) {
        s->a[0] += p[i];
        s->b[0] += s->a[0];
    }
    uint64_t h = (uint64_t)len;
    for (int l = 0; l < 4; l++) {
        h = demo_mix(h ^ s->a[l]);
        h = demo_mix(h ^ s->b[l]);
    }
    return h;
}

/* The checksum of `len` bytes at `p`. */
static inline uint64_t demo_checksum(const uint8_t *p, size_t len) {
    uint64_t a[4] = {0, 0, 0, 0}, b[4] = {0, 0, 0, 0};
    size_t i = 0;
    for (; i + 32 <= len; i += 32) {
        for (int l = 0; l < 4; l++) {
            a[l] += demo_load(p + i + 8 * (size_t)l);
            b[l] += a[l];
        }
    }
    demo_sum s;
    memcpy(s.a, a, sizeof a);
    memcpy(s.b, b, sizeof b);
    return demo_finish(&s, p, i, len);
}

/* Fills `len` bytes at `p` with the pattern for `seed` (64-bit word i is
 * seed + i) and returns their checksum, computed in the same pass: the
 * same value demo_checksum(p, len) gives. */
static inline uint64_t demo_fill(uint8_t *p, size_t len, uint64_t seed) {
    uint64_t a[4] = {0, 0, 0, 0}, b[4] = {0, 0, 0, 0};
    size_t i = 0;
    for (; i + 32 <= len; i += 32) {
        for (int l = 0; l < 4; l++) {
            uint64_t w = seed + i / 8 + (uint64_t)l;
            memcpy(p + i + 8 * (size_t)l, &w, 8);
            a[l] += w;
            b[l] += a[l];
        }
    }
    for (size_t j = i; j < len; j++) p[j] = (uint8_t)(seed + j);
    demo_sum s;
    memcpy(s.a, a, sizeof a);
    memcpy(s.b, b, sizeof b);
    return demo_finish(&s, p, i, len);
}

#endif
