// The frozen teacher of distill.teacher: recompute. Each trainer holds a second Model with the
// student's config, refreshed from the student's weights at the start of every iteration (theta_k,
// frozen while the iteration trains theta_{k+1}), and a one-slot decoder over it. For every loss
// row of a micro-batch it recomputes the teacher's full next-token distribution with the
// experience in context, exactly as the record's teacher contexts say (Trajectory.n_tctx, from
// agent_teacher_view at rollout): each turn's context is the history with that turn's splice
// applied, fed through the decoder so that consecutive contexts share their common prefix
// (global injection: every turn of a micro-batch's sequences after the first reuses the system
// prompt with the pool; step-wise: a turn re-feeds from the previous turn's splice point on).
//
// Nothing is stored beyond the micro-batch: the rows go into a backend (B, T, V) buffer the size
// of the student's logits. Memory per trainer: the teacher's parameters, its KV cache of max_len
// tokens, and that buffer.
//
// Determinism: the decoder slot is emptied at the start of every micro-batch and the sequences
// are fed in the micro-batch's order, so a micro-batch's teacher rows are the same on whichever
// trainer runs it (the data-parallel reproducibility of trainer.h holds with recompute).
#pragma once
#include "model/model.h"
#include "rollout/trajectory.h"

typedef struct DistillTeacher DistillTeacher;

// the teacher's Model (weights only: no training activations) and a decoder of max_len tokens
DistillTeacher* distill_teacher_create(Model* student, int max_len);
void distill_teacher_free(DistillTeacher* t);
int distill_teacher_max_len(const DistillTeacher* t);
// theta_k := the student's current weights (staging: n_params host floats)
void distill_teacher_refresh(DistillTeacher* t, Model* student, float* staging);
// The longest teacher context a record's loss rows need (tokens fed to the decoder at most). The
// record must hold no experience segment (a student view).
int distill_teacher_need(const Trajectory* s);
// The teacher's log-probabilities over the vocabulary for every loss row of the micro-batch
// seqs[0..B) padded to T: the row of agent token i >= 1 of sequence b (predicted at position
// i - 1) goes to out + (b * T + i - 1) * V, a backend (B, T, V) buffer; other rows are not
// written. Fatal if a context exceeds max_len (distill_train checks distill_teacher_need first).
void distill_teacher_rows(DistillTeacher* t, Trajectory* const* seqs, int B, int T, float* out);
