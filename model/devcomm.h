// Collectives among the trainers' GPUs with NCCL (docs/DISTILL.md): each slice of a vector summed
// onto the trainer that owns it, and each owner's slice sent to every trainer, device to device
// on the backend's stream, in place. The caller bootstraps the communicator over MPI
// (distill/trainer.c): every rank's devcomm_key, checked to be distinct (NCCL wants one rank per
// GPU), rank 0's devcomm_unique_id broadcast, then devcomm_create on every rank. Builds without
// CUDA or without NCCL, and the CPU backend, offer none: devcomm_key fails with the reason.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "model/ops.h"

#define DEVCOMM_ID_BYTES 128 // sizeof(ncclUniqueId)
#define DEVCOMM_KEY_BYTES 96 // "host/PCI bus id" of a device

typedef enum { DEVCOMM_F32, DEVCOMM_I64 } DevCommType;
typedef struct DevComm DevComm;

// 1 if this binary was built with NCCL
int devcomm_built(void);
// one line for `ingrain version`: the NCCL version loaded, or why there is none
void devcomm_describe(char* out, size_t n);
// the identity of the backend's device on this cluster (host name and PCI bus id); 0, or -1
// with the reason in err (not a CUDA backend, or built without NCCL)
int devcomm_key(Backend* be, char key[DEVCOMM_KEY_BYTES], char* err, size_t errlen);
// a new communicator's id (rank 0 makes it, every rank passes it to devcomm_create)
int devcomm_unique_id(unsigned char id[DEVCOMM_ID_BYTES], char* err, size_t errlen);
// collective over the nranks ranks that pass the same id; NULL with the reason in err
DevComm* devcomm_create(Backend* be, const unsigned char id[DEVCOMM_ID_BYTES], int nranks, int rank, char* err,
                        size_t errlen);
void devcomm_free(DevComm* c);
// x: a backend buffer of the slices' elements; slice r = [off[r], off[r] + cnt[r]) for each of the
// nranks ranks. reduce: rank r's slice becomes the sum of every rank's (integer sums are exact
// in any order; float sums follow NCCL's order). gather: every rank's slice r becomes rank r's.
void devcomm_reduce_slices(DevComm* c, void* x, DevCommType type, const uint64_t* off, const uint64_t* cnt);
void devcomm_gather_slices(DevComm* c, void* x, DevCommType type, const uint64_t* off, const uint64_t* cnt);
// x (n elements, a backend buffer) of rank root to every rank, in place
void devcomm_broadcast(DevComm* c, void* x, DevCommType type, size_t n, int root);
