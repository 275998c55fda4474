// Error-check wrappers for memory, files and MPI (see check.h).
#include "common/check.h"

#include <errno.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/log.h"

// ----------------------------------------------------------------------------
// memory

static void out_of_memory(size_t size, const char* what, const char* file, int line) {
    fatal_at(INGRAIN_EXIT_FAILURE, file, line,
             "%s of %zu bytes (%.1f MiB) failed at %s:%d\n"
             "  hint: this rank is out of memory; use a smaller model, batch or context, or fewer ranks per node",
             what, size, (double)size / (1024.0 * 1024.0), file, line);
}

void* malloc_check(size_t size, const char* file, int line) {
    void* p = malloc(size ? size : 1);
    if (!p) out_of_memory(size, "malloc", file, line);
    return p;
}

void* calloc_check(size_t count, size_t size, const char* file, int line) {
    void* p = calloc(count ? count : 1, size ? size : 1);
    if (!p) out_of_memory(count * size, "calloc", file, line);
    return p;
}

void* realloc_check(void* ptr, size_t size, const char* file, int line) {
    void* p = realloc(ptr, size ? size : 1);
    if (!p) out_of_memory(size, "realloc", file, line);
    return p;
}

char* strdup_check(const char* s, const char* file, int line) {
    size_t n = strlen(s) + 1;
    char* p = malloc_check(n, file, line);
    memcpy(p, s, n);
    return p;
}

// ----------------------------------------------------------------------------
// files

FILE* fopen_check(const char* path, const char* mode, const char* file, int line) {
    FILE* f = fopen(path, mode);
    if (!f) {
        int e = errno;
        fatal_at(INGRAIN_EXIT_FAILURE, file, line,
                 "cannot open '%s' (mode %s): %s (at %s:%d)\n"
                 "  hint: check that the path exists, and that this node can %s it",
                 path, mode, strerror(e), file, line, mode[0] == 'r' ? "read" : "write");
    }
    return f;
}

void fread_check(void* ptr, size_t size, size_t count, FILE* stream, const char* file, int line) {
    size_t got = fread(ptr, size, count, stream);
    if (got != count) {
        fatal_at(INGRAIN_EXIT_FAILURE, file, line,
                 "read of %zu items of %zu bytes returned %zu (%s) at %s:%d\n"
                 "  hint: the file is truncated or unreadable",
                 count, size, got, feof(stream) ? "end of file" : strerror(errno), file, line);
    }
}

void fwrite_check(const void* ptr, size_t size, size_t count, FILE* stream, const char* file, int line) {
    size_t put = fwrite(ptr, size, count, stream);
    if (put != count) {
        fatal_at(INGRAIN_EXIT_FAILURE, file, line,
                 "write of %zu items of %zu bytes wrote %zu (%s) at %s:%d\n"
                 "  hint: the disk may be full or the file system read-only",
                 count, size, put, strerror(errno), file, line);
    }
}

void fclose_check(FILE* stream, const char* file, int line) {
    if (fclose(stream) != 0) {
        fatal_at(INGRAIN_EXIT_FAILURE, file, line,
                 "fclose failed: %s at %s:%d\n  hint: buffered data could not be written; the disk may be full",
                 strerror(errno), file, line);
    }
}

void mkdirs_check(const char* path, const char* file, int line) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(buf)) {
        fatal_at(INGRAIN_EXIT_FAILURE, file, line, "mkdir: invalid path '%s' (at %s:%d)", path, file, line);
    }
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0775) != 0 && errno != EEXIST) {
            int e = errno;
            fatal_at(INGRAIN_EXIT_FAILURE, file, line,
                     "cannot create directory '%s': %s (at %s:%d)\n  hint: check permissions and free space",
                     buf, strerror(e), file, line);
        }
        buf[i] = saved;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fatal_at(INGRAIN_EXIT_FAILURE, file, line, "'%s' exists but is not a directory (at %s:%d)", path, file, line);
    }
}

// ----------------------------------------------------------------------------
// MPI

void mpi_check(int err, const char* call, const char* file, int line) {
    if (err == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(err, msg, &len);
    fatal_at(INGRAIN_EXIT_FAILURE, file, line,
             "MPI call failed: %s\n  -> %s (at %s:%d)\n"
             "  hint: another rank may have died; look for its error above", call, msg, file, line);
}
