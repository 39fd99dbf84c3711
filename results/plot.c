/* An SVG bar chart of FSR and perplexity per removal method.
 *
 * Hand-written SVG: no Debian-packaged C plotting library fits (PLplot and
 * gnuplot pipes pull in a lot for two bar charts), and SVG is text.
 * Two panels share the x axis: FSR (%) on top, perplexity below. Each
 * group is one row of the methods table (the fingerprinted model first),
 * one bar per fingerprint, whiskers for the 95% CI across seeds. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pivot.h"

static const char *palette[] = {"#4477aa", "#ee6677", "#228833", "#ccbb44",
                                "#66ccee", "#aa3377", "#bbbbbb", "#000000"};

static void xml(FILE *f, const char *s) {
    for (; *s; s++) switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
}

/* 1, 2 or 5 times a power of ten, at least x. (No libm in results/: see
 * table.c.) */
static double nice_ceil(double x) {
    if (!(x > 0) || x > 1e300) return 1;
    double p = 1;
    while (p > x) p /= 10;
    while (p * 10 <= x) p *= 10;
    static const double steps[] = {1, 2, 5, 10};
    for (int i = 0; i < 4; i++)
        if (steps[i] * p >= x) return steps[i] * p;
    return 10 * p;
}

/* Pixels: v is never negative here. */
static int px(double v) { return (int)(v + 0.5); }

enum { LEFT = 70, TOP = 40, PANEL_H = 170, PANEL_GAP = 50, BAR_W = 14, GROUP_PAD = 24,
       LABEL_H = 110 };

static void panel(FILE *f, const rs_pivot *p, const char *title, double scale, double ymax,
                  int y0, int group_w) {
    int w = p->n_rows * group_w;
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-weight=\"bold\">", LEFT, y0 - 10);
    xml(f, title);
    fputs("</text>\n", f);
    for (int t = 0; t <= 4; t++) { /* grid and tick labels */
        double v = ymax * t / 4;
        int y = y0 + PANEL_H - (int)px(PANEL_H * t / 4.0);
        fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#dddddd\"/>\n", LEFT,
                y, LEFT + w, y);
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%g</text>\n", LEFT - 6, y + 4, v);
    }
    for (int r = 0; r < p->n_rows; r++)
        for (int c = 0; c < p->n_cols; c++) {
            const rs_cell *cell = &p->cells[r * p->n_cols + c];
            int x = LEFT + r * group_w + GROUP_PAD / 2 + c * BAR_W;
            const char *col = palette[c % 8];
            if (cell->n == 0) {
                if (cell->failed && !cell->ok) /* every unit failed: a cross */
                    fprintf(f, "<text x=\"%d\" y=\"%d\" fill=\"%s\" font-size=\"10\">&#215;"
                            "</text>\n", x + 3, y0 + PANEL_H - 3, col);
                continue;
            }
            double mean, half;
            rs_mean_ci95(cell->v, cell->n, &mean, &half);
            mean *= scale;
            half *= scale;
            double top = mean > ymax ? ymax : (mean < 0 ? 0 : mean);
            int h = (int)px(PANEL_H * top / ymax);
            fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\">"
                    "<title>%.3g ± %.3g (n=%d)</title></rect>\n",
                    x, y0 + PANEL_H - h, BAR_W - 2, h, col, mean, half, cell->n);
            if (cell->n > 1 && half > 0) {
                double lo = mean - half < 0 ? 0 : mean - half;
                double hi = mean + half > ymax ? ymax : mean + half;
                int ylo = y0 + PANEL_H - (int)px(PANEL_H * lo / ymax);
                int yhi = y0 + PANEL_H - (int)px(PANEL_H * hi / ymax);
                int xm = x + (BAR_W - 2) / 2;
                fprintf(f, "<path d=\"M%d %dV%dM%d %dH%dM%d %dH%d\" stroke=\"#333333\"/>\n", xm,
                        ylo, yhi, xm - 3, ylo, xm + 3, xm - 3, yhi, xm + 3);
            }
        }
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333333\"/>\n", LEFT,
            y0 + PANEL_H, LEFT + w, y0 + PANEL_H);
}

int rs_plot_svg(const rs_row *rows, size_t n, const char *out_path, lm_err *err) {
    /* ppl is the canonical perplexity; ppl_ref the reference-compatible one. */
    const char *ppl = "ppl";
    int has_ppl = 0, has_ref = 0;
    for (size_t i = 0; i < n; i++) {
        has_ppl |= !isnan(rs_row_metric(&rows[i], "ppl", NULL));
        has_ref |= !isnan(rs_row_metric(&rows[i], "ppl_ref", NULL));
    }
    if (!has_ppl && has_ref) ppl = "ppl_ref";

    rs_pivot fsr, pp;
    if (rs_pivot_build(rows, n, "fsr", RS_LAYOUT_METHODS, 0, &fsr, err)) return -1;
    if (rs_pivot_build(rows, n, ppl, RS_LAYOUT_METHODS, 0, &pp, err)) {
        rs_pivot_free(&fsr);
        return -1;
    }
    int rc = -1;
    FILE *f = NULL;
    if (fsr.n_rows == 0 || fsr.n_cols == 0) {
        lm_errf(err, "no fingerprinted or removal rows to draw");
        goto done;
    }
    double pmax = 0;
    for (int i = 0; i < pp.n_rows * pp.n_cols; i++) {
        double m, h;
        if (pp.cells[i].n == 0) continue;
        rs_mean_ci95(pp.cells[i].v, pp.cells[i].n, &m, &h);
        if (m + h > pmax) pmax = m + h;
    }
    pmax = nice_ceil(pmax);

    int group_w = fsr.n_cols * BAR_W + GROUP_PAD;
    int plot_w = fsr.n_rows * group_w;
    int width = LEFT + plot_w + 160; /* legend on the right */
    int y_fsr = TOP, y_ppl = TOP + PANEL_H + PANEL_GAP;
    int height = y_ppl + PANEL_H + LABEL_H;

    size_t len = strlen(out_path);
    char *tmp = malloc(len + 5);
    if (!tmp) {
        lm_errf(err, "out of memory");
        goto done;
    }
    memcpy(tmp, out_path, len);
    memcpy(tmp + len, ".tmp", 5);
    f = fopen(tmp, "w");
    if (!f) {
        lm_errf(err, "cannot write %s", tmp);
        free(tmp);
        goto done;
    }
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n",
            width, height, width, height);
    fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", width, height);
    panel(f, &fsr, "FSR (%) per method, mean ± 95% CI across seeds", 100, 100, y_fsr, group_w);
    char title[96];
    snprintf(title, sizeof title, "Perplexity (%s) per method", ppl);
    /* Both pivots have the same rows and columns: they come from the
     * units, whatever metric the cells hold. */
    panel(f, &pp, title, 1, pmax, y_ppl, group_w);

    for (int r = 0; r < fsr.n_rows; r++) { /* group labels, slanted */
        int x = LEFT + r * group_w + group_w / 2;
        int y = y_ppl + PANEL_H + 14;
        fprintf(f, "<text transform=\"translate(%d,%d) rotate(-35)\" text-anchor=\"end\">", x, y);
        for (int k = 0; k < fsr.n_keys; k++) {
            if (k) fputs(": ", f);
            xml(f, fsr.labels[r * fsr.n_keys + k]);
        }
        fputs("</text>\n", f);
    }
    for (int c = 0; c < fsr.n_cols; c++) { /* legend */
        int y = TOP + 20 * c;
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/>\n",
                LEFT + plot_w + 20, y, palette[c % 8]);
        fprintf(f, "<text x=\"%d\" y=\"%d\">", LEFT + plot_w + 38, y + 11);
        xml(f, fsr.col_names[c]);
        fputs("</text>\n", f);
    }
    fputs("</svg>\n", f);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        lm_errf(err, "write error on %s", tmp);
    } else if (rename(tmp, out_path) != 0) {
        lm_errf(err, "cannot rename %s to %s", tmp, out_path);
    } else {
        rc = 0;
    }
    if (rc) remove(tmp);
    free(tmp);
done:
    rs_pivot_free(&fsr);
    rs_pivot_free(&pp);
    return rc;
}
