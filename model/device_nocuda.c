// Stand-ins for builds without the CUDA backend (INGRAIN_CUDA=OFF or no nvcc): the device query,
// backend_cuda_create, the GPU benchmark helpers and the NCCL collectives, each failing with the
// reason.
#include <stdio.h>

#include "common/log.h"
#include "model/cuda_peak.h"
#include "model/devcomm.h"
#include "model/device.h"
#include "model/ops.h"

int device_cuda_built(void) { return 0; }

int device_cuda_count(char* desc, size_t n) {
    snprintf(desc, n, "this binary was built without the CUDA backend (configure with -DINGRAIN_CUDA=ON)");
    return 0;
}

Backend* backend_cuda_create(int device, int bf16, char* err, size_t errlen) {
    (void)device;
    (void)bf16;
    snprintf(err, errlen, "this binary was built without the CUDA backend (configure with -DINGRAIN_CUDA=ON)");
    return NULL;
}

double cuda_gemm_peak_tflops(int device, int n, char* err, size_t errlen) {
    (void)device;
    (void)n;
    snprintf(err, errlen, "this binary was built without the CUDA backend (configure with -DINGRAIN_CUDA=ON)");
    return -1.0;
}

int cuda_device_name(int device, char* name, size_t n, char* err, size_t errlen) {
    (void)device;
    if (n) name[0] = '\0';
    snprintf(err, errlen, "this binary was built without the CUDA backend (configure with -DINGRAIN_CUDA=ON)");
    return -1;
}

int cuda_gemm_replay(int device, const MatmulCall* calls, int n, int passes, double* seconds, char* err,
                     size_t errlen) {
    (void)device;
    (void)calls;
    (void)n;
    (void)passes;
    (void)seconds;
    snprintf(err, errlen, "this binary was built without the CUDA backend (configure with -DINGRAIN_CUDA=ON)");
    return -1;
}

int devcomm_built(void) { return 0; }

void devcomm_describe(char* out, size_t n) { snprintf(out, n, "not built (no CUDA backend)"); }

int devcomm_key(Backend* be, char key[DEVCOMM_KEY_BYTES], char* err, size_t errlen) {
    (void)be;
    key[0] = '\0';
    snprintf(err, errlen, "this binary was built without the CUDA backend, so without NCCL");
    return -1;
}

int devcomm_unique_id(unsigned char id[DEVCOMM_ID_BYTES], char* err, size_t errlen) {
    (void)id;
    snprintf(err, errlen, "this binary was built without the CUDA backend, so without NCCL");
    return -1;
}

DevComm* devcomm_create(Backend* be, const unsigned char id[DEVCOMM_ID_BYTES], int nranks, int rank, char* err,
                        size_t errlen) {
    (void)be, (void)id, (void)nranks, (void)rank;
    snprintf(err, errlen, "this binary was built without the CUDA backend, so without NCCL");
    return NULL;
}

void devcomm_free(DevComm* c) { (void)c; }

void devcomm_reduce_slices(DevComm* c, void* x, DevCommType type, const uint64_t* off, const uint64_t* cnt) {
    (void)c, (void)x, (void)type, (void)off, (void)cnt;
    fatal("devcomm_reduce_slices: this binary was built without the CUDA backend");
}

void devcomm_gather_slices(DevComm* c, void* x, DevCommType type, const uint64_t* off, const uint64_t* cnt) {
    (void)c, (void)x, (void)type, (void)off, (void)cnt;
    fatal("devcomm_gather_slices: this binary was built without the CUDA backend");
}

void devcomm_broadcast(DevComm* c, void* x, DevCommType type, size_t n, int root) {
    (void)c, (void)x, (void)type, (void)n, (void)root;
    fatal("devcomm_broadcast: this binary was built without the CUDA backend");
}
