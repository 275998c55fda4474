// Gradient reduction for the distillation trainer: int64 fixed-point arithmetic, the ZeRO-1
// partition with bucketed reduce-scatter and all-gather, the rank-count-independent gradient
// norm, and the weight broadcast to other ranks.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/check.h"
#include "common/log.h"
#include "distill/trainer_impl.h"
#include "io/ckpt.h"

// ----------------------------------------------------------------------------
// fixed point

static int ceil_log2(int n) {
    int c = 0;
    while (c < 30 && (1 << c) < n) c++;
    return c;
}

int distill_fp_exponent(int n_micro, int max_exp) { return 61 - ceil_log2(n_micro) - max_exp; }

double distill_fp_limit(int n_micro) { return ldexp(1.0, 62 - ceil_log2(n_micro)); }

// ----------------------------------------------------------------------------
// the partition and its collectives

void part_init(Partition* p, uint64_t n, int rank, int size) {
    p->n = n;
    p->rank = rank;
    p->size = size;
    p->pack = NULL;
    p->pack_bytes = 0;
    p->off = mallocCheck(sizeof(uint64_t) * (size_t)size);
    p->cnt = mallocCheck(sizeof(uint64_t) * (size_t)size);
    p->counts = mallocCheck(sizeof(int) * (size_t)size);
    p->displs = mallocCheck(sizeof(int) * (size_t)size);
    for (int r = 0; r < size; r++) ckpt_shard(n, CKPT_F32, r, size, &p->off[r], &p->cnt[r]);
}

void part_free(Partition* p) {
    free(p->pack);
    free(p->off);
    free(p->cnt);
    free(p->counts);
    free(p->displs);
    memset(p, 0, sizeof(*p));
}

// Rounds of a bucketed collective: in round b every rank contributes chunk b of its slice,
// [off + b * C, off + (b + 1) * C) clipped to the slice, with C = bucket / size elements, so
// every call moves about one bucket split evenly over the ranks (the balanced case the MPI
// reduce-scatter and all-gather algorithms are built for).
static uint64_t chunk_elems(const Partition* p, size_t bucket_bytes, size_t elem) {
    uint64_t c = bucket_bytes / elem / (uint64_t)p->size;
    if (c > (1u << 30)) c = 1u << 30; // counts are ints
    return c ? c : 1;
}

static int n_rounds(const Partition* p, uint64_t C) {
    uint64_t most = 0;
    for (int r = 0; r < p->size; r++) most = p->cnt[r] > most ? p->cnt[r] : most;
    return (int)((most + C - 1) / C);
}

// counts and displacements (in the packed buffer) of round b
static void round_parts(Partition* p, uint64_t C, int b) {
    int at = 0;
    for (int r = 0; r < p->size; r++) {
        uint64_t lo = (uint64_t)b * C, hi = lo + C < p->cnt[r] ? lo + C : p->cnt[r];
        p->counts[r] = hi > lo ? (int)(hi - lo) : 0;
        p->displs[r] = at;
        at += p->counts[r];
    }
}

static void* pack_buffer(Partition* p, size_t bytes) {
    if (bytes > p->pack_bytes) {
        free(p->pack);
        p->pack = mallocCheck(bytes);
        p->pack_bytes = bytes;
    }
    return p->pack;
}

void part_reduce_scatter(Partition* p, const void* full, void* slice, MPI_Datatype type, size_t elem,
                         size_t bucket_bytes, MPI_Comm comm) {
    const uint64_t C = chunk_elems(p, bucket_bytes, elem);
    char* pack = pack_buffer(p, (size_t)C * (size_t)p->size * elem);
    const int rounds = n_rounds(p, C);
    for (int b = 0; b < rounds; b++) {
        round_parts(p, C, b);
        for (int r = 0; r < p->size; r++) {
            memcpy(pack + (size_t)p->displs[r] * elem, (const char*)full + (p->off[r] + (uint64_t)b * C) * elem,
                   (size_t)p->counts[r] * elem);
        }
        char* dst = (char*)slice + (p->counts[p->rank] ? (uint64_t)b * C * elem : 0);
        mpiCheck(MPI_Reduce_scatter(pack, dst, p->counts, type, MPI_SUM, comm));
    }
}

void part_allgather(Partition* p, void* full, MPI_Datatype type, size_t elem, size_t bucket_bytes, MPI_Comm comm) {
    const uint64_t C = chunk_elems(p, bucket_bytes, elem);
    char* pack = pack_buffer(p, (size_t)C * (size_t)p->size * elem);
    const int rounds = n_rounds(p, C);
    for (int b = 0; b < rounds; b++) {
        round_parts(p, C, b);
        const char* mine = p->counts[p->rank] ? (const char*)full + (p->off[p->rank] + (uint64_t)b * C) * elem : full;
        mpiCheck(MPI_Allgatherv(mine, p->counts[p->rank], type, pack, p->counts, p->displs, type, comm));
        for (int r = 0; r < p->size; r++) {
            if (r == p->rank) continue;
            memcpy((char*)full + (p->off[r] + (uint64_t)b * C) * elem, pack + (size_t)p->displs[r] * elem,
                   (size_t)p->counts[r] * elem);
        }
    }
}

double part_norm2(Partition* p, Backend* be, const float* slice, MPI_Comm comm) {
    const uint64_t blk = ckpt_block_elems(CKPT_F32), nb = (p->n + blk - 1) / blk;
    double* sums = callocCheck(nb ? nb : 1, sizeof(double));
    // a slice starts on a block boundary (ckpt_shard), so its blocks are the global ones
    const uint64_t off = p->off[p->rank], cnt = p->cnt[p->rank];
    if (cnt) be->sum_squares_blocks(be, sums + off / blk, slice, (size_t)cnt, (size_t)blk);
    // every block has exactly one contributor: the sum adds zeros to it, exactly
    mpiCheck(MPI_Allreduce(MPI_IN_PLACE, sums, (int)nb, MPI_DOUBLE, MPI_SUM, comm));
    double total = 0.0;
    for (uint64_t b = 0; b < nb; b++) total += sums[b];
    free(sums);
    return total;
}

// ----------------------------------------------------------------------------
// weights across ranks

uint64_t distill_weights_hash(Model* m) {
    const size_t n = model_num_params(m);
    float* host = mallocCheck(sizeof(float) * (n ? n : 1));
    model_params_download(m, host);
    uint64_t h = XXH3_64bits(host, sizeof(float) * n);
    free(host);
    return h;
}

DevComm* distill_nccl_open(Backend* be, MPI_Comm comm, const char* what) {
    int rank, size;
    mpiCheck(MPI_Comm_rank(comm, &rank));
    mpiCheck(MPI_Comm_size(comm, &size));
    char key[DEVCOMM_KEY_BYTES] = "", err[256] = "";
    const int mine = devcomm_key(be, key, err, sizeof err) == 0;
    int all;
    mpiCheck(MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, comm));
    char* keys = mallocCheck((size_t)size * DEVCOMM_KEY_BYTES);
    mpiCheck(MPI_Allgather(key, DEVCOMM_KEY_BYTES, MPI_CHAR, keys, DEVCOMM_KEY_BYTES, MPI_CHAR, comm));
    int shared = -1; // a rank on the GPU of an earlier one
    for (int r = 1; all && r < size && shared < 0; r++) {
        const char* kr = keys + (size_t)r * DEVCOMM_KEY_BYTES;
        for (int q = 0; q < r && shared < 0; q++) shared = strcmp(kr, keys + (size_t)q * DEVCOMM_KEY_BYTES) ? -1 : r;
    }
    if (!all || shared >= 0) {
        if (rank == 0 && shared >= 0)
            log_warn("NCCL: rank %d shares GPU %s with another: NCCL needs one rank per GPU, so %s stage "
                     "through host memory", shared, keys + (size_t)shared * DEVCOMM_KEY_BYTES, what);
        else if (rank == 0 && mine)
            log_info("NCCL: another rank has no NCCL-capable GPU, so %s stage through host memory", what);
        else if (rank == 0 && strcmp(be->name, "cuda") == 0)
            log_info("NCCL: %s stage through host memory: %s", what, err);
        else if (rank == 0)
            log_debug("NCCL off for %s: %s", what, err);
        free(keys);
        return NULL;
    }
    free(keys);
    unsigned char id[DEVCOMM_ID_BYTES] = {0};
    int ok = rank != 0 || devcomm_unique_id(id, err, sizeof err) == 0;
    mpiCheck(MPI_Bcast(&ok, 1, MPI_INT, 0, comm));
    if (!ok) fatal("NCCL: %s", rank == 0 ? err : "rank 0 could not make the communicator's id");
    mpiCheck(MPI_Bcast(id, DEVCOMM_ID_BYTES, MPI_BYTE, 0, comm));
    DevComm* c = devcomm_create(be, id, size, rank, err, sizeof err);
    if (!c) fatal("NCCL: rank %d: %s", rank, err);
    if (rank == 0) log_info("NCCL: %s move GPU to GPU among %d rank%s", what, size, size > 1 ? "s" : "");
    return c;
}

void distill_broadcast_weights(Model* m, int root, MPI_Comm comm, size_t bucket_bytes, DevComm* nccl) {
    int rank;
    mpiCheck(MPI_Comm_rank(comm, &rank));
    unsigned long long n = model_num_params(m), lo_n = n, hi_n = n;
    mpiCheck(MPI_Allreduce(MPI_IN_PLACE, &lo_n, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, comm));
    mpiCheck(MPI_Allreduce(MPI_IN_PLACE, &hi_n, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, comm));
    if (lo_n != hi_n) {
        fatal("weight broadcast: ranks hold models of different sizes (%llu to %llu parameters; this rank %llu)", lo_n,
              hi_n, n);
    }
    if (nccl) { // GPU to GPU, in place: the kernels after it on each rank's stream see all of it
        devcomm_broadcast(nccl, model_params(m), DEVCOMM_F32, (size_t)n, root);
        return;
    }
    float* host = mallocCheck(sizeof(float) * (n ? n : 1));
    if (rank == root) model_params_download(m, host);
    uint64_t B = bucket_bytes / sizeof(float);
    B = B > (1u << 30) ? 1u << 30 : (B ? B : 1); // counts are ints
    for (uint64_t lo = 0; lo < n; lo += B) {
        const int cnt = (int)(lo + B < n ? B : n - lo);
        mpiCheck(MPI_Bcast(host + lo, cnt, MPI_FLOAT, root, comm));
    }
    // only now, with the whole copy here, does the model change
    if (rank != root) model_params_upload(m, host);
    free(host);
}
