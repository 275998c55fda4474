// A host stand-in for the part of cuBLAS the CUDA backend uses, for its emulated build: GemmEx on
// fp32 or bf16 operands with an fp32 C (or a bf16 one with bf16 operands), computed by OpenBLAS's
// sgemm on fp32 copies of the operands (bf16 ones widened exactly; fp32 ones under
// CUBLAS_COMPUTE_32F_FAST_16BF rounded to bf16 first, as that mode's tensor cores take them).
// Column-major, as cuBLAS.
#pragma once
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_runtime.h"

typedef struct EmuCublas* cublasHandle_t;
typedef enum {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
} cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUDA_R_32F = 0, CUDA_R_16BF = 14 } cudaDataType;
typedef enum { CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_FAST_16BF = 75 } cublasComputeType_t;
typedef enum { CUBLAS_GEMM_DEFAULT = -1 } cublasGemmAlgo_t;
typedef enum { CUBLAS_DEFAULT_MATH = 0 } cublasMath_t;
typedef enum { CUBLAS_POINTER_MODE_HOST = 0 } cublasPointerMode_t;

inline cublasStatus_t cublasCreate(cublasHandle_t* h) {
    static int one;
    *h = (cublasHandle_t)(void*)&one;
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasDestroy(cublasHandle_t) { return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasSetWorkspace(cublasHandle_t, void*, size_t) { return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasSetPointerMode(cublasHandle_t, cublasPointerMode_t) { return CUBLAS_STATUS_SUCCESS; }
inline const char* cublasGetStatusName(cublasStatus_t s) {
    return s == CUBLAS_STATUS_SUCCESS         ? "CUBLAS_STATUS_SUCCESS"
           : s == CUBLAS_STATUS_INVALID_VALUE ? "CUBLAS_STATUS_INVALID_VALUE"
                                              : "CUBLAS_STATUS_NOT_SUPPORTED";
}
inline const char* cublasGetStatusString(cublasStatus_t s) { return cublasGetStatusName(s); }

// an fp32 copy of a column-major operand (rows, cols), leading dimension ld
inline float* emu_gemm_operand(const void* p, cudaDataType type, int rows, int cols, int ld, bool round_bf16) {
    const size_t n = (size_t)ld * (cols - 1) + rows;
    float* f = (float*)malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        if (type == CUDA_R_16BF) f[i] = emu_bf16_float(((const __nv_bfloat16*)p)[i].bits);
        else f[i] = round_bf16 ? emu_bf16_float(emu_bf16_bits(((const float*)p)[i])) : ((const float*)p)[i];
    }
    return f;
}

inline cublasStatus_t cublasGemmEx(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                   const void* alpha, const void* A, cudaDataType a_type, int lda, const void* B,
                                   cudaDataType b_type, int ldb, const void* beta, void* C, cudaDataType c_type,
                                   int ldc, cublasComputeType_t compute, cublasGemmAlgo_t) {
    if (m < 0 || n < 0 || k < 0 || (c_type == CUDA_R_16BF && a_type != CUDA_R_16BF)) {
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    if (lda < (ta ? k : m) || ldb < (tb ? n : k) || ldc < m || lda < 1 || ldb < 1 || ldc < 1) {
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    const float a = *(const float*)alpha, b = *(const float*)beta;
    // a bf16 C is computed in fp32 (beta included) and rounded once at the end
    float* c = c_type == CUDA_R_16BF ? emu_gemm_operand(C, c_type, m, n, ldc, false) : (float*)C;
    if (b == 0.0f) { // C is not read (NaN there stays out), as cuBLAS
        for (int j = 0; j < n; j++) memset(c + (size_t)j * ldc, 0, (size_t)m * sizeof(float));
    }
    if (k == 0) {
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) c[(size_t)j * ldc + i] *= b;
    } else {
        const bool fast = compute == CUBLAS_COMPUTE_32F_FAST_16BF;
        float* af = emu_gemm_operand(A, a_type, ta ? k : m, ta ? m : k, lda, fast);
        float* bf = emu_gemm_operand(B, b_type, tb ? n : k, tb ? k : n, ldb, fast);
        cblas_sgemm(CblasColMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, a, af,
                    lda, bf, ldb, b, c, ldc);
        free(af);
        free(bf);
    }
    if (c_type == CUDA_R_16BF) {
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++)
                ((__nv_bfloat16*)C)[(size_t)j * ldc + i].bits = emu_bf16_bits(c[(size_t)j * ldc + i]);
        free(c);
    }
    return CUBLAS_STATUS_SUCCESS;
}
