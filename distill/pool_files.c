// The pool's files: the seed pool E_0 read from YAML, and the per-iteration diff and JSON written
// to the run directory.
//
// The seed pool (experience.seed_pool) is a YAML file of items added before iteration 0:
//   items:
//     - "Check dates: When two pages disagree, prefer the one with the newer date."
//     - kind: instance                     # principle (default) or instance
//       text: "Task find the river: Task: ... Calls: search(river); answer(Nile)."
//
// Every item is checked like any other ("Name: sentence", word limits) before any is added, so a
// bad file leaves the pool unchanged; errors name the file and line.
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "common/check.h"
#include "distill/pool.h"
#include "distill/text.h"

typedef struct {
    int kind, line;
    char *name, *text;
} SeedItem;

static int seed_error(char* err, size_t errlen, const char* label, int line, const char* fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int seed_error(char* err, size_t errlen, const char* label, int line, const char* fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "%s:%d: seed pool: %s", label, line, msg);
    return -1;
}

static int line_of(const yaml_node_t* n) { return (int)n->start_mark.line + 1; }

static const char* scalar(const yaml_node_t* n) { return (const char*)n->data.scalar.value; }

// one entry of `items`: a "Name: text" string, or a mapping with text and kind
static int read_entry(const Pool* p, yaml_document_t* doc, yaml_node_t* n, const char* label, SeedItem* out,
                      char* err, size_t errlen) {
    out->kind = ITEM_PRINCIPLE;
    out->line = line_of(n);
    const char* full = NULL;
    if (n->type == YAML_SCALAR_NODE) {
        full = scalar(n);
    } else if (n->type == YAML_MAPPING_NODE) {
        for (yaml_node_pair_t* kv = n->data.mapping.pairs.start; kv < n->data.mapping.pairs.top; kv++) {
            yaml_node_t* k = yaml_document_get_node(doc, kv->key);
            yaml_node_t* v = yaml_document_get_node(doc, kv->value);
            if (k->type != YAML_SCALAR_NODE || v->type != YAML_SCALAR_NODE) {
                return seed_error(err, errlen, label, line_of(k), "item keys and values must be plain text");
            }
            if (strcmp(scalar(k), "text") == 0) {
                full = scalar(v);
            } else if (strcmp(scalar(k), "kind") == 0) {
                if (strcmp(scalar(v), "principle") == 0) out->kind = ITEM_PRINCIPLE;
                else if (strcmp(scalar(v), "instance") == 0) out->kind = ITEM_INSTANCE;
                else return seed_error(err, errlen, label, line_of(v), "kind '%s' is not principle or instance",
                                       scalar(v));
            } else {
                return seed_error(err, errlen, label, line_of(k), "unknown key '%s' (text, kind)", scalar(k));
            }
        }
        if (!full) return seed_error(err, errlen, label, out->line, "item has no 'text'");
    } else {
        return seed_error(err, errlen, label, out->line, "an item is a \"Name: sentence\" string or a mapping");
    }
    char why[256];
    if (pool_split_text(full, &out->name, &out->text, why, sizeof(why)) != 0 ||
        pool_check_text(p, out->kind, out->name, out->text, why, sizeof(why)) != 0) {
        return seed_error(err, errlen, label, out->line, "%s", why);
    }
    return 0;
}

static int load(Pool* p, yaml_parser_t* parser, const char* label, char* err, size_t errlen) {
    yaml_document_t doc;
    if (!yaml_parser_load(parser, &doc)) {
        return seed_error(err, errlen, label, (int)parser->problem_mark.line + 1, "YAML syntax error: %s",
                          parser->problem ? parser->problem : "unknown problem");
    }
    yaml_node_t* root = yaml_document_get_root_node(&doc);
    yaml_node_t* items = NULL;
    int rc = 0;
    if (!root) {
        yaml_document_delete(&doc);
        return 0; // an empty file: an empty pool
    }
    if (root->type != YAML_MAPPING_NODE) {
        rc = seed_error(err, errlen, label, line_of(root), "expected a mapping with the key 'items'");
    }
    for (yaml_node_pair_t* kv = rc ? NULL : root->data.mapping.pairs.start; kv && kv < root->data.mapping.pairs.top;
         kv++) {
        yaml_node_t* k = yaml_document_get_node(&doc, kv->key);
        if (k->type != YAML_SCALAR_NODE || strcmp(scalar(k), "items") != 0) {
            rc = seed_error(err, errlen, label, line_of(k), "unknown key (the file holds 'items' only)");
            break;
        }
        items = yaml_document_get_node(&doc, kv->value);
    }
    if (!rc && items && items->type != YAML_SEQUENCE_NODE) {
        rc = seed_error(err, errlen, label, line_of(items), "'items' must be a list");
    }
    int n = items && !rc ? (int)(items->data.sequence.items.top - items->data.sequence.items.start) : 0;
    SeedItem* list = callocCheck((size_t)(n ? n : 1), sizeof(SeedItem));
    for (int i = 0; i < n && !rc; i++) {
        yaml_node_t* e = yaml_document_get_node(&doc, items->data.sequence.items.start[i]);
        rc = read_entry(p, &doc, e, label, &list[i], err, errlen);
    }
    for (int i = 0; i < n && !rc; i++) {
        char why[128], *reason = text_printf("seed pool %s:%d", label, list[i].line);
        pool_add(p, -1, list[i].kind, list[i].name, list[i].text, "", NULL, 0, reason, why, sizeof(why));
        free(reason);
    }
    for (int i = 0; i < n; i++) free(list[i].name), free(list[i].text);
    free(list);
    yaml_document_delete(&doc);
    return rc;
}

int pool_load_seed_string(Pool* p, const char* yaml, const char* label, char* err, size_t errlen) {
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) return seed_error(err, errlen, label, 0, "cannot initialise the YAML parser");
    yaml_parser_set_input_string(&parser, (const unsigned char*)yaml, strlen(yaml));
    int rc = load(p, &parser, label, err, errlen);
    yaml_parser_delete(&parser);
    return rc;
}

int pool_load_seed(Pool* p, const char* path, char* err, size_t errlen) {
    FILE* f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open the seed pool: %s", path, strerror(errno));
        return -1;
    }
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        return seed_error(err, errlen, path, 0, "cannot initialise the YAML parser");
    }
    yaml_parser_set_input_file(&parser, f);
    int rc = load(p, &parser, path, err, errlen);
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
}

// ----------------------------------------------------------------------------
// per-iteration files in the run directory

static int write_atomic(const char* path, const char* text, char* err, size_t errlen) {
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE* f = fopen(tmp, "wb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot write: %s", tmp, strerror(errno));
        return -1;
    }
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        snprintf(err, errlen, "%s: cannot write: %s", path, strerror(errno));
        remove(tmp);
        return -1;
    }
    return 0;
}

int pool_write_iteration(const Pool* p, int32_t iteration, const char* dir, char* err, size_t errlen) {
    char path[4096];
    char* diff = pool_diff_text(p, iteration);
    snprintf(path, sizeof(path), "%s/pool_diff_iter_%04d.txt", dir, iteration);
    int rc = write_atomic(path, diff, err, errlen);
    free(diff);
    if (rc != 0) return rc;
    char* js = pool_to_json(p);
    snprintf(path, sizeof(path), "%s/pool_iter_%04d.json", dir, iteration);
    rc = write_atomic(path, js, err, errlen);
    free(js);
    return rc;
}
