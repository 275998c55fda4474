// External environments: a subprocess, started with /bin/sh -c COMMAND, that speaks line-delimited
// JSON on its stdin/stdout (one request line, one reply line; docs/ENVIRONMENTS.md has every
// message). Each reply must come within env.timeout_s (poll). If the process dies it is restarted
// once per call and the current episode is replayed (reset + the steps so far) before the call is
// retried. A process that dies again, hangs, or writes invalid JSON or a reply without its fields
// gives an error naming the command and the message, never a hang.
// The process is started with posix_spawn (fork/exec semantics without duplicating the address
// space, which is safe in MPI ranks with registered memory), in its own process group so that a
// kill also reaches whatever the shell started.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/check.h"
#include "model/timer.h"
#include "rollout/env_impl.h"

extern char** environ;

#define PROTOCOL_VERSION 1
#define MAX_LINE (64u << 20)  // longest reply line accepted
#define ERR_TAIL 600          // bytes of the process' stderr kept for error messages

typedef struct {
    pid_t pid;       // 0: not running
    int in, out, err; // our ends of the child's stdin, stdout, stderr
    int err_open;    // stderr has not reached end of file (poll skips it after)
    StrBuf buf;      // stdout bytes read but not consumed
    char tail[ERR_TAIL + 1]; // the last bytes of stderr
    size_t tail_len;
} Proc;

typedef struct {
    Env base;
    char* command;
    char label[240];  // "external environment 'COMMAND'" for messages
    double timeout_s;
    uint64_t seed;
    int want[2];      // tasks asked for per split
    json_t* listing;  // the 'tasks' reply (tool strings point into it)
    EnvTool* tools;
    Proc proc;
    // the episode, for replay after a restart
    int in_episode, done;
    json_t* reset_msg;
    json_t** steps;   // step messages answered so far
    int nsteps, cap;
} ExtEnv;

typedef enum { OUT_OK = 0, OUT_ERROR, OUT_DIED } Outcome;

static int fail(ExtEnv* x, EnvError* err, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(ExtEnv* x, EnvError* err, const char* fmt, ...) {
    char msg[sizeof(err->msg) - sizeof(x->label) - 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(err->msg, sizeof(err->msg), "%s: %s", x->label, msg);
    return OUT_ERROR;
}

// ----------------------------------------------------------------------------
// the process

static void keep_tail(Proc* p, const char* data, size_t n) {
    if (n >= ERR_TAIL) {
        memcpy(p->tail, data + n - ERR_TAIL, ERR_TAIL);
        p->tail_len = ERR_TAIL;
    } else {
        size_t keep = p->tail_len + n > ERR_TAIL ? ERR_TAIL - n : p->tail_len;
        memmove(p->tail, p->tail + p->tail_len - keep, keep);
        memcpy(p->tail + keep, data, n);
        p->tail_len = keep + n;
    }
    p->tail[p->tail_len] = '\0';
}

// reads what stderr has now; 0 at end of file
static int drain_stderr(Proc* p) {
    char chunk[4096];
    while (p->err_open) {
        ssize_t n = read(p->err, chunk, sizeof(chunk));
        if (n > 0) keep_tail(p, chunk, (size_t)n);
        else if (n < 0 && errno == EINTR) continue;
        else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 1;
        else p->err_open = 0;
    }
    return 0;
}

// the stderr entry of a poll set: ignored (fd -1) once stderr is closed, so poll does not spin
static int err_fd(const Proc* p) {
    return p->err_open ? p->err : -1;
}

static int proc_start(ExtEnv* x, EnvError* err) {
    Proc* p = &x->proc;
    int fds[6] = {-1, -1, -1, -1, -1, -1}; // child's stdin, stdout, stderr: read end, write end
    for (int i = 0; i < 6; i += 2) {
        if (pipe(fds + i) != 0) {
            int e = errno;
            for (int k = 0; k < i; k++) close(fds[k]);
            return fail(x, err, "cannot create pipes: %s", strerror(e));
        }
    }
    // no end may leak into processes started later (it would hold a pipe open)
    for (int i = 0; i < 6; i++) fcntl(fds[i], F_SETFD, FD_CLOEXEC);
    int in[2] = {fds[0], fds[1]}, out[2] = {fds[2], fds[3]}, er[2] = {fds[4], fds[5]};
    // the child gets PYTHONUNBUFFERED=1 so that a Python environment's replies are not held in a buffer
    size_t nenv = 0;
    while (environ[nenv]) nenv++;
    char** envp = mallocCheck((nenv + 2) * sizeof(char*));
    size_t k = 0;
    for (size_t i = 0; i < nenv; i++)
        if (strncmp(environ[i], "PYTHONUNBUFFERED=", 17) != 0) envp[k++] = environ[i];
    envp[k++] = "PYTHONUNBUFFERED=1";
    envp[k] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, er[1], 2);
    posix_spawnattr_init(&attr);
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGTERM);
    sigaddset(&defaults, SIGINT);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    char* argv[] = {"/bin/sh", "-c", x->command, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    free(envp);
    close(in[0]);
    close(out[1]);
    close(er[1]);
    if (rc != 0) {
        close(in[1]);
        close(out[0]);
        close(er[0]);
        return fail(x, err, "cannot start /bin/sh: %s", strerror(rc));
    }
    p->pid = pid;
    p->in = in[1];
    p->out = out[0];
    p->err = er[0];
    p->err_open = 1;
    fcntl(p->in, F_SETFL, fcntl(p->in, F_GETFL) | O_NONBLOCK);
    fcntl(p->out, F_SETFL, fcntl(p->out, F_GETFL) | O_NONBLOCK);
    fcntl(p->err, F_SETFL, fcntl(p->err, F_GETFL) | O_NONBLOCK);
    strbuf_clear(&p->buf);
    p->tail_len = 0;
    p->tail[0] = '\0';
    return OUT_OK;
}

// Ends the process: waits up to `grace` seconds for it to exit by itself, then kills its
// process group. Describes how it ended into `how` (may be NULL).
static void proc_stop(Proc* p, double grace, char* how, size_t n) {
    if (!p->pid) return;
    close(p->in);
    int status = 0, reaped = 0;
    for (double end = timer_now() + grace;;) {
        pid_t r = waitpid(p->pid, &status, WNOHANG);
        if (r == p->pid) {
            reaped = 1;
            break;
        }
        if (r < 0 && errno != EINTR) break;
        if (timer_now() >= end) break;
        drain_stderr(p);
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kill(-p->pid, SIGKILL); // the group: whatever the shell started goes too
    if (!reaped) {
        while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR) {}
    }
    // stderr reaches end of file once every process holding it is gone
    for (double end = timer_now() + 0.5; timer_now() < end;) {
        struct pollfd pf = {err_fd(p), POLLIN, 0};
        if (!p->err_open || (poll(&pf, 1, 50) > 0 && !drain_stderr(p))) break;
    }
    close(p->out);
    close(p->err);
    p->pid = 0;
    if (how) {
        if (!reaped) snprintf(how, n, "did not exit and was killed");
        else if (WIFEXITED(status)) snprintf(how, n, "exited with status %d", WEXITSTATUS(status));
        else if (WIFSIGNALED(status))
            snprintf(how, n, "was killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
        else snprintf(how, n, "ended");
    }
}

// the last line of stderr worth quoting, or ""
static void stderr_hint(const Proc* p, char* out, size_t n) {
    char copy[ERR_TAIL + 1];
    memcpy(copy, p->tail, p->tail_len + 1);
    size_t len = p->tail_len;
    while (len && (copy[len - 1] == '\n' || copy[len - 1] == '\r' || copy[len - 1] == ' ')) copy[--len] = '\0';
    char* last = strrchr(copy, '\n');
    const char* line = last ? last + 1 : copy;
    if (*line) snprintf(out, n, "; its last stderr line: '%.200s'", line);
    else out[0] = '\0';
}

// writes one line before the deadline; OUT_DIED if the process closed its stdin
static Outcome proc_write(ExtEnv* x, const char* line, double deadline, const char* what, EnvError* err) {
    Proc* p = &x->proc;
    size_t len = strlen(line), off = 0;
    // SIGPIPE is blocked while writing (EPIPE tells us instead) and a pending one consumed
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigpending(&pending);
    int was_pending = sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    Outcome rc = OUT_OK;
    while (off < len) {
        ssize_t n = write(p->in, line + off, len - off);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EPIPE) {
            rc = OUT_DIED;
            break;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            double left = deadline - timer_now();
            struct pollfd pf[2] = {{p->in, POLLOUT, 0}, {err_fd(p), POLLIN, 0}};
            if (left <= 0) {
                rc = fail(x, err, "did not read the '%s' message within %g s (env.timeout_s)", what, x->timeout_s);
                break;
            }
            if (poll(pf, 2, (int)(left * 1000) + 1) > 0 && (pf[1].revents & (POLLIN | POLLHUP))) drain_stderr(p);
            continue;
        }
        rc = fail(x, err, "writing the '%s' message failed: %s", what, strerror(errno));
        break;
    }
    if (rc == OUT_DIED && !was_pending) {
        struct timespec zero = {0, 0};
        sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

// takes whatever stdout holds now, without waiting
static void proc_slurp(Proc* p) {
    char chunk[4096];
    ssize_t n;
    while ((n = read(p->out, chunk, sizeof(chunk))) > 0 && p->buf.len <= MAX_LINE)
        strbuf_append(&p->buf, chunk, (size_t)n);
}

// reads one line before the deadline into *line (malloc'd, without the newline)
static Outcome proc_read(ExtEnv* x, double deadline, const char* what, char** line, EnvError* err) {
    Proc* p = &x->proc;
    for (;;) {
        char* nl = p->buf.len ? memchr(p->buf.s, '\n', p->buf.len) : NULL;
        if (nl) {
            size_t n = (size_t)(nl - p->buf.s);
            *line = mallocCheck(n + 1);
            memcpy(*line, p->buf.s, n);
            (*line)[n] = '\0';
            memmove(p->buf.s, nl + 1, p->buf.len - n - 1);
            p->buf.len -= n + 1;
            p->buf.s[p->buf.len] = '\0';
            return OUT_OK;
        }
        if (p->buf.len > MAX_LINE)
            return fail(x, err, "the reply to '%s' is longer than %u MiB without a newline", what, MAX_LINE >> 20);
        double left = deadline - timer_now();
        if (left <= 0)
            return fail(x, err, "no reply to the '%s' message within %g s (env.timeout_s); the process was stopped",
                        what, x->timeout_s);
        struct pollfd pf[2] = {{p->out, POLLIN, 0}, {err_fd(p), POLLIN, 0}};
        int r = poll(pf, 2, (int)(left * 1000) + 1);
        if (r < 0 && errno != EINTR) return fail(x, err, "poll failed: %s", strerror(errno));
        if (r <= 0) continue;
        if (pf[1].revents & (POLLIN | POLLHUP)) drain_stderr(p);
        if (pf[0].revents & (POLLIN | POLLHUP)) {
            char chunk[65536];
            ssize_t n = read(p->out, chunk, sizeof(chunk));
            if (n == 0) return OUT_DIED;
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                return fail(x, err, "reading the reply to '%s' failed: %s", what, strerror(errno));
            if (n > 0) strbuf_append(&p->buf, chunk, (size_t)n);
        }
    }
}

// ----------------------------------------------------------------------------
// one message and its reply

// Sends msg and parses the reply line into *reply (a JSON object without an "error" member).
// OUT_DIED when the process is gone (the caller may restart it); on OUT_ERROR the process is
// stopped when its output can no longer be trusted (a hang, garbage).
static Outcome exchange(ExtEnv* x, const json_t* msg, json_t** reply, EnvError* err) {
    *reply = NULL;
    const char* what = json_string_value(json_object_get(msg, "type"));
    Proc* p = &x->proc;
    // output that answers nothing would be taken for this message's reply: catch what has arrived
    proc_slurp(p);
    if (p->buf.len) {
        char shown[120];
        size_t len = strcspn(p->buf.s, "\n");
        snprintf(shown, sizeof(shown), "%.*s", (int)(len < 100 ? len : 100), p->buf.s);
        fail(x, err, "wrote output that answers no message, before the '%s' message: '%s'", what, shown);
        proc_stop(p, 0.0, NULL, 0);
        return OUT_ERROR;
    }
    char* text = json_dumps(msg, JSON_COMPACT);
    size_t n = strlen(text);
    text = reallocCheck(text, n + 2);
    text[n] = '\n';
    text[n + 1] = '\0';
    double deadline = timer_now() + x->timeout_s;
    Outcome rc = proc_write(x, text, deadline, what, err);
    free(text);
    char* line = NULL;
    if (rc == OUT_OK) rc = proc_read(x, deadline, what, &line, err);
    if (rc == OUT_ERROR) proc_stop(p, 0.0, NULL, 0);
    if (rc != OUT_OK) return rc;
    json_error_t jerr;
    json_t* j = json_loads(line, JSON_REJECT_DUPLICATES, &jerr);
    if (!j || !json_is_object(j)) {
        if (j) fail(x, err, "the reply to '%s' is not a JSON object: '%.200s'", what, line);
        else
            fail(x, err, "the reply to '%s' is not valid JSON (column %d: %s): '%.200s'", what, jerr.column, jerr.text,
                 line);
        json_decref(j);
        free(line);
        proc_stop(p, 0.0, NULL, 0);
        return OUT_ERROR;
    }
    free(line);
    json_t* e = json_object_get(j, "error");
    if (e) {
        char* shown = json_is_string(e) ? NULL : json_dumps(e, JSON_ENCODE_ANY | JSON_COMPACT);
        fail(x, err, "error in reply to '%s': %s", what, shown ? shown : json_string_value(e));
        free(shown);
        json_decref(j);
        return OUT_ERROR;
    }
    *reply = j;
    return OUT_OK;
}

static int check_listing(ExtEnv* x, json_t* reply, EnvError* err);

// starts the process and brings it back to where the old one was: the task listing, and the
// current episode's reset and steps
static Outcome start_and_replay(ExtEnv* x, EnvError* err) {
    if (proc_start(x, err) != OUT_OK) return OUT_ERROR;
    json_t* reply;
    json_t* msg = json_pack("{s:s, s:i, s:I, s:i, s:i}", "type", "tasks", "version", PROTOCOL_VERSION, "seed",
                            (json_int_t)x->seed, "train", x->want[0], "heldout", x->want[1]);
    Outcome rc = exchange(x, msg, &reply, err);
    json_decref(msg);
    if (rc != OUT_OK) return rc;
    if (!x->listing) {
        if (check_listing(x, reply, err) != 0) {
            json_decref(reply);
            return OUT_ERROR;
        }
        x->listing = reply;
        return OUT_OK;
    }
    // a restart must list the same tasks, or the replayed episode would be another one
    int same = 1;
    for (int s = 0; s < 2; s++) {
        json_t* ids = json_object_get(reply, s == 0 ? "train" : "heldout");
        for (int i = 0; i < x->base.ntasks[s]; i++) {
            const char* id = json_string_value(json_array_get(ids, (size_t)i));
            same &= id && strcmp(id, x->base.task_ids[s][i]) == 0;
        }
    }
    json_decref(reply);
    if (!same)
        return fail(x, err, "after a restart the process listed other tasks than before; it must be deterministic");
    if (!x->in_episode) return OUT_OK;
    rc = exchange(x, x->reset_msg, &reply, err);
    json_decref(reply);
    for (int i = 0; i < x->nsteps && rc == OUT_OK; i++) {
        rc = exchange(x, x->steps[i], &reply, err);
        json_decref(reply);
    }
    return rc;
}

// one call: exchange, with one restart (and replay) if the process has died; msg NULL only
// starts the process (the 'tasks' message)
static int call(ExtEnv* x, const json_t* msg, json_t** reply, EnvError* err) {
    const char* what = msg ? json_string_value(json_object_get(msg, "type")) : "tasks";
    char first[400] = "";
    for (int attempt = 0; attempt < 2; attempt++) {
        Outcome rc = x->proc.pid ? OUT_OK : start_and_replay(x, err);
        if (rc == OUT_OK && msg) rc = exchange(x, msg, reply, err);
        if (rc == OUT_OK) return 0;
        if (rc == OUT_ERROR) return -1;
        char how[120], hint[260];
        proc_stop(&x->proc, 2.0, how, sizeof(how));
        stderr_hint(&x->proc, hint, sizeof(hint));
        if (attempt == 0) {
            snprintf(first, sizeof(first), "%s%s", how, hint);
            continue;
        }
        char again[400];
        snprintf(again, sizeof(again), "%s%s", how, hint);
        if (strcmp(again, first) == 0)
            fail(x, err, "the process %s while answering the '%s' message%s (it was restarted once and failed the "
                 "same way)", how, what, hint);
        else
            fail(x, err, "the process %s while answering the '%s' message%s (it was restarted once; the first time it "
                 "%.300s)", how, what, hint, first);
        return -1;
    }
    return -1;
}

// ----------------------------------------------------------------------------
// replies

static int check_listing(ExtEnv* x, json_t* reply, EnvError* err) {
    static const char* names[2] = {"train", "heldout"};
    for (int s = 0; s < 2; s++) {
        json_t* ids = json_object_get(reply, names[s]);
        if (!json_is_array(ids))
            return fail(x, err, "the reply to 'tasks' lacks '%s' (an array of task id strings)", names[s]);
        if ((int)json_array_size(ids) < x->want[s])
            return fail(x, err, "the reply to 'tasks' lists %zu %s tasks but env.%s_tasks asks for %d",
                        json_array_size(ids), names[s], s == 0 ? "train" : "heldout", x->want[s]);
        for (int i = 0; i < x->want[s]; i++)
            if (!json_is_string(json_array_get(ids, (size_t)i)))
                return fail(x, err, "the reply to 'tasks': %s[%d] is not a string", names[s], i);
    }
    json_t* tools = json_object_get(reply, "tools");
    if (!json_is_array(tools) || json_array_size(tools) == 0)
        return fail(x, err, "the reply to 'tasks' lacks 'tools' (a non-empty array of {name, description, arguments})");
    for (size_t t = 0; t < json_array_size(tools); t++) {
        json_t* tool = json_array_get(tools, t);
        json_t* args = json_object_get(tool, "arguments");
        if (!json_is_object(tool) || !json_is_string(json_object_get(tool, "name")))
            return fail(x, err, "the reply to 'tasks': tools[%zu] lacks 'name' (a string)", t);
        if (args && (!json_is_array(args) || json_array_size(args) > ENV_TOOL_MAX_ARGS))
            return fail(x, err, "the reply to 'tasks': tools[%zu].arguments must be an array of at most %d objects", t,
                        ENV_TOOL_MAX_ARGS);
        for (size_t a = 0; args && a < json_array_size(args); a++)
            if (!json_is_string(json_object_get(json_array_get(args, a), "name")))
                return fail(x, err, "the reply to 'tasks': tools[%zu].arguments[%zu] lacks 'name' (a string)", t, a);
    }
    return 0;
}

static const char* str_or(const json_t* obj, const char* key, const char* def) {
    const char* s = json_string_value(json_object_get(obj, key));
    return s ? s : def;
}

// tools and task ids from the listing; the strings stay in x->listing
static void take_listing(ExtEnv* x) {
    static const char* names[2] = {"train", "heldout"};
    for (int s = 0; s < 2; s++) {
        json_t* ids = json_object_get(x->listing, names[s]);
        x->base.ntasks[s] = x->want[s];
        x->base.task_ids[s] = callocCheck((size_t)(x->want[s] ? x->want[s] : 1), sizeof(char*));
        for (int i = 0; i < x->want[s]; i++)
            x->base.task_ids[s][i] = strdupCheck(json_string_value(json_array_get(ids, (size_t)i)));
    }
    json_t* tools = json_object_get(x->listing, "tools");
    int n = (int)json_array_size(tools);
    x->tools = callocCheck((size_t)n, sizeof(EnvTool));
    for (int t = 0; t < n; t++) {
        json_t* tool = json_array_get(tools, (size_t)t);
        json_t* args = json_object_get(tool, "arguments");
        x->tools[t].name = str_or(tool, "name", "");
        x->tools[t].description = str_or(tool, "description", "");
        x->tools[t].nargs = (int)json_array_size(args);
        for (int a = 0; a < x->tools[t].nargs; a++) {
            json_t* arg = json_array_get(args, (size_t)a);
            x->tools[t].args[a].name = str_or(arg, "name", "");
            x->tools[t].args[a].type = str_or(arg, "type", "string");
            x->tools[t].args[a].description = str_or(arg, "description", "");
            json_t* req = json_object_get(arg, "required");
            x->tools[t].args[a].required = req ? json_is_true(req) : 1;
        }
    }
    x->base.tools = x->tools;
    x->base.ntools = n;
}

// observation (required), info (optional object) into out
static int take_observation(ExtEnv* x, json_t* reply, const char* what, EnvResult* out, EnvError* err) {
    json_t* obs = json_object_get(reply, "observation");
    json_t* info = json_object_get(reply, "info");
    if (!json_is_string(obs)) return fail(x, err, "the reply to '%s' lacks 'observation' (a string)", what);
    if (info && !json_is_object(info)) return fail(x, err, "the reply to '%s': 'info' must be an object", what);
    out->observation = strdupCheck(json_string_value(obs));
    out->info = info ? json_dumps(info, JSON_COMPACT) : strdupCheck("{}");
    return 0;
}

// ----------------------------------------------------------------------------
// vtable

static int ext_reset(Env* env, EnvSplit split, int task, uint64_t seed, EnvResult* out, EnvError* err) {
    ExtEnv* x = (ExtEnv*)env;
    x->in_episode = 0;
    for (int i = 0; i < x->nsteps; i++) json_decref(x->steps[i]);
    x->nsteps = 0;
    json_decref(x->reset_msg);
    x->reset_msg =
        json_pack("{s:s, s:s, s:s, s:I}", "type", "reset", "split", split == ENV_SPLIT_TRAIN ? "train" : "heldout",
                  "task", env->task_ids[split][task], "seed", (json_int_t)seed);
    json_t* reply;
    if (call(x, x->reset_msg, &reply, err) != 0) return -1;
    int rc = take_observation(x, reply, "reset", out, err) != 0 ? -1 : 0;
    json_decref(reply);
    if (rc == 0) {
        x->in_episode = 1;
        x->done = 0;
    }
    return rc;
}

static int ext_step(Env* env, const EnvAction* action, EnvResult* out, EnvError* err) {
    ExtEnv* x = (ExtEnv*)env;
    if (!x->in_episode || x->done) {
        fail(x, err, "step called %s", x->in_episode ? "after the episode ended" : "before a successful reset");
        return -1;
    }
    // the arguments must be a JSON object; anything else is the agent's error, shown to it
    const char* text = action->args_json;
    while (text && (*text == ' ' || *text == '\n' || *text == '\t' || *text == '\r')) text++;
    json_t* args;
    if (!text || !*text) {
        args = json_object();
    } else {
        json_error_t jerr;
        args = json_loads(text, JSON_DECODE_ANY, &jerr);
        if (!args || !json_is_object(args)) {
            json_decref(args);
            env_result_invalid(out, "the arguments of %.64s must be a JSON object", action->tool ? action->tool : "");
            return 0;
        }
    }
    json_t* msg = json_pack("{s:s, s:{s:s, s:o}}", "type", "step", "action", "name", action->tool ? action->tool : "",
                            "arguments", args);
    json_t* reply;
    if (call(x, msg, &reply, err) != 0) {
        json_decref(msg);
        return -1;
    }
    json_t* reward = json_object_get(reply, "reward");
    json_t* done = json_object_get(reply, "done");
    json_t* invalid = json_object_get(reply, "invalid");
    int rc = 0;
    if (!json_is_number(reward)) rc = fail(x, err, "the reply to 'step' lacks 'reward' (a number)");
    else if (!json_is_boolean(done)) rc = fail(x, err, "the reply to 'step' lacks 'done' (true or false)");
    else if (invalid && !json_is_boolean(invalid))
        rc = fail(x, err, "the reply to 'step': 'invalid' must be true or false");
    else rc = take_observation(x, reply, "step", out, err);
    if (rc == 0) {
        out->reward = json_number_value(reward);
        out->done = json_is_true(done);
        out->invalid = invalid && json_is_true(invalid);
        x->done = out->done;
        if (x->nsteps == x->cap) {
            x->cap = x->cap ? 2 * x->cap : 32;
            x->steps = reallocCheck(x->steps, (size_t)x->cap * sizeof(json_t*));
        }
        x->steps[x->nsteps++] = msg;
        msg = NULL;
    } else {
        env_result_free(out);
        rc = -1;
    }
    json_decref(msg);
    json_decref(reply);
    return rc;
}

static void ext_destroy(Env* env) {
    ExtEnv* x = (ExtEnv*)env;
    if (x->proc.pid) {
        json_t* msg = json_pack("{s:s}", "type", "close");
        char* text = json_dumps(msg, JSON_COMPACT);
        EnvError ignored;
        size_t n = strlen(text);
        text = reallocCheck(text, n + 2);
        memcpy(text + n, "\n", 2);
        proc_write(x, text, timer_now() + 1.0, "close", &ignored);
        free(text);
        json_decref(msg);
        proc_stop(&x->proc, x->timeout_s < 2.0 ? x->timeout_s : 2.0, NULL, 0);
    }
    strbuf_free(&x->proc.buf);
    for (int i = 0; i < x->nsteps; i++) json_decref(x->steps[i]);
    free(x->steps);
    json_decref(x->reset_msg);
    json_decref(x->listing);
    free(x->tools);
    free(x->command);
    env_base_free(env);
    free(x);
}

static const EnvVtbl EXT_VTBL = {ext_reset, ext_step, NULL, NULL, ext_destroy};

Env* env_external_create(const char* command, double timeout_s, uint64_t seed, int ntrain, int nheldout,
                         EnvError* err) {
    ExtEnv* x = callocCheck(1, sizeof(ExtEnv));
    env_base_init(&x->base, &EXT_VTBL, "external", NULL, 0, NULL, 0);
    x->command = strdupCheck(command);
    snprintf(x->label, sizeof(x->label), "external environment '%.200s'", command);
    x->timeout_s = timeout_s > 0 ? timeout_s : 30.0;
    x->seed = seed;
    x->want[0] = ntrain;
    x->want[1] = nheldout;
    // starting goes through call() so that a crash at start-up is retried once too
    if (call(x, NULL, NULL, err) != 0) {
        ext_destroy(&x->base);
        return NULL;
    }
    take_listing(x);
    return &x->base;
}
