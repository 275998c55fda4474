// Checkpoint container over parallel HDF5 (see ckpt.h).
#include "io/ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/check.h"
#include "common/log.h"
#include "io/h5check.h"

struct CkptFile {
    hid_t file;
    MPI_Comm comm; // MPI_COMM_NULL when opened for reading
    int rank;
    int iteration;
    char path[1024];     // final path
    char tmp_path[1040]; // while writing
    char dir[1024];
};

// Every dataset carries attribute `xxh3`: the XXH3-64 hash of each CKPT_BLOCK_BYTES block of its
// raw little-endian bytes, in global element order. xxhash (libxxhash) hashes at memory speed, where
// HDF5's Fletcher32 filter halved checkpoint bandwidth (docs/BENCHMARKS.md).
#define CKPT_HASH_ATTR "xxh3"

// ----------------------------------------------------------------------------
// types and small helpers

static hid_t file_type(CkptType t) {
    switch (t) {
    case CKPT_F32: return H5T_IEEE_F32LE;
    case CKPT_F64: return H5T_IEEE_F64LE;
    case CKPT_I32: return H5T_STD_I32LE;
    case CKPT_I64: return H5T_STD_I64LE;
    case CKPT_U8: return H5T_STD_U8LE;
    case CKPT_U64: return H5T_STD_U64LE;
    case CKPT_BF16: return H5T_STD_U16LE; // stored as raw 16-bit words, tagged dtype=bfloat16
    }
    return -1;
}

static hid_t mem_type(CkptType t) {
    switch (t) {
    case CKPT_F32: return H5T_NATIVE_FLOAT;
    case CKPT_F64: return H5T_NATIVE_DOUBLE;
    case CKPT_I32: return H5T_NATIVE_INT32;
    case CKPT_I64: return H5T_NATIVE_INT64;
    case CKPT_U8: return H5T_NATIVE_UINT8;
    case CKPT_U64: return H5T_NATIVE_UINT64;
    case CKPT_BF16: return H5T_NATIVE_UINT16;
    }
    return -1;
}

static size_t type_size(CkptType t) {
    static const size_t sizes[] = {4, 8, 4, 8, 1, 8, 2};
    return sizes[t];
}

static int fail(char* err, size_t n, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char* err, size_t n, const char* fmt, ...) {
    if (err && n) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void ckpt_name(const char* dir, int iteration, char* out, size_t n) {
    snprintf(out, n, "%s/iter_%04d.h5", dir, iteration);
}

const char* ckpt_path(const CkptFile* f) { return f->path; }
int ckpt_iteration(const CkptFile* f) { return f->iteration; }

// create every missing group on the way to `path`'s parent (collective when writing)
static void make_parents(hid_t file, const char* path) {
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char* p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        htri_t exists = H5Lexists(file, buf, H5P_DEFAULT);
        if (exists <= 0) h5Check(H5Gclose(h5Check(H5Gcreate2(file, buf, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT))));
        *p = '/';
    }
}

// open a group or dataset by path, creating a group if nothing is there
static hid_t open_object(hid_t file, const char* obj) {
    if (strcmp(obj, "/") == 0) return h5Check(H5Oopen(file, "/", H5P_DEFAULT));
    if (H5Lexists(file, obj, H5P_DEFAULT) <= 0) {
        make_parents(file, obj);
        return h5Check(H5Gcreate2(file, obj, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    }
    return h5Check(H5Oopen(file, obj, H5P_DEFAULT));
}

// ----------------------------------------------------------------------------
// writing

CkptFile* ckpt_create(const char* dir, int iteration, MPI_Comm comm) {
    h5_quiet();
    CkptFile* f = callocCheck(1, sizeof(CkptFile));
    mpiCheck(MPI_Comm_dup(comm, &f->comm));
    mpiCheck(MPI_Comm_rank(f->comm, &f->rank));
    f->iteration = iteration;
    snprintf(f->dir, sizeof(f->dir), "%s", dir);
    ckpt_name(dir, iteration, f->path, sizeof(f->path));
    snprintf(f->tmp_path, sizeof(f->tmp_path), "%s.tmp", f->path);
    if (f->rank == 0) mkdirsCheck(dir);
    mpiCheck(MPI_Barrier(f->comm));

    hid_t fapl = h5Check(H5Pcreate(H5P_FILE_ACCESS));
    h5Check(H5Pset_fapl_mpio(fapl, f->comm, MPI_INFO_NULL));
    // v1.8+ object headers carry metadata checksums; h5py and h5dump read them
    h5Check(H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST));
    // large datasets start on 1 MiB boundaries: MPI-IO writes of whole blocks stay aligned
    h5Check(H5Pset_alignment(fapl, CKPT_BLOCK_BYTES, CKPT_BLOCK_BYTES));
    f->file = H5Fcreate(f->tmp_path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (f->file < 0) {
        fatal("cannot create checkpoint '%s'\n  hint: check that the run directory is writable and the disk not full "
              "(on NFS set HDF5_USE_FILE_LOCKING=FALSE)", f->tmp_path);
    }
    h5Check(H5Pclose(fapl));
    ckpt_put_attr_i64(f, "/", "format_version", CKPT_FORMAT_VERSION);
    ckpt_put_attr_i64(f, "/", "iteration", iteration);
    ckpt_put_attr_str(f, "/", "producer", "ingrain");
    return f;
}

static void put_attr(CkptFile* f, const char* obj, const char* name, hid_t ftype, hid_t mtype, const void* value) {
    hid_t o = open_object(f->file, obj);
    if (H5Aexists(o, name) > 0) h5Check(H5Adelete(o, name));
    hid_t space = h5Check(H5Screate(H5S_SCALAR));
    hid_t a = h5Check(H5Acreate2(o, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT));
    h5Check(H5Awrite(a, mtype, value));
    h5Check(H5Aclose(a));
    h5Check(H5Sclose(space));
    h5Check(H5Oclose(o));
}

void ckpt_put_attr_i64(CkptFile* f, const char* obj, const char* name, long long value) {
    int64_t v = value;
    put_attr(f, obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}

void ckpt_put_attr_f64(CkptFile* f, const char* obj, const char* name, double value) {
    put_attr(f, obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value);
}

void ckpt_put_attr_str(CkptFile* f, const char* obj, const char* name, const char* value) {
    hid_t t = h5Check(H5Tcopy(H5T_C_S1));
    h5Check(H5Tset_size(t, strlen(value) + 1));
    h5Check(H5Tset_cset(t, H5T_CSET_UTF8));
    put_attr(f, obj, name, t, t, value);
    h5Check(H5Tclose(t));
}

// create a contiguous dataset of the given global shape
static hid_t create_dataset(CkptFile* f, const char* path, CkptType type, int ndims, const hsize_t* dims) {
    make_parents(f->file, path);
    hid_t space = h5Check(H5Screate_simple(ndims, dims, NULL));
    hid_t dcpl = h5Check(H5Pcreate(H5P_DATASET_CREATE));
    // dense attribute storage: the block-hash attribute of a large dataset exceeds 64 KiB
    h5Check(H5Pset_attr_phase_change(dcpl, 0, 0));
    hid_t d = h5Check(H5Dcreate2(f->file, path, file_type(type), space, H5P_DEFAULT, dcpl, H5P_DEFAULT));
    if (type == CKPT_BF16) {
        hid_t t = h5Check(H5Tcopy(H5T_C_S1));
        h5Check(H5Tset_size(t, 9));
        hid_t s = h5Check(H5Screate(H5S_SCALAR));
        hid_t a = h5Check(H5Acreate2(d, "dtype", t, s, H5P_DEFAULT, H5P_DEFAULT));
        h5Check(H5Awrite(a, t, "bfloat16"));
        h5Check(H5Aclose(a));
        h5Check(H5Sclose(s));
        h5Check(H5Tclose(t));
    }
    h5Check(H5Pclose(dcpl));
    h5Check(H5Sclose(space));
    return d;
}

// write rows [offset, offset+count) along dim 0 (full trailing dims); independent I/O, so only
// the ranks that hold data take part
static void write_slab(hid_t d, CkptType type, int ndims, const hsize_t* dims, hsize_t offset, hsize_t count,
                       const void* data) {
    if (count == 0) return;
    hid_t fspace = h5Check(H5Dget_space(d));
    hsize_t start[CKPT_MAX_DIMS] = {0}, cnt[CKPT_MAX_DIMS];
    for (int i = 0; i < ndims; i++) cnt[i] = dims[i];
    start[0] = offset;
    cnt[0] = count;
    h5Check(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, cnt, NULL));
    hid_t mspace = h5Check(H5Screate_simple(ndims, cnt, NULL));
    h5Check(H5Dwrite(d, mem_type(type), mspace, fspace, H5P_DEFAULT, data));
    h5Check(H5Sclose(mspace));
    h5Check(H5Sclose(fspace));
}

// ----------------------------------------------------------------------------
// block hashes

uint64_t ckpt_block_elems(CkptType type) { return CKPT_BLOCK_BYTES / type_size(type); }

static uint64_t n_blocks(uint64_t n, CkptType type) {
    uint64_t b = ckpt_block_elems(type);
    return (n + b - 1) / b;
}

// hashes of the blocks of `count` elements starting at block-aligned element `offset`
static void hash_blocks(const void* data, CkptType type, uint64_t count, uint64_t* out) {
    size_t es = type_size(type), per = CKPT_BLOCK_BYTES;
    size_t bytes = (size_t)count * es;
    for (size_t b = 0; b * per < bytes; b++) {
        size_t len = bytes - b * per < per ? bytes - b * per : per;
        out[b] = XXH3_64bits((const char*)data + b * per, len);
    }
}

// the dataset's hash attribute (collective: every rank passes the same array)
static void put_hashes(CkptFile* f, hid_t d, const uint64_t* hashes, uint64_t n) {
    hsize_t dims = n ? n : 1;
    uint64_t zero = 0;
    hid_t space = h5Check(H5Screate_simple(1, &dims, NULL));
    hid_t a = h5Check(H5Acreate2(d, CKPT_HASH_ATTR, H5T_STD_U64LE, space, H5P_DEFAULT, H5P_DEFAULT));
    h5Check(H5Awrite(a, H5T_NATIVE_UINT64, n ? hashes : &zero));
    h5Check(H5Aclose(a));
    h5Check(H5Sclose(space));
    (void)f;
}

void ckpt_put_array(CkptFile* f, const char* path, CkptType type, int ndims, const uint64_t* dims, const void* data,
                    int writer) {
    if (ndims < 1 || ndims > CKPT_MAX_DIMS) fatal("checkpoint dataset %s: %d dimensions (1..%d allowed)", path, ndims, CKPT_MAX_DIMS);
    uint64_t d64[CKPT_MAX_DIMS] = {0};
    if (f->rank == writer) memcpy(d64, dims, sizeof(uint64_t) * (size_t)ndims);
    mpiCheck(MPI_Bcast(d64, ndims, MPI_UINT64_T, writer, f->comm));
    hsize_t hd[CKPT_MAX_DIMS];
    for (int i = 0; i < ndims; i++) hd[i] = d64[i];
    hid_t d = create_dataset(f, path, type, ndims, hd);
    uint64_t total = 1;
    for (int i = 0; i < ndims; i++) total *= d64[i];
    uint64_t nb = n_blocks(total, type);
    uint64_t* hashes = mallocCheck(sizeof(uint64_t) * (nb ? nb : 1));
    if (f->rank == writer) {
        write_slab(d, type, ndims, hd, 0, hd[0], data);
        hash_blocks(data, type, total, hashes);
    }
    mpiCheck(MPI_Bcast(hashes, (int)nb, MPI_UINT64_T, writer, f->comm));
    put_hashes(f, d, hashes, nb);
    free(hashes);
    h5Check(H5Dclose(d));
}

void ckpt_put_text(CkptFile* f, const char* path, const char* text, int writer) {
    uint64_t n = f->rank == writer ? strlen(text) : 0;
    mpiCheck(MPI_Bcast(&n, 1, MPI_UINT64_T, writer, f->comm));
    ckpt_put_array(f, path, CKPT_U8, 1, &n, text, writer);
    ckpt_put_attr_str(f, path, "encoding", "utf-8");
}

void ckpt_put_sharded(CkptFile* f, const char* path, CkptType type, uint64_t global_n, uint64_t offset,
                      uint64_t local_n, const void* local) {
    if (offset + local_n > global_n) {
        fatal("checkpoint dataset %s: slice [%llu, %llu) is outside its %llu elements", path,
              (unsigned long long)offset, (unsigned long long)(offset + local_n), (unsigned long long)global_n);
    }
    if (local_n > 0 && (offset % ckpt_block_elems(type) != 0 ||
                        (offset + local_n != global_n && local_n % ckpt_block_elems(type)))) {
        fatal("checkpoint dataset %s: slice [%llu, +%llu) is not aligned to %llu-element blocks (use ckpt_shard)", path,
              (unsigned long long)offset, (unsigned long long)local_n, (unsigned long long)ckpt_block_elems(type));
    }
    hsize_t dims[1] = {global_n};
    hid_t d = create_dataset(f, path, type, 1, dims);
    write_slab(d, type, 1, dims, offset, local_n, local);
    // every rank hashes its own blocks; all ranks write the gathered list
    int world;
    mpiCheck(MPI_Comm_size(f->comm, &world));
    uint64_t nb = n_blocks(global_n, type), first = offset / ckpt_block_elems(type);
    int mine = (int)n_blocks(local_n, type), start = (int)first;
    uint64_t* local_hashes = mallocCheck(sizeof(uint64_t) * (size_t)(mine ? mine : 1));
    hash_blocks(local, type, local_n, local_hashes);
    int* counts = mallocCheck(sizeof(int) * (size_t)world);
    int* starts = mallocCheck(sizeof(int) * (size_t)world);
    mpiCheck(MPI_Allgather(&mine, 1, MPI_INT, counts, 1, MPI_INT, f->comm));
    mpiCheck(MPI_Allgather(&start, 1, MPI_INT, starts, 1, MPI_INT, f->comm));
    uint64_t* hashes = callocCheck(nb ? nb : 1, sizeof(uint64_t));
    mpiCheck(MPI_Allgatherv(local_hashes, mine, MPI_UINT64_T, hashes, counts, starts, MPI_UINT64_T, f->comm));
    put_hashes(f, d, hashes, nb);
    free(hashes);
    free(starts);
    free(counts);
    free(local_hashes);
    h5Check(H5Dclose(d));
}

void ckpt_shard(uint64_t n, CkptType type, int rank, int world, uint64_t* offset, uint64_t* count) {
    uint64_t block = ckpt_block_elems(type), nb = n_blocks(n, type);
    uint64_t base = nb / (uint64_t)world, extra = nb % (uint64_t)world, r = (uint64_t)rank;
    uint64_t first = r * base + (r < extra ? r : extra), blocks = base + (r < extra ? 1 : 0);
    uint64_t begin = first * block, end = (first + blocks) * block;
    *offset = begin < n ? begin : n;
    *count = (end < n ? end : n) - *offset;
}

static void fsync_path(const char* path, int directory) {
    int fd = open(path, directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0) fatal("cannot open '%s' to sync it: %s", path, strerror(errno));
    if (fsync(fd) != 0 && !(directory && (errno == EINVAL || errno == EBADF))) {
        fatal("fsync of '%s' failed: %s\n  hint: the disk may be full or failing", path, strerror(errno));
    }
    close(fd);
}

char* ckpt_commit(CkptFile* f) {
    h5Check(H5Fflush(f->file, H5F_SCOPE_GLOBAL));
    h5Check(H5Fclose(f->file));
    mpiCheck(MPI_Barrier(f->comm));
    if (f->rank == 0) {
        fsync_path(f->tmp_path, 0);
        if (rename(f->tmp_path, f->path) != 0) {
            fatal("cannot rename checkpoint '%s' to '%s': %s", f->tmp_path, f->path, strerror(errno));
        }
        fsync_path(f->dir, 1);
    }
    mpiCheck(MPI_Barrier(f->comm));
    char* path = strdupCheck(f->path);
    mpiCheck(MPI_Comm_free(&f->comm));
    free(f);
    return path;
}

// ----------------------------------------------------------------------------
// reading

static herr_t innermost_error(unsigned n, const H5E_error2_t* e, void* data) {
    if (n == 0) snprintf((char*)data, 256, "%s", e->desc ? e->desc : "unknown HDF5 error");
    return 0;
}

// the HDF5 library's own reason for the last failure, e.g. a checksum mismatch
static const char* hdf5_reason(char* buf) {
    snprintf(buf, 256, "unknown HDF5 error");
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost_error, buf);
    return buf;
}

CkptFile* ckpt_open(const char* path, char* err, size_t errlen) {
    h5_quiet();
    char why[256];
    if (access(path, R_OK) != 0) return fail(err, errlen, "%s: cannot read the checkpoint: %s", path, strerror(errno)), NULL;
    if (H5Fis_hdf5(path) <= 0) {
        return fail(err, errlen, "%s: not an HDF5 file, or truncated/corrupt (no valid HDF5 superblock)", path), NULL;
    }
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) return fail(err, errlen, "%s: HDF5 cannot open the file: %s (truncated or corrupt?)", path, hdf5_reason(why)), NULL;
    CkptFile* f = callocCheck(1, sizeof(CkptFile));
    f->file = file;
    f->comm = MPI_COMM_NULL;
    snprintf(f->path, sizeof(f->path), "%s", path);
    long long version = 0, iteration = 0;
    if (ckpt_get_attr_i64(f, "/", "format_version", &version, err, errlen) != 0 ||
        ckpt_get_attr_i64(f, "/", "iteration", &iteration, err, errlen) != 0) {
        ckpt_close(f);
        return NULL;
    }
    if (version != CKPT_FORMAT_VERSION) {
        fail(err, errlen, "%s: /@format_version is %lld, this ingrain reads version %d", path, version, CKPT_FORMAT_VERSION);
        ckpt_close(f);
        return NULL;
    }
    f->iteration = (int)iteration;
    return f;
}

void ckpt_close(CkptFile* f) {
    if (!f) return;
    H5Fclose(f->file);
    free(f);
}

int ckpt_has(CkptFile* f, const char* path) {
    if (strcmp(path, "/") == 0) return 1;
    // H5Lexists needs every parent to exist
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char* p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (H5Lexists(f->file, buf, H5P_DEFAULT) <= 0) return 0;
            if (c == '\0') return 1;
            *p = c;
        }
    }
}

static int get_attr(CkptFile* f, const char* obj, const char* name, hid_t mtype, void* value, char* err,
                    size_t errlen) {
    if (!ckpt_has(f, obj)) return fail(err, errlen, "%s: %s is missing", f->path, obj);
    hid_t o = H5Oopen(f->file, obj, H5P_DEFAULT);
    if (o < 0) return fail(err, errlen, "%s: cannot open %s", f->path, obj);
    int rc = 0;
    if (H5Aexists(o, name) <= 0) {
        rc = fail(err, errlen, "%s: attribute %s@%s is missing", f->path, obj, name);
    } else {
        hid_t a = H5Aopen(o, name, H5P_DEFAULT);
        char why[256];
        if (a < 0 || H5Aread(a, mtype, value) < 0) {
            rc = fail(err, errlen, "%s: cannot read attribute %s@%s: %s", f->path, obj, name, hdf5_reason(why));
        }
        if (a >= 0) H5Aclose(a);
    }
    H5Oclose(o);
    return rc;
}

int ckpt_get_attr_i64(CkptFile* f, const char* obj, const char* name, long long* value, char* err, size_t errlen) {
    int64_t v = 0;
    int rc = get_attr(f, obj, name, H5T_NATIVE_INT64, &v, err, errlen);
    *value = v;
    return rc;
}

int ckpt_get_attr_f64(CkptFile* f, const char* obj, const char* name, double* value, char* err, size_t errlen) {
    return get_attr(f, obj, name, H5T_NATIVE_DOUBLE, value, err, errlen);
}

int ckpt_get_attr_str(CkptFile* f, const char* obj, const char* name, char** value, char* err, size_t errlen) {
    *value = NULL;
    if (!ckpt_has(f, obj)) return fail(err, errlen, "%s: %s is missing", f->path, obj);
    hid_t o = H5Oopen(f->file, obj, H5P_DEFAULT);
    if (o < 0) return fail(err, errlen, "%s: cannot open %s", f->path, obj);
    if (H5Aexists(o, name) <= 0) {
        H5Oclose(o);
        return fail(err, errlen, "%s: attribute %s@%s is missing", f->path, obj, name);
    }
    hid_t a = H5Aopen(o, name, H5P_DEFAULT);
    hid_t t = H5Aget_type(a);
    int rc = 0;
    if (H5Tget_class(t) != H5T_STRING || H5Tis_variable_str(t) > 0) {
        rc = fail(err, errlen, "%s: attribute %s@%s is not a fixed-length string", f->path, obj, name);
    } else {
        size_t n = H5Tget_size(t);
        *value = callocCheck(n + 1, 1);
        if (H5Aread(a, t, *value) < 0) {
            free(*value);
            *value = NULL;
            rc = fail(err, errlen, "%s: cannot read attribute %s@%s", f->path, obj, name);
        }
    }
    H5Tclose(t);
    H5Aclose(a);
    H5Oclose(o);
    return rc;
}

int ckpt_get_shape(CkptFile* f, const char* path, int* ndims, uint64_t* dims, char* err, size_t errlen) {
    if (!ckpt_has(f, path)) return fail(err, errlen, "%s: dataset %s is missing", f->path, path);
    hid_t d = H5Dopen2(f->file, path, H5P_DEFAULT);
    if (d < 0) return fail(err, errlen, "%s: %s is not a readable dataset", f->path, path);
    hid_t s = H5Dget_space(d);
    int nd = H5Sget_simple_extent_ndims(s);
    int rc = 0;
    if (nd < 0 || nd > CKPT_MAX_DIMS) {
        rc = fail(err, errlen, "%s: dataset %s has %d dimensions", f->path, path, nd);
    } else {
        hsize_t hd[CKPT_MAX_DIMS];
        H5Sget_simple_extent_dims(s, hd, NULL);
        for (int i = 0; i < nd; i++) dims[i] = hd[i];
        *ndims = nd;
    }
    H5Sclose(s);
    H5Dclose(d);
    return rc;
}

// the dataset's block hashes (n_blocks entries)
static int get_hashes(CkptFile* f, hid_t d, const char* path, uint64_t nb, uint64_t** out, char* err, size_t errlen) {
    *out = NULL;
    if (H5Aexists(d, CKPT_HASH_ATTR) <= 0) return fail(err, errlen, "%s: dataset %s has no checksum attribute '%s'", f->path, path, CKPT_HASH_ATTR);
    hid_t a = H5Aopen(d, CKPT_HASH_ATTR, H5P_DEFAULT);
    hid_t s = H5Aget_space(a);
    hssize_t n = H5Sget_simple_extent_npoints(s);
    int rc = 0;
    if (n != (hssize_t)(nb ? nb : 1)) {
        rc = fail(err, errlen, "%s: dataset %s: checksum attribute has %lld entries, expected %llu", f->path, path,
                  (long long)n, (unsigned long long)nb);
    } else {
        *out = mallocCheck(sizeof(uint64_t) * (size_t)n);
        if (H5Aread(a, H5T_NATIVE_UINT64, *out) < 0) {
            rc = fail(err, errlen, "%s: dataset %s: cannot read its checksums", f->path, path);
            free(*out);
            *out = NULL;
        }
    }
    H5Sclose(s);
    H5Aclose(a);
    return rc;
}

// read elements [offset, offset+n) of the flattened dataset (whole: all of it, n must match) and
// verify the hash of every block they touch
static int read_elements(CkptFile* f, const char* path, CkptType type, uint64_t offset, uint64_t n, int whole,
                         void* out, char* err, size_t errlen) {
    int ndims;
    uint64_t dims[CKPT_MAX_DIMS];
    if (ckpt_get_shape(f, path, &ndims, dims, err, errlen) != 0) return -1;
    uint64_t total = 1;
    for (int i = 0; i < ndims; i++) total *= dims[i];
    if (whole && total != n) {
        return fail(err, errlen, "%s: dataset %s holds %llu elements, expected %llu (a checkpoint of another model or "
                    "config?)", f->path, path, (unsigned long long)total, (unsigned long long)n);
    }
    if (!whole && (ndims != 1 || offset + n > total)) {
        return fail(err, errlen, "%s: dataset %s: range [%llu, %llu) is outside its %llu elements", f->path, path,
                    (unsigned long long)offset, (unsigned long long)(offset + n), (unsigned long long)total);
    }
    hid_t d = H5Dopen2(f->file, path, H5P_DEFAULT);
    hid_t ft = H5Dget_type(d);
    uint64_t* hashes = NULL;
    int rc = 0;
    if (H5Tget_class(ft) != H5Tget_class(file_type(type)) || H5Tget_size(ft) != type_size(type)) {
        rc = fail(err, errlen, "%s: dataset %s has another element type than expected (%zu-byte)", f->path, path,
                  type_size(type));
    } else if (n > 0 && get_hashes(f, d, path, n_blocks(total, type), &hashes, err, errlen) == 0) {
        // read the whole blocks that cover the range, straight into out when they coincide
        uint64_t block = ckpt_block_elems(type), b0 = offset / block, b1 = (offset + n + block - 1) / block;
        uint64_t start = b0 * block, end = b1 * block < total ? b1 * block : total;
        size_t es = type_size(type);
        char* buf = start == offset && end == offset + n ? out : mallocCheck((size_t)(end - start) * es);
        hid_t fspace = H5Dget_space(d);
        hsize_t hstart = start, hcount = end - start;
        hid_t mspace = H5Screate_simple(1, &hcount, NULL);
        // 1-D datasets read the covering blocks; others are read whole (hcount = total elements)
        if (ndims == 1) H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &hstart, NULL, &hcount, NULL);
        char why[256];
        if (H5Dread(d, mem_type(type), mspace, fspace, H5P_DEFAULT, buf) < 0) {
            rc = fail(err, errlen, "%s: cannot read dataset %s: %s (truncated or corrupt file)", f->path, path,
                      hdf5_reason(why));
        }
        for (uint64_t b = b0; rc == 0 && b < b1; b++) {
            uint64_t lo = b * block, hi = (b + 1) * block < total ? (b + 1) * block : total;
            uint64_t h = XXH3_64bits(buf + (size_t)(lo - start) * es, (size_t)(hi - lo) * es);
            if (h != hashes[b]) {
                rc = fail(err, errlen, "%s: dataset %s: checksum mismatch in elements [%llu, %llu): the file is corrupt "
                          "(restore it, or resume from an older checkpoint)", f->path, path, (unsigned long long)lo,
                          (unsigned long long)hi);
            }
        }
        if (rc == 0 && buf != out) memcpy(out, buf + (size_t)(offset - start) * es, (size_t)n * es);
        if (buf != out) free(buf);
        H5Sclose(mspace);
        H5Sclose(fspace);
    } else if (n > 0) {
        rc = -1;
    }
    free(hashes);
    H5Tclose(ft);
    H5Dclose(d);
    return rc;
}

int ckpt_get_array(CkptFile* f, const char* path, CkptType type, uint64_t expected_n, void* out, char* err,
                   size_t errlen) {
    return read_elements(f, path, type, 0, expected_n, 1, out, err, errlen);
}

int ckpt_get_range(CkptFile* f, const char* path, CkptType type, uint64_t offset, uint64_t n, void* out, char* err,
                   size_t errlen) {
    return read_elements(f, path, type, offset, n, 0, out, err, errlen);
}

int ckpt_get_text(CkptFile* f, const char* path, char** text, char* err, size_t errlen) {
    *text = NULL;
    int ndims;
    uint64_t dims[CKPT_MAX_DIMS];
    if (ckpt_get_shape(f, path, &ndims, dims, err, errlen) != 0) return -1;
    if (ndims != 1) return fail(err, errlen, "%s: %s is not a text dataset (1-D bytes)", f->path, path);
    char* buf = mallocCheck(dims[0] + 1);
    if (read_elements(f, path, CKPT_U8, 0, dims[0], 1, buf, err, errlen) != 0) {
        free(buf);
        return -1;
    }
    buf[dims[0]] = '\0';
    *text = buf;
    return 0;
}

// ----------------------------------------------------------------------------
// run directories

// iterations of complete (and, with tmp, of stale temporary) checkpoint files in dir, sorted ascending
static int list_iterations(const char* dir, int tmp, int** out) {
    *out = NULL;
    DIR* d = opendir(dir);
    if (!d) return 0;
    int n = 0, cap = 0;
    struct dirent* e;
    while ((e = readdir(d))) {
        int it = -1, len = 0;
        if (sscanf(e->d_name, "iter_%d.h5%n", &it, &len) != 1 || it < 0) continue;
        const char* rest = e->d_name + len;
        if (tmp ? strcmp(rest, ".tmp") != 0 : rest[0] != '\0') continue;
        if (n == cap) *out = reallocCheck(*out, sizeof(int) * (size_t)(cap = cap ? cap * 2 : 16));
        (*out)[n++] = it;
    }
    closedir(d);
    for (int i = 1; i < n; i++) { // insertion sort: a run directory holds few checkpoints
        int v = (*out)[i], j = i - 1;
        while (j >= 0 && (*out)[j] > v) (*out)[j + 1] = (*out)[j], j--;
        (*out)[j + 1] = v;
    }
    return n;
}

int ckpt_find_latest(const char* dir, char* path, size_t n, int* iteration) {
    int* its;
    int count = list_iterations(dir, 0, &its);
    int found = 1;
    for (int i = count - 1; i >= 0 && found; i--) {
        char candidate[1100], err[1024];
        ckpt_name(dir, its[i], candidate, sizeof(candidate));
        CkptFile* f = ckpt_open(candidate, err, sizeof(err));
        if (!f) {
            log_warn("skipping unreadable checkpoint: %s", err);
            continue;
        }
        ckpt_close(f);
        snprintf(path, n, "%s", candidate);
        *iteration = its[i];
        found = 0;
    }
    free(its);
    return found;
}

void ckpt_retain(const char* dir, int keep_last) {
    int* its;
    char path[1100];
    int count = list_iterations(dir, 1, &its);
    for (int i = 0; i < count; i++) {
        ckpt_name(dir, its[i], path, sizeof(path) - 4);
        strcat(path, ".tmp");
        if (unlink(path) == 0) log_info("removed incomplete checkpoint %s", path);
    }
    free(its);
    count = list_iterations(dir, 0, &its);
    if (keep_last < 1) keep_last = 1; // the newest complete checkpoint is never deleted
    for (int i = 0; i + keep_last < count; i++) {
        ckpt_name(dir, its[i], path, sizeof(path));
        if (unlink(path) != 0) log_warn("cannot delete old checkpoint %s: %s", path, strerror(errno));
    }
    free(its);
}
