/* Calls of built-in ops: their signatures (ops.def's `sig` strings), binding a call's arguments to one,
 * converting each argument to its parameter's kind, and appending the op's node. */
#include "check_internal.h"

#include <stdlib.h>
#include <string.h>

/* "lr:float momentum:float=0": one parameter per word, NAME:KIND or NAME:KIND=DEFAULT. */
void ck_parse_sig(const char *text, sig *out) {
    memset(out, 0, sizeof *out);
    while (text && *text) {
        while (*text == ' ') text++;
        if (!*text) break;
        PN_ASSERT(out->n < 8);
        sig_param *p = &out->p[out->n++];
        size_t k = strcspn(text, ":");
        PN_ASSERT(k < sizeof p->name);
        memcpy(p->name, text, k);
        text += k + 1;
        static const char *kinds[] = {"tensor", "tensors", "int", "float", "bool", "pair", "ints"};
        size_t kl = strcspn(text, "= ");
        p->kind = (pkind)-1;
        for (int i = 0; i < 7; i++)
            if (strlen(kinds[i]) == kl && strncmp(text, kinds[i], kl) == 0) p->kind = (pkind)i;
        PN_ASSERT((int)p->kind >= 0);
        text += kl;
        if (*text == '=') {
            text++;
            size_t dl = strcspn(text, " ");
            PN_ASSERT(dl < sizeof p->def);
            memcpy(p->def, text, dl);
            p->has_def = true;
            text += dl;
        }
    }
}

static const sig *op_sig(pn_op op) {
    static sig sigs[PN_OP_COUNT];
    static bool done[PN_OP_COUNT];
    if (!done[op]) {
        ck_parse_sig(pn_ops[op].sig, &sigs[op]);
        done[op] = true;
    }
    return &sigs[op];
}

static value default_value(const sig_param *p, pn_loc loc) {
    value v = {.loc = loc};
    if (strcmp(p->def, "true") == 0 || strcmp(p->def, "false") == 0) {
        v.k = V_BOOL;
        v.b = p->def[0] == 't';
    } else if (p->kind == K_FLOAT) {
        v.k = V_FLOAT;
        v.f = strtod(p->def, NULL);
    } else {
        v.k = V_INT;
        v.i = strtoll(p->def, NULL, 10);
    }
    return v;
}

/* Converts an argument value to a signature kind, filling ia/fa/list. */
bool ck_convert_arg(ck *c, const char *callee, const sig_param *p, value *v, int64_t *ia, int *ni, double *fa, int *nf,
                    int64_t *list, int *nlist) {
    switch (p->kind) {
    case K_TENSOR:
    case K_TENSORS:
        if (v->k == V_TENSOR) return true;
        break;
    case K_INT:
        if (v->k == V_INT) {
            ia[(*ni)++] = v->i;
            return true;
        }
        break;
    case K_FLOAT:
        if (ck_is_number(v)) {
            fa[(*nf)++] = ck_num(v);
            return true;
        }
        break;
    case K_BOOL:
        if (v->k == V_BOOL) {
            ia[(*ni)++] = v->b;
            return true;
        }
        break;
    case K_PAIR:
        if (v->k == V_INT) {
            ia[(*ni)++] = v->i;
            ia[(*ni)++] = v->i;
            return true;
        }
        if (v->k == V_LIST && v->n == 2 && v->items[0].k == V_INT && v->items[1].k == V_INT) {
            ia[(*ni)++] = v->items[0].i;
            ia[(*ni)++] = v->items[1].i;
            return true;
        }
        if (v->k == V_LIST)
            ck_error(c, v->loc, "argument '%s' of '%s' must be an integer or a list of two integers, not a list of %d %s",
                 p->name, callee, v->n, v->n == 1 ? "entry" : "entries");
        else
            ck_error(c, v->loc, "argument '%s' of '%s' must be an integer or a list of two integers, not %s", p->name,
                 callee, ck_vkind_name(v->k));
        return false;
    case K_INTS:
        if (v->k == V_LIST) {
            if (v->n > PN_MAX_RANK) {
                ck_error(c, v->loc, "argument '%s' of '%s' has more than %d entries", p->name, callee, PN_MAX_RANK);
                return false;
            }
            for (int i = 0; i < v->n; i++) {
                if (v->items[i].k == V_BATCH) list[i] = PN_LIST_BATCH;
                else if (v->items[i].k == V_INT) list[i] = v->items[i].i;
                else {
                    ck_error(c, v->items[i].loc, "entries of '%s' must be integers, not %s", p->name, ck_vkind_name(v->items[i].k));
                    return false;
                }
            }
            *nlist = v->n;
            return true;
        }
        ck_error(c, v->loc, "argument '%s' of '%s' must be a list of integers, not %s", p->name, callee, ck_vkind_name(v->k));
        return false;
    }
    static const char *want[] = {"a tensor", "a tensor", "an integer", "a number", "a boolean"};
    char nb[40];
    if (v->k == V_FLOAT && p->kind == K_INT)
        ck_error(c, v->loc, "argument '%s' of '%s' must be an integer, not %s", p->name, callee, ck_fmt_num(nb, sizeof nb, v->f));
    else
        ck_error(c, v->loc, "argument '%s' of '%s' must be %s, not %s", p->name, callee, want[p->kind], ck_vkind_name(v->k));
    return false;
}

/* Binds call arguments to a signature: positional in order, then keywords by name.
 * vals[i] gets the value of parameter i; tensors[] collects a `tensors` parameter. */
bool ck_bind(ck *c, scope *s, pn_expr *call, const sig *sg, const char *callee, naming *nm, value *vals, bool *given,
             value *tensors, int *ntensors) {
    bool ok = true;
    int pos = 0;
    *ntensors = 0;
    for (int i = 0; i < sg->n; i++) given[i] = false;
    for (int a = 0; a < call->args.len; a++) {
        pn_arg *arg = call->args.items[a];
        value v = ck_eval(c, s, arg->value, nm, false);
        if (v.k == V_ERROR) {
            ok = false;
            continue;
        }
        int slot = -1;
        if (arg->key) {
            for (int i = 0; i < sg->n; i++)
                if (strcmp(sg->p[i].name, arg->key) == 0) slot = i;
            if (slot < 0) {
                const char *names[8];
                for (int i = 0; i < sg->n; i++) names[i] = sg->p[i].name;
                ck_error(c, arg->key_loc, "'%s' has no argument named '%s'%s", callee, arg->key,
                     ck_suggest_arg(c, arg->key, names, sg->n));
                ok = false;
                continue;
            }
            if (given[slot]) {
                ck_error(c, arg->key_loc, "argument '%s' of '%s' is given twice", arg->key, callee);
                ok = false;
                continue;
            }
            if (sg->p[slot].kind == K_TENSORS) {
                if (v.k == V_LIST) {
                    for (int i = 0; i < v.n && *ntensors < 64; i++) tensors[(*ntensors)++] = v.items[i];
                } else {
                    tensors[(*ntensors)++] = v;
                }
            }
        } else {
            while (pos < sg->n && given[pos]) pos++;
            if (pos < sg->n && sg->p[pos].kind == K_TENSORS) {
                if (v.k == V_LIST && *ntensors == 0) {
                    for (int i = 0; i < v.n && *ntensors < 64; i++) tensors[(*ntensors)++] = v.items[i];
                    given[pos++] = true;
                    continue;
                }
                if (v.k == V_TENSOR) {
                    if (*ntensors >= 64) {
                        ck_error(c, arg->value->loc, "too many tensors in call to '%s' (at most 64)", callee);
                        ok = false;
                        continue;
                    }
                    tensors[(*ntensors)++] = v;
                    continue; /* stays on this parameter */
                }
                given[pos++] = true; /* the tensors end at the first non-tensor */
                while (pos < sg->n && given[pos]) pos++;
            }
            if (pos >= sg->n) {
                ck_error(c, arg->value->loc, "too many arguments in call to '%s' (it takes %d)", callee, sg->n);
                ok = false;
                continue;
            }
            slot = pos++;
        }
        given[slot] = true;
        vals[slot] = v;
    }
    for (int i = 0; i < sg->n; i++) {
        if (sg->p[i].kind == K_TENSORS) {
            given[i] = true;
            if (*ntensors == 0 && ok) {
                ck_error(c, call->loc, "'%s' needs at least one tensor", callee);
                ok = false;
            }
            for (int k = 0; k < *ntensors; k++)
                if (tensors[k].k != V_TENSOR) {
                    ck_error(c, tensors[k].loc, "'%s' takes tensors, not %s", callee, ck_vkind_name(tensors[k].k));
                    ok = false;
                }
            continue;
        }
        if (!given[i]) {
            if (sg->p[i].has_def) vals[i] = default_value(&sg->p[i], call->loc);
            else if (ok) {
                ck_error(c, call->loc, "missing argument '%s' in call to '%s'", sg->p[i].name, callee);
                ok = false;
            }
        }
    }
    return ok;
}

value ck_call_op(ck *c, scope *s, pn_op op, pn_expr *call, naming *nm, bool top) {
    value err = {.k = V_ERROR, .loc = call->loc};
    const sig *sg = op_sig(op);
    const char *name = pn_ops[op].name;
    if ((pn_ops[op].flags & PN_OPF_LOSS) && !c->in_train) {
        ck_error(c, call->name_loc, "'%s' is a loss: use it as 'loss = %s(...)' inside train { }", name, name);
        ck_mark_used(s, call, 0);
        return err;
    }
    value vals[8], tensors[64];
    bool given[8];
    int nt;
    if (!ck_bind(c, s, call, sg, name, nm, vals, given, tensors, &nt)) return err;
    pn_node n = {.op = op, .loc = call->loc};
    int32_t inputs[64];
    pn_loc locs[65];
    int nin = 0, ni = 0, nf = 0, nlist = 0;
    int64_t list[PN_MAX_RANK];
    for (int i = 0; i < sg->n; i++) {
        if (sg->p[i].kind == K_TENSORS) {
            for (int k = 0; k < nt; k++) {
                locs[nin] = tensors[k].loc;
                inputs[nin++] = tensors[k].node;
            }
            continue;
        }
        if (!ck_convert_arg(c, name, &sg->p[i], &vals[i], n.ia, &ni, n.fa, &nf, list, &nlist)) return err;
        if (sg->p[i].kind == K_TENSOR) {
            locs[nin] = vals[i].loc;
            inputs[nin++] = vals[i].node;
        }
    }
    /* Shape errors name arguments by position in the signature; map them to locations. */
    pn_loc arglocs[66];
    int na = 0;
    if (op == PN_OP_CONCAT) {
        for (int k = 0; k < nin; k++) arglocs[na++] = locs[k];
        arglocs[na++] = vals[1].loc;
    } else {
        for (int i = 0; i < sg->n; i++) arglocs[na++] = vals[i].loc;
    }
    n.name = ck_node_name(c, nm, name, top);
    return ck_add_node(c, &n, inputs, nin, list, nlist, arglocs, na);
}
