/* Always-on internal assertions and checked allocation for the compiler. */
#ifndef PN_UTIL_H
#define PN_UTIL_H
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* An internal invariant, not a user error: always checked, prints file and line. */
#define PN_ASSERT(c) ((c) ? (void)0 : pn_assert_fail(#c, __FILE__, __LINE__))
_Noreturn void pn_assert_fail(const char *expr, const char *file, int line);

void *pn_xmalloc(size_t n);
void *pn_xcalloc(size_t n, size_t size);
void *pn_xrealloc(void *p, size_t n);
char *pn_xstrdup(const char *s);
/* A formatted string of any length on the heap; the caller frees it. */
char *pn_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *pn_xvasprintf(const char *fmt, va_list ap);

/* The most bytes a source file may hold. */
#define PN_MAX_FILE ((size_t)64 << 20)

/* Reads a whole regular file, or standard input when path is "-", of at most limit bytes; *len
 * gets the byte count. Other kinds of file (devices, FIFOs, sockets) are refused before they are
 * opened, so none can block or stream without end. On failure returns NULL with the reason, one
 * line without the path, in err: "No such file or directory", "not a regular file (a FIFO)",
 * "file is larger than 64 MiB". */
char *pn_read_file(const char *path, size_t limit, size_t *len, char *err, size_t errlen);

/* Edit distance (adjacent swaps count 1), capped: used for "did you mean" hints. */
int pn_edit_distance(const char *a, const char *b);
/* The candidate closest to name within (len + 2) / 3 edits, or NULL; ties go to the earliest. */
const char *pn_closest(const char *name, const char *const *cands, int n);

#define PN_ARRAY_LEN(a) ((int)(sizeof(a) / sizeof((a)[0])))

#endif
