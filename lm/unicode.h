/* UTF-8 and the few Unicode properties the tokenizers need.
 *
 * GPT-2's pre-tokenizer regex splits on letters (\p{L}), numbers (\p{N}) and
 * white space (\s); the tables behind these are generated from Python's
 * unicodedata by tests/gen_unicode_tables.py. Decoding is lenient in one
 * defined way: a byte that does not start a valid UTF-8 sequence (bad lead,
 * truncated, overlong, surrogate, beyond U+10FFFF) decodes alone, as
 * LM_UTF8_INVALID, so every input splits into "characters" without loss. */
#ifndef LM_UNICODE_H
#define LM_UNICODE_H

#include <stddef.h>
#include <stdint.h>

#define LM_UTF8_INVALID 0xFFFFFFFFu

/* Decodes the character at s[0..n), n > 0; returns its length in bytes
 * (1..4) and stores the code point (or LM_UTF8_INVALID, length 1). */
int lm_utf8_decode(const char *s, size_t n, uint32_t *cp);
/* Writes cp (<= 0x10FFFF) as UTF-8; returns the length (1..4), 0 if cp is
 * out of range. */
int lm_utf8_encode(uint32_t cp, char out[4]);

int lm_unicode_is_letter(uint32_t cp); /* general category L* */
int lm_unicode_is_number(uint32_t cp); /* general category N* */
int lm_unicode_is_space(uint32_t cp);  /* White_Space property */

#endif
