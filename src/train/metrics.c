/* See metrics.h. The JSONL rows are written with fixed formats (%.17g for
 * values a resumed run must reproduce bit for bit) and flushed per step, so
 * a killed run leaves every finished step on disk. */
#include "train/metrics.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "io/atomic_file.h"

int metrics_open(FILE **out, const char *dir, int64_t keep_through, tune_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *old = fopen(path, "r");
    char *kept = NULL;
    size_t kept_len = 0;
    if (old) { /* keep the rows of steps <= keep_through */
        FILE *mem = open_memstream(&kept, &kept_len);
        char line[1024];
        while (mem && fgets(line, sizeof line, old)) {
            const char *s = strstr(line, "\"step\":");
            if (s && keep_through > 0 && atoll(s + 7) <= keep_through)
                fputs(line, mem);
        }
        fclose(old);
        if (mem)
            fclose(mem);
    }
    *out = fopen(path, "w");
    if (!*out) {
        free(kept);
        return err_set(err, "%s: cannot write: %s", path, strerror(errno));
    }
    if (kept)
        fwrite(kept, 1, kept_len, *out);
    free(kept);
    fflush(*out);
    return 0;
}

void metrics_write_step(FILE *f, const struct step_metrics *m)
{
    /* JSON has no NaN: a skipped step's loss and norm are null. */
    char loss[32] = "null", norm[32] = "null";
    if (isfinite(m->loss) && isfinite(m->grad_norm)) {
        snprintf(loss, sizeof loss, "%.17g", m->loss);
        snprintf(norm, sizeof norm, "%.17g", m->grad_norm);
    }
    fprintf(f, "{\"step\":%lld,\"epoch\":%.4f,\"loss\":%s,\"lr\":%.17g,\"grad_norm\":%s,\"tokens\":%lld,"
               "\"tokens_per_s\":%.1f%s}\n",
            (long long)m->step, m->epoch, loss, m->lr, norm, (long long)m->tokens,
            m->seconds > 0 ? (double)m->tokens / m->seconds : 0.0, *loss == 'n' ? ",\"skipped\":true" : "");
    fflush(f);
}

void metrics_write_eval(FILE *f, int64_t step, double eval_loss)
{
    if (isfinite(eval_loss))
        fprintf(f, "{\"step\":%lld,\"eval_loss\":%.17g}\n", (long long)step, eval_loss);
    else
        fprintf(f, "{\"step\":%lld,\"eval_loss\":null}\n", (long long)step);
    fflush(f);
}

/* Polyline points of one series into buf. */
static void series(char *buf, size_t len, const double *x, const double *y, int n, double xmax, double ymin,
                   double ymax)
{
    size_t at = 0;
    buf[0] = 0; /* an empty series (every loss skipped) is an empty string */
    for (int i = 0; i < n && at + 32 < len; i++)
        at += (size_t)snprintf(buf + at, len - at, "%.1f,%.1f ", 60 + 560 * (x[i] / (xmax > 0 ? xmax : 1)),
                               30 + 300 * (1 - (y[i] - ymin) / (ymax > ymin ? ymax - ymin : 1)));
}

int metrics_plot(const char *dir, tune_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return err_set(err, "%s: cannot read: %s", path, strerror(errno));
    enum { MAX = 20000 };
    double *sx = malloc(sizeof(double) * MAX * 4), *sy = sx + MAX, *ex = sx + 2 * MAX, *ey = sx + 3 * MAX;
    if (!sx) {
        fclose(f);
        return err_set(err, "out of memory");
    }
    int ns = 0, ne = 0;
    double ymin = INFINITY, ymax = -INFINITY, xmax = 0;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        cJSON *o = cJSON_Parse(line);
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "step");
        const cJSON *lo = cJSON_GetObjectItemCaseSensitive(o, "loss"), *ev = cJSON_GetObjectItemCaseSensitive(o, "eval_loss");
        if (cJSON_IsNumber(st) && cJSON_IsNumber(lo) && isfinite(lo->valuedouble) && ns < MAX) {
            sx[ns] = st->valuedouble;
            sy[ns++] = lo->valuedouble;
        }
        if (cJSON_IsNumber(st) && cJSON_IsNumber(ev) && isfinite(ev->valuedouble) && ne < MAX) {
            ex[ne] = st->valuedouble;
            ey[ne++] = ev->valuedouble;
        }
        cJSON_Delete(o);
    }
    fclose(f);
    for (int i = 0; i < ns; i++) {
        ymin = fmin(ymin, sy[i]), ymax = fmax(ymax, sy[i]), xmax = fmax(xmax, sx[i]);
    }
    for (int i = 0; i < ne; i++) {
        ymin = fmin(ymin, ey[i]), ymax = fmax(ymax, ey[i]), xmax = fmax(xmax, ex[i]);
    }
    size_t cap = (size_t)(ns + ne) * 32 + 4096;
    char *train = malloc(cap), *evals = malloc(cap), *svg = malloc(2 * cap + 4096);
    int rc = 0;
    if (!train || !evals || !svg) {
        rc = err_set(err, "out of memory");
    } else {
        series(train, cap, sx, sy, ns, xmax, ymin, ymax);
        series(evals, cap, ex, ey, ne, xmax, ymin, ymax);
        int n = snprintf(svg, 2 * cap + 4096,
                         "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"660\" height=\"380\" font-family=\"sans-serif\" font-size=\"11\">\n"
                         "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
                         "<text x=\"60\" y=\"18\" font-size=\"13\">loss by optimizer step</text>\n"
                         "<line x1=\"60\" y1=\"330\" x2=\"620\" y2=\"330\" stroke=\"#999\"/>\n"
                         "<line x1=\"60\" y1=\"30\" x2=\"60\" y2=\"330\" stroke=\"#999\"/>\n"
                         "<text x=\"55\" y=\"34\" text-anchor=\"end\">%.3g</text><text x=\"55\" y=\"330\" text-anchor=\"end\">%.3g</text>\n"
                         "<text x=\"620\" y=\"346\" text-anchor=\"end\">step %.0f</text>\n"
                         "<polyline fill=\"none\" stroke=\"#4e79a7\" stroke-width=\"1.5\" points=\"%s\"/>\n"
                         "<polyline fill=\"none\" stroke=\"#e15759\" stroke-width=\"2\" points=\"%s\"/>\n"
                         "<text x=\"480\" y=\"366\" fill=\"#4e79a7\">train</text><text x=\"540\" y=\"366\" fill=\"#e15759\">eval</text>\n"
                         "</svg>\n",
                         ns + ne ? ymax : 0.0, ns + ne ? ymin : 0.0, xmax, train, evals);
        snprintf(path, sizeof path, "%s/loss.svg", dir);
        rc = atomic_file_save(path, svg, (size_t)n, err);
    }
    free(train);
    free(evals);
    free(svg);
    free(sx);
    return rc;
}

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void progress_init(struct progress *p, int64_t total_steps, int64_t start_step)
{
    *p = (struct progress){total_steps, start_step, isatty(STDERR_FILENO) == 1, wall(), 0};
}

void progress_update(struct progress *p, const struct step_metrics *m, int64_t every)
{
    p->tokens += (double)m->tokens;
    double elapsed = wall() - p->t0;
    double rate = elapsed > 0 ? p->tokens / elapsed : 0;
    double eta = m->step > p->start ? elapsed / (double)(m->step - p->start) * (double)(p->total - m->step) : 0;
    if (p->tty) {
        int width = 24, fill = (int)(width * m->step / (p->total ? p->total : 1));
        char bar[32];
        for (int i = 0; i < width; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[width] = 0;
        fprintf(stderr, "\r[%s] step %lld/%lld  loss %.4f  lr %.3g  %.0f tok/s  ETA %02d:%02d:%02d ", bar,
                (long long)m->step, (long long)p->total, m->loss, m->lr, rate, (int)eta / 3600, (int)eta / 60 % 60,
                (int)eta % 60);
    } else if (every <= 0 || m->step % every == 0 || m->step == p->total) {
        fprintf(stderr, "step %lld/%lld loss %.4f lr %.3g grad_norm %.3g %.0f tok/s ETA %.0fs\n", (long long)m->step,
                (long long)p->total, m->loss, m->lr, m->grad_norm, rate, eta);
    }
}

void progress_eval(struct progress *p, int64_t step, double eval_loss)
{
    fprintf(stderr, "%sstep %lld eval_loss %.4f\n", p->tty ? "\n" : "", (long long)step, eval_loss);
}

void progress_done(struct progress *p)
{
    if (p->tty)
        fputc('\n', stderr);
}
