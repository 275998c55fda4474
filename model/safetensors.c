// safetensors reader and writer (see safetensors.h). The header is parsed with jansson and
// validated before anything else looks at it; tensor data is read with pread (or memcpy for
// in-memory files) only inside the byte ranges the validated header allows.
#include "model/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/check.h"
#include "common/log.h"
#include "io/json_util.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host (the format is little-endian)"
#endif

struct StFile {
    char* path;
    int fd;                   // -1 for in-memory files
    const unsigned char* mem; // in-memory files
    uint64_t size;            // bytes in the file
    uint64_t data_start;      // 8 + header length
    int n;
    StTensor* t; // (n) sorted by name
    json_t* meta; // "__metadata__" object, or NULL
};

// ----------------------------------------------------------------------------
// dtypes and conversions

static const struct {
    const char* name;
    size_t size;
} dtypes[ST_DTYPE_COUNT] = {
    [ST_BOOL] = {"BOOL", 1}, [ST_U8] = {"U8", 1},   [ST_I8] = {"I8", 1},   [ST_F8_E5M2] = {"F8_E5M2", 1},
    [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_I16] = {"I16", 2}, [ST_U16] = {"U16", 2}, [ST_F16] = {"F16", 2},
    [ST_BF16] = {"BF16", 2}, [ST_I32] = {"I32", 4}, [ST_U32] = {"U32", 4}, [ST_F32] = {"F32", 4},
    [ST_F64] = {"F64", 8},   [ST_I64] = {"I64", 8}, [ST_U64] = {"U64", 8},
};

const char* st_dtype_name(StDtype d) { return (unsigned)d < ST_DTYPE_COUNT ? dtypes[d].name : "?"; }
size_t st_dtype_size(StDtype d) { return (unsigned)d < ST_DTYPE_COUNT ? dtypes[d].size : 0; }

static int dtype_parse(const char* s, StDtype* out) {
    for (int i = 0; i < ST_DTYPE_COUNT; i++) {
        if (strcmp(s, dtypes[i].name) == 0) {
            *out = (StDtype)i;
            return 0;
        }
    }
    return -1;
}

static float bits_to_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

float st_bf16_to_f32(uint16_t h) { return bits_to_f32((uint32_t)h << 16); }

float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1f) return bits_to_f32(sign | 0x7f800000u | (man << 13)); // inf, NaN (payload kept)
    if (exp != 0) return bits_to_f32(sign | ((exp + 112u) << 23) | (man << 13));
    float mag = (float)man * 0x1p-24f; // zero or subnormal: man * 2^-24 is exact in f32
    return sign ? -mag : mag;
}

uint16_t st_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); // quiet NaN, sign kept
    u += 0x7fffu + ((u >> 16) & 1u); // round to nearest, ties to even (overflow gives inf)
    return (uint16_t)(u >> 16);
}

const char* st_shape_str(const int64_t* shape, int ndim, char* buf, size_t n) {
    size_t at = 0;
    buf[0] = '\0';
    at += (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && at < n; i++) {
        at += (size_t)snprintf(buf + at, n - at, "%s%lld", i ? ", " : "", (long long)shape[i]);
    }
    if (at < n) snprintf(buf + at, n - at, "]");
    return buf;
}

// ----------------------------------------------------------------------------
// errors: "<file>: message" or "<file>: tensor '<name>': message"

__attribute__((format(printf, 5, 6))) static int st_fail(char* err, size_t errlen, const char* file,
                                                          const char* tensor, const char* fmt, ...) {
    int k = tensor ? snprintf(err, errlen, "%s: tensor '%.200s': ", file, tensor) : snprintf(err, errlen, "%s: ", file);
    if (k < 0 || (size_t)k >= errlen) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + k, errlen - (size_t)k, fmt, ap);
    va_end(ap);
    return -1;
}

// ----------------------------------------------------------------------------
// byte access: the one place that touches the file's bytes

static int src_read(const StFile* f, uint64_t off, void* dst, size_t n) {
    if (off > f->size || n > f->size - off) return ERANGE;
    if (f->mem) {
        memcpy(dst, f->mem + off, n);
        return 0;
    }
    unsigned char* p = dst;
    while (n > 0) {
        ssize_t got = pread(f->fd, p, n, (off_t)off);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return errno;
        if (got == 0) return ERANGE; // the file shrank after it was opened
        p += got;
        off += (uint64_t)got;
        n -= (size_t)got;
    }
    return 0;
}

static const char* read_error(int e) { return e == ERANGE ? "the file ends early" : strerror(e); }

// ----------------------------------------------------------------------------
// header validation

static int parse_u64(const json_t* v, uint64_t* out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int parse_tensor(StFile* f, const char* name, json_t* v, uint64_t data_len, StTensor* t, char* err,
                        size_t errlen) {
    const char* file = f->path;
    if (!json_is_object(v)) {
        return st_fail(err, errlen, file, name, "expected an object with dtype, shape and data_offsets, got %s",
                       json_kind(v));
    }
    const char* key;
    json_t* val;
    json_object_foreach(v, key, val) {
        if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets")) {
            return st_fail(err, errlen, file, name, "unknown key '%.100s' (expected dtype, shape, data_offsets)", key);
        }
    }
    json_t* jd = json_object_get(v, "dtype");
    json_t* js = json_object_get(v, "shape");
    json_t* jo = json_object_get(v, "data_offsets");
    if (!jd || !js || !jo) {
        return st_fail(err, errlen, file, name, "missing '%s'", !jd ? "dtype" : !js ? "shape" : "data_offsets");
    }
    if (!json_is_string(jd)) return st_fail(err, errlen, file, name, "dtype must be a string, got %s", json_kind(jd));
    if (dtype_parse(json_string_value(jd), &t->dtype) != 0) {
        return st_fail(err, errlen, file, name, "unknown dtype '%.40s'", json_string_value(jd));
    }
    if (!json_is_array(js)) return st_fail(err, errlen, file, name, "shape must be a list, got %s", json_kind(js));
    if (json_array_size(js) > ST_MAX_DIMS) {
        return st_fail(err, errlen, file, name, "shape has %zu dimensions, at most %d are supported",
                       json_array_size(js), ST_MAX_DIMS);
    }
    t->ndim = (int)json_array_size(js);
    t->numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        uint64_t d;
        if (parse_u64(json_array_get(js, (size_t)i), &d) != 0) {
            return st_fail(err, errlen, file, name, "shape[%d] must be a non-negative integer, got %s", i,
                           json_kind(json_array_get(js, (size_t)i)));
        }
        t->shape[i] = (int64_t)d;
        if (__builtin_mul_overflow(t->numel, d, &t->numel)) {
            return st_fail(err, errlen, file, name, "the product of the shape overflows 64 bits");
        }
    }
    if (!json_is_array(jo) || json_array_size(jo) != 2 || parse_u64(json_array_get(jo, 0), &t->begin) != 0 ||
        parse_u64(json_array_get(jo, 1), &t->end) != 0) {
        return st_fail(err, errlen, file, name, "data_offsets must be a list of two non-negative integers");
    }
    if (t->begin > t->end) {
        return st_fail(err, errlen, file, name, "data_offsets [%llu, %llu] end before they begin",
                       (unsigned long long)t->begin, (unsigned long long)t->end);
    }
    if (t->end > data_len) {
        return st_fail(err, errlen, file, name, "data_offsets [%llu, %llu] run past the data section (%llu bytes)",
                       (unsigned long long)t->begin, (unsigned long long)t->end, (unsigned long long)data_len);
    }
    uint64_t nbytes;
    if (__builtin_mul_overflow(t->numel, (uint64_t)dtypes[t->dtype].size, &nbytes)) {
        return st_fail(err, errlen, file, name, "the byte size of the shape overflows 64 bits");
    }
    if (t->end - t->begin != nbytes) {
        char s[160];
        return st_fail(err, errlen, file, name, "data_offsets [%llu, %llu] hold %llu bytes, but shape %s of %s needs %llu",
                       (unsigned long long)t->begin, (unsigned long long)t->end,
                       (unsigned long long)(t->end - t->begin), st_shape_str(t->shape, t->ndim, s, sizeof(s)),
                       dtypes[t->dtype].name, (unsigned long long)nbytes);
    }
    t->name = strdupCheck(name);
    return 0;
}

static int by_name(const void* a, const void* b) {
    return strcmp(((const StTensor*)a)->name, ((const StTensor*)b)->name);
}

static int by_offset(const void* a, const void* b) {
    const StTensor *x = *(const StTensor* const*)a, *y = *(const StTensor* const*)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

// the tensors, sorted by offset, must tile the data section exactly, as the reference requires
static int check_tiling(const StFile* f, uint64_t data_len, char* err, size_t errlen) {
    const StTensor** order = mallocCheck((size_t)f->n * sizeof(*order));
    for (int i = 0; i < f->n; i++) order[i] = &f->t[i];
    qsort(order, (size_t)f->n, sizeof(*order), by_offset);
    uint64_t pos = 0;
    int rc = 0;
    for (int i = 0; i < f->n && rc == 0; i++) {
        const StTensor* t = order[i];
        if (t->begin < pos) {
            rc = st_fail(err, errlen, f->path, t->name, "data_offsets [%llu, %llu] overlap tensor '%.200s' (ends at %llu)",
                         (unsigned long long)t->begin, (unsigned long long)t->end, order[i - 1]->name,
                         (unsigned long long)pos);
        } else if (t->begin > pos) {
            rc = st_fail(err, errlen, f->path, t->name,
                         "data_offsets start at %llu, leaving a gap after byte %llu (tensors must be contiguous)",
                         (unsigned long long)t->begin, (unsigned long long)pos);
        }
        pos = t->end;
    }
    if (rc == 0 && pos != data_len) {
        rc = st_fail(err, errlen, f->path, NULL,
                     "the tensors cover %llu bytes of the %llu-byte data section (trailing bytes or a truncated header)",
                     (unsigned long long)pos, (unsigned long long)data_len);
    }
    free(order);
    return rc;
}

static int parse_header(StFile* f, const char* hdr, size_t n_hdr, char* err, size_t errlen) {
    const uint64_t data_len = f->size - f->data_start;
    if (n_hdr == 0 || hdr[0] != '{') {
        return st_fail(err, errlen, f->path, NULL, "the header does not start with '{' (not a safetensors file?)");
    }
    json_error_t je;
    json_t* root = json_loadb(hdr, n_hdr, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        return st_fail(err, errlen, f->path, NULL, "the header is not valid JSON: %s (header byte %d)", je.text,
                       je.position);
    }
    int rc = 0; // the root is an object: valid JSON that starts with '{'
    f->t = callocCheck(json_object_size(root) + 1, sizeof(StTensor));
    const char* key;
    json_t* val;
    json_object_foreach(root, key, val) {
        if (rc != 0) break;
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(val)) {
                rc = st_fail(err, errlen, f->path, NULL, "__metadata__ must be an object, got %s", json_kind(val));
                break;
            }
            const char* mk;
            json_t* mv;
            json_object_foreach(val, mk, mv) {
                if (!json_is_string(mv)) {
                    rc = st_fail(err, errlen, f->path, NULL, "__metadata__ value '%.100s' must be a string, got %s",
                                 mk, json_kind(mv));
                    break;
                }
            }
            f->meta = json_incref(val);
            continue;
        }
        rc = parse_tensor(f, key, val, data_len, &f->t[f->n], err, errlen);
        if (rc == 0) f->n++;
    }
    json_decref(root);
    if (rc != 0) return rc;
    qsort(f->t, (size_t)f->n, sizeof(StTensor), by_name);
    return check_tiling(f, data_len, err, errlen);
}

// ----------------------------------------------------------------------------
// opening

static StFile* st_new(const char* name) {
    StFile* f = callocCheck(1, sizeof(StFile));
    f->path = strdupCheck(name);
    f->fd = -1;
    return f;
}

// reads and validates the header of f (size, and fd or mem, already set)
static int load_header(StFile* f, char* err, size_t errlen) {
    unsigned char len8[8];
    if (f->size < 8) {
        return st_fail(err, errlen, f->path, NULL, "the file is %llu bytes, too short for the 8-byte header length",
                       (unsigned long long)f->size);
    }
    int e = src_read(f, 0, len8, 8);
    if (e != 0) return st_fail(err, errlen, f->path, NULL, "cannot read the header length: %s", read_error(e));
    uint64_t n_hdr = 0;
    for (int i = 7; i >= 0; i--) n_hdr = (n_hdr << 8) | len8[i];
    if (n_hdr > ST_MAX_HEADER) {
        return st_fail(err, errlen, f->path, NULL, "the header length %llu exceeds the %u-byte limit (corrupt file?)",
                       (unsigned long long)n_hdr, ST_MAX_HEADER);
    }
    if (n_hdr > f->size - 8) {
        return st_fail(err, errlen, f->path, NULL, "the header length %llu runs past the end of the %llu-byte file",
                       (unsigned long long)n_hdr, (unsigned long long)f->size);
    }
    f->data_start = 8 + n_hdr;
    char* hdr = mallocCheck((size_t)n_hdr);
    e = src_read(f, 8, hdr, (size_t)n_hdr);
    int rc = e != 0 ? st_fail(err, errlen, f->path, NULL, "cannot read the header: %s", read_error(e))
                    : parse_header(f, hdr, (size_t)n_hdr, err, errlen);
    free(hdr);
    return rc;
}

static StFile* st_finish_open(StFile* f, char* err, size_t errlen) {
    if (load_header(f, err, errlen) == 0) return f;
    st_close(f);
    return NULL;
}

StFile* st_open(const char* path, char* err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        st_fail(err, errlen, path, NULL, "cannot open: %s", strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        st_fail(err, errlen, path, NULL, "not a regular file");
        close(fd);
        return NULL;
    }
    StFile* f = st_new(path);
    f->fd = fd;
    f->size = (uint64_t)st.st_size;
    return st_finish_open(f, err, errlen);
}

StFile* st_open_memory(const void* data, size_t size, const char* name, char* err, size_t errlen) {
    StFile* f = st_new(name);
    f->mem = data;
    f->size = size;
    return st_finish_open(f, err, errlen);
}

void st_close(StFile* f) {
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    for (int i = 0; i < f->n; i++) free((char*)f->t[i].name);
    free(f->t);
    json_decref(f->meta);
    free(f->path);
    free(f);
}

// ----------------------------------------------------------------------------
// lookups

const char* st_path(const StFile* f) { return f->path; }
int st_count(const StFile* f) { return f->n; }
const StTensor* st_tensor(const StFile* f, int i) { return (i >= 0 && i < f->n) ? &f->t[i] : NULL; }

int st_find(const StFile* f, const char* name) {
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(name, f->t[mid].name);
        if (c == 0) return mid;
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return -1;
}

const char* st_metadata(const StFile* f, const char* key) {
    return f->meta ? json_string_value(json_object_get(f->meta, key)) : NULL;
}

// ----------------------------------------------------------------------------
// reading tensors

#define ST_CHUNK 65536 // elements converted per staging step

int st_read_f32(const StFile* f, const StTensor* t, float* out, size_t n, char* err, size_t errlen) {
    if (t->dtype != ST_F32 && t->dtype != ST_BF16 && t->dtype != ST_F16) {
        return st_fail(err, errlen, f->path, t->name, "dtype %s cannot be loaded (supported: F32, BF16, F16)",
                       dtypes[t->dtype].name);
    }
    if (t->numel != n) {
        return st_fail(err, errlen, f->path, t->name, "has %llu elements but the destination holds %zu",
                       (unsigned long long)t->numel, n);
    }
    const uint64_t base = f->data_start + t->begin;
    if (t->dtype == ST_F32) {
        int e = src_read(f, base, out, n * sizeof(float));
        return e ? st_fail(err, errlen, f->path, t->name, "read failed: %s", read_error(e)) : 0;
    }
    uint16_t* stage = mallocCheck(ST_CHUNK * sizeof(uint16_t));
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i += ST_CHUNK) {
        size_t m = n - i < ST_CHUNK ? n - i : ST_CHUNK;
        int e = src_read(f, base + 2 * (uint64_t)i, stage, m * sizeof(uint16_t));
        if (e) {
            rc = st_fail(err, errlen, f->path, t->name, "read failed: %s", read_error(e));
            break;
        }
        if (t->dtype == ST_BF16) {
            for (size_t j = 0; j < m; j++) out[i + j] = st_bf16_to_f32(stage[j]);
        } else {
            for (size_t j = 0; j < m; j++) out[i + j] = st_f16_to_f32(stage[j]);
        }
    }
    free(stage);
    return rc;
}

// ----------------------------------------------------------------------------
// writing

static int by_write_name(const void* a, const void* b) {
    return strcmp((*(const StWriteTensor* const*)a)->name, (*(const StWriteTensor* const*)b)->name);
}

// the compact JSON header padded with spaces to a multiple of 8; NULL with err on bad input
static char* build_header(const char* path, const StWriteTensor* const* order, int n, StDtype dtype, size_t* len,
                          char* err, size_t errlen) {
    json_t* root = json_object();
    json_t* meta = json_object();
    json_object_set_new(meta, "format", json_string("pt"));
    json_object_set_new(root, "__metadata__", meta);
    uint64_t off = 0;
    for (int k = 0; k < n; k++) {
        const StWriteTensor* t = order[k];
        uint64_t numel = 1, nbytes;
        int bad = t->ndim < 0 || t->ndim > ST_MAX_DIMS;
        for (int d = 0; d < t->ndim && !bad; d++) {
            bad = t->shape[d] < 0 || __builtin_mul_overflow(numel, (uint64_t)t->shape[d], &numel);
        }
        if (bad || __builtin_mul_overflow(numel, (uint64_t)dtypes[dtype].size, &nbytes) || off + nbytes < off ||
            (numel > 0 && !t->data)) {
            json_decref(root);
            st_fail(err, errlen, path, t->name, "invalid shape or missing data");
            return NULL;
        }
        json_t* shape = json_array();
        for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
        json_t* info = json_object();
        json_object_set_new(info, "dtype", json_string(dtypes[dtype].name));
        json_object_set_new(info, "shape", shape);
        json_object_set_new(info, "data_offsets",
                            json_pack("[II]", (json_int_t)off, (json_int_t)(off + nbytes)));
        json_object_set_new(root, t->name, info);
        off += nbytes;
    }
    char* text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!text) fatal("json_dumps of the safetensors header failed (out of memory)");
    size_t m = strlen(text), padded = (m + 7) / 8 * 8;
    char* hdr = mallocCheck(padded);
    memcpy(hdr, text, m);
    memset(hdr + m, ' ', padded - m);
    free(text);
    *len = padded;
    return hdr;
}

static int write_data(FILE* fp, const StWriteTensor* t, StDtype dtype) {
    size_t numel = 1;
    for (int d = 0; d < t->ndim; d++) numel *= (size_t)t->shape[d];
    if (dtype == ST_F32) return numel == 0 || fwrite(t->data, sizeof(float), numel, fp) == numel ? 0 : -1;
    uint16_t buf[4096];
    for (size_t i = 0; i < numel; i += 4096) {
        size_t m = numel - i < 4096 ? numel - i : 4096;
        for (size_t j = 0; j < m; j++) buf[j] = st_f32_to_bf16(t->data[i + j]);
        if (fwrite(buf, sizeof(uint16_t), m, fp) != m) return -1;
    }
    return 0;
}

int st_write(const char* path, const StWriteTensor* tensors, int n, StDtype dtype, char* err, size_t errlen) {
    if (dtype != ST_F32 && dtype != ST_BF16) {
        return st_fail(err, errlen, path, NULL, "can only write F32 or BF16, not %s", st_dtype_name(dtype));
    }
    for (int i = 0; i < n; i++) {
        if (!tensors[i].name || strcmp(tensors[i].name, "__metadata__") == 0) {
            return st_fail(err, errlen, path, NULL, "tensor %d has no name or the reserved name __metadata__", i);
        }
    }
    const StWriteTensor** order = mallocCheck((size_t)(n > 0 ? n : 1) * sizeof(*order));
    for (int i = 0; i < n; i++) order[i] = &tensors[i];
    qsort(order, (size_t)n, sizeof(*order), by_write_name);
    for (int k = 1; k < n; k++) {
        if (strcmp(order[k]->name, order[k - 1]->name) == 0) {
            st_fail(err, errlen, path, order[k]->name, "the name is given twice");
            free(order);
            return -1;
        }
    }
    size_t n_hdr = 0;
    char* hdr = build_header(path, order, n, dtype, &n_hdr, err, errlen);
    if (!hdr) {
        free(order);
        return -1;
    }
    size_t plen = strlen(path) + 5;
    char* tmp = mallocCheck(plen);
    snprintf(tmp, plen, "%s.tmp", path);
    int rc = 0;
    FILE* fp = fopen(tmp, "wb");
    if (!fp) {
        rc = st_fail(err, errlen, tmp, NULL, "cannot create: %s", strerror(errno));
    } else {
        unsigned char len8[8];
        for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)n_hdr >> (8 * i));
        int bad = fwrite(len8, 1, 8, fp) != 8 || fwrite(hdr, 1, n_hdr, fp) != n_hdr;
        for (int k = 0; k < n && !bad; k++) bad = write_data(fp, order[k], dtype) != 0;
        bad = bad || fflush(fp) != 0 || fsync(fileno(fp)) != 0;
        int e = errno;
        if (fclose(fp) != 0 && !bad) {
            bad = 1;
            e = errno;
        }
        if (bad) {
            rc = st_fail(err, errlen, tmp, NULL, "write failed: %s", strerror(e));
            unlink(tmp);
        } else if (rename(tmp, path) != 0) {
            rc = st_fail(err, errlen, path, NULL, "cannot rename %s into place: %s", tmp, strerror(errno));
            unlink(tmp);
        }
    }
    free(tmp);
    free(hdr);
    free(order);
    return rc;
}
