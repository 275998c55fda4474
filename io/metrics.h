// Metrics log: one JSON object per line in RUN_DIR/metrics.jsonl (keys in insertion order, so
// lines have stable keys), flushed after every record so a crash loses at most the current step.
// The whole log is also kept in memory and stored in each checkpoint; on resume the file is
// rewritten from the checkpoint's copy, so records past the checkpoint never survive a restart.
#pragma once
#include <jansson.h>

typedef struct MetricsLog MetricsLog;

// Start the log at path with `restored` as its content (NULL or "" for a fresh run).
MetricsLog* metrics_open(const char* path, const char* restored);
// Append one record (a JSON object; the log takes no ownership). Flushed to the OS.
void metrics_append(MetricsLog* m, const json_t* record);
// fsync the file (after an iteration: the record survives a node crash, not only a process crash)
void metrics_sync(MetricsLog* m);
// the whole log so far (owned by the log)
const char* metrics_text(const MetricsLog* m);
void metrics_close(MetricsLog* m);
