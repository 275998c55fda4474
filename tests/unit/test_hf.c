// Unit tests of HF model directories: config.json parsing (fixtures, defaults, and a table of
// malformed configs with their messages), loading the numpy-written fixtures of tests/data/hf
// (F32 single file, BF16 shards, F16 with QKV bias) against tests/data/hf/expected.json, checks on
// missing/mis-shaped/extra tensors and bad indexes, and write -> load round trips (F32 identical,
// BF16 identical after one rounding), tokenizer copying and config.json field preservation.
#define _XOPEN_SOURCE 700
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/hf.h"

#define DATA INGRAIN_TEST_DATA "/data/hf/"

// ----------------------------------------------------------------------------
// helpers

static char err[1024];

static void assert_contains(const char* haystack, const char* needle) {
    if (!strstr(haystack, needle)) fail_msg("message\n  \"%s\"\ndoes not contain\n  \"%s\"", haystack, needle);
}

static int rm_one(const char* path, const struct stat* st, int flag, struct FTW* ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void rm_rf(const char* dir) { nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static char* tmpdir(void) {
    static char dirs[16][64];
    static int k;
    char* d = dirs[k++ % 16];
    strcpy(d, "/tmp/ingrain_hf_XXXXXX");
    if (!mkdtemp(d)) fail_msg("mkdtemp failed");
    return d;
}

static void write_text(const char* dir, const char* name, const char* text) {
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE* f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
}

static char* read_text(const char* dir, const char* name) {
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE* f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char* s = calloc((size_t)n + 1, 1);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return s;
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

// config + weights of an HF directory; the buffer is malloc'ed
static float* load_dir(const char* dir, ModelConfig* c, size_t* n) {
    if (hf_load_config(dir, c, err, sizeof(err)) != 0) fail_msg("%s", err);
    ParamInfo t[PARAM_COUNT];
    *n = model_param_table(c, t);
    float* p = malloc(*n * sizeof(float));
    if (hf_load_weights(dir, c, p, *n, err, sizeof(err)) != 0) fail_msg("%s", err);
    return p;
}

static float* random_params(const ModelConfig* c, size_t* n, unsigned seed) {
    ParamInfo t[PARAM_COUNT];
    *n = model_param_table(c, t);
    float* p = malloc(*n * sizeof(float));
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < *n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = ((float)(s >> 8) / 16777216.0f - 0.5f) * 0.37f;
    }
    return p;
}

// ----------------------------------------------------------------------------
// fixtures: configs

static void test_fixture_configs(void** state) {
    (void)state;
    ModelConfig c;
    if (hf_load_config(DATA "llama_f32", &c, err, sizeof(err))) fail_msg("%s", err);
    assert_string_equal(c.arch, "LlamaForCausalLM");
    assert_int_equal(c.dim, 32);
    assert_int_equal(c.hidden_dim, 48);
    assert_int_equal(c.n_layers, 2);
    assert_int_equal(c.n_heads, 4);
    assert_int_equal(c.n_kv_heads, 2);
    assert_int_equal(c.head_dim, 8);
    assert_int_equal(c.vocab_size, 64);
    assert_int_equal(c.max_seq_len, 256);
    assert_true(c.norm_eps == 1e-5f && c.rope_theta == 500000.0f);
    assert_false(c.tied_embeddings || c.qkv_bias || c.qk_norm);
    assert_int_equal(c.rope_scaling, ROPE_SCALING_LLAMA3);
    assert_true(c.rope_factor == 8.0f && c.rope_low_freq_factor == 1.0f && c.rope_high_freq_factor == 4.0f);
    assert_int_equal(c.rope_original_max_seq_len, 128);

    if (hf_load_config(DATA "qwen3_bf16", &c, err, sizeof(err))) fail_msg("%s", err);
    assert_string_equal(c.arch, "Qwen3ForCausalLM");
    assert_int_equal(c.head_dim, 16); // 4 heads * 16 != hidden 32
    assert_true(c.tied_embeddings && c.qk_norm && !c.qkv_bias);
    assert_int_equal(c.rope_scaling, ROPE_SCALING_NONE);
    assert_true(c.rope_theta == 1e6f && c.norm_eps == 1e-6f);

    if (hf_load_config(DATA "qwen2_f16", &c, err, sizeof(err))) fail_msg("%s", err);
    assert_string_equal(c.arch, "Qwen2ForCausalLM");
    assert_true(c.tied_embeddings && c.qkv_bias && !c.qk_norm);
    assert_int_equal(c.head_dim, 8);
    assert_int_equal(c.max_seq_len, 1024);
}

// ----------------------------------------------------------------------------
// fixtures: weights against numpy's summaries

static void check_against_expected(const char* model) {
    ModelConfig c;
    size_t n;
    char dir[256];
    snprintf(dir, sizeof(dir), DATA "%s", model);
    float* p = load_dir(dir, &c, &n);
    json_error_t je;
    json_t* all = json_load_file(DATA "expected.json", 0, &je);
    if (!all) fail_msg("expected.json: %s", je.text);
    json_t* exp = json_object_get(all, model);
    assert_non_null(exp);
    ParamInfo t[PARAM_COUNT];
    model_param_table(&c, t);
    size_t checked = 0;
    for (int i = 0; i < PARAM_COUNT; i++) {
        if (!t[i].numel) continue;
        size_t per = (size_t)t[i].rows * (size_t)(t[i].cols ? t[i].cols : 1);
        for (int l = 0; l < (t[i].per_layer ? c.n_layers : 1); l++, checked++) {
            char name[128];
            snprintf(name, sizeof(name), t[i].hf_name, l);
            json_t* e = json_object_get(exp, name);
            if (!e) fail_msg("%s: %s has no expected values", model, name);
            json_t* shape = json_object_get(e, "shape");
            assert_int_equal(json_integer_value(json_array_get(shape, 0)), t[i].rows);
            if (t[i].cols) assert_int_equal(json_integer_value(json_array_get(shape, 1)), t[i].cols);
            const float* x = p + t[i].offset + (size_t)l * per;
            double sum = 0, sumsq = 0;
            for (size_t j = 0; j < per; j++) sum += x[j], sumsq += (double)x[j] * x[j];
            // sums differ from numpy's pairwise order only by double rounding
            double s0 = json_real_value(json_object_get(e, "sum")), q0 = json_real_value(json_object_get(e, "sumsq"));
            if (fabs(sum - s0) > 1e-12 * (1 + sumsq) || fabs(sumsq - q0) > 1e-12 * (1 + q0)) {
                fail_msg("%s: %s: sum %.17g / sumsq %.17g, numpy says %.17g / %.17g", model, name, sum, sumsq, s0, q0);
            }
            assert_true(x[0] == (float)json_real_value(json_object_get(e, "first")));
            assert_true(x[per / 2] == (float)json_real_value(json_object_get(e, "mid")));
            assert_true(x[per - 1] == (float)json_real_value(json_object_get(e, "last")));
        }
    }
    assert_int_equal(checked, json_object_size(exp)); // nothing expected was left out
    json_decref(all);
    free(p);
}

static void test_fixture_weights(void** state) {
    (void)state;
    check_against_expected("llama_f32");  // F32, one file, an inv_freq buffer to ignore
    check_against_expected("qwen3_bf16"); // BF16, two shards and an index, tied, QK-norm
    check_against_expected("qwen2_f16");  // F16, QKV bias, tied with an lm_head.weight to ignore
}

// ----------------------------------------------------------------------------
// config.json: defaults and malformed configs

#define BASE "\"hidden_size\":32,\"intermediate_size\":48,\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":64"

static ModelConfig parse_ok(const char* text) {
    ModelConfig c;
    if (hf_parse_config(text, strlen(text), "config.json", &c, err, sizeof(err)) != 0) fail_msg("%s\n%s", err, text);
    return c;
}

static void test_config_defaults(void** state) {
    (void)state;
    ModelConfig c = parse_ok("{\"model_type\":\"llama\"," BASE "}");
    assert_string_equal(c.arch, "LlamaForCausalLM");
    assert_int_equal(c.n_kv_heads, 4);
    assert_int_equal(c.head_dim, 8);
    assert_int_equal(c.max_seq_len, 2048);
    assert_true(c.rope_theta == 10000.0f && c.norm_eps == 1e-6f && !c.tied_embeddings);
    c = parse_ok("{\"architectures\":[\"Qwen3ForCausalLM\"]," BASE ",\"num_key_value_heads\":null,\"rope_scaling\":null}");
    assert_int_equal(c.head_dim, 128); // transformers' Qwen3Config default
    assert_int_equal(c.max_seq_len, 32768);
    assert_int_equal(c.n_kv_heads, 4);
    c = parse_ok("{\"architectures\":[\"Qwen2ForCausalLM\"]," BASE ",\"rope_theta\":1000000,\"tie_word_embeddings\":true}");
    assert_true(c.qkv_bias && c.tied_embeddings && c.rope_theta == 1e6f);
    c = parse_ok("{\"architectures\":[\"LlamaForCausalLM\"]," BASE ",\"rope_scaling\":{\"type\":\"linear\",\"factor\":2}}");
    assert_int_equal(c.rope_scaling, ROPE_SCALING_LINEAR);
    assert_true(c.rope_factor == 2.0f);
    c = parse_ok("{\"architectures\":[\"LlamaForCausalLM\"]," BASE ",\"rope_scaling\":{\"rope_type\":\"default\"}}");
    assert_int_equal(c.rope_scaling, ROPE_SCALING_NONE);
    // transformers v5 form
    c = parse_ok("{\"architectures\":[\"LlamaForCausalLM\"]," BASE
                 ",\"rope_parameters\":{\"rope_type\":\"linear\",\"rope_theta\":250000.0,\"factor\":4}}");
    assert_true(c.rope_theta == 250000.0f && c.rope_scaling == ROPE_SCALING_LINEAR && c.rope_factor == 4.0f);
}

typedef struct {
    const char* json;
    const char* expected;
} BadConfig;

#define LL "{\"architectures\":[\"LlamaForCausalLM\"]," BASE

static const BadConfig bad_configs[] = {
    {"[]", "config.json: expected a JSON object, got a list"},
    {"{\"a\":", "config.json: line 1, column 5: invalid JSON"},
    {"{" BASE "}", "config.json: missing required key 'architectures'"},
    {"{\"architectures\":[\"MistralForCausalLM\"]," BASE "}",
     "config.json: architecture 'MistralForCausalLM' is not supported (supported: LlamaForCausalLM, Qwen2ForCausalLM, "
     "Qwen3ForCausalLM)"},
    {"{\"model_type\":\"gpt2\"," BASE "}", "config.json: model_type 'gpt2' is not supported"},
    {"{\"architectures\":\"LlamaForCausalLM\"," BASE "}", "config.json: key 'architectures' must be a non-empty list"},
    {"{\"architectures\":[]," BASE "}", "key 'architectures' must be a non-empty list of strings"},
    {"{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":32}", "config.json: missing required key 'intermediate_size'"},
    {"{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":\"32\"}",
     "config.json: key 'hidden_size' must be an integer, got a string"},
    {"{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":32.0}", "key 'hidden_size' must be an integer, got a real number"},
    {"{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":-4}", "key 'hidden_size' must be a positive integer"},
    {"{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":1099511627776}", "key 'hidden_size' must be a positive integer (at most"},
    {LL ",\"num_key_value_heads\":3}", "config.json: num_key_value_heads (3) must divide num_attention_heads (4)"},
    {LL ",\"head_dim\":7}", "config.json: head_dim must be positive and even, got 7"},
    {LL ",\"rms_norm_eps\":\"1e-6\"}", "config.json: key 'rms_norm_eps' must be a number, got a string"},
    {LL ",\"rms_norm_eps\":0}", "key 'rms_norm_eps' must be a positive number, got 0"},
    {LL ",\"rope_theta\":[]}", "key 'rope_theta' must be a number, got a list"},
    {LL ",\"tie_word_embeddings\":\"yes\"}", "config.json: key 'tie_word_embeddings' must be true or false, got a string"},
    {LL ",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4}}",
     "config.json: key 'rope_scaling.rope_type': 'yarn' is not supported (supported: default, linear, llama3)"},
    {LL ",\"rope_scaling\":{\"type\":\"dynamic\",\"factor\":4}}", "'dynamic' is not supported"},
    {LL ",\"rope_scaling\":{\"factor\":4}}", "config.json: missing required key 'rope_scaling.rope_type'"},
    {LL ",\"rope_scaling\":{\"type\":\"linear\"}}", "config.json: missing required key 'rope_scaling.factor'"},
    {LL ",\"rope_scaling\":{\"type\":\"linear\",\"factor\":\"2\"}}", "key 'rope_scaling.factor' must be a number, got a string"},
    {LL ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8}}", "missing required key 'rope_scaling.low_freq_factor'"},
    {LL ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8,\"low_freq_factor\":1,\"high_freq_factor\":4}}",
     "missing required key 'rope_scaling.original_max_position_embeddings'"},
    {LL ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8,\"low_freq_factor\":4,\"high_freq_factor\":1,"
        "\"original_max_position_embeddings\":8192}}",
     "key 'rope_scaling.high_freq_factor' (1) must be larger than 'rope_scaling.low_freq_factor' (4)"},
    {LL ",\"rope_scaling\":5}", "config.json: key 'rope_scaling' must be an object or null, got an integer"},
    {LL ",\"rope_parameters\":{\"rope_type\":\"longrope\"}}", "key 'rope_parameters.rope_type': 'longrope' is not supported"},
    {LL ",\"rope_parameters\":\"default\"}", "key 'rope_parameters' must be an object, got a string"},
    {LL ",\"hidden_act\":\"gelu\"}", "config.json: key 'hidden_act': 'gelu' is not supported (only silu)"},
    {LL ",\"attention_bias\":true}", "key 'attention_bias': true (biases on q, k, v and o) is not supported for LlamaForCausalLM"},
    {LL ",\"mlp_bias\":true}", "key 'mlp_bias': true is not supported"},
    {LL ",\"use_sliding_window\":true}", "key 'use_sliding_window': true is not supported"},
    {LL ",\"hidden_size\":64}", "line 1"}, // duplicate key
    {"{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":2000000000,\"intermediate_size\":48,"
     "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":2000000000}",
     "parameters, more than ingrain supports"},
};

static void test_bad_configs(void** state) {
    (void)state;
    int n = (int)(sizeof(bad_configs) / sizeof(bad_configs[0]));
    for (int i = 0; i < n; i++) {
        ModelConfig c;
        const char* s = bad_configs[i].json;
        if (hf_parse_config(s, strlen(s), "config.json", &c, err, sizeof(err)) == 0) fail_msg("case %d accepted: %s", i, s);
        assert_contains(err, bad_configs[i].expected);
    }
    ModelConfig c;
    assert_int_equal(hf_load_config(DATA "no-such-dir", &c, err, sizeof(err)), -1);
    assert_contains(err, "no-such-dir/config.json: cannot open: No such file");
}

// ----------------------------------------------------------------------------
// weights: missing, mis-shaped, extra tensors; bad indexes

static const char* tiny_config = "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":8,\"intermediate_size\":12,"
                                 "\"num_hidden_layers\":2,\"num_attention_heads\":2,\"vocab_size\":16%s}";

// writes config.json and a model.safetensors of the tensors the config needs, edited by `edit`
typedef enum { EDIT_NONE, EDIT_DROP, EDIT_RESHAPE, EDIT_EXTRA, EDIT_LM_HEAD_BAD } Edit;

static void write_model(const char* dir, const char* extra_cfg, Edit edit, const char* target) {
    char cfg[1024];
    snprintf(cfg, sizeof(cfg), tiny_config, extra_cfg);
    write_text(dir, "config.json", cfg);
    ModelConfig c = parse_ok(cfg);
    ParamInfo t[PARAM_COUNT];
    size_t n = model_param_table(&c, t);
    float* p = calloc(n + 1000, sizeof(float));
    StWriteTensor ts[64];
    char names[64][128];
    int k = 0;
    for (int i = 0; i < PARAM_COUNT; i++) {
        if (!t[i].numel) continue;
        for (int l = 0; l < (t[i].per_layer ? c.n_layers : 1); l++) {
            snprintf(names[k], sizeof(names[k]), t[i].hf_name, l);
            ts[k] = (StWriteTensor){.name = names[k], .data = p, .ndim = t[i].cols ? 2 : 1, .shape = {t[i].rows, t[i].cols}};
            if (target && strcmp(names[k], target) == 0) {
                if (edit == EDIT_DROP) continue;
                if (edit == EDIT_RESHAPE) ts[k].shape[ts[k].ndim - 1] -= 1;
            }
            k++;
        }
    }
    if (edit == EDIT_EXTRA || edit == EDIT_LM_HEAD_BAD) {
        ts[k++] = (StWriteTensor){.name = target, .data = p, .ndim = 2, .shape = {16, edit == EDIT_EXTRA ? 8 : 7}};
    }
    char path[512];
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    if (st_write(path, ts, k, ST_BF16, err, sizeof(err))) fail_msg("%s", err);
    free(p);
}

static void expect_load_error(const char* dir, const char* expected) {
    ModelConfig c;
    if (hf_load_config(dir, &c, err, sizeof(err))) fail_msg("%s", err);
    ParamInfo t[PARAM_COUNT];
    size_t n = model_param_table(&c, t);
    float* p = malloc(n * sizeof(float));
    if (hf_load_weights(dir, &c, p, n, err, sizeof(err)) == 0) fail_msg("%s loaded, expected: %s", dir, expected);
    assert_contains(err, expected);
    free(p);
}

static void test_bad_weights(void** state) {
    (void)state;
    char* d = tmpdir();
    write_model(d, "", EDIT_DROP, "model.layers.1.mlp.up_proj.weight");
    expect_load_error(d, "/model.safetensors: tensor 'model.layers.1.mlp.up_proj.weight' is missing (expected shape [12, 8]");
    write_model(d, "", EDIT_RESHAPE, "model.layers.0.self_attn.k_proj.weight");
    expect_load_error(d, "/model.safetensors: tensor 'model.layers.0.self_attn.k_proj.weight' has shape [8, 7], expected [8, 8]");
    write_model(d, "", EDIT_RESHAPE, "model.norm.weight");
    expect_load_error(d, "tensor 'model.norm.weight' has shape [7], expected [8]");
    write_model(d, "", EDIT_EXTRA, "model.layers.2.mlp.up_proj.weight");
    expect_load_error(d, "unexpected tensor 'model.layers.2.mlp.up_proj.weight' (shape [16, 8]) for LlamaForCausalLM with 2 layers");
    write_model(d, ",\"tie_word_embeddings\":true", EDIT_LM_HEAD_BAD, "lm_head.weight");
    expect_load_error(d, "tensor 'lm_head.weight' has shape [16, 7], expected [16, 8] (tie_word_embeddings)");
    write_model(d, "", EDIT_DROP, "lm_head.weight");
    expect_load_error(d, "tensor 'lm_head.weight' is missing (expected shape [16, 8]");

    // tied: lm_head.weight is not needed, and ignored when it has the embedding's shape
    write_model(d, ",\"tie_word_embeddings\":true", EDIT_EXTRA, "lm_head.weight");
    ModelConfig c;
    size_t n;
    free(load_dir(d, &c, &n));
    write_model(d, ",\"tie_word_embeddings\":true", EDIT_NONE, NULL);
    free(load_dir(d, &c, &n));
    float x;
    assert_int_equal(hf_load_weights(d, &c, &x, 1, err, sizeof(err)), -1);
    assert_contains(err, "the parameter buffer holds 1 floats, the config needs");

    // unsupported dtype: the numpy-written I8 embedding
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "cp %s %s/model.safetensors", DATA "bad/int8.safetensors", d);
    assert_int_equal(system(cmd), 0);
    write_text(d, "config.json", "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":4,\"intermediate_size\":4,"
                                 "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"vocab_size\":4}");
    expect_load_error(d, "/model.safetensors: tensor 'model.embed_tokens.weight': dtype I8 cannot be loaded");

    // no weights at all
    char path[512];
    snprintf(path, sizeof(path), "%s/model.safetensors", d);
    unlink(path);
    write_text(d, "pytorch_model.bin", "");
    expect_load_error(d, ": no model.safetensors or model.safetensors.index.json (pytorch_model.bin is not supported");
    rm_rf(d);

    // indexes
    ModelConfig tiny = parse_ok("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":4,\"intermediate_size\":4,"
                                "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"vocab_size\":4}");
    ParamInfo t[PARAM_COUNT];
    n = model_param_table(&tiny, t);
    float* p = malloc(n * sizeof(float));
    assert_int_equal(hf_load_weights(DATA "bad/missing_shard", &tiny, p, n, err, sizeof(err)), -1);
    assert_contains(err, "bad/missing_shard/model-00002-of-00002.safetensors: cannot open: No such file");
    d = tmpdir();
    write_model(d, "", EDIT_NONE, NULL);
    snprintf(cmd, sizeof(cmd), "mv %s/model.safetensors %s/model-00001-of-00001.safetensors", d, d);
    assert_int_equal(system(cmd), 0);
    const struct {
        const char* index;
        const char* expected;
    } idx[] = {
        {"{\"weight_map\":{\"model.norm.weight\":\"../model-00001-of-00001.safetensors\"}}",
         "weight_map['model.norm.weight'] must be a .safetensors file name in the directory"},
        {"{\"weight_map\":[]}", "key 'weight_map' must be an object of tensor name -> file name"},
        {"{\"weight_map\":{\"x\":\"model-00001-of-00001.safetensors\"}}",
         "weight_map lists tensor 'x' in model-00001-of-00001.safetensors, which has no such tensor"},
        {"{\"weight_map\":{\"model.norm.weight\":\"model-00001-of-00001.safetensors\"}}",
         "is in model-00001-of-00001.safetensors but weight_map does not list it"},
        {"{\"weight_map\":", "model.safetensors.index.json: line 1, column 14: invalid JSON"},
    };
    char* cfg = read_text(d, "config.json");
    ModelConfig c2 = parse_ok(cfg);
    free(cfg);
    ParamInfo t2[PARAM_COUNT];
    size_t n2 = model_param_table(&c2, t2);
    float* p2 = malloc(n2 * sizeof(float));
    for (size_t i = 0; i < sizeof(idx) / sizeof(idx[0]); i++) {
        write_text(d, "model.safetensors.index.json", idx[i].index);
        assert_int_equal(hf_load_weights(d, &c2, p2, n2, err, sizeof(err)), -1);
        assert_contains(err, idx[i].expected);
    }
    free(p2);
    free(p);
    rm_rf(d);
}

// ----------------------------------------------------------------------------
// round trips

static void round_trip(const ModelConfig* c, const float* p, size_t n, const char* src) {
    for (int pass = 0; pass < 2; pass++) {
        StDtype dt = pass ? ST_BF16 : ST_F32;
        char* d = tmpdir();
        char out[256];
        snprintf(out, sizeof(out), "%s/sub/model", d); // created on the way
        if (hf_save(out, c, p, n, dt, src, err, sizeof(err)) != 0) fail_msg("%s", err);
        ModelConfig c2;
        size_t n2;
        float* q = load_dir(out, &c2, &n2);
        assert_int_equal(n2, n);
        ModelConfig want = *c;
        if (strcmp(c->arch, "builtin") == 0) snprintf(want.arch, sizeof(want.arch), "%s", c2.arch);
        assert_memory_equal(&c2, &want, sizeof(want)); // every field, floats bit for bit
        for (size_t i = 0; i < n; i++) {
            float w = pass ? st_bf16_to_f32(st_f32_to_bf16(p[i])) : p[i];
            if (f32_bits(q[i]) != f32_bits(w)) fail_msg("%s %s: param %zu: %g != %g", c->arch, pass ? "bf16" : "f32", i, q[i], w);
        }
        char path[512];
        snprintf(path, sizeof(path), "%s/model.safetensors", out);
        StFile* f = st_open(path, err, sizeof(err));
        assert_non_null(f);
        assert_string_equal(st_metadata(f, "format"), "pt"); // transformers refuses files without it
        st_close(f);
        free(q);
        rm_rf(d);
    }
}

static void test_round_trips(void** state) {
    (void)state;
    const char* models[] = {"llama_f32", "qwen3_bf16", "qwen2_f16"};
    for (int i = 0; i < 3; i++) {
        char dir[256];
        snprintf(dir, sizeof(dir), DATA "%s", models[i]);
        ModelConfig c;
        size_t n;
        float* p = load_dir(dir, &c, &n);
        round_trip(&c, p, n, NULL);
        free(p);
    }
    // built-in configs become Llama, or Qwen3 with QK-norm, or Qwen2 with QKV bias
    const char* archs[] = {"LlamaForCausalLM", "Qwen3ForCausalLM", "Qwen2ForCausalLM"};
    for (int v = 0; v < 3; v++) {
        ModelConfig c;
        assert_int_equal(model_builtin_config("tiny", &c), 0);
        c.n_layers = 2;
        c.qk_norm = v == 1;
        c.qkv_bias = v == 2;
        c.rope_scaling = ROPE_SCALING_LINEAR;
        c.rope_factor = 2.5f;
        size_t n;
        float* p = random_params(&c, &n, (unsigned)v);
        round_trip(&c, p, n, NULL);
        char* d = tmpdir();
        if (hf_save(d, &c, p, n, ST_F32, NULL, err, sizeof(err))) fail_msg("%s", err);
        ModelConfig c2;
        if (hf_load_config(d, &c2, err, sizeof(err))) fail_msg("%s", err);
        assert_string_equal(c2.arch, archs[v]);
        rm_rf(d);
        free(p);
    }
    ModelConfig c;
    model_builtin_config("tiny", &c);
    c.qk_norm = c.qkv_bias = 1;
    size_t n;
    float* p = random_params(&c, &n, 9);
    assert_int_equal(hf_save("/tmp/unused", &c, p, n, ST_F32, NULL, err, sizeof(err)), -1);
    assert_contains(err, "no HF architecture has both QKV bias and QK-norm");
    free(p);
}

static void test_save_with_tokenizer(void** state) {
    (void)state;
    ModelConfig c;
    size_t n;
    float* p = load_dir(DATA "qwen3_bf16", &c, &n);
    char* src = tmpdir();
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "cp %s/config.json %s/", DATA "qwen3_bf16", src);
    assert_int_equal(system(cmd), 0);
    write_text(src, "tokenizer.json", "{\"model\": {\"type\": \"BPE\"}}\n");
    write_text(src, "generation_config.json", "{\"eos_token_id\": 61}\n");
    char* dst = tmpdir();
    if (hf_save(dst, &c, p, n, ST_BF16, src, err, sizeof(err))) fail_msg("%s", err);
    char* a = read_text(dst, "tokenizer.json");
    assert_string_equal(a, "{\"model\": {\"type\": \"BPE\"}}\n");
    free(a);
    a = read_text(dst, "generation_config.json");
    assert_string_equal(a, "{\"eos_token_id\": 61}\n");
    free(a);
    char* cfg = read_text(dst, "config.json");
    assert_contains(cfg, "\"eos_token_id\": 61"); // kept from the source config
    assert_contains(cfg, "\"transformers_version\": \"4.51.0\"");
    assert_contains(cfg, "\"torch_dtype\": \"bfloat16\"");
    assert_contains(cfg, "\"rms_norm_eps\": 1e-6,");
    assert_contains(cfg, "\"rope_theta\": 1000000.0");
    assert_contains(cfg, "\"head_dim\": 16");
    assert_contains(cfg, "\"rope_scaling\": null");
    free(cfg);
    // saving over the source directory keeps its tokenizer
    if (hf_save(src, &c, p, n, ST_F32, src, err, sizeof(err))) fail_msg("%s", err);
    a = read_text(src, "tokenizer.json");
    assert_string_equal(a, "{\"model\": {\"type\": \"BPE\"}}\n");
    free(a);
    // a source without tokenizer.json is an error
    char* empty = tmpdir();
    assert_int_equal(hf_save(dst, &c, p, n, ST_F32, empty, err, sizeof(err)), -1);
    assert_contains(err, "/tokenizer.json: no such file (needed to copy the tokenizer)");
    rm_rf(src);
    rm_rf(dst);
    rm_rf(empty);
    free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_configs), cmocka_unit_test(test_fixture_weights),
        cmocka_unit_test(test_config_defaults), cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_bad_weights),     cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_save_with_tokenizer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
