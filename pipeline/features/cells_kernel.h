/* Bilinear cell votes shared by the HOG and LBP kernels (the C twin of cells.py).
 *
 * Coordinate i (interior only, 1 .. n-2) votes into cells floor(h) and floor(h) + 1 of h = (i + 0.5) / cell - 0.5
 * with weights 1 - frac(h) and frac(h); a vote outside the grid gets weight 0 and a valid index, so the kernels
 * add it without a branch.
 */
#ifndef PREIMAGE_CELLS_KERNEL_H
#define PREIMAGE_CELLS_KERNEL_H

#include <math.h>
#include <stdlib.h>

typedef struct {
  int *left, *right;
  float *w_left, *w_right;
} Votes;

static void votes_free(Votes *v) {
  free(v->left), free(v->right), free(v->w_left), free(v->w_right);
}

/* Fills the tables of n coordinates and cells cells; returns 0, or -1 without memory. */
static int votes_init(Votes *v, long n, long cell, long cells) {
  v->left = malloc(sizeof(int) * n), v->right = malloc(sizeof(int) * n);
  v->w_left = malloc(sizeof(float) * n), v->w_right = malloc(sizeof(float) * n);
  if (!(v->left && v->right && v->w_left && v->w_right)) return -1;
  for (long i = 0; i < n; ++i) {
    double h = (i + 0.5) / (double)cell - 0.5;
    long c = (long)floor(h);
    double frac = h - (double)c;
    int inside = i >= 1 && i <= n - 2;
    int left_ok = inside && c >= 0 && c < cells;
    int right_ok = inside && c + 1 >= 0 && c + 1 < cells;
    v->left[i] = left_ok ? (int)c : 0;
    v->right[i] = right_ok ? (int)(c + 1) : 0;
    v->w_left[i] = left_ok ? (float)(1.0 - frac) : 0.0f;
    v->w_right[i] = right_ok ? (float)frac : 0.0f;
  }
  return 0;
}

#endif
