/* The checker: evaluates a network's statements, expanding blocks in place, and builds the
 * graph IR while checking names, types, shapes, directives and the train block.
 * The stage's files: names.c, eval.c, signatures.c, statements.c, directives.c, train_block.c;
 * this one checks each network and is the entry point. */
#include "check.h"
#include "check_internal.h"

#include <string.h>

/* ---- networks ---------------------------------------------------------------------------- */

static pn_graph *check_network(ck *c, pn_module *m, pn_network_def *nd) {
    c->g = pn_graph_new(nd->name);
    c->stage = -1;
    memset(c->stage_seen, 0, sizeof c->stage_seen);
    c->too_big = false;
    c->in_train = false;
    c->output_stmts = 0;
    c->network_inputs = c->network_outputs = 0;
    c->has_shard_batch = false;
    c->depth_reported = false;
    pn_strmap_free(&c->node_names);
    int errors = c->d->nerrors;
    scope s = {.mod = m};
    stctx x = {.network = true};
    value ret = {0};
    ck_exec_stmts(c, &s, &nd->body, &x, &ret);
    if (!c->d->fatal) {
        int nst = 0;
        for (int i = 0; i < PN_MAX_STAGES; i++)
            if (c->stage_seen[i]) nst = i + 1;
        for (int i = 0; i < nst; i++) {
            if (!c->stage_seen[i]) {
                for (int k = i + 1; k < nst; k++) {
                    if (c->stage_seen[k]) {
                        ck_error(c, c->stage_locs[k], "pipeline stages must be numbered from 0 without gaps, but stage %d is missing", i);
                        break;
                    }
                }
                break;
            }
        }
        c->g->nstages = nst ? nst : 1;
        if (c->output_stmts == 0) ck_error(c, nd->name_loc, "network '%s' has no outputs", nd->name);
        for (int i = 0; i < s.order.len; i++) {
            binding *b = s.order.items[i];
            if (b->warn_unused && !b->used && b->v.k != V_ERROR)
                pn_warning(c->d, b->loc, "'%s' is never used", b->name);
        }
    }
    pn_strmap_free(&s.names);
    if (c->d->nerrors != errors) {
        pn_graph_free(c->g);
        c->g = NULL;
    }
    return c->g;
}

bool pn_check(pn_program *prog, const char *network_name, pn_graph **out) {
    ck c = {.prog = prog, .d = prog->diags, .stage = -1};
    pn_arena_init(&c.tmp);
    int errors = c.d->nerrors;
    if (out) *out = NULL;
    for (int i = 0; i < prog->modules.len && !c.d->fatal; i++) {
        pn_module *m = prog->modules.items[i];
        for (int k = 0; k < m->blocks.len && !c.d->fatal; k++) ck_resolve_block(&c, m->blocks.items[k]);
        if (i > 0)
            for (int k = 0; k < m->networks.len; k++)
                pn_warning(c.d, ((pn_network_def *)m->networks.items[k])->name_loc,
                           "network '%s' in an imported module is ignored", ((pn_network_def *)m->networks.items[k])->name);
    }
    pn_module *main = prog->modules.len ? prog->modules.items[0] : NULL;
    if (main && !c.d->fatal) {
        pn_network_def *chosen = NULL;
        for (int k = 0; k < main->networks.len; k++) {
            pn_network_def *nd = main->networks.items[k];
            for (int j = 0; j < k; j++) {
                pn_network_def *o = main->networks.items[j];
                if (strcmp(o->name, nd->name) == 0) {
                    pn_error(c.d, nd->name_loc, "redefinition of network '%s'", nd->name);
                    pn_note(c.d, o->name_loc, "previous definition is here");
                }
            }
            if (network_name ? strcmp(nd->name, network_name) == 0 : !chosen) chosen = nd;
        }
        if (network_name && !chosen) {
            pn_error(c.d, PN_NOLOC, "'%s' has no network named '%s'", main->path, network_name);
        } else if (!out && network_name) {
            pn_graph_free(check_network(&c, main, chosen));
        } else if (!out) {
            if (main->networks.len == 0 && main->blocks.len == 0 && main->imports.len == 0)
                pn_error(c.d, (pn_loc){main->file, 0, 0}, "'%s' defines no network or block", main->path);
            for (int k = 0; k < main->networks.len && !c.d->fatal; k++) pn_graph_free(check_network(&c, main, main->networks.items[k]));
        } else if (network_name && !chosen) {
            pn_error(c.d, PN_NOLOC, "'%s' has no network named '%s'", main->path, network_name);
        } else if (!chosen) {
            pn_error(c.d, PN_NOLOC, "'%s' defines no network", main->path);
        } else if (!network_name && main->networks.len > 1) {
            pn_network_def *second = main->networks.items[1];
            pn_error(c.d, second->name_loc, "'%s' defines more than one network; choose one with --network NAME", main->path);
        } else if (c.d->nerrors == errors) {
            *out = check_network(&c, main, chosen);
        }
    }
    pn_strmap_free(&c.node_names);
    pn_arena_free(&c.tmp);
    if (c.d->nerrors != errors && out && *out) {
        pn_graph_free(*out);
        *out = NULL;
    }
    return c.d->nerrors == errors;
}
