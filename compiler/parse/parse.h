/* Parsing .pnet files into modules, and loading a program with its imports. */
#ifndef PN_PARSE_H
#define PN_PARSE_H
#include "ast.h"

/* State shared by the flex scanner and the bison parser of one file. */
typedef struct pn_parser {
    pn_arena *arena;
    pn_diags *diags;
    pn_module *mod;
    uint32_t file;
    const char *text;
    size_t len;
    size_t pos;    /* byte offset of the next token */
    int depth;     /* bracket nesting, bounded */
    uint32_t open[256 + 1]; /* offsets of the unclosed brackets */
    uint32_t prev_end, last_end; /* ends of the token before the lookahead, and of the lookahead */
    bool stopped;  /* a fatal lexical error ended the file */
} pn_parser;

enum { PN_MAX_NESTING = 256 };

/* Parses an already registered source file into mod. Returns false on syntax errors. */
bool pn_parse_file(pn_program *prog, pn_module *mod);

void pn_program_init(pn_program *p, pn_diags *d);
void pn_program_free(pn_program *p);
/* Loads the main file and, recursively, its imports. NULL (with diagnostics) on failure.
   text may be given (len bytes) instead of reading path, for tests and fuzzing. The path "-" is
   standard input, named "<stdin>" in diagnostics. */
pn_module *pn_program_load(pn_program *p, const char *path, const char *text, size_t len);
/* Finds a file named by a module (a constant's .npy) as imports are found, stdlib excepted: an
 * absolute path as is; else in the -I dirs, PNET_PATH, then the directory of `from`. Returns a
 * malloc'd path, or NULL with the directories searched in tried. */
char *pn_program_find_file(pn_program *p, const char *rel, const char *from, char *tried, size_t tn);

#endif
