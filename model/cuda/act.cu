// The CUDA backend's activation storage (ops.h, alloc_act): in the bf16 mode an activation
// buffer holds bf16 on the device behind a handle the caller addresses as fp32 elements; the ops
// resolve handles with cuda_view. Storing the activations in bf16 halves the traffic of the
// memory-bound ops and lets the matmuls and the tensor-core attention read them directly,
// without the bf16 operand copies that fp32 activations need. The f32 mode allocates plain
// fp32 buffers. Also here: the conversions between the two storage types and the host transfers
// of activation buffers.
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "model/cuda/ops_cuda.cuh"
#include "model/cuda/storage.cuh"

// ----------------------------------------------------------------------------
// the handles

CudaView cuda_view(Backend* be, const void* p) {
    CudaImpl* c = cuda_impl(be);
    CudaView v = {(void*)p, 0};
    if (!c->acts.n || !p) return v;
    const CudaRange* a = ranges_find(&c->acts, p, 1);
    if (!a) return v;
    const size_t off = (size_t)((const char*)p - a->p);
    if (off % 4) fatal("cuda backend: pointer %p is %zu bytes into an activation buffer, not on an element", p, off);
    v.p = (__nv_bfloat16*)a->data + off / 4;
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

static size_t act_reserved_bytes(size_t n) { return 4 * (n + 1); }

float* cuda_alloc_act(Backend* be, size_t n) {
    CudaImpl* c = cuda_impl(be);
    if (!c->bf16) return (float*)be->alloc(be, n * sizeof(float));
    if (!n) n = 1;
    // one element more than the handle covers: cuda_view takes the pointer one past a buffer's end
    // as that buffer's, so that address must be ours too, not the start of the next mapping (the
    // driver's reservations for device memory, say, which fp32 buffers live in)
    const size_t reserve = act_reserved_bytes(n);
    void* handle = mmap(NULL, reserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (handle == MAP_FAILED) {
        fatal("cuda backend: cannot reserve %zu bytes of address space for an activation", reserve);
    }
    ranges_add(&c->acts, handle, 4 * n, be->alloc(be, n * sizeof(__nv_bfloat16)));
    return (float*)handle;
}

int cuda_free_act(Backend* be, void* p) {
    CudaImpl* c = cuda_impl(be);
    CudaRange* a = c->acts.n ? ranges_find(&c->acts, p, 0) : NULL;
    if (!a) return 0;
    if ((const char*)p != a->p) fatal("cuda backend: free of %p, inside an activation buffer", p);
    be->free(be, a->data);
    munmap((void*)a->p, act_reserved_bytes(a->bytes / 4));
    ranges_remove(&c->acts, a);
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

void cuda_widen(Backend* be, float* dst, CudaView src, size_t rows, size_t cols, size_t ld) {
    if (src.bf16) convert(be, dst, cols, (const __nv_bfloat16*)src.p, ld, rows, cols);
    else convert(be, dst, cols, (const float*)src.p, ld, rows, cols);
}

void cuda_narrow(Backend* be, CudaView dst, const float* src, size_t rows, size_t cols, size_t ld) {
    if (dst.bf16) convert(be, (__nv_bfloat16*)dst.p, ld, src, cols, rows, cols);
    else convert(be, (float*)dst.p, ld, src, cols, rows, cols);
}

// ----------------------------------------------------------------------------
// scatter_rows (ops.h): a thread per element, or per 4 elements where every row start is 4-aligned

template <typename TD, typename TS, int VEC>
__global__ void scatter_rows_kernel(TD* dst, const TS* src, const int* rows, int N, int C) {
    const int cv = C / VEC;
    const size_t n = (size_t)N * cv;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const size_t r = i / cv, j = i % cv;
        Chunk<TS, VEC> a;
        a.load(src + r * C, j);
        chunk_store(dst + (size_t)rows[r] * C, j, a.v);
    }
}

void cuda_scatter_rows(Backend* be, float* dst, const float* src, const int* rows, int N, int C) {
    if (N <= 0 || C <= 0) return;
    const CudaView vd = cuda_view(be, dst), vs = cuda_view(be, src);
    cuda_dispatch2(vd.bf16, vs.bf16, [&](auto td, auto ts) {
        typedef CUDA_TAG_T(td) TD;
        typedef CUDA_TAG_T(ts) TS;
        TD* d = (TD*)vd.p;
        const TS* s = (const TS*)vs.p;
        if (rows_vec4(d, C) && rows_vec4(s, C)) {
            const size_t n = (size_t)N * (C / 4);
            scatter_rows_kernel<TD, TS, 4><<<cuda_grid(n, 256), 256, 0, cuda_stream(be)>>>(d, s, rows, N, C);
        } else {
            const size_t n = (size_t)N * C;
            scatter_rows_kernel<TD, TS, 1><<<cuda_grid(n, 256), 256, 0, cuda_stream(be)>>>(d, s, rows, N, C);
        }
    });
    cudaCheckLaunch();
}

// ----------------------------------------------------------------------------
// host transfers of activation buffers

size_t cuda_act_elems(const char* op, size_t bytes) {
    if (bytes % 4) fatal("cuda backend: %s of %zu bytes on an activation buffer: not whole fp32 elements", op, bytes);
    return bytes / 4;
}

// Both wait for the copy, as upload and download do.
void cuda_act_upload(Backend* be, void* data, const float* host_src, size_t n) {
    __nv_bfloat16* h = (__nv_bfloat16*)malloc(n * sizeof(__nv_bfloat16) + 1);
    if (!h) fatal("cuda backend: out of host memory");
    for (size_t i = 0; i < n; i++) h[i] = __float2bfloat16_rn(host_src[i]);
    cudaCheck(cudaMemcpyAsync(data, h, n * sizeof(__nv_bfloat16), cudaMemcpyHostToDevice, cuda_stream(be)));
    cudaCheck(cudaStreamSynchronize(cuda_stream(be)));
    free(h);
}

void cuda_act_download(Backend* be, float* host_dst, const void* data, size_t n) {
    __nv_bfloat16* h = (__nv_bfloat16*)malloc(n * sizeof(__nv_bfloat16) + 1);
    if (!h) fatal("cuda backend: out of host memory");
    cudaCheck(cudaMemcpyAsync(h, data, n * sizeof(__nv_bfloat16), cudaMemcpyDeviceToHost, cuda_stream(be)));
    cudaCheck(cudaStreamSynchronize(cuda_stream(be)));
    for (size_t i = 0; i < n; i++) host_dst[i] = __bfloat162float(h[i]);
    free(h);
}
