// Hugging Face model directories (see hf.h): config.json parsing with per-architecture defaults as
// in transformers' config classes, weight loading from one or several safetensors files with
// shape and completeness checks, and the writer of config.json + model.safetensors.
#include "model/hf.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/check.h"
#include "io/json_util.h"

#define HF_PATH_MAX 4096

__attribute__((format(printf, 3, 4))) static int fail(char* err, size_t errlen, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int join(char* out, const char* dir, const char* name, char* err, size_t errlen) {
    int k = snprintf(out, HF_PATH_MAX, "%s/%s", dir, name);
    if (k < 0 || k >= HF_PATH_MAX) return fail(err, errlen, "%s/%s: path too long", dir, name);
    return 0;
}

static int exists(const char* path) {
    struct stat st;
    return stat(path, &st) == 0;
}

// ----------------------------------------------------------------------------
// architectures and their defaults (transformers' LlamaConfig, Qwen2Config, Qwen3Config)

typedef struct {
    const char* arch;
    const char* model_type;
    int head_dim;      // default head_dim; 0: hidden_size / num_attention_heads
    int max_pos;       // default max_position_embeddings
    int qkv_bias;      // by architecture
    int qk_norm;       // by architecture
    int has_attn_bias; // reads attention_bias (q, k, v and o biases; only false is supported)
} ArchInfo;

static const ArchInfo archs[] = {
    {"LlamaForCausalLM", "llama", 0, 2048, 0, 0, 1},
    {"Qwen2ForCausalLM", "qwen2", 0, 32768, 1, 0, 0},
    {"Qwen3ForCausalLM", "qwen3", 128, 32768, 0, 1, 1},
};
#define N_ARCHS ((int)(sizeof(archs) / sizeof(archs[0])))

static const ArchInfo* arch_find(const char* arch, const char* model_type) {
    for (int i = 0; i < N_ARCHS; i++) {
        if ((arch && strcmp(arch, archs[i].arch) == 0) || (model_type && strcmp(model_type, archs[i].model_type) == 0)) {
            return &archs[i];
        }
    }
    return NULL;
}

// ----------------------------------------------------------------------------
// config.json: typed getters whose messages name the file and the key

typedef struct {
    const char* path;
    char* err;
    size_t errlen;
} Cfg;

__attribute__((format(printf, 2, 3))) static int cfg_fail(Cfg* c, const char* fmt, ...) {
    int k = snprintf(c->err, c->errlen, "%s: ", c->path);
    if (k < 0 || (size_t)k >= c->errlen) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err + k, c->errlen - (size_t)k, fmt, ap);
    va_end(ap);
    return -1;
}

// the value of obj[key], NULL when absent or null; required keys report their absence
static json_t* cfg_get(Cfg* c, json_t* obj, const char* prefix, const char* key, int required, int* rc) {
    json_t* v = json_object_get(obj, key);
    if (v && json_is_null(v)) v = NULL;
    if (!v && required) *rc = cfg_fail(c, "missing required key '%s%s'", prefix, key);
    return v;
}

static int cfg_int(Cfg* c, json_t* obj, const char* prefix, const char* key, int required, int def, int* out) {
    int rc = 0;
    json_t* v = cfg_get(c, obj, prefix, key, required, &rc);
    if (rc) return rc;
    if (!v) {
        *out = def;
        return 0;
    }
    if (!json_is_integer(v)) return cfg_fail(c, "key '%s%s' must be an integer, got %s", prefix, key, json_kind(v));
    json_int_t x = json_integer_value(v);
    if (x < 1 || x > INT_MAX) {
        return cfg_fail(c, "key '%s%s' must be a positive integer (at most %d), got %lld", prefix, key, INT_MAX,
                        (long long)x);
    }
    *out = (int)x;
    return 0;
}

static int cfg_num(Cfg* c, json_t* obj, const char* prefix, const char* key, int required, double def, float* out) {
    int rc = 0;
    json_t* v = cfg_get(c, obj, prefix, key, required, &rc);
    if (rc) return rc;
    if (!v) {
        *out = (float)def;
        return 0;
    }
    if (!json_is_number(v)) return cfg_fail(c, "key '%s%s' must be a number, got %s", prefix, key, json_kind(v));
    double x = json_number_value(v);
    if (!(x > 0) || x > 3.0e38) return cfg_fail(c, "key '%s%s' must be a positive number, got %g", prefix, key, x);
    *out = (float)x;
    return 0;
}

static int cfg_bool(Cfg* c, json_t* obj, const char* key, int def, int* out) {
    int rc = 0;
    json_t* v = cfg_get(c, obj, "", key, 0, &rc);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!json_is_boolean(v)) return cfg_fail(c, "key '%s' must be true or false, got %s", key, json_kind(v));
    *out = json_is_true(v);
    return 0;
}

static int cfg_str(Cfg* c, json_t* obj, const char* prefix, const char* key, int required, const char** out) {
    int rc = 0;
    json_t* v = cfg_get(c, obj, prefix, key, required, &rc);
    *out = NULL;
    if (rc || !v) return rc;
    if (!json_is_string(v)) return cfg_fail(c, "key '%s%s' must be a string, got %s", prefix, key, json_kind(v));
    *out = json_string_value(v);
    return 0;
}

// rope scaling from a legacy rope_scaling object or a transformers-v5 rope_parameters object
static int cfg_rope_scaling(Cfg* c, json_t* rs, const char* prefix, ModelConfig* m) {
    m->rope_scaling = ROPE_SCALING_NONE;
    if (!rs) return 0;
    if (!json_is_object(rs)) return cfg_fail(c, "key '%.*s' must be an object or null, got %s",
                                             (int)strlen(prefix) - 1, prefix, json_kind(rs));
    const char *type = NULL, *legacy = NULL;
    if (cfg_str(c, rs, prefix, "rope_type", 0, &type) || cfg_str(c, rs, prefix, "type", 0, &legacy)) return -1;
    if (!type) type = legacy;
    if (!type) return cfg_fail(c, "missing required key '%srope_type'", prefix);
    if (strcmp(type, "default") == 0) return 0;
    if (strcmp(type, "linear") == 0) {
        m->rope_scaling = ROPE_SCALING_LINEAR;
        return cfg_num(c, rs, prefix, "factor", 1, 0, &m->rope_factor);
    }
    if (strcmp(type, "llama3") == 0) {
        m->rope_scaling = ROPE_SCALING_LLAMA3;
        if (cfg_num(c, rs, prefix, "factor", 1, 0, &m->rope_factor) ||
            cfg_num(c, rs, prefix, "low_freq_factor", 1, 0, &m->rope_low_freq_factor) ||
            cfg_num(c, rs, prefix, "high_freq_factor", 1, 0, &m->rope_high_freq_factor) ||
            cfg_int(c, rs, prefix, "original_max_position_embeddings", 1, 0, &m->rope_original_max_seq_len)) {
            return -1;
        }
        if (m->rope_high_freq_factor <= m->rope_low_freq_factor) {
            return cfg_fail(c, "key '%shigh_freq_factor' (%g) must be larger than '%slow_freq_factor' (%g)", prefix,
                            m->rope_high_freq_factor, prefix, m->rope_low_freq_factor);
        }
        return 0;
    }
    return cfg_fail(c, "key '%srope_type': '%.60s' is not supported (supported: default, linear, llama3)", prefix, type);
}

static int cfg_arch(Cfg* c, json_t* root, const ArchInfo** out) {
    const char *arch = NULL, *model_type = NULL;
    json_t* a = json_object_get(root, "architectures");
    if (a && !json_is_null(a)) {
        if (!json_is_array(a) || json_array_size(a) == 0 || !json_is_string(json_array_get(a, 0))) {
            return cfg_fail(c, "key 'architectures' must be a non-empty list of strings");
        }
        arch = json_string_value(json_array_get(a, 0));
    } else {
        if (cfg_str(c, root, "", "model_type", 0, &model_type)) return -1;
        if (!model_type) return cfg_fail(c, "missing required key 'architectures'");
    }
    *out = arch_find(arch, arch ? NULL : model_type);
    if (!*out) {
        return cfg_fail(c, "%s '%.80s' is not supported (supported: LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM)",
                        arch ? "architecture" : "model_type", arch ? arch : model_type);
    }
    return 0;
}

// keys whose values ingrain cannot honour
static int cfg_unsupported(Cfg* c, json_t* root, const ArchInfo* ai) {
    const char* act = NULL;
    int flag = 0;
    if (cfg_str(c, root, "", "hidden_act", 0, &act)) return -1;
    if (act && strcmp(act, "silu") != 0) return cfg_fail(c, "key 'hidden_act': '%.40s' is not supported (only silu)", act);
    if (ai->has_attn_bias) {
        if (cfg_bool(c, root, "attention_bias", 0, &flag)) return -1;
        if (flag) return cfg_fail(c, "key 'attention_bias': true (biases on q, k, v and o) is not supported for %s", ai->arch);
    }
    if (cfg_bool(c, root, "mlp_bias", 0, &flag)) return -1;
    if (flag) return cfg_fail(c, "key 'mlp_bias': true is not supported");
    if (cfg_bool(c, root, "use_sliding_window", 0, &flag)) return -1;
    if (flag) return cfg_fail(c, "key 'use_sliding_window': true is not supported (full attention only)");
    return 0;
}

int hf_parse_config(const char* text, size_t len, const char* path, ModelConfig* m, char* err, size_t errlen) {
    Cfg c = {path, err, errlen};
    json_error_t je;
    json_t* root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) return cfg_fail(&c, "line %d, column %d: invalid JSON: %s", je.line, je.column, je.text);
    int rc = 0;
    const ArchInfo* ai = NULL;
    memset(m, 0, sizeof(*m));
    if (!json_is_object(root)) {
        rc = cfg_fail(&c, "expected a JSON object, got %s", json_kind(root));
    } else {
        rc = cfg_arch(&c, root, &ai);
    }
    if (rc == 0) {
        snprintf(m->arch, sizeof(m->arch), "%s", ai->arch);
        m->qkv_bias = ai->qkv_bias;
        m->qk_norm = ai->qk_norm;
        json_t* rp = json_object_get(root, "rope_parameters");
        if (rp && json_is_null(rp)) rp = NULL;
        rc = cfg_int(&c, root, "", "hidden_size", 1, 0, &m->dim) ||
             cfg_int(&c, root, "", "intermediate_size", 1, 0, &m->hidden_dim) ||
             cfg_int(&c, root, "", "num_hidden_layers", 1, 0, &m->n_layers) ||
             cfg_int(&c, root, "", "num_attention_heads", 1, 0, &m->n_heads) ||
             cfg_int(&c, root, "", "vocab_size", 1, 0, &m->vocab_size) ||
             cfg_int(&c, root, "", "num_key_value_heads", 0, m->n_heads, &m->n_kv_heads) ||
             cfg_int(&c, root, "", "head_dim", 0, ai->head_dim ? ai->head_dim : m->dim / m->n_heads, &m->head_dim) ||
             cfg_int(&c, root, "", "max_position_embeddings", 0, ai->max_pos, &m->max_seq_len) ||
             cfg_num(&c, root, "", "rms_norm_eps", 0, 1e-6, &m->norm_eps) ||
             cfg_num(&c, root, "", "rope_theta", 0, 10000.0, &m->rope_theta) ||
             cfg_bool(&c, root, "tie_word_embeddings", 0, &m->tied_embeddings) ||
             cfg_unsupported(&c, root, ai);
        if (rc == 0 && rp) { // transformers v5 keeps theta and scaling together
            rc = !json_is_object(rp) ? cfg_fail(&c, "key 'rope_parameters' must be an object, got %s", json_kind(rp))
                 : cfg_num(&c, rp, "rope_parameters.", "rope_theta", 0, m->rope_theta, &m->rope_theta) ||
                         cfg_rope_scaling(&c, rp, "rope_parameters.", m);
        } else if (rc == 0) {
            rc = cfg_rope_scaling(&c, cfg_get(&c, root, "", "rope_scaling", 0, &rc), "rope_scaling.", m);
        }
        rc = rc ? -1 : 0;
    }
    char msg[256];
    if (rc == 0 && model_config_check(m, msg, sizeof(msg)) != 0) rc = cfg_fail(&c, "%s", msg);
    if (rc == 0) { // params are addressed with size_t products of ints; keep far from overflow
        double total = 2.0 * m->vocab_size * m->dim + (double)m->n_layers * m->dim *
                       (2.0 * m->n_heads * m->head_dim + 2.0 * m->n_kv_heads * m->head_dim + 3.0 * m->hidden_dim);
        if (total > 1e12) rc = cfg_fail(&c, "the config describes %.3g parameters, more than ingrain supports", total);
    }
    json_decref(root);
    return rc;
}

int hf_load_config(const char* dir, ModelConfig* c, char* err, size_t errlen) {
    char path[HF_PATH_MAX];
    if (join(path, dir, "config.json", err, errlen)) return -1;
    FILE* fp = fopen(path, "rb");
    if (!fp) return fail(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char* text = mallocCheck(cap);
    size_t got;
    while ((got = fread(text + len, 1, cap - len, fp)) > 0) {
        len += got;
        if (len == cap) {
            if (cap >= (64u << 20)) break;
            cap *= 2;
            text = reallocCheck(text, cap);
        }
    }
    int bad = ferror(fp), big = len == cap;
    fclose(fp);
    int rc = bad ? fail(err, errlen, "%s: read failed", path)
             : big ? fail(err, errlen, "%s: larger than 64 MiB, not a config", path)
                   : hf_parse_config(text, len, path, c, err, errlen);
    free(text);
    return rc;
}

// ----------------------------------------------------------------------------
// checkpoint files: one model.safetensors, or the shards of an index

typedef struct {
    int n;
    StFile** files;
    char** names;        // file names within the directory
    unsigned char** used; // per file, per tensor: claimed by an expected or harmless tensor
    json_t* weight_map;  // tensor name -> file name; NULL for a single file
    char index[HF_PATH_MAX];
} Ckpt;

static void ckpt_free(Ckpt* ck) {
    for (int i = 0; i < ck->n; i++) {
        st_close(ck->files[i]);
        free(ck->names[i]);
        free(ck->used[i]);
    }
    free(ck->files);
    free(ck->names);
    free(ck->used);
    json_decref(ck->weight_map);
}

static int ckpt_add(Ckpt* ck, const char* dir, const char* name, char* err, size_t errlen) {
    char path[HF_PATH_MAX];
    if (join(path, dir, name, err, errlen)) return -1;
    StFile* f = st_open(path, err, errlen);
    if (!f) return -1;
    ck->files = reallocCheck(ck->files, (size_t)(ck->n + 1) * sizeof(*ck->files));
    ck->names = reallocCheck(ck->names, (size_t)(ck->n + 1) * sizeof(*ck->names));
    ck->used = reallocCheck(ck->used, (size_t)(ck->n + 1) * sizeof(*ck->used));
    ck->files[ck->n] = f;
    ck->names[ck->n] = strdupCheck(name);
    ck->used[ck->n] = callocCheck((size_t)st_count(f) + 1, 1);
    ck->n++;
    return 0;
}

static int ckpt_file_index(const Ckpt* ck, const char* name) {
    for (int i = 0; i < ck->n; i++) {
        if (strcmp(ck->names[i], name) == 0) return i;
    }
    return -1;
}

// a shard name must be a plain file name in the directory
static int shard_name_ok(const char* s) {
    size_t n = strlen(s);
    return n > 12 && !strchr(s, '/') && !strchr(s, '\\') && strcmp(s + n - 12, ".safetensors") == 0 && s[0] != '.';
}

// opens the shards of the index and checks that weight_map and the files agree
static int ckpt_open_index(Ckpt* ck, const char* dir, char* err, size_t errlen) {
    json_error_t je;
    json_t* root = json_load_file(ck->index, JSON_REJECT_DUPLICATES, &je);
    if (!root) return fail(err, errlen, "%s: line %d, column %d: invalid JSON: %s", ck->index, je.line, je.column, je.text);
    json_t* wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm)) {
        json_decref(root);
        return fail(err, errlen, "%s: key 'weight_map' must be an object of tensor name -> file name", ck->index);
    }
    ck->weight_map = json_incref(wm);
    json_decref(root);
    const char* name;
    json_t* v;
    json_object_foreach(wm, name, v) {
        if (!json_is_string(v) || !shard_name_ok(json_string_value(v))) {
            return fail(err, errlen, "%s: weight_map['%.200s'] must be a .safetensors file name in the directory",
                        ck->index, name);
        }
        const char* file = json_string_value(v);
        if (ckpt_file_index(ck, file) < 0 && ckpt_add(ck, dir, file, err, errlen)) return -1;
        int fi = ckpt_file_index(ck, file);
        if (st_find(ck->files[fi], name) < 0) {
            return fail(err, errlen, "%s: weight_map lists tensor '%.200s' in %s, which has no such tensor", ck->index,
                        name, file);
        }
    }
    for (int fi = 0; fi < ck->n; fi++) {
        for (int t = 0; t < st_count(ck->files[fi]); t++) {
            const char* tn = st_tensor(ck->files[fi], t)->name;
            const char* listed = json_string_value(json_object_get(wm, tn));
            if (!listed || strcmp(listed, ck->names[fi]) != 0) {
                return fail(err, errlen, "%s: tensor '%.200s' is in %s but weight_map %s%s", ck->index, tn,
                            ck->names[fi], listed ? "lists it in " : "does not list it", listed ? listed : "");
            }
        }
    }
    return 0;
}

static int ckpt_open(Ckpt* ck, const char* dir, char* err, size_t errlen) {
    char single[HF_PATH_MAX];
    memset(ck, 0, sizeof(*ck));
    if (join(single, dir, "model.safetensors", err, errlen) ||
        join(ck->index, dir, "model.safetensors.index.json", err, errlen)) {
        return -1;
    }
    if (exists(single)) return ckpt_add(ck, dir, "model.safetensors", err, errlen);
    if (exists(ck->index)) return ckpt_open_index(ck, dir, err, errlen);
    char bin[HF_PATH_MAX];
    int has_bin = join(bin, dir, "pytorch_model.bin", err, errlen) == 0 && exists(bin);
    return fail(err, errlen, "%s: no model.safetensors or model.safetensors.index.json%s", dir,
                has_bin ? " (pytorch_model.bin is not supported: convert it to safetensors)" : "");
}

// the file and tensor index holding `name`; -1 when absent
static int ckpt_locate(const Ckpt* ck, const char* name, int* ti) {
    int fi = 0;
    if (ck->weight_map) {
        const char* file = json_string_value(json_object_get(ck->weight_map, name));
        fi = file ? ckpt_file_index(ck, file) : -1;
    }
    if (fi < 0) return -1;
    *ti = st_find(ck->files[fi], name);
    return *ti < 0 ? -1 : fi;
}

static const char* ckpt_where(const Ckpt* ck, int fi) { return fi >= 0 ? st_path(ck->files[fi]) : ck->index; }

// ----------------------------------------------------------------------------
// loading weights

static int shape_is(const StTensor* t, int rows, int cols) {
    return cols ? (t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols) : (t->ndim == 1 && t->shape[0] == rows);
}

static const char* expected_str(int rows, int cols, char* buf, size_t n) {
    int64_t s[2] = {rows, cols};
    return st_shape_str(s, cols ? 2 : 1, buf, n);
}

static int load_tensor(Ckpt* ck, const char* name, int rows, int cols, float* out, char* err, size_t errlen) {
    char want[64], got[160];
    int ti = -1, fi = ckpt_locate(ck, name, &ti);
    if (fi < 0) {
        return fail(err, errlen, "%s: tensor '%s' is missing (expected shape %s, from config.json)",
                    ckpt_where(ck, ck->weight_map ? -1 : 0), name, expected_str(rows, cols, want, sizeof(want)));
    }
    const StTensor* t = st_tensor(ck->files[fi], ti);
    if (!shape_is(t, rows, cols)) {
        return fail(err, errlen, "%s: tensor '%s' has shape %s, expected %s (from config.json)", st_path(ck->files[fi]),
                    name, st_shape_str(t->shape, t->ndim, got, sizeof(got)), expected_str(rows, cols, want, sizeof(want)));
    }
    ck->used[fi][ti] = 1;
    return st_read_f32(ck->files[fi], t, out, t->numel, err, errlen);
}

static int is_harmless(const char* name) {
    const char* suffix = "rotary_emb.inv_freq";
    size_t n = strlen(name), k = strlen(suffix);
    return n >= k && strcmp(name + n - k, suffix) == 0 && (n == k || name[n - k - 1] == '.');
}

int hf_load_weights(const char* dir, const ModelConfig* c, float* params, size_t n, char* err, size_t errlen) {
    ParamInfo table[PARAM_COUNT];
    size_t total = model_param_table(c, table);
    if (n != total) return fail(err, errlen, "%s: the parameter buffer holds %zu floats, the config needs %zu", dir, n, total);
    Ckpt ck;
    int rc = ckpt_open(&ck, dir, err, errlen);
    for (int p = 0; p < PARAM_COUNT && rc == 0; p++) {
        const ParamInfo* pi = &table[p];
        if (pi->numel == 0) continue;
        size_t per = (size_t)pi->rows * (size_t)(pi->cols ? pi->cols : 1);
        for (int l = 0; l < (pi->per_layer ? c->n_layers : 1) && rc == 0; l++) {
            char name[256];
            snprintf(name, sizeof(name), pi->hf_name, l);
            rc = load_tensor(&ck, name, pi->rows, pi->cols, params + pi->offset + (size_t)l * per, err, errlen);
        }
    }
    for (int fi = 0; fi < ck.n && rc == 0; fi++) {
        for (int ti = 0; ti < st_count(ck.files[fi]) && rc == 0; ti++) {
            const StTensor* t = st_tensor(ck.files[fi], ti);
            if (ck.used[fi][ti] || is_harmless(t->name)) continue;
            char got[160], want[64];
            if (c->tied_embeddings && strcmp(t->name, "lm_head.weight") == 0) {
                if (shape_is(t, c->vocab_size, c->dim)) continue; // tied: the embedding is the head
                rc = fail(err, errlen, "%s: tensor 'lm_head.weight' has shape %s, expected %s (tie_word_embeddings)",
                          st_path(ck.files[fi]), st_shape_str(t->shape, t->ndim, got, sizeof(got)),
                          expected_str(c->vocab_size, c->dim, want, sizeof(want)));
            } else {
                rc = fail(err, errlen, "%s: unexpected tensor '%.200s' (shape %s) for %s with %d layers%s",
                          st_path(ck.files[fi]), t->name, st_shape_str(t->shape, t->ndim, got, sizeof(got)), c->arch,
                          c->n_layers, c->qkv_bias ? ", QKV bias" : c->qk_norm ? ", QK-norm" : "");
            }
        }
    }
    ckpt_free(&ck);
    return rc;
}

// ----------------------------------------------------------------------------
// writing: helpers

static int make_dirs(const char* path, char* err, size_t errlen) {
    char buf[HF_PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(buf)) return fail(err, errlen, "invalid output directory '%s'", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0775) != 0 && errno != EEXIST) return fail(err, errlen, "cannot create %s: %s", buf, strerror(errno));
        buf[i] = saved;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) return fail(err, errlen, "%s exists but is not a directory", path);
    return 0;
}

// copies src to dst through dst.tmp and a rename
static int copy_file(const char* src, const char* dst, char* err, size_t errlen) {
    char tmp[HF_PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", dst);
    FILE* in = fopen(src, "rb");
    if (!in) return fail(err, errlen, "%s: cannot open: %s", src, strerror(errno));
    FILE* out = fopen(tmp, "wb");
    if (!out) {
        fclose(in);
        return fail(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
    }
    char buf[1 << 16];
    size_t got;
    int bad = 0;
    while (!bad && (got = fread(buf, 1, sizeof(buf), in)) > 0) bad = fwrite(buf, 1, got, out) != got;
    bad = bad || ferror(in) || fflush(out) != 0 || fsync(fileno(out)) != 0;
    int e = errno;
    fclose(in);
    bad = (fclose(out) != 0) || bad;
    if (bad || rename(tmp, dst) != 0) {
        if (!bad) e = errno;
        unlink(tmp);
        return fail(err, errlen, "cannot copy %s to %s: %s", src, dst, strerror(e));
    }
    return 0;
}

// the shortest decimal that reads back as f, so 1e-5f is written as 1e-05, not 9.99999975e-06
static double short_double(float f) {
    char buf[32];
    for (int p = 1; p < 9; p++) {
        snprintf(buf, sizeof(buf), "%.*g", p, (double)f);
        if (strtof(buf, NULL) == f) return strtod(buf, NULL);
    }
    return (double)f;
}

static const ArchInfo* save_arch(const ModelConfig* c, char* err, size_t errlen) {
    if (c->qkv_bias && c->qk_norm) {
        fail(err, errlen, "no HF architecture has both QKV bias and QK-norm; cannot write config.json");
        return NULL;
    }
    const ArchInfo* ai = strcmp(c->arch, "builtin") == 0 ? &archs[c->qk_norm ? 2 : c->qkv_bias ? 1 : 0]
                                                         : arch_find(c->arch, NULL);
    if (!ai) {
        fail(err, errlen, "architecture '%s' cannot be written as an HF model", c->arch);
        return NULL;
    }
    if (ai->qkv_bias != c->qkv_bias || ai->qk_norm != c->qk_norm) {
        fail(err, errlen, "%s has %s QKV bias and %s QK-norm, but this config has %s and %s", ai->arch,
             ai->qkv_bias ? "a" : "no", ai->qk_norm ? "a" : "no", c->qkv_bias ? "one" : "none",
             c->qk_norm ? "one" : "none");
        return NULL;
    }
    return ai;
}

// ----------------------------------------------------------------------------
// writing: config.json, model.safetensors, tokenizer files

static json_t* config_json(const ModelConfig* c, const ArchInfo* ai, StDtype dtype, const char* src_dir) {
    json_t* o = NULL;
    char path[HF_PATH_MAX];
    if (src_dir && snprintf(path, sizeof(path), "%s/config.json", src_dir) < (int)sizeof(path) && exists(path)) {
        o = json_load_file(path, 0, NULL);
        json_t* a = json_is_object(o) ? json_object_get(o, "architectures") : NULL;
        if (!json_is_string(json_array_get(a, 0)) || strcmp(json_string_value(json_array_get(a, 0)), ai->arch) != 0) {
            json_decref(o); // another model's config: start afresh
            o = NULL;
        }
    }
    if (!o) o = json_object();
    json_object_del(o, "rope_parameters"); // written below in the form both transformers 4 and 5 read
    json_object_del(o, "dtype");
    json_object_set_new(o, "architectures", json_pack("[s]", ai->arch));
    json_object_set_new(o, "model_type", json_string(ai->model_type));
    json_object_set_new(o, "hidden_size", json_integer(c->dim));
    json_object_set_new(o, "intermediate_size", json_integer(c->hidden_dim));
    json_object_set_new(o, "num_hidden_layers", json_integer(c->n_layers));
    json_object_set_new(o, "num_attention_heads", json_integer(c->n_heads));
    json_object_set_new(o, "num_key_value_heads", json_integer(c->n_kv_heads));
    json_object_set_new(o, "head_dim", json_integer(c->head_dim));
    json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));
    json_object_set_new(o, "max_position_embeddings", json_integer(c->max_seq_len));
    json_object_set_new(o, "rope_theta", json_real(short_double(c->rope_theta)));
    json_object_set_new(o, "rms_norm_eps", json_real(short_double(c->norm_eps)));
    json_object_set_new(o, "tie_word_embeddings", json_boolean(c->tied_embeddings));
    json_object_set_new(o, "hidden_act", json_string("silu"));
    json_object_set_new(o, "torch_dtype", json_string(dtype == ST_BF16 ? "bfloat16" : "float32"));
    if (ai->has_attn_bias) json_object_set_new(o, "attention_bias", json_false());
    if (strcmp(ai->model_type, "llama") == 0) json_object_set_new(o, "mlp_bias", json_false());
    else json_object_set_new(o, "use_sliding_window", json_false());
    json_t* rs = json_null();
    if (c->rope_scaling == ROPE_SCALING_LINEAR) {
        rs = json_pack("{s:s, s:f}", "rope_type", "linear", "factor", short_double(c->rope_factor));
    } else if (c->rope_scaling == ROPE_SCALING_LLAMA3) {
        rs = json_pack("{s:s, s:f, s:f, s:f, s:i}", "rope_type", "llama3", "factor", short_double(c->rope_factor),
                       "low_freq_factor", short_double(c->rope_low_freq_factor), "high_freq_factor",
                       short_double(c->rope_high_freq_factor), "original_max_position_embeddings",
                       c->rope_original_max_seq_len);
    }
    json_object_set_new(o, "rope_scaling", rs);
    return o;
}

static int write_config(const char* dir, const ModelConfig* c, const ArchInfo* ai, StDtype dtype, const char* src_dir,
                        char* err, size_t errlen) {
    char path[HF_PATH_MAX], tmp[HF_PATH_MAX + 8];
    if (join(path, dir, "config.json", err, errlen)) return -1;
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    json_t* o = config_json(c, ai, dtype, src_dir);
    int rc = json_dump_file(o, tmp, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(9));
    json_decref(o);
    if (rc != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return fail(err, errlen, "%s: cannot write: %s", path, strerror(e));
    }
    return 0;
}

static int write_weights(const char* dir, const ModelConfig* c, const float* params, StDtype dtype, char* err,
                         size_t errlen) {
    ParamInfo table[PARAM_COUNT];
    model_param_table(c, table);
    int count = 0;
    for (int p = 0; p < PARAM_COUNT; p++) count += table[p].numel ? (table[p].per_layer ? c->n_layers : 1) : 0;
    StWriteTensor* ts = callocCheck((size_t)count, sizeof(StWriteTensor));
    char(*names)[128] = callocCheck((size_t)count, sizeof(*names));
    int k = 0;
    for (int p = 0; p < PARAM_COUNT; p++) {
        const ParamInfo* pi = &table[p];
        if (pi->numel == 0) continue;
        size_t per = (size_t)pi->rows * (size_t)(pi->cols ? pi->cols : 1);
        for (int l = 0; l < (pi->per_layer ? c->n_layers : 1); l++, k++) {
            snprintf(names[k], sizeof(names[k]), pi->hf_name, l);
            ts[k] = (StWriteTensor){.name = names[k],
                                    .data = params + pi->offset + (size_t)l * per,
                                    .ndim = pi->cols ? 2 : 1,
                                    .shape = {pi->rows, pi->cols}};
        }
    }
    char path[HF_PATH_MAX];
    int rc = join(path, dir, "model.safetensors", err, errlen) || st_write(path, ts, count, dtype, err, errlen);
    free(names);
    free(ts);
    return rc ? -1 : 0;
}

static int copy_tokenizer(const char* dir, const char* src_dir, char* err, size_t errlen) {
    static const char* const files[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                        "generation_config.json", "chat_template.jinja"};
    struct stat a, b;
    if (stat(src_dir, &a) == 0 && stat(dir, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
        return 0; // saving over the source: its files are already there
    }
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char src[HF_PATH_MAX], dst[HF_PATH_MAX];
        if (join(src, src_dir, files[i], err, errlen) || join(dst, dir, files[i], err, errlen)) return -1;
        if (!exists(src)) {
            if (i == 0) return fail(err, errlen, "%s: no such file (needed to copy the tokenizer)", src);
            continue;
        }
        if (copy_file(src, dst, err, errlen)) return -1;
    }
    return 0;
}

int hf_save(const char* dir, const ModelConfig* c, const float* params, size_t n, StDtype dtype, const char* src_dir,
            char* err, size_t errlen) {
    ParamInfo table[PARAM_COUNT];
    char msg[256];
    if (model_config_check(c, msg, sizeof(msg)) != 0) return fail(err, errlen, "cannot write %s: %s", dir, msg);
    if (n != model_param_table(c, table)) {
        return fail(err, errlen, "cannot write %s: the parameter buffer holds %zu floats, the config needs %zu", dir, n,
                    model_param_table(c, table));
    }
    if (dtype != ST_F32 && dtype != ST_BF16) return fail(err, errlen, "cannot write %s: dtype must be F32 or BF16", dir);
    const ArchInfo* ai = save_arch(c, err, errlen);
    if (!ai || make_dirs(dir, err, errlen) || write_weights(dir, c, params, dtype, err, errlen) ||
        (src_dir && copy_tokenizer(dir, src_dir, err, errlen)) ||
        write_config(dir, c, ai, dtype, src_dir, err, errlen)) {
        return -1;
    }
    return 0;
}
