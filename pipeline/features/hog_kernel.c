/* UoCTTI HOG of a batch of float32 grayscale images, VLFeat's vl_hog semantics (forward only; autograd uses the
 * torch path). A plain C library loaded with ctypes, like lbp.c.
 *
 * images: count x height x width, row-major. out: count x ch x cw x (3 * orientations + 4), overwritten, with
 * ch = (height + cell / 2) / cell (likewise cw). Channels: 2*O directed, O undirected, 4 texture energies.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cells_kernel.h"

#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
/* no fused multiply-add: near-ties must round as in VLFeat */
#pragma GCC optimize("fp-contract=off")
#endif

#define PI 3.14159265358979323846

/* Gradient histograms (ch x cw x 2O) of one image: hard directed orientation, bilinear spatial votes.
 * Row by row in three passes over scratch rows, so that the first two vectorise: gradients, the orientation
 * scoring (one orientation at a time across the row), then the scattered votes. */
static void vote(const float *im, long height, long width, long o, const float *ox, const float *oy, long cw,
                 const Votes *vx, const Votes *vy, float *scratch, int *orientation, float *hist) {
  long bins = 2 * o;
  float *grad = scratch, *ux = scratch + width, *uy = scratch + 2 * width, *best = scratch + 3 * width;
  for (long y = 1; y < height - 1; ++y) {
    float wt = vy->w_left[y], wb = vy->w_right[y];
    if (wt == 0.0f && wb == 0.0f) continue;
    const float *row = im + y * width;
    for (long x = 1; x < width - 1; ++x) {
      float gx = row[x + 1] - row[x - 1], gy = row[x + width] - row[x - width];
      float g = sqrtf(gx * gx + gy * gy), denom = g > 1e-10f ? g : 1e-10f;
      grad[x] = g, ux[x] = gx / denom, uy[x] = gy / denom, best[x] = 0.0f, orientation[x] = 0;
    }
    /* VLFeat's loop (score > best: k; else -score > best: k + O) is a first-wins argmax of |score| */
    for (long k = 0; k < o; ++k) {
      float cx = ox[k], cy = oy[k];
      for (long x = 1; x < width - 1; ++x) {
        float score = ux[x] * cx + uy[x] * cy, magnitude = fabsf(score);
        int better = magnitude > best[x], candidate = (int)k + (score < 0.0f) * (int)o;
        best[x] = better ? magnitude : best[x];
        orientation[x] += better * (candidate - orientation[x]); /* arithmetic, not a branch: it vectorises */
      }
    }
    float *top = hist + vy->left[y] * cw * bins, *bottom = hist + vy->right[y] * cw * bins;
    for (long x = 1; x < width - 1; ++x) {
      long l = vx->left[x] * bins + orientation[x], r = vx->right[x] * bins + orientation[x];
      float vl = grad[x] * vx->w_left[x], vr = grad[x] * vx->w_right[x];
      top[l] += vl * wt;
      top[r] += vr * wt;
      bottom[l] += vl * wb;
      bottom[r] += vr * wb;
    }
  }
}

/* Block normalisation, clipping at 0.2 and the UoCTTI channel layout, as vl_hog_extract. */
static void extract(const float *hist, long ch, long cw, long o, float *energy, float *out) {
  long bins = 2 * o, channels = 3 * o + 4;
  for (long c = 0; c < ch * cw; ++c) {
    float e = 0.0f;
    for (long k = 0; k < o; ++k) {
      float h = hist[c * bins + k] + hist[c * bins + k + o];
      e += h * h;
    }
    energy[c] = e;
  }
  const float texture = 1.0f / sqrtf(18.0f);
  for (long y = 0; y < ch; ++y) {
    long ym = y > 0 ? y - 1 : 0, yp = y < ch - 1 ? y + 1 : ch - 1;
    for (long x = 0; x < cw; ++x) {
      long xm = x > 0 ? x - 1 : 0, xp = x < cw - 1 ? x + 1 : cw - 1;
#define E(i, j) energy[(i) * cw + (j)]
      float n1 = E(ym, xm), n2 = E(ym, x), n3 = E(ym, xp), n4 = E(y, xm), n5 = E(y, x), n6 = E(y, xp);
      float n7 = E(yp, xm), n8 = E(yp, x), n9 = E(yp, xp);
#undef E
      float f1 = 1.0f / sqrtf((float)((double)(n1 + n2 + n4 + n5) + 1e-4));
      float f2 = 1.0f / sqrtf((float)((double)(n2 + n3 + n5 + n6) + 1e-4));
      float f3 = 1.0f / sqrtf((float)((double)(n4 + n5 + n7 + n8) + 1e-4));
      float f4 = 1.0f / sqrtf((float)((double)(n5 + n6 + n8 + n9) + 1e-4));
      const float *h = hist + (y * cw + x) * bins;
      float *f = out + (y * cw + x) * channels;
      float t1 = 0.0f, t2 = 0.0f, t3 = 0.0f, t4 = 0.0f;
      for (long k = 0; k < o; ++k) {
        float ha = h[k], hb = h[k + o];
        float ha1 = f1 * ha, ha2 = f2 * ha, ha3 = f3 * ha, ha4 = f4 * ha;
        float hb1 = f1 * hb, hb2 = f2 * hb, hb3 = f3 * hb, hb4 = f4 * hb;
        float hc1 = fminf(0.2f, ha1 + hb1), hc2 = fminf(0.2f, ha2 + hb2);
        float hc3 = fminf(0.2f, ha3 + hb3), hc4 = fminf(0.2f, ha4 + hb4);
        ha1 = fminf(0.2f, ha1), ha2 = fminf(0.2f, ha2), ha3 = fminf(0.2f, ha3), ha4 = fminf(0.2f, ha4);
        hb1 = fminf(0.2f, hb1), hb2 = fminf(0.2f, hb2), hb3 = fminf(0.2f, hb3), hb4 = fminf(0.2f, hb4);
        t1 += hc1, t2 += hc2, t3 += hc3, t4 += hc4;
        f[k] = 0.5f * (ha1 + ha2 + ha3 + ha4);
        f[k + o] = 0.5f * (hb1 + hb2 + hb3 + hb4);
        f[k + 2 * o] = 0.5f * (hc1 + hc2 + hc3 + hc4);
      }
      f[3 * o] = texture * t1, f[3 * o + 1] = texture * t2, f[3 * o + 2] = texture * t3, f[3 * o + 3] = texture * t4;
    }
  }
}

/* Returns 0, or -1 when memory for the per-call tables cannot be had. */
int preimage_hog_uoctti(const float *images, long count, long height, long width, long cell, long o, float *out) {
  long ch = (height + cell / 2) / cell, cw = (width + cell / 2) / cell;
  Votes vx = {0}, vy = {0};
  float *ox = malloc(sizeof(float) * o), *oy = malloc(sizeof(float) * o);
  float *hist = malloc(sizeof(float) * ch * cw * 2 * o), *energy = malloc(sizeof(float) * ch * cw);
  float *scratch = malloc(sizeof(float) * 4 * width);
  int *orientation = malloc(sizeof(int) * width);
  int ok = ox && oy && hist && energy && scratch && orientation && votes_init(&vx, width, cell, cw) == 0 &&
           votes_init(&vy, height, cell, ch) == 0;
  for (long k = 0; ok && k < o; ++k) {
    ox[k] = (float)cos(k * PI / (double)o);
    oy[k] = (float)sin(k * PI / (double)o);
  }
  for (long n = 0; ok && n < count; ++n) {
    memset(hist, 0, sizeof(float) * ch * cw * 2 * o);
    vote(images + n * height * width, height, width, o, ox, oy, cw, &vx, &vy, scratch, orientation, hist);
    extract(hist, ch, cw, o, energy, out + n * ch * cw * (3 * o + 4));
  }
  free(ox), free(oy), free(hist), free(energy), free(scratch), free(orientation), votes_free(&vx), votes_free(&vy);
  return ok ? 0 : -1;
}
