/* bench --profile FILE.json: every layer's forward seconds per sample on this machine at the batch
 * and threads given and the part of a call that does not grow with its samples
 * (pnetrt_profile_layers), the barrier between kernels, a hand-off, and the machine, as the
 * JSON that pnetc --profile reads (docs/schedules.md, "Measured costs"). */
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

int pnetrt_bench_profile(pnetrt_model *m, int64_t batch, const void *const *inputs, void *const *outputs, const char *path) {
    const pnetrt_desc *d = pnetrt_model_desc(m);
    double *sec = calloc(2 * ((size_t)d->nlayers + 1), sizeof *sec), barrier = 0, handoff = 0;
    int64_t samples = 0;
    if (!sec) return pnetrt_die("out of memory for a profile of %lld layers", (long long)d->nlayers);
    double *call = sec + d->nlayers + 1;
    if (pnetrt_profile_layers(m, batch, inputs, outputs, sec, call, &barrier, &handoff, &samples)) {
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
    fprintf(f, ", \"cpus\": %ld, \"target\": ", sysconf(_SC_NPROCESSORS_ONLN));
    json_str(f, d->target);
    fprintf(f, "},\n  \"batch\": %lld,\n  \"samples\": %lld,\n  \"threads\": %d,\n  \"barrier_s\": %.6g,\n"
               "  \"handoff_s\": %.6g,\n  \"forward_s\": %.6g,\n  \"layers\": [\n",
            (long long)batch, (long long)samples, pnetrt_threads(m), barrier, handoff, total);
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
        fprintf(f, ", \"flops\": %lld, \"params\": %lld, \"stage\": %lld, \"kernel\": %s, \"forward_s\": %.6g, \"call_s\": %.6g}%s\n",
                (long long)l->flops, (long long)l->params, (long long)l->stage, d->layer_forward[k] ? "true" : "false", sec[k],
                call[k], k + 1 < d->nlayers ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    free(sec);
    if (fclose(f) != 0) return pnetrt_die("%s: cannot write the profile: %s", path, strerror(errno));
    printf("profile: %lld layers of %s, %.3g us per sample in all at %lld samples per call on %d thread%s, barrier "
           "%.3g us, hand-off %.3g us; written to %s\n",
           (long long)d->nlayers, d->name, total * 1e6, (long long)samples, pnetrt_threads(m),
           pnetrt_threads(m) == 1 ? "" : "s", barrier * 1e6, handoff * 1e6, path);
    return 0;
}
