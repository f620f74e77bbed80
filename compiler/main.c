/* pnetc: the driver. Runs the stages in order and stops after any stage that reported errors:
 * parse (with imports) -> check (names, blocks, shapes, directives) -> graph IR -> emit. */
#define _GNU_SOURCE /* sched_getaffinity: this machine's CPUs, for the report */
#include "check/check.h"
#include "codegen/codegen.h"
#include "fileio.h"
#include "io.h"
#include "ir/graph.h"
#include "ir/report.h"
#include "ir/bounds.h"
#include "ir/pnet_source.h"
#include "onnx/onnx.h"
#include "pnetrt_ranks.h"
#include "pnetrt_abi.h"
#include "parse/parse.h"
#include "passes/passes.h"
#include "tools/auto_partition.h"
#include "support/util.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum { PN_DEP_NAME_MAX = 256 }; /* a network's name, for -MD */

#ifndef PNET_VERSION
#define PNET_VERSION "0.0.0"
#endif

static const char usage[] =
    "usage: pnetc [options] FILE.pnet\n"
    "       pnetc [options] FILE.graph\n"
    "       pnetc [options] FILE.onnx\n"
    "\n"
    "Compiles a .pnet network into an executable (default), or an object file with a C header\n"
    "(-c). A FILE.graph (the text printed by --emit=graph) is read back as graph IR; a FILE.onnx\n"
    "is imported with its weights (docs/onnx.md).\n"
    "\n"
    "options:\n"
    "  -o FILE            the output file; - for standard output (default: the network's name; NAME.o,\n"
    "                     NAME.s, NAME.ll for -c, --emit=asm, --emit=llvm; standard output for the rest)\n"
    "  -c                 write an object file and its C header beside it (-o net.o: net.h)\n"
    "  --emit=llvm        write textual LLVM IR;  --emit=asm: assembly;  --emit=obj: as -c\n"
    "  -O0 .. -O3         optimisation level (default -O3)\n"
    "  --target TRIPLE    target triple (default: the host)\n"
    "  --cpu NAME         target CPU, such as x86-64-v4 or native (default: the host's); help lists them.\n"
    "                     A build for the host may not run on an older CPU: for one that runs on any\n"
    "                     x86-64 with AVX2, use --cpu x86-64-v3 (x86-64-v2: SSE4.2; x86-64: any)\n"
    "  --weights W.safetensors  embed these weights (PyTorch names) as read-only data\n"
    "  --weights-prefix P  the weights' names carry the prefix P ('model.fc1.weight': --weights-prefix model.)\n"
    "  --check            check the file; print nothing and exit 0 when it is valid\n"
    "  --emit=graph       print the checked graph IR, one node per line\n"
    "  --emit=dot         print the graph as Graphviz, one cluster per pipeline stage\n"
    "  --emit=pnet        FILE.onnx: print the network as .pnet source, one statement per node\n"
    "  --weights-out W.safetensors  FILE.onnx: also write its weights there, named as the network's parameters\n"
    "  --auto-partition S  split the layers into S pipeline stages by the cost model; print the file back\n"
    "                     (FILE.onnx: its .pnet source, as --emit=pnet writes it)\n"
    "  --train-chunk N    samples per gradient chunk in training (default 32, or 64 past a MiB of weights;\n"
    "                     see docs/training.md)\n"
    "  --report           print the schedule: per stage its layers, FLOPs, bytes and cost; balance; bubble\n"
    "  --profile P.json   with --report or --auto-partition: per-layer times that `./net bench --profile`\n"
    "                     measured, instead of the cost model (docs/schedules.md)\n"
    "  --cores N          with --report or --auto-partition: predict the stages on N CPUs (more stages than\n"
    "                     CPUs take turns on them; default: the profile's machine's, else this machine's\n"
    "                     when compiling for it, else a core per stage)\n"
    "  --ranks K          with --report: how K ranks of mpirun share the network, each rank's memory and\n"
    "                     what its gradient reduction sends (docs/distributed.md)\n"
    "  --dump-after=PASS  print the graph IR after an inference pass (prune, fold_batchnorm, fuse, fuse_pool,\n"
    "                     plan_params, plan_memory)\n"
    "  -I DIR             search DIR for imports (before PNET_PATH, the file's directory and the stdlib)\n"
    "  --network NAME     pick the network NAME when the file defines several\n"
    "  --error-limit=N    stop after N errors (default 20, 0 for no limit)\n"
    "  -w                 suppress warnings\n"
    "  -MD                also write a dependency file in Make syntax: the output depends on the .pnet file,\n"
    "                     its imports and the weights (default name: the output's with .d)\n"
    "  -MF FILE           write the dependency file to FILE (implies -MD)\n"
    "  -MT TARGET         the target the dependency file names (default: the output file)\n"
    "  --help             print this help\n"
    "  --version          print the version\n"
    "\n"
    "An option's value follows it or an '=': --emit graph, --emit=graph, --cpu=native.\n";

typedef enum { ACT_EXE, ACT_CHECK, ACT_GRAPH, ACT_DOT, ACT_OBJ, ACT_ASM, ACT_LLVM, ACT_REPORT, ACT_PARTITION, ACT_PNET } action;

typedef struct compile_opts {
    const char *out_path, *triple, *cpu, *weights, *weights_prefix, *dump_after, *weights_out;
    int opt_level;
    int train_chunk; /* 0: the default */
    int ranks;       /* --report --ranks K: how K ranks of mpirun share the network; 0: not asked */
    pn_diags *diags; /* for errors at a node's location */
    char *net_name;  /* receives the network's name, for -MD's default output name (NULL: not wanted) */
    const pn_profile *profile; /* --profile's measured costs, or NULL */
    const char *profile_path;
    int stages;      /* --auto-partition S */
    int cores;       /* the CPUs the report predicts the stages on (--cores, or this machine's); 0: see graph.h */
    const char *cores_from; /* whose they are, for the report's note */
} compile_opts;

/* Fills the graph's measured costs and the CPUs its report predicts the stages on. */
static void report_inputs(pn_graph *g, const compile_opts *o) {
    g->profile = o->profile;
    g->cores = o->cores;
    g->cores_from = o->cores_from;
}

/* The directory of the running pnetc, into buf; false when it cannot be found. */
static bool exe_dir(char *buf, size_t n) {
    ssize_t len = readlink("/proc/self/exe", buf, n - 1);
    if (len <= 0) return false;
    buf[len] = 0;
    char *slash = strrchr(buf, '/');
    if (!slash) return false;
    *slash = 0;
    return true;
}

/* The stdlib: <prefix>/share/pnet/stdlib beside an installed pnetc, else the source tree's. */
static const char *find_stdlib(char *buf, size_t n) {
    char dir[PATH_MAX];
    if (exe_dir(dir, sizeof dir)) {
        snprintf(buf, n, "%s/../share/pnet/stdlib/nn.pnet", dir);
        if (access(buf, R_OK) == 0) {
            snprintf(buf, n, "%s/../share/pnet/stdlib", dir);
            return buf;
        }
    }
#ifdef PNET_SOURCE_STDLIB
    snprintf(buf, n, "%s", PNET_SOURCE_STDLIB);
    return buf;
#else
    return NULL;
#endif
}

static int fail(const char *fmt, const char *arg) {
    fprintf(stderr, "pnetc: error: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    return 1;
}

/* "pnetc: error: cannot write 'PATH': why", from fileio's "PATH: why". */
static void out_error(const char *path, const char *err) {
    fprintf(stderr, "pnetc: error: cannot write '%s': %s\n", path, pnetrt_io_reason(err, path));
}

/* A text output of pnetc: standard output for no -o or "-o -", else the file, written as fileio.h
 * says (a link's target replaced, a device refused, the null device written in place, atomically). */
typedef struct out_file {
    FILE *f;
    const char *path; /* NULL for standard output */
    pnetrt_io_out o;
} out_file;

static bool out_open(out_file *of, const char *path) {
    *of = (out_file){stdout, NULL, {.fd = -1}};
    if (!path || strcmp(path, "-") == 0) return true;
    char err[PATH_MAX + 256];
    if (pnetrt_io_out_open(&of->o, path, err, sizeof err)) {
        out_error(path, err);
        return false;
    }
    if (!(of->f = fdopen(of->o.fd, "w"))) {
        fprintf(stderr, "pnetc: error: cannot write '%s': %s\n", path, strerror(errno));
        pnetrt_io_out_abort(&of->o);
        return false;
    }
    of->path = path;
    return true;
}

/* Finishes the output: committed when ok and every write succeeded, else the old file is left as it
 * was. Returns 0, or 1 after an error message. */
static int out_close(out_file *of, bool ok) {
    bool werr = ferror(of->f) != 0 || fflush(of->f) != 0;
    if (!of->path) {
        if (werr) fprintf(stderr, "pnetc: error: cannot write 'standard output'\n");
        return werr || !ok;
    }
    fsync(fileno(of->f));
    werr |= fclose(of->f) != 0;
    of->o.fd = -1;
    if (werr || !ok) {
        pnetrt_io_out_abort(&of->o);
        if (werr) fprintf(stderr, "pnetc: error: cannot write '%s'\n", of->path);
        return 1;
    }
    char err[PATH_MAX + 256];
    if (pnetrt_io_out_commit(&of->o, of->path, err, sizeof err)) {
        out_error(of->path, err);
        return 1;
    }
    return 0;
}

/* Writes the text or dot form of g to out_path or stdout. */
static int print_graph(pn_graph *g, action act, const char *out_path) {
    out_file of;
    if (!out_open(&of, out_path)) return 1;
    if (act == ACT_DOT) pn_graph_print_dot(g, of.f);
    else pn_graph_print(g, of.f);
    return out_close(&of, true);
}

/* Reads every parameter of the graph from a safetensors file (names under `prefix`) into the planned
 * buffer; warns of the file's other tensors. */
static float *load_weights(const pn_graph *g, const char *path, const char *prefix, bool warn) {
    char err[512];
    pnetrt_st *st;
    if (pnetrt_st_open(path, &st, err, sizeof err)) {
        fprintf(stderr, "pnetc: error: %s\n", err);
        return NULL;
    }
    if (pnetrt_st_set_prefix(st, prefix, err, sizeof err)) {
        fprintf(stderr, "pnetc: error: %s\n", err);
        pnetrt_st_close(st);
        return NULL;
    }
    float *w = pn_xcalloc((size_t)(g->plan.param_floats ? g->plan.param_floats : 1), sizeof(float));
    for (int i = 0; w && i < g->nnodes; i++) {
        const pn_node *n = &g->nodes[i];
        int64_t off = g->plan.param_offset[i];
        for (int k = 0; k < n->nparams; k++) {
            char *name = pn_xasprintf("%s.%s", n->name, n->params[k].suffix);
            int bad = pnetrt_st_read_f32(st, name, n->params[k].shape.rank, n->params[k].shape.d, w + off, err, sizeof err);
            free(name);
            if (bad) {
                fprintf(stderr, "pnetc: error: %s\n", err);
                free(w);
                w = NULL;
                break;
            }
            off += (pn_shape_sample_elems(&n->params[k].shape) + 15) / 16 * 16;
        }
    }
    const char *f = pnetrt_st_meta(st, "format");
    char list[400];
    int unused = w && warn ? pnetrt_st_unused(st, f && !strcmp(f, "pnet-checkpoint") ? "optimizer." : NULL, list, sizeof list) : 0;
    if (unused)
        fprintf(stderr, "pnetc: warning: %s: %d tensor%s %s not parameters of network '%s' and %s not embedded: %s\n", path,
                unused, unused == 1 ? "" : "s", unused == 1 ? "is" : "are", g->name, unused == 1 ? "was" : "were", list);
    pnetrt_st_close(st);
    return w;
}

/* The directory holding libpnetrt.a: beside an installed pnetc, else the build tree. */
static bool find_runtime(char *buf, size_t n) {
    char dir[PATH_MAX];
    if (exe_dir(dir, sizeof dir)) {
        snprintf(buf, n, "%s/%s/libpnetrt.a", dir, PNET_REL_LIBDIR);
        if (access(buf, R_OK) == 0) return true;
    }
    snprintf(buf, n, "%s/libpnetrt.a", PNET_BUILD_LIBDIR);
    return access(buf, R_OK) == 0;
}

/* The line of a failed link's output that says why, without the tool's "path/ld: " prefix: the first
 * line holding "error" or "failed" that is not collect2's summary, else the first line. Edits msg. */
static const char *link_reason(char *msg) {
    char *pick = NULL, *first = NULL;
    for (char *line = strtok(msg, "\n"); line; line = strtok(NULL, "\n")) {
        if (!*line) continue;
        if (!first) first = line;
        if (!pick && !strstr(line, "collect2") && (strstr(line, "error") || strstr(line, "failed"))) pick = line;
    }
    if (!pick) pick = first;
    if (!pick) return "the linker printed nothing";
    char *tool = strstr(pick, "ld: ");
    return tool && tool - pick < 64 ? tool + 4 : pick;
}

/* Links an object with libpnetrt into an executable, through the system C compiler. */
static int link_exe(const char *obj, const char *out, const char *name) {
    char rt[PATH_MAX];
    if (!find_runtime(rt, sizeof rt)) {
        fprintf(stderr, "pnetc: error: cannot find libpnetrt.a (looked beside pnetc and in the build tree)\n");
        return 1;
    }
    const char *cc = getenv("PNET_CC") ? getenv("PNET_CC") : "cc";
    /* The linker's messages go through a pipe: a failure becomes one line that says why. */
    int fds[2];
    if (pipe(fds)) {
        fprintf(stderr, "pnetc: error: cannot start the linker: %s\n", strerror(errno));
        return 1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "pnetc: error: cannot start the linker: %s\n", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return 1;
    }
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], STDERR_FILENO);
        dup2(fds[1], STDOUT_FILENO);
        close(fds[1]);
        /* A sanitizer build of pnet links its runtime with the sanitizers too, and a runtime
         * built with MPI links the MPI library (PNET_MPI_LIBS: words separated by spaces). */
        char mpi[] = PNET_MPI_LIBS;
        const char *argv[64] = {cc, "-o", out, obj, rt, "-lcjson", "-lz", PNET_OPENMP_FLAGS, "-lm"};
        int argc = 9;
        if (PNET_LINK_FLAGS[0]) argv[argc++] = PNET_LINK_FLAGS;
        for (char *w = strtok(mpi, " "); w && argc < 63; w = strtok(NULL, " ")) argv[argc++] = w;
        argv[argc] = NULL;
        execvp(cc, (char *const *)argv);
        dprintf(STDERR_FILENO, "cannot run the linker '%s': %s\n", cc, strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    char msg[4096];
    size_t len = 0;
    for (;;) {
        char chunk[1024];
        ssize_t r = read(fds[0], chunk, sizeof chunk);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        for (ssize_t i = 0; i < r && len + 1 < sizeof msg; i++) msg[len++] = chunk[i];
    }
    close(fds[0]);
    msg[len] = '\0';
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        fputs(msg, stderr); /* warnings, if the linker had any */
        return 0;
    }
    fprintf(stderr, "pnetc: error: linking '%s' failed: %s\n", name, link_reason(msg));
    return 1;
}

/* The header that -c writes beside the object: net.o -> net.h. */
static void header_path(const char *obj, char *hdr, size_t n) {
    snprintf(hdr, n, "%s", obj);
    char *dot = strrchr(hdr, '.'), *slash = strrchr(hdr, '/');
    if (dot && (!slash || dot > slash)) *dot = 0;
    strncat(hdr, ".h", n - strlen(hdr) - 1);
}

/* The output files of act would overwrite an input: an error, not a lost source file. */
static bool clobbers(action act, const char *file, const compile_opts *o) {
    size_t n = strlen(file);
    bool onnx = n > 5 && strcmp(file + n - 5, ".onnx") == 0; /* --auto-partition rewrites a .pnet file in place, never a model */
    if (!o->out_path || strcmp(o->out_path, "-") == 0 || act == ACT_CHECK || (act == ACT_PARTITION && !onnx)) return false;
    char hdr[PATH_MAX] = "";
    if (act == ACT_OBJ) header_path(o->out_path, hdr, sizeof hdr);
    const char *ins[2] = {file, o->weights};
    for (int i = 0; i < 2; i++) {
        if (!ins[i]) continue;
        const char *hit = pnetrt_io_same_file(o->out_path, ins[i]) ? o->out_path : hdr[0] && pnetrt_io_same_file(hdr, ins[i]) ? hdr : NULL;
        if (hit) {
            fprintf(stderr, "pnetc: error: the output '%s' is the input '%s'; choose another name with -o\n", hit, ins[i]);
            return true;
        }
    }
    if (hdr[0] && strcmp(hdr, o->out_path) == 0) {
        fprintf(stderr, "pnetc: error: -c writes the header beside the object, as '%s': name the object with -o something other than '%s'\n",
                hdr, o->out_path);
        return true;
    }
    return false;
}

/* Runs the inference passes, generates code and writes what the action asks for. */
static int compile(pn_graph *g, action act, const compile_opts *o) {
    g->train_chunk = o->train_chunk;
    for (int i = 0; i < pn_npasses; i++) {
        pn_passes[i].run(g);
        if (o->dump_after && strcmp(o->dump_after, pn_passes[i].name) == 0) return print_graph(g, ACT_GRAPH, NULL);
    }
    if (o->dump_after) {
        const char *names[32];
        char list[512] = "";
        for (int i = 0; i < pn_npasses && i < 32; i++) {
            names[i] = pn_passes[i].name;
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", names[i]);
        }
        const char *best = pn_closest(o->dump_after, names, pn_npasses < 32 ? pn_npasses : 32);
        if (best) fprintf(stderr, "pnetc: error: unknown pass '%s' for --dump-after; did you mean '%s'?\n", o->dump_after, best);
        else fprintf(stderr, "pnetc: error: unknown pass '%s' for --dump-after; expected %s\n", o->dump_after, list);
        return 1;
    }
    float *weights = NULL;
    if (o->weights && !(weights = load_weights(g, o->weights, o->weights_prefix, !o->diags || !o->diags->no_warnings)))
        return 1;
    pn_cg_options co = {o->triple, o->cpu, o->opt_level, weights, act == ACT_EXE};
    cg c;
    char err[1024];
    int rc = 1;
    if (!pn_codegen(g, &co, &c)) {
        /* At the node's source range when it has one, else "pnetc: error: ..." (diag.c). */
        pn_error(o->diags, c.error.loc, "%s", c.error.msg);
        pn_diags_flush(o->diags);
        goto done;
    }
    char path[PATH_MAX], tmp[PATH_MAX] = "", hdr[PATH_MAX];
    pnetrt_io_out out = {.fd = -1};
    if (act == ACT_EXE) {
        snprintf(path, sizeof path, "%s", o->out_path ? o->out_path : g->name);
        snprintf(tmp, sizeof tmp, "%s/pnetc-XXXXXX.o", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        int fd = mkstemps(tmp, 2);
        if (fd < 0) {
            fprintf(stderr, "pnetc: error: cannot create a temporary file: %s\n", strerror(errno));
            tmp[0] = '\0';
            goto done;
        }
        close(fd);
        if (!pn_codegen_emit(&c, PN_EMIT_OBJ, tmp, err, sizeof err)) {
            fprintf(stderr, "pnetc: error: %s\n", err);
            goto done;
        }
        /* Linked into the temporary file beside the output, then renamed over it (fileio.h); for the null
         * device, into one beside the object, then removed: the linker never replaces a device. */
        if (pnetrt_io_out_open(&out, path, err, sizeof err)) {
            out_error(path, err);
            goto done;
        }
        close(out.fd);
        out.fd = -1;
        char exe[PATH_MAX];
        snprintf(exe, sizeof exe, "%.*s", (int)strlen(tmp) - 2, tmp);
        if (link_exe(tmp, out.tmp ? out.tmp : exe, path)) goto done;
        if (!out.tmp) unlink(exe);
        if (pnetrt_io_out_commit(&out, path, err, sizeof err)) {
            out_error(path, err);
            goto done;
        }
        rc = 0;
        goto done;
    }
    const char *ext = act == ACT_OBJ ? ".o" : act == ACT_ASM ? ".s" : ".ll";
    if (o->out_path) snprintf(path, sizeof path, "%s", o->out_path);
    else snprintf(path, sizeof path, "%s%s", g->name, ext);
    pn_emit_kind kind = act == ACT_OBJ ? PN_EMIT_OBJ : act == ACT_ASM ? PN_EMIT_ASM : PN_EMIT_LLVM;
    /* "-o -" is LLVM's standard output; any other file is written through a temporary one (fileio.h). */
    bool to_stdout = strcmp(path, "-") == 0;
    if (!to_stdout && pnetrt_io_out_open(&out, path, err, sizeof err)) {
        out_error(path, err);
        goto done;
    }
    if (out.fd >= 0) close(out.fd);
    out.fd = -1;
    if (!pn_codegen_emit(&c, kind, to_stdout ? path : out.tmp ? out.tmp : out.target, err, sizeof err)) {
        fprintf(stderr, "pnetc: error: %s\n", err);
        goto done;
    }
    if (act == ACT_OBJ) {
        /* The header beside the object; with -o /dev/null, discarded too. */
        header_path(path, hdr, sizeof hdr);
        if (!to_stdout && !out.tmp) snprintf(hdr, sizeof hdr, "%s", out.target);
        if (!pn_write_header(g, hdr, err, sizeof err)) {
            fprintf(stderr, "pnetc: error: %s\n", err);
            goto done;
        }
    }
    if (!to_stdout && pnetrt_io_out_commit(&out, path, err, sizeof err)) {
        out_error(path, err);
        goto done;
    }
    rc = 0;
done:
    if (out.target) pnetrt_io_out_abort(&out); /* a failure leaves the old output as it was */
    if (tmp[0]) unlink(tmp);
    if (c.mod || c.ctx) pn_codegen_free(&c);
    free(weights);
    return rc;
}

/* Stages out of balance get a warning, whatever the output (unless -w). */
static void warn_unbalanced(const char *file, const pn_graph *g, const pn_diags *diags) {
    if (g->nstages <= 1 || diags->no_warnings) return;
    pn_stage_stats *st = pn_xcalloc((size_t)g->nstages, sizeof *st);
    double balance = pn_report_stats(g, st, g->nstages);
    if (balance > PN_BALANCE_WARN)
        fprintf(stderr, "%s: warning: pipeline stages are unbalanced: the slowest costs %.2fx the mean (see --report)\n",
                file, balance);
    free(st);
}

/* --report: the schedule report of the checked graph, to out_path or stdout; with --ranks K, then
 * how K ranks share it (runtime/pnetrt_ranks.h, as `./net info --ranks K` prints it), from the
 * planned graph. */
static int write_report(pn_graph *g, const compile_opts *o) {
    out_file of;
    if (!out_open(&of, o->out_path)) return 1;
    /* The passes only mark nodes; the memory plan gives the report the samples of one call. */
    g->train_chunk = o->train_chunk;
    for (int i = 0; i < pn_npasses; i++) pn_passes[i].run(g);
    pn_graph_report(g, of.f);
    if (o->ranks > 0) {
        const pn_tplan *t = &g->tplan;
        bool batchnorm = false; /* a training step cut into segments at batch statistics: no pipeline */
        for (int i = 0; t->present && i < g->nnodes; i++) batchnorm |= t->live[i] && g->nodes[i].op == PN_OP_BATCHNORM;
        pnetrt_rank_facts x = {
            .param_floats = g->plan.param_floats,
            .opt_floats = t->present ? g->plan.param_floats * (g->train.opt == PN_OPT_ADAM ? 2 : 1) : 0,
            .infer_sample_bytes = g->plan.arena_sample_bytes,
            .train_sample_bytes = t->present ? t->sample_bytes : 0,
            .chunk = t->present ? t->chunk : g->plan.chunk,
            .train = t->present,
            /* Every op writes its parameters' gradients in one segment (codegen/step.c), so a
             * step cut at batchnorm's statistics folds too (pnetrt_train_folds). */
            .fold = t->present,
            .stages = g->nstages > 1,
            .nstages = g->nstages,
            .microbatches = g->microbatches,
            .infer_fixed_bytes = g->plan.arena_fixed_bytes,
        };
        /* Stage boundaries and each stage's parameters, as the descriptor gives them to libpnetrt. */
        pn_bounds bd;
        pn_stage_bounds(g, &bd);
        int S = g->nstages > 0 ? g->nstages : 1;
        int64_t *sp = pn_xcalloc((size_t)S * 3, sizeof *sp), *rs = sp + S, *rf = sp + 2 * S;
        for (int i = 0; i < g->nnodes; i++)
            for (int k = 0; k < g->nodes[i].nparams; k++)
                if (g->nodes[i].stage >= 0 && g->nodes[i].stage < S)
                    sp[g->nodes[i].stage] += (pn_shape_sample_elems(&g->nodes[i].params[k].shape) + 15) / 16 * 16;
        for (int s = 0; s < S; s++) pn_bounds_bytes(&bd, s, &rs[s], &rf[s]);
        x.stage_param_floats = sp, x.stage_recv_sample = rs, x.stage_recv_fixed = rf;
        /* Training one stage per rank: what each stage receives in the training arena. */
        pn_tbounds tb;
        pn_train_bounds(g, &tb);
        int64_t *tf = pn_xcalloc((size_t)S * 2, sizeof *tf), *tw = tf + S;
        for (int s = 0; s < S && t->present; s++) {
            for (int64_t j = tb.fwd_first[s]; j < tb.fwd_first[s + 1]; j++) tf[s] += tb.fwd[2 * j + 1];
            for (int64_t j = tb.bwd_first[s]; j < tb.bwd_first[s + 1]; j++) tw[s] += tb.bwd[2 * j + 1];
        }
        if (t->present && !batchnorm && g->nstages > 1) x.train_fwd_sample = tf, x.train_bwd_sample = tw;
        x.one_f_one_b = g->schedule == PN_SCHED_1F1B;
        fprintf(of.f, "\n");
        pnetrt_rank_report(of.f, &x, o->ranks, g->train.present && g->train.batch > 0 ? g->train.batch : 256);
        free(sp);
        free(tf);
        pn_bounds_free(&bd);
        pn_tbounds_free(&tb);
    }
    return out_close(&of, true);
}

/* FILE.graph: the text form of the graph IR, read back and checked. */
static int run_graph_file(const char *file, action act, const compile_opts *o) {
    if (act == ACT_PARTITION) {
        /* The stages are chosen per source statement and printed back as source. */
        fprintf(stderr, "%s: error: --auto-partition prints the source back with its @partition groups, so it needs "
                        "the .pnet file, not graph IR\n", file);
        return 1;
    }
    size_t len;
    char why[256];
    char *text = pn_read_file(file, PN_MAX_FILE, &len, why, sizeof why);
    if (!text) {
        fprintf(stderr, "pnetc: error: cannot read '%s': %s\n", file, why);
        return 1;
    }
    char err[512];
    pn_graph *g = pn_graph_parse(text, len, err, sizeof err);
    free(text);
    if (!g) {
        fprintf(stderr, "%s: error: %s\n", file, err);
        return 1;
    }
    if (o->profile) {
        if (!pn_profile_matches(o->profile, g, err, sizeof err)) {
            fprintf(stderr, "%s: error: %s\n", o->profile_path, err);
            pn_graph_free(g);
            return 1;
        }
    }
    report_inputs(g, o);
    if (act != ACT_CHECK) warn_unbalanced(file, g, o->diags);
    if (o->net_name) snprintf(o->net_name, PN_DEP_NAME_MAX, "%s", g->name);
    int rc = 0;
    if (act == ACT_REPORT) rc = write_report(g, o);
    else if (act == ACT_GRAPH || act == ACT_DOT) rc = print_graph(g, act, o->out_path);
    else if (act != ACT_CHECK) rc = compile(g, act, o);
    pn_graph_free(g);
    return rc;
}

/* --auto-partition S on FILE.onnx: the network's .pnet source (as --emit=pnet writes it), parsed and
 * checked as a .pnet file is, then partitioned and printed back by the same tool. */
static int partition_onnx(const char *file, const pn_graph *g, const compile_opts *o) {
    char err[1024], *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (!mem) {
        fprintf(stderr, "pnetc: error: out of memory\n");
        return 1;
    }
    bool ok = pn_graph_print_pnet(g, mem, err, sizeof err);
    fclose(mem);
    if (!ok) {
        fprintf(stderr, "%s: error: %s\n", file, err);
        free(text);
        return 1;
    }
    pn_program prog;
    pn_program_init(&prog, o->diags);
    pn_graph *pg = NULL;
    int rc = 1;
    if (pn_program_load(&prog, file, text, len) && !o->diags->nerrors && pn_check(&prog, g->name, &pg)) {
        report_inputs(pg, o);
        pg->train_chunk = o->train_chunk;
        out_file of;
        if (out_open(&of, o->out_path)) {
            ok = pn_auto_partition(&prog, pg, o->stages, of.f, err, sizeof err);
            if (!ok) fprintf(stderr, "%s: error: %s\n", file, err);
            rc = out_close(&of, ok);
        }
    } else {
        /* The emitted source is meant to check: a failure here is pnetc's. */
        fprintf(stderr, "pnetc: error: internal error: %s's .pnet source does not check (please report this):\n", file);
    }
    pn_diags_flush(o->diags);
    if (pg) pn_graph_free(pg);
    pn_program_free(&prog);
    free(text);
    return rc;
}

/* FILE.onnx: the ONNX front end's graph (compiler/onnx), its weights embedded through a safetensors file
 * (--weights-out, else a temporary one), then as for FILE.graph. */
static int run_onnx_file(const char *file, action act, const compile_opts *o) {
    if (!pn_onnx_supported) {
        fprintf(stderr, "pnetc: error: %s: this pnetc was built without ONNX support\n", file);
        return 1;
    }
    if (o->weights) {
        fprintf(stderr, "%s: error: --weights: an ONNX model carries its own weights\n", file);
        return 1;
    }
    const char *wout = o->weights_out, *out = o->out_path && strcmp(o->out_path, "-") != 0 ? o->out_path : NULL;
    if (wout && (pnetrt_io_same_file(wout, file) || (out && (strcmp(wout, out) == 0 || pnetrt_io_same_file(wout, out))))) {
        fprintf(stderr, "pnetc: error: --weights-out '%s' is the %s; choose another name\n", wout,
                pnetrt_io_same_file(wout, file) ? "input model" : "output");
        return 1;
    }
    size_t len;
    char why[256], err[1024];
    uint8_t *data = (uint8_t *)pn_read_file(file, (size_t)2 << 30, &len, why, sizeof why);
    if (!data) {
        fprintf(stderr, "pnetc: error: cannot read '%s': %s\n", file, why);
        return 1;
    }
    pn_onnx_weights w;
    pn_graph *g = pn_onnx_import(data, len, &w, err, sizeof err);
    free(data);
    if (!g) {
        fprintf(stderr, "%s: error: %s\n", file, err);
        return 1;
    }
    compile_opts wo = *o;
    char tmp[PATH_MAX] = "";
    int rc = 1;
    if (o->profile && !pn_profile_matches(o->profile, g, err, sizeof err)) {
        fprintf(stderr, "%s: error: %s\n", o->profile_path, err);
        goto out;
    }
    report_inputs(g, o);
    if (w.n && (o->weights_out ||
                (act != ACT_CHECK && act != ACT_GRAPH && act != ACT_DOT && act != ACT_PNET && act != ACT_REPORT && act != ACT_PARTITION))) {
        if (!o->weights_out) {
            snprintf(tmp, sizeof tmp, "%s/pnetc-XXXXXX.safetensors", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
            int fd = mkstemps(tmp, 12);
            if (fd < 0) {
                fprintf(stderr, "pnetc: error: cannot create a temporary file: %s\n", strerror(errno));
                tmp[0] = 0;
                goto out;
            }
            close(fd);
        }
        wo.weights = o->weights_out ? o->weights_out : tmp;
        if (pnetrt_st_write(wo.weights, w.n, (const char *const *)w.names, w.ranks, (const int64_t(*)[8])w.shapes,
                            (const float *const *)w.data, 0, NULL, NULL, err, sizeof err)) {
            out_error(wo.weights, err);
            goto out;
        }
    }
    if (act != ACT_CHECK && act != ACT_PARTITION) warn_unbalanced(file, g, o->diags);
    if (o->net_name) snprintf(o->net_name, PN_DEP_NAME_MAX, "%s", g->name);
    if (act == ACT_CHECK) rc = 0;
    else if (act == ACT_PARTITION) rc = partition_onnx(file, g, o);
    else if (act == ACT_REPORT) rc = write_report(g, o);
    else if (act == ACT_GRAPH || act == ACT_DOT) rc = print_graph(g, act, o->out_path);
    else if (act == ACT_PNET) {
        out_file of;
        if (out_open(&of, o->out_path)) {
            bool ok = pn_graph_print_pnet(g, of.f, err, sizeof err);
            if (!ok) fprintf(stderr, "%s: error: %s\n", file, err);
            rc = out_close(&of, ok);
        }
    } else rc = compile(g, act, &wo);
out:
    if (tmp[0]) unlink(tmp);
    pn_onnx_weights_free(&w);
    pn_graph_free(g);
    return rc;
}

/* The file the action writes, into buf: -o, else the default name of the network's output; "" for
 * standard output. */
static void output_name(action act, const compile_opts *o, const char *net, char *buf, size_t n) {
    const char *ext = act == ACT_EXE ? "" : act == ACT_OBJ ? ".o" : act == ACT_ASM ? ".s" : act == ACT_LLVM ? ".ll" : NULL;
    if (o->out_path) snprintf(buf, n, "%s", strcmp(o->out_path, "-") == 0 ? "" : o->out_path);
    else if (ext && !o->dump_after) snprintf(buf, n, "%s%s", net, ext);
    else buf[0] = 0;
}

/* One path in Make syntax: spaces and '#' escaped with a backslash, '$' doubled. */
static void dep_put(FILE *f, const char *path) {
    for (const char *c = path; *c; c++) {
        if (*c == ' ' || *c == '\t' || *c == '#') fputc('\\', f);
        else if (*c == '$') fputc('$', f);
        fputc(*c, f);
    }
}

/* -MD: "TARGET: FILE.pnet IMPORT.pnet ... WEIGHTS" to the dependency file, written as fileio.h says.
 * The target is -MT, else the output; the file is -MF, else the output's name with .d (the input's
 * base name with .d for output on standard output), as C compilers name it. */
static int write_deps(const pn_program *prog, const char *file, action act, const compile_opts *o,
                      const char *net, const char *mf, const char *mt) {
    char out[PATH_MAX], dpath[PATH_MAX];
    output_name(act, o, net, out, sizeof out);
    if (mf) snprintf(dpath, sizeof dpath, "%s", mf);
    else {
        const char *base = out[0] ? out : file;
        if (!out[0] && strrchr(base, '/')) base = strrchr(base, '/') + 1;
        snprintf(dpath, sizeof dpath, "%s", base);
        char *dot = strrchr(dpath, '.'), *slash = strrchr(dpath, '/');
        if (dot && (!slash || dot > slash)) *dot = 0;
        strncat(dpath, ".d", sizeof dpath - strlen(dpath) - 1);
    }
    out_file of;
    if (!out_open(&of, dpath)) return 1;
    dep_put(of.f, mt ? mt : out);
    fputc(':', of.f);
    int n = prog->modules.len;
    for (int i = 0; i < (n ? n : 1); i++) {
        fputs(" \\\n  ", of.f);
        dep_put(of.f, n ? ((const pn_module *)prog->modules.items[i])->path : file);
    }
    for (int i = 0; i < prog->deps.len; i++) {
        fputs(" \\\n  ", of.f);
        dep_put(of.f, prog->deps.items[i]);
    }
    if (o->weights) {
        fputs(" \\\n  ", of.f);
        dep_put(of.f, o->weights);
    }
    fputc('\n', of.f);
    return out_close(&of, true);
}

/* --cpu help: the CPUs the target knows, one per line. */
static int list_cpus(const char *triple) {
    char *t = pn_target_triple(triple);
    int n;
    char **names = pn_target_cpus(t, &n);
    if (!names) fprintf(stderr, "pnetc: error: cannot list the CPUs of target '%s'\n", t);
    else printf("CPUs for %s (--cpu NAME; native: this machine's):\n", t);
    for (int i = 0; i < n; i++) printf("  %s\n", names[i]);
    pn_target_cpus_free(names, n);
    free(t);
    return names ? 0 : 1;
}

/* pnetc's options: the parser takes these and no others, so an unknown one is matched against them
 * for a suggestion. One that takes a value takes it as the next argument or after '=' (--emit graph,
 * --emit=graph, -o out, --cpu=native); -O0..-O3 and -IDIR are read before this table. */
typedef struct pnetc_opt {
    const char *name;
    bool value;
} pnetc_opt;

static const pnetc_opt pnetc_opts[] = {
    {"--help", false},          {"-h", false},           {"--version", false},      {"--check", false},
    {"--report", false},        {"--ranks", true},       {"--train-chunk", true},   {"--auto-partition", true},
    {"-c", false},              {"--emit", true},        {"--dump-after", true},    {"-o", true},
    {"-I", true},               {"--network", true},     {"--target", true},        {"--cpu", true},
    {"--weights", true},        {"--error-limit", true}, {"-w", false},             {"-MD", false},
    {"-MF", true},              {"-MT", true},           {"--weights-prefix", true}, {"--profile", true},
    {"--cores", true},          {"--weights-out", true},
};

/* v as a count from 1 to most, into *out; false when it is not one. */
static bool count_arg(const char *v, long most, int *out) {
    char *end;
    long n = strtol(v, &end, 10);
    if (!*v || *end || n < 1 || n > most) return false;
    *out = (int)n;
    return true;
}

/* argv[*i] as one of pnetc_opts, with its value in *v (after '=', else the next argument, advancing
 * *i). NULL after the error: an unknown option (with the closest as a suggestion), a missing value,
 * or a value given to a flag. */
static const pnetc_opt *find_option(int argc, char **argv, int *i, const char **v) {
    const char *a = argv[*i], *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
    size_t len = eq ? (size_t)(eq - a) : strlen(a);
    for (int k = 0; k < PN_ARRAY_LEN(pnetc_opts); k++) {
        const pnetc_opt *op = &pnetc_opts[k];
        if (strlen(op->name) != len || strncmp(op->name, a, len) != 0) continue;
        if (!op->value && eq) {
            fprintf(stderr, "pnetc: error: option '%s' takes no value ('%s')\n", op->name, a);
            return NULL;
        }
        if (op->value && !eq && *i + 1 >= argc) {
            fprintf(stderr, "pnetc: error: option '%s' needs an argument\n", op->name);
            return NULL;
        }
        *v = !op->value ? NULL : eq ? eq + 1 : argv[++*i];
        if (*v && !**v) {
            fprintf(stderr, "pnetc: error: option '%s' needs a value, not an empty one\n", op->name);
            return NULL;
        }
        return op;
    }
    /* The suggestion: the closest name, dashes aside (-check: --check), within a third of its length. */
    char word[64];
    const char *w = a;
    while (*w == '-') w++;
    snprintf(word, sizeof word, "%.*s", (int)(len - (size_t)(w - a)), w);
    const char *best = NULL;
    int bestd = ((int)strlen(word) + 2) / 3 + 1;
    for (int k = 0; strlen(word) >= 2 && k < PN_ARRAY_LEN(pnetc_opts); k++) {
        const char *n = pnetc_opts[k].name;
        while (*n == '-') n++;
        int dist = pn_edit_distance(word, n);
        if (dist < bestd) bestd = dist, best = pnetc_opts[k].name;
    }
    if (best) fprintf(stderr, "pnetc: error: unknown argument '%s'; did you mean '%s'?\n", a, best);
    else fprintf(stderr, "pnetc: error: unknown argument '%s'; see 'pnetc --help'\n", a);
    return NULL;
}

int main(int argc, char **argv) {
    action act = ACT_EXE;
    const char *file = NULL, *network = NULL, *profile_path = NULL;
    pn_profile *profile = NULL; /* --profile's measured costs */
    int stages = 0;
    pn_diags diags;
    pn_diags_init(&diags, stderr);
    char net_name[PN_DEP_NAME_MAX] = "";
    compile_opts o = {.opt_level = 3, .diags = &diags, .net_name = net_name};
    bool deps = false; /* -MD */
    const char *dep_file = NULL, *dep_target = NULL;
    pn_program prog;
    pn_program_init(&prog, &diags);
    int rc = 1;
    pnetrt_io_remove_temp_on_signals(); /* no temporary output file is left behind */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || !a[1]) {
            if (file) {
                rc = fail("more than one input file ('%s'); pnetc takes one", a);
                goto done;
            }
            file = a;
            continue;
        }
        if (a[1] == 'O' && a[2] >= '0' && a[2] <= '3' && !a[3]) {
            o.opt_level = a[2] - '0';
            continue;
        }
        if (a[1] == 'I' && a[2]) { /* -IDIR */
            pn_vec_push(&prog.arena, &prog.include_dirs, (void *)(a + 2));
            continue;
        }
        const char *v = NULL;
        const pnetc_opt *op = find_option(argc, argv, &i, &v);
        if (!op) goto done;
        const char *name = op->name;
        if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
            fputs(usage, stdout);
            rc = 0;
            goto done;
        } else if (strcmp(name, "--version") == 0) {
            printf("pnetc %s\n", PNET_VERSION);
            rc = 0;
            goto done;
        } else if (strcmp(name, "--check") == 0) {
            act = ACT_CHECK;
        } else if (strcmp(name, "--report") == 0) {
            act = ACT_REPORT;
        } else if (strcmp(name, "--profile") == 0) {
            profile_path = v;
        } else if (strcmp(name, "--cores") == 0) {
            if (!count_arg(v, 4096, &o.cores)) {
                rc = fail("%s", "--cores needs a CPU count from 1 to 4096");
                goto done;
            }
            o.cores_from = "--cores gives";
        } else if (strcmp(name, "--ranks") == 0) {
            if (!count_arg(v, 4096, &o.ranks)) {
                rc = fail("%s", "--ranks needs a rank count from 1 to 4096");
                goto done;
            }
        } else if (strcmp(name, "--train-chunk") == 0) {
            if (!count_arg(v, 65536, &o.train_chunk)) {
                rc = fail("%s", "--train-chunk needs a sample count from 1 to 65536");
                goto done;
            }
        } else if (strcmp(name, "--auto-partition") == 0) {
            if (!count_arg(v, PNETRT_MAX_STAGES, &o.stages)) {
                fprintf(stderr, "pnetc: error: --auto-partition needs a stage count from 1 to %d\n", PNETRT_MAX_STAGES);
                rc = 1;
                goto done;
            }
            stages = o.stages;
            act = ACT_PARTITION;
        } else if (strcmp(name, "-c") == 0) {
            act = ACT_OBJ;
        } else if (strcmp(name, "--emit") == 0) {
            if (strcmp(v, "graph") == 0) act = ACT_GRAPH;
            else if (strcmp(v, "dot") == 0) act = ACT_DOT;
            else if (strcmp(v, "llvm") == 0) act = ACT_LLVM;
            else if (strcmp(v, "asm") == 0) act = ACT_ASM;
            else if (strcmp(v, "obj") == 0) act = ACT_OBJ;
            else if (strcmp(v, "pnet") == 0) act = ACT_PNET;
            else {
                static const char *const kinds[] = {"graph", "dot", "llvm", "asm", "obj", "pnet"};
                const char *best = pn_closest(v, kinds, PN_ARRAY_LEN(kinds));
                if (best) fprintf(stderr, "pnetc: error: unknown --emit kind '%s'; did you mean '%s'?\n", v, best);
                else fprintf(stderr, "pnetc: error: unknown --emit kind '%s'; expected graph, dot, llvm, asm, obj or pnet\n", v);
                rc = 1;
                goto done;
            }
        } else if (strcmp(name, "--dump-after") == 0) {
            o.dump_after = v;
        } else if (strcmp(name, "-o") == 0) {
            o.out_path = v;
        } else if (strcmp(name, "-I") == 0) {
            pn_vec_push(&prog.arena, &prog.include_dirs, (void *)v);
        } else if (strcmp(name, "--network") == 0) {
            network = v;
        } else if (strcmp(name, "--target") == 0) {
            o.triple = v;
        } else if (strcmp(name, "--cpu") == 0) {
            o.cpu = v;
        } else if (strcmp(name, "--weights") == 0) {
            o.weights = v;
        } else if (strcmp(name, "--weights-prefix") == 0) {
            o.weights_prefix = v;
        } else if (strcmp(name, "--weights-out") == 0) {
            o.weights_out = v;
        } else if (strcmp(name, "--error-limit") == 0) {
            char *end;
            long n = strtol(v, &end, 10);
            if (*end || end == v || n < 0 || n > INT_MAX) {
                rc = fail("invalid --error-limit value '%s'", v);
                goto done;
            }
            diags.error_limit = (int)n;
        } else if (strcmp(name, "-w") == 0) {
            diags.no_warnings = true;
        } else if (strcmp(name, "-MD") == 0) {
            deps = true;
        } else if (strcmp(name, "-MF") == 0) {
            dep_file = v;
            deps = true;
        } else if (strcmp(name, "-MT") == 0) {
            dep_target = v;
        } else {
            PN_ASSERT(!"an option of pnetc_opts without a case in main");
        }
    }
    if (o.cpu && strcmp(o.cpu, "help") == 0) {
        rc = list_cpus(o.triple);
        goto done;
    }
    if (o.weights_prefix && !o.weights) {
        rc = fail("--weights-prefix %s needs --weights W.safetensors", o.weights_prefix);
        goto done;
    }
    if (profile_path && act != ACT_REPORT && act != ACT_PARTITION) {
        rc = fail("%s", "--profile goes with --report or --auto-partition");
        goto done;
    }
    if (profile_path) {
        char err[512];
        profile = pn_profile_load(profile_path, err, sizeof err);
        if (!profile) {
            fprintf(stderr, "%s: error: %s\n", profile_path, err);
            goto done;
        }
        o.profile = profile;
        o.profile_path = profile_path;
    }
    if (o.cores && act != ACT_REPORT && act != ACT_PARTITION) {
        rc = fail("%s", "--cores goes with --report or --auto-partition");
        goto done;
    }
    if (!o.cores && !profile && !o.triple && (!o.cpu || strcmp(o.cpu, "native") == 0)) {
        /* Compiling for this machine: its report predicts the stages on the CPUs this process may use. */
        cpu_set_t set;
        if (!sched_getaffinity(0, sizeof set, &set)) o.cores = CPU_COUNT(&set);
        o.cores_from = "this machine has";
    }
    if (o.ranks && act != ACT_REPORT) {
        rc = fail("%s", "--ranks goes with --report (an executable takes its ranks from mpirun)");
        goto done;
    }
    if (!file) {
        rc = fail("%s", "no input file; see 'pnetc --help'");
        goto done;
    }
    bool to_stdout = o.out_path ? strcmp(o.out_path, "-") == 0 : o.dump_after || (act != ACT_EXE && act != ACT_OBJ && act != ACT_ASM && act != ACT_LLVM);
    if (deps && !dep_target && to_stdout) {
        rc = fail("%s", "-MD: the output goes to standard output or nowhere, so name the target with -MT");
        goto done;
    }
    if (clobbers(act, file, &o)) goto done;
    if (o.out_path && strcmp(o.out_path, "-") != 0 && act != ACT_CHECK) {
        /* A device, a directory or a directory that takes no new files fails now, not after compiling. */
        char err[PATH_MAX + 256];
        if (pnetrt_io_check_output(o.out_path, err, sizeof err)) {
            out_error(o.out_path, err);
            goto done;
        }
    }
    size_t flen = strlen(file);
    if (flen > 6 && strcmp(file + flen - 6, ".graph") == 0) {
        rc = run_graph_file(file, act, &o);
        if (rc == 0 && deps) rc = write_deps(&prog, file, act, &o, net_name, dep_file, dep_target);
        goto done;
    }
    if (flen > 5 && strcmp(file + flen - 5, ".onnx") == 0) {
        rc = run_onnx_file(file, act, &o);
        if (rc == 0 && deps) rc = write_deps(&prog, file, act, &o, net_name, dep_file, dep_target);
        goto done;
    }
    if (act == ACT_PNET || o.weights_out) {
        rc = fail("%s", act == ACT_PNET ? "--emit=pnet reads an ONNX model (FILE.onnx)" : "--weights-out reads an ONNX model (FILE.onnx)");
        goto done;
    }
    char stdlib[PATH_MAX];
    prog.stdlib_dir = find_stdlib(stdlib, sizeof stdlib);

    /* Stage 1: parse the file and its imports. */
    pn_module *main_mod = pn_program_load(&prog, file, NULL, 0);
    pn_diags_flush(&diags);
    if (!main_mod || diags.nerrors) goto done;

    /* Stage 2: check and build the graph IR. */
    pn_graph *g = NULL;
    bool ok = pn_check(&prog, network, act == ACT_CHECK ? NULL : &g);
    pn_diags_flush(&diags);
    if (!ok) goto done;
    if (g) snprintf(net_name, sizeof net_name, "%s", g->name);
    if (act == ACT_CHECK) {
        rc = 0;
        goto finish;
    }

    if (profile) {
        char err[512];
        if (!pn_profile_matches(profile, g, err, sizeof err)) {
            fprintf(stderr, "%s: error: %s\n", profile_path, err);
            pn_graph_free(g);
            goto done;
        }
    }
    report_inputs(g, &o);
    if (act != ACT_PARTITION) warn_unbalanced(file, g, &diags);
    if (act == ACT_PARTITION) {
        char err[512];
        out_file of;
        if (out_open(&of, o.out_path)) {
            g->train_chunk = o.train_chunk;
            bool ok = pn_auto_partition(&prog, g, stages, of.f, err, sizeof err);
            if (!ok) fprintf(stderr, "%s: error: %s\n", file, err);
            rc = out_close(&of, ok);
        }
        pn_graph_free(g);
        goto finish;
    }
    if (act == ACT_REPORT) {
        rc = write_report(g, &o);
        pn_graph_free(g);
        goto finish;
    }

    /* Stage 3: passes, code generation and output. */
    if (act == ACT_GRAPH || act == ACT_DOT) rc = o.dump_after ? compile(g, act, &o) : print_graph(g, act, o.out_path);
    else rc = compile(g, act, &o);
    pn_graph_free(g);
finish: /* the dependency file, once the output is written */
    if (rc == 0 && deps) rc = write_deps(&prog, file, act, &o, net_name, dep_file, dep_target);
done:
    pn_profile_free(profile);
    pn_diags_flush(&diags);
    pn_program_free(&prog);
    pn_diags_free(&diags);
    return rc;
}
