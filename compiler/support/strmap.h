/* Open-addressing hash map from NUL-terminated strings to pointers. Keys are not copied. */
#ifndef PN_STRMAP_H
#define PN_STRMAP_H
#include <stddef.h>

typedef struct pn_strmap {
    const char **keys;
    void **vals;
    size_t cap, len;
} pn_strmap;

void pn_strmap_free(pn_strmap *m);
void *pn_strmap_get(const pn_strmap *m, const char *key);
/* Inserts or replaces; returns the previous value or NULL. */
void *pn_strmap_put(pn_strmap *m, const char *key, void *val);

#endif
