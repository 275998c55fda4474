// `ingrain inspect` (what is in a checkpoint) and `ingrain export` (a checkpoint's student weights
// as a Hugging Face model directory).
#pragma once

int cli_inspect(int argc, char** argv);
int cli_export(int argc, char** argv);
