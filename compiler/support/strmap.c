/* String-keyed hash map (FNV-1a, linear probing); see strmap.h. */
#include "strmap.h"
#include "util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

void pn_strmap_free(pn_strmap *m) {
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

void *pn_strmap_get(const pn_strmap *m, const char *key) {
    if (!m->cap) return NULL;
    for (size_t i = hash(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->keys[i]) return NULL;
        if (strcmp(m->keys[i], key) == 0) return m->vals[i];
    }
}

static void grow(pn_strmap *m) {
    pn_strmap n = {0};
    n.cap = m->cap ? m->cap * 2 : 16;
    n.keys = pn_xcalloc(n.cap, sizeof *n.keys);
    n.vals = pn_xcalloc(n.cap, sizeof *n.vals);
    PN_ASSERT(n.keys && n.vals);
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i]) pn_strmap_put(&n, m->keys[i], m->vals[i]);
    pn_strmap_free(m);
    *m = n;
}

void *pn_strmap_put(pn_strmap *m, const char *key, void *val) {
    if ((m->len + 1) * 2 > m->cap) grow(m);
    for (size_t i = hash(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->keys[i]) {
            m->keys[i] = key;
            m->vals[i] = val;
            m->len++;
            return NULL;
        }
        if (strcmp(m->keys[i], key) == 0) {
            void *old = m->vals[i];
            m->vals[i] = val;
            return old;
        }
    }
}
