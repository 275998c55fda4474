// One iteration of the experience update (see extract.h): observe -> prune -> extract -> cap.
#include "distill/extract.h"

#include <stdio.h>
#include <string.h>

#include "io/config.h"

ExtractParams extract_default_params(void) {
    return (ExtractParams){.min_support = 3,
                           .min_tasks = 2,
                           .min_lift = 0.2,
                           .max_share = 1.0,
                           .z = 1.64,
                           .max_rules = 5,
                           .max_ngram = 3,
                           .max_obs_terms = 128,
                           .max_task_words = 24,
                           .max_calls = 8,
                           .gen = NULL,
                           .gen_ctx = NULL,
                           .prompt_dir = NULL,
                           .reply_cap = 8192,
                           .max_ops = 32,
                           .max_obs_chars = 400};
}

ExtractParams extract_params_from_config(const Config* c) {
    ExtractParams p = extract_default_params();
    p.min_support = c->experience.mine_min_support;
    p.min_tasks = c->experience.mine_min_tasks;
    p.min_lift = c->experience.mine_min_lift;
    p.max_share = c->experience.mine_max_share;
    p.z = c->experience.mine_z;
    p.max_rules = c->experience.mine_max_rules;
    p.max_ngram = c->experience.mine_max_ngram;
    p.choices = c->experience.mine_choices;
    return p;
}

// add the audit entries from index `from` on to the report
static void count_ops(const Pool* p, int from, ExtractReport* r) {
    for (int i = from; i < p->n_audit; i++) {
        switch (p->audit[i].op) {
        case POOL_ADD: r->added++; break;
        case POOL_UPDATE: r->updated++; break;
        case POOL_DELETE: r->deleted++; break;
        default: r->none++; break;
        }
    }
}

int experience_update(Pool* p, ExperienceMode mode, int32_t iteration, Trajectory* const* trajs,
                      const uint8_t* success, int n_trajs, const EpisodeText* eps, int n_eps,
                      const ExtractParams* prm, ExtractReport* report, char* err, size_t errlen) {
    memset(report, 0, sizeof(*report));
    int from = p->n_audit;
    if (n_trajs > 0) pool_observe(p, trajs, success, n_trajs);
    report->pruned = pool_prune(p, iteration);
    int rc = 0;
    if (mode.granularity == GRANULARITY_INSTANCE) {
        extract_instances(p, eps, n_eps, iteration, prm);
    } else if (mode.extractor == EXTRACTOR_LLM) {
        rc = extract_llm(p, eps, n_eps, iteration, prm, &report->rejected, err, errlen);
    } else {
        extract_contrastive(p, eps, n_eps, iteration, prm);
    }
    report->capped = pool_enforce_cap(p, iteration);
    count_ops(p, from, report);
    return rc;
}
