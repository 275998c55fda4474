// Generic HDF5 listing (see h5inspect.h).
#include "io/h5inspect.h"

#include <hdf5.h>
#include <stdio.h>
#include <string.h>

#include "io/h5check.h"

// ----------------------------------------------------------------------------
// printing one object

static void print_type(hid_t type, FILE* out) {
    H5T_class_t cls = H5Tget_class(type);
    size_t size = H5Tget_size(type);
    switch (cls) {
    case H5T_INTEGER: fprintf(out, "%sint%zu", H5Tget_sign(type) == H5T_SGN_NONE ? "u" : "", size * 8); break;
    case H5T_FLOAT: fprintf(out, "float%zu", size * 8); break;
    case H5T_STRING: fprintf(out, "string"); break;
    case H5T_COMPOUND: fprintf(out, "compound(%zu B)", size); break;
    default: fprintf(out, "type-class-%d(%zu B)", (int)cls, size); break;
    }
}

static void print_shape(hid_t space, FILE* out) {
    int rank = H5Sget_simple_extent_ndims(space);
    hsize_t dims[H5S_MAX_RANK];
    H5Sget_simple_extent_dims(space, dims, NULL);
    fputc('(', out);
    for (int i = 0; i < rank; i++) fprintf(out, "%s%llu", i ? ", " : "", (unsigned long long)dims[i]);
    fputc(')', out);
}

static herr_t print_attr(hid_t loc, const char* name, const H5A_info_t* info, void* data) {
    (void)info;
    FILE* out = ((FILE**)data)[0];
    const char* indent = ((const char**)data)[1];
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) return 0;
    hid_t type = H5Aget_type(a), space = H5Aget_space(a);
    fprintf(out, "%s  @%s = ", indent, name);
    hssize_t npoints = H5Sget_simple_extent_npoints(space);
    if (H5Tget_class(type) == H5T_STRING && npoints == 1) {
        if (H5Tis_variable_str(type) > 0) {
            char* s = NULL;
            hid_t mt = H5Tget_native_type(type, H5T_DIR_ASCEND);
            if (H5Aread(a, mt, &s) >= 0 && s) {
                fprintf(out, "\"%.60s%s\"", s, strlen(s) > 60 ? "..." : "");
                H5free_memory(s);
            }
            H5Tclose(mt);
        } else {
            size_t len = H5Tget_size(type);
            char buf[256] = {0};
            if (len < sizeof(buf) && H5Aread(a, type, buf) >= 0) fprintf(out, "\"%s\"", buf);
        }
    } else if (npoints == 1 && (H5Tget_class(type) == H5T_INTEGER || H5Tget_class(type) == H5T_FLOAT)) {
        double v = 0;
        if (H5Aread(a, H5T_NATIVE_DOUBLE, &v) >= 0) fprintf(out, "%.10g", v);
    } else {
        print_type(type, out);
        fputc(' ', out);
        print_shape(space, out);
    }
    fputc('\n', out);
    H5Tclose(type);
    H5Sclose(space);
    H5Aclose(a);
    return 0;
}

typedef struct {
    FILE* out;
    int depth;
} Visit;

static herr_t visit(hid_t group, const char* name, const H5L_info_t* info, void* data);

static void list_attributes(hid_t obj, FILE* out, const char* indent) {
    const void* pack[2] = {out, indent};
    H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_INC, NULL, print_attr, (void*)pack);
}

static herr_t visit(hid_t group, const char* name, const H5L_info_t* info, void* data) {
    (void)info;
    Visit* v = data;
    char indent[64];
    int n = v->depth * 2 < 60 ? v->depth * 2 : 60;
    memset(indent, ' ', (size_t)n);
    indent[n] = '\0';
    H5O_info_t oi;
    if (H5Oget_info_by_name2(group, name, &oi, H5O_INFO_BASIC, H5P_DEFAULT) < 0) return 0;
    if (oi.type == H5O_TYPE_GROUP) {
        fprintf(v->out, "%s%s/\n", indent, name);
        hid_t g = H5Gopen2(group, name, H5P_DEFAULT);
        list_attributes(g, v->out, indent);
        Visit child = {v->out, v->depth + 1};
        H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, visit, &child);
        H5Gclose(g);
    } else if (oi.type == H5O_TYPE_DATASET) {
        hid_t d = H5Dopen2(group, name, H5P_DEFAULT);
        hid_t type = H5Dget_type(d), space = H5Dget_space(d), dcpl = H5Dget_create_plist(d);
        fprintf(v->out, "%s%s  ", indent, name);
        print_type(type, v->out);
        fputc(' ', v->out);
        print_shape(space, v->out);
        int nf = H5Pget_nfilters(dcpl);
        for (int i = 0; i < nf; i++) {
            unsigned flags;
            size_t nelem = 0;
            char fname[64] = "";
            H5Pget_filter2(dcpl, (unsigned)i, &flags, &nelem, NULL, sizeof(fname), fname, NULL);
            fprintf(v->out, " [%s]", fname);
        }
        fputc('\n', v->out);
        list_attributes(d, v->out, indent);
        H5Pclose(dcpl);
        H5Tclose(type);
        H5Sclose(space);
        H5Dclose(d);
    }
    return 0;
}

// ----------------------------------------------------------------------------

int h5_inspect(const char* path, FILE* out, char* msg, size_t n) {
    h5_quiet();
    htri_t is = H5Fis_hdf5(path);
    if (is <= 0) {
        FILE* f = fopen(path, "rb");
        if (!f) snprintf(msg, n, "%s: cannot open the file", path);
        else snprintf(msg, n, "%s: not an HDF5 file (no HDF5 signature)", path), fclose(f);
        return -1;
    }
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) {
        snprintf(msg, n, "%s: HDF5 cannot open the file (truncated or corrupt?)", path);
        return -1;
    }
    fprintf(out, "%s\n", path);
    list_attributes(file, out, "");
    Visit v = {out, 1};
    H5Literate(file, H5_INDEX_NAME, H5_ITER_INC, NULL, visit, &v);
    h5Check(H5Fclose(file));
    return 0;
}
