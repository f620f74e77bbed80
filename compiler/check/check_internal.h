/* The checker's private header: the state shared by its files (names.c, eval.c, signatures.c, statements.c,
 * directives.c, train_block.c, check.c) and the functions they call in one another. Ownership: bindings and
 * values' lists live in the ck's tmp arena until pn_check returns; node names in the graph's arena. */
#ifndef PN_CHECK_INTERNAL_H
#define PN_CHECK_INTERNAL_H
#include "../ir/graph.h"
#include "../ir/shapes.h"
#include "../parse/ast.h"
#include "../support/util.h"
#include "pnetrt_abi.h"

enum {
    PN_MAX_BLOCK_DEPTH = 64,   /* nested block calls */
    PN_MAX_EXPR_DEPTH = 1000,  /* nested expressions */
    PN_MAX_NODES = 1 << 20,    /* nodes in one graph */
    PN_MAX_STAGES = PNETRT_MAX_STAGES,
    PN_MAX_LIST = 64,
};

/* ---- values ---------------------------------------------------------------------------- */

typedef enum { V_ERROR, V_TENSOR, V_INT, V_FLOAT, V_BOOL, V_LIST, V_BATCH } vkind;

typedef struct value {
    vkind k;
    int node;
    int64_t i;
    double f;
    bool b;
    struct value *items;
    int n;
    pn_loc loc;
} value;

static inline bool ck_is_number(const value *v) { return v->k == V_INT || v->k == V_FLOAT; }
static inline double ck_num(const value *v) { return v->k == V_INT ? (double)v->i : v->f; }

typedef struct binding {
    const char *name;
    value v;
    pn_loc loc;
    bool used, warn_unused;
} binding;

/* A name scope: the network's, or one block expansion's. Blocks see only their own names. */
typedef struct scope {
    pn_strmap names; /* name -> binding* */
    pn_vec order;    /* binding* in definition order */
    pn_module *mod;
    const char *prefix; /* qualifies node names inside a block expansion; NULL in the network */
    bool is_block;
    struct naming *ret_naming; /* names the return expression; shared with the caller's statement
                                  when the call is that statement's root, so names never clash */
} scope;

/* Names the nodes of one statement: the root takes `base`, the rest `base.op.k`. */
typedef struct naming {
    const char *base;
    pn_strmap counts; /* op or block name -> (void *)count */
} naming;

typedef struct frame {
    pn_block_def *block;
    pn_loc call_loc;
    struct frame *up;
} frame;

typedef struct ck {
    pn_program *prog;
    pn_diags *d;
    pn_arena tmp;
    pn_graph *g;
    frame *frames;
    int block_depth, expr_depth;
    pn_strmap node_names;   /* qualified name -> (void *)(index + 1) */
    int stage;              /* explicit stage of the statement being evaluated, or -1 */
    pn_loc stage_loc;
    pn_loc stage_locs[PN_MAX_STAGES];
    bool stage_seen[PN_MAX_STAGES];
    bool in_train;
    bool too_big;
    int output_stmts;
    int network_inputs, network_outputs; /* against PNETRT_MAX_IO */
    bool depth_reported;
    pn_loc shard_batch_loc, pipeline_loc;
    bool has_shard_batch;
} ck;

/* Where statements run: the network or a block body, and inside how many directives. */
typedef struct stctx {
    bool network;     /* network level (not in a block) */
    int shard;        /* pending @shard(features, K) for the next assignment, 0 = none */
    pn_loc shard_loc;
    int depth;        /* directive nesting */
} stctx;

/* A built-in op's or an optimizer's parameters, parsed from a signature string. */
typedef enum { K_TENSOR, K_TENSORS, K_INT, K_FLOAT, K_BOOL, K_PAIR, K_INTS } pkind;

typedef struct sig_param {
    char name[24];
    pkind kind;
    bool has_def;
    char def[24];
} sig_param;

typedef struct sig {
    int n;
    sig_param p[8];
} sig;

/* ---- names.c: diagnostics, suggestions, scopes, block definitions -------------------------- */

/* A number as written back to the user: 8 for an integer, 8.0 for a float. */
const char *ck_fmt_num(char *buf, size_t n, double f);
const char *ck_vkind_name(vkind k);
/* Notes "in block 'B' called here" for each block expansion being evaluated, innermost first. */
void ck_expansion_notes(ck *c);
/* An error at loc, followed by the expansion notes. */
void ck_error(ck *c, pn_loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* "; did you mean 'x'?" when some candidate is close to name, else "". */
const char *ck_suggest(ck *c, const char *name, const char *const *cands, int n);
/* As ck_suggest, for a keyword argument or setting: other frameworks' names first ("learning_rate": 'lr'). */
const char *ck_suggest_arg(ck *c, const char *name, const char *const *cands, int n);
const char *ck_suggest_name(ck *c, scope *s, const char *name);
const char *ck_suggest_block(ck *c, pn_module *m, const char *name);
const char *ck_suggest_callee(ck *c, pn_module *m, const char *name);
binding *ck_lookup(scope *s, const char *name);
/* Binds name in s; reports a reserved name or a redefinition and returns false. */
bool ck_define(ck *c, scope *s, const char *name, pn_loc loc, value v, bool warn_unused);
/* name, prefixed by the block expansion's prefix; in the graph's arena. */
const char *ck_qualify(ck *c, scope *s, const char *name);
/* The name of a node of the statement named by nm: its base when top, else "base.key.k". */
const char *ck_node_name(ck *c, naming *nm, const char *key, bool top);
/* Marks the names an expression reads as used, without evaluating it. */
void ck_mark_used(scope *s, pn_expr *e, int depth);
/* Checks a block definition's names and structure once; sets b->state to 1 (valid) or 2 (errors). */
void ck_resolve_block(ck *c, pn_block_def *b);

/* ---- eval.c: expressions -------------------------------------------------------------------- */

/* Shape-checks and appends a node. argloc[i] locates the call's i-th argument for messages. */
value ck_add_node(ck *c, pn_node *n, const int32_t *inputs, int nin, const int64_t *list, int nlist,
                  const pn_loc *argloc, int nargloc);
/* Evaluates e in s; nodes are named by nm, the expression's root by nm->base when top. */
value ck_eval(ck *c, scope *s, pn_expr *e, naming *nm, bool top);

/* ---- signatures.c: calls of ops and optimizers ---------------------------------------------- */

void ck_parse_sig(const char *text, sig *out);
/* Binds call arguments to a signature: positional in order, then keywords by name.
 * vals[i] gets the value of parameter i; tensors[] collects a `tensors` parameter. */
bool ck_bind(ck *c, scope *s, pn_expr *call, const sig *sg, const char *callee, naming *nm, value *vals, bool *given,
             value *tensors, int *ntensors);
/* Converts an argument value to a signature kind, filling ia/fa/list. */
bool ck_convert_arg(ck *c, const char *callee, const sig_param *p, value *v, int64_t *ia, int *ni, double *fa, int *nf,
                    int64_t *list, int *nlist);
value ck_call_op(ck *c, scope *s, pn_op op, pn_expr *call, naming *nm, bool top);

/* ---- statements.c, directives.c, train_block.c ---------------------------------------------- */

void ck_exec_stmts(ck *c, scope *s, pn_vec *body, stctx *x, value *ret);
void ck_exec_input(ck *c, scope *s, pn_stmt *st, stctx *x);
void ck_exec_directive(ck *c, scope *s, pn_stmt *st, stctx *x, value *ret);
void ck_exec_train(ck *c, scope *s, pn_stmt *st, stctx *x);

#endif
