// Greedy episodes of the iteration driver (see driver_impl.h): the evaluation on held-out tasks
// (student without experience, teacher with the pool), the base model's reference row, and the
// validation of the items an iteration adds, on training tasks its rollouts did not use.
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/log.h"
#include "mpi/driver_impl.h"
#include "mpi/report.h"

// ----------------------------------------------------------------------------
// greedy episodes

// Plays the tasks of split with exp in context (NULL: none): task i is tasks[i] (i itself when
// tasks is NULL) and goes to rollout rank i % R, one greedy episode each. The outcome is summed
// over every rank; integer sums, so it does not depend on the number of ranks. solved (n, or
// NULL) gets 1 for each of this rank's tasks the episode solved, 0 elsewhere.
static void play(Driver* d, int k, int split, const int* tasks, int n, const ExpList* exp, Outcome* total,
                 uint8_t* solved) {
    if (solved) memset(solved, 0, (size_t)n);
    Outcome mine = {0};
    int failed = 0;
    if (d->eval_agent) {
        for (int i = d->l->rollout_rank; i < n && !failed; i += d->l->n_rollout) {
            AgentTask t = {split, tasks ? tasks[i] : i};
            Trajectory* tr = NULL;
            failed = agent_run(d->eval_agent, d->envs, &t, 1, k, exp, &tr, d->err, sizeof(d->err)) != 0;
            if (failed) break;
            const int ok = tr->final_reward >= SUCCESS_REWARD;
            mine.episodes++;
            mine.successes += ok;
            if (solved) solved[i] = (uint8_t)ok;
            if (log_level() == LOG_DEBUG) { // every greedy episode whole, to see what the model does
                const int task = tasks ? tasks[i] : i;
                char* all = tokenizer_decode_alloc(d->tok, tr->tokens, tr->n_tokens, NULL);
                log_debug("%s task %d (rules it bites 0x%x), %s: reward %.1f in %d turns:\n%s",
                          split == ENV_SPLIT_HELDOUT ? "held-out" : "validation", task,
                          env_task_rules(d->envs[0], (EnvSplit)split, task), exp ? "with experience" : "without",
                          tr->final_reward, tr->n_steps, all);
                free(all);
            }
            mine.turns += tr->n_steps;
            mine.premature += (tr->flags & TRAJ_FLAG_PREMATURE) != 0;
            mine.truncated += (tr->flags & TRAJ_FLAG_TRUNCATED) != 0;
            mine.tokens += tr->n_tokens;
            traj_free(tr);
        }
    }
    driver_agree_or_abort(d, failed, split == ENV_SPLIT_HELDOUT ? "an evaluation episode" : "a validation episode");
    mpiCheck(MPI_Allreduce(&mine, total, 6, MPI_INT64_T, MPI_SUM, d->l->world));
}

// ----------------------------------------------------------------------------
// evaluation on held-out tasks: student (no experience) and teacher (with the pool)

void driver_evaluate(Driver* d, int k, Eval* ev) {
    const int n = d->c->eval.tasks;
    uint8_t* student = mallocCheck((size_t)(n > 0 ? n : 1));
    uint8_t* teacher = mallocCheck((size_t)(n > 0 ? n : 1));
    play(d, k, ENV_SPLIT_HELDOUT, NULL, n, NULL, &ev->student, student);
    // with no experience to show the teacher is the student: the same episodes
    if (d->exp.n > 0) play(d, k, ENV_SPLIT_HELDOUT, NULL, n, &d->exp, &ev->teacher, teacher);
    else ev->teacher = ev->student, memcpy(teacher, student, (size_t)n);
    int64_t mine[2] = {0, 0}; // tasks only the teacher solved, only the student solved
    for (int i = 0; i < n; i++) mine[0] += teacher[i] && !student[i], mine[1] += student[i] && !teacher[i];
    mpiCheck(MPI_Allreduce(mine, ev->won_lost, 2, MPI_INT64_T, MPI_SUM, d->l->world));
    free(student);
    free(teacher);
}

void driver_set_eval_fields(json_t* o, const Eval* ev) {
    const Outcome *student = &ev->student, *teacher = &ev->teacher;
    json_object_set_new(o, "student_success", json_real(driver_ratio(student->successes, student->episodes)));
    json_object_set_new(o, "teacher_success", json_real(driver_ratio(teacher->successes, teacher->episodes)));
    json_object_set_new(o, "mean_turns", json_real(driver_ratio(student->turns, student->episodes)));
    json_object_set_new(o, "premature_rate", json_real(driver_ratio(student->premature, student->episodes)));
    json_object_set_new(o, "tokens_per_episode", json_real(driver_ratio(student->tokens, student->episodes)));
    json_object_set_new(o, "teacher_turns", json_real(driver_ratio(teacher->turns, teacher->episodes)));
    json_object_set_new(o, "teacher_premature_rate",
                        json_real(driver_ratio(teacher->premature, teacher->episodes)));
    json_object_set_new(o, "eval_tasks", json_integer(student->episodes));
    json_object_set_new(o, "teacher_won", json_integer(ev->won_lost[0]));
    json_object_set_new(o, "teacher_lost", json_integer(ev->won_lost[1]));
    json_object_set_new(o, "teacher_sign_p", json_real(report_sign_test(ev->won_lost[0], ev->won_lost[1])));
}

void driver_eval_summary(const Eval* ev, char* out, size_t cap) {
    snprintf(out, cap, "student %.3f | teacher %.3f (won %lld, lost %lld, p %.2f)",
             driver_ratio(ev->student.successes, ev->student.episodes),
             driver_ratio(ev->teacher.successes, ev->teacher.episodes), (long long)ev->won_lost[0],
             (long long)ev->won_lost[1], report_sign_test(ev->won_lost[0], ev->won_lost[1]));
}

// The teacher sees the seed pool; with none it is the student, so its numbers are the student's.
void driver_evaluate_base(Driver* d) {
    const Config* c = d->c;
    if (driver_is_root(d)) log_info("[base] evaluate: the base model on %d held-out tasks", c->eval.tasks);
    Eval ev = {0};
    driver_evaluate(d, 0, &ev);
    if (!driver_is_root(d)) return;
    json_t* o = json_object();
    json_object_set_new(o, "type", json_string("base"));
    driver_set_eval_fields(o, &ev);
    json_object_set_new(o, "pool_size", json_integer(d->exp.n));
    metrics_append(d->metrics, o);
    metrics_sync(d->metrics);
    json_decref(o);
    char line[160];
    driver_eval_summary(&ev, line, sizeof(line));
    log_info("base | %s | turns %.1f | premature %.2f | pool %d", line,
             driver_ratio(ev.student.turns, ev.student.episodes),
             driver_ratio(ev.student.premature, ev.student.episodes), d->exp.n);
}

// ----------------------------------------------------------------------------
// validation of new items (experience.validate_tasks)

// The tasks of `tasks` solved (summed over every rank) with the first n_old items of the pool shown
// and each later item i whose pick[i - n_old] is set, in id order, as they will sit in the pool
static int64_t solved_with(Driver* d, int k, const int* tasks, int n, int n_old, const uint8_t* pick) {
    ExpList with;
    exp_list_init(&with);
    for (int i = 0; i < d->exp.n; i++)
        if (i < n_old || pick[i - n_old]) exp_list_add(&with, d->exp.ids[i], d->exp.texts[i]);
    Outcome o = {0};
    play(d, k, ENV_SPLIT_TRAIN, tasks, n, with.n ? &with : NULL, &o, NULL);
    exp_list_free(&with);
    return o.successes;
}

static void delete_after_validation(Driver* d, int k, int i, const char* reason) {
    char err[256];
    if (pool_delete(d->pool, k, d->exp.ids[i], NULL, 0, reason, err, sizeof(err)) != 0) {
        fatal("deleting pool item %d after its validation: %s", d->exp.ids[i], err);
    }
}

// A mined rule is a statistic of one iteration's samples; some restate the default action or fire
// where a hidden rule reverses them, and shown to the greedy teacher they cost more tasks than they
// win (on one base model of the quickstart the teacher fell to 0.172 as "results" -> visit and
// another such item came in). Playing each new item beside the pool it joins, on tasks the miner
// never saw, keeps only those that win tasks there. Items that each win alone can still lose
// together (on an AVX2 base model three items that each won 1-2 of 32 tasks took the held-out
// teacher from 0.328 to 0.219), so the winners then join one at a time, best first, and each must
// win tasks beside those that joined before it. At eval.temperature 0 (greedy) each comparison is
// exact on its tasks, and every rank reaches the same decisions from the summed counts.
int driver_validate(Driver* d, int k, int32_t first_new, const int* order, int n_rolled) {
    const Config* c = d->c;
    const int total = c->env.train_tasks;
    const int n = c->experience.validate_tasks < total ? c->experience.validate_tasks : total;
    // d->exp is in id order, so the items the iteration added are its last ones
    int n_old = 0;
    while (n_old < d->exp.n && d->exp.ids[n_old] < first_new) n_old++;
    if (n_old == d->exp.n || n == 0) return 0;
    const int n_new = d->exp.n - n_old;
    int* tasks = mallocCheck(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) tasks[i] = order[(n_rolled + i) % total]; // wraps round a short split
    const int owner = d->l->world_rank == d->agg_root;
    uint8_t* pick = callocCheck((size_t)n_new, 1); // the new items shown
    const int64_t without = solved_with(d, k, tasks, n, n_old, pick);
    if (owner)
        log_info("[iter %d/%d] validate: %d new item(s) on %d training tasks the rollouts did not use; %lld solved "
                 "without them",
                 k + 1, c->run.iterations, n_new, n, (long long)without);
    // alone beside the pool
    int64_t* alone = mallocCheck(sizeof(int64_t) * (size_t)n_new);
    int* winners = mallocCheck(sizeof(int) * (size_t)n_new); // exp indices, best first
    int n_win = 0, deleted = 0;
    for (int i = n_old; i < d->exp.n; i++) {
        pick[i - n_old] = 1;
        const int64_t s = alone[i - n_old] = solved_with(d, k, tasks, n, n_old, pick);
        pick[i - n_old] = 0;
        const int keep = s > without;
        if (owner)
            log_info("[iter %d/%d] validate: %s with item %d (%lld solved): %s", k + 1, c->run.iterations,
                     keep ? "keep" : "delete", d->exp.ids[i], (long long)s, d->exp.texts[i]);
        if (keep) {
            int j = n_win++;
            for (; j > 0 && alone[winners[j - 1] - n_old] < s; j--) winners[j] = winners[j - 1]; // stable
            winners[j] = i;
            continue;
        }
        if (!owner) continue;
        char reason[160];
        snprintf(reason, sizeof(reason), "validation: %lld of %d training tasks solved with it, %lld without",
                 (long long)s, n, (long long)without);
        delete_after_validation(d, k, i, reason);
        deleted++;
    }
    // together: each winner after the first beside the winners kept before it
    int64_t best = n_win ? alone[winners[0] - n_old] : without;
    int n_kept = n_win ? 1 : 0;
    if (n_win) pick[winners[0] - n_old] = 1;
    for (int w = 1; w < n_win; w++) {
        const int i = winners[w];
        pick[i - n_old] = 1;
        const int64_t s = solved_with(d, k, tasks, n, n_old, pick);
        const int keep = s > best;
        if (owner)
            log_info("[iter %d/%d] validate: %s item %d beside the %d kept before it (%lld solved against %lld)",
                     k + 1, c->run.iterations, keep ? "keep" : "delete", d->exp.ids[i], n_kept, (long long)s,
                     (long long)best);
        if (keep) {
            best = s;
            n_kept++;
            continue;
        }
        pick[i - n_old] = 0;
        if (!owner) continue;
        char reason[160];
        snprintf(reason, sizeof(reason),
                 "validation: %lld of %d training tasks solved with it beside the items kept before it, %lld without",
                 (long long)s, n, (long long)best);
        delete_after_validation(d, k, i, reason);
        deleted++;
    }
    free(pick);
    free(alone);
    free(winners);
    free(tasks);
    return deleted;
}
