// Stand-ins for the NCCL collectives (model/devcomm.h) in builds without them: no CUDA backend,
// or no nccl.h beside the CUDA toolkit. devcomm_key fails with the reason, so callers stage
// through host memory; the collectives are never reached.
#include <stdio.h>

#include "common/log.h"
#include "model/devcomm.h"

#define NO_NCCL "this binary was built without NCCL (no CUDA backend, or no nccl.h beside the CUDA toolkit)"

int devcomm_built(void) { return 0; }

void devcomm_describe(char* out, size_t n) { snprintf(out, n, "not built (no CUDA backend, or no nccl.h)"); }

int devcomm_key(Backend* be, char key[DEVCOMM_KEY_BYTES], char* err, size_t errlen) {
    (void)be;
    key[0] = '\0';
    snprintf(err, errlen, NO_NCCL);
    return -1;
}

int devcomm_unique_id(unsigned char id[DEVCOMM_ID_BYTES], char* err, size_t errlen) {
    (void)id;
    snprintf(err, errlen, NO_NCCL);
    return -1;
}

DevComm* devcomm_create(Backend* be, const unsigned char id[DEVCOMM_ID_BYTES], int nranks, int rank, char* err,
                        size_t errlen) {
    (void)be, (void)id, (void)nranks, (void)rank;
    snprintf(err, errlen, NO_NCCL);
    return NULL;
}

void devcomm_free(DevComm* c) { (void)c; }

void devcomm_reduce_slices(DevComm* c, void* x, DevCommType type, const uint64_t* off, const uint64_t* cnt) {
    (void)c, (void)x, (void)type, (void)off, (void)cnt;
    fatal("devcomm_reduce_slices: " NO_NCCL);
}

void devcomm_gather_slices(DevComm* c, void* x, DevCommType type, const uint64_t* off, const uint64_t* cnt) {
    (void)c, (void)x, (void)type, (void)off, (void)cnt;
    fatal("devcomm_gather_slices: " NO_NCCL);
}

void devcomm_broadcast(DevComm* c, void* x, DevCommType type, size_t n, int root) {
    (void)c, (void)x, (void)type, (void)n, (void)root;
    fatal("devcomm_broadcast: " NO_NCCL);
}
