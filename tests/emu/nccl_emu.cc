// NCCL over MPI for the emulated GPU (tests/emu/CMakeLists.txt builds it as libnccl.so.2): the
// calls model/cuda/devcomm.cu makes, with NCCL's semantics, so that several MPI ranks, each with
// its own emulated GPU, run the NCCL paths of the trainers and the driver as on several GPUs.
// The emulated GPU's memory is host memory and its streams are synchronous, so each collective
// runs when called, as an MPI collective on the communicator's own MPI communicator. Calls in a
// group run in call order, which NCCL also requires to be the same on every rank.
//
// A communicator's ranks find each other through its id: ncclGetUniqueId records the world rank
// that made it (which must be one of the communicator's ranks, as in ingrain); ncclCommInitRank
// sends that rank its place, gets back the world ranks of all and makes an MPI communicator of
// them (MPI_Comm_create_group, collective over those ranks only, as NCCL's initialisation is).
// Not emulated: several communicators per rank initialised in one group, reductions other than
// the sum, non-blocking communicators.
#define OMPI_SKIP_MPICXX 1 // MPI's C API only: the C++ bindings want a library the tests do not link
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <vector>

#include <nccl.h>

// ----------------------------------------------------------------------------
// ids and communicators

struct EmuId {
    char magic[16]; // EMU_MAGIC: an id from this library, not a real NCCL's
    int world_rank; // the rank that made it, which gathers the others' places
    int serial;     // that rank's count of ids so far: the initialisation's message tag
};
static_assert(sizeof(EmuId) <= NCCL_UNIQUE_ID_BYTES, "EmuId does not fit in ncclUniqueId");
#define EMU_MAGIC "ingrain-nccl-emu"
#define EMU_TAG_BASE 31000 // tags EMU_TAG_BASE.. on MPI_COMM_WORLD (every MPI has tags up to 32767)

struct ncclComm {
    MPI_Comm comm;
    int rank, nranks;
};

static ncclResult_t emu_fail(ncclResult_t r, const char* what) {
    fprintf(stderr, "nccl_emu: %s\n", what);
    return r;
}

static ncclResult_t mpi_result(int rc, const char* call) {
    if (rc == MPI_SUCCESS) return ncclSuccess;
    char msg[MPI_MAX_ERROR_STRING + 64];
    int len = 0;
    MPI_Error_string(rc, msg + snprintf(msg, 64, "%s: ", call), &len);
    return emu_fail(ncclSystemError, msg);
}

static int emu_world_rank(void) {
    int init = 0, r = -1;
    MPI_Initialized(&init);
    if (init) MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

extern "C" ncclResult_t ncclGetVersion(int* version) {
    *version = 0; // no NCCL release: devcomm_describe shows 0.0.0
    return ncclSuccess;
}

extern "C" const char* ncclGetErrorString(ncclResult_t r) {
    switch (r) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error";
    case ncclSystemError: return "unhandled system error (emulated NCCL: an MPI call failed, see above)";
    case ncclInternalError: return "internal error";
    case ncclInvalidArgument: return "invalid argument (see above)";
    case ncclInvalidUsage: return "invalid usage (see above)";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
    }
    return "unknown result code";
}

extern "C" ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
    static int serial = 0;
    const int me = emu_world_rank();
    if (me < 0) return emu_fail(ncclInvalidUsage, "ncclGetUniqueId before MPI_Init: the emulation runs over MPI");
    EmuId e;
    memset(&e, 0, sizeof e);
    memcpy(e.magic, EMU_MAGIC, sizeof e.magic);
    e.world_rank = me;
    e.serial = serial++;
    memset(id, 0, sizeof *id);
    memcpy(id->internal, &e, sizeof e);
    return ncclSuccess;
}

extern "C" ncclResult_t ncclCommInitRank(ncclComm_t* out, int nranks, ncclUniqueId id, int rank) {
    EmuId e;
    memcpy(&e, id.internal, sizeof e);
    const int me = emu_world_rank();
    int world = 0;
    if (me < 0) return emu_fail(ncclInvalidUsage, "ncclCommInitRank before MPI_Init: the emulation runs over MPI");
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    if (memcmp(e.magic, EMU_MAGIC, sizeof e.magic) != 0 || e.world_rank < 0 || e.world_rank >= world)
        return emu_fail(ncclInvalidArgument, "ncclCommInitRank: not an id from this library's ncclGetUniqueId");
    if (nranks < 1 || rank < 0 || rank >= nranks) {
        char msg[96];
        snprintf(msg, sizeof msg, "ncclCommInitRank: rank %d of %d", rank, nranks);
        return emu_fail(ncclInvalidArgument, msg);
    }
    const int tag = EMU_TAG_BASE + e.serial % 1000;
    std::vector<int> members(nranks, -1); // world rank of each communicator rank
    ncclResult_t r = ncclSuccess;
    if (me == e.world_rank) {
        members[rank] = me;
        for (int i = 1; i < nranks && r == ncclSuccess; i++) {
            int got[3];
            const int rc = MPI_Recv(got, 3, MPI_INT, MPI_ANY_SOURCE, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            r = mpi_result(rc, "MPI_Recv");
            if (r == ncclSuccess && (got[1] != nranks || got[0] < 0 || got[0] >= nranks || members[got[0]] >= 0)) {
                char msg[160];
                snprintf(msg, sizeof msg, "ncclCommInitRank: world rank %d asks for rank %d of %d, where %d ranks were "
                         "given (or the rank is taken)", got[2], got[0], got[1], nranks);
                r = emu_fail(ncclInvalidUsage, msg);
            }
            if (r == ncclSuccess) members[got[0]] = got[2];
        }
        for (int i = 0; i < nranks && r == ncclSuccess; i++) {
            if (i == rank) continue;
            r = mpi_result(MPI_Send(members.data(), nranks, MPI_INT, members[i], tag, MPI_COMM_WORLD), "MPI_Send");
        }
    } else {
        int place[3] = {rank, nranks, me};
        r = mpi_result(MPI_Send(place, 3, MPI_INT, e.world_rank, tag, MPI_COMM_WORLD), "MPI_Send");
        if (r == ncclSuccess) {
            const int rc = MPI_Recv(members.data(), nranks, MPI_INT, e.world_rank, tag, MPI_COMM_WORLD,
                                    MPI_STATUS_IGNORE);
            r = mpi_result(rc, "MPI_Recv");
        }
    }
    MPI_Group all, group;
    MPI_Comm comm = MPI_COMM_NULL;
    if (r == ncclSuccess) {
        MPI_Comm_group(MPI_COMM_WORLD, &all);
        MPI_Group_incl(all, nranks, members.data(), &group);
        r = mpi_result(MPI_Comm_create_group(MPI_COMM_WORLD, group, tag, &comm), "MPI_Comm_create_group");
        MPI_Group_free(&group);
        MPI_Group_free(&all);
    }
    if (r != ncclSuccess) return r;
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    *out = new ncclComm{comm, rank, nranks};
    return ncclSuccess;
}

extern "C" ncclResult_t ncclCommDestroy(ncclComm_t c) {
    if (!c) return ncclSuccess;
    const ncclResult_t r = mpi_result(MPI_Comm_free(&c->comm), "MPI_Comm_free");
    delete c;
    return r;
}

extern "C" ncclResult_t ncclGroupStart(void) { return ncclSuccess; }
extern "C" ncclResult_t ncclGroupEnd(void) { return ncclSuccess; }

// ----------------------------------------------------------------------------
// collectives, in pieces that fit MPI's int counts

static ncclResult_t mpi_type(ncclDataType_t t, MPI_Datatype* m, size_t* bytes) {
    switch (t) {
    case ncclInt32: *m = MPI_INT32_T, *bytes = 4; return ncclSuccess;
    case ncclInt64: *m = MPI_INT64_T, *bytes = 8; return ncclSuccess;
    case ncclFloat32: *m = MPI_FLOAT, *bytes = 4; return ncclSuccess;
    case ncclFloat64: *m = MPI_DOUBLE, *bytes = 8; return ncclSuccess;
    default: break;
    }
    char msg[96];
    snprintf(msg, sizeof msg, "data type %d: the emulation has int32, int64, float32 and float64", (int)t);
    return emu_fail(ncclInvalidArgument, msg);
}

static ncclResult_t check_root(const ncclComm* c, int root, const char* call) {
    if (c && root >= 0 && root < c->nranks) return ncclSuccess;
    char msg[96];
    snprintf(msg, sizeof msg, "%s: root %d outside the communicator's %d ranks", call, root, c ? c->nranks : 0);
    return emu_fail(ncclInvalidArgument, msg);
}

#define EMU_PIECE ((size_t)1 << 28) // elements per MPI call

extern "C" ncclResult_t ncclReduce(const void* send, void* recv, size_t count, ncclDataType_t type, ncclRedOp_t op,
                                   int root, ncclComm_t c, cudaStream_t) {
    MPI_Datatype mt;
    size_t bytes;
    ncclResult_t r = check_root(c, root, "ncclReduce");
    if (r == ncclSuccess) r = mpi_type(type, &mt, &bytes);
    if (r == ncclSuccess && op != ncclSum) r = emu_fail(ncclInvalidArgument, "ncclReduce: the emulation sums only");
    for (size_t lo = 0; lo < count && r == ncclSuccess; lo += EMU_PIECE) {
        const int n = (int)(count - lo < EMU_PIECE ? count - lo : EMU_PIECE);
        const char* s = (const char*)send + lo * bytes;
        char* d = (char*)recv + lo * bytes;
        const void* in = c->rank == root && s == d ? MPI_IN_PLACE : (const void*)s;
        r = mpi_result(MPI_Reduce(in, d, n, mt, MPI_SUM, root, c->comm), "MPI_Reduce");
    }
    return r;
}

extern "C" ncclResult_t ncclBroadcast(const void* send, void* recv, size_t count, ncclDataType_t type, int root,
                                      ncclComm_t c, cudaStream_t) {
    MPI_Datatype mt;
    size_t bytes;
    ncclResult_t r = check_root(c, root, "ncclBroadcast");
    if (r == ncclSuccess) r = mpi_type(type, &mt, &bytes);
    if (r == ncclSuccess && c->rank == root && send != recv) memmove(recv, send, count * bytes);
    for (size_t lo = 0; lo < count && r == ncclSuccess; lo += EMU_PIECE) {
        const int n = (int)(count - lo < EMU_PIECE ? count - lo : EMU_PIECE);
        r = mpi_result(MPI_Bcast((char*)recv + lo * bytes, n, mt, root, c->comm), "MPI_Bcast");
    }
    return r;
}
