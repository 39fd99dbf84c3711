/* Tokenizers: text <-> token ids, exactly as the reference implementations.
 *
 * Two families of BPE cover every model we run:
 *
 *  - byte-level BPE (GPT-2, OPT): the text is cut into pre-tokens by GPT-2's
 *    regex, each pre-token's bytes are mapped to printable characters
 *    (bytes_to_unicode) and merged pair by pair in the order of the merge
 *    list. Decoding maps the characters back to bytes.
 *  - SentencePiece-style BPE (Llama-2, Mistral): spaces become "▁" and a
 *    dummy "▁" is prepended; characters are merged either by merge rank
 *    (Hugging Face tokenizer.json) or by the score of the merged piece
 *    (llama2.c tokenizer.bin, GGUF); characters missing from the vocabulary
 *    fall back to byte tokens <0xNN>. Decoding turns "▁" into spaces, byte
 *    tokens into bytes, and drops the dummy leading space.
 *
 * Both use the same merge engine (a linked list of symbols and a heap of
 * candidate pairs ordered by rank, then position, as Hugging Face and
 * SentencePiece do). Added tokens (<s>, </s>, <|endoftext|>, ...) are
 * matched in the raw text first, leftmost-longest, as Hugging Face does.
 *
 * Loaders: Hugging Face tokenizer.json (+ tokenizer_config.json and
 * config.json beside it), llama2.c tokenizer.bin, and the tokenizer inside a
 * GGUF file. A byte-level BPE can also be trained from a corpus and saved as
 * a tokenizer.json that Hugging Face's `tokenizers` loads.
 *
 * Encoding and decoding never modify the tokenizer, so one tokenizer may be
 * shared by threads. */
#ifndef LM_TOKENIZER_H
#define LM_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct lm_gguf;

typedef enum lm_tok_kind {
    LM_TOK_BYTE_BPE = 0, /* GPT-2 style byte-level BPE */
    LM_TOK_SPM_BPE,      /* SentencePiece-style BPE with byte fallback */
} lm_tok_kind;

/* Token types; the numbering is GGUF's (tokenizer.ggml.token_type). */
enum {
    LM_TOKEN_NONE = 0,      /* a hole in the id range: never produced */
    LM_TOKEN_NORMAL = 1,
    LM_TOKEN_UNKNOWN = 2,
    LM_TOKEN_CONTROL = 3,   /* special: <s>, </s>, <|endoftext|> */
    LM_TOKEN_USER = 4,      /* added but not special: matched in text */
    LM_TOKEN_UNUSED = 5,
    LM_TOKEN_BYTE = 6,      /* <0xNN> byte fallback */
};

/* How the SentencePiece family puts "▁" in front of a text segment (a
 * segment is the text between two added tokens). */
enum {
    LM_TOK_PREFIX_NONE = 0,
    LM_TOK_PREFIX_ALWAYS,     /* every non-empty segment: SentencePiece's
                                 add_dummy_prefix, llama2.c, HF Prepend */
    LM_TOK_PREFIX_META_ALWAYS,/* HF Metaspace "always": unless it already
                                 starts with "▁" (after spaces became ▁) */
    LM_TOK_PREFIX_META_FIRST, /* HF Metaspace "first": only the segment at
                                 the start of the text, always (as
                                 SentencePiece's add_dummy_prefix; HF's
                                 Rust code skips it before a leading space) */
};

typedef struct lm_tokenizer {
    lm_tok_kind kind;
    int n_vocab;            /* ids are 0..n_vocab-1 */

    /* Pieces as the file spells them (byte-level characters for GPT-2,
     * "▁" for spaces in the SentencePiece family), in one arena. */
    char *text;
    size_t text_len, text_cap;
    size_t *piece_off;      /* [n_vocab] into text; each piece NUL-ended */
    int *piece_len;         /* [n_vocab] */
    float *scores;          /* [n_vocab]; 0 when the file has none */
    uint8_t *types;         /* [n_vocab] LM_TOKEN_* */

    /* What each token decodes to (bytes), in a second arena. */
    char *dec;
    size_t *dec_off;        /* [n_vocab] */
    int *dec_len;           /* [n_vocab] */

    /* piece -> id: open addressing, -1 empty. */
    int32_t *piece_table;
    size_t piece_mask;

    /* Merges: rank r joins merge_a[r] and merge_b[r] into merge_out[r].
     * pair -> rank: open addressing over (a, b), -1 empty. */
    int n_merges, merges_cap;
    int32_t *merge_a, *merge_b, *merge_out;
    int32_t *merge_table;
    size_t merge_mask;
    int merge_by_score;     /* no merge list: join any two neighbours whose
                               concatenation is a normal piece, highest
                               score first (SentencePiece, llama2.c) */

    int32_t byte_id[256];   /* byte-level: the token of each byte's
                               character; SPM: the <0xNN> token; or -1 */

    /* Added tokens, matched in the text before the model sees it. */
    int n_added;
    int32_t *added;         /* ids, by first byte, then longest first */
    uint8_t *added_flags;   /* LM_ADDED_* per entry of `added` */
    int32_t added_start[257]; /* added[added_start[c]..added_start[c+1])
                                 start with byte c */

    int bos_id, eos_id, unk_id, pad_id; /* -1 when there is none */
    int add_bos, add_eos;   /* what encode does by default */

    /* SentencePiece family. */
    int prefix;             /* LM_TOK_PREFIX_* */
    int split_on_space;     /* HF Metaspace split=true: each "▁" starts a
                               new word */
    int byte_fallback;
    int fuse_unk;
    int strip_leading_space;/* decode drops the dummy prefix's space */

    /* Byte-level family. */
    int add_prefix_space;   /* HF ByteLevel add_prefix_space */
    int use_regex;          /* HF ByteLevel use_regex (GPT-2 split) */

    int ignore_merges;      /* HF BPE: a word that is a piece is one token */

    /* SentencePiece family: every pair of neighbouring characters that
     * occurs inside some piece. No merge can join two characters that
     * never sit side by side in a piece, so the text is cut there into
     * independent chunks: the same result as one long word, but small
     * heaps (with Llama's vocabulary, chunks are words). */
    uint64_t *bigrams;      /* open addressing over (a << 32 | b) + 1;
                               0 is empty */
    size_t bigram_mask;
} lm_tokenizer;

enum {
    LM_ADDED_LSTRIP = 1,      /* swallow white space before the match */
    LM_ADDED_RSTRIP = 2,      /* ... and after it */
    LM_ADDED_SINGLE_WORD = 4, /* only when not inside a word */
};

/* ---- loading ---- */

/* Loads whatever PATH is: a directory holding tokenizer.json, a
 * tokenizer.json, a GGUF file or a llama2.c tokenizer.bin (told apart by
 * their first bytes). */
int lm_tokenizer_load(lm_tokenizer *t, const char *path, lm_err *err);

/* Hugging Face: PATH is tokenizer.json or its directory; tokenizer_config.json
 * and config.json beside it, when present, set BOS/EOS and their defaults. */
int lm_tokenizer_load_hf(lm_tokenizer *t, const char *path, lm_err *err);
/* The same from memory. config_json (tokenizer_config.json) and
 * model_config_json (config.json) may be NULL. NAME is used in messages. */
int lm_tokenizer_load_hf_json(lm_tokenizer *t, const char *json, size_t len,
                              const char *config_json, size_t config_len,
                              const char *model_config_json,
                              size_t model_config_len, const char *name,
                              lm_err *err);

/* llama2.c tokenizer.bin: i32 max_token_length, then per token f32 score,
 * i32 length, bytes. vocab_size 0 reads entries up to the end of the file;
 * otherwise exactly that many are required. */
int lm_tokenizer_load_llama2c(lm_tokenizer *t, const char *path,
                              int vocab_size, lm_err *err);
int lm_tokenizer_load_llama2c_mem(lm_tokenizer *t, const uint8_t *buf,
                                  size_t len, int vocab_size,
                                  const char *name, lm_err *err);

/* The tokenizer stored in a GGUF file's metadata (tokenizer.ggml.model
 * "llama" or "gpt2"). */
int lm_tokenizer_load_gguf(lm_tokenizer *t, const char *path, lm_err *err);
int lm_tokenizer_from_gguf(lm_tokenizer *t, const struct lm_gguf *g,
                           lm_err *err);

void lm_tokenizer_free(lm_tokenizer *t);

/* ---- encoding and decoding ---- */

#define LM_TOK_DEFAULT (-1)

typedef struct lm_tok_encode_opts {
    int add_bos;        /* 1, 0 or LM_TOK_DEFAULT (the tokenizer's config) */
    int add_eos;        /* likewise */
    int parse_special;  /* match special (control) added tokens in the text;
                           LM_TOK_DEFAULT = yes, as Hugging Face does.
                           Non-special added tokens are always matched. */
} lm_tok_encode_opts;

/* Encodes text[0..len) (any bytes; invalid UTF-8 is encoded byte by byte).
 * *ids is malloc'ed (free it), *n_ids its length. add_bos is 1, 0 or
 * LM_TOK_DEFAULT; EOS follows the tokenizer's configuration. */
int lm_tokenizer_encode(const lm_tokenizer *t, const char *text, size_t len,
                        int add_bos, int **ids, int *n_ids, lm_err *err);
int lm_tokenizer_encode_ex(const lm_tokenizer *t, const char *text,
                           size_t len, const lm_tok_encode_opts *opts,
                           int **ids, int *n_ids, lm_err *err);

/* Decodes ids to bytes (UTF-8 unless the ids split a character). *text is
 * malloc'ed and NUL-terminated; *len excludes the NUL. With skip_special,
 * control tokens (BOS, EOS, ...) produce nothing. Ids out of range are an
 * error. Unlike Hugging Face, invalid UTF-8 is returned as is, not as
 * U+FFFD, so decode(encode(s)) == s for any s without added tokens. */
int lm_tokenizer_decode(const lm_tokenizer *t, const int *ids, int n_ids,
                        int skip_special, char **text, size_t *len,
                        lm_err *err);

/* Streaming decode, llama2.c style: the bytes token `id` adds after token
 * `prev` (-1 at the start). The dummy prefix's space is dropped at the start
 * and after BOS. Returns a pointer into the tokenizer (not NUL-terminated)
 * and its length; NULL/0 for an id out of range. */
const char *lm_tokenizer_token_text(const lm_tokenizer *t, int prev, int id,
                                    size_t *len);

/* The piece as stored (e.g. "Ġthe", "▁the", "<0x0A>"); NULL if out of
 * range. NUL-terminated. */
const char *lm_tokenizer_piece(const lm_tokenizer *t, int id, int *len);
/* The id of a piece, or -1. */
int lm_tokenizer_find(const lm_tokenizer *t, const char *piece, size_t len);

/* GPT-2's pre-tokenizer: the length in bytes of the pre-token starting at
 * s[0] (n > 0), i.e. one match of
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 */
size_t lm_tokenizer_gpt2_split(const char *s, size_t n);

/* ---- training and saving ---- */

typedef struct lm_bpe_train_opts {
    int vocab_size;         /* target size: special tokens + 256 byte
                               characters + merges */
    int min_frequency;      /* a pair seen fewer times is never merged
                               (0 means 2) */
    const char *const *special_tokens; /* ids 0.. in this order */
    int n_special;
    const char *bos_token;  /* one of the special tokens, or NULL */
    const char *eos_token;
    const char *pad_token;
    int add_bos, add_eos;   /* defaults for encode (saved as the
                               post_processor) */
} lm_bpe_train_opts;

/* Trains a byte-level BPE on text[0..len): GPT-2 pre-tokenization, pair
 * counts over unique words, the most frequent pair merged first (ties: the
 * pair of smaller ids). Occurrences of the special tokens in the text are
 * cut out first, as at encoding time. */
int lm_tokenizer_train_bpe(lm_tokenizer *t, const char *text, size_t len,
                           const lm_bpe_train_opts *opts, lm_err *err);

/* Writes a Hugging Face tokenizer.json (model BPE with vocab and merges,
 * added_tokens, and the pre-tokenizer/decoder of the family). Needs a merge
 * list: tokenizers loaded from tokenizer.bin or a "llama" GGUF merge by
 * score and cannot be saved. */
int lm_tokenizer_save_hf(const lm_tokenizer *t, const char *path,
                         lm_err *err);
/* The same into a malloc'ed NUL-terminated string. */
int lm_tokenizer_to_hf_json(const lm_tokenizer *t, char **json, lm_err *err);

/* ---- building a tokenizer (for the loaders and the trainer) ----
 * lm_tok_build_begin, then lm_tok_set_piece for every id, lm_tok_index,
 * then merges and added tokens, then lm_tok_build_end. */
int lm_tok_build_begin(lm_tokenizer *t, lm_tok_kind kind, int n_vocab,
                       lm_err *err);
/* Sets id's piece; each id at most once. */
int lm_tok_set_piece(lm_tokenizer *t, int id, const char *s, size_t len,
                     float score, int type, lm_err *err);
/* Builds piece -> id (the first id wins for a repeated piece). */
int lm_tok_index(lm_tokenizer *t, lm_err *err);
/* Appends a merge (next rank) of two pieces; their concatenation must be a
 * piece. A pair listed twice keeps its later rank, as Hugging Face does. */
int lm_tok_add_merge(lm_tokenizer *t, int a, int b, lm_err *err);
/* Marks id as an added token matched in text (type CONTROL or USER). */
int lm_tok_add_added(lm_tokenizer *t, int id, int flags, lm_err *err);
/* Byte tables, decode arena, added-token order, merge table. */
int lm_tok_build_end(lm_tokenizer *t, lm_err *err);

/* The byte-level alphabet: the character (code point) byte b maps to. */
uint32_t lm_tok_byte_char(int b);

/* Reads a whole file (at most 2 GiB) into a malloc'ed, NUL-terminated
 * buffer. */
int lm_tok_read_file(const char *path, char **buf, size_t *len, lm_err *err);

#endif
