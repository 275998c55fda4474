// The run configuration: a typed struct with a default for every key, loaded from YAML
// (libyaml), overridden by `--set a.b=value`, validated, and written back as YAML.
// The key table in config_keys.c is the single source of truth for names, types,
// defaults, ranges and documentation (docs/CONFIG.md is generated from it).
#pragma once
#include <stddef.h>
#include <stdio.h>

// ----------------------------------------------------------------------------
// enumerated values (the strings are in config_keys.c)

typedef enum { RESUME_NEVER = 0, RESUME_AUTO } ResumeMode;
typedef enum { DEVICE_CPU = 0, DEVICE_CUDA } DeviceKind;
typedef enum { DTYPE_F32 = 0, DTYPE_BF16 } DType;
typedef enum { ENV_WIKISEARCH = 0, ENV_TEXTCRAFT, ENV_RETAIL, ENV_EXTERNAL } EnvKind;
// env.trap_rate's default: wikisearch's place_page rule bites in a third of the tasks with a trap page
#define ENV_TRAP_RATE_DEFAULT 0.35
typedef enum { GRANULARITY_PRINCIPLE = 0, GRANULARITY_INSTANCE } Granularity;
typedef enum { INJECTION_STEPWISE = 0, INJECTION_GLOBAL } Injection;
typedef enum { EXTRACTOR_CONTRASTIVE = 0, EXTRACTOR_LLM } Extractor;
typedef enum { SELECTOR_BM25 = 0, SELECTOR_LLM } Selector;
typedef enum { JUDGE_ENV = 0, JUDGE_LLM } Judge;
typedef enum { REGIME_OFF_POLICY = 0, REGIME_ON_POLICY } Regime;
typedef enum { LOSS_FORWARD_KL = 0, LOSS_SFT, LOSS_REVERSE_KL, LOSS_JSD, LOSS_REVERSE_KL_SAMPLED } LossKind;
typedef enum { TEACHER_RECORDED = 0, TEACHER_RECOMPUTE } TeacherSignal;

#define CONFIG_MAX_KEYS 128
#define CONFIG_STR 256
#define CONFIG_PATH 1024

// ----------------------------------------------------------------------------
// the struct (see docs/CONFIG.md for every key's meaning and default)

typedef struct {
    struct {
        char name[CONFIG_STR];
        char dir[CONFIG_PATH];
        long long seed;
        int iterations;
        int resume;    // ResumeMode
        int log_level; // LogLevel
    } run;
    struct {
        int colocate;
        int trainer;
        int aggregator;
        int rollout; // 0: every rank not in another group
    } ranks;
    struct {
        char name[CONFIG_STR];
        char path[CONFIG_PATH];
        int device; // DeviceKind
        int dtype;  // DType
        int threads;
        int max_seq_len;
    } model;
    struct {
        int name; // EnvKind
        char command[CONFIG_PATH];
        double timeout_s;
        int train_tasks;
        int heldout_tasks;
        int max_turns;
        double trap_rate;
    } env;
    struct {
        int tasks_per_iter;
        int group_size;
        double temperature;
        double top_p;
        int top_k;
        int max_new_tokens;
        int max_context;
        int teacher_topk;
    } rollout;
    struct {
        int granularity; // Granularity
        int injection;   // Injection
        int extractor;   // Extractor
        int selector;    // Selector
        int judge;       // Judge
        int select_min;
        int select_max;
        int select_triggers;
        int max_pool_size;
        int max_item_words;
        double prune_threshold;
        char seed_pool[CONFIG_PATH];
        int validate_tasks; // greedy episodes per new item before it is kept (0: off)
        // contrastive miner (distill/extract.h)
        int mine_min_support;
        int mine_min_tasks;
        double mine_min_lift;
        double mine_max_share;
        double mine_z;
        int mine_max_rules;
        int mine_max_ngram;
        int mine_choices;
    } experience;
    struct {
        int regime;  // Regime
        int loss;    // LossKind
        int teacher; // TeacherSignal
        int epochs;
        double lr;
        double min_lr_ratio;
        int warmup_steps;
        double weight_decay;
        double beta1;
        double beta2;
        double eps;
        double grad_clip;
        int micro_batch_tokens;
        int batch_tokens;
        double reward_threshold;
        double jsd_beta;
        int nccl;
    } distill;
    struct {
        int tasks;
        int every;
        double temperature;
        int base;
    } eval;
    struct {
        int every;
        int keep_last;
        int trajectories;
    } checkpoint;
    struct {
        char cache_dir[CONFIG_PATH];
        int threads;
        int episodes;
        int worlds;
        int copy_steps;
        int window_epochs;
        int epochs;
        double lr;
        int batch_tokens;
        double expert_rate;
        double share_global;
        double share_stepwise;
        int max_pool;
        int mine_batches;
        int vocab_size;
        int contrast;
    } bootstrap;

    // where each key got its value: config file line (>0), 0 = default, -1 = --set
    char source_file[CONFIG_PATH];
    int source_line[CONFIG_MAX_KEYS];
} Config;

// ----------------------------------------------------------------------------
// the key table

typedef enum { CFG_INT, CFG_INT64, CFG_FLOAT, CFG_BOOL, CFG_STRING, CFG_ENUM } ConfigType;

typedef struct {
    const char* key;             // dotted path, e.g. "distill.lr"
    ConfigType type;
    size_t offset;               // into Config
    size_t size;                 // buffer size for CFG_STRING
    const char* def;             // default, as YAML text (parsed like user input)
    double min, max;             // inclusive range for numbers
    const char* const* choices;  // NULL-terminated, for CFG_ENUM
    const char* doc;             // one line for docs/CONFIG.md
} ConfigKey;

extern const ConfigKey config_keys[];
extern const int config_nkeys;
const ConfigKey* config_find_key(const char* key);
int config_key_index(const char* key); // -1 if unknown
const char* config_enum_name(const char* key, int value);

// ----------------------------------------------------------------------------
// loading, overriding, validating, writing

typedef struct {
    char msg[2048];
} ConfigError;

// formats the message into err (when not NULL) and returns -1, for `return config_error(err, ...)`
int config_error(ConfigError* err, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// every key set to its default
void config_defaults(Config* c);
// apply a YAML file on top of c; 0 on success, else -1 with err naming file, line, key
int config_load_file(Config* c, const char* path, ConfigError* err);
// same, from a string (label is used as the file name in messages)
int config_load_string(Config* c, const char* yaml, const char* label, ConfigError* err);
// apply "a.b.c=value" with the same type checks; 0 on success
int config_set(Config* c, const char* assignment, ConfigError* err);
// cross-key consistency checks that need no knowledge of the job; 0 on success
int config_validate(const Config* c, ConfigError* err);
// rank-group sizes against the MPI world size; 0 on success
int config_check_world(const Config* c, int world_size, ConfigError* err);
// where a key was set, e.g. "configs/x.yaml:12", "--set", "default"
const char* config_origin(const Config* c, const char* key, char* buf, size_t n);

// the effective config as YAML; 0 on success
int config_write_yaml(const Config* c, FILE* out, ConfigError* err);
// the effective config as a malloc'd YAML string (for checkpoints); NULL on failure
char* config_to_yaml(const Config* c, ConfigError* err);
// the Markdown reference of every key (docs/CONFIG.md)
void config_write_doc(FILE* out);
