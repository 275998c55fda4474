// A readable listing of any HDF5 file: groups, datasets (type, shape, filters) and attributes.
// `ingrain inspect` uses it for files that are not ingrain checkpoints.
#pragma once
#include <stdio.h>

// 0 on success; -1 with msg filled (not HDF5, unreadable) without aborting
int h5_inspect(const char* path, FILE* out, char* msg, size_t n);
