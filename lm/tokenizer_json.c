/* Hugging Face tokenizer.json: loading (with tokenizer_config.json and
 * config.json beside it) and writing.
 *
 * We support the two BPE pipelines that matter here and refuse anything
 * else by name, since a silently different pipeline gives silently
 * different ids:
 *   byte-level: pre_tokenizer ByteLevel (maybe inside a Sequence), decoder
 *               ByteLevel;
 *   SentencePiece-style: pre_tokenizer Metaspace, or normalizer
 *               Sequence[Prepend("▁"), Replace(" ", "▁")] (older Llama
 *               files); byte_fallback; decoder Replace/ByteFallback/Fuse/
 *               Strip or Metaspace.
 * BOS/EOS come from the post_processor (TemplateProcessing, Roberta/Bert
 * processing), overridden by tokenizer_config.json (add_bos_token,
 * add_eos_token, bos_token, eos_token, ...) and completed by config.json
 * (bos_token_id, eos_token_id). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tokenizer.h"

#define META "\xE2\x96\x81"

/* What the pipeline sections say, gathered before building. */
typedef struct hf_spec {
    int kind;                   /* -1 until a section decides */
    int pre_seen;               /* a ByteLevel/Metaspace pre-tokenizer */
    int prefix;                 /* LM_TOK_PREFIX_* */
    int split_on_space;
    int has_space_replace;      /* normalizer Replace(" ", "▁") */
    int add_prefix_space, use_regex;
    int strip;                  /* decoder strips the leading space: -1 ? */
    int add_bos, add_eos;       /* from the post_processor */
    char bos[256], eos[256];    /* token names from the post_processor */
    int bos_id, eos_id;
} hf_spec;

static const char *str_of(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A JSON boolean; `def` when absent or null. -1 when of another type. */
static int bool_of(const cJSON *o, const char *key, int def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return def;
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    return -1;
}

/* A non-negative integer id below 2^24, or -1. */
static int id_of(const cJSON *v) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d < (1 << 24)) || d != floor(d)) return -1;
    return (int)d;
}

static int is_type(const cJSON *o, const char *type) {
    const char *t = str_of(o, "type");
    return t && strcmp(t, type) == 0;
}

static int parse_normalizer(const cJSON *n, hf_spec *s, const char *where,
                            lm_err *err) {
    if (!n || cJSON_IsNull(n)) return 0;
    const char *type = str_of(n, "type");
    if (!cJSON_IsObject(n) || !type)
        return lm_errf(err, "%s: not an object with a \"type\"", where);
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
        if (!cJSON_IsArray(list))
            return lm_errf(err, "%s.normalizers: not an array", where);
        int i = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, list) {
            char w[128];
            snprintf(w, sizeof w, "%s.normalizers[%d]", where, i++);
            if (parse_normalizer(x, s, w, err) != 0) return -1;
        }
        return 0;
    }
    if (!strcmp(type, "Prepend")) {
        const char *p = str_of(n, "prepend");
        if (!p || strcmp(p, META) != 0)
            return lm_errf(err, "%s.prepend: only \"▁\" is supported", where);
        s->prefix = LM_TOK_PREFIX_ALWAYS;
        s->kind = LM_TOK_SPM_BPE;
        return 0;
    }
    if (!strcmp(type, "Replace")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(n, "pattern");
        const char *from = str_of(pat, "String"), *to = str_of(n, "content");
        if (!from || !to || strcmp(from, " ") != 0 || strcmp(to, META) != 0)
            return lm_errf(err, "%s: only Replace(\" \", \"▁\") is supported",
                           where);
        s->has_space_replace = 1;
        s->kind = LM_TOK_SPM_BPE;
        return 0;
    }
    return lm_errf(err, "%s.type \"%s\" is not supported", where, type);
}

static int parse_pre_tokenizer(const cJSON *p, hf_spec *s, const char *where,
                               lm_err *err) {
    if (!p || cJSON_IsNull(p)) return 0;
    const char *type = str_of(p, "type");
    if (!cJSON_IsObject(p) || !type)
        return lm_errf(err, "%s: not an object with a \"type\"", where);
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
        if (!cJSON_IsArray(list))
            return lm_errf(err, "%s.pretokenizers: not an array", where);
        int i = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, list) {
            char w[128];
            snprintf(w, sizeof w, "%s.pretokenizers[%d]", where, i++);
            if (parse_pre_tokenizer(x, s, w, err) != 0) return -1;
        }
        return 0;
    }
    if (s->pre_seen)
        return lm_errf(err, "%s: a second pre-tokenizer (\"%s\") is not "
                       "supported", where, type);
    s->pre_seen = 1;
    if (!strcmp(type, "ByteLevel")) {
        s->kind = LM_TOK_BYTE_BPE;
        s->add_prefix_space = bool_of(p, "add_prefix_space", 0);
        s->use_regex = bool_of(p, "use_regex", 1);
        if (s->add_prefix_space < 0 || s->use_regex < 0)
            return lm_errf(err, "%s: add_prefix_space/use_regex must be "
                           "booleans", where);
        return 0;
    }
    if (!strcmp(type, "Metaspace")) {
        const char *rep = str_of(p, "replacement");
        if (!rep || strcmp(rep, META) != 0)
            return lm_errf(err, "%s.replacement: only \"▁\" is supported",
                           where);
        s->kind = LM_TOK_SPM_BPE;
        s->has_space_replace = 1;
        const char *scheme = str_of(p, "prepend_scheme");
        if (scheme) {
            if (!strcmp(scheme, "always")) s->prefix = LM_TOK_PREFIX_META_ALWAYS;
            else if (!strcmp(scheme, "first")) s->prefix = LM_TOK_PREFIX_META_FIRST;
            else if (!strcmp(scheme, "never")) s->prefix = LM_TOK_PREFIX_NONE;
            else
                return lm_errf(err, "%s.prepend_scheme \"%s\" unknown", where,
                               scheme);
        } else { /* older files */
            int add = bool_of(p, "add_prefix_space", 1);
            if (add < 0)
                return lm_errf(err, "%s.add_prefix_space: not a boolean", where);
            s->prefix = add ? LM_TOK_PREFIX_META_ALWAYS : LM_TOK_PREFIX_NONE;
        }
        s->split_on_space = bool_of(p, "split", 1);
        if (s->split_on_space < 0)
            return lm_errf(err, "%s.split: not a boolean", where);
        return 0;
    }
    return lm_errf(err, "%s.type \"%s\" is not supported", where, type);
}

/* Only whether the decoder drops the leading space matters to us; the
 * rest of the decoding follows from the family. */
static void parse_decoder(const cJSON *d, hf_spec *s) {
    if (!cJSON_IsObject(d)) return;
    if (is_type(d, "Sequence")) {
        const cJSON *x, *list = cJSON_GetObjectItemCaseSensitive(d, "decoders");
        cJSON_ArrayForEach(x, list) parse_decoder(x, s);
    } else if (is_type(d, "Strip")) {
        const cJSON *start = cJSON_GetObjectItemCaseSensitive(d, "start");
        const char *content = str_of(d, "content");
        if (cJSON_IsNumber(start) && start->valuedouble >= 1 &&
            (!content || !strcmp(content, " ")))
            s->strip = 1;
    } else if (is_type(d, "Metaspace")) {
        const char *scheme = str_of(d, "prepend_scheme");
        int add = bool_of(d, "add_prefix_space", 1);
        if (scheme ? strcmp(scheme, "never") != 0 : add == 1) s->strip = 1;
    }
}

/* The token name a post-processor entry refers to. */
static void copy_name(char *dst, size_t cap, const char *src) {
    snprintf(dst, cap, "%s", src ? src : "");
}

static int parse_post_processor(const cJSON *p, hf_spec *s, const char *where,
                                lm_err *err) {
    if (!p || cJSON_IsNull(p)) return 0;
    if (!cJSON_IsObject(p))
        return lm_errf(err, "%s: not an object", where);
    if (is_type(p, "Sequence")) {
        const cJSON *x, *list = cJSON_GetObjectItemCaseSensitive(p, "processors");
        int i = 0;
        cJSON_ArrayForEach(x, list) {
            char w[128];
            snprintf(w, sizeof w, "%s.processors[%d]", where, i++);
            if (parse_post_processor(x, s, w, err) != 0) return -1;
        }
        return 0;
    }
    if (is_type(p, "TemplateProcessing")) {
        const cJSON *single = cJSON_GetObjectItemCaseSensitive(p, "single");
        if (!cJSON_IsArray(single))
            return lm_errf(err, "%s.single: not an array", where);
        int seen_a = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, single) {
            const cJSON *sp = cJSON_GetObjectItemCaseSensitive(x, "SpecialToken");
            if (cJSON_GetObjectItemCaseSensitive(x, "Sequence")) {
                seen_a = 1;
            } else if (sp) {
                const char *name = str_of(sp, "id");
                if (!name)
                    return lm_errf(err, "%s.single: SpecialToken without an "
                                   "\"id\"", where);
                /* The id of the name, if special_tokens spells it out. */
                const cJSON *st = cJSON_GetObjectItemCaseSensitive(
                    cJSON_GetObjectItemCaseSensitive(p, "special_tokens"), name);
                int id = id_of(cJSON_GetArrayItem(
                    cJSON_GetObjectItemCaseSensitive(st, "ids"), 0));
                if (!seen_a && !s->add_bos) {
                    s->add_bos = 1;
                    copy_name(s->bos, sizeof s->bos, name);
                    s->bos_id = id;
                } else if (seen_a && !s->add_eos) {
                    s->add_eos = 1;
                    copy_name(s->eos, sizeof s->eos, name);
                    s->eos_id = id;
                }
            }
        }
        return 0;
    }
    if (is_type(p, "RobertaProcessing") || is_type(p, "BertProcessing")) {
        const cJSON *cls = cJSON_GetObjectItemCaseSensitive(p, "cls");
        const cJSON *sep = cJSON_GetObjectItemCaseSensitive(p, "sep");
        if (cJSON_IsArray(cls) && cJSON_IsString(cJSON_GetArrayItem(cls, 0))) {
            s->add_bos = 1;
            copy_name(s->bos, sizeof s->bos, cJSON_GetArrayItem(cls, 0)->valuestring);
            s->bos_id = id_of(cJSON_GetArrayItem(cls, 1));
        }
        if (cJSON_IsArray(sep) && cJSON_IsString(cJSON_GetArrayItem(sep, 0))) {
            s->add_eos = 1;
            copy_name(s->eos, sizeof s->eos, cJSON_GetArrayItem(sep, 0)->valuestring);
            s->eos_id = id_of(cJSON_GetArrayItem(sep, 1));
        }
        return 0;
    }
    return 0; /* ByteLevel and friends add no tokens */
}

/* A token named in tokenizer_config.json: a string or {"content": ...}. */
static int config_token(const lm_tokenizer *t, const cJSON *cfg,
                        const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    const char *name = cJSON_IsString(v) ? v->valuestring : str_of(v, "content");
    return name ? lm_tokenizer_find(t, name, strlen(name)) : -1;
}

static int config_id(const cJSON *cfg, const char *key, int n_vocab) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsArray(v)) v = cJSON_GetArrayItem(v, 0); /* Llama-3 lists */
    int id = id_of(v);
    return id < n_vocab ? id : -1;
}

static cJSON *parse_json(const char *text, size_t len, const char *name,
                         lm_err *err) {
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long off = at && at >= text && at <= text + len ? (long)(at - text) : -1;
        lm_errf(err, "%s: not valid JSON (near byte %ld)", name, off);
        return NULL;
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        lm_errf(err, "%s: the top level is not an object", name);
        return NULL;
    }
    return root;
}

/* Splits a merge entry into its two pieces. */
static int merge_parts(const cJSON *m, const char **a, size_t *la,
                       const char **b, size_t *lb) {
    if (cJSON_IsString(m)) {
        const char *s = m->valuestring, *sp = strchr(s, ' ');
        if (!sp || strchr(sp + 1, ' ')) return -1; /* exactly one space */
        *a = s;
        *la = (size_t)(sp - s);
        *b = sp + 1;
        *lb = strlen(sp + 1);
        return 0;
    }
    if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 &&
        cJSON_IsString(cJSON_GetArrayItem(m, 0)) &&
        cJSON_IsString(cJSON_GetArrayItem(m, 1))) {
        *a = cJSON_GetArrayItem(m, 0)->valuestring;
        *b = cJSON_GetArrayItem(m, 1)->valuestring;
        *la = strlen(*a);
        *lb = strlen(*b);
        return 0;
    }
    return -1;
}

static int build(lm_tokenizer *t, const cJSON *root, const cJSON *cfg,
                 const cJSON *mcfg, lm_err *err) {
    hf_spec s = {.kind = -1, .strip = -1, .use_regex = 1, .bos_id = -1,
                 .eos_id = -1};
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) return lm_errf(err, "model: missing");
    const char *mtype = str_of(model, "type");
    if (mtype && strcmp(mtype, "BPE") != 0)
        return lm_errf(err, "model.type \"%s\" is not supported (only BPE)",
                       mtype);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsObject(vocab))
        return lm_errf(err, "model.vocab: missing or not an object");
    if (merges && !cJSON_IsArray(merges))
        return lm_errf(err, "model.merges: not an array");
    const char *prefix_str = str_of(model, "continuing_subword_prefix");
    const char *suffix_str = str_of(model, "end_of_word_suffix");
    if ((prefix_str && *prefix_str) || (suffix_str && *suffix_str))
        return lm_errf(err, "model.continuing_subword_prefix/end_of_word_suffix"
                       " are not supported");

    if (parse_normalizer(cJSON_GetObjectItemCaseSensitive(root, "normalizer"),
                         &s, "normalizer", err) != 0 ||
        parse_pre_tokenizer(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"),
                            &s, "pre_tokenizer", err) != 0 ||
        parse_post_processor(cJSON_GetObjectItemCaseSensitive(root, "post_processor"),
                             &s, "post_processor", err) != 0)
        return -1;
    parse_decoder(cJSON_GetObjectItemCaseSensitive(root, "decoder"), &s);
    if (s.kind == -1)
        return lm_errf(err, "pre_tokenizer/normalizer: neither ByteLevel nor "
                       "Metaspace nor Prepend(\"▁\"): unsupported pipeline");
    if (s.kind == LM_TOK_SPM_BPE && !s.has_space_replace)
        return lm_errf(err, "normalizer: spaces are not replaced by \"▁\"");

    /* The id range: model.vocab and added_tokens. */
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added))
        return lm_errf(err, "added_tokens: not an array");
    int n_entries = 0, max_id = -1;
    const cJSON *x;
    cJSON_ArrayForEach(x, vocab) {
        int id = id_of(x);
        if (id < 0)
            return lm_errf(err, "model.vocab[\"%s\"]: id is not an integer in "
                           "[0, 2^24)", x->string);
        if (id > max_id) max_id = id;
        n_entries++;
    }
    int i = 0;
    cJSON_ArrayForEach(x, added) {
        int id = id_of(cJSON_GetObjectItemCaseSensitive(x, "id"));
        if (id < 0 || !str_of(x, "content"))
            return lm_errf(err, "added_tokens[%d]: needs an integer \"id\" and "
                           "a string \"content\"", i);
        if (id > max_id) max_id = id;
        n_entries++;
        i++;
    }
    if (max_id < 0) return lm_errf(err, "model.vocab: empty");
    /* Holes are allowed (never produced), but not a sparse range that would
     * make us allocate for ids nobody uses. */
    if (max_id > 2 * n_entries + 1024)
        return lm_errf(err, "model.vocab: ids up to %d for %d tokens", max_id,
                       n_entries);
    if (lm_tok_build_begin(t, (lm_tok_kind)s.kind, max_id + 1, err) != 0)
        return -1;
    cJSON_ArrayForEach(x, vocab) {
        if (lm_tok_set_piece(t, id_of(x), x->string, strlen(x->string), 0,
                             LM_TOKEN_NORMAL, err) != 0)
            return lm_err_prefix(err, "model.vocab[\"%s\"]: ", x->string);
    }
    /* Every piece names one id: a repeated key in model.vocab, or an added
     * token spelled like a vocab entry of another id, is ambiguous. */
    if (lm_tok_index(t, err) != 0) return -1;
    cJSON_ArrayForEach(x, vocab) {
        int id = lm_tokenizer_find(t, x->string, strlen(x->string));
        if (id != id_of(x))
            return lm_errf(err, "model.vocab: \"%s\" appears twice (ids %d and "
                           "%d)", x->string, id, id_of(x));
    }
    i = 0;
    cJSON_ArrayForEach(x, added) {
        int id = id_of(cJSON_GetObjectItemCaseSensitive(x, "id"));
        const char *content = str_of(x, "content");
        int other = lm_tokenizer_find(t, content, strlen(content));
        if (other >= 0 && other != id)
            return lm_errf(err, "added_tokens[%d]: \"%s\" has id %d but id %d "
                           "in model.vocab", i, content, id, other);
        i++;
    }
    i = 0;
    cJSON_ArrayForEach(x, added) {
        int id = id_of(cJSON_GetObjectItemCaseSensitive(x, "id"));
        const char *content = str_of(x, "content");
        int special = bool_of(x, "special", 0) == 1;
        int type = special ? LM_TOKEN_CONTROL : LM_TOKEN_USER;
        if (t->types[id] == LM_TOKEN_NONE) {
            if (lm_tok_set_piece(t, id, content, strlen(content), 0, type,
                                 err) != 0)
                return lm_err_prefix(err, "added_tokens[%d]: ", i);
        } else {
            if ((size_t)t->piece_len[id] != strlen(content) ||
                memcmp(t->text + t->piece_off[id], content, strlen(content)))
                return lm_errf(err, "added_tokens[%d]: id %d is \"%s\" but "
                               "model.vocab has \"%s\"", i, id, content,
                               t->text + t->piece_off[id]);
            t->types[id] = (uint8_t)type;
        }
        i++;
    }
    if (lm_tok_index(t, err) != 0) return -1;
    i = 0;
    cJSON_ArrayForEach(x, added) {
        const char *content = str_of(x, "content");
        int id = id_of(cJSON_GetObjectItemCaseSensitive(x, "id"));
        if (lm_tokenizer_find(t, content, strlen(content)) != id)
            return lm_errf(err, "added_tokens[%d]: \"%s\" is given two ids", i,
                           content);
        i++;
    }

    i = 0;
    cJSON_ArrayForEach(x, merges) {
        const char *a, *b;
        size_t la, lb;
        if (merge_parts(x, &a, &la, &b, &lb) != 0)
            return lm_errf(err, "model.merges[%d]: neither \"a b\" nor [\"a\", "
                           "\"b\"]", i);
        int ia = lm_tokenizer_find(t, a, la), ib = lm_tokenizer_find(t, b, lb);
        if (ia < 0 || ib < 0)
            return lm_errf(err, "model.merges[%d]: \"%.*s\" is not in "
                           "model.vocab", i, ia < 0 ? (int)la : (int)lb,
                           ia < 0 ? a : b);
        if (lm_tok_add_merge(t, ia, ib, err) != 0)
            return lm_err_prefix(err, "model.merges[%d]: ", i);
        i++;
    }

    i = 0;
    cJSON_ArrayForEach(x, added) {
        int flags = (bool_of(x, "lstrip", 0) == 1 ? LM_ADDED_LSTRIP : 0) |
                    (bool_of(x, "rstrip", 0) == 1 ? LM_ADDED_RSTRIP : 0) |
                    (bool_of(x, "single_word", 0) == 1 ? LM_ADDED_SINGLE_WORD : 0);
        if (lm_tok_add_added(t, id_of(cJSON_GetObjectItemCaseSensitive(x, "id")),
                             flags, err) != 0)
            return lm_err_prefix(err, "added_tokens[%d]: ", i);
        i++;
    }

    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    if (cJSON_IsString(unk)) {
        t->unk_id = lm_tokenizer_find(t, unk->valuestring, strlen(unk->valuestring));
        if (t->unk_id < 0)
            return lm_errf(err, "model.unk_token \"%s\" is not in model.vocab",
                           unk->valuestring);
        if (t->types[t->unk_id] == LM_TOKEN_NORMAL)
            t->types[t->unk_id] = LM_TOKEN_UNKNOWN;
    }
    t->byte_fallback = bool_of(model, "byte_fallback", 0) == 1;
    t->fuse_unk = bool_of(model, "fuse_unk", 0) == 1;
    t->ignore_merges = bool_of(model, "ignore_merges", 0) == 1;
    t->prefix = s.prefix;
    t->split_on_space = s.split_on_space;
    t->add_prefix_space = s.add_prefix_space;
    t->use_regex = s.use_regex;
    if (s.kind == LM_TOK_SPM_BPE)
        t->strip_leading_space = s.strip >= 0
            ? s.strip
            : (!cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(root, "decoder")) &&
               s.prefix != LM_TOK_PREFIX_NONE);

    /* BOS/EOS: the post-processor, then tokenizer_config.json, then
     * config.json, then the usual names. */
    t->add_bos = s.add_bos;
    t->add_eos = s.add_eos;
    if (s.add_bos) {
        t->bos_id = s.bos_id >= 0 && s.bos_id < t->n_vocab
            ? s.bos_id : lm_tokenizer_find(t, s.bos, strlen(s.bos));
        if (t->bos_id < 0)
            return lm_errf(err, "post_processor: BOS \"%s\" is not a token", s.bos);
    }
    if (s.add_eos) {
        t->eos_id = s.eos_id >= 0 && s.eos_id < t->n_vocab
            ? s.eos_id : lm_tokenizer_find(t, s.eos, strlen(s.eos));
        if (t->eos_id < 0)
            return lm_errf(err, "post_processor: EOS \"%s\" is not a token", s.eos);
    }
    if (cfg) {
        int v;
        if ((v = config_token(t, cfg, "bos_token")) >= 0) t->bos_id = v;
        if ((v = config_token(t, cfg, "eos_token")) >= 0) t->eos_id = v;
        if ((v = config_token(t, cfg, "pad_token")) >= 0) t->pad_id = v;
        if ((v = config_token(t, cfg, "unk_token")) >= 0 && t->unk_id < 0)
            t->unk_id = v;
        if ((v = bool_of(cfg, "add_bos_token", -2)) >= 0) t->add_bos = v;
        if ((v = bool_of(cfg, "add_eos_token", -2)) >= 0) t->add_eos = v;
    }
    if (mcfg) {
        if (t->bos_id < 0) t->bos_id = config_id(mcfg, "bos_token_id", t->n_vocab);
        if (t->eos_id < 0) t->eos_id = config_id(mcfg, "eos_token_id", t->n_vocab);
        if (t->pad_id < 0) t->pad_id = config_id(mcfg, "pad_token_id", t->n_vocab);
    }
    static const char *const bos_names[] = {"<s>", "<|begin_of_text|>",
                                            "<|endoftext|>", NULL};
    static const char *const eos_names[] = {"</s>", "<|end_of_text|>",
                                            "<|endoftext|>", NULL};
    for (int k = 0; t->bos_id < 0 && bos_names[k]; k++) {
        int id = lm_tokenizer_find(t, bos_names[k], strlen(bos_names[k]));
        if (id >= 0 && t->types[id] == LM_TOKEN_CONTROL) t->bos_id = id;
    }
    for (int k = 0; t->eos_id < 0 && eos_names[k]; k++) {
        int id = lm_tokenizer_find(t, eos_names[k], strlen(eos_names[k]));
        if (id >= 0 && t->types[id] == LM_TOKEN_CONTROL) t->eos_id = id;
    }
    if (t->add_bos && t->bos_id < 0)
        return lm_errf(err, "tokenizer_config.json: add_bos_token without a "
                       "bos_token");
    if (t->add_eos && t->eos_id < 0)
        return lm_errf(err, "tokenizer_config.json: add_eos_token without an "
                       "eos_token");
    return lm_tok_build_end(t, err);
}

int lm_tokenizer_load_hf_json(lm_tokenizer *t, const char *json, size_t len,
                              const char *config_json, size_t config_len,
                              const char *model_config_json,
                              size_t model_config_len, const char *name,
                              lm_err *err) {
    memset(t, 0, sizeof *t);
    if (!name) name = "tokenizer.json";
    cJSON *root = parse_json(json, len, name, err), *cfg = NULL, *mcfg = NULL;
    if (!root) return -1;
    int rc = 0;
    if (config_json &&
        !(cfg = parse_json(config_json, config_len, "tokenizer_config.json", err)))
        rc = -1;
    if (rc == 0 && model_config_json &&
        !(mcfg = parse_json(model_config_json, model_config_len, "config.json",
                            err)))
        rc = -1;
    if (rc == 0 && build(t, root, cfg, mcfg, err) != 0) {
        lm_err_prefix(err, "%s: ", name);
        rc = -1;
    }
    if (rc != 0) lm_tokenizer_free(t);
    cJSON_Delete(root);
    cJSON_Delete(cfg);
    cJSON_Delete(mcfg);
    return rc;
}

/* Reads dir/name if it exists; *buf NULL when it does not. */
static int read_optional(const char *dir, const char *name, char **buf,
                         size_t *len, lm_err *err) {
    char path[4096];
    struct stat st;
    *buf = NULL;
    *len = 0;
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return lm_errf(err, "%s: path too long", dir);
    if (stat(path, &st) != 0) return 0;
    return lm_tok_read_file(path, buf, len, err);
}

int lm_tokenizer_load_hf(lm_tokenizer *t, const char *path, lm_err *err) {
    memset(t, 0, sizeof *t);
    char dir[4096], file[4096];
    struct stat st;
    if (stat(path, &st) != 0) return lm_errf(err, "%s: does not exist", path);
    if (S_ISDIR(st.st_mode)) {
        snprintf(dir, sizeof dir, "%s", path);
        if (snprintf(file, sizeof file, "%s/tokenizer.json", path) >=
            (int)sizeof file)
            return lm_errf(err, "%s: path too long", path);
    } else {
        snprintf(file, sizeof file, "%s", path);
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else snprintf(dir, sizeof dir, ".");
    }
    char *json = NULL, *cfg = NULL, *mcfg = NULL;
    size_t len = 0, cfg_len = 0, mcfg_len = 0;
    int rc = -1;
    if (lm_tok_read_file(file, &json, &len, err) == 0 &&
        read_optional(dir, "tokenizer_config.json", &cfg, &cfg_len, err) == 0 &&
        read_optional(dir, "config.json", &mcfg, &mcfg_len, err) == 0)
        rc = lm_tokenizer_load_hf_json(t, json, len, cfg, cfg_len, mcfg,
                                       mcfg_len, file, err);
    free(json);
    free(cfg);
    free(mcfg);
    return rc;
}

/* ------------------------------------------------------------- writing */

static const char *piece(const lm_tokenizer *t, int id) {
    return t->text + t->piece_off[id];
}

static cJSON *special_item(const char *name, int type_id) {
    cJSON *o = cJSON_CreateObject(), *in = cJSON_CreateObject();
    cJSON_AddStringToObject(in, "id", name);
    cJSON_AddNumberToObject(in, "type_id", type_id);
    cJSON_AddItemToObject(o, "SpecialToken", in);
    return o;
}

static cJSON *sequence_item(const char *seq, int type_id) {
    cJSON *o = cJSON_CreateObject(), *in = cJSON_CreateObject();
    cJSON_AddStringToObject(in, "id", seq);
    cJSON_AddNumberToObject(in, "type_id", type_id);
    cJSON_AddItemToObject(o, "Sequence", in);
    return o;
}

static cJSON *template_processor(const lm_tokenizer *t) {
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "type", "TemplateProcessing");
    const char *bos = t->add_bos ? piece(t, t->bos_id) : NULL;
    const char *eos = t->add_eos ? piece(t, t->eos_id) : NULL;
    cJSON *single = cJSON_AddArrayToObject(p, "single");
    if (bos) cJSON_AddItemToArray(single, special_item(bos, 0));
    cJSON_AddItemToArray(single, sequence_item("A", 0));
    if (eos) cJSON_AddItemToArray(single, special_item(eos, 0));
    cJSON *pair = cJSON_AddArrayToObject(p, "pair");
    for (int k = 0; k < 2; k++) {
        if (bos) cJSON_AddItemToArray(pair, special_item(bos, k));
        cJSON_AddItemToArray(pair, sequence_item(k ? "B" : "A", k));
        if (eos) cJSON_AddItemToArray(pair, special_item(eos, k));
    }
    cJSON *sp = cJSON_AddObjectToObject(p, "special_tokens");
    for (int k = 0; k < 2; k++) {
        const char *name = k ? eos : bos;
        int id = k ? t->eos_id : t->bos_id;
        if (!name || cJSON_GetObjectItemCaseSensitive(sp, name)) continue;
        cJSON *e = cJSON_AddObjectToObject(sp, name);
        cJSON_AddStringToObject(e, "id", name);
        cJSON_AddItemToObject(e, "ids", cJSON_CreateIntArray(&id, 1));
        cJSON *toks = cJSON_AddArrayToObject(e, "tokens");
        cJSON_AddItemToArray(toks, cJSON_CreateString(name));
    }
    return p;
}

static cJSON *byte_level(int add_prefix_space, int trim_offsets, int use_regex) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "ByteLevel");
    cJSON_AddBoolToObject(o, "add_prefix_space", add_prefix_space);
    cJSON_AddBoolToObject(o, "trim_offsets", trim_offsets);
    cJSON_AddBoolToObject(o, "use_regex", use_regex);
    return o;
}

static cJSON *typed(const char *type) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    return o;
}

int lm_tokenizer_to_hf_json(const lm_tokenizer *t, char **json, lm_err *err) {
    *json = NULL;
    if (!t->dec) return lm_errf(err, "tokenizer not loaded");
    if (t->merge_by_score)
        return lm_errf(err, "this tokenizer merges by score and has no merge "
                       "list to save as tokenizer.json");
    if (t->kind == LM_TOK_SPM_BPE && t->prefix == LM_TOK_PREFIX_ALWAYS &&
        t->split_on_space)
        return lm_errf(err, "no tokenizer.json pipeline prepends \"▁\" always "
                       "and splits words");
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");

    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    for (int id = 0; id < t->n_vocab; id++) {
        int k = -1;
        for (int j = 0; j < t->n_added; j++)
            if (t->added[j] == id) k = j;
        if (k < 0) continue;
        cJSON *a = cJSON_CreateObject();
        cJSON_AddNumberToObject(a, "id", id);
        cJSON_AddStringToObject(a, "content", piece(t, id));
        cJSON_AddBoolToObject(a, "single_word", t->added_flags[k] & LM_ADDED_SINGLE_WORD);
        cJSON_AddBoolToObject(a, "lstrip", t->added_flags[k] & LM_ADDED_LSTRIP);
        cJSON_AddBoolToObject(a, "rstrip", t->added_flags[k] & LM_ADDED_RSTRIP);
        cJSON_AddBoolToObject(a, "normalized", 0);
        cJSON_AddBoolToObject(a, "special", t->types[id] == LM_TOKEN_CONTROL);
        cJSON_AddItemToArray(added, a);
    }

    if (t->kind == LM_TOK_BYTE_BPE) {
        cJSON_AddNullToObject(root, "normalizer");
        cJSON_AddItemToObject(root, "pre_tokenizer",
                              byte_level(t->add_prefix_space, 1, t->use_regex));
        cJSON_AddItemToObject(root, "post_processor",
                              t->add_bos || t->add_eos ? template_processor(t)
                                                       : byte_level(1, 0, 1));
        cJSON_AddItemToObject(root, "decoder", byte_level(1, 1, 1));
    } else {
        if (t->prefix == LM_TOK_PREFIX_ALWAYS) {
            /* The older Llama pipeline: a normalizer, no pre-tokenizer. */
            cJSON *n = typed("Sequence");
            cJSON *list = cJSON_AddArrayToObject(n, "normalizers");
            cJSON *p = typed("Prepend");
            cJSON_AddStringToObject(p, "prepend", META);
            cJSON_AddItemToArray(list, p);
            cJSON *r = typed("Replace");
            cJSON *pat = cJSON_AddObjectToObject(r, "pattern");
            cJSON_AddStringToObject(pat, "String", " ");
            cJSON_AddStringToObject(r, "content", META);
            cJSON_AddItemToArray(list, r);
            cJSON_AddItemToObject(root, "normalizer", n);
            cJSON_AddNullToObject(root, "pre_tokenizer");
        } else {
            cJSON_AddNullToObject(root, "normalizer");
            cJSON *m = typed("Metaspace");
            cJSON_AddStringToObject(m, "replacement", META);
            cJSON_AddStringToObject(m, "prepend_scheme",
                t->prefix == LM_TOK_PREFIX_META_FIRST ? "first"
                : t->prefix == LM_TOK_PREFIX_META_ALWAYS ? "always" : "never");
            cJSON_AddBoolToObject(m, "split", t->split_on_space);
            cJSON_AddItemToObject(root, "pre_tokenizer", m);
        }
        if (t->add_bos || t->add_eos)
            cJSON_AddItemToObject(root, "post_processor", template_processor(t));
        else
            cJSON_AddNullToObject(root, "post_processor");
        cJSON *d = typed("Sequence");
        cJSON *list = cJSON_AddArrayToObject(d, "decoders");
        cJSON *r = typed("Replace");
        cJSON *pat = cJSON_AddObjectToObject(r, "pattern");
        cJSON_AddStringToObject(pat, "String", META);
        cJSON_AddStringToObject(r, "content", " ");
        cJSON_AddItemToArray(list, r);
        cJSON_AddItemToArray(list, typed("ByteFallback"));
        cJSON_AddItemToArray(list, typed("Fuse"));
        if (t->strip_leading_space) {
            cJSON *s = typed("Strip");
            cJSON_AddStringToObject(s, "content", " ");
            cJSON_AddNumberToObject(s, "start", 1);
            cJSON_AddNumberToObject(s, "stop", 0);
            cJSON_AddItemToArray(list, s);
        }
        cJSON_AddItemToObject(root, "decoder", d);
    }

    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    if (t->unk_id >= 0) cJSON_AddStringToObject(model, "unk_token", piece(t, t->unk_id));
    else cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddNullToObject(model, "continuing_subword_prefix");
    cJSON_AddNullToObject(model, "end_of_word_suffix");
    cJSON_AddBoolToObject(model, "fuse_unk", t->fuse_unk);
    cJSON_AddBoolToObject(model, "byte_fallback", t->byte_fallback);
    cJSON_AddBoolToObject(model, "ignore_merges", t->ignore_merges);
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    for (int id = 0; id < t->n_vocab; id++)
        if (t->types[id] != LM_TOKEN_NONE &&
            lm_tokenizer_find(t, piece(t, id), (size_t)t->piece_len[id]) == id)
            cJSON_AddNumberToObject(vocab, piece(t, id), id);
    /* "a b" strings unless a piece has a space; then pairs. */
    int pairs = 0;
    for (int r = 0; r < t->n_merges && !pairs; r++)
        pairs = strchr(piece(t, t->merge_a[r]), ' ') ||
                strchr(piece(t, t->merge_b[r]), ' ');
    cJSON *ml = cJSON_AddArrayToObject(model, "merges");
    for (int r = 0; r < t->n_merges; r++) {
        const char *a = piece(t, t->merge_a[r]), *b = piece(t, t->merge_b[r]);
        if (pairs) {
            const char *ab[2] = {a, b};
            cJSON_AddItemToArray(ml, cJSON_CreateStringArray(ab, 2));
        } else {
            size_t la = strlen(a), lb = strlen(b);
            char *s = malloc(la + lb + 2);
            if (!s) {
                cJSON_Delete(root);
                return lm_errf(err, "out of memory");
            }
            memcpy(s, a, la);
            s[la] = ' ';
            memcpy(s + la + 1, b, lb + 1);
            cJSON_AddItemToArray(ml, cJSON_CreateString(s));
            free(s);
        }
    }
    *json = cJSON_Print(root);
    cJSON_Delete(root);
    if (!*json) return lm_errf(err, "out of memory printing tokenizer.json");
    return 0;
}

int lm_tokenizer_save_hf(const lm_tokenizer *t, const char *path, lm_err *err) {
    char *json;
    if (lm_tokenizer_to_hf_json(t, &json, err) != 0) return -1;
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(json);
        return lm_errf(err, "%s: cannot create", path);
    }
    size_t n = strlen(json);
    int ok = fwrite(json, 1, n, f) == n;
    ok &= fclose(f) == 0;
    free(json);
    return ok ? 0 : lm_errf(err, "%s: write failed", path);
}
