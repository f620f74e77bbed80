/* pnetc --profile FILE.json: reads what `./net bench --profile` wrote (runtime/cli/profile_cli.c):
 * per layer its forward seconds per sample, and the machine. Unknown keys are ignored, so later
 * fields do no harm. */
#include "report.h"
#include "../support/util.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static bool bad(char *err, size_t errlen, const char *what) {
    snprintf(err, errlen, "not a bench --profile file: %s", what);
    return false;
}

/* A number member of o that is finite and at least lo, into *v; absent: *v stays. */
static bool number(const cJSON *o, const char *key, double lo, double *v, char *err, size_t errlen) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!x) return true;
    if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble) || x->valuedouble < lo) {
        char what[96];
        if (isinf(lo)) snprintf(what, sizeof what, "\"%s\" is not a number", key);
        else snprintf(what, sizeof what, "\"%s\" is not a number of at least %g", key, lo);
        return bad(err, errlen, what);
    }
    *v = x->valuedouble;
    return true;
}

/* "training": {"threads", "batch", "step_s", "update_s", "stages": [{"forward_s", "backward_s"}...],
 * "layers": [{"name", "stage", "forward_s", "backward_s"}...]} */
static bool read_training(const cJSON *tr, pn_profile *p, char *err, size_t errlen) {
    double threads = 1, batch = 0;
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(tr, "stages");
    if (!cJSON_IsObject(tr) || (st && !cJSON_IsArray(st))) return bad(err, errlen, "\"training\" is not an object with a \"stages\" array");
    if (!number(tr, "threads", 1, &threads, err, errlen) || !number(tr, "batch", 0, &batch, err, errlen) ||
        !number(tr, "step_s", 0, &p->train_step_s, err, errlen) || !number(tr, "update_s", 0, &p->train_update_s, err, errlen))
        return false;
    p->has_training = true;
    p->train_threads = threads < 1e6 ? (int)threads : 1000000;
    p->train_batch = (long long)batch;
    int n = st ? cJSON_GetArraySize(st) : 0;
    p->train_forward_s = pn_xcalloc((size_t)n + 1, sizeof *p->train_forward_s);
    p->train_backward_s = pn_xcalloc((size_t)n + 1, sizeof *p->train_backward_s);
    const cJSON *s;
    int k = 0;
    cJSON_ArrayForEach(s, st) {
        if (!cJSON_IsObject(s) || !number(s, "forward_s", 0, &p->train_forward_s[k], err, errlen) ||
            !number(s, "backward_s", 0, &p->train_backward_s[k], err, errlen))
            return cJSON_IsObject(s) ? false : bad(err, errlen, "a training stage is not an object");
        k++;
    }
    p->train_nstages = n;
    /* "layers": [{"name", "forward_s", "backward_s"}...]: each layer's part of the steps (its
     * "stage" is the profiled network's, which the report does not need: it sums by its own). */
    const cJSON *tl = cJSON_GetObjectItemCaseSensitive(tr, "layers"), *l;
    if (tl && !cJSON_IsArray(tl)) return bad(err, errlen, "\"training\" has a \"layers\" that is not an array");
    p->train_layers = tl != NULL;
    p->train_layer_fwd = pn_xcalloc((size_t)p->nlayers + 1, sizeof *p->train_layer_fwd);
    p->train_layer_bwd = pn_xcalloc((size_t)p->nlayers + 1, sizeof *p->train_layer_bwd);
    cJSON_ArrayForEach(l, tl) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(l, "name");
        if (!cJSON_IsObject(l) || !cJSON_IsString(name)) return bad(err, errlen, "a training layer without \"name\"");
        int at = -1;
        for (int k = 0; k < p->nlayers && at < 0; k++)
            if (strcmp(p->names[k], name->valuestring) == 0) at = k;
        if (at < 0) {
            char what[160];
            snprintf(what, sizeof what, "training layer '%.100s' is not among the layers", name->valuestring);
            return bad(err, errlen, what);
        }
        if (!number(l, "forward_s", 0, &p->train_layer_fwd[at], err, errlen) ||
            !number(l, "backward_s", 0, &p->train_layer_bwd[at], err, errlen))
            return false;
    }
    return true;
}

/* A spread: an array of PN_PROFILE_SPREAD positive numbers, into row; false when it is not one. */
static bool read_spread(const cJSON *a, double *row) {
    _Static_assert(PN_PROFILE_SPREAD == 32, "the messages name the spread's length");
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != PN_PROFILE_SPREAD) return false;
    int g = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, a) {
        if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble) || x->valuedouble <= 0 || x->valuedouble > 1e6) return false;
        row[g++] = x->valuedouble;
    }
    return true;
}

static bool read_profile(const cJSON *root, pn_profile *p, char *err, size_t errlen) {
    if (!cJSON_IsObject(root)) return bad(err, errlen, "not a JSON object");
    double version = 0, threads = 1, batch = 0, samples = 0, small = 0, barrier = 0, handoff = 0, xfer = -1;
    const cJSON *net = cJSON_GetObjectItemCaseSensitive(root, "network");
    const cJSON *ls = cJSON_GetObjectItemCaseSensitive(root, "layers");
    if (!cJSON_GetObjectItemCaseSensitive(root, "pnet_profile") || !cJSON_IsString(net) || !cJSON_IsArray(ls))
        return bad(err, errlen, "no \"pnet_profile\", \"network\" or \"layers\"");
    if (!number(root, "pnet_profile", 1, &version, err, errlen)) return false;
    if (version != 1) return bad(err, errlen, "a newer format (\"pnet_profile\" is not 1)");
    if (!number(root, "threads", 1, &threads, err, errlen) || !number(root, "batch", 0, &batch, err, errlen) ||
        !number(root, "samples", 0, &samples, err, errlen) || !number(root, "small_samples", 0, &small, err, errlen) ||
        !number(root, "barrier_s", 0, &barrier, err, errlen) ||
        !number(root, "handoff_s", 0, &handoff, err, errlen) || !number(root, "xfer_byte_s", 0, &xfer, err, errlen))
        return false;
    p->network = pn_xstrdup(net->valuestring);
    const cJSON *machine = cJSON_GetObjectItemCaseSensitive(root, "machine");
    const cJSON *cpu = machine ? cJSON_GetObjectItemCaseSensitive(machine, "cpu") : NULL;
    p->cpu = pn_xstrdup(cJSON_IsString(cpu) ? cpu->valuestring : "unknown CPU");
    const cJSON *cpus = machine ? cJSON_GetObjectItemCaseSensitive(machine, "cpus") : NULL;
    p->cpus = cJSON_IsNumber(cpus) && cpus->valuedouble >= 1 && cpus->valuedouble < 1e6 ? (int)cpus->valuedouble : 0;
    p->threads = threads < 1e6 ? (int)threads : 1000000;
    p->batch = (long long)batch;
    p->small = small < 1e12 ? (long long)small : 0;
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(root, "micro_samples");
    if (ms) {
        const cJSON *a = cJSON_IsArray(ms) && cJSON_GetArraySize(ms) == 2 ? cJSON_GetArrayItem(ms, 0) : NULL;
        const cJSON *b = a ? cJSON_GetArrayItem(ms, 1) : NULL;
        if (!cJSON_IsNumber(a) || !cJSON_IsNumber(b) || !(a->valuedouble >= 1) || !(b->valuedouble > a->valuedouble) ||
            b->valuedouble > 1e12 || a->valuedouble != floor(a->valuedouble) || b->valuedouble != floor(b->valuedouble))
            return bad(err, errlen,
                       "\"micro_samples\" is not two whole numbers of samples, the first at least 1, the second more");
        p->micro_samples[0] = (long long)a->valuedouble;
        p->micro_samples[1] = (long long)b->valuedouble;
    }
    p->samples = samples >= 1 ? (long long)samples : batch >= 1 ? (long long)batch : PN_COST_BATCH;
    p->barrier_s = barrier;
    p->handoff_s = handoff;
    p->xfer_byte_s = xfer;
    int n = cJSON_GetArraySize(ls);
    p->names = pn_xcalloc((size_t)n + 1, sizeof *p->names);
    p->forward_s = pn_xcalloc((size_t)n + 1, sizeof *p->forward_s);
    p->call_s = pn_xcalloc((size_t)n + 1, sizeof *p->call_s);
    p->kernel = pn_xcalloc((size_t)n + 1, sizeof *p->kernel);
    p->spread = pn_xcalloc(((size_t)n + 1) * PN_PROFILE_SPREAD, sizeof *p->spread);
    p->micro = pn_xcalloc(((size_t)n + 1) * 2, sizeof *p->micro);
    p->stage = pn_xcalloc((size_t)n + 1, sizeof *p->stage);
    const cJSON *ss = cJSON_GetObjectItemCaseSensitive(root, "stage_spread");
    if (ss) {
        const char *what = "\"stage_spread\" is not an array of arrays of 32 positive numbers";
        if (!cJSON_IsArray(ss) || cJSON_GetArraySize(ss) > 1 << 20) return bad(err, errlen, what);
        int S = cJSON_GetArraySize(ss);
        p->stage_spread = pn_xcalloc(((size_t)S + 1) * PN_PROFILE_SPREAD, sizeof *p->stage_spread);
        const cJSON *row;
        cJSON_ArrayForEach(row, ss) {
            if (!read_spread(row, p->stage_spread + (size_t)p->stage_spreads * PN_PROFILE_SPREAD))
                return bad(err, errlen, what);
            p->stage_spreads++;
        }
    }
    const cJSON *l;
    cJSON_ArrayForEach(l, ls) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(l, "name");
        const cJSON *kernel = cJSON_GetObjectItemCaseSensitive(l, "kernel");
        double t = -1, c = 0;
        if (!cJSON_IsObject(l) || !cJSON_IsString(name) || !cJSON_GetObjectItemCaseSensitive(l, "forward_s"))
            return bad(err, errlen, "a layer without \"name\" and \"forward_s\"");
        if (!number(l, "forward_s", 0, &t, err, errlen) || !number(l, "call_s", -HUGE_VAL, &c, err, errlen))
            return false;
        /* Below zero where a sample costs more in a large call than in a small one; a call of one
         * sample never costs less than nothing. */
        if (c < 0 && t + c * (1 - 1 / (samples > 1 ? samples : 1)) < -1e-5 * t)
            return bad(err, errlen, "\"call_s\" is below what a call of one sample allows");
        p->forward_s[p->nlayers] = t;
        p->call_s[p->nlayers] = c;
        p->kernel[p->nlayers] = !cJSON_IsFalse(kernel);
        const cJSON *micro = cJSON_GetObjectItemCaseSensitive(l, "micro_s");
        if (micro) {
            double *row = p->micro + (size_t)p->nlayers * 2;
            const char *what = "\"micro_s\" is not two numbers of at least 0 beside \"micro_samples\"";
            if (!p->micro_samples[0] || !cJSON_IsArray(micro) || cJSON_GetArraySize(micro) != 2)
                return bad(err, errlen, what);
            for (int i = 0; i < 2; i++) {
                const cJSON *x = cJSON_GetArrayItem(micro, i);
                if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble) || x->valuedouble < 0)
                    return bad(err, errlen, what);
                row[i] = x->valuedouble;
            }
        }
        const cJSON *spread = cJSON_GetObjectItemCaseSensitive(l, "spread");
        if (spread && !read_spread(spread, p->spread + (size_t)p->nlayers * PN_PROFILE_SPREAD))
            return bad(err, errlen, "\"spread\" is not an array of 32 positive numbers");
        double stage = -1;
        if (!number(l, "stage", 0, &stage, err, errlen)) return false;
        p->stage[p->nlayers] = stage < 1e6 ? (int)stage : -1;
        p->names[p->nlayers++] = pn_xstrdup(name->valuestring); /* last: an error above frees none */
    }
    const cJSON *tr = cJSON_GetObjectItemCaseSensitive(root, "training");
    if (tr) return read_training(tr, p, err, errlen);
    return true;
}

void pn_profile_free(pn_profile *p) {
    if (!p) return;
    for (int k = 0; k < p->nlayers; k++) free(p->names[k]);
    free(p->names);
    free(p->forward_s);
    free(p->call_s);
    free(p->train_forward_s);
    free(p->train_backward_s);
    free(p->train_layer_fwd);
    free(p->train_layer_bwd);
    free(p->kernel);
    free(p->spread);
    free(p->micro);
    free(p->stage);
    free(p->stage_spread);
    free(p->path);
    free(p->network);
    free(p->cpu);
    free(p);
}

pn_profile *pn_profile_load(const char *path, char *err, size_t errlen) {
    size_t len;
    char why[256];
    char *text = pn_read_file(path, PN_MAX_FILE, &len, why, sizeof why);
    if (!text) {
        snprintf(err, errlen, "cannot read the profile: %s", why);
        return NULL;
    }
    pn_profile *p = pn_xcalloc(1, sizeof *p);
    p->path = pn_xstrdup(path);
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    bool ok = root ? read_profile(root, p, err, errlen) : bad(err, errlen, "not valid JSON");
    cJSON_Delete(root);
    if (!ok) {
        pn_profile_free(p);
        return NULL;
    }
    return p;
}

bool pn_profile_matches(const pn_profile *p, const pn_graph *g, char *err, size_t errlen) {
    if (strcmp(p->network, g->name) != 0) {
        snprintf(err, errlen, "the profile is of network '%s', not '%s'", p->network, g->name);
        return false;
    }
    int found = 0, kernels = 0;
    for (int i = 0; i < g->nnodes; i++) {
        const pn_node *n = &g->nodes[i];
        if ((n->flags & PN_NODE_TRAIN) || pn_node_cost_kind(n) < 0) continue;
        kernels++;
        for (int k = 0; k < p->nlayers; k++)
            if (strcmp(p->names[k], n->name) == 0) {
                found++;
                break;
            }
    }
    if (kernels > 0 && found == 0) {
        snprintf(err, errlen, "the profile names none of network '%s''s layers", g->name);
        return false;
    }
    return true;
}
