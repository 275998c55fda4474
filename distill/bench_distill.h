// `ingrain bench distill`: distillation trainer throughput and the share of step time spent in
// gradient reduction and parameter all-gather, fixed-point (reproducible) beside float reduction,
// with a plain bucketed float MPI_Allreduce of the gradient as the communication baseline.
#pragma once

// collective over MPI_COMM_WORLD (every rank is a trainer); returns an exit code
int bench_distill(int argc, char** argv);
