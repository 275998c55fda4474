// Unit tests of the safetensors reader and writer: dtype conversions against numpy (fixture
// tests/data/hf/dtypes.safetensors), the writer's bytes against a file laid out like HF's
// serializer (tools/hf_reference.py), round trips, a table of malformed headers with the message
// each must produce, and a deterministic fuzzer (truncations, byte flips, hostile lengths and
// header values) that asserts every input either fails cleanly or reads back exactly what its
// bytes say. Run it under -DINGRAIN_SANITIZE=address to prove there are no out-of-bounds reads.
#define _XOPEN_SOURCE 700
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/safetensors.h"

#define DATA INGRAIN_TEST_DATA "/data/hf/"

// ----------------------------------------------------------------------------
// helpers

static char err[1024];

static void assert_contains(const char* haystack, const char* needle) {
    if (!strstr(haystack, needle)) fail_msg("message\n  \"%s\"\ndoes not contain\n  \"%s\"", haystack, needle);
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static unsigned char* read_all(const char* path, size_t* n) {
    FILE* f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char* p = malloc(*n ? *n : 1);
    assert_int_equal(fread(p, 1, *n, f), *n);
    fclose(f);
    return p;
}

static float* read_tensor(const StFile* f, const char* name, size_t* n) {
    int i = st_find(f, name);
    if (i < 0) fail_msg("tensor %s not found", name);
    const StTensor* t = st_tensor(f, i);
    *n = t->numel;
    float* out = malloc((*n ? *n : 1) * sizeof(float));
    if (st_read_f32(f, t, out, *n, err, sizeof(err)) != 0) fail_msg("%s", err);
    return out;
}

// a file in memory: 8-byte length, header text, then data_len bytes of pattern
static unsigned char* make_file(const char* header, size_t data_len, size_t* n) {
    size_t h = strlen(header);
    *n = 8 + h + data_len;
    unsigned char* p = malloc(*n);
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(p + 8, header, h);
    for (size_t i = 0; i < data_len; i++) p[8 + h + i] = (unsigned char)(i * 37 + 11);
    return p;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) { // splitmix64: deterministic across runs and platforms
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// ----------------------------------------------------------------------------
// conversions against numpy's

static void check_pairs(const StFile* f, const char* name, const char* ref) {
    size_t n, m;
    float* got = read_tensor(f, name, &n);
    float* want = read_tensor(f, ref, &m);
    assert_int_equal(n, m);
    assert_true(n > 4000);
    for (size_t i = 0; i < n; i++) {
        if (f32_bits(got[i]) != f32_bits(want[i])) {
            fail_msg("%s[%zu]: got %g (0x%08x), numpy says %g (0x%08x)", name, i, got[i], f32_bits(got[i]), want[i],
                     f32_bits(want[i]));
        }
    }
    free(got);
    free(want);
}

static void test_conversions(void** state) {
    (void)state;
    StFile* f = st_open(DATA "dtypes.safetensors", err, sizeof(err));
    if (!f) fail_msg("%s", err);
    assert_string_equal(st_metadata(f, "format"), "pt");
    check_pairs(f, "f16", "f16_f32"); // bit-exact, NaN payloads included
    check_pairs(f, "bf16", "bf16_f32");
    st_close(f);
    // a few by hand
    assert_true(st_f16_to_f32(0x0001) == 0x1p-24f);
    assert_true(st_f16_to_f32(0x83FF) == -0x3FFp-24f);
    assert_true(st_f16_to_f32(0x7BFF) == 65504.0f);
    assert_true(isinf(st_f16_to_f32(0xFC00)) && st_f16_to_f32(0xFC00) < 0);
    assert_true(isnan(st_f16_to_f32(0x7E00)));
    assert_int_equal(f32_bits(st_f16_to_f32(0x8000)), 0x80000000u);
    assert_int_equal(st_f32_to_bf16(1.0f + 0x1p-8f), 0x3F80);      // tie to even: down
    assert_int_equal(st_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3F82);  // tie to even: up
    assert_int_equal(st_f32_to_bf16(3.4028235e38f), 0x7F80);       // rounds to inf
}

// ----------------------------------------------------------------------------
// the writer's bytes match HF's layout (written independently by tools/hf_reference.py)

static void check_writer(StDtype dtype, const char* ref_path) {
    StFile* in = st_open(DATA "writer_f32.safetensors", err, sizeof(err));
    if (!in) fail_msg("%s", err);
    int n = st_count(in);
    StWriteTensor ts[16];
    float* bufs[16];
    assert_true(n <= 16);
    for (int k = 0; k < n; k++) { // given in reverse name order: the writer must sort
        const StTensor* t = st_tensor(in, n - 1 - k);
        size_t m;
        bufs[k] = read_tensor(in, t->name, &m);
        ts[k] = (StWriteTensor){.name = t->name, .data = bufs[k], .ndim = t->ndim};
        memcpy(ts[k].shape, t->shape, sizeof(t->shape));
    }
    char path[] = "/tmp/ingrain_st_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    if (st_write(path, ts, n, dtype, err, sizeof(err)) != 0) fail_msg("%s", err);
    size_t a, b;
    unsigned char* got = read_all(path, &a);
    unsigned char* want = read_all(ref_path, &b);
    assert_int_equal(a, b);
    for (size_t i = 0; i < a; i++) {
        if (got[i] != want[i]) fail_msg("%s: byte %zu differs: 0x%02x, HF layout has 0x%02x", ref_path, i, got[i], want[i]);
    }
    unlink(path);
    free(got);
    free(want);
    for (int k = 0; k < n; k++) free(bufs[k]);
    st_close(in);
}

static void test_writer_bytes(void** state) {
    (void)state;
    check_writer(ST_F32, DATA "writer_f32.safetensors");
    check_writer(ST_BF16, DATA "writer_bf16.safetensors");
}

static void test_round_trip(void** state) {
    (void)state;
    float a[6 * 7], b[5];
    for (int i = 0; i < 42; i++) a[i] = (float)((int)(rnd() % 20001) - 10000) * 1.2345e-3f;
    for (int i = 0; i < 5; i++) b[i] = (float)i - 2.5f;
    StWriteTensor ts[] = {{.name = "w", .data = a, .ndim = 2, .shape = {6, 7}}, {.name = "v", .data = b, .ndim = 1, .shape = {5}}};
    char path[] = "/tmp/ingrain_st_XXXXXX";
    close(mkstemp(path));
    for (int pass = 0; pass < 2; pass++) {
        StDtype dt = pass ? ST_BF16 : ST_F32;
        if (st_write(path, ts, 2, dt, err, sizeof(err)) != 0) fail_msg("%s", err);
        StFile* f = st_open(path, err, sizeof(err));
        if (!f) fail_msg("%s", err);
        assert_int_equal(st_count(f), 2);
        const StTensor* t = st_tensor(f, st_find(f, "w"));
        assert_int_equal(t->dtype, dt);
        assert_int_equal(t->ndim, 2);
        assert_int_equal(t->shape[0], 6);
        assert_int_equal(t->shape[1], 7);
        size_t n;
        float* got = read_tensor(f, "w", &n);
        for (int i = 0; i < 42; i++) {
            float want = pass ? st_bf16_to_f32(st_f32_to_bf16(a[i])) : a[i];
            assert_int_equal(f32_bits(got[i]), f32_bits(want));
        }
        free(got);
        st_close(f);
    }
    // a tensor that is given twice, and a bad destination, are errors
    StWriteTensor dup[] = {ts[0], ts[0]};
    assert_int_equal(st_write(path, dup, 2, ST_F32, err, sizeof(err)), -1);
    assert_contains(err, "tensor 'w': the name is given twice");
    assert_int_equal(st_write("/nonexistent-dir/x.safetensors", ts, 2, ST_F32, err, sizeof(err)), -1);
    assert_contains(err, "/nonexistent-dir/x.safetensors.tmp: cannot create");
    assert_int_equal(st_write(path, ts, 2, ST_F16, err, sizeof(err)), -1);
    assert_contains(err, "can only write F32 or BF16");
    unlink(path);
}

static void test_unsupported_dtype(void** state) {
    (void)state;
    StFile* f = st_open(DATA "bad/int8.safetensors", err, sizeof(err));
    if (!f) fail_msg("%s", err);
    float out[16];
    const StTensor* t = st_tensor(f, st_find(f, "model.embed_tokens.weight"));
    assert_int_equal(st_read_f32(f, t, out, 16, err, sizeof(err)), -1);
    assert_contains(err, "bad/int8.safetensors: tensor 'model.embed_tokens.weight': dtype I8 cannot be loaded");
    t = st_tensor(f, st_find(f, "model.norm.weight"));
    assert_int_equal(st_read_f32(f, t, out, 6, err, sizeof(err)), -1);
    assert_contains(err, "tensor 'model.norm.weight': dtype F64 cannot be loaded (supported: F32, BF16, F16)");
    t = st_tensor(f, st_find(f, "ok"));
    assert_int_equal(st_read_f32(f, t, out, 3, err, sizeof(err)), -1);
    assert_contains(err, "tensor 'ok': has 2 elements but the destination holds 3");
    assert_int_equal(st_read_f32(f, t, out, 2, err, sizeof(err)), 0);
    assert_true(out[0] == 1.0f && out[1] == 2.0f);
    st_close(f);
    assert_null(st_open(DATA "no-such-file.safetensors", err, sizeof(err)));
    assert_contains(err, "no-such-file.safetensors: cannot open: No such file");
    assert_null(st_open(DATA, err, sizeof(err)));
    assert_contains(err, "not a regular file");
}

// ----------------------------------------------------------------------------
// malformed headers: each must fail with a message naming the file and what is wrong

#define T8 "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"

typedef struct {
    const char* header;
    size_t data_len;
    const char* expected;
} BadHeader;

static const BadHeader bad_headers[] = {
    {"[]", 0, "bad.st: the header does not start with '{'"},
    {"\"x\"", 0, "does not start with '{'"},
    {"", 0, "does not start with '{'"},
    {"{", 0, "bad.st: the header is not valid JSON"},
    {"{\"a\":" T8 "} x", 8, "not valid JSON"},
    {"{\"a\":1}", 0, "bad.st: tensor 'a': expected an object with dtype, shape and data_offsets, got an integer"},
    {"{\"a\":" T8 ",\"a\":" T8 "}", 8, "not valid JSON: duplicate object key"},
    {"{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "tensor 'a': missing 'dtype'"},
    {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, "tensor 'a': missing 'shape'"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "tensor 'a': missing 'data_offsets'"},
    {"{\"a\":{\"dtype\":5,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "tensor 'a': dtype must be a string, got an integer"},
    {"{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "tensor 'a': unknown dtype 'F33'"},
    {"{\"a\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype 'f32'"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":\"2\",\"data_offsets\":[0,8]}}", 8, "tensor 'a': shape must be a list, got a string"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,8]}}", 8, "shape[0] must be a non-negative integer, got an integer"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8, "shape[0] must be a non-negative integer, got a real"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,[2]],\"data_offsets\":[0,8]}}", 8, "shape[1] must be a non-negative integer, got a list"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", 8, "shape has 9 dimensions, at most 8"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,8]}}", 8,
     "tensor 'a': the product of the shape overflows 64 bits"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,8]}}", 8,
     "tensor 'a': the byte size of the shape overflows 64 bits"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[9223372036854775807,2],\"data_offsets\":[0,8]}}", 8, "overflows 64 bits"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, "data_offsets must be a list of two non-negative integers"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,16]}}", 8, "data_offsets must be a list of two"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8, "data_offsets must be a list of two non-negative"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":{\"0\":8}}}", 8, "data_offsets must be a list of two"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "tensor 'a': data_offsets [8, 0] end before they begin"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,99999999999999999999]}}", 8, "not valid JSON"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,9223372036854775807]}}", 8,
     "tensor 'a': data_offsets [0, 9223372036854775807] run past the data section (8 bytes)"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 8, "run past the data section (8 bytes)"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8,
     "tensor 'a': data_offsets [0, 4] hold 4 bytes, but shape [2] of F32 needs 8"},
    {"{\"a\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16, "hold 16 bytes, but shape [2, 2] of BF16 needs 8"},
    {"{\"a\":" T8 ",\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
     "tensor 'b': data_offsets [4, 12] overlap tensor 'a' (ends at 8)"},
    {"{\"a\":" T8 ",\"b\":" T8 "}", 8, "tensor 'b': data_offsets [0, 8] overlap tensor 'a'"},
    {"{\"a\":" T8 ",\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}", 20,
     "tensor 'b': data_offsets start at 12, leaving a gap after byte 8"},
    {"{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "tensor 'b': data_offsets start at 4"},
    {"{\"a\":" T8 "}", 16, "bad.st: the tensors cover 8 bytes of the 16-byte data section"},
    {"{}", 1, "the tensors cover 0 bytes of the 1-byte data section"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"extra\":1}}", 8, "tensor 'a': unknown key 'extra'"},
    {"{\"__metadata__\":[],\"a\":" T8 "}", 8, "bad.st: __metadata__ must be an object, got a list"},
    {"{\"__metadata__\":{\"format\":1}}", 0, "__metadata__ value 'format' must be a string, got an integer"},
    {"{\"a\\u0000b\":" T8 "}", 8, "not valid JSON"},
    {"{\"\xff\xfe\":" T8 "}", 8, "not valid JSON"},
};

static void test_bad_headers(void** state) {
    (void)state;
    int n = (int)(sizeof(bad_headers) / sizeof(bad_headers[0]));
    for (int i = 0; i < n; i++) {
        size_t size;
        unsigned char* p = make_file(bad_headers[i].header, bad_headers[i].data_len, &size);
        StFile* f = st_open_memory(p, size, "bad.st", err, sizeof(err));
        if (f) fail_msg("case %d was accepted: %s", i, bad_headers[i].header);
        assert_contains(err, "bad.st: ");
        assert_contains(err, bad_headers[i].expected);
        free(p);
    }
    // deeply nested junk: jansson's depth limit, not the stack, stops it
    size_t depth = 100000, size;
    char* deep = malloc(2 * depth + 16);
    strcpy(deep, "{\"a\":");
    memset(deep + 5, '[', depth);
    memset(deep + 5 + depth, ']', depth);
    strcpy(deep + 5 + 2 * depth, "}");
    unsigned char* p = make_file(deep, 0, &size);
    assert_null(st_open_memory(p, size, "bad.st", err, sizeof(err)));
    assert_contains(err, "not valid JSON");
    free(p);
    free(deep);
    // lengths
    unsigned char small[7] = {0};
    assert_null(st_open_memory(small, sizeof(small), "bad.st", err, sizeof(err)));
    assert_contains(err, "bad.st: the file is 7 bytes, too short for the 8-byte header length");
    const uint64_t lens[] = {UINT64_MAX, (uint64_t)1 << 63, ST_MAX_HEADER + 1ull, 3};
    const char* want[] = {"exceeds the 100000000-byte limit", "exceeds", "exceeds", "the header length 3 runs past the end of the 10-byte file"};
    for (int i = 0; i < 4; i++) {
        unsigned char buf[10] = {0, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
        for (int b = 0; b < 8; b++) buf[b] = (unsigned char)(lens[i] >> (8 * b));
        assert_null(st_open_memory(buf, sizeof(buf), "bad.st", err, sizeof(err)));
        assert_contains(err, want[i]);
    }
    // an empty header and a zero-size tensor are valid
    p = make_file("{\"e\":{\"dtype\":\"F16\",\"shape\":[0,3],\"data_offsets\":[0,0]}}", 0, &size);
    StFile* f = st_open_memory(p, size, "ok.st", err, sizeof(err));
    if (!f) fail_msg("%s", err);
    assert_int_equal(st_count(f), 1);
    assert_int_equal(st_tensor(f, 0)->numel, 0);
    st_close(f);
    free(p);
}

// ----------------------------------------------------------------------------
// fuzzing

static long fuzz_cases, fuzz_accepted;

// if f parsed, its tensors must be consistent with the bytes: tile the data section, and read
// back exactly the values their bytes encode
static void check_parsed(const StFile* f, const unsigned char* p, size_t size) {
    uint64_t n_hdr = 0;
    for (int i = 7; i >= 0; i--) n_hdr = (n_hdr << 8) | p[i];
    assert_true(n_hdr <= size - 8);
    uint64_t data_len = size - 8 - n_hdr, covered = 0;
    for (int i = 0; i < st_count(f); i++) {
        const StTensor* t = st_tensor(f, i);
        assert_true(t->begin <= t->end && t->end <= data_len);
        assert_int_equal(t->end - t->begin, t->numel * st_dtype_size(t->dtype));
        assert_int_equal(st_find(f, t->name), i);
        covered += t->end - t->begin;
        if (t->dtype != ST_F32 && t->dtype != ST_BF16 && t->dtype != ST_F16) continue;
        float* out = malloc((t->numel ? t->numel : 1) * sizeof(float));
        assert_int_equal(st_read_f32(f, t, out, t->numel, err, sizeof(err)), 0);
        const unsigned char* d = p + 8 + n_hdr + t->begin;
        for (uint64_t j = 0; j < t->numel; j++) {
            float want;
            if (t->dtype == ST_F32) {
                memcpy(&want, d + 4 * j, 4);
            } else {
                uint16_t h = (uint16_t)(d[2 * j] | (d[2 * j + 1] << 8));
                want = t->dtype == ST_BF16 ? st_bf16_to_f32(h) : st_f16_to_f32(h);
            }
            assert_int_equal(f32_bits(out[j]), f32_bits(want));
        }
        free(out);
    }
    assert_int_equal(covered, data_len);
}

// parses a private, exactly-sized copy so that any overread is outside the allocation
static void fuzz_one(const unsigned char* src, size_t size) {
    unsigned char* p = malloc(size ? size : 1);
    memcpy(p, src, size);
    StFile* f = st_open_memory(p, size, "fuzz.st", err, sizeof(err));
    fuzz_cases++;
    if (f) {
        fuzz_accepted++;
        check_parsed(f, p, size);
        st_close(f);
    } else {
        assert_true(strncmp(err, "fuzz.st: ", 9) == 0);
    }
    free(p);
}

static const char* base_header =
    "{\"__metadata__\":{\"format\":\"pt\"},"
    "\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
    "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[24,32]},"
    "\"h\":{\"dtype\":\"F16\",\"shape\":[1,2,2],\"data_offsets\":[32,40]},"
    "\"i\":{\"dtype\":\"I8\",\"shape\":[3],\"data_offsets\":[40,43]}}";

static const char* const evil_ints[] = {"0", "1", "2", "3", "8", "24", "-1", "-0", "4294967296", "9223372036854775807",
                                        "18446744073709551615", "1e3", "2.5", "\"2\"", "null", "[]", "{}", "true"};
static const char* const evil_dtypes[] = {"\"F32\"", "\"BF16\"", "\"F16\"", "\"I8\"", "\"F64\"", "\"BOOL\"", "\"\"",
                                          "\"f32\"", "1", "null", "[\"F32\"]"};

static void test_fuzz(void** state) {
    (void)state;
    size_t size;
    unsigned char* base = make_file(base_header, 43, &size);
    fuzz_one(base, size);
    assert_int_equal(fuzz_accepted, 1);
    // truncation at every length (in memory and, through pread, on disk)
    char path[] = "/tmp/ingrain_st_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    for (size_t len = 0; len < size; len++) {
        fuzz_one(base, len);
        FILE* fp = fopen(path, "wb");
        fwrite(base, 1, len, fp);
        fclose(fp);
        StFile* f = st_open(path, err, sizeof(err));
        assert_null(f);
        assert_contains(err, path);
    }
    unlink(path);
    assert_int_equal(fuzz_accepted, 1);
    // every byte set to characters that matter to JSON and to the length field
    const unsigned char subst[] = {0x00, 0xff, 0x80, '"', '{', '}', '[', ']', ',', ':', '-', '9', '0', ' ', '\\'};
    unsigned char* p = malloc(size);
    for (size_t i = 0; i < size; i++) {
        for (size_t s = 0; s < sizeof(subst); s++) {
            memcpy(p, base, size);
            p[i] = subst[s];
            fuzz_one(p, size);
        }
    }
    // random multi-byte flips
    for (int k = 0; k < 20000; k++) {
        memcpy(p, base, size);
        int flips = 1 + (int)(rnd() % 4);
        for (int j = 0; j < flips; j++) p[rnd() % size] ^= (unsigned char)(1u << (rnd() % 8));
        fuzz_one(p, size);
    }
    // hostile header lengths
    for (int k = 0; k < 2000; k++) {
        memcpy(p, base, size);
        uint64_t n = k < 64 ? (uint64_t)1 << k : k < 128 ? ((uint64_t)1 << (k - 64)) - 1 : rnd() >> (rnd() % 64);
        for (int b = 0; b < 8; b++) p[b] = (unsigned char)(n >> (8 * b));
        fuzz_one(p, size);
    }
    free(p);
    free(base);
    // headers assembled from hostile values, over random data lengths
    for (int k = 0; k < 6000; k++) {
        char hdr[1024];
        int at = snprintf(hdr, sizeof(hdr), "{");
        int nt = 1 + (int)(rnd() % 3);
        for (int t = 0; t < nt; t++) {
            at += snprintf(hdr + at, sizeof(hdr) - (size_t)at, "%s\"t%d\":{\"dtype\":%s,\"shape\":[%s,%s],\"data_offsets\":[%s,%s]}",
                           t ? "," : "", t, evil_dtypes[rnd() % 11], evil_ints[rnd() % 18], evil_ints[rnd() % 18],
                           evil_ints[rnd() % 18], evil_ints[rnd() % 18]);
        }
        snprintf(hdr + at, sizeof(hdr) - (size_t)at, "}");
        unsigned char* q = make_file(hdr, rnd() % 40, &size);
        fuzz_one(q, size);
        free(q);
    }
    print_message("fuzz: %ld inputs, %ld accepted and read back exactly, the rest rejected with a message\n",
                  fuzz_cases, fuzz_accepted);
    assert_true(fuzz_cases > 20000);
    assert_true(fuzz_accepted > 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conversions),      cmocka_unit_test(test_writer_bytes),
        cmocka_unit_test(test_round_trip),       cmocka_unit_test(test_unsupported_dtype),
        cmocka_unit_test(test_bad_headers),      cmocka_unit_test(test_fuzz),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
