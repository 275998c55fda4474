// ingrain: the command-line entry point. `ingrain <command> [options]`; see `ingrain --help`.
// Commands that need MPI (run, bench) initialise it; the others run as plain processes.
#include <hdf5.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "common/check.h"
#include "common/log.h"
#include "distill/bootstrap.h"
#include "distill/bench_distill.h"
#include "io/config.h"
#include "model/bench.h"
#include "model/bench_decode.h"
#include "model/cli_model.h"
#include "model/devcomm.h"
#include "model/device.h"
#include "mpi/bench.h"
#include "mpi/driver.h"
#include "mpi/inspect.h"
#include "mpi/ranks.h"
#include "mpi/report.h"
#include "mpi/sweep.h"
#include "rollout/agent.h"

#define INGRAIN_VERSION "0.1.0"

// ----------------------------------------------------------------------------
// help texts

static const char* usage_main =
    "usage: ingrain <command> [options]\n"
    "\n"
    "commands:\n"
    "  run CONFIG      run the continual-internalization job (under mpirun or srun)\n"
    "  config [CONFIG] validate a config and print the effective YAML; --doc prints the key reference\n"
    "  bootstrap CONFIG train (or load from the cache) the built-in base model of CONFIG\n"
    "  inspect FILE    show what is in a checkpoint (pool, metrics, model) or any HDF5 file\n"
    "  export CKPT     write a checkpoint's student weights as a Hugging Face model directory\n"
    "  generate        sample a chat reply from a model (HF directory or built-in), streamed\n"
    "  score           per-token log-probs of a text under a model, as JSON\n"
    "  bench NAME      run a benchmark beside its baseline\n"
    "  sweep GRID      expand a grid of configs x seeds into a Slurm job array (docs/SLURM.md)\n"
    "  report RUNS_DIR table, confidence intervals and plots over the runs in a folder\n"
    "  version         print version, build options and the libraries in use\n"
    "\n"
    "`ingrain <command> --help` describes a command. Exit codes: 0 success, 1 runtime failure,\n"
    "2 bad command line / config / input file, 75 stopped by a signal after a checkpoint (requeue).\n";

static const char* usage_run =
    "usage: [mpirun -np N] ingrain run CONFIG [--set KEY=VALUE]... [--resume]\n"
    "\n"
    "Runs run.iterations iterations of rollout -> aggregate -> internalize -> sync -> evaluate ->\n"
    "checkpoint over the rank groups of the config (ranks.*). Every rank reads CONFIG.\n"
    "\n"
    "  --set KEY=VALUE  override a config key (repeatable), e.g. --set distill.lr=2e-5\n"
    "  --resume         continue from the newest complete checkpoint in run.dir (= run.resume: auto)\n"
    "  -h, --help       this text\n";

static const char* usage_config =
    "usage: ingrain config [CONFIG] [--set KEY=VALUE]...\n"
    "       ingrain config --doc\n"
    "\n"
    "Loads and validates CONFIG (defaults when omitted) with the overrides and prints the effective\n"
    "config as YAML. --doc prints the Markdown reference of every key (docs/CONFIG.md).\n";

static const char* usage_bench =
    "usage: [mpirun -np N] ingrain bench NAME [options]\n"
    "\n"
    "Benchmarks print our figure beside a named baseline measured in the same run.\n"
    "\n"
    "  model   training tokens/s and the share of the OpenBLAS sgemm peak for the same shapes\n"
    "  ckpt    checkpoint write/read MB/s vs a dd-style sequential write/read of the same bytes\n"
    "  rollout agent-loop episodes/s and generated tokens/s vs the decoder alone; time in model/env/selector\n"
    "  decode  decoding tokens/s with the KV cache (batch 1 and 32) vs the same step's matmuls alone\n"
    "  distill trainer tokens/s and all-reduce share, exact fixed-point vs float reduction\n"
    "\n"
    "`ingrain bench NAME --help` lists a benchmark's options.\n";

static const char* usage_version =
    "usage: ingrain version\n"
    "\n"
    "Prints the version, build options, the versions of MPI, HDF5 and libyaml, and the GPUs found.\n";

static int wants_help(int argc, char** argv) {
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) return 1;
    }
    return 0;
}

static int usage_error(const char* usage, const char* fmt, const char* arg) {
    fprintf(stderr, "ingrain: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n\n%s", usage);
    return INGRAIN_EXIT_USAGE;
}

// ----------------------------------------------------------------------------
// shared by run and config: CONFIG [--set K=V]... [--resume]

typedef struct {
    const char* config_path;
    int resume;
} ConfigArgs;

// Parse the arguments and build the validated config. Returns 0, or an exit code with the
// error already printed (only by rank 0 when `quiet` is set on the others).
static int load_config(int argc, char** argv, const char* usage, int allow_resume, int quiet, Config* c,
                       ConfigArgs* a) {
    memset(a, 0, sizeof(*a));
    config_defaults(c);
    // the file first, then the overrides in command-line order, whatever their position
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--set") == 0) {
            i++;
        } else if (strncmp(argv[i], "--set=", 6) == 0 || (allow_resume && strcmp(argv[i], "--resume") == 0)) {
            a->resume |= strcmp(argv[i], "--resume") == 0;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            return quiet ? INGRAIN_EXIT_USAGE : usage_error(usage, "unknown option '%s'", argv[i]);
        } else if (a->config_path) {
            return quiet ? INGRAIN_EXIT_USAGE : usage_error(usage, "more than one config file given ('%s')", argv[i]);
        } else {
            a->config_path = argv[i];
        }
    }
    ConfigError err;
    if (a->config_path && config_load_file(c, a->config_path, &err) != 0) goto bad;
    for (int i = 0; i < argc; i++) {
        const char* assignment = NULL;
        if (strcmp(argv[i], "--set") == 0) {
            if (i + 1 >= argc) return quiet ? INGRAIN_EXIT_USAGE : usage_error(usage, "%s needs KEY=VALUE", "--set");
            assignment = argv[++i];
        } else if (strncmp(argv[i], "--set=", 6) == 0) {
            assignment = argv[i] + 6;
        }
        if (assignment && config_set(c, assignment, &err) != 0) goto bad;
    }
    if (a->resume) c->run.resume = RESUME_AUTO;
    if (config_validate(c, &err) != 0) goto bad;
    return 0;
bad:
    if (!quiet) log_error("invalid configuration\n  %s", err.msg);
    return INGRAIN_EXIT_USAGE;
}

// ----------------------------------------------------------------------------
// commands

static int cmd_run(int argc, char** argv) {
    if (wants_help(argc, argv)) return fputs(usage_run, stdout), 0;
    mpiCheck(MPI_Init(&argc, &argv));
    mpiCheck(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    int rank, world;
    mpiCheck(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    mpiCheck(MPI_Comm_size(MPI_COMM_WORLD, &world));
    log_set_rank(rank, world);

    // every rank loads the same file; a bad config is reported once and all ranks exit alike
    Config c;
    ConfigArgs a;
    int rc = load_config(argc, argv, usage_run, 1, rank != 0, &c, &a);
    if (rc == 0 && !a.config_path) {
        if (rank == 0) usage_error(usage_run, "%s", "missing CONFIG (for example configs/quickstart.yaml)");
        rc = INGRAIN_EXIT_USAGE;
    }
    if (rc != 0) {
        MPI_Finalize();
        return rc;
    }
    log_set_level((LogLevel)c.run.log_level);

    RankLayout layout;
    ConfigError err;
    if (ranks_setup(&layout, &c, MPI_COMM_WORLD, &err) != 0) {
        if (rank == 0) log_error("invalid rank layout\n  %s", err.msg);
        MPI_Finalize();
        return INGRAIN_EXIT_USAGE;
    }
    if (rank == 0) {
        log_info("ingrain %s: run '%s' from %s on %d rank%s", INGRAIN_VERSION, c.run.name, a.config_path, world,
                 world == 1 ? "" : "s");
        fputs("---- effective config ----\n", stdout);
        if (config_write_yaml(&c, stdout, &err) != 0) fatal("%s", err.msg);
        fputs("--------------------------\n", stdout);
    }
    ranks_print(&layout);
    rc = driver_run(&c, &layout);
    ranks_free(&layout);
    mpiCheck(MPI_Finalize());
    return rc;
}

static int cmd_config(int argc, char** argv) {
    if (wants_help(argc, argv)) return fputs(usage_config, stdout), 0;
    if (argc == 1 && strcmp(argv[0], "--doc") == 0) {
        config_write_doc(stdout);
        return 0;
    }
    Config c;
    ConfigArgs a;
    int rc = load_config(argc, argv, usage_config, 0, 0, &c, &a);
    if (rc != 0) return rc;
    ConfigError err;
    if (config_write_yaml(&c, stdout, &err) != 0) fatal("%s", err.msg);
    return 0;
}

// model_bench takes its name as argv[0]
static int bench_model_cmd(int argc, char** argv) { return model_bench(argc + 1, argv - 1); }

static const struct {
    const char* name;
    int (*fn)(int, char**);
} benchmarks[] = {{"model", bench_model_cmd}, {"ckpt", bench_ckpt}, {"rollout", bench_rollout}, {"distill", bench_distill},
                 {"decode", bench_decode}};

static int cmd_bench(int argc, char** argv) {
    if (argc == 0 || (argc == 1 && wants_help(argc, argv))) {
        return fputs(usage_bench, argc == 0 ? stderr : stdout), argc == 0 ? INGRAIN_EXIT_USAGE : 0;
    }
    for (size_t i = 0; i < sizeof(benchmarks) / sizeof(benchmarks[0]); i++) {
        if (strcmp(argv[0], benchmarks[i].name) != 0) continue;
        mpiCheck(MPI_Init(&argc, &argv));
        mpiCheck(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
        int rank, world;
        mpiCheck(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
        mpiCheck(MPI_Comm_size(MPI_COMM_WORLD, &world));
        log_set_rank(rank, world);
        int rc = benchmarks[i].fn(argc - 1, argv + 1);
        mpiCheck(MPI_Finalize());
        return rc;
    }
    return usage_error(usage_bench, "unknown benchmark '%s'", argv[0]);
}

static int cmd_version(int argc, char** argv) {
    if (wants_help(argc, argv)) return fputs(usage_version, stdout), 0;
    unsigned h5maj, h5min, h5rel;
    H5get_libversion(&h5maj, &h5min, &h5rel);
    char mpi_version[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(mpi_version, &len);
    char* nl = strchr(mpi_version, '\n');
    if (nl) *nl = '\0';
    char* comma = strchr(mpi_version, ',');
    if (comma) *comma = '\0';
    char gpus[1024];
    int n_gpu = device_cuda_count(gpus, sizeof(gpus));
    printf("ingrain %s\n", INGRAIN_VERSION);
    printf("  MPI:     %s\n", mpi_version);
    printf("  HDF5:    %u.%u.%u (parallel)\n", h5maj, h5min, h5rel);
    printf("  libyaml: %s\n", yaml_get_version_string());
    printf("  CUDA:    %s; %d GPU%s: %s\n", device_cuda_built() ? "backend built" : "backend not built", n_gpu,
           n_gpu == 1 ? "" : "s", gpus);
    char nccl[320];
    devcomm_describe(nccl, sizeof nccl);
    printf("  NCCL:    %s\n", nccl);
    return 0;
}

// ----------------------------------------------------------------------------

int main(int argc, char** argv) {
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        fputs(usage_main, argc < 2 ? stderr : stdout);
        return argc < 2 ? INGRAIN_EXIT_USAGE : 0;
    }
    static const struct {
        const char* name;
        int (*fn)(int, char**);
    } commands[] = {{"run", cmd_run},         {"config", cmd_config},   {"inspect", cli_inspect},
                    {"bench", cmd_bench},     {"version", cmd_version}, {"--version", cmd_version},
                    {"bootstrap", cli_bootstrap}, {"generate", cli_generate}, {"score", cli_score},
                    {"sweep", cli_sweep}, {"report", cli_report}, {"export", cli_export}};
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].fn(argc - 2, argv + 2);
    }
    fprintf(stderr, "ingrain: unknown command '%s'\n\n%s", argv[1], usage_main);
    return INGRAIN_EXIT_USAGE;
}
