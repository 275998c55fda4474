// Backend selection: device names, the device for a rank, config keys (see backend_select.h).
#include "model/backend_select.h"

#include <stdio.h>
#include <string.h>

#include "model/cuda_peak.h"
#include "model/device.h"

int backend_device_parse(const char* name, DeviceKind* out) {
    if (strcmp(name, "cpu") == 0) *out = DEVICE_CPU;
    else if (strcmp(name, "cuda") == 0) *out = DEVICE_CUDA;
    else return -1;
    return 0;
}

// this rank's GPU among count (ranks on a node take the GPUs round-robin)
static int rank_gpu(int local_rank, int count) { return (local_rank < 0 ? 0 : local_rank) % count; }

Backend* backend_open(DeviceKind device, int bf16, int threads, int local_rank, char* err, size_t errlen) {
    if (device == DEVICE_CPU) {
        if (bf16) {
            snprintf(err, errlen, "bf16 needs the CUDA backend: the CPU backend computes in f32 only");
            return NULL;
        }
        return backend_cpu_create(threads);
    }
    char desc[1024];
    const int count = device_cuda_count(desc, sizeof desc);
    if (count <= 0) {
        snprintf(err, errlen, "this node has no usable GPU: %s", desc);
        return NULL;
    }
    const int gpu = rank_gpu(local_rank, count);
    char why[512];
    Backend* be = backend_cuda_create(gpu, bf16, why, sizeof why);
    if (!be) snprintf(err, errlen, "cannot start the CUDA backend on GPU %d of %d: %s", gpu, count, why);
    return be;
}

Backend* backend_open_flags(const char* device, int bf16, int threads, char* err, size_t errlen) {
    DeviceKind kind;
    char why[1536];
    if (backend_device_parse(device, &kind) != 0) {
        snprintf(err, errlen, "--device %s: unknown device (cpu or cuda)", device);
        return NULL;
    }
    Backend* be = backend_open(kind, bf16, threads, 0, why, sizeof why);
    if (!be) snprintf(err, errlen, "--device %s%s: %s", device, bf16 ? " --bf16" : "", why);
    return be;
}

Backend* model_backend_create(const Config* c, int threads, int local_rank, char* err, size_t errlen) {
    const int bf16 = c->model.dtype == DTYPE_BF16;
    char why[1536], dev[CONFIG_PATH + 64], dt[CONFIG_PATH + 64];
    Backend* be = backend_open((DeviceKind)c->model.device, bf16, threads, local_rank, why, sizeof why);
    if (!be) {
        snprintf(err, errlen, "%s: model.device '%s' with model.dtype '%s' (%s): %s",
                 config_origin(c, "model.device", dev, sizeof dev), config_enum_name("model.device", c->model.device),
                 config_enum_name("model.dtype", c->model.dtype), config_origin(c, "model.dtype", dt, sizeof dt), why);
    }
    return be;
}

void backend_describe(const Backend* be, int bf16, int local_rank, char* buf, size_t n) {
    if (strcmp(be->name, "cuda") != 0) {
        snprintf(buf, n, "%s with %d threads (OpenBLAS %s kernels)", be->name, be->threads, backend_cpu_blas_core());
        return;
    }
    char desc[1024], name[256], err[256];
    const int count = device_cuda_count(desc, sizeof desc);
    const int gpu = count > 0 ? rank_gpu(local_rank, count) : 0;
    if (cuda_device_name(gpu, name, sizeof name, err, sizeof err) != 0) snprintf(name, sizeof name, "?");
    snprintf(buf, n, "cuda GPU %d of %d (%s), %s matmuls", gpu, count, name, bf16 ? "bf16" : "f32");
}
