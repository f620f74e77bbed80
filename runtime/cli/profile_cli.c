/* bench --profile FILE.json: every layer's forward seconds per sample on this machine at the batch
 * and threads given and the part of a call that does not grow with its samples
 * (pnetrt_profile_layers), the barrier between kernels, a hand-off, and the machine, and for a
 * network that trains, a few training steps' forward, backward and update per stage and each
 * layer's forward and backward in them (pnetrt_profile_training), as the JSON that pnetc
 * --profile reads (docs/schedules.md, "Measured costs"). */
#include "profile_cli.h"
#include "model.h"
#include "options.h"
#include "pnet.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The CPU's name from /proc/cpuinfo, or "unknown". */
static void cpu_name(char *buf, size_t n) {
    snprintf(buf, n, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) != 0 || !colon) continue;
        colon++;
        while (*colon == ' ' || *colon == '\t') colon++;
        snprintf(buf, n, "%s", colon);
        buf[strcspn(buf, "\r\n")] = 0;
        break;
    }
    fclose(f);
}

/* s as a JSON string. */
static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; s && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
        else fputc(ch, f);
    }
    fputc('"', f);
}

/* The training part of the profile, for a network that trains: a few steps on the bench's inputs
 * and random labels or targets, on a thread per stage where the steps can run pipelined. Writes
 * the "training" member into f; 0, or 1 after printing the error. */
static int profile_training(pnetrt_model *m, int64_t batch, const void *const *inputs, FILE *f, pnetrt_train_profile *tp) {
    const pnetrt_desc *d = pnetrt_model_desc(m);
    const pnetrt_train_desc *td = d->train;
    int64_t nin = d->ninputs + td->ntrain_inputs;
    const void **in = calloc((size_t)nin + 1, sizeof *in);
    void **bufs = calloc((size_t)td->ntrain_inputs + 1, sizeof *bufs);
    int rc = !in || !bufs ? pnetrt_die("out of memory for the training profile's inputs") : 0;
    uint64_t r = 4242;
    for (int64_t i = 0; i < d->ninputs && !rc; i++) in[i] = inputs[i];
    for (int64_t k = 0; k < td->ntrain_inputs && !rc; k++) {
        const pnetrt_tensor_desc *t = &td->train_inputs[k];
        int64_t n = pnetrt_sample_elems(t) * (t->shape[0] < 0 ? batch : 1);
        if (!(bufs[k] = malloc((size_t)n * 4 + 4))) {
            rc = pnetrt_die("cannot allocate %lld elements for '%s'", (long long)n, t->name);
            break;
        }
        for (int64_t j = 0; j < n; j++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            if (t->dtype) ((int32_t *)bufs[k])[j] = (int32_t)((r >> 33) % (uint64_t)(td->classes > 0 ? td->classes : 1));
            else ((float *)bufs[k])[j] = (float)((double)(r >> 40) / 16777216.0);
        }
        in[d->ninputs + k] = bufs[k];
    }
    /* A pipelined step needs a thread per stage. */
    if (!rc && td->nstages > 1 && pnetrt_threads(m) < (int)td->nstages && pnetrt_set_threads(m, (int)td->nstages))
        rc = pnetrt_die("%s", pnetrt_last_error(m));
    if (!rc && pnetrt_profile_training(m, batch, in, 0.5, tp)) rc = pnetrt_die("%s", pnetrt_last_error(m));
    if (!rc) {
        fprintf(f, ",\n  \"training\": {\"threads\": %d, \"batch\": %lld, \"steps\": %lld, \"pipelined\": %s, "
                   "\"step_s\": %.6g, \"update_s\": %.6g, \"stages\": [",
                tp->threads, (long long)batch, (long long)tp->steps, tp->pipelined ? "true" : "false", tp->step_s,
                tp->update_s);
        for (int s = 0; tp->pipelined && s < tp->nstages; s++)
            fprintf(f, "%s\n    {\"stage\": %d, \"forward_s\": %.6g, \"backward_s\": %.6g}", s ? "," : "", s,
                    tp->forward_s[s], tp->backward_s[s]);
        fprintf(f, "%s],\n  \"layers\": [", tp->pipelined ? "\n  " : "");
        /* Every layer that the steps run a kernel for, forward or backward. */
        bool any = false;
        for (int64_t k = 0; k < d->nlayers; k++) {
            if (tp->layer_forward_s[k] <= 0 && tp->layer_backward_s[k] <= 0) continue;
            fprintf(f, "%s\n    {\"name\": ", any ? "," : "");
            json_str(f, d->layers[k].name);
            fprintf(f, ", \"stage\": %lld, \"forward_s\": %.6g, \"backward_s\": %.6g}", (long long)d->layers[k].stage,
                    tp->layer_forward_s[k], tp->layer_backward_s[k]);
            any = true;
        }
        fprintf(f, "%s]}", any ? "\n  " : "");
    }
    for (int64_t k = 0; bufs && k < td->ntrain_inputs; k++) free(bufs[k]);
    free(bufs);
    free(in);
    return rc;
}

int pnetrt_bench_profile(pnetrt_model *m, int64_t batch, const void *const *inputs, void *const *outputs, const char *path) {
    const pnetrt_desc *d = pnetrt_model_desc(m);
    size_t nl = (size_t)d->nlayers + 1;
    double *sec = calloc((4 + PNETRT_PROFILE_SPREAD) * nl + PNETRT_PROFILE_SPREAD * ((size_t)d->nstages + 1), sizeof *sec);
    pnetrt_layer_profile lp = {.micro = sec ? sec + 2 * nl : NULL,
                               .spread = sec ? sec + 4 * nl : NULL,
                               .stage_spread = sec ? sec + (4 + PNETRT_PROFILE_SPREAD) * nl : NULL};
    if (!sec) return pnetrt_die("out of memory for a profile of %lld layers", (long long)d->nlayers);
    double *call = sec + d->nlayers + 1;
    if (pnetrt_profile_layers(m, batch, inputs, outputs, sec, call, &lp)) {
        free(sec);
        return pnetrt_die("%s", pnetrt_last_error(m));
    }
    FILE *f = fopen(path, "w");
    if (!f) {
        free(sec);
        return pnetrt_die("%s: cannot write the profile: %s", path, strerror(errno));
    }
    char cpu[256];
    cpu_name(cpu, sizeof cpu);
    double total = 0;
    for (int64_t k = 0; k < d->nlayers; k++) total += sec[k];
    fprintf(f, "{\n  \"pnet_profile\": 1,\n  \"network\": ");
    json_str(f, d->name);
    fprintf(f, ",\n  \"machine\": {\"cpu\": ");
    json_str(f, cpu);
    fprintf(f, ", \"cpus\": %ld, \"llc_bytes\": %lld, \"target\": ", sysconf(_SC_NPROCESSORS_ONLN), (long long)lp.llc_bytes);
    json_str(f, d->target);
    fprintf(f, "},\n  \"batch\": %lld,\n  \"samples\": %lld,\n  \"small_samples\": %lld,\n", (long long)batch,
            (long long)lp.samples, (long long)lp.small);
    if (lp.micro_samples[0] > 0)
        fprintf(f, "  \"micro_samples\": [%lld, %lld],\n", (long long)lp.micro_samples[0],
                (long long)lp.micro_samples[1]);
    bool stages = d->nstages > 1;
    for (int64_t s = 0; s < d->nstages; s++) stages &= lp.stage_spread[s * PNETRT_PROFILE_SPREAD] > 0;
    for (int64_t s = 0; stages && s < d->nstages; s++)
        for (int g = 0; g < PNETRT_PROFILE_SPREAD; g++)
            fprintf(f, "%s%.4g%s", g ? ", " : s ? ",\n    [" : "  \"stage_spread\": [\n    [",
                    lp.stage_spread[s * PNETRT_PROFILE_SPREAD + g],
                    g + 1 < PNETRT_PROFILE_SPREAD ? "" : s + 1 < d->nstages ? "]" : "]\n  ],\n");
    fprintf(f, "  \"cold_calls\": %s,\n"
               "  \"threads\": %d,\n  \"barrier_s\": %.6g,\n  \"handoff_s\": %.6g,\n  \"xfer_byte_s\": %.6g,\n"
               "  \"forward_s\": %.6g,\n  \"layers\": [\n",
            lp.cold ? "true" : "false", pnetrt_threads(m),
            lp.barrier_s, lp.handoff_s, lp.xfer_byte_s, total);
    for (int64_t k = 0; k < d->nlayers; k++) {
        const pnetrt_layer_desc *l = &d->layers[k];
        fprintf(f, "    {\"name\": ");
        json_str(f, l->name);
        fprintf(f, ", \"op\": ");
        json_str(f, l->op);
        fprintf(f, ", \"type\": ");
        json_str(f, l->type);
        fprintf(f, ", \"inputs\": ");
        json_str(f, l->inputs);
        fprintf(f,
                ", \"flops\": %lld, \"params\": %lld, \"stage\": %lld, \"kernel\": %s, \"forward_s\": %.6g, "
                "\"call_s\": %.6g",
                (long long)l->flops, (long long)l->params, (long long)l->stage, d->layer_forward[k] ? "true" : "false", sec[k],
                call[k]);
        if (lp.micro_samples[0] > 0 && d->layer_forward[k])
            fprintf(f, ", \"micro_s\": [%.6g, %.6g]", lp.micro[2 * k], lp.micro[2 * k + 1]);
        const double *spread = lp.spread + (size_t)k * PNETRT_PROFILE_SPREAD;
        for (int g = 0; spread[0] > 0 && g < PNETRT_PROFILE_SPREAD; g++)
            fprintf(f, "%s%.4g%s", g ? ", " : ", \"spread\": [", spread[g], g + 1 < PNETRT_PROFILE_SPREAD ? "" : "]");
        fprintf(f, "}%s\n", k + 1 < d->nlayers ? "," : "");
    }
    fprintf(f, "  ]");
    free(sec);
    double *lt = d->train ? calloc(2 * ((size_t)d->nlayers + 1), sizeof *lt) : NULL;
    pnetrt_train_profile tp = {.layer_forward_s = lt, .layer_backward_s = lt ? lt + d->nlayers + 1 : NULL};
    int threads = pnetrt_threads(m); /* the layers'; training may take a thread per stage */
    if (d->train && (!lt ? pnetrt_die("out of memory for a profile of %lld layers", (long long)d->nlayers)
                         : profile_training(m, batch, inputs, f, &tp))) {
        free(lt);
        fclose(f);
        return 1;
    }
    free(lt);
    fprintf(f, "\n}\n");
    if (fclose(f) != 0) return pnetrt_die("%s: cannot write the profile: %s", path, strerror(errno));
    printf("profile: %lld layers of %s, %.3g us per sample in all at %lld samples per call on %d thread%s, barrier "
           "%.3g us, hand-off %.3g us%s; written to %s\n",
           (long long)d->nlayers, d->name, total * 1e6, (long long)lp.samples, threads, threads == 1 ? "" : "s",
           lp.barrier_s * 1e6, lp.handoff_s * 1e6,
           lp.cold ? " (the parameters outgrow the last-level cache: calls timed cold too)" : "", path);
    if (d->train && tp.pipelined) {
        printf("profile: training on %d threads, %lld steps:", tp.threads, (long long)tp.steps);
        for (int s = 0; s < tp.nstages; s++)
            printf("%s stage %d forward %.3g + backward %.3g us", s ? "," : "", s, tp.forward_s[s] * 1e6, tp.backward_s[s] * 1e6);
        printf(" per sample, update %.3g us per sample\n", tp.update_s * 1e6);
    } else if (d->train) {
        printf("profile: training on %d thread%s, %lld steps: forward and backward %.3g us, update %.3g us per sample\n",
               tp.threads, tp.threads == 1 ? "" : "s", (long long)tp.steps, tp.step_s * 1e6, tp.update_s * 1e6);
    }
    return 0;
}
