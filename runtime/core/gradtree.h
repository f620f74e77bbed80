/* The fixed gradient tree of docs/training.md, folded as chunks complete.
 *
 * Chunk k's parameter gradients are summed by a fixed pairwise tree: for s = 1, 2, 4, ..., slot i
 * adds slot i + s for every i that is a multiple of 2s. Each node of that tree is an aligned block
 * of chunks [i, i + 2s) (cut at the chunk count), whose value is its left half's plus its right
 * half's. So instead of one slot per chunk, whoever computes a run of chunks in order keeps a
 * stack of the blocks it has completed and adds the top two as soon as they are siblings, like a
 * binary counter; the blocks left when every chunk is done are added from the right. Every
 * addition is one of the tree's, with the same operands, so the sum has the same bits, while at
 * most pnetrt_tree_depth(n) partial sums are held for a run of n chunks.
 *
 * Runs of chunks done by different thread groups or ranks are combined the same way: their
 * stacks, in chunk order, are pushed onto one stack. A chunk whose left sibling is the single chunk
 * on top may instead add itself into that chunk's buffer as its kernels store its gradient (the
 * call's grad_add): the same addition, and the pair pushed as one block. Internal to libpnetrt. */
#ifndef PNETRT_GRADTREE_H
#define PNETRT_GRADTREE_H

#include "pnetrt_ranks.h" /* pnetrt_blk, pnetrt_tree_depth, pnetrt_tree_stack */

#include <stdbool.h>
#include <stdint.h>

/* Element ranges [lo, hi) of the gradient that a caller adds (its stage's parameters, or all). */
typedef struct pnetrt_range {
    int64_t lo, hi;
} pnetrt_range;

/* Pushes block b, held in buf, onto the stack (blk[], bufs[], *top), and adds siblings: each
 * thread (ith of nth) adds its share of the ranges. Returns true when it added anything (the
 * caller's threads then meet before they use the freed buffers). */
bool pnetrt_tree_push(pnetrt_blk *blk, float **bufs, int *top, pnetrt_blk b, float *buf, const pnetrt_range *r, int nr,
                      int ith, int nth);
/* Adds the stack's blocks from the right until keep (at least 1) are left: with keep 1, bufs[0]
 * then holds the sum; else the sum is bufs[0] + (bufs[1] + (... + bufs[keep - 1])), which the
 * step's update adds as it reads them (the same additions, so the same bits).
 *
 * Pushing a run's last block without adding its siblings, then adding from the right, also makes
 * the same additions: the siblings the push would add are the stack's top blocks, added from the
 * right, and a block the last one would be added into can be no other block's right sibling. */
void pnetrt_tree_finish(pnetrt_blk *blk, float **bufs, int *top, int keep, const pnetrt_range *r, int nr, int ith,
                        int nth);

#endif
