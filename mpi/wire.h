// Moving variable-size byte messages (encoded trajectories, pools, shards, weights) between ranks.
// Every message is framed: its length travels first and an XXH3 hash of the payload travels with
// it, so every receive is size-checked and a corrupt or mismatched message is a clear error naming
// the sending rank, never a silent misread.
#pragma once
#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

// root receives every rank's buffer, concatenated in rank order (*out, *out_len, malloc'd) and each
// rank's length (*lens, malloc'd, comm size entries); other ranks get NULLs. Collective.
void wire_gather(MPI_Comm comm, int root, const uint8_t* data, size_t len, uint8_t** out, size_t* out_len,
                 size_t** lens);
// root's buffer to every rank: on entry root's *data/*len are the message; on return every other rank
// holds a malloc'd copy. Collective.
void wire_bcast(MPI_Comm comm, int root, uint8_t** data, size_t* len);
// root sends parts[r] (lens[r] bytes) to each rank r; every rank receives its own part (malloc'd
// *out, *out_len). parts/lens are read on root only. Collective.
void wire_scatter(MPI_Comm comm, int root, uint8_t* const* parts, const size_t* lens, uint8_t** out, size_t* out_len);
// float arrays of n elements from root to every rank, in buckets of at most `bucket` elements
void wire_bcast_floats(MPI_Comm comm, int root, float* data, size_t n, size_t bucket);
