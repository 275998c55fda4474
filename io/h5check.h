// h5Check: HDF5 calls return a negative value on failure; abort with file, line, the call,
// the HDF5 error stack's innermost message, and a hint.
#pragma once
#include <hdf5.h>

long long h5_check(long long ret, const char* call, const char* file, int line);
#define h5Check(call) h5_check((long long)(call), #call, __FILE__, __LINE__)
// silence HDF5's own stack printing (we print one clear message instead)
void h5_quiet(void);
