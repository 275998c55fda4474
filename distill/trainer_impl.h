// Internals of the distillation trainer shared by trainer.c, reduce.c and zero.c: the trainer
// struct, the ZeRO-1 partition with its bucketed collectives, and the sharded AdamW.
#pragma once
#include <mpi.h>
#include <stdint.h>

#include "distill/objective.h"
#include "distill/teacher.h"
#include "distill/trainer.h"

// ----------------------------------------------------------------------------
// the partition (reduce.c): ckpt_shard slices of n elements over the ranks, and collectives that
// move about one bucket per call, split evenly over the ranks: round b takes chunk b of every
// rank's slice, packed in rank order into a staging buffer (the balanced layout MPI's
// reduce-scatter and all-gather algorithms are fast at; a bucket that fell to one or two slice
// owners ran 2-3x slower than an all-reduce of the same bytes in our measurements).

typedef struct {
    uint64_t n;
    int rank, size;
    uint64_t* off; // (size) slice offsets
    uint64_t* cnt; // (size) slice lengths (block multiples, the last may be shorter)
    int* counts;   // (size) scratch: each rank's part of a round
    int* displs;   // (size) its place in the packed buffer
    void* pack;    // staging of one round
    size_t pack_bytes;
} Partition;

void part_init(Partition* p, uint64_t n, int rank, int size);
void part_free(Partition* p);
// slice (this rank's cnt elements) = sum over ranks of full[off .. off + cnt)
void part_reduce_scatter(Partition* p, const void* full, void* slice, MPI_Datatype type, size_t elem,
                         size_t bucket_bytes, MPI_Comm comm);
// every rank's slice of full (in place) to every rank
void part_allgather(Partition* p, void* full, MPI_Datatype type, size_t elem, size_t bucket_bytes, MPI_Comm comm);
// sum of squares of the global vector whose slice this rank holds (a backend buffer), summed per
// checkpoint block (block boundaries do not depend on the rank count; be->sum_squares_blocks) and
// over blocks in order: the same value on every rank, for every rank count and backend
double part_norm2(Partition* p, Backend* be, const float* slice, MPI_Comm comm);

// ----------------------------------------------------------------------------
// the trainer

struct DistillTrainer {
    Model* model;
    Backend* be;
    DistillOptions opt;
    MPI_Comm comm;
    int rank, size;
    uint64_t n; // parameters
    ParamInfo table[PARAM_COUNT];
    Partition part;

    // ZeRO-1 AdamW over this rank's slice [part.off[rank], + part.cnt[rank]) (zero.c)
    float* m; // backend (slice)
    float* v; // backend (slice)
    long steps_done;

    // NCCL among GPU trainers (model/devcomm.h), else NULL: the collectives stage through host memory
    DevComm* nccl;
    // fixed mode, one trainer or NCCL: the step's fixed-point gradient sums, beside the gradients
    int64_t* acc; // backend (n), else NULL

    // host staging of the collectives (several trainers, or float mode)
    int64_t* acc_host;  // (n) the step's fixed-point sums (several trainers)
    int64_t* acc_slice; // (slice)
    float* grad;        // (n) a micro-batch's gradient (fixed) or the accumulated one (float)
    float* grad_slice;  // (slice) reduced gradient
    float* params;      // (n) the parameter all-gather; the teacher refresh's staging

    DistillObjective* obj;
    DistillBatch batch;
    DistillTeacher* teacher; // teacher_recompute: the frozen copy (teacher.h), else NULL
    float* d_teacher;        // backend (max_batch, max_seq, V) its rows of one micro-batch
};

// one AdamW update of this rank's slice of the parameters from the reduced gradient slice (in
// place in the model's gradient buffer) with learning rate lr and gradient multiplier scale (zero.c)
void zero_step(DistillTrainer* t, float lr, float scale);
