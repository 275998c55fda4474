// The model's PyTorch reference test (tests/unit/test_model.c) on the CUDA backend in f32 mode
// (label gpu): that file compiled again with every backend_cpu_create answered by a CUDA backend
// on GPU 0, so the same reference data (tests/data/model, from tools/model_reference.py) meets the
// same tolerances: logits and loss 1e-5 relative, each parameter's gradient 1e-4 of its tensor's
// largest value, 10 AdamW steps' losses and gradient norms 1e-4 relative; then its padding check
// (bit-identical real positions and gradients whatever the padded tokens) and its determinism
// check (two trainings on the GPU, bit-identical weights).
// INGRAIN_TEST_DATA in the environment overrides the compiled path of tests/ (a copy of the tree
// on another machine). Without a usable GPU it prints "no CUDA GPU: <reason>" and exits 77.
#include <stdio.h>
#include <stdlib.h>

#include "model/ops.h"

static Backend* gpu_backend(int threads);
static const char* test_data_dir(void);

static const char* const compiled_test_data = INGRAIN_TEST_DATA;
#undef INGRAIN_TEST_DATA
#define INGRAIN_TEST_DATA test_data_dir()
#define backend_cpu_create(threads) gpu_backend(threads)
#define main test_model_main
#include "../unit/test_model.c"
#undef main
#undef backend_cpu_create

static const char* test_data_dir(void) {
    const char* env = getenv("INGRAIN_TEST_DATA");
    return env && *env ? env : compiled_test_data;
}

static Backend* gpu_backend(int threads) {
    (void)threads;
    char err[512];
    Backend* be = backend_cuda_create(0, 0, err, sizeof err);
    if (!be) fail_msg("backend_cuda_create: %s", err);
    return be;
}

int main(void) {
    char err[512];
    Backend* probe = backend_cuda_create(0, 0, err, sizeof err);
    if (!probe) {
        printf("no CUDA GPU: %s\n", err);
        return 77;
    }
    backend_destroy(probe);
    printf("test_model_gpu: reference data under %s\n", test_data_dir());
    return test_model_main();
}
