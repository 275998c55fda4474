// HDF5 error-check wrapper (see h5check.h).
#include "io/h5check.h"

#include <stdio.h>
#include <string.h>

#include "common/log.h"

// ----------------------------------------------------------------------------

void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static herr_t innermost(unsigned n, const H5E_error2_t* e, void* data) {
    if (n == 0) snprintf((char*)data, 512, "%s (in %s)", e->desc ? e->desc : "?", e->func_name ? e->func_name : "?");
    return 0;
}

long long h5_check(long long ret, const char* call, const char* file, int line) {
    if (ret >= 0) return ret;
    char detail[512] = "no HDF5 error message";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost, detail);
    fatal_at(INGRAIN_EXIT_FAILURE, file, line,
             "HDF5 call failed: %s\n  -> %s (at %s:%d)\n"
             "  hint: the file may be truncated, locked by another process (HDF5_USE_FILE_LOCKING=FALSE on NFS), "
             "or not an ingrain file",
             call, detail, file, line);
}
