/* SHA-256 (FIPS 180-4) of a buffer, as lowercase hex: what vae.json records for each file. */
#ifndef VAE_SHA256_H
#define VAE_SHA256_H
#include <stddef.h>

void sha256_hex(const unsigned char *data, size_t len, char hex[65]);

#endif
