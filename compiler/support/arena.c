/* Bump allocator with large blocks; see arena.h. */
#include "arena.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pn_arena_block {
    pn_arena_block *next;
    size_t cap, used;
    _Alignas(16) unsigned char data[];
};

enum { PN_ARENA_BLOCK = 64 * 1024 };

void pn_arena_init(pn_arena *a) { memset(a, 0, sizeof *a); }

void pn_arena_free(pn_arena *a) {
    pn_arena_block *b = a->head;
    while (b) {
        pn_arena_block *n = b->next;
        free(b);
        b = n;
    }
    a->head = NULL;
    a->used_total = 0;
}

void *pn_arena_alloc(pn_arena *a, size_t size) {
    size = (size + 15) & ~(size_t)15;
    pn_arena_block *b = a->head;
    if (!b || b->cap - b->used < size) {
        size_t cap = size > PN_ARENA_BLOCK ? size : PN_ARENA_BLOCK;
        b = pn_xmalloc(sizeof *b + cap);
        b->cap = cap;
        b->used = 0;
        b->next = a->head;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += size;
    a->used_total += size;
    memset(p, 0, size);
    return p;
}

char *pn_arena_strndup(pn_arena *a, const char *s, size_t n) {
    char *p = pn_arena_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

char *pn_arena_strdup(pn_arena *a, const char *s) { return pn_arena_strndup(a, s, strlen(s)); }

char *pn_arena_printf(pn_arena *a, const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = pn_arena_alloc(a, (size_t)n + 1);
    vsnprintf(p, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return p;
}

void pn_vec_push(pn_arena *a, pn_vec *v, void *item) {
    if (v->len == v->cap) {
        int cap = v->cap ? v->cap * 2 : 4;
        void **items = pn_arena_alloc(a, sizeof(void *) * (size_t)cap);
        if (v->len) memcpy(items, v->items, sizeof(void *) * (size_t)v->len);
        v->items = items;
        v->cap = cap;
    }
    v->items[v->len++] = item;
}
