// safetensors: Hugging Face's tensor file format. Layout: an 8-byte little-endian header length N,
// N bytes of JSON header {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
// "__metadata__": {"key": "value"}}, then the raw little-endian data section. Offsets are relative
// to the start of the data section.
//
// The reader validates the header as strictly as HF's reference implementation: every tensor has a
// known dtype, a shape of non-negative integers, end - begin == prod(shape) * dtype size (64-bit,
// overflow checked), and the tensors, sorted by offset, tile the data section exactly (no gaps, no
// overlaps, nothing after the last one). It never reads outside the file, whatever its bytes.
// F32, BF16 and F16 tensors can be read (converted to f32); other known dtypes open fine but are
// rejected by st_read_f32 with an error naming the tensor and its dtype.
//
// Errors are returned as -1/NULL with a message in err that names the file and, where there is
// one, the tensor.
#pragma once
#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER (100u * 1000u * 1000u) // the reference implementation's limit (100 MB)

// all dtypes of the format; only ST_F32, ST_BF16 and ST_F16 can be read
typedef enum {
    ST_BOOL,
    ST_U8,
    ST_I8,
    ST_F8_E5M2,
    ST_F8_E4M3,
    ST_I16,
    ST_U16,
    ST_F16,
    ST_BF16,
    ST_I32,
    ST_U32,
    ST_F32,
    ST_F64,
    ST_I64,
    ST_U64,
    ST_DTYPE_COUNT
} StDtype;

typedef struct {
    const char* name; // owned by the StFile
    StDtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t numel;
    uint64_t begin, end; // byte range within the data section
} StTensor;

typedef struct StFile StFile;

// ----------------------------------------------------------------------------
// dtypes and element conversions (exact, except f32 -> bf16 which rounds to nearest even)

const char* st_dtype_name(StDtype d); // "F32"
size_t st_dtype_size(StDtype d);      // bytes per element
float st_bf16_to_f32(uint16_t h);
float st_f16_to_f32(uint16_t h); // subnormals, infinities and NaNs included
uint16_t st_f32_to_bf16(float f); // round to nearest even; NaN stays NaN

// ----------------------------------------------------------------------------
// reading

// opens and validates a file; NULL with err on failure
StFile* st_open(const char* path, char* err, size_t errlen);
// the same over `size` bytes in memory, which must outlive the StFile (not copied); `name`
// stands for the file in messages
StFile* st_open_memory(const void* data, size_t size, const char* name, char* err, size_t errlen);
void st_close(StFile* f);

const char* st_path(const StFile* f);
int st_count(const StFile* f);                      // number of tensors
const StTensor* st_tensor(const StFile* f, int i);  // 0 <= i < st_count, in name order
int st_find(const StFile* f, const char* name);     // index of the tensor, or -1
const char* st_metadata(const StFile* f, const char* key); // a "__metadata__" value, or NULL
// shape as text, "[2, 3]", into buf (for messages)
const char* st_shape_str(const int64_t* shape, int ndim, char* buf, size_t n);

// reads tensor t converted to f32 into out, which holds n floats (n must equal t->numel)
int st_read_f32(const StFile* f, const StTensor* t, float* out, size_t n, char* err, size_t errlen);

// ----------------------------------------------------------------------------
// writing

typedef struct {
    const char* name;
    const float* data; // prod(shape) floats, row-major
    int ndim;
    int64_t shape[ST_MAX_DIMS];
} StWriteTensor;

// writes n tensors as dtype (ST_F32, or ST_BF16 rounded to nearest even) with
// "__metadata__": {"format": "pt"}, laid out as HF's serializer does (tensors sorted by name,
// compact JSON header padded with spaces to a multiple of 8 bytes), so the bytes match a file
// written by safetensors.torch.save_file. Written to path.tmp, then renamed.
int st_write(const char* path, const StWriteTensor* tensors, int n, StDtype dtype, char* err, size_t errlen);
