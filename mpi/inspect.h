// `ingrain inspect` (what is in a checkpoint) and `ingrain export` (a checkpoint's student weights
// as a Hugging Face model directory).
#pragma once

#include <stdio.h>

int cli_inspect(int argc, char** argv);
// the table of held-out success per iteration (student without, teacher with experience, turns,
// premature answers, pool size, training loss) from a metrics log's JSONL text
void inspect_metrics_table(const char* metrics, FILE* out);
int cli_export(int argc, char** argv);
