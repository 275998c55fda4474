// The CUDA backend's activation storage (ops.h, alloc_act): in the bf16 mode an activation
// buffer holds bf16 on the device behind a handle the caller addresses as fp32 elements; the ops
// resolve handles with cuda_view. Storing the activations in bf16 halves the traffic of the
// memory-bound ops and lets the matmuls and the tensor-core attention read them directly,
// without the bf16 operand copies that fp32 activations need. The f32 mode allocates plain
// fp32 buffers. Also here: the memory ops on activation buffers, which convert.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "model/cuda/ops_cuda.cuh"
#include "model/cuda/storage.cuh"

// ----------------------------------------------------------------------------
// the handles

// the buffer whose handle range holds p (its end included, for empty ranges), or NULL
static CudaAct* act_find(CudaImpl* c, const void* p) {
    const char* q = (const char*)p;
    int lo = 0, hi = c->n_acts - 1, found = -1;
    while (lo <= hi) { // the last buffer whose handle is at or before q
        const int mid = (lo + hi) / 2;
        if (c->acts[mid].handle <= q) found = mid, lo = mid + 1;
        else hi = mid - 1;
    }
    if (found < 0) return NULL;
    CudaAct* a = &c->acts[found];
    return q <= a->handle + 4 * a->n ? a : NULL;
}

CudaView cuda_view(Backend* be, const void* p) {
    CudaImpl* c = cuda_impl(be);
    CudaView v = {(void*)p, 0};
    if (!c->n_acts || !p) return v;
    const CudaAct* a = act_find(c, p);
    if (!a) return v;
    const size_t off = (size_t)((const char*)p - a->handle);
    if (off % 4) fatal("cuda backend: pointer %p is %zu bytes into an activation buffer, not on an element", p, off);
    v.p = a->data + off / 4;
    v.bf16 = 1;
    return v;
}

int cuda_views_bf16(const char* op, const CudaView* v, int n) {
    for (int i = 1; i < n; i++) {
        if (v[i].bf16 != v[0].bf16) {
            fatal("cuda backend: %s got bf16 activation buffers and fp32 buffers together (arguments %d and %d); "
                  "it takes one storage type for them", op, 1, i + 1);
        }
    }
    return n ? v[0].bf16 : 0;
}

float* cuda_alloc_act(Backend* be, size_t n) {
    CudaImpl* c = cuda_impl(be);
    if (!c->bf16) return (float*)be->alloc(be, n * sizeof(float));
    if (!n) n = 1;
    void* handle = mmap(NULL, 4 * n, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (handle == MAP_FAILED) fatal("cuda backend: cannot reserve %zu bytes of address space for an activation", 4 * n);
    CudaAct a = {(const char*)handle, n, (__nv_bfloat16*)be->alloc(be, n * sizeof(__nv_bfloat16))};
    if (c->n_acts == c->cap_acts) {
        c->cap_acts = c->cap_acts ? 2 * c->cap_acts : 64;
        c->acts = (CudaAct*)realloc(c->acts, c->cap_acts * sizeof(CudaAct));
        if (!c->acts) fatal("cuda backend: out of host memory");
    }
    int i = c->n_acts++;
    while (i > 0 && c->acts[i - 1].handle > a.handle) {
        c->acts[i] = c->acts[i - 1];
        i--;
    }
    c->acts[i] = a;
    return (float*)handle;
}

int cuda_free_act(Backend* be, void* p) {
    CudaImpl* c = cuda_impl(be);
    CudaAct* a = c->n_acts ? act_find(c, p) : NULL;
    if (!a) return 0;
    if ((const char*)p != a->handle) fatal("cuda backend: free of %p, inside an activation buffer", p);
    be->free(be, a->data);
    munmap((void*)a->handle, 4 * a->n);
    const int i = (int)(a - c->acts);
    memmove(c->acts + i, c->acts + i + 1, (c->n_acts - i - 1) * sizeof(CudaAct));
    c->n_acts--;
    return 1;
}

// ----------------------------------------------------------------------------
// conversions

template <typename TD, typename TS>
__global__ void convert_kernel(TD* dst, size_t ldd, const TS* src, size_t lds, size_t cols, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const size_t r = i / cols, j = i % cols;
        store_f(dst + r * ldd + j, load_f(src + r * lds + j));
    }
}

template <typename TD, typename TS>
static void convert(Backend* be, TD* dst, size_t ldd, const TS* src, size_t lds, size_t rows, size_t cols) {
    const size_t n = rows * cols;
    if (!n) return;
    convert_kernel<<<cuda_grid(n, 256), 256, 0, cuda_stream(be)>>>(dst, ldd, src, lds, cols, n);
    cudaCheckLaunch();
}

void cuda_widen(Backend* be, float* dst, CudaView src, int rows, int cols, int ld) {
    if (src.bf16) convert(be, dst, cols, (const __nv_bfloat16*)src.p, ld, rows, cols);
    else convert(be, dst, cols, (const float*)src.p, ld, rows, cols);
}

void cuda_narrow(Backend* be, CudaView dst, const float* src, int rows, int cols, int ld) {
    if (dst.bf16) convert(be, (__nv_bfloat16*)dst.p, ld, src, cols, rows, cols);
    else convert(be, (float*)dst.p, ld, src, cols, rows, cols);
}

// ----------------------------------------------------------------------------
// memory ops on activation buffers (the byte counts are of the fp32 view)

static size_t act_elems(const char* op, size_t bytes) {
    if (bytes % 4) fatal("cuda backend: %s of %zu bytes on an activation buffer: not whole fp32 elements", op, bytes);
    return bytes / 4;
}

void cuda_act_upload(Backend* be, void* dst, const void* host_src, size_t bytes) {
    const size_t n = act_elems("upload", bytes);
    __nv_bfloat16* h = (__nv_bfloat16*)malloc(n * sizeof(__nv_bfloat16) + 1);
    if (!h) fatal("cuda backend: out of host memory");
    for (size_t i = 0; i < n; i++) h[i] = __float2bfloat16_rn(((const float*)host_src)[i]);
    cudaCheck(cudaMemcpyAsync(cuda_view(be, dst).p, h, n * sizeof(__nv_bfloat16), cudaMemcpyHostToDevice,
                              cuda_stream(be)));
    cudaCheck(cudaStreamSynchronize(cuda_stream(be)));
    free(h);
}

void cuda_act_download(Backend* be, void* host_dst, const void* src, size_t bytes) {
    const size_t n = act_elems("download", bytes);
    __nv_bfloat16* h = (__nv_bfloat16*)malloc(n * sizeof(__nv_bfloat16) + 1);
    if (!h) fatal("cuda backend: out of host memory");
    cudaCheck(cudaMemcpyAsync(h, cuda_view(be, src).p, n * sizeof(__nv_bfloat16), cudaMemcpyDeviceToHost,
                              cuda_stream(be)));
    cudaCheck(cudaStreamSynchronize(cuda_stream(be)));
    for (size_t i = 0; i < n; i++) ((float*)host_dst)[i] = __bfloat162float(h[i]);
    free(h);
}

void cuda_act_memset0(Backend* be, void* dst, size_t bytes) {
    const size_t n = act_elems("memset0", bytes);
    cudaCheck(cudaMemsetAsync(cuda_view(be, dst).p, 0, n * sizeof(__nv_bfloat16), cuda_stream(be)));
}

// either side may be an activation buffer; overlap is possible only between two of them
void cuda_act_copy(Backend* be, void* dst, const void* src, size_t bytes) {
    const size_t n = act_elems("copy", bytes);
    const CudaView d = cuda_view(be, dst), s = cuda_view(be, src);
    if (d.bf16 && s.bf16) {
        const size_t b = n * sizeof(__nv_bfloat16);
        const char *dp = (const char*)d.p, *sp = (const char*)s.p;
        const void* from = s.p;
        if (dp < sp + b && sp < dp + b) {
            void* tmp = cuda_scratch(be, b);
            cudaCheck(cudaMemcpyAsync(tmp, s.p, b, cudaMemcpyDeviceToDevice, cuda_stream(be)));
            from = tmp;
        }
        cudaCheck(cudaMemcpyAsync(d.p, from, b, cudaMemcpyDeviceToDevice, cuda_stream(be)));
    } else if (d.bf16) {
        convert(be, (__nv_bfloat16*)d.p, n, (const float*)s.p, n, 1, n);
    } else {
        convert(be, (float*)d.p, n, (const __nv_bfloat16*)s.p, n, 1, n);
    }
}
