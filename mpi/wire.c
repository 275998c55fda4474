// Framed, hash-checked byte messages over MPI (see wire.h).
#include "mpi/wire.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/check.h"
#include "common/log.h"

// ----------------------------------------------------------------------------
// limits and checks

// MPI counts are ints: one message carries at most INT_MAX bytes
static int count_of(size_t len, const char* what) {
    if (len > (size_t)INT_MAX) {
        fatal("%s of %zu bytes exceeds the %d-byte limit of one MPI message\n"
              "  hint: fewer tasks per iteration or a smaller rollout.group_size per rank", what, len, INT_MAX);
    }
    return (int)len;
}

static void verify(const uint8_t* data, size_t len, uint64_t expected, int from, const char* what) {
    uint64_t h = XXH3_64bits(data, len);
    if (h != expected) {
        fatal("%s from rank %d: %zu bytes arrived with hash %016llx, sent with %016llx: the message is corrupt\n"
              "  hint: mismatched ingrain builds across nodes, or a faulty interconnect", what, from, len,
              (unsigned long long)h, (unsigned long long)expected);
    }
}

// ----------------------------------------------------------------------------

void wire_gather(MPI_Comm comm, int root, const uint8_t* data, size_t len, uint8_t** out, size_t* out_len,
                 size_t** lens) {
    int rank, world;
    mpiCheck(MPI_Comm_rank(comm, &rank));
    mpiCheck(MPI_Comm_size(comm, &world));
    uint64_t head[2] = {len, XXH3_64bits(data, len)};
    uint64_t* heads = rank == root ? mallocCheck(sizeof(uint64_t) * 2 * (size_t)world) : NULL;
    mpiCheck(MPI_Gather(head, 2, MPI_UINT64_T, heads, 2, MPI_UINT64_T, root, comm));
    int* counts = NULL;
    int* displs = NULL;
    *out = NULL;
    *out_len = 0;
    *lens = NULL;
    if (rank == root) {
        counts = mallocCheck(sizeof(int) * (size_t)world);
        displs = mallocCheck(sizeof(int) * (size_t)world);
        *lens = mallocCheck(sizeof(size_t) * (size_t)world);
        size_t total = 0;
        for (int r = 0; r < world; r++) {
            counts[r] = count_of(heads[2 * r], "a gathered message");
            displs[r] = count_of(total, "a gather");
            (*lens)[r] = heads[2 * r];
            total += heads[2 * r];
        }
        count_of(total, "a gather");
        *out = mallocCheck(total ? total : 1);
        *out_len = total;
    }
    mpiCheck(MPI_Gatherv(data, count_of(len, "a message"), MPI_BYTE, *out, counts, displs, MPI_BYTE, root, comm));
    if (rank == root) {
        for (int r = 0; r < world; r++) verify(*out + displs[r], (*lens)[r], heads[2 * r + 1], r, "gathered message");
    }
    free(heads);
    free(counts);
    free(displs);
}

void wire_bcast(MPI_Comm comm, int root, uint8_t** data, size_t* len) {
    int rank;
    mpiCheck(MPI_Comm_rank(comm, &rank));
    uint64_t head[2] = {0, 0};
    if (rank == root) head[0] = *len, head[1] = XXH3_64bits(*data, *len);
    mpiCheck(MPI_Bcast(head, 2, MPI_UINT64_T, root, comm));
    if (rank != root) {
        *len = head[0];
        *data = mallocCheck(*len ? *len : 1);
    }
    mpiCheck(MPI_Bcast(*data, count_of(*len, "a broadcast"), MPI_BYTE, root, comm));
    if (rank != root) verify(*data, *len, head[1], root, "broadcast message");
}

void wire_scatter(MPI_Comm comm, int root, uint8_t* const* parts, const size_t* lens, uint8_t** out,
                  size_t* out_len) {
    int rank, world;
    mpiCheck(MPI_Comm_rank(comm, &rank));
    mpiCheck(MPI_Comm_size(comm, &world));
    uint64_t head[2];
    uint64_t* heads = NULL;
    if (rank == root) {
        heads = mallocCheck(sizeof(uint64_t) * 2 * (size_t)world);
        for (int r = 0; r < world; r++) heads[2 * r] = lens[r], heads[2 * r + 1] = XXH3_64bits(parts[r], lens[r]);
    }
    mpiCheck(MPI_Scatter(heads, 2, MPI_UINT64_T, head, 2, MPI_UINT64_T, root, comm));
    *out_len = head[0];
    *out = mallocCheck(*out_len ? *out_len : 1);
    if (rank == root) {
        MPI_Request* reqs = mallocCheck(sizeof(MPI_Request) * (size_t)world);
        int n = 0;
        for (int r = 0; r < world; r++) {
            if (r == root) memcpy(*out, parts[r], lens[r]);
            else mpiCheck(MPI_Isend(parts[r], count_of(lens[r], "a scattered part"), MPI_BYTE, r, 7, comm, &reqs[n++]));
        }
        mpiCheck(MPI_Waitall(n, reqs, MPI_STATUSES_IGNORE));
        free(reqs);
    } else {
        MPI_Status st;
        mpiCheck(MPI_Recv(*out, count_of(*out_len, "a scattered part"), MPI_BYTE, root, 7, comm, &st));
        int got = 0;
        mpiCheck(MPI_Get_count(&st, MPI_BYTE, &got));
        if ((size_t)got != *out_len) {
            fatal("scattered message from rank %d: %d bytes arrived, %zu announced", root, got, *out_len);
        }
    }
    verify(*out, *out_len, head[1], root, "scattered message");
    free(heads);
}

void wire_bcast_floats(MPI_Comm comm, int root, float* data, size_t n, size_t bucket) {
    if (bucket == 0) bucket = 1u << 22;
    for (size_t off = 0; off < n; off += bucket) {
        size_t m = n - off < bucket ? n - off : bucket;
        mpiCheck(MPI_Bcast(data + off, count_of(m, "a weight bucket"), MPI_FLOAT, root, comm));
    }
}
