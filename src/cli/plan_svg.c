/* tune plan --svg: tune's plan as one stacked bar (a band per category) beside
 * one bar per estimate, on a shared GiB axis, with the GPU's usable memory as
 * a dashed line. Plain SVG 1.1, no scripts or external fonts. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli/plan_report.h"

static const char *category_colors[PLAN_CATEGORY_COUNT] = {
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
};

#define W 860
#define H 460
#define LEFT 70
#define TOP 40
#define PLOT_H 320
#define BAR_W 70
#define GAP 40

static double gib(int64_t b) { return (double)b / (1024.0 * 1024 * 1024); }

int plan_report_svg(const char *path, const struct plan_report *r, tune_err *err)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return err_set(err, "--svg %s: cannot write: %s", path, strerror(errno));
    double top = gib(r->plan.total);
    for (int e = 0; e < ESTIMATE_COUNT && r->have_estimates; e++)
        if (gib(r->est[e].per_gpu_bytes) > top)
            top = gib(r->est[e].per_gpu_bytes);
    if (r->gpu && gib(r->usable) > top)
        top = gib(r->usable);
    top = top > 0 ? top * 1.08 : 1;
    double scale = PLOT_H / top;
    int base_y = TOP + PLOT_H;

    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "font-family=\"sans-serif\" font-size=\"11\">\n", W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"%d\" y=\"22\" font-size=\"14\">%s: %s per-GPU memory (GiB)</text>\n", LEFT,
            r->spec.name, run_method_name(r->rc.method));
    for (int i = 0; i <= 5; i++) { /* axis ticks */
        double v = top * i / 5;
        int y = base_y - (int)(v * scale);
        fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#ddd\"/>\n", LEFT, y, W - 20, y);
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.1f</text>\n", LEFT - 6, y + 4, v);
    }
    int x = LEFT + GAP;
    double y = base_y;
    for (int c = 0; c < PLAN_CATEGORY_COUNT; c++) {
        double h = gib(r->plan.per_gpu[c]) * scale;
        if (h <= 0)
            continue;
        y -= h;
        fprintf(f, "<rect x=\"%d\" y=\"%.1f\" width=\"%d\" height=\"%.1f\" fill=\"%s\"><title>%s %.2f GiB</title></rect>\n",
                x, y, BAR_W, h, category_colors[c], plan_category_name((enum plan_category)c), gib(r->plan.per_gpu[c]));
    }
    fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"middle\">%.1f</text>\n", x + BAR_W / 2, y - 4, gib(r->plan.total));
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">tune plan</text>\n", x + BAR_W / 2, base_y + 16);
    for (int e = 0; e < ESTIMATE_COUNT && r->have_estimates; e++) {
        x += BAR_W + GAP / 2;
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", x + BAR_W / 2,
                base_y + 16 + (e % 2) * 13, r->est[e].name);
        if (r->est[e].per_gpu_bytes < 0) {
            fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">n/a</text>\n", x + BAR_W / 2, base_y - 4);
            continue;
        }
        double h = gib(r->est[e].per_gpu_bytes) * scale;
        fprintf(f, "<rect x=\"%d\" y=\"%.1f\" width=\"%d\" height=\"%.1f\" fill=\"#9aa5b1\"/>\n", x, base_y - h, BAR_W, h);
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"middle\">%.1f</text>\n", x + BAR_W / 2, base_y - h - 4,
                gib(r->est[e].per_gpu_bytes));
    }
    if (r->gpu) {
        int uy = base_y - (int)(gib(r->usable) * scale);
        fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#c00\" stroke-dasharray=\"6,4\"/>\n",
                LEFT, uy, W - 20, uy);
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\" fill=\"#c00\">%s usable %.1f GiB</text>\n", W - 22,
                uy - 4, r->gpu->name, gib(r->usable));
    }
    for (int c = 0; c < PLAN_CATEGORY_COUNT; c++) { /* legend */
        int lx = LEFT + c * 108, ly = H - 28;
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" fill=\"%s\"/>", lx, ly, category_colors[c]);
        fprintf(f, "<text x=\"%d\" y=\"%d\">%s</text>\n", lx + 14, ly + 9, plan_category_name((enum plan_category)c));
    }
    fprintf(f, "</svg>\n");
    if (fclose(f) != 0)
        return err_set(err, "--svg %s: write failed: %s", path, strerror(errno));
    return 0;
}
