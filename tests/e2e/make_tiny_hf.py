#!/usr/bin/env python3
"""Write a tiny random Qwen3-shaped Hugging Face model directory for end-to-end tests of real-model
configs: config.json, model.safetensors (f32, written by hand: no safetensors package here) and a
tokenizer.json (the tiny byte-level BPE of tests/data/tokenizer plus ChatML and tool-call tokens).

usage: make_tiny_hf.py SOURCE_DIR OUT_DIR
"""
import json
import os
import struct
import sys

import numpy as np

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
tok = json.load(open(os.path.join(src, "tests/data/tokenizer/tiny.tokenizer.json")))
extra = [("<|im_start|>", True), ("<|im_end|>", True), ("<tool_call>", False), ("</tool_call>", False),
         ("<tool_response>", False), ("</tool_response>", False)]
next_id = 1 + max(list(tok["model"]["vocab"].values()) + [a["id"] for a in tok["added_tokens"]])
for text, special in extra:
    tok["added_tokens"].append({"id": next_id, "content": text, "single_word": False, "lstrip": False,
                                "rstrip": False, "normalized": False, "special": special})
    next_id += 1
json.dump(tok, open(os.path.join(out, "tokenizer.json"), "w"))

V, D, L, H, KV, hd, F = next_id, 64, 2, 4, 2, 16, 128
cfg = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": V, "hidden_size": D,
       "intermediate_size": F, "num_hidden_layers": L, "num_attention_heads": H, "num_key_value_heads": KV,
       "head_dim": hd, "max_position_embeddings": 1024, "rope_theta": 10000.0, "rms_norm_eps": 1e-6,
       "tie_word_embeddings": True, "hidden_act": "silu", "attention_bias": False, "torch_dtype": "float32"}
json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=2)

rng = np.random.default_rng(0)
tensors = {"model.embed_tokens.weight": (V, D), "model.norm.weight": (D,)}
for l in range(L):
    p = f"model.layers.{l}."
    tensors.update({p + "input_layernorm.weight": (D,), p + "post_attention_layernorm.weight": (D,),
                    p + "self_attn.q_proj.weight": (H * hd, D), p + "self_attn.k_proj.weight": (KV * hd, D),
                    p + "self_attn.v_proj.weight": (KV * hd, D), p + "self_attn.o_proj.weight": (D, H * hd),
                    p + "self_attn.q_norm.weight": (hd,), p + "self_attn.k_norm.weight": (hd,),
                    p + "mlp.gate_proj.weight": (F, D), p + "mlp.up_proj.weight": (F, D),
                    p + "mlp.down_proj.weight": (D, F)})
header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
for name in sorted(tensors):
    shape = tensors[name]
    a = np.ones(shape, np.float32) if len(shape) == 1 else rng.normal(0, 0.02, shape).astype(np.float32)
    b = a.tobytes()
    header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + len(b)]}
    blobs.append(b)
    offset += len(b)
h = json.dumps(header, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
with open(os.path.join(out, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
