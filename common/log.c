// Rank-prefixed logging and the abort path shared by every module.
#include "common/log.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// process identity

static int g_rank = 0;
static int g_world = 1;
static char g_role[64] = "";
static char g_prefix[128] = "ingrain: ";
static LogLevel g_level = LOG_INFO;

static void rebuild_prefix(void) {
    if (g_world <= 1 && g_role[0] == '\0') {
        snprintf(g_prefix, sizeof(g_prefix), "ingrain: ");
    } else if (g_role[0] == '\0') {
        snprintf(g_prefix, sizeof(g_prefix), "[rank %d/%d] ", g_rank, g_world);
    } else {
        snprintf(g_prefix, sizeof(g_prefix), "[rank %d/%d %s] ", g_rank, g_world, g_role);
    }
}

void log_set_rank(int rank, int world_size) {
    g_rank = rank;
    g_world = world_size;
    rebuild_prefix();
}

void log_set_role(const char* role) {
    snprintf(g_role, sizeof(g_role), "%s", role ? role : "");
    rebuild_prefix();
}

void log_set_level(LogLevel level) { g_level = level; }
LogLevel log_level(void) { return g_level; }
const char* log_prefix(void) { return g_prefix; }

static const char* level_names[] = {"debug", "info", "warn", "error"};

int log_parse_level(const char* name, LogLevel* out) {
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (LogLevel)i;
            return 0;
        }
    }
    return -1;
}

// ----------------------------------------------------------------------------
// printing

void log_vmsg(LogLevel level, const char* fmt, va_list ap) {
    if (level < g_level) return;
    FILE* out = level >= LOG_WARN ? stderr : stdout;
    // one buffered write per line so lines of different ranks do not interleave mid-line
    char buf[4096];
    int n = snprintf(buf, sizeof(buf), "%s%s", g_prefix,
                     level == LOG_WARN ? "warning: " : level == LOG_ERROR ? "error: " : "");
    if (n < 0) n = 0;
    if ((size_t)n < sizeof(buf)) vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
    size_t len = strlen(buf);
    if (len == 0 || buf[len - 1] != '\n') {
        if (len + 1 < sizeof(buf)) {
            buf[len++] = '\n';
            buf[len] = '\0';
        } else {
            buf[sizeof(buf) - 2] = '\n';
        }
    }
    fputs(buf, out);
    fflush(out);
}

void log_msg(LogLevel level, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, fmt, ap);
    va_end(ap);
}

// ----------------------------------------------------------------------------
// abort path

void ingrain_abort(int exit_code) {
    fflush(stdout);
    fflush(stderr);
    int initialized = 0, finalized = 0, world = 1;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (initialized && !finalized) {
        MPI_Comm_size(MPI_COMM_WORLD, &world);
        if (world > 1) MPI_Abort(MPI_COMM_WORLD, exit_code);
        MPI_Finalize();
    }
    exit(exit_code);
}

void fatal_at(int exit_code, const char* file, int line, const char* fmt, ...) {
    char msg[3072];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (g_level <= LOG_DEBUG) {
        log_msg(LOG_ERROR, "%s\n  (raised at %s:%d)", msg, file, line);
    } else {
        log_msg(LOG_ERROR, "%s", msg);
    }
    ingrain_abort(exit_code);
}
