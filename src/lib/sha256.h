/*
 * SHA-256 (FIPS 180-4), used to identify model files in logs and status APIs.
 */
#ifndef BM_SHA256_H
#define BM_SHA256_H

#include <stddef.h>
#include <stdint.h>

/* Writes the digest of size bytes at data as 64 lowercase hex digits and a NUL into hex. */
void bm__sha256_hex(const uint8_t *data, size_t size, char hex[65]);

#endif
