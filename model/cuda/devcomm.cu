// NCCL collectives among the ranks' GPUs (see model/devcomm.h), on the CUDA backend's stream.
// Built when nccl.h is found beside the CUDA toolkit; else model/devcomm_none.c stands in.
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "model/cuda/ops_cuda.cuh"

extern "C" {
#include "common/check.h"
#include "model/devcomm.h"
}

#include <dlfcn.h>
#include <nccl.h>

static_assert(sizeof(ncclUniqueId) == DEVCOMM_ID_BYTES, "DEVCOMM_ID_BYTES is not sizeof(ncclUniqueId)");

// NCCL is loaded when first asked for, so that a binary built with it still runs (and stages
// through host memory) on a node without libnccl
#define NCCL_FUNCS(X)                                                                                              \
    X(ncclGetUniqueId) X(ncclCommInitRank) X(ncclCommDestroy) X(ncclGroupStart) X(ncclGroupEnd) X(ncclReduce)      \
        X(ncclBroadcast) X(ncclGetErrorString) X(ncclGetVersion)
#define NCCL_POINTER(f) static decltype(&f) p_##f;
NCCL_FUNCS(NCCL_POINTER)

static int nccl_load(char* err, size_t errlen) {
    static int state = 0; // 0 not tried, 1 loaded, -1 failed
    static char why[256];
    if (state == 0) {
        void* lib = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
        state = lib ? 1 : -1;
        if (!lib) snprintf(why, sizeof why, "libnccl.so.2 could not be loaded (%s)", dlerror());
#define NCCL_SYMBOL(f)                                                                                             \
    if (state == 1 && !(p_##f = (decltype(&f))dlsym(lib, #f))) {                                                   \
        snprintf(why, sizeof why, "libnccl.so.2 lacks %s", #f);                                                    \
        state = -1;                                                                                                \
    }
        NCCL_FUNCS(NCCL_SYMBOL)
    }
    if (state < 0) snprintf(err, errlen, "%s", why);
    return state > 0 ? 0 : -1;
}

static inline void nccl_check(ncclResult_t r, const char* call, const char* file, int line) {
    if (r == ncclSuccess) return;
    fatal_at(INGRAIN_EXIT_FAILURE, file, line, "NCCL call failed: %s\n  -> %s (at %s:%d)\n"
             "  hint: NCCL_DEBUG=INFO shows why; one trainer per GPU, and the GPUs must reach each other",
             call, p_ncclGetErrorString(r), file, line);
}
#define ncclCheck(call) nccl_check((call), #call, __FILE__, __LINE__)

struct DevComm {
    Backend* be;
    ncclComm_t comm;
    int nranks;
};

static int is_cuda(Backend* be) { return be && be->name && strcmp(be->name, "cuda") == 0; }

extern "C" int devcomm_built(void) { return 1; }

extern "C" void devcomm_describe(char* out, size_t n) {
    char err[256];
    int v = 0;
    if (nccl_load(err, sizeof err) != 0) {
        snprintf(out, n, "built in; %s", err);
    } else if (p_ncclGetVersion(&v) != ncclSuccess) {
        snprintf(out, n, "built in; libnccl.so.2 loaded, its version unknown");
    } else { // NCCL_VERSION(X, Y, Z) = X * 10000 + Y * 100 + Z since 2.9
        snprintf(out, n, "built in; libnccl.so.2 %d.%d.%d loaded", v / 10000, v / 100 % 100, v % 100);
    }
}

extern "C" int devcomm_key(Backend* be, char key[DEVCOMM_KEY_BYTES], char* err, size_t errlen) {
    if (!is_cuda(be)) {
        snprintf(err, errlen, "the trainer runs on the %s backend, not on a GPU", be ? be->name : "(none)");
        return -1;
    }
    if (nccl_load(err, errlen) != 0) return -1;
    char host[48] = "", bus[32] = "";
    gethostname(host, sizeof host - 1);
    cudaCheck(cudaDeviceGetPCIBusId(bus, (int)sizeof bus, cuda_impl(be)->device));
    snprintf(key, DEVCOMM_KEY_BYTES, "%s/%s", host, bus);
    return 0;
}

extern "C" int devcomm_unique_id(unsigned char id[DEVCOMM_ID_BYTES], char* err, size_t errlen) {
    ncclUniqueId u;
    if (nccl_load(err, errlen) != 0) return -1;
    const ncclResult_t r = p_ncclGetUniqueId(&u);
    if (r != ncclSuccess) {
        snprintf(err, errlen, "ncclGetUniqueId: %s", p_ncclGetErrorString(r));
        return -1;
    }
    memcpy(id, &u, sizeof u);
    return 0;
}

extern "C" DevComm* devcomm_create(Backend* be, const unsigned char id[DEVCOMM_ID_BYTES], int nranks, int rank,
                                   char* err, size_t errlen) {
    ncclUniqueId u;
    memcpy(&u, id, sizeof u);
    if (nccl_load(err, errlen) != 0) return NULL;
    cudaCheck(cudaSetDevice(cuda_impl(be)->device));
    ncclComm_t comm;
    const ncclResult_t r = p_ncclCommInitRank(&comm, nranks, u, rank);
    if (r != ncclSuccess) {
        snprintf(err, errlen, "ncclCommInitRank (rank %d of %d): %s", rank, nranks, p_ncclGetErrorString(r));
        return NULL;
    }
    DevComm* c = (DevComm*)callocCheck(1, sizeof(DevComm));
    c->be = be;
    c->comm = comm;
    c->nranks = nranks;
    return c;
}

extern "C" void devcomm_free(DevComm* c) {
    if (!c) return;
    cudaCheck(cudaStreamSynchronize(cuda_stream(c->be)));
    ncclCheck(p_ncclCommDestroy(c->comm));
    free(c);
}

static ncclDataType_t nccl_type(DevCommType t) { return t == DEVCOMM_I64 ? ncclInt64 : ncclFloat32; }
static size_t type_bytes(DevCommType t) { return t == DEVCOMM_I64 ? sizeof(int64_t) : sizeof(float); }

// One in-place root collective per slice, all in one group (the slices may differ in length,
// which ncclReduceScatter and ncclAllGather do not allow): ncclReduce onto each slice's owner, or
// ncclBroadcast from it. NCCL writes device memory outside the backend's ops, so the bf16 operand
// copies are forgotten.
static void slice_collectives(DevComm* c, void* x, DevCommType type, const uint64_t* off, const uint64_t* cnt,
                              int reduce) {
    char* base = (char*)x;
    cudaStream_t stream = cuda_stream(c->be);
    ncclCheck(p_ncclGroupStart());
    for (int r = 0; r < c->nranks; r++) {
        void* at = base + off[r] * type_bytes(type);
        if (reduce)
            ncclCheck(p_ncclReduce(at, at, (size_t)cnt[r], nccl_type(type), ncclSum, r, c->comm, stream));
        else
            ncclCheck(p_ncclBroadcast(at, at, (size_t)cnt[r], nccl_type(type), r, c->comm, stream));
    }
    ncclCheck(p_ncclGroupEnd());
    operands_forget(cuda_impl(c->be));
}

extern "C" void devcomm_reduce_slices(DevComm* c, void* x, DevCommType type, const uint64_t* off, const uint64_t* cnt) {
    slice_collectives(c, x, type, off, cnt, 1);
}

extern "C" void devcomm_gather_slices(DevComm* c, void* x, DevCommType type, const uint64_t* off, const uint64_t* cnt) {
    slice_collectives(c, x, type, off, cnt, 0);
}

extern "C" void devcomm_broadcast(DevComm* c, void* x, DevCommType type, size_t n, int root) {
    ncclCheck(p_ncclBroadcast(x, x, n, nccl_type(type), root, c->comm, cuda_stream(c->be)));
    operands_forget(cuda_impl(c->be));
}


