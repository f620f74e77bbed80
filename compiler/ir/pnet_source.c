/* The graph IR as .pnet source (pnet_source.h). Each node becomes `NAME = op(ARGS);`, so that the
 * checker names it NAME again and its parameters NAME.weight, ...; a scalar constant is written in
 * place as a number, the inputs as `input` lines and the outputs as `output` lines. */
#include "pnet_source.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>

typedef struct writer {
    const pn_graph *g;
    FILE *out;
    char *err;
    size_t errlen;
    bool failed;
} writer;

static bool bad(writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool bad(writer *w, const char *fmt, ...) {
    if (w->failed) return false;
    w->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->err, w->errlen, fmt, ap);
    va_end(ap);
    return false;
}

static bool is_ident(const char *s) {
    if (!s || !(isalpha((unsigned char)*s) || *s == '_')) return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_') return false;
    return true;
}

/* A number that reads back as the same double: shortest "%.17g" form, with a '.' when it has none. */
static bool number(writer *w, double v) {
    if (!isfinite(v)) return bad(w, "the value %g cannot be written in .pnet source", v);
    char buf[64];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    fputs(buf, w->out);
    if (!strpbrk(buf, ".en")) fputs(".0", w->out);
    return true;
}

/* An operand: a scalar constant in place, else the node's name. */
static bool operand(writer *w, int i) {
    const pn_node *n = &w->g->nodes[i];
    if (n->op == PN_OP_CONST) return number(w, n->fa[PN_FA_VALUE]);
    fputs(n->name, w->out);
    return true;
}

static void pair(writer *w, const int64_t *v) {
    if (v[0] == v[1]) fprintf(w->out, "%lld", (long long)v[0]);
    else fprintf(w->out, "[%lld, %lld]", (long long)v[0], (long long)v[1]);
}

static void dims(writer *w, const pn_shape *s) {
    fputc('[', w->out);
    for (int k = 0; k < s->rank; k++) {
        if (k) fputs(", ", w->out);
        if (s->d[k] == PN_BATCH) fputs("batch", w->out);
        else fprintf(w->out, "%lld", (long long)s->d[k]);
    }
    fputc(']', w->out);
}

/* The call (or expression) that computes node i. */
static bool call(writer *w, int i) {
    const pn_node *n = &w->g->nodes[i];
    FILE *o = w->out;
    const int64_t *a = n->ia;
    if (n->op == PN_OP_ADD || n->op == PN_OP_SUB || n->op == PN_OP_MUL) {
        if (!operand(w, n->in[0])) return false;
        fputs(n->op == PN_OP_ADD ? " + " : n->op == PN_OP_SUB ? " - " : " * ", o);
        return operand(w, n->in[1]);
    }
    if (pn_ops[n->op].flags & (PN_OPF_INTERNAL | PN_OPF_LOSS))
        return bad(w, "node '%s' (%s) cannot be written as a statement", n->name, pn_ops[n->op].name);
    fprintf(o, "%s(", pn_ops[n->op].name);
    for (int k = 0; k < n->ninputs; k++) {
        if (k) fputs(", ", o);
        if (!operand(w, n->in[k])) return false;
    }
    switch (n->op) {
    case PN_OP_DENSE:
        fprintf(o, ", %lld%s", (long long)a[PN_DENSE_UNITS], a[PN_DENSE_BIAS] ? "" : ", bias = false");
        break;
    case PN_OP_CONV2D:
        fprintf(o, ", %lld, ", (long long)a[PN_CONV_OUT]);
        pair(w, a + PN_CONV_KH);
        if (a[PN_CONV_SH] != 1 || a[PN_CONV_SW] != 1) fputs(", stride = ", o), pair(w, a + PN_CONV_SH);
        if (a[PN_CONV_PH] || a[PN_CONV_PW]) fputs(", padding = ", o), pair(w, a + PN_CONV_PH);
        if (!a[PN_CONV_BIAS]) fputs(", bias = false", o);
        if (a[PN_CONV_GROUPS] != 1) fprintf(o, ", groups = %lld", (long long)a[PN_CONV_GROUPS]);
        break;
    case PN_OP_MAXPOOL2D:
    case PN_OP_AVGPOOL2D:
        fputs(", ", o);
        pair(w, a + PN_POOL_KH);
        fputs(", stride = ", o);
        pair(w, a + PN_POOL_SH);
        if (a[PN_POOL_PH] || a[PN_POOL_PW]) fputs(", padding = ", o), pair(w, a + PN_POOL_PH);
        break;
    case PN_OP_BATCHNORM:
        fputs(", eps = ", o);
        number(w, n->fa[PN_FA_VALUE]);
        fputs(", momentum = ", o);
        number(w, n->fa[PN_FA_MOMENTUM]);
        break;
    case PN_OP_LAYERNORM:
        fputs(", eps = ", o);
        number(w, n->fa[PN_FA_VALUE]);
        break;
    case PN_OP_LEAKY_RELU:
        fputs(", slope = ", o);
        number(w, n->fa[PN_FA_VALUE]);
        break;
    case PN_OP_ELU:
        fputs(", alpha = ", o);
        number(w, n->fa[PN_FA_VALUE]);
        break;
    case PN_OP_PAD:
        fprintf(o, ", [%lld, %lld, %lld, %lld]", (long long)a[PN_PAD_TOP], (long long)a[PN_PAD_BOTTOM], (long long)a[PN_PAD_LEFT],
                (long long)a[PN_PAD_RIGHT]);
        break;
    case PN_OP_DROPOUT:
        fputs(", p = ", o);
        number(w, n->fa[PN_FA_VALUE]);
        break;
    case PN_OP_EMBEDDING:
        fprintf(o, ", %lld, %lld", (long long)a[PN_EMB_VOCAB], (long long)a[PN_EMB_DIM]);
        break;
    case PN_OP_SOFTMAX:
    case PN_OP_LOG_SOFTMAX:
    case PN_OP_POSITIONS:
        fprintf(o, ", axis = %lld", (long long)a[PN_AXIS]);
        break;
    case PN_OP_CONCAT:
        fprintf(o, ", axis = %lld", (long long)a[PN_AXIS]);
        break;
    case PN_OP_SLICE:
        fprintf(o, ", %lld, %lld, %lld", (long long)a[PN_AXIS], (long long)a[PN_SLICE_START], (long long)a[PN_SLICE_END]);
        break;
    case PN_OP_RESHAPE:
        fputs(", ", o);
        dims(w, &n->shape);
        break;
    case PN_OP_TRANSPOSE:
        fputc(',', o);
        fputs(" [", o);
        for (int k = 0; k < n->shape.rank; k++) fprintf(o, "%s%lld", k ? ", " : "", (long long)a[PN_PERM + k]);
        fputc(']', o);
        break;
    default:
        break; /* ops of one tensor and no attributes */
    }
    fputc(')', o);
    return !w->failed;
}

/* Ends a line, with the name the model file gave the input or output (its importer keeps only names
 * without control characters) as a comment. */
static void source_comment(FILE *out, const char *source) {
    if (source) fprintf(out, "  # \"%s\" in the model", source);
    fputc('\n', out);
}

bool pn_graph_print_pnet(const pn_graph *g, FILE *out, char *err, size_t errlen) {
    writer w = {g, out, err, errlen, false};
    if (!is_ident(g->name)) return bad(&w, "the network's name '%s' is not an identifier", g->name);
    if (g->train.present) return bad(&w, "a network with a train block cannot be written as .pnet source yet");
    fprintf(out, "# Written by pnetc --emit=pnet: one statement per node of the graph IR.\nnetwork %s {\n", g->name);
    for (int i = 0; i < g->nnodes && !w.failed; i++) {
        const pn_node *n = &g->nodes[i];
        if (n->op == PN_OP_CONST) continue;
        if (!is_ident(n->name)) return bad(&w, "node '%s' is not named by an identifier", n->name);
        if (n->op == PN_OP_INPUT) {
            fprintf(out, "    input %s : %s", n->name, pn_dtype_name(n->dtype));
            dims(&w, &n->shape);
            fputs(";", out);
            source_comment(out, n->source_name);
            continue;
        }
        fprintf(out, "    %s = ", n->name);
        if (!call(&w, i)) return false;
        fputs(";\n", out);
    }
    for (int k = 0; k < g->noutputs; k++) {
        const pn_output *o = &g->outputs[k];
        if (!is_ident(o->name)) return bad(&w, "output '%s' is not named by an identifier", o->name);
        if (strcmp(o->name, g->nodes[o->node].name) == 0) fprintf(out, "    output %s;", o->name);
        else fprintf(out, "    output %s = %s;", o->name, g->nodes[o->node].name);
        source_comment(out, o->source_name);
    }
    fputs("}\n", out);
    return !w.failed;
}
