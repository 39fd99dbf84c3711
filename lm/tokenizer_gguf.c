/* The tokenizer stored in a GGUF file's metadata.
 *
 *   tokenizer.ggml.model       "llama" (SentencePiece BPE, merges by score)
 *                              or "gpt2" (byte-level BPE with merges)
 *   tokenizer.ggml.tokens      string array: the pieces, by id
 *   tokenizer.ggml.scores      f32 array (llama)
 *   tokenizer.ggml.token_type  i32 array: 1 normal, 2 unknown, 3 control,
 *                              4 user-defined, 5 unused, 6 byte
 *   tokenizer.ggml.merges      string array "a b" (gpt2)
 *   tokenizer.ggml.{bos,eos,unknown,padding}_token_id, add_bos_token,
 *   add_eos_token, add_space_prefix, pre (gpt2's pre-tokenizer name). */
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "tokenizer.h"

static int opt_id(const lm_gguf *g, const char *key, int n_vocab, int *out,
                  lm_err *err) {
    int32_t v;
    if (!lm_gguf_find_kv(g, key)) return 0;
    if (lm_gguf_get_i32(g, key, &v, err) != 0) return -1;
    if (v < 0 || v >= n_vocab)
        return lm_errf(err, "%s = %d is not a token id (vocabulary %d)", key,
                       v, n_vocab);
    *out = v;
    return 0;
}

static int opt_bool(const lm_gguf *g, const char *key, int *out, lm_err *err) {
    if (!lm_gguf_find_kv(g, key)) return 0;
    return lm_gguf_get_bool(g, key, out, err);
}

static int build(lm_tokenizer *t, const lm_gguf *g, lm_err *err) {
    const char *model, *s;
    size_t mlen, n;
    if (lm_gguf_get_str(g, "tokenizer.ggml.model", &model, &mlen, err) != 0)
        return -1;
    int llama = mlen == 5 && !memcmp(model, "llama", 5);
    int gpt2 = mlen == 4 && !memcmp(model, "gpt2", 4);
    if (!llama && !gpt2)
        return lm_errf(err, "tokenizer.ggml.model \"%.*s\" is not supported "
                       "(llama and gpt2 are)", (int)(mlen < 64 ? mlen : 64),
                       model);
    if (gpt2 && lm_gguf_find_kv(g, "tokenizer.ggml.pre")) {
        /* llama.cpp names the pre-tokenizer regex; we have GPT-2's. */
        if (lm_gguf_get_str(g, "tokenizer.ggml.pre", &s, &n, err) != 0) return -1;
        if (!((n == 5 && !memcmp(s, "gpt-2", 5)) ||
              (n == 7 && !memcmp(s, "default", 7))))
            return lm_errf(err, "tokenizer.ggml.pre \"%.*s\" is not supported "
                           "(gpt-2 is)", (int)(n < 64 ? n : 64), s);
    }
    lm_gguf_arr tokens, scores = {0}, types = {0}, merges = {0};
    if (lm_gguf_get_arr(g, "tokenizer.ggml.tokens", &tokens, err) != 0)
        return -1;
    if (tokens.type != LM_GGUF_STRING || tokens.n == 0 || tokens.n > (1u << 24))
        return lm_errf(err, "tokenizer.ggml.tokens: not a string array of 1.."
                       "2^24 entries");
    int nv = (int)tokens.n;
    if (lm_gguf_find_kv(g, "tokenizer.ggml.scores")) {
        if (lm_gguf_get_arr(g, "tokenizer.ggml.scores", &scores, err) != 0)
            return -1;
        if (scores.n != tokens.n)
            return lm_errf(err, "tokenizer.ggml.scores: %llu entries for %d "
                           "tokens", (unsigned long long)scores.n, nv);
    } else if (llama) {
        return lm_errf(err, "tokenizer.ggml.scores: missing (needed by the "
                       "llama tokenizer)");
    }
    if (lm_gguf_find_kv(g, "tokenizer.ggml.token_type")) {
        if (lm_gguf_get_arr(g, "tokenizer.ggml.token_type", &types, err) != 0)
            return -1;
        if (types.n != tokens.n)
            return lm_errf(err, "tokenizer.ggml.token_type: %llu entries for "
                           "%d tokens", (unsigned long long)types.n, nv);
    }
    if (gpt2) {
        if (lm_gguf_get_arr(g, "tokenizer.ggml.merges", &merges, err) != 0)
            return -1;
        if (merges.type != LM_GGUF_STRING)
            return lm_errf(err, "tokenizer.ggml.merges: not a string array");
    }

    if (lm_tok_build_begin(t, llama ? LM_TOK_SPM_BPE : LM_TOK_BYTE_BPE, nv,
                           err) != 0)
        return -1;
    for (int id = 0; id < nv; id++) {
        float score = 0;
        int32_t type = LM_TOKEN_NORMAL;
        if (lm_gguf_arr_str(&tokens, (uint64_t)id, &s, &n, err) != 0 ||
            (scores.n && lm_gguf_arr_f32(&scores, (uint64_t)id, &score, err) != 0) ||
            (types.n && lm_gguf_arr_i32(&types, (uint64_t)id, &type, err) != 0))
            return lm_err_prefix(err, "tokenizer.ggml token %d: ", id);
        if (type < LM_TOKEN_NORMAL || type > LM_TOKEN_BYTE)
            return lm_errf(err, "tokenizer.ggml.token_type[%d] = %d unknown",
                           id, type);
        if (lm_tok_set_piece(t, id, s, n, score, type, err) != 0)
            return lm_err_prefix(err, "tokenizer.ggml.tokens[%d]: ", id);
    }
    if (lm_tok_index(t, err) != 0) return -1;
    for (uint64_t r = 0; r < merges.n; r++) {
        if (lm_gguf_arr_str(&merges, r, &s, &n, err) != 0)
            return lm_err_prefix(err, "tokenizer.ggml.merges[%llu]: ",
                                 (unsigned long long)r);
        /* Split at the first space after the first byte. */
        const char *sp = n > 1 ? memchr(s + 1, ' ', n - 1) : NULL;
        if (!sp)
            return lm_errf(err, "tokenizer.ggml.merges[%llu]: not \"a b\"",
                           (unsigned long long)r);
        int a = lm_tokenizer_find(t, s, (size_t)(sp - s));
        int b = lm_tokenizer_find(t, sp + 1, n - (size_t)(sp - s) - 1);
        if (a < 0 || b < 0)
            return lm_errf(err, "tokenizer.ggml.merges[%llu]: a piece is not a "
                           "token", (unsigned long long)r);
        if (lm_tok_add_merge(t, a, b, err) != 0)
            return lm_err_prefix(err, "tokenizer.ggml.merges[%llu]: ",
                                 (unsigned long long)r);
    }
    /* Control and user-defined tokens are matched in the text, as
     * llama.cpp does with parse_special. */
    for (int id = 0; id < nv; id++)
        if ((t->types[id] == LM_TOKEN_CONTROL || t->types[id] == LM_TOKEN_USER) &&
            t->piece_len[id] > 0 && lm_tok_add_added(t, id, 0, err) != 0)
            return -1;

    int add_space = 1;
    t->add_bos = llama;
    if (opt_id(g, "tokenizer.ggml.bos_token_id", nv, &t->bos_id, err) ||
        opt_id(g, "tokenizer.ggml.eos_token_id", nv, &t->eos_id, err) ||
        opt_id(g, "tokenizer.ggml.unknown_token_id", nv, &t->unk_id, err) ||
        opt_id(g, "tokenizer.ggml.padding_token_id", nv, &t->pad_id, err) ||
        opt_bool(g, "tokenizer.ggml.add_bos_token", &t->add_bos, err) ||
        opt_bool(g, "tokenizer.ggml.add_eos_token", &t->add_eos, err) ||
        opt_bool(g, "tokenizer.ggml.add_space_prefix", &add_space, err))
        return -1;
    if (llama) {
        t->merge_by_score = 1;
        t->byte_fallback = 1;
        t->prefix = add_space ? LM_TOK_PREFIX_ALWAYS : LM_TOK_PREFIX_NONE;
        t->strip_leading_space = add_space;
        if (t->unk_id < 0)
            for (int id = 0; id < nv && t->unk_id < 0; id++)
                if (t->types[id] == LM_TOKEN_UNKNOWN) t->unk_id = id;
    }
    return lm_tok_build_end(t, err);
}

int lm_tokenizer_from_gguf(lm_tokenizer *t, const lm_gguf *g, lm_err *err) {
    memset(t, 0, sizeof *t);
    if (build(t, g, err) != 0) {
        lm_tokenizer_free(t);
        return -1;
    }
    return 0;
}

int lm_tokenizer_load_gguf(lm_tokenizer *t, const char *path, lm_err *err) {
    lm_gguf g;
    memset(t, 0, sizeof *t);
    if (lm_gguf_open(&g, path, err) != 0) return lm_err_prefix(err, "%s: ", path);
    int rc = lm_tokenizer_from_gguf(t, &g, err);
    lm_gguf_close(&g);
    return rc ? lm_err_prefix(err, "%s: ", path) : 0;
}
