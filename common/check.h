// Error-check wrappers in the style of llm.c: each failure prints the source file, line,
// what failed and a hint, then takes the job down through ingrain_abort (log.h).
// Module-specific wrappers live with their module: h5Check (io/h5check.h),
// yamlCheck (io/config.c), cudaCheck (model/cuda/).
#pragma once
#include <stddef.h>
#include <stdio.h>

// ----------------------------------------------------------------------------
// memory
void* malloc_check(size_t size, const char* file, int line);
void* calloc_check(size_t count, size_t size, const char* file, int line);
void* realloc_check(void* ptr, size_t size, const char* file, int line);
char* strdup_check(const char* s, const char* file, int line);
#define mallocCheck(size) malloc_check(size, __FILE__, __LINE__)
#define callocCheck(count, size) calloc_check(count, size, __FILE__, __LINE__)
#define reallocCheck(ptr, size) realloc_check(ptr, size, __FILE__, __LINE__)
#define strdupCheck(s) strdup_check(s, __FILE__, __LINE__)

// ----------------------------------------------------------------------------
// files
FILE* fopen_check(const char* path, const char* mode, const char* file, int line);
void fread_check(void* ptr, size_t size, size_t count, FILE* stream, const char* file, int line);
void fwrite_check(const void* ptr, size_t size, size_t count, FILE* stream, const char* file, int line);
void fclose_check(FILE* stream, const char* file, int line);
#define fopenCheck(path, mode) fopen_check(path, mode, __FILE__, __LINE__)
#define freadCheck(ptr, size, count, stream) fread_check(ptr, size, count, stream, __FILE__, __LINE__)
#define fwriteCheck(ptr, size, count, stream) fwrite_check(ptr, size, count, stream, __FILE__, __LINE__)
#define fcloseCheck(stream) fclose_check(stream, __FILE__, __LINE__)
// mkdir -p; fatal with the failing component on error
void mkdirs_check(const char* path, const char* file, int line);
#define mkdirsCheck(path) mkdirs_check(path, __FILE__, __LINE__)

// ----------------------------------------------------------------------------
// MPI: every MPI call's return code goes through mpiCheck
void mpi_check(int err, const char* call, const char* file, int line);
#define mpiCheck(call) mpi_check((call), #call, __FILE__, __LINE__)
