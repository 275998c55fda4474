// `ingrain bench ckpt`: how close checkpoint I/O comes to the disk's sequential bandwidth.
// The baseline is a dd-style write (4 MiB blocks, then fsync) and read of the same number of
// bytes in the same directory, measured in the same run, so the ratio is independent of the disk.
#include <errno.h>
#include <fcntl.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/check.h"
#include "common/log.h"
#include "io/ckpt.h"
#include "model/model_config.h"
#include "mpi/bench.h"
#include "mpi/state.h"

// ----------------------------------------------------------------------------
// the baseline: what dd bs=4M conv=fsync would do

#define DD_BLOCK (4u << 20)

static double dd_write(const char* path, size_t bytes) {
    char* block = mallocCheck(DD_BLOCK);
    memset(block, 0x5a, DD_BLOCK);
    double t0 = MPI_Wtime();
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) fatal("bench ckpt: cannot create '%s': %s", path, strerror(errno));
    for (size_t done = 0; done < bytes;) {
        size_t n = bytes - done < DD_BLOCK ? bytes - done : DD_BLOCK;
        ssize_t w = write(fd, block, n);
        if (w <= 0) fatal("bench ckpt: write to '%s' failed: %s", path, strerror(errno));
        done += (size_t)w;
    }
    if (fsync(fd) != 0) fatal("bench ckpt: fsync of '%s' failed: %s", path, strerror(errno));
    close(fd);
    free(block);
    return MPI_Wtime() - t0;
}

static double dd_read(const char* path, size_t bytes) {
    char* block = mallocCheck(DD_BLOCK);
    double t0 = MPI_Wtime();
    int fd = open(path, O_RDONLY);
    if (fd < 0) fatal("bench ckpt: cannot open '%s': %s", path, strerror(errno));
    size_t done = 0;
    ssize_t r;
    while ((r = read(fd, block, DD_BLOCK)) > 0) done += (size_t)r;
    close(fd);
    free(block);
    if (done != bytes) fatal("bench ckpt: read %zu of %zu bytes from '%s'", done, bytes, path);
    return MPI_Wtime() - t0;
}

// ----------------------------------------------------------------------------
// the checkpoint: weights per tensor (written by rank 0) + AdamW m and v sharded over all ranks

static double ckpt_write_once(const char* dir, const ModelConfig* mc, const ParamInfo* table, const float* params,
                              size_t n_params, const float* m_local, const float* v_local, uint64_t off,
                              uint64_t cnt, int rank) {
    mpiCheck(MPI_Barrier(MPI_COMM_WORLD));
    double t0 = MPI_Wtime();
    CkptFile* f = ckpt_create(dir, 1, MPI_COMM_WORLD);
    state_put_weights(f, mc, table, rank == 0 ? params : NULL);
    ckpt_put_sharded(f, "/optim/m", CKPT_F32, n_params, off, cnt, m_local);
    ckpt_put_sharded(f, "/optim/v", CKPT_F32, n_params, off, cnt, v_local);
    free(ckpt_commit(f));
    mpiCheck(MPI_Barrier(MPI_COMM_WORLD));
    return MPI_Wtime() - t0;
}

static double ckpt_read_once(const char* path, const ParamInfo* table, float* params, size_t n_params, float* m_local,
                             float* v_local, uint64_t off, uint64_t cnt, int rank) {
    mpiCheck(MPI_Barrier(MPI_COMM_WORLD));
    double t0 = MPI_Wtime();
    char err[1024];
    CkptFile* f = ckpt_open(path, err, sizeof(err));
    if (!f) fatal("bench ckpt: %s", err);
    // every rank needs the weights (rollout replicas); each reads only its optimizer slice
    for (int i = 0; i < PARAM_COUNT && rank >= 0; i++) {
        if (!table[i].numel) continue;
        char name[128];
        snprintf(name, sizeof(name), "/model/%s", table[i].name);
        if (ckpt_get_array(f, name, CKPT_F32, table[i].numel, params + table[i].offset, err, sizeof(err)) != 0) {
            fatal("bench ckpt: %s", err);
        }
    }
    if (ckpt_get_range(f, "/optim/m", CKPT_F32, off, cnt, m_local, err, sizeof(err)) != 0 ||
        ckpt_get_range(f, "/optim/v", CKPT_F32, off, cnt, v_local, err, sizeof(err)) != 0) {
        fatal("bench ckpt: %s", err);
    }
    ckpt_close(f);
    (void)n_params;
    mpiCheck(MPI_Barrier(MPI_COMM_WORLD));
    return MPI_Wtime() - t0;
}

// ----------------------------------------------------------------------------

static const char* usage =
    "usage: [mpirun -np N] ingrain bench ckpt [--model NAME] [--dir DIR] [--repeat R]\n"
    "  Writes and reads a checkpoint of model NAME's weights + AdamW moments (default: small),\n"
    "  R times (default 3, best of R reported), beside a dd-style write/read of the same bytes in DIR\n"
    "  (default: /tmp/ingrain-bench-ckpt).\n";

int bench_ckpt(int argc, char** argv) {
    const char* model = "small";
    const char* dir = "/tmp/ingrain-bench-ckpt";
    int repeat = 3;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) model = argv[++i];
        else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) dir = argv[++i];
        else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) repeat = atoi(argv[++i]);
        else return fprintf(stderr, "%s", usage), INGRAIN_EXIT_USAGE;
    }
    ModelConfig mc;
    if (model_builtin_config(model, &mc) != 0 || repeat < 1) return fprintf(stderr, "%s", usage), INGRAIN_EXIT_USAGE;
    int rank, world;
    mpiCheck(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    mpiCheck(MPI_Comm_size(MPI_COMM_WORLD, &world));
    ParamInfo table[PARAM_COUNT];
    size_t n = model_param_table(&mc, table);
    uint64_t off, cnt; // the ZeRO-1 partition the trainers use
    ckpt_shard(n, CKPT_F32, rank, world, &off, &cnt);
    float* params = mallocCheck(sizeof(float) * n);
    float* m = mallocCheck(sizeof(float) * (cnt ? cnt : 1));
    float* v = mallocCheck(sizeof(float) * (cnt ? cnt : 1));
    for (size_t i = 0; i < n; i++) params[i] = (float)(i % 977) * 1e-3f;
    for (uint64_t i = 0; i < cnt; i++) m[i] = 1e-4f * (float)((off + i) % 101), v[i] = 1e-6f * (float)((off + i) % 89);
    size_t bytes = 3 * n * sizeof(float);
    if (rank == 0) mkdirsCheck(dir);
    char ckpt_path[1100], dd_path[1100];
    ckpt_name(dir, 1, ckpt_path, sizeof(ckpt_path));
    snprintf(dd_path, sizeof(dd_path), "%s/dd.bin", dir);

    double best_ckw = 1e30, best_ckr = 1e30, best_ddw = 1e30, best_ddr = 1e30;
    for (int r = 0; r < repeat; r++) {
        if (rank == 0) {
            double t = dd_write(dd_path, bytes);
            best_ddw = t < best_ddw ? t : best_ddw;
            t = dd_read(dd_path, bytes);
            best_ddr = t < best_ddr ? t : best_ddr;
            unlink(dd_path);
        }
        double t = ckpt_write_once(dir, &mc, table, params, n, m, v, off, cnt, rank);
        best_ckw = t < best_ckw ? t : best_ckw;
        t = ckpt_read_once(ckpt_path, table, params, n, m, v, off, cnt, rank);
        best_ckr = t < best_ckr ? t : best_ckr;
    }
    if (rank == 0) {
        double mb = (double)bytes / 1e6;
        unlink(ckpt_path);
        printf("bench ckpt: model %s (%zu parameters), weights + AdamW m, v = %.1f MB, %d rank%s, best of %d, in %s\n",
               model, n, mb, world, world == 1 ? "" : "s", repeat, dir);
        printf("  %-34s %10s %10s\n", "", "write MB/s", "read MB/s");
        printf("  %-34s %10.0f %10.0f\n", "ingrain checkpoint (HDF5 + XXH3)", mb / best_ckw, mb / best_ckr);
        printf("  %-34s %10.0f %10.0f\n", "baseline: dd bs=4M conv=fsync", mb / best_ddw, mb / best_ddr);
        printf("  %-34s %10.2f %10.2f\n", "ratio (ingrain / dd)", best_ddw / best_ckw, best_ddr / best_ckr);
        printf("  (reads of both come from the page cache when it holds the file: compare them with each other)\n");
    }
    free(params);
    free(m);
    free(v);
    return INGRAIN_EXIT_OK;
}
