// Checkpoint files: one HDF5 file per iteration, written with parallel HDF5 by every rank of a
// communicator, atomically (DIR/iter_NNNN.h5.tmp, fsync, rename), with an XXH3 hash of every 1 MiB
// block of every dataset (attribute `xxh3`) and HDF5 metadata checksums, read back with errors that
// name the file and the dataset. This is the generic container; what goes into it (model, optimizer, pool, RNG,
// metrics) is decided by the caller (mpi/checkpoint.c) and documented in docs/FORMATS.md.
#pragma once
#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#define CKPT_FORMAT_VERSION 1
#define CKPT_MAX_DIMS 4
#define CKPT_BLOCK_BYTES (1u << 20) // unit of checksumming and of shard alignment

typedef enum { CKPT_F32 = 0, CKPT_F64, CKPT_I32, CKPT_I64, CKPT_U8, CKPT_U64, CKPT_BF16 } CkptType;

typedef struct CkptFile CkptFile;

// ----------------------------------------------------------------------------
// writing: collective over comm; every rank makes the same calls in the same order.
// Write failures abort the job (h5Check): the previous checkpoints are untouched.

// Create DIR/iter_NNNN.h5.tmp (DIR is created if missing) and stamp the format version.
CkptFile* ckpt_create(const char* dir, int iteration, MPI_Comm comm);
// Attributes on a group or dataset (created if missing); values must be the same on every rank.
void ckpt_put_attr_i64(CkptFile* f, const char* obj, const char* name, long long value);
void ckpt_put_attr_f64(CkptFile* f, const char* obj, const char* name, double value);
void ckpt_put_attr_str(CkptFile* f, const char* obj, const char* name, const char* value);
// A dataset whose content one rank (`writer`) holds: dims and data are read on `writer` only
// (others may pass NULL) and broadcast. Missing parent groups are created.
void ckpt_put_array(CkptFile* f, const char* path, CkptType type, int ndims, const uint64_t* dims, const void* data,
                    int writer);
// UTF-8 text held by `writer`, stored as a 1-D uint8 dataset with attribute encoding=utf-8.
void ckpt_put_text(CkptFile* f, const char* path, const char* text, int writer);
// A 1-D dataset of global_n elements partitioned over the ranks: each rank writes its slice
// [offset, offset + local_n) (local_n may be 0). Slices must not overlap and must start on a
// block boundary (ckpt_shard gives such a partition).
void ckpt_put_sharded(CkptFile* f, const char* path, CkptType type, uint64_t global_n, uint64_t offset,
                      uint64_t local_n, const void* local);
// The block-aligned partition of n elements over world ranks: rank's [offset, offset + count).
// Used for ZeRO-1 optimizer shards so every shard hashes and writes whole blocks.
void ckpt_shard(uint64_t n, CkptType type, int rank, int world, uint64_t* offset, uint64_t* count);
uint64_t ckpt_block_elems(CkptType type);
// Close, fsync, rename to DIR/iter_NNNN.h5, fsync DIR. Returns the final path (owned by the caller).
char* ckpt_commit(CkptFile* f);

// ----------------------------------------------------------------------------
// reading: independent (any rank opens the file read-only and reads what it needs).
// Every function returns 0 on success, or -1 with err naming the file, the object and the problem.

CkptFile* ckpt_open(const char* path, char* err, size_t errlen);
void ckpt_close(CkptFile* f);
const char* ckpt_path(const CkptFile* f);
int ckpt_iteration(const CkptFile* f);
int ckpt_has(CkptFile* f, const char* path);
int ckpt_get_attr_i64(CkptFile* f, const char* obj, const char* name, long long* value, char* err, size_t errlen);
int ckpt_get_attr_f64(CkptFile* f, const char* obj, const char* name, double* value, char* err, size_t errlen);
// malloc'd string in *value
int ckpt_get_attr_str(CkptFile* f, const char* obj, const char* name, char** value, char* err, size_t errlen);
// shape of a dataset; *ndims <= CKPT_MAX_DIMS
int ckpt_get_shape(CkptFile* f, const char* path, int* ndims, uint64_t* dims, char* err, size_t errlen);
// the whole dataset into out, which must hold `expected_n` elements (checked against the file)
int ckpt_get_array(CkptFile* f, const char* path, CkptType type, uint64_t expected_n, void* out, char* err,
                   size_t errlen);
// elements [offset, offset + n) of a 1-D dataset (re-partitioning of sharded data)
int ckpt_get_range(CkptFile* f, const char* path, CkptType type, uint64_t offset, uint64_t n, void* out, char* err,
                   size_t errlen);
// malloc'd, NUL-terminated text written by ckpt_put_text
int ckpt_get_text(CkptFile* f, const char* path, char** text, char* err, size_t errlen);

// ----------------------------------------------------------------------------
// run directories (plain file operations; call on one rank)

// The newest complete checkpoint in dir that opens and carries the current format version:
// 0 with path/iteration filled, 1 if there is none. Unreadable newer files are skipped with a warning.
int ckpt_find_latest(const char* dir, char* path, size_t n, int* iteration);
// Delete complete checkpoints older than the newest keep_last (never the newest) and stale *.tmp.
void ckpt_retain(const char* dir, int keep_last);
// "DIR/iter_NNNN.h5"
void ckpt_name(const char* dir, int iteration, char* out, size_t n);
