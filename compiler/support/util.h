/* Always-on internal assertions and checked allocation for the compiler. */
#ifndef PN_UTIL_H
#define PN_UTIL_H
#include <stddef.h>
#include <stdint.h>

/* An internal invariant, not a user error: always checked, prints file and line. */
#define PN_ASSERT(c) ((c) ? (void)0 : pn_assert_fail(#c, __FILE__, __LINE__))
_Noreturn void pn_assert_fail(const char *expr, const char *file, int line);

void *pn_xmalloc(size_t n);
void *pn_xcalloc(size_t n, size_t size);
void *pn_xrealloc(void *p, size_t n);
char *pn_xstrdup(const char *s);

/* Reads a whole file; returns NULL and sets errno on failure. *len gets the byte count. */
char *pn_read_file(const char *path, size_t *len);

/* Edit distance (adjacent swaps count 1), capped: used for "did you mean" hints. */
int pn_edit_distance(const char *a, const char *b);
/* The candidate closest to name within (len + 2) / 3 edits, or NULL; ties go to the earliest. */
const char *pn_closest(const char *name, const char *const *cands, int n);

#define PN_ARRAY_LEN(a) ((int)(sizeof(a) / sizeof((a)[0])))

#endif
