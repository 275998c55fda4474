// The job's checkpoint layout (docs/FORMATS.md): what the driver writes into each iteration's HDF5
// file through io/ckpt.h, and how it reads it back — also on a different number of ranks.
#pragma once
#include <mpi.h>
#include <stdint.h>

#include "distill/trainer.h"
#include "io/ckpt.h"
#include "io/config.h"
#include "model/model.h"
#include "mpi/ranks.h"
#include "rollout/trajectory.h"

typedef struct {
    int iteration;          // iterations completed; the file is RUN_DIR/ckpt/iter_<iteration>.h5
    const Config* cfg;
    const RankLayout* layout;
    Model* model;           // the student weights theta_{k+1}, identical on every rank
    DistillTrainer* trainer; // this rank's ZeRO-1 slice of the AdamW state; NULL if not a trainer
    const char* pool_json;  // on world rank data_writer (the aggregator root)
    Trajectory* const* trajectories; // the iteration's records on data_writer (when checkpoint.trajectories)
    int n_trajectories;
    int data_writer;
    const char* metrics;    // the metrics JSONL so far, on world rank 0
} CkptState;

// collective over the file's communicator: one dataset per weight tensor, /model/<name>, (L, rows,
// cols) for per-layer ones, with its HF name; params (the flat table's layout) on the writing
// rank, NULL on the others
void state_put_weights(CkptFile* f, const ModelConfig* mc, const ParamInfo* table, const float* params);

// collective over layout->world: write the checkpoint, then apply retention (checkpoint.keep_last)
void state_write(const CkptState* s);

// What a resumed job gets back besides the weights (loaded into the model) and the optimizer
// slice (loaded into the trainer, for this job's partition, whatever the writer's was).
typedef struct {
    int iteration;
    char* pool_json;
    char* metrics;
    char* config_yaml;
} CkptLoaded;

// Read a checkpoint into `model` (checking the model config matches) and `trainer` (NULL on ranks
// that are not trainers). Returns 0, or -1 with err naming the file and the dataset. Independent.
int state_read(const char* path, Model* model, DistillTrainer* trainer, CkptLoaded* out, char* err, size_t errlen);
void state_loaded_free(CkptLoaded* l);
