// Metrics JSONL log (see metrics.h).
#include "io/metrics.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/check.h"
#include "common/log.h"

struct MetricsLog {
    FILE* file;
    char path[1024];
    char* text; // everything written so far
    size_t len, cap;
};

// ----------------------------------------------------------------------------

static void keep(MetricsLog* m, const char* s, size_t n) {
    if (m->len + n + 1 > m->cap) {
        m->cap = (m->len + n + 1) * 2;
        m->text = reallocCheck(m->text, m->cap);
    }
    memcpy(m->text + m->len, s, n);
    m->len += n;
    m->text[m->len] = '\0';
}

MetricsLog* metrics_open(const char* path, const char* restored) {
    MetricsLog* m = callocCheck(1, sizeof(MetricsLog));
    snprintf(m->path, sizeof(m->path), "%s", path);
    keep(m, "", 0);
    if (restored) keep(m, restored, strlen(restored));
    // rewrite atomically: a crash here leaves either the old or the restored log
    char tmp[1100];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE* f = fopenCheck(tmp, "w");
    fwriteCheck(m->text, 1, m->len, f);
    fcloseCheck(f);
    if (rename(tmp, path) != 0) fatal("cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
    m->file = fopenCheck(path, "a");
    return m;
}

void metrics_append(MetricsLog* m, const json_t* record) {
    char* line = json_dumps(record, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    if (!line) fatal("metrics: a record could not be serialised as JSON (non-finite number?)");
    size_t n = strlen(line);
    keep(m, line, n);
    keep(m, "\n", 1);
    fwriteCheck(line, 1, n, m->file);
    fwriteCheck("\n", 1, 1, m->file);
    free(line);
    if (fflush(m->file) != 0) fatal("metrics: cannot write '%s': %s", m->path, strerror(errno));
}

void metrics_sync(MetricsLog* m) {
    if (fflush(m->file) != 0 || fsync(fileno(m->file)) != 0) {
        fatal("metrics: cannot sync '%s': %s\n  hint: the disk may be full", m->path, strerror(errno));
    }
}

const char* metrics_text(const MetricsLog* m) { return m->text; }

void metrics_close(MetricsLog* m) {
    if (!m) return;
    fcloseCheck(m->file);
    free(m->text);
    free(m);
}
