// Logging with a rank prefix and levels, and the one abort path of the job:
// every fatal error prints the failing rank and reason, then brings down all ranks.
#pragma once
#include <stdarg.h>

// ----------------------------------------------------------------------------
// exit codes of the `ingrain` binary (documented in README.md)
enum {
    INGRAIN_EXIT_OK = 0,
    INGRAIN_EXIT_FAILURE = 1,  // runtime error: I/O, MPI, numerics, a failing rank
    INGRAIN_EXIT_USAGE = 2,    // bad command line, invalid config or input file
    INGRAIN_EXIT_REQUEUE = 75, // stopped on SIGTERM/SIGUSR1 after a checkpoint: requeue (EX_TEMPFAIL)
};

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } LogLevel;

// ----------------------------------------------------------------------------
// identity of this process, used as the prefix of every line
void log_set_rank(int rank, int world_size);
void log_set_role(const char* role); // e.g. "rollout+trainer"; NULL clears
void log_set_level(LogLevel level);
LogLevel log_level(void);
int log_parse_level(const char* name, LogLevel* out); // 0 on success

// ----------------------------------------------------------------------------
// printing: debug/info to stdout, warn/error to stderr
void log_msg(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(LogLevel level, const char* fmt, va_list ap);
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
// the prefix of this process' lines, e.g. "[rank 2/4 trainer] " or "ingrain: "
const char* log_prefix(void);

// ----------------------------------------------------------------------------
// abort path: flush, then MPI_Abort when other ranks exist (so none hangs), else exit
__attribute__((noreturn)) void ingrain_abort(int exit_code);
__attribute__((noreturn, format(printf, 4, 5))) void fatal_at(int exit_code, const char* file, int line,
                                                                const char* fmt, ...);
#define fatal(...) fatal_at(INGRAIN_EXIT_FAILURE, __FILE__, __LINE__, __VA_ARGS__)
#define fatal_usage(...) fatal_at(INGRAIN_EXIT_USAGE, __FILE__, __LINE__, __VA_ARGS__)
