/* Uniform LBP of a batch of float32 grayscale images, VLFeat's vl_lbp semantics, one pass per image.
 *
 * A plain C library loaded with ctypes (see native.py), not a Python module: it touches no Python API, so
 * ctypes releases the GIL while it runs and Python threads can split a batch across cores.
 *
 * images: count x height x width, row-major, float32. mapping: the 256 -> 58 uniform table.
 * out:    count x (height / cell) x (width / cell) x 58, overwritten.
 * Interior pixels vote bilinearly into cells (cells_kernel.h); each cell becomes sqrt(h) / (sqrt(sum h) + 1e-10).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cells_kernel.h"

#define PATTERNS 58

/* Returns 0, or -1 when memory for the per-call tables cannot be had. */
int preimage_lbp_uniform(const float *images, long count, long height, long width, long cell,
                         const unsigned char *mapping, float *out) {
  long ch = height / cell, cw = width / cell;
  long plane = ch * cw * PATTERNS;
  Votes vx = {0}, vy = {0};
  unsigned char *codes = malloc(width);
  int ok = codes && votes_init(&vx, width, cell, cw) == 0 && votes_init(&vy, height, cell, ch) == 0;
  for (long k = 0; ok && k < count; ++k) {
    const float *im = images + k * height * width;
    float *hist = out + k * plane;
    memset(hist, 0, sizeof(float) * plane);
    for (long y = 1; y < height - 1; ++y) {
      float wt = vy.w_left[y], wb = vy.w_right[y];
      if (wt == 0.0f && wb == 0.0f) continue;
      const float *up = im + (y - 1) * width, *row = im + y * width, *down = im + (y + 1) * width;
      /* bits E, SE, S, SW, W, NW, N, NE (bit set when the neighbour is strictly brighter): a loop of its own
         over the row so the compiler vectorises it */
      for (long x = 1; x < width - 1; ++x) {
        float c = row[x];
        codes[x] = (unsigned char)((row[x + 1] > c) | (down[x + 1] > c) << 1 | (down[x] > c) << 2 |
                                   (down[x - 1] > c) << 3 | (row[x - 1] > c) << 4 | (up[x - 1] > c) << 5 |
                                   (up[x] > c) << 6 | (up[x + 1] > c) << 7);
      }
      float *top = hist + vy.left[y] * cw * PATTERNS, *bottom = hist + vy.right[y] * cw * PATTERNS;
      for (long x = 1; x < width - 1; ++x) {
        long bin = mapping[codes[x]];
        long l = vx.left[x] * PATTERNS + bin, r = vx.right[x] * PATTERNS + bin;
        top[l] += wt * vx.w_left[x];
        top[r] += wt * vx.w_right[x];
        bottom[l] += wb * vx.w_left[x];
        bottom[r] += wb * vx.w_right[x];
      }
    }
    for (long c = 0; c < ch * cw; ++c) {
      float *h = hist + c * PATTERNS, norm = 0.0f;
      for (int b = 0; b < PATTERNS; ++b) norm += h[b];
      norm = sqrtf(norm) + 1e-10f;
      for (int b = 0; b < PATTERNS; ++b) h[b] = sqrtf(h[b]) / norm;
    }
  }
  free(codes), votes_free(&vx), votes_free(&vy);
  return ok ? 0 : -1;
}

/* setuptools builds these files as an extension and, on Windows, exports PyInit_<name>; it is never imported. */
void *PyInit__native(void) { return NULL; }
