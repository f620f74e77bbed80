/* Bump allocator: the compiler allocates AST and graph memory here and frees it all at once. */
#ifndef PN_ARENA_H
#define PN_ARENA_H
#include <stddef.h>

typedef struct pn_arena_block pn_arena_block;
typedef struct pn_arena {
    pn_arena_block *head;
    size_t used_total;
} pn_arena;

void pn_arena_init(pn_arena *a);
void pn_arena_free(pn_arena *a);
void *pn_arena_alloc(pn_arena *a, size_t size);           /* zeroed, 16-byte aligned */
char *pn_arena_strndup(pn_arena *a, const char *s, size_t n);
char *pn_arena_strdup(pn_arena *a, const char *s);
char *pn_arena_printf(pn_arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Growable array of pointers living in an arena. */
typedef struct pn_vec {
    void **items;
    int len, cap;
} pn_vec;
void pn_vec_push(pn_arena *a, pn_vec *v, void *item);

#endif
