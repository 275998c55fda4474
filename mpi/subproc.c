// Process helpers for sweep and report (see subproc.h).
#define _XOPEN_SOURCE 700 // realpath
#include "mpi/subproc.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

// ----------------------------------------------------------------------------
// locating files

int subproc_self_path(char* out, size_t n) {
    ssize_t len = readlink("/proc/self/exe", out, n - 1);
    if (len <= 0 || (size_t)len >= n - 1) return -1;
    out[len] = '\0';
    return 0;
}

static int is_file(const char* path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int subproc_find_beside(const char* rel, char* out, size_t n) {
    char self[PATH_MAX];
    if (subproc_self_path(self, sizeof(self)) == 0) {
        char* slash = strrchr(self, '/');
        if (slash) *slash = '\0';
        char candidate[PATH_MAX + 64];
        const char* const up[] = {"/..", ""};
        for (int i = 0; i < 2; i++) {
            snprintf(candidate, sizeof(candidate), "%s%s/%s", self, up[i], rel);
            if (is_file(candidate) && realpath(candidate, out)) return strlen(out) < n ? 0 : -1;
        }
    }
    char resolved[PATH_MAX];
    if (is_file(rel) && realpath(rel, resolved) && strlen(resolved) < n) {
        memcpy(out, resolved, strlen(resolved) + 1);
        return 0;
    }
    return -1;
}

// ----------------------------------------------------------------------------
// running a child

int subproc_run(char* const argv[], char* capture, size_t n) {
    int fds[2] = {-1, -1};
    if (capture && pipe(fds) != 0) return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        if (capture) close(fds[0]), close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        if (capture) {
            dup2(fds[1], STDOUT_FILENO);
            close(fds[0]);
            close(fds[1]);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    if (capture) {
        close(fds[1]);
        size_t used = 0;
        for (;;) {
            char chunk[512];
            ssize_t got = read(fds[0], chunk, sizeof(chunk));
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) break;
            size_t keep = used + (size_t)got < n - 1 ? (size_t)got : n - 1 - used;
            memcpy(capture + used, chunk, keep);
            used += keep;
        }
        capture[used] = '\0';
        close(fds[0]);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return -1;
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}
