// Tests of the checkpoint container (io/ckpt.h).
//   test_ckpt write DIR     collective write of iteration 1 at any np (ctest: np=3)
//   test_ckpt read DIR      every rank re-partitions the sharded data for this np (ctest: np=2, 1)
//   test_ckpt corrupt DIR   one rank: truncation, flipped bytes, missing datasets, wrong version,
//                           wrong sizes, latest-complete discovery, retention
//   test_ckpt loop DIR      writes iterations 1, 2, ... until killed (test_ckpt_kill.sh)
//   test_ckpt verify DIR    the newest complete checkpoint opens and every value is right
#define _XOPEN_SOURCE 700 // nftw
#include <ftw.h>
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "io/ckpt.h"
#include "mpitest.h"

#define N_SHARDED 1000003ull // about 3.8 blocks of 1 MiB: uneven slices and a partial last block
#define ROWS 37
#define COLS 129

static float sharded_value(uint64_t i, int iteration) { return (float)(i % 1000003) * 0.5f + (float)iteration; }
static float matrix_value(int r, int c) { return (float)r - 0.25f * (float)c; }

// the slice of n elements owned by `rank` of `world` (the partition the trainers use)
static void slice(uint64_t n, int rank, int world, uint64_t* offset, uint64_t* count) {
    ckpt_shard(n, CKPT_F32, rank, world, offset, count);
}

// ----------------------------------------------------------------------------
// writing and reading a complete checkpoint

static char* write_checkpoint(const char* dir, int iteration, uint64_t n_sharded) {
    int rank, world;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    CkptFile* f = ckpt_create(dir, iteration, MPI_COMM_WORLD);
    ckpt_put_attr_str(f, "/", "run_name", "test");
    ckpt_put_text(f, "/config", "run:\n  name: test\n", 0);
    float* m = malloc(sizeof(float) * ROWS * COLS);
    for (int r = 0; r < ROWS; r++)
        for (int c = 0; c < COLS; c++) m[r * COLS + c] = matrix_value(r, c);
    uint64_t dims[2] = {ROWS, COLS};
    ckpt_put_array(f, "/model/w", CKPT_F32, 2, dims, rank == world - 1 ? m : NULL, world - 1);
    ckpt_put_attr_i64(f, "/model", "n_params", ROWS * COLS);
    uint64_t off, cnt;
    slice(n_sharded, rank, world, &off, &cnt);
    float* local = malloc(sizeof(float) * (cnt ? cnt : 1));
    for (uint64_t i = 0; i < cnt; i++) local[i] = sharded_value(off + i, iteration);
    ckpt_put_sharded(f, "/optim/m", CKPT_F32, n_sharded, off, cnt, local);
    int64_t rng[4] = {1, 2, 3, (int64_t)rank};
    uint64_t rdims[2] = {1, 4};
    ckpt_put_array(f, "/rng/aggregator", CKPT_I64, 2, rdims, rng, 0);
    free(local);
    free(m);
    return ckpt_commit(f);
}

// every value of the checkpoint, reading the sharded data as the slices of `world` ranks
static void verify_checkpoint(const char* path, int iteration, uint64_t n_sharded, int rank, int world) {
    char err[1024];
    CkptFile* f = ckpt_open(path, err, sizeof(err));
    CHECK(f != NULL, "open %s: %s", path, err);
    if (!f) return;
    CHECK(ckpt_iteration(f) == iteration, "iteration %d, expected %d", ckpt_iteration(f), iteration);
    char* s = NULL;
    CHECK(ckpt_get_attr_str(f, "/", "run_name", &s, err, sizeof(err)) == 0 && s && strcmp(s, "test") == 0, "run_name");
    free(s);
    CHECK(ckpt_get_text(f, "/config", &s, err, sizeof(err)) == 0 && strcmp(s, "run:\n  name: test\n") == 0, "config text");
    free(s);
    long long np = 0;
    CHECK(ckpt_get_attr_i64(f, "/model", "n_params", &np, err, sizeof(err)) == 0 && np == ROWS * COLS, "n_params");
    float* m = malloc(sizeof(float) * ROWS * COLS);
    CHECK(ckpt_get_array(f, "/model/w", CKPT_F32, ROWS * COLS, m, err, sizeof(err)) == 0, "read w: %s", err);
    int bad = 0;
    for (int r = 0; r < ROWS; r++)
        for (int c = 0; c < COLS; c++) bad += m[r * COLS + c] != matrix_value(r, c);
    CHECK(bad == 0, "%d wrong values in /model/w", bad);
    free(m);
    uint64_t off, cnt;
    slice(n_sharded, rank, world, &off, &cnt);
    float* local = malloc(sizeof(float) * (cnt ? cnt : 1));
    CHECK(ckpt_get_range(f, "/optim/m", CKPT_F32, off, cnt, local, err, sizeof(err)) == 0, "read slice: %s", err);
    bad = 0;
    for (uint64_t i = 0; i < cnt; i++) bad += local[i] != sharded_value(off + i, iteration);
    CHECK(bad == 0, "%d wrong values in my slice [%llu, +%llu) of /optim/m", bad, (unsigned long long)off,
          (unsigned long long)cnt);
    free(local);
    ckpt_close(f);
}

// ----------------------------------------------------------------------------
// corruption

static void copy_file(const char* from, const char* to, long truncate_at) {
    FILE* a = fopen(from, "rb");
    FILE* b = fopen(to, "wb");
    char buf[65536];
    size_t n;
    long total = 0;
    while ((n = fread(buf, 1, sizeof(buf), a)) > 0) {
        if (truncate_at >= 0 && total + (long)n > truncate_at) n = (size_t)(truncate_at - total);
        fwrite(buf, 1, n, b);
        total += (long)n;
        if (truncate_at >= 0 && total >= truncate_at) break;
    }
    fclose(a);
    fclose(b);
}

static void flip_byte(const char* path, long offset) {
    FILE* f = fopen(path, "r+b");
    fseek(f, offset, SEEK_SET);
    int c = fgetc(f);
    fseek(f, offset, SEEK_SET);
    fputc(c ^ 0x5a, f);
    fclose(f);
}

// file offset of a (contiguous) dataset's data
static long data_address(const char* path, const char* dataset) {
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(file, dataset, H5P_DEFAULT);
    haddr_t addr = H5Dget_offset(d);
    H5Dclose(d);
    H5Fclose(file);
    return (long)addr;
}

static void expect_error(int rc, const char* err, const char* needle, const char* what) {
    CHECK(rc != 0, "%s: accepted", what);
    CHECK(strstr(err, needle) != NULL, "%s: message '%s' lacks '%s'", what, err, needle);
}

static void test_corruption(const char* dir) {
    char path[1100], bad[1200], err[1024];
    char* p = write_checkpoint(dir, 1, 5000);
    snprintf(path, sizeof(path), "%s", p);
    free(p);
    long size = 0;
    FILE* fp = fopen(path, "rb");
    fseek(fp, 0, SEEK_END);
    size = ftell(fp);
    fclose(fp);

    // truncated at several lengths: open fails or a read fails, naming the file
    long cuts[] = {0, 7, 100, size / 3, size / 2, size - 100, size - 1};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        snprintf(bad, sizeof(bad), "%s/truncated.h5", dir);
        copy_file(path, bad, cuts[i]);
        CkptFile* f = ckpt_open(bad, err, sizeof(err));
        int rc = f ? 0 : -1;
        if (f) {
            float* m = malloc(sizeof(float) * ROWS * COLS);
            float* o = malloc(sizeof(float) * 5000);
            rc = ckpt_get_array(f, "/model/w", CKPT_F32, ROWS * COLS, m, err, sizeof(err));
            if (rc == 0) rc = ckpt_get_array(f, "/optim/m", CKPT_F32, 5000, o, err, sizeof(err));
            free(m);
            free(o);
            ckpt_close(f);
        }
        CHECK(rc != 0, "file truncated to %ld of %ld bytes was read without error", cuts[i], size);
        CHECK(strstr(err, "truncated.h5") != NULL, "truncation error does not name the file: %s", err);
    }

    // a flipped byte in a dataset's data: the block hash catches it, naming the dataset and range
    snprintf(bad, sizeof(bad), "%s/flipped.h5", dir);
    copy_file(path, bad, -1);
    flip_byte(bad, data_address(bad, "/optim/m") + 123);
    CkptFile* f = ckpt_open(bad, err, sizeof(err));
    CHECK(f != NULL, "flipped data byte: open failed: %s", err);
    if (f) {
        float* o = malloc(sizeof(float) * 5000);
        expect_error(ckpt_get_array(f, "/optim/m", CKPT_F32, 5000, o, err, sizeof(err)), err,
                     "flipped.h5: dataset /optim/m: checksum mismatch in elements [0, 5000)", "flipped data byte");
        expect_error(ckpt_get_range(f, "/optim/m", CKPT_F32, 20, 10, o, err, sizeof(err)), err,
                     "checksum mismatch", "flipped data byte, range read");
        free(o);
        ckpt_close(f);
    }

    // missing dataset / attribute, wrong size, wrong type: errors name the file and the object
    f = ckpt_open(path, err, sizeof(err));
    float* w = malloc(sizeof(float) * ROWS * COLS);
    double dummy;
    expect_error(ckpt_get_array(f, "/model/nope", CKPT_F32, 10, w, err, sizeof(err)), err,
                 "iter_0001.h5: dataset /model/nope is missing", "missing dataset");
    expect_error(ckpt_get_array(f, "/model/w", CKPT_F32, ROWS * COLS - 1, w, err, sizeof(err)), err,
                 "dataset /model/w holds 4773 elements, expected 4772", "wrong size");
    expect_error(ckpt_get_array(f, "/model/w", CKPT_I64, ROWS * COLS, w, err, sizeof(err)), err,
                 "dataset /model/w has another element type", "wrong type");
    expect_error(ckpt_get_attr_f64(f, "/model", "lr", &dummy, err, sizeof(err)), err,
                 "attribute /model@lr is missing", "missing attribute");
    expect_error(ckpt_get_range(f, "/optim/m", CKPT_F32, 4990, 20, w, err, sizeof(err)), err,
                 "range [4990, 5010) is outside its 5000 elements", "range outside");
    free(w);
    ckpt_close(f);

    // another format version
    CkptFile* wf = ckpt_create(dir, 7, MPI_COMM_WORLD);
    ckpt_put_attr_i64(wf, "/", "format_version", 99);
    free(ckpt_commit(wf));
    char v7[1100];
    ckpt_name(dir, 7, v7, sizeof(v7));
    CHECK(ckpt_open(v7, err, sizeof(err)) == NULL, "version 99 accepted");
    CHECK(strstr(err, "/@format_version is 99") != NULL, "version error: %s", err);

    // not HDF5 at all
    snprintf(bad, sizeof(bad), "%s/text.h5", dir);
    FILE* t = fopen(bad, "w");
    fputs("hello", t);
    fclose(t);
    CHECK(ckpt_open(bad, err, sizeof(err)) == NULL && strstr(err, "not an HDF5 file"), "text file: %s", err);
}

static void test_latest_and_retain(const char* dir) {
    char path[1100], latest[1100];
    int it = -1;
    CHECK(ckpt_find_latest(dir, latest, sizeof(latest), &it) == 1, "empty directory has a checkpoint");
    for (int i = 1; i <= 4; i++) free(write_checkpoint(dir, i, 1000));
    // iteration 5 exists but is truncated; iteration 6 was never finished (.tmp)
    ckpt_name(dir, 4, path, sizeof(path));
    char p5[1100], p6[1200];
    ckpt_name(dir, 5, p5, sizeof(p5));
    copy_file(path, p5, 200);
    ckpt_name(dir, 6, p6, sizeof(p6) - 4);
    strcat(p6, ".tmp");
    copy_file(path, p6, -1);
    CHECK(ckpt_find_latest(dir, latest, sizeof(latest), &it) == 0 && it == 4, "latest complete is %d, expected 4", it);
    CHECK(strcmp(latest, path) == 0, "latest path %s", latest);
    unlink(p5);
    ckpt_retain(dir, 2);
    for (int i = 1; i <= 4; i++) {
        ckpt_name(dir, i, path, sizeof(path));
        CHECK((access(path, F_OK) == 0) == (i >= 3), "retention: iteration %d %s", i, i >= 3 ? "deleted" : "kept");
    }
    CHECK(access(p6, F_OK) != 0, "stale .tmp kept");
    ckpt_retain(dir, 0); // never deletes the newest
    ckpt_name(dir, 4, path, sizeof(path));
    CHECK(access(path, F_OK) == 0, "retention deleted the newest checkpoint");
}

// ----------------------------------------------------------------------------

static int remove_entry(const char* path, const struct stat* st, int flag, struct FTW* ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

int main(int argc, char** argv) {
    MPI_Init(&argc, &argv);
    int rank, world;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    log_set_rank(rank, world);
    if (argc != 3) {
        fprintf(stderr, "usage: test_ckpt write|read|corrupt|loop|verify DIR\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    const char* mode = argv[1];
    const char* dir = argv[2];
    char path[1100];
    if (strcmp(mode, "write") == 0) {
        free(write_checkpoint(dir, 1, N_SHARDED));
        ckpt_name(dir, 1, path, sizeof(path));
        verify_checkpoint(path, 1, N_SHARDED, rank, world);
    } else if (strcmp(mode, "read") == 0) {
        ckpt_name(dir, 1, path, sizeof(path));
        verify_checkpoint(path, 1, N_SHARDED, rank, world);
    } else if (strcmp(mode, "corrupt") == 0) {
        nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS); // start from an empty directory
        char sub[1100];
        snprintf(sub, sizeof(sub), "%s/corrupt", dir);
        test_corruption(sub);
        snprintf(sub, sizeof(sub), "%s/latest", dir);
        test_latest_and_retain(sub);
    } else if (strcmp(mode, "loop") == 0) {
        for (int it = 1;; it++) {
            free(write_checkpoint(dir, it, 4u << 20)); // 16 MiB of sharded data: long enough to be killed mid-write
            if (rank == 0) {
                printf("committed %d\n", it);
                fflush(stdout);
            }
        }
    } else if (strcmp(mode, "verify") == 0) {
        int it = 0;
        CHECK(ckpt_find_latest(dir, path, sizeof(path), &it) == 0, "no complete checkpoint in %s", dir);
        if (it > 0) verify_checkpoint(path, it, 4u << 20, rank, world);
        if (rank == 0) printf("newest complete checkpoint: iteration %d\n", it);
    }
    int rc = mpitest_finish("test_ckpt");
    MPI_Finalize();
    return rc;
}
