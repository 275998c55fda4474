#!/usr/bin/env python3
"""Writes the Hugging Face format fixtures of tests/data/hf/ with plain Python + numpy, as an
implementation independent of model/safetensors.c and model/hf.c (no safetensors/transformers
packages here: the format is written by hand, laid out exactly as HF's serializer lays it out).

Regenerate (deterministic, same bytes every run):
    /usr/bin/python3 tools/hf_reference.py tests/data/hf

Writes:
  llama_f32/          LlamaForCausalLM, untied, GQA, llama3 rope scaling; one F32 model.safetensors
                      (plus a harmless rotary inv_freq buffer)
  qwen3_bf16/         Qwen3ForCausalLM, tied, QK-norm, head_dim*heads != hidden; BF16 in two shards
                      with model.safetensors.index.json
  qwen2_f16/          Qwen2ForCausalLM, tied, QKV bias; F16, with an lm_head.weight HF would ignore
  expected.json       per model and tensor: shape, float64 sum and sum of squares of the f32 values,
                      and the values at the first, middle and last element
  dtypes.safetensors  every 16th F16 and BF16 bit pattern plus special values, each next to its f32
                      conversion by numpy ("<name>_f32")
  writer_f32.safetensors, writer_bf16.safetensors
                      the same tensors (ties, overflow, NaN, subnormals, zero-size, scalar) as HF's
                      serializer writes them in F32 and BF16 (round to nearest even): st_write must
                      produce these bytes
  bad/int8.safetensors   I8 and F64 tensors (valid file, dtypes ingrain cannot load)
  bad/missing_shard/     an index naming a shard that is not there
"""
import json
import os
import shutil
import struct
import sys

import numpy as np

# HF's Dtype enum order; the serializer sorts tensors by dtype (descending), then name
DTYPE_ORDER = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64",
               "I64", "U64"]


def serialize(tensors, metadata=None):
    """tensors: {name: (dtype, shape, raw little-endian bytes)} -> bytes of a .safetensors file"""
    items = sorted(tensors.items(), key=lambda kv: (-DTYPE_ORDER.index(kv[1][0]), kv[0]))
    header = {"__metadata__": metadata if metadata is not None else {"format": "pt"}}
    offset = 0
    for name, (dtype, shape, raw) in items:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(raw for _, (_, _, raw) in items)


def bf16_bits(x):
    """float32 array -> uint16 bf16 bit patterns, round to nearest even; NaN -> quiet NaN, sign kept"""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    return np.where(nan, ((u >> 16) | 0x40) & 0xFFFF, rounded).astype(np.uint16)


def bf16_to_f32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def check_bf16_against_torch(x):
    """numpy's rounding must agree with PyTorch's where PyTorch is installed (NaNs aside)"""
    try:
        import torch
    except ImportError:
        return
    ours = bf16_bits(x)
    theirs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(torch.bfloat16).view(torch.int16)
    theirs = theirs.numpy().view(np.uint16)
    ok = np.isnan(x) | (ours == theirs)
    assert ok.all(), "bf16 rounding disagrees with torch at %s" % np.nonzero(~ok)[0][:5]


def store(arr, dtype):
    """f32 array -> (dtype, shape, raw bytes), and the f32 values a reader must get back"""
    arr = np.asarray(arr, dtype=np.float32)
    if dtype == "F32":
        return (dtype, arr.shape, arr.astype("<f4").tobytes()), arr
    if dtype == "F16":
        h = arr.astype(np.float16)
        return (dtype, arr.shape, h.astype("<f2").tobytes()), h.astype(np.float32)
    bits = bf16_bits(arr)
    return (dtype, arr.shape, bits.astype("<u2").tobytes()), bf16_to_f32(bits).reshape(arr.shape)


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


# ----------------------------------------------------------------------------
# tiny models


def model_tensors(cfg, rng, qkv_bias, qk_norm, tied):
    """HF name -> f32 array for a Llama-family decoder"""
    D, F, V, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or D // H

    def mat(r, c):
        return (rng.standard_normal((r, c)) * 0.05).astype(np.float32)

    def norm(n):
        return (1.0 + rng.standard_normal(n) * 0.1).astype(np.float32)

    t = {"model.embed_tokens.weight": mat(V, D)}
    for l in range(L):
        p = "model.layers.%d." % l
        t[p + "input_layernorm.weight"] = norm(D)
        t[p + "self_attn.q_proj.weight"] = mat(H * hd, D)
        t[p + "self_attn.k_proj.weight"] = mat(KV * hd, D)
        t[p + "self_attn.v_proj.weight"] = mat(KV * hd, D)
        if qkv_bias:
            for n, rows in (("q", H * hd), ("k", KV * hd), ("v", KV * hd)):
                t[p + "self_attn.%s_proj.bias" % n] = (rng.standard_normal(rows) * 0.1).astype(np.float32)
        if qk_norm:
            t[p + "self_attn.q_norm.weight"] = norm(hd)
            t[p + "self_attn.k_norm.weight"] = norm(hd)
        t[p + "self_attn.o_proj.weight"] = mat(D, H * hd)
        t[p + "post_attention_layernorm.weight"] = norm(D)
        t[p + "mlp.gate_proj.weight"] = mat(F, D)
        t[p + "mlp.up_proj.weight"] = mat(F, D)
        t[p + "mlp.down_proj.weight"] = mat(D, F)
    t["model.norm.weight"] = norm(D)
    if not tied:
        t["lm_head.weight"] = mat(V, D)
    return t


def summary(arr):
    flat = np.asarray(arr, dtype=np.float64).reshape(-1)
    return {"shape": list(arr.shape), "sum": float(flat.sum()), "sumsq": float((flat * flat).sum()),
            "first": float(flat[0]), "mid": float(flat[len(flat) // 2]), "last": float(flat[-1])}


def write_models(out):
    rng = np.random.default_rng(20240611)
    expected = {}

    # Llama: untied, GQA (4 heads, 2 KV heads), llama3 rope scaling, F32, one file
    llama = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32,
             "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
             "vocab_size": 64, "max_position_embeddings": 256, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
             "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                              "high_freq_factor": 4.0, "original_max_position_embeddings": 128},
             "tie_word_embeddings": False, "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
             "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32", "transformers_version": "4.46.0"}
    t = model_tensors(llama, rng, qkv_bias=False, qk_norm=False, tied=False)
    stored, exp = {}, {}
    for name, arr in t.items():
        stored[name], exp[name] = store(arr, "F32")
    inv_freq = (1.0 / 500000.0 ** (np.arange(0, 8, 2) / 8)).astype(np.float32)
    stored["model.layers.0.self_attn.rotary_emb.inv_freq"] = store(inv_freq, "F32")[0]
    write_json(os.path.join(out, "llama_f32", "config.json"), llama)
    write(os.path.join(out, "llama_f32", "model.safetensors"), serialize(stored))
    expected["llama_f32"] = {n: summary(a) for n, a in exp.items()}

    # Qwen3: tied, QK-norm, head_dim 16 (4 heads * 16 = 64 != hidden 32), BF16, two shards
    qwen3 = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 32,
             "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
             "head_dim": 16, "vocab_size": 64, "max_position_embeddings": 512, "rms_norm_eps": 1e-06,
             "rope_theta": 1000000.0, "rope_scaling": None, "tie_word_embeddings": True, "hidden_act": "silu",
             "attention_bias": False, "use_sliding_window": False, "sliding_window": None,
             "max_window_layers": 28, "bos_token_id": 60, "eos_token_id": 61, "torch_dtype": "bfloat16",
             "transformers_version": "4.51.0"}
    t = model_tensors(qwen3, rng, qkv_bias=False, qk_norm=True, tied=True)
    check_bf16_against_torch(np.concatenate([a.reshape(-1) for a in t.values()]))
    shards = [{}, {}]
    exp, weight_map = {}, {}
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    for name, arr in t.items():
        k = 1 if name.startswith("model.layers.1.") or name == "model.norm.weight" else 0
        shards[k][name], exp[name] = store(arr, "BF16")
        weight_map[name] = names[k]
    total = 0
    for k in range(2):
        data = serialize(shards[k])
        total += sum(len(raw) for _, _, raw in shards[k].values())
        write(os.path.join(out, "qwen3_bf16", names[k]), data)
    write_json(os.path.join(out, "qwen3_bf16", "config.json"), qwen3)
    write_json(os.path.join(out, "qwen3_bf16", "model.safetensors.index.json"),
               {"metadata": {"total_size": total}, "weight_map": weight_map})
    expected["qwen3_bf16"] = {n: summary(a) for n, a in exp.items()}

    # Qwen2: tied, QKV bias, F16, with an lm_head.weight that HF ignores for tied models
    qwen2 = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 32,
             "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
             "vocab_size": 64, "max_position_embeddings": 1024, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
             "rope_scaling": None, "tie_word_embeddings": True, "hidden_act": "silu", "use_sliding_window": False,
             "sliding_window": 1024, "max_window_layers": 21, "torch_dtype": "float16"}
    t = model_tensors(qwen2, rng, qkv_bias=True, qk_norm=False, tied=True)
    stored, exp = {}, {}
    for name, arr in t.items():
        stored[name], exp[name] = store(arr, "F16")
    stored["lm_head.weight"] = store(rng.standard_normal((64, 32)), "F16")[0]
    write_json(os.path.join(out, "qwen2_f16", "config.json"), qwen2)
    write(os.path.join(out, "qwen2_f16", "model.safetensors"), serialize(stored))
    expected["qwen2_f16"] = {n: summary(a) for n, a in exp.items()}

    write_json(os.path.join(out, "expected.json"), expected)


# ----------------------------------------------------------------------------
# dtype conversions and the writer's bytes


def special_f32_bits():
    """f32 bit patterns that exercise rounding to bf16: ties, near-overflow, NaN, subnormals"""
    return np.array([
        0x00000000, 0x80000000, 0x3F800000, 0xBF800000,  # +-0, +-1
        0x3F808000, 0x3F818000, 0x3F80C000, 0x3F807FFF,  # tie to even (down), tie (up), above, below half
        0xBF808000, 0xBF818000,  # negative ties
        0x7F7FFFFF, 0x7F7F7FFF, 0x7F7F8000, 0xFF7FFFFF,  # max finite -> inf, stays, tie to even -> inf, -max
        0x7F800000, 0xFF800000,  # +-inf
        0x7FC00000, 0xFFC00001, 0x7F800001, 0x7FBFFFFF,  # NaNs: quiet, negative, signalling
        0x00000001, 0x00008000, 0x00018000, 0x007FFFFF, 0x80008001,  # subnormals and their ties
        0x00800000, 0x33800000, 0x477FE000,  # min normal, 2^-24, 65504
    ], dtype=np.uint32)


def write_dtypes(out):
    # every 16th f16/bf16 pattern (all exponents, both signs, subnormals, inf, NaN) plus specials
    specials = np.array([0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x83FF, 0x0400, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00,
                         0x7C01, 0x7E00, 0xFE00, 0x7FFF, 0x3C00, 0x3555], dtype=np.uint16)
    h_bits = np.concatenate([np.arange(0, 65536, 16, dtype=np.uint32).astype(np.uint16), specials])
    b_specials = np.array([0x0000, 0x8000, 0x0001, 0x8001, 0x007F, 0x0080, 0x7F7F, 0xFF7F, 0x7F80, 0xFF80, 0x7F81,
                           0x7FC0, 0xFFC0, 0x3F80, 0x4049], dtype=np.uint16)
    b_bits = np.concatenate([np.arange(3, 65536, 16, dtype=np.uint32).astype(np.uint16), b_specials])
    t = {
        "f16": ("F16", h_bits.shape, h_bits.astype("<u2").tobytes()),
        "f16_f32": ("F32", h_bits.shape, h_bits.view(np.float16).astype(np.float32).astype("<f4").tobytes()),
        "bf16": ("BF16", b_bits.shape, b_bits.astype("<u2").tobytes()),
        "bf16_f32": ("F32", b_bits.shape, bf16_to_f32(b_bits).astype("<f4").tobytes()),
    }
    write(os.path.join(out, "dtypes.safetensors"), serialize(t))


def writer_inputs():
    rng = np.random.default_rng(7)
    return {
        "b.weight": rng.standard_normal((3, 5)).astype(np.float32),
        "a": special_f32_bits().view(np.float32),
        "c.0.x": (rng.standard_normal((2, 2, 2)) * 1e-3).astype(np.float32),
        "z.empty": np.zeros((0, 4), dtype=np.float32),
        "scalar": np.array(3.5, dtype=np.float32),
        "A.upper": (rng.standard_normal(9) * 1e30).astype(np.float32),
    }


def write_writer_refs(out):
    inputs = writer_inputs()
    check_bf16_against_torch(np.concatenate([a.reshape(-1) for a in inputs.values()]))
    write(os.path.join(out, "writer_f32.safetensors"), serialize({n: store(a, "F32")[0] for n, a in inputs.items()}))
    write(os.path.join(out, "writer_bf16.safetensors"), serialize({n: store(a, "BF16")[0] for n, a in inputs.items()}))


def write_bad(out):
    i8 = np.arange(-8, 8, dtype=np.int8).reshape(4, 4)
    f64 = np.linspace(0, 1, 6).reshape(2, 3)
    t = {"model.embed_tokens.weight": ("I8", i8.shape, i8.tobytes()),
         "model.norm.weight": ("F64", f64.shape, f64.astype("<f8").tobytes()),
         "ok": ("F32", (2,), np.array([1, 2], dtype="<f4").tobytes())}
    write(os.path.join(out, "bad", "int8.safetensors"), serialize(t))

    d = os.path.join(out, "bad", "missing_shard")
    one = {"model.embed_tokens.weight": store(np.zeros((4, 4)), "F32")[0]}
    write(os.path.join(d, "model-00001-of-00002.safetensors"), serialize(one))
    write_json(os.path.join(d, "model.safetensors.index.json"),
               {"metadata": {"total_size": 64},
                "weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors",
                               "model.norm.weight": "model-00002-of-00002.safetensors"}})


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: /usr/bin/python3 tools/hf_reference.py tests/data/hf")
    out = sys.argv[1]
    for sub in ("llama_f32", "qwen3_bf16", "qwen2_f16", "bad"):
        shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
    write_models(out)
    write_dtypes(out)
    write_writer_refs(out)
    write_bad(out)
    size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(out) for f in fs)
    print("wrote %s (%d bytes)" % (out, size))


if __name__ == "__main__":
    main()
