// Option parsing and the model line shared by the model benchmarks (bench_util.h).
#include "model/bench_util.h"

#include <stdio.h>
#include <stdlib.h>

int bench_parse_int(const char* bench, const char* opt, const char* s, int lo, int* out) {
    char* end;
    const long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > 1000000) {
        fprintf(stderr, "ingrain bench %s: %s expects an integer >= %d, got '%s'\n", bench, opt, lo, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

void bench_print_model(const char* bench, const char* name, const Model* m) {
    const ModelConfig* c = model_config(m);
    printf("ingrain bench %s: config %s (V=%d D=%d L=%d H=%d KV=%d hd=%d F=%d), %.2fM parameters\n", bench, name,
           c->vocab_size, c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->hidden_dim,
           (double)model_num_params(m) / 1e6);
}
