"""An independent float64 reference for the four Hugging Face model families.

make_checkpoint() writes a small random model as a real Hugging Face folder
(model.safetensors written by hand, config.json with the keys HF uses), and
forward_logprobs() reads that folder back and runs the family's forward pass
in float64, following the HF modeling code (modeling_llama, modeling_mistral,
modeling_gpt2, modeling_opt). The golden test compares `smudge score` with it.

numpy only; torch is used by self_check() to cross-check this file, never by
the reference itself.
"""
import json
import os
import struct

import numpy as np

FAMILIES = ("llama", "mistral", "gpt2", "opt")
DTYPES = ("F32", "F16", "BF16")

# Small but non-degenerate: GQA (4 query heads over 2 kv heads), an FFN width
# that is not a multiple of the hidden size, and epsilons / theta that differ
# from the defaults so a loader that ignores the config shows up. Mistral's
# window (5) is shorter than the test sequences, so the window matters.
DEFAULT_SHAPES = {
    "llama": dict(vocab=96, d=32, layers=2, heads=4, kv_heads=2, ffn=88,
                  max_pos=64, eps=1e-5, theta=10000.0, tie=False),
    "mistral": dict(vocab=96, d=32, layers=2, heads=4, kv_heads=2, ffn=88,
                    max_pos=64, eps=1e-3, theta=1e6, tie=False,
                    sliding_window=5),
    "gpt2": dict(vocab=96, d=32, layers=2, heads=4, ffn=88, max_pos=64,
                 eps=1e-3, n_inner_null=False),
    "opt": dict(vocab=96, d=32, layers=2, heads=4, ffn=64, max_pos=64),
}

_TORCH_DTYPE = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
_OPT_LN_EPS = 1e-5  # OPT uses nn.LayerNorm's default; no config key


# ---------------------------------------------------------------- storage ---

def f32_to_bf16_bits(x):
    """Round float32 values to bfloat16 (nearest, ties to even); the upper 16
    bits of the rounded float32 pattern. Inputs are finite here."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    bits = bits.astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def bf16_bits_to_f64(bits):
    u32 = bits.astype(np.uint32) << 16
    return u32.view(np.float32).astype(np.float64)


def _encode(a, dtype):
    """float64 array -> raw little-endian bytes of the stored dtype."""
    if dtype == "F32":
        return a.astype("<f4").tobytes()
    if dtype == "F16":
        return a.astype("<f2").tobytes()  # numpy rounds to nearest even
    if dtype == "BF16":
        return f32_to_bf16_bits(a.astype(np.float32)).astype("<u2").tobytes()
    raise ValueError("unknown dtype " + dtype)


def _decode(raw, dtype, shape):
    """Raw bytes -> float64, exact (every F32/F16/BF16 value is a double)."""
    if dtype == "F32":
        a = np.frombuffer(raw, dtype="<f4").astype(np.float64)
    elif dtype == "F16":
        a = np.frombuffer(raw, dtype="<f2").astype(np.float64)
    elif dtype == "BF16":
        a = bf16_bits_to_f64(np.frombuffer(raw, dtype="<u2"))
    elif dtype == "F64":
        a = np.frombuffer(raw, dtype="<f8").astype(np.float64)
    else:
        raise ValueError("unsupported safetensors dtype " + dtype)
    return a.reshape(shape)


def write_safetensors(path, tensors, dtype):
    """tensors: {name: float64 array}. Layout per the safetensors spec: u64 LE
    header length, JSON header (padded with spaces to a multiple of 8), then
    the data, offsets relative to the start of the data. Names are written in
    sorted order, as the HF writer does for a single dtype."""
    header = {"__metadata__": {"format": "pt"}}
    blobs, off = [], 0
    for name in sorted(tensors):
        a = np.asarray(tensors[name], dtype=np.float64)
        raw = _encode(a, dtype)
        header[name] = {"dtype": dtype, "shape": list(a.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    hdr = json.dumps(header, separators=(",", ":")).encode()
    hdr += b" " * (-len(hdr) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hdr)))
        f.write(hdr)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    """{name: float64 array}, checking the header against the file size."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(path + ": shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise ValueError(path + ": header length %d past end of file" % n)
    header = json.loads(data[8:8 + n].decode("utf-8"))
    body = data[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        if not 0 <= b <= e <= len(body):
            raise ValueError("%s: %s data_offsets [%d, %d] out of range"
                             % (path, name, b, e))
        out[name] = _decode(body[b:e], info["dtype"], tuple(info["shape"]))
    return out


# ------------------------------------------------------------- checkpoints ---

def _shape(family, overrides):
    if family not in DEFAULT_SHAPES:
        raise ValueError("unknown family " + family)
    s = dict(DEFAULT_SHAPES[family])
    for k, v in overrides.items():
        if k not in s:
            raise ValueError("%s: unknown shape key %s" % (family, k))
        s[k] = v
    return s


def _random_params(family, s, rng):
    """float64 weights, named and laid out as HF checkpoints store them."""
    C, F, V, L, P = s["d"], s["ffn"], s["vocab"], s["layers"], s["max_pos"]
    W = lambda *shape: rng.normal(0.0, 0.15, shape)      # matrices
    E = lambda *shape: rng.normal(0.0, 0.2, shape)       # embeddings
    G = lambda n: 1.0 + 0.1 * rng.normal(0.0, 1.0, n)    # norm gains
    B = lambda n: 0.02 * rng.normal(0.0, 1.0, n)         # biases
    p = {}
    if family in ("llama", "mistral"):
        H, KVH = s["heads"], s["kv_heads"]
        D = C // H
        p["model.embed_tokens.weight"] = E(V, C)
        for l in range(L):
            pre = "model.layers.%d." % l
            p[pre + "input_layernorm.weight"] = G(C)
            p[pre + "self_attn.q_proj.weight"] = W(H * D, C)
            p[pre + "self_attn.k_proj.weight"] = W(KVH * D, C)
            p[pre + "self_attn.v_proj.weight"] = W(KVH * D, C)
            p[pre + "self_attn.o_proj.weight"] = W(C, H * D)
            p[pre + "post_attention_layernorm.weight"] = G(C)
            p[pre + "mlp.gate_proj.weight"] = W(F, C)
            p[pre + "mlp.up_proj.weight"] = W(F, C)
            p[pre + "mlp.down_proj.weight"] = W(C, F)
        p["model.norm.weight"] = G(C)
        if not s["tie"]:
            p["lm_head.weight"] = E(V, C)
    elif family == "gpt2":
        p["transformer.wte.weight"] = E(V, C)
        p["transformer.wpe.weight"] = 0.5 * E(P, C)
        for l in range(L):
            pre = "transformer.h.%d." % l
            # Conv1D stores [in, out]: y = x @ weight + bias
            p[pre + "ln_1.weight"], p[pre + "ln_1.bias"] = G(C), B(C)
            p[pre + "attn.c_attn.weight"] = W(C, 3 * C)
            p[pre + "attn.c_attn.bias"] = B(3 * C)
            p[pre + "attn.c_proj.weight"] = W(C, C)
            p[pre + "attn.c_proj.bias"] = B(C)
            p[pre + "ln_2.weight"], p[pre + "ln_2.bias"] = G(C), B(C)
            p[pre + "mlp.c_fc.weight"] = W(C, F)
            p[pre + "mlp.c_fc.bias"] = B(F)
            p[pre + "mlp.c_proj.weight"] = W(F, C)
            p[pre + "mlp.c_proj.bias"] = B(C)
        p["transformer.ln_f.weight"] = G(C)
        p["transformer.ln_f.bias"] = B(C)
    elif family == "opt":
        p["model.decoder.embed_tokens.weight"] = E(V, C)
        # OPTLearnedPositionalEmbedding keeps 2 extra rows (offset 2).
        p["model.decoder.embed_positions.weight"] = 0.5 * E(P + 2, C)
        for l in range(L):
            pre = "model.decoder.layers.%d." % l
            for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                p[pre + "self_attn.%s.weight" % proj] = W(C, C)
                p[pre + "self_attn.%s.bias" % proj] = B(C)
            p[pre + "self_attn_layer_norm.weight"] = G(C)
            p[pre + "self_attn_layer_norm.bias"] = B(C)
            p[pre + "fc1.weight"], p[pre + "fc1.bias"] = W(F, C), B(F)
            p[pre + "fc2.weight"], p[pre + "fc2.bias"] = W(C, F), B(C)
            p[pre + "final_layer_norm.weight"] = G(C)
            p[pre + "final_layer_norm.bias"] = B(C)
        p["model.decoder.final_layer_norm.weight"] = G(C)
        p["model.decoder.final_layer_norm.bias"] = B(C)
    return p


def _config(family, s, dtype):
    td = _TORCH_DTYPE[dtype]
    if family in ("llama", "mistral"):
        cfg = {
            "architectures": ["LlamaForCausalLM" if family == "llama"
                              else "MistralForCausalLM"],
            "model_type": family,
            "hidden_size": s["d"],
            "intermediate_size": s["ffn"],
            "num_hidden_layers": s["layers"],
            "num_attention_heads": s["heads"],
            "num_key_value_heads": s["kv_heads"],
            "max_position_embeddings": s["max_pos"],
            "rms_norm_eps": s["eps"],
            "rope_theta": s["theta"],
            "tie_word_embeddings": bool(s["tie"]),
            "vocab_size": s["vocab"],
            "bos_token_id": 1,
            "eos_token_id": 2,
            "hidden_act": "silu",
            "torch_dtype": td,
        }
        if family == "llama":
            cfg["rope_scaling"] = None  # present (null) in real Llama configs
            cfg["attention_bias"] = False
        else:
            cfg["sliding_window"] = s["sliding_window"]
        return cfg
    if family == "gpt2":
        return {
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "n_embd": s["d"],
            "n_layer": s["layers"],
            "n_head": s["heads"],
            "n_positions": s["max_pos"],
            "n_ctx": s["max_pos"],
            # real GPT-2 configs say null, meaning 4 * n_embd
            "n_inner": None if s["n_inner_null"] else s["ffn"],
            "layer_norm_epsilon": s["eps"],
            "activation_function": "gelu_new",
            "vocab_size": s["vocab"],
            "bos_token_id": s["vocab"] - 1,
            "eos_token_id": s["vocab"] - 1,
            "torch_dtype": td,
        }
    return {
        "architectures": ["OPTForCausalLM"],
        "model_type": "opt",
        "hidden_size": s["d"],
        "ffn_dim": s["ffn"],
        "num_hidden_layers": s["layers"],
        "num_attention_heads": s["heads"],
        "max_position_embeddings": s["max_pos"],
        "word_embed_proj_dim": s["d"],
        "do_layer_norm_before": True,
        "activation_function": "relu",
        "enable_bias": True,
        "layer_norm_elementwise_affine": True,
        "vocab_size": s["vocab"],
        "bos_token_id": 2,
        "eos_token_id": 2,
        "pad_token_id": 1,
        "torch_dtype": td,
    }


def make_checkpoint(directory, family, dtype="F32", seed=0, **shape):
    """Writes DIRECTORY/model.safetensors and DIRECTORY/config.json for a
    random model of FAMILY stored in DTYPE. Shape keys (see DEFAULT_SHAPES)
    override the defaults. Returns the config dict."""
    if dtype not in DTYPES:
        raise ValueError("unknown dtype " + dtype)
    s = _shape(family, shape)
    if family == "gpt2" and s["n_inner_null"]:
        s["ffn"] = 4 * s["d"]
    rng = np.random.default_rng(seed)
    params = _random_params(family, s, rng)
    cfg = _config(family, s, dtype)
    os.makedirs(directory, exist_ok=True)
    write_safetensors(os.path.join(directory, "model.safetensors"), params,
                      dtype)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    return cfg


def load_checkpoint(directory):
    with open(os.path.join(directory, "config.json")) as f:
        cfg = json.load(f)
    params = read_safetensors(os.path.join(directory, "model.safetensors"))
    return cfg, params


# ------------------------------------------------------------ the forward ---

def rms_norm(x, w, eps):
    # LlamaRMSNorm: x * rsqrt(mean(x^2) + eps) * w
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def layer_norm(x, w, b, eps):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)  # biased, as torch
    return (x - mu) / np.sqrt(var + eps) * w + b


def gelu_new(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi)
                                    * (x + 0.044715 * x ** 3)))


def silu(x):
    return x / (1.0 + np.exp(-x))


def softmax(s, axis=-1):
    s = s - s.max(axis=axis, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(s, axis=-1):
    s = s - s.max(axis=axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))


def rope(x, theta):
    """HF rotary embedding on x [T, H, D] at positions 0..T-1:
    x * cos + rotate_half(x) * sin, with inv_freq = theta^(-arange(0,D,2)/D),
    the angle table duplicated over both halves, and
    rotate_half(x) = cat(-x[..., D/2:], x[..., :D/2])."""
    T, _, D = x.shape
    inv_freq = theta ** (-np.arange(0, D, 2, dtype=np.float64) / D)
    ang = np.arange(T, dtype=np.float64)[:, None] * inv_freq[None, :]
    ang = np.concatenate([ang, ang], axis=-1)             # [T, D]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    half = D // 2
    rot = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rot * sin


def causal_mask(T, sliding_window=None):
    """visible[i, j]: may query i attend to key j. Causal: j <= i. With a
    sliding window W (Mistral), HF's masking_utils adds kv_idx > q_idx - W,
    i.e. key j is visible from query i iff i - W < j <= i (i - j < W): each
    query sees itself and the W - 1 keys before it."""
    i = np.arange(T)[:, None]
    j = np.arange(T)[None, :]
    vis = j <= i
    if sliding_window:
        vis &= (i - j) < sliding_window
    return vis


def attention(q, k, v, scale, visible):
    """q [T, H, D], k/v [T, KVH, D]. GQA as HF repeat_kv: query head h reads
    kv head h // (H / KVH). Returns [T, H * D]."""
    T, H, D = q.shape
    rep = H // k.shape[1]
    k = np.repeat(k, rep, axis=1)
    v = np.repeat(v, rep, axis=1)
    s = np.einsum("ihd,jhd->hij", q, k) * scale            # [H, T, T]
    s = np.where(visible[None], s, -np.inf)
    p = softmax(s, axis=-1)
    y = np.einsum("hij,jhd->ihd", p, v)
    return y.reshape(T, H * D)


def _llama_logits(cfg, p, ids, sliding_window):
    C = cfg["hidden_size"]
    H = cfg["num_attention_heads"]
    KVH = cfg.get("num_key_value_heads") or H
    D = C // H
    eps, theta = cfg["rms_norm_eps"], cfg.get("rope_theta", 10000.0)
    T = len(ids)
    vis = causal_mask(T, sliding_window)
    x = p["model.embed_tokens.weight"][ids]
    for l in range(cfg["num_hidden_layers"]):
        pre = "model.layers.%d." % l
        h = rms_norm(x, p[pre + "input_layernorm.weight"], eps)
        q = (h @ p[pre + "self_attn.q_proj.weight"].T).reshape(T, H, D)
        k = (h @ p[pre + "self_attn.k_proj.weight"].T).reshape(T, KVH, D)
        v = (h @ p[pre + "self_attn.v_proj.weight"].T).reshape(T, KVH, D)
        q, k = rope(q, theta), rope(k, theta)
        y = attention(q, k, v, 1.0 / np.sqrt(D), vis)
        x = x + y @ p[pre + "self_attn.o_proj.weight"].T
        h = rms_norm(x, p[pre + "post_attention_layernorm.weight"], eps)
        g = silu(h @ p[pre + "mlp.gate_proj.weight"].T)
        u = h @ p[pre + "mlp.up_proj.weight"].T
        x = x + (g * u) @ p[pre + "mlp.down_proj.weight"].T
    x = rms_norm(x, p["model.norm.weight"], eps)
    head = p.get("lm_head.weight")
    if head is None or cfg.get("tie_word_embeddings", False):
        head = p["model.embed_tokens.weight"]
    return x @ head.T


def _gpt2_logits(cfg, p, ids):
    C, H = cfg["n_embd"], cfg["n_head"]
    D = C // H
    eps = cfg.get("layer_norm_epsilon", 1e-5)
    T = len(ids)
    vis = causal_mask(T)
    x = p["transformer.wte.weight"][ids] + p["transformer.wpe.weight"][:T]
    for l in range(cfg["n_layer"]):
        pre = "transformer.h.%d." % l
        h = layer_norm(x, p[pre + "ln_1.weight"], p[pre + "ln_1.bias"], eps)
        qkv = h @ p[pre + "attn.c_attn.weight"] + p[pre + "attn.c_attn.bias"]
        q, k, v = (qkv[:, i * C:(i + 1) * C].reshape(T, H, D)
                   for i in range(3))
        y = attention(q, k, v, 1.0 / np.sqrt(D), vis)
        x = x + y @ p[pre + "attn.c_proj.weight"] + p[pre + "attn.c_proj.bias"]
        h = layer_norm(x, p[pre + "ln_2.weight"], p[pre + "ln_2.bias"], eps)
        a = gelu_new(h @ p[pre + "mlp.c_fc.weight"] + p[pre + "mlp.c_fc.bias"])
        x = x + a @ p[pre + "mlp.c_proj.weight"] + p[pre + "mlp.c_proj.bias"]
    x = layer_norm(x, p["transformer.ln_f.weight"],
                   p["transformer.ln_f.bias"], eps)
    return x @ p["transformer.wte.weight"].T


def _opt_logits(cfg, p, ids):
    C, H = cfg["hidden_size"], cfg["num_attention_heads"]
    D = C // H
    eps = _OPT_LN_EPS
    T = len(ids)
    vis = causal_mask(T)
    # positions = cumsum(mask) * mask - 1 + offset 2 = arange(T) + 2
    x = (p["model.decoder.embed_tokens.weight"][ids]
         + p["model.decoder.embed_positions.weight"][np.arange(T) + 2])
    lin = lambda h, name: h @ p[name + ".weight"].T + p[name + ".bias"]
    for l in range(cfg["num_hidden_layers"]):
        pre = "model.decoder.layers.%d." % l
        h = layer_norm(x, p[pre + "self_attn_layer_norm.weight"],
                       p[pre + "self_attn_layer_norm.bias"], eps)
        # OPTAttention scales q (after its bias) by head_dim^-0.5
        q = (lin(h, pre + "self_attn.q_proj") * D ** -0.5).reshape(T, H, D)
        k = lin(h, pre + "self_attn.k_proj").reshape(T, H, D)
        v = lin(h, pre + "self_attn.v_proj").reshape(T, H, D)
        y = attention(q, k, v, 1.0, vis)
        x = x + lin(y, pre + "self_attn.out_proj")
        h = layer_norm(x, p[pre + "final_layer_norm.weight"],
                       p[pre + "final_layer_norm.bias"], eps)
        x = x + lin(np.maximum(lin(h, pre + "fc1"), 0.0), pre + "fc2")
    x = layer_norm(x, p["model.decoder.final_layer_norm.weight"],
                   p["model.decoder.final_layer_norm.bias"], eps)
    return x @ p["model.decoder.embed_tokens.weight"].T


def forward_logits(cfg, params, ids, sliding_window="config"):
    """[T, V] float64 logits. sliding_window="config" takes Mistral's window
    from the config; None/0 turns it off (used to check it matters)."""
    ids = np.asarray(ids, dtype=np.int64)
    mt = cfg["model_type"]
    if mt in ("llama", "mistral"):
        if sliding_window == "config":
            sliding_window = cfg.get("sliding_window") if mt == "mistral" \
                else None
        return _llama_logits(cfg, params, ids, sliding_window)
    if mt == "gpt2":
        return _gpt2_logits(cfg, params, ids)
    if mt == "opt":
        return _opt_logits(cfg, params, ids)
    raise ValueError("unknown model_type " + str(mt))


def logprobs_from_logits(logits, ids):
    """logprobs[k] = log softmax(logits[k])[ids[k+1]], k < T-1."""
    ids = np.asarray(ids, dtype=np.int64)
    lp = log_softmax(logits[:-1], axis=-1)
    return lp[np.arange(len(ids) - 1), ids[1:]]


def forward_logprobs(directory, ids, **kw):
    cfg, params = load_checkpoint(directory)
    return logprobs_from_logits(forward_logits(cfg, params, ids, **kw), ids)


# ------------------------------------------------------------- self-check ---

def _torch_logits(cfg, p, ids):
    """A second, differently written float64 forward in torch, to catch
    mistakes in the numpy one: F.linear / F.layer_norm / F.gelu(tanh) /
    torch.softmax, masks from tril/triu, RoPE as a complex rotation of the
    (first half, second half) pairs, GQA by repeat_interleave."""
    import torch
    import torch.nn.functional as F
    t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in p.items()}
    ids_t = torch.tensor(np.asarray(ids), dtype=torch.long)
    T = len(ids)
    mt = cfg["model_type"]
    neg = torch.tensor(float("-inf"), dtype=torch.float64)

    def attend(q, k, v, scale, window=None):
        # q [H, T, D], k/v [KVH, T, D]
        rep = q.shape[0] // k.shape[0]
        k = k.repeat_interleave(rep, dim=0)
        v = v.repeat_interleave(rep, dim=0)
        keep = torch.ones(T, T, dtype=torch.bool).tril()
        if window:
            keep &= torch.ones(T, T, dtype=torch.bool).triu(-(window - 1))
        s = torch.matmul(q, k.transpose(1, 2)) * scale
        s = torch.where(keep, s, neg)
        y = torch.matmul(torch.softmax(s, dim=-1), v)      # [H, T, D]
        return y.transpose(0, 1).reshape(T, -1)

    if mt in ("llama", "mistral"):
        C, H = cfg["hidden_size"], cfg["num_attention_heads"]
        KVH, D = cfg["num_key_value_heads"], C // H
        eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"]
        window = cfg.get("sliding_window") if mt == "mistral" else None
        freqs = 1.0 / theta ** (torch.arange(0, D, 2, dtype=torch.float64)
                                / D)
        ang = torch.outer(torch.arange(T, dtype=torch.float64), freqs)
        rot = torch.polar(torch.ones_like(ang), ang)       # [T, D/2]

        def rope_t(x):                                     # [n, T, D]
            z = torch.complex(x[..., :D // 2], x[..., D // 2:]) * rot
            return torch.cat([z.real, z.imag], dim=-1)

        def rms(x, w):
            return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True)
                                        + eps))

        x = F.embedding(ids_t, t["model.embed_tokens.weight"])
        for l in range(cfg["num_hidden_layers"]):
            pre = "model.layers.%d." % l
            h = rms(x, t[pre + "input_layernorm.weight"])
            q = F.linear(h, t[pre + "self_attn.q_proj.weight"])
            k = F.linear(h, t[pre + "self_attn.k_proj.weight"])
            v = F.linear(h, t[pre + "self_attn.v_proj.weight"])
            q = rope_t(q.view(T, H, D).transpose(0, 1))
            k = rope_t(k.view(T, KVH, D).transpose(0, 1))
            v = v.view(T, KVH, D).transpose(0, 1)
            y = attend(q, k, v, D ** -0.5, window)
            x = x + F.linear(y, t[pre + "self_attn.o_proj.weight"])
            h = rms(x, t[pre + "post_attention_layernorm.weight"])
            x = x + F.linear(F.silu(F.linear(h, t[pre + "mlp.gate_proj.weight"]))
                             * F.linear(h, t[pre + "mlp.up_proj.weight"]),
                             t[pre + "mlp.down_proj.weight"])
        x = rms(x, t["model.norm.weight"])
        head = t.get("lm_head.weight", t["model.embed_tokens.weight"])
        if cfg.get("tie_word_embeddings"):
            head = t["model.embed_tokens.weight"]
        return F.linear(x, head).numpy()

    if mt == "gpt2":
        C, H = cfg["n_embd"], cfg["n_head"]
        D, eps = C // H, cfg["layer_norm_epsilon"]
        ln = lambda x, n: F.layer_norm(x, (C,), t[n + ".weight"],
                                       t[n + ".bias"], eps)
        conv = lambda x, n: torch.addmm(t[n + ".bias"], x, t[n + ".weight"])
        x = t["transformer.wte.weight"][ids_t] + t["transformer.wpe.weight"][:T]
        for l in range(cfg["n_layer"]):
            pre = "transformer.h.%d." % l
            qkv = conv(ln(x, pre + "ln_1"), pre + "attn.c_attn")
            q, k, v = (z.view(T, H, D).transpose(0, 1)
                       for z in qkv.split(C, dim=1))
            x = x + conv(attend(q, k, v, 1.0 / math_sqrt(D)),
                         pre + "attn.c_proj")
            a = F.gelu(conv(ln(x, pre + "ln_2"), pre + "mlp.c_fc"),
                       approximate="tanh")
            x = x + conv(a, pre + "mlp.c_proj")
        x = ln(x, "transformer.ln_f")
        return F.linear(x, t["transformer.wte.weight"]).numpy()

    if mt == "opt":
        C, H = cfg["hidden_size"], cfg["num_attention_heads"]
        D = C // H
        ln = lambda x, n: F.layer_norm(x, (C,), t[n + ".weight"],
                                       t[n + ".bias"], _OPT_LN_EPS)
        lin = lambda x, n: F.linear(x, t[n + ".weight"], t[n + ".bias"])
        mask = torch.ones(1, T, dtype=torch.long)
        pos = (torch.cumsum(mask, dim=1) * mask - 1 + 2)[0]
        x = (F.embedding(ids_t, t["model.decoder.embed_tokens.weight"])
             + F.embedding(pos, t["model.decoder.embed_positions.weight"]))
        for l in range(cfg["num_hidden_layers"]):
            pre = "model.decoder.layers.%d." % l
            h = ln(x, pre + "self_attn_layer_norm")
            q, k, v = (lin(h, pre + "self_attn." + n).view(T, H, D)
                       .transpose(0, 1) for n in ("q_proj", "k_proj", "v_proj"))
            x = x + lin(attend(q * D ** -0.5, k, v, 1.0),
                        pre + "self_attn.out_proj")
            h = ln(x, pre + "final_layer_norm")
            x = x + lin(F.relu(lin(h, pre + "fc1")), pre + "fc2")
        x = ln(x, "model.decoder.final_layer_norm")
        return F.linear(x, t["model.decoder.embed_tokens.weight"]).numpy()
    raise ValueError(mt)


def math_sqrt(x):
    return float(np.sqrt(x))


def self_check(tmpdir, log=print):
    """Cross-checks this reference; returns a list of failure messages.
    Cheap: a handful of tiny forwards. Skips the torch parts without torch."""
    fails = []

    def expect(ok, msg):
        if not ok:
            fails.append(msg)
        log(("ok   " if ok else "FAIL ") + msg)

    # storage: BF16 rounding and F16 rounding against torch, exact readback
    rng = np.random.default_rng(7)
    x32 = np.concatenate([rng.normal(0, 1, 4000), rng.normal(0, 1e-3, 1000),
                          [0.0, -0.0, 1.0, 1.00390625, 1.01171875,
                           65504.0, 3.0e38, -3.0e38]]).astype(np.float32)
    # Exact ties: bit patterns ending in 0x8000 must round to even.
    ties = (np.arange(200, dtype=np.uint32) << 16 | 0x8000) + 0x3F000000
    x32 = np.concatenate([x32, ties.view(np.float32)])
    bits = f32_to_bf16_bits(x32)
    try:
        import torch
    except ImportError:
        torch = None
        log("skip torch cross-checks: torch is not importable")
    if torch is not None:
        tb = torch.from_numpy(x32.copy()).to(torch.bfloat16)
        tbits = tb.view(torch.int16).numpy().view(np.uint16)
        expect(np.array_equal(bits, tbits),
               "BF16 round-to-nearest-even matches torch (%d values)"
               % len(x32))
        back = torch.frombuffer(bytearray(bits.astype("<u2").tobytes()),
                                dtype=torch.bfloat16).double().numpy()
        expect(np.array_equal(bf16_bits_to_f64(bits), back),
               "BF16 upcast matches torch")
        h = x32[np.abs(x32) < 60000]
        th = torch.from_numpy(h.copy()).half().double().numpy()
        expect(np.array_equal(h.astype(np.float16).astype(np.float64), th),
               "F16 rounding and upcast match torch")

    # safetensors round trip, all dtypes, and header layout
    for dtype in DTYPES:
        d = os.path.join(tmpdir, "st_" + dtype)
        make_checkpoint(d, "llama", dtype, seed=3)
        path = os.path.join(d, "model.safetensors")
        with open(path, "rb") as f:
            raw = f.read()
        (n,) = struct.unpack("<Q", raw[:8])
        hdr = json.loads(raw[8:8 + n])
        ends = sorted(v["data_offsets"] for k, v in hdr.items()
                      if k != "__metadata__")
        contiguous = all(a[1] == b[0] for a, b in zip(ends, ends[1:]))
        expect(n % 8 == 0 and hdr["__metadata__"] == {"format": "pt"}
               and ends[0][0] == 0 and contiguous
               and 8 + n + ends[-1][1] == len(raw),
               "%s safetensors header: padded, metadata, offsets tile the "
               "data" % dtype)
        s = _shape("llama", {})
        ref = _random_params("llama", s, np.random.default_rng(3))
        got = read_safetensors(path)
        if dtype == "F32":
            want = {k: v.astype(np.float32).astype(np.float64)
                    for k, v in ref.items()}
        elif dtype == "F16":
            want = {k: v.astype(np.float16).astype(np.float64)
                    for k, v in ref.items()}
        else:
            want = {k: bf16_bits_to_f64(f32_to_bf16_bits(v.astype(np.float32)))
                    for k, v in ref.items()}
        same = set(got) == set(want) and all(
            np.array_equal(got[k], want[k]) for k in want)
        expect(same, "%s tensors read back exactly" % dtype)

    # building blocks against torch.nn.functional
    if torch is not None:
        import torch.nn.functional as F
        a = rng.normal(0, 1.5, (7, 3, 16))
        ta = torch.from_numpy(a)
        w, b = rng.normal(1, 0.1, 16), rng.normal(0, 0.1, 16)
        tw, tb_ = torch.from_numpy(w), torch.from_numpy(b)
        err = lambda u, v: float(np.max(np.abs(u - v)))
        e = err(layer_norm(a, w, b, 1e-3),
                F.layer_norm(ta, (16,), tw, tb_, 1e-3).numpy())
        expect(e < 1e-12, "layer_norm vs F.layer_norm: %.2e" % e)
        e = err(rms_norm(a, w, 1e-5),
                (ta * torch.rsqrt(ta.pow(2).mean(-1, keepdim=True) + 1e-5)
                 * tw).numpy())
        expect(e < 1e-12, "rms_norm vs torch: %.2e" % e)
        e = err(gelu_new(a), F.gelu(ta, approximate="tanh").numpy())
        expect(e < 1e-12, "gelu_new vs F.gelu(tanh): %.2e" % e)
        e = err(silu(a), F.silu(ta).numpy())
        expect(e < 1e-12, "silu vs F.silu: %.2e" % e)
        e = err(softmax(a), torch.softmax(ta, -1).numpy())
        expect(e < 1e-12, "softmax vs torch.softmax: %.2e" % e)
        e = err(log_softmax(a), F.log_softmax(ta, -1).numpy())
        expect(e < 1e-12, "log_softmax vs F.log_softmax: %.2e" % e)
        # RoPE: rotate_half form against explicit 2x2 rotations of pairs
        # (i, i + D/2) by angle pos * theta^(-2i/D).
        D = 16
        r = rope(a, 10000.0)
        want = np.empty_like(a)
        for pos in range(a.shape[0]):
            for i in range(D // 2):
                t_ = pos * 10000.0 ** (-2.0 * i / D)
                c, s_ = np.cos(t_), np.sin(t_)
                x1, x2 = a[pos, :, i], a[pos, :, i + D // 2]
                want[pos, :, i] = x1 * c - x2 * s_
                want[pos, :, i + D // 2] = x2 * c + x1 * s_
        e = err(r, want)
        expect(e < 1e-12, "rope vs pairwise rotation: %.2e" % e)
        # attention with GQA and a sliding window against a loop
        T, H, KVH, Dh, Wn = 9, 4, 2, 8, 3
        q = rng.normal(0, 1, (T, H, Dh))
        k = rng.normal(0, 1, (T, KVH, Dh))
        v = rng.normal(0, 1, (T, KVH, Dh))
        y = attention(q, k, v, Dh ** -0.5, causal_mask(T, Wn))
        want = np.zeros((T, H * Dh))
        for i in range(T):
            for hh in range(H):
                kv = hh // (H // KVH)
                js = [j for j in range(T) if j <= i and i - j < Wn]
                sc = torch.tensor([q[i, hh] @ k[j, kv] / np.sqrt(Dh)
                                   for j in js], dtype=torch.float64)
                pr = torch.softmax(sc, 0).numpy()
                want[i, hh * Dh:(hh + 1) * Dh] = sum(
                    pr[n] * v[j, kv] for n, j in enumerate(js))
        e = err(y, want)
        expect(e < 1e-12, "GQA sliding-window attention vs loop: %.2e" % e)

    # whole models: numpy reference against the torch formulation, and the
    # features under test must change the output
    ids = np.random.default_rng(11).integers(0, 96, 24)
    cases = [("llama", {}), ("llama", {"tie": True}), ("mistral", {}),
             ("gpt2", {}), ("gpt2", {"n_inner_null": True}), ("opt", {})]
    for fam, kw in cases:
        d = os.path.join(tmpdir, "sc_%s_%d" % (fam, len(kw)))
        make_checkpoint(d, fam, "BF16", seed=5, **kw)
        cfg, params = load_checkpoint(d)
        logits = forward_logits(cfg, params, ids)
        lp = logprobs_from_logits(logits, ids)
        spread = float(np.std(logits))
        expect(np.all(np.isfinite(lp)) and spread > 0.3,
               "%s%s: finite, logits std %.2f (not flat)" % (fam, kw, spread))
        if torch is not None:
            e = float(np.max(np.abs(logits - _torch_logits(cfg, params, ids))))
            expect(e < 1e-10, "%s%s: numpy vs torch float64 forward %.2e"
                   % (fam, kw, e))
        if fam == "mistral":
            off = logprobs_from_logits(
                forward_logits(cfg, params, ids, sliding_window=None), ids)
            e = float(np.max(np.abs(off - lp)))
            expect(e > 1e-2, "mistral: window %d changes logprobs by %.2e"
                   % (cfg["sliding_window"], e))

    # A loader that ignores one of these config values (and uses the usual
    # default instead) must fail the 1e-4 golden test, so each must move the
    # logprobs by well over 1e-4 with the test's shapes.
    for fam, kw, key, usual in [
            ("llama", {}, "rms_norm_eps", 1e-6),
            ("llama", {"tie": True, "eps": 1e-6, "theta": 5e5},
             "rope_theta", 1e4),
            ("mistral", {}, "rms_norm_eps", 1e-5),
            ("mistral", {}, "rope_theta", 1e4),
            ("gpt2", {}, "layer_norm_epsilon", 1e-5)]:
        d = os.path.join(tmpdir, "sens_%s_%s" % (fam, key))
        make_checkpoint(d, fam, "F32", seed=3, **kw)
        cfg, params = load_checkpoint(d)
        a = logprobs_from_logits(forward_logits(cfg, params, ids), ids)
        cfg[key] = usual
        b = logprobs_from_logits(forward_logits(cfg, params, ids), ids)
        e = float(np.max(np.abs(a - b)))
        expect(e > 3e-4, "%s%s: %s vs %g moves logprobs by %.2e"
               % (fam, kw, key, usual, e))
    return fails
